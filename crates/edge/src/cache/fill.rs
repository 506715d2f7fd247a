//! Request collapsing: one upstream fetch per key at a time, shared by every client that
//! asks for the key meanwhile. The fetch runs in its own task (a client that disconnects
//! does not abort it or leave a torn entry); readers follow the response as it streams in,
//! each from any byte offset. This module owns the [`Fill`] (head, buffered body,
//! readers) and the [`Inflight`] map; the fetch that feeds a fill is run elsewhere, in
//! phases: `crate::proxy`'s `FillJob` for whole objects, `crate::slice`'s `SliceFill` for
//! slices, both through `crate::fetch`.
//!
//! # Memory bound
//!
//! A fill keeps at most its `limit` of body bytes in memory for its readers
//! ([`crate::cache::CacheLimits::fill_buffer_bytes`]; a body without `Content-Length` may
//! be endless). Every client that joined the fill holds a [`Reader`], registered from the
//! moment it joined, with its position in the body. When the next chunk would take the
//! buffer past the limit, the chunks every reader has already passed are dropped; from
//! then on the fill is *sealed*: a client that comes later cannot start from byte 0 and
//! gets a fetch of its own ([`Inflight::join`] starts a new fill). When the readers have
//! not passed enough, the fetch waits for them (backpressure), and a reader that makes no
//! progress for [`SLOW_READER`] is cut off so that it cannot stall the others. So a fill
//! never holds more than its limit, and every reader still gets the whole body, in order.
//! Bytes handed over from a stored response ([`Fill::complete_from`]) are shared with the
//! cache and not counted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

/// How long a fill waits for a reader that does not move on before cutting it off.
pub const SLOW_READER: Duration = Duration::from_secs(30);

/// The head of a response being fetched.
#[derive(Debug, Clone)]
pub struct FillHead {
    pub status: StatusCode,
    /// The headers every reader gets (never `Set-Cookie`, nor the fields a qualified
    /// `no-cache`/`private` lists, when shareable: see `leader_only`).
    pub headers: HeaderMap,
    /// Whether the response will be stored: if not, readers other than the one that
    /// started the fetch must fetch for themselves (it may be private to that client).
    pub shareable: bool,
    /// The `Vary` signature of the request that started the fetch: a reader whose own
    /// signature differs must fetch for itself.
    pub variant: String,
    /// For a response that is not shareable: the body, handed over a bounded channel to
    /// the one client that started the fetch (taken once). Memory stays bounded whatever
    /// the object's size, and the upstream read waits for that client (backpressure).
    pub direct: Option<DirectBody>,
    /// Fields of a shareable response for the client that started the fetch only (its
    /// `Set-Cookie`, and the fields a qualified `no-cache`/`private` lists): other clients
    /// and the cache never see them.
    pub leader_only: Vec<(HeaderName, HeaderValue)>,
}

/// A body handed to exactly one reader through a bounded channel.
pub type DirectBody =
    Arc<Mutex<Option<tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>>>>;

/// The memory the fills hold, for `/metrics` (shared by every fill of a node).
#[derive(Debug, Clone, Default)]
pub struct FillMeter {
    /// Body bytes the fills in progress hold now (counted ones).
    pub buffered: Gauge,
    /// The most body bytes one fill has held at once since start.
    pub peak: Gauge,
    /// Fills that reached their limit and stopped taking new readers.
    pub sealed: Counter,
}

#[derive(Debug)]
struct Chunk {
    bytes: Bytes,
    /// Counts toward the limit (false: shared with a stored response).
    counted: bool,
}

#[derive(Debug, Default)]
struct FillState {
    head: Option<Result<FillHead, String>>,
    /// The chunks not dropped yet; the first starts at byte `base`.
    chunks: VecDeque<Chunk>,
    /// Chunks dropped from the front (so absolute chunk numbers stay valid).
    dropped: usize,
    base: u64,
    /// Body bytes received so far.
    len: u64,
    /// Bytes of counted chunks held.
    held: u64,
    /// `Some` when the body is complete (`Ok`) or failed (`Err`).
    done: Option<Result<(), String>>,
    /// Readers by id, with the body offset each has reached.
    readers: HashMap<u64, u64>,
    next_reader: u64,
    /// Bytes were dropped: no new reader.
    sealed: bool,
}

/// One in-flight fetch.
#[derive(Debug)]
pub struct Fill {
    state: Mutex<FillState>,
    /// Bumped when the fill moves on (head, data, end): readers wait on it.
    changed: watch::Sender<u64>,
    /// Bumped when a reader moves on or leaves: the fetch waits on it when full.
    progress: watch::Sender<u64>,
    limit: u64,
    meter: FillMeter,
}

impl Default for Fill {
    /// An unbounded fill (for tests, and fills whose bodies are bounded otherwise).
    fn default() -> Self {
        Fill::new(u64::MAX, FillMeter::default())
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        let held = self.lock().held;
        self.meter.buffered.dec_by(gauge_value(held));
    }
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Fill {
    /// A fill holding at most `limit` body bytes for its readers (at least 1).
    pub fn new(limit: u64, meter: FillMeter) -> Fill {
        Fill {
            state: Mutex::new(FillState::default()),
            changed: watch::Sender::new(0),
            progress: watch::Sender::new(0),
            limit: limit.max(1),
            meter,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FillState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    fn moved(&self) {
        self.progress.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// The most body bytes this fill holds for its readers.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Body bytes held now (counted ones).
    pub fn held(&self) -> u64 {
        self.lock().held
    }

    /// Registers a reader at byte 0; `None` once the fill is sealed (bytes were dropped).
    pub fn reader(self: &Arc<Self>) -> Option<Reader> {
        if self.lock().sealed {
            return None;
        }
        Some(self.register())
    }

    /// Registers a reader at byte 0 (of a fill known not to be sealed).
    fn register(self: &Arc<Self>) -> Reader {
        let mut s = self.lock();
        let id = s.next_reader;
        s.next_reader += 1;
        s.readers.insert(id, 0);
        Reader {
            fill: self.clone(),
            id,
        }
    }

    /// Readers registered now.
    pub fn readers(&self) -> usize {
        self.lock().readers.len()
    }

    /// Publishes the response head (or the failure to get one).
    pub fn set_head(&self, head: Result<FillHead, String>) {
        self.lock().head = Some(head);
        self.bump();
    }

    /// Appends body bytes, waiting while the buffer is full and its readers have not
    /// passed enough of it (see the module documentation).
    pub async fn push(&self, mut chunk: Bytes) {
        while !chunk.is_empty() {
            let piece = if chunk.len() as u64 > self.limit {
                // `limit` < `chunk.len()`, so it fits a usize.
                chunk.split_to(usize::try_from(self.limit).unwrap_or(usize::MAX))
            } else {
                std::mem::take(&mut chunk)
            };
            self.push_piece(piece).await;
        }
    }

    async fn push_piece(&self, piece: Bytes) {
        let n = piece.len() as u64;
        let mut progress = self.progress.subscribe();
        let mut piece = Some(piece);
        loop {
            {
                let mut s = self.lock();
                if s.held + n > self.limit {
                    let want = s.held + n - self.limit;
                    self.drop_passed(&mut s, want);
                }
                if s.held + n <= self.limit {
                    if let Some(bytes) = piece.take() {
                        s.len += n;
                        s.held += n;
                        s.chunks.push_back(Chunk {
                            bytes,
                            counted: true,
                        });
                        self.meter.buffered.inc_by(gauge_value(n));
                        self.meter
                            .peak
                            .inner()
                            .fetch_max(gauge_value(s.held), std::sync::atomic::Ordering::Relaxed);
                    }
                    drop(s);
                    self.bump();
                    return;
                }
                progress.borrow_and_update();
            }
            if tokio::time::timeout(SLOW_READER, progress.changed())
                .await
                .is_err()
            {
                self.cut_slowest();
            }
        }
    }

    /// Drops up to `want` counted bytes of the chunks every reader has passed, oldest
    /// first; seals the fill if any were dropped.
    fn drop_passed(&self, s: &mut FillState, want: u64) {
        let slowest = s.readers.values().copied().min().unwrap_or(u64::MAX);
        let mut freed = 0;
        while freed < want {
            let Some(front) = s.chunks.front() else { break };
            let end = s.base + front.bytes.len() as u64;
            if end > slowest {
                break;
            }
            let len = front.bytes.len() as u64;
            let counted = front.counted;
            s.chunks.pop_front();
            s.dropped += 1;
            s.base = end;
            if counted {
                s.held -= len;
                freed += len;
                self.meter.buffered.dec_by(gauge_value(len));
            }
            if !s.sealed {
                s.sealed = true;
                self.meter.sealed.inc();
            }
        }
    }

    /// Cuts off the readers furthest behind (they get an error).
    fn cut_slowest(&self) {
        let mut s = self.lock();
        if let Some(slowest) = s.readers.values().copied().min() {
            s.readers.retain(|_, pos| *pos != slowest);
            tracing::warn!(
                position = slowest,
                "a client fell too far behind a shared fetch and was cut off"
            );
        }
        drop(s);
        self.bump();
    }

    /// Appends bytes shared with a stored response: not counted toward the limit.
    pub fn push_stored(&self, bytes: Bytes) {
        {
            let mut s = self.lock();
            s.len += bytes.len() as u64;
            s.chunks.push_back(Chunk {
                bytes,
                counted: false,
            });
        }
        self.bump();
    }

    /// Marks the body complete or failed.
    pub fn finish(&self, result: Result<(), String>) {
        {
            let mut s = self.lock();
            if s.head.is_none() {
                s.head = Some(Err(result
                    .clone()
                    .err()
                    .unwrap_or_else(|| "no response".into())));
            }
            s.done = Some(result);
        }
        self.bump();
    }

    /// Completes the fill at once from a stored response (a fetch that another fill made
    /// unnecessary by storing it first, or a revalidated one). `leader_only`: for the
    /// client that started the fetch.
    pub fn complete_from(
        &self,
        stored: &crate::cache::store::CachedResponse,
        leader_only: Vec<(HeaderName, HeaderValue)>,
    ) {
        self.set_head(Ok(FillHead {
            direct: None,
            status: stored.status,
            headers: stored.headers.clone(),
            shareable: true,
            variant: stored.variant.clone(),
            leader_only,
        }));
        self.push_stored(stored.body.clone());
        self.finish(Ok(()));
    }

    /// Waits for the head.
    pub async fn head(&self) -> Result<FillHead, String> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(h) = self.lock().head.clone() {
                return h;
            }
            if rx.changed().await.is_err() {
                return Err("fetch abandoned".into());
            }
        }
    }
}

/// A client's place in a fill: registered when it joined, so the bytes it has not read
/// yet stay in memory until it has (or until it is cut off as too slow). Dropping it
/// leaves the fill.
#[derive(Debug)]
pub struct Reader {
    fill: Arc<Fill>,
    id: u64,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.fill.lock().readers.remove(&self.id);
        self.fill.moved();
    }
}

impl Reader {
    pub fn fill(&self) -> &Arc<Fill> {
        &self.fill
    }

    /// Waits for the whole body. Meant for bodies known to fit the fill's limit: a larger
    /// one makes the fetch wait for this reader until it is cut off as too slow, and then
    /// this fails.
    pub async fn body(self) -> Result<Bytes, String> {
        let mut rx = self.fill.changed.subscribe();
        loop {
            {
                let s = self.fill.lock();
                if !s.readers.contains_key(&self.id) || s.sealed {
                    return Err("the body outgrew the shared fetch's buffer".into());
                }
                match &s.done {
                    Some(Ok(())) => {
                        let mut buf =
                            bytes::BytesMut::with_capacity(usize::try_from(s.len).unwrap_or(0));
                        for c in &s.chunks {
                            buf.extend_from_slice(&c.bytes);
                        }
                        return Ok(buf.freeze());
                    }
                    Some(Err(e)) => return Err(e.clone()),
                    None => {}
                }
            }
            if rx.changed().await.is_err() {
                return Err("fetch abandoned".into());
            }
        }
    }

    /// The body bytes `[start, end)` (`end` None: to the end) as they arrive.
    pub fn stream(
        self,
        start: u64,
        end: Option<u64>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let rx = self.fill.changed.subscribe();
        {
            let mut s = self.fill.lock();
            if let Some(pos) = s.readers.get_mut(&self.id) {
                *pos = start;
            }
        }
        self.fill.moved();
        futures::stream::unfold(
            (self, rx, 0usize, 0u64, start),
            move |(reader, mut rx, mut idx, mut offset, pos)| async move {
                // `idx`/`offset`: next chunk (absolute number) to look at and its offset.
                loop {
                    // u64::MAX marks a stream that has reported its error.
                    if pos == u64::MAX || end.is_some_and(|e| pos >= e) {
                        return None;
                    }
                    let step = {
                        let mut s = reader.fill.lock();
                        if !s.readers.contains_key(&reader.id) {
                            Step::Fail("this client fell too far behind a shared fetch".into())
                        } else {
                            if idx < s.dropped {
                                // Only chunks before every reader's position are dropped.
                                idx = s.dropped;
                                offset = s.base;
                            }
                            let mut out = None;
                            let gone = pos < s.base;
                            while !gone && idx - s.dropped < s.chunks.len() {
                                let chunk = &s.chunks[idx - s.dropped].bytes;
                                let chunk_end = offset + chunk.len() as u64;
                                if chunk_end <= pos {
                                    offset = chunk_end;
                                    idx += 1;
                                    continue;
                                }
                                let from = (pos - offset) as usize;
                                let to = match end {
                                    Some(e) if e < chunk_end => (e - offset) as usize,
                                    _ => chunk.len(),
                                };
                                out = Some(chunk.slice(from..to));
                                break;
                            }
                            match (out, &s.done) {
                                _ if gone => Step::Fail(
                                    "the shared fetch no longer holds these bytes".into(),
                                ),
                                (Some(b), _) => {
                                    let next = pos + b.len() as u64;
                                    if let Some(p) = s.readers.get_mut(&reader.id) {
                                        *p = next;
                                    }
                                    Step::Data(b)
                                }
                                (None, Some(Ok(()))) => Step::End,
                                (None, Some(Err(e))) => Step::Fail(e.clone()),
                                (None, None) => Step::Wait,
                            }
                        }
                    };
                    match step {
                        Step::Data(b) => {
                            reader.fill.moved();
                            let next = pos + b.len() as u64;
                            return Some((Ok(b), (reader, rx, idx, offset, next)));
                        }
                        Step::End => return None,
                        Step::Fail(e) => {
                            return Some((
                                Err(std::io::Error::other(e)),
                                (reader, rx, usize::MAX, u64::MAX, u64::MAX),
                            ));
                        }
                        Step::Wait => {
                            if rx.changed().await.is_err() {
                                return None;
                            }
                        }
                    }
                }
            },
        )
    }
}

enum Step {
    Data(Bytes),
    End,
    Fail(String),
    Wait,
}

/// The fetches in flight, by key.
pub struct Inflight {
    fills: Mutex<HashMap<String, Arc<Fill>>>,
    limit: u64,
    meter: FillMeter,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight::new(
            super::CacheLimits::DEFAULT_FILL_BUFFER_BYTES,
            FillMeter::default(),
        )
    }
}

/// What `Inflight::join` found.
pub enum Joined {
    /// A new fetch: the caller must run it (the reader's fill), and call
    /// `Inflight::done` when it ends.
    Leader(Reader),
    /// A fetch already running.
    Follower(Reader),
}

impl Inflight {
    /// Fills that hold at most `limit` body bytes each, measured into `meter`.
    pub fn new(limit: u64, meter: FillMeter) -> Inflight {
        Inflight {
            fills: Mutex::default(),
            limit,
            meter,
        }
    }

    /// Joins the fetch for `key`, or registers a new one (also when the running one is
    /// sealed: a client that comes too late for its buffer fetches on its own).
    pub fn join(&self, key: &str) -> Joined {
        self.join_bounded(key, self.limit)
    }

    /// [`Inflight::join`] with another limit for a new fill (slices, whose bodies are
    /// bounded by the slice size, pass `u64::MAX`).
    pub fn join_bounded(&self, key: &str, limit: u64) -> Joined {
        let mut map = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reader) = map.get(key).and_then(Fill::reader) {
            return Joined::Follower(reader);
        }
        let fill = Arc::new(Fill::new(limit, self.meter.clone()));
        map.insert(key.to_owned(), fill.clone());
        Joined::Leader(fill.register())
    }

    /// Registers a new fetch for `key` only if none is in flight, sealed or not: for a
    /// background refresh, which no client reads (`Some`: the caller must run it and call
    /// `Inflight::done`).
    pub fn lead(&self, key: &str) -> Option<Arc<Fill>> {
        let mut map = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if map.contains_key(key) {
            return None;
        }
        let fill = Arc::new(Fill::new(self.limit, self.meter.clone()));
        map.insert(key.to_owned(), fill.clone());
        Some(fill)
    }

    /// Removes the fetch for `key` (if it is still `fill`).
    pub fn done(&self, key: &str, fill: &Arc<Fill>) {
        let mut map = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            map.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.fills.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Readers registered on the fetches in flight (a test hook: how many clients have
    /// joined).
    pub fn readers(&self) -> usize {
        let map = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        map.values().map(|f| f.readers()).sum()
    }

    /// The metrics of the fills.
    pub fn meter(&self) -> &FillMeter {
        &self.meter
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    async fn collect(reader: Reader, start: u64, end: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = std::pin::pin!(reader.stream(start, end));
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.expect("chunk"));
        }
        out
    }

    fn head() -> Result<FillHead, String> {
        Ok(FillHead {
            direct: None,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            shareable: true,
            variant: String::new(),
            leader_only: Vec::new(),
        })
    }

    fn reader(fill: &Arc<Fill>) -> Reader {
        fill.reader().expect("not sealed")
    }

    #[tokio::test]
    async fn readers_follow_the_stream_from_any_offset() {
        let fill = Arc::new(Fill::default());
        let whole = tokio::spawn(collect(reader(&fill), 0, None));
        let middle = tokio::spawn(collect(reader(&fill), 3, Some(8)));
        fill.set_head(head());
        for part in ["abcd", "efg", "hij"] {
            fill.push(Bytes::from(part)).await;
            tokio::task::yield_now().await;
        }
        fill.finish(Ok(()));
        assert_eq!(whole.await.expect("join"), b"abcdefghij");
        assert_eq!(middle.await.expect("join"), b"defgh");
        assert_eq!(collect(reader(&fill), 9, None).await, b"j");
        assert_eq!(
            reader(&fill).body().await.expect("body"),
            Bytes::from("abcdefghij")
        );
    }

    #[tokio::test]
    async fn a_failed_fetch_fails_its_readers() {
        let fill = Arc::new(Fill::default());
        fill.push(Bytes::from("ab")).await;
        fill.finish(Err("origin reset".into()));
        let mut s = std::pin::pin!(reader(&fill).stream(0, None));
        assert_eq!(
            s.next().await.expect("data").expect("ok"),
            Bytes::from("ab")
        );
        assert!(s.next().await.expect("error").is_err());
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn a_bounded_fill_holds_its_limit_and_every_reader_gets_everything() {
        let meter = FillMeter::default();
        let fill = Arc::new(Fill::new(10, meter.clone()));
        let a = tokio::spawn(collect(reader(&fill), 0, None));
        let b = tokio::spawn(collect(reader(&fill), 5, Some(95)));
        let producer = {
            let fill = fill.clone();
            tokio::spawn(async move {
                fill.set_head(head());
                for i in 0..25u8 {
                    // Uneven chunks, one larger than the limit.
                    let len = if i == 7 { 23 } else { 3 };
                    fill.push(Bytes::from(vec![i; len])).await;
                    assert!(fill.held() <= 10, "held {}", fill.held());
                }
                fill.finish(Ok(()));
            })
        };
        producer.await.expect("producer");
        let expected: Vec<u8> = (0..25u8)
            .flat_map(|i| vec![i; if i == 7 { 23 } else { 3 }])
            .collect();
        assert_eq!(a.await.expect("a"), expected);
        assert_eq!(b.await.expect("b"), expected[5..95]);
        assert!(meter.peak.get() <= 10);
        assert_eq!(meter.sealed.get(), 1);
        // Sealed: a late reader is refused (it must fetch on its own).
        assert!(fill.reader().is_none());
        drop(fill);
        assert_eq!(meter.buffered.get(), 0);
    }

    #[tokio::test]
    async fn a_sealed_fill_is_not_joined() {
        let inflight = Inflight::new(4, FillMeter::default());
        let Joined::Leader(first) = inflight.join("k") else {
            panic!("first must lead")
        };
        let fill = first.fill().clone();
        drop(first);
        // No reader left: the fill drops what it must and seals.
        fill.push(Bytes::from("abcdef")).await;
        assert!(matches!(inflight.join("k"), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn a_background_refresh_is_not_started_twice() {
        let inflight = Inflight::new(4, FillMeter::default());
        let fill = inflight.lead("k").expect("first leads");
        fill.push(Bytes::from("abcdef")).await;
        // Sealed, but still in flight: no second refresh.
        assert!(inflight.lead("k").is_none());
        inflight.done("k", &fill);
        assert!(inflight.lead("k").is_some());
    }

    #[test]
    fn one_leader_per_key() {
        let inflight = Inflight::default();
        let Joined::Leader(a) = inflight.join("k") else {
            panic!("first must lead")
        };
        assert!(matches!(inflight.join("k"), Joined::Follower(_)));
        inflight.done("k", a.fill());
        assert!(matches!(inflight.join("k"), Joined::Leader(_)));
    }
}
