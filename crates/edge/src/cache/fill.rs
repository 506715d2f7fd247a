//! Request collapsing: one upstream fetch per key at a time, shared by every client that
//! asks for the key meanwhile. The fetch runs in its own task (a client that disconnects
//! does not abort it or leave a torn entry); readers follow the response as it streams in,
//! each from any byte offset.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

/// The head of a response being fetched.
#[derive(Debug, Clone)]
pub struct FillHead {
    pub status: StatusCode,
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
}

/// A body handed to exactly one reader through a bounded channel.
pub type DirectBody =
    Arc<Mutex<Option<tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>>>>;

#[derive(Debug, Default)]
struct FillState {
    head: Option<Result<FillHead, String>>,
    chunks: Vec<Bytes>,
    len: u64,
    /// `Some` when the body is complete (`Ok`) or failed (`Err`).
    done: Option<Result<(), String>>,
}

/// One in-flight fetch.
#[derive(Debug)]
pub struct Fill {
    state: Mutex<FillState>,
    changed: watch::Sender<u64>,
}

impl Default for Fill {
    fn default() -> Self {
        Fill {
            state: Mutex::new(FillState::default()),
            changed: watch::Sender::new(0),
        }
    }
}

impl Fill {
    fn lock(&self) -> MutexGuard<'_, FillState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Publishes the response head (or the failure to get one).
    pub fn set_head(&self, head: Result<FillHead, String>) {
        self.lock().head = Some(head);
        self.bump();
    }

    /// Appends a body chunk.
    pub fn push(&self, chunk: Bytes) {
        {
            let mut s = self.lock();
            s.len += chunk.len() as u64;
            s.chunks.push(chunk);
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
    /// unnecessary by storing it first).
    pub fn complete_from(&self, stored: &crate::cache::store::CachedResponse) {
        self.set_head(Ok(FillHead {
            direct: None,
            status: stored.status,
            headers: stored.headers.clone(),
            shareable: true,
            variant: stored.variant.clone(),
        }));
        self.push(stored.body.clone());
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

    /// Waits for the whole body.
    pub async fn body(&self) -> Result<Bytes, String> {
        let mut rx = self.changed.subscribe();
        loop {
            {
                let s = self.lock();
                match &s.done {
                    Some(Ok(())) => {
                        let mut buf = bytes::BytesMut::with_capacity(s.len as usize);
                        for c in &s.chunks {
                            buf.extend_from_slice(c);
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
        self: Arc<Self>,
        start: u64,
        end: Option<u64>,
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let rx = self.changed.subscribe();
        futures::stream::unfold(
            (self, rx, 0usize, 0u64, start),
            move |(fill, mut rx, mut idx, mut offset, pos)| async move {
                // `idx`/`offset`: next chunk to look at and its byte offset.
                loop {
                    // u64::MAX marks a stream that has reported its error.
                    if pos == u64::MAX || end.is_some_and(|e| pos >= e) {
                        return None;
                    }
                    let step = {
                        let s = fill.lock();
                        let mut out = None;
                        while idx < s.chunks.len() {
                            let chunk = &s.chunks[idx];
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
                            (Some(b), _) => Step::Data(b),
                            (None, Some(Ok(()))) => Step::End,
                            (None, Some(Err(e))) => Step::Fail(e.clone()),
                            (None, None) => Step::Wait,
                        }
                    };
                    match step {
                        Step::Data(b) => {
                            let next = pos + b.len() as u64;
                            return Some((Ok(b), (fill, rx, idx, offset, next)));
                        }
                        Step::End => return None,
                        Step::Fail(e) => {
                            return Some((
                                Err(std::io::Error::other(e)),
                                (fill, rx, usize::MAX, u64::MAX, u64::MAX),
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
#[derive(Default)]
pub struct Inflight {
    fills: Mutex<HashMap<String, Arc<Fill>>>,
}

/// What `Inflight::join` found.
pub enum Joined {
    /// A new fetch: the caller must run it, and call `Inflight::done` when it ends.
    Leader(Arc<Fill>),
    /// A fetch already running.
    Follower(Arc<Fill>),
}

impl Inflight {
    /// Joins the fetch for `key`, or registers a new one.
    pub fn join(&self, key: &str) -> Joined {
        let mut map = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(key) {
            return Joined::Follower(f.clone());
        }
        let fill = Arc::new(Fill::default());
        map.insert(key.to_owned(), fill.clone());
        Joined::Leader(fill)
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
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    async fn collect(fill: Arc<Fill>, start: u64, end: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = std::pin::pin!(fill.stream(start, end));
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.expect("chunk"));
        }
        out
    }

    #[tokio::test]
    async fn readers_follow_the_stream_from_any_offset() {
        let fill = Arc::new(Fill::default());
        let whole = tokio::spawn(collect(fill.clone(), 0, None));
        let middle = tokio::spawn(collect(fill.clone(), 3, Some(8)));
        fill.set_head(Ok(FillHead {
            direct: None,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            shareable: true,
            variant: String::new(),
        }));
        for part in ["abcd", "efg", "hij"] {
            fill.push(Bytes::from(part));
            tokio::task::yield_now().await;
        }
        fill.finish(Ok(()));
        assert_eq!(whole.await.expect("join"), b"abcdefghij");
        assert_eq!(middle.await.expect("join"), b"defgh");
        assert_eq!(collect(fill.clone(), 9, None).await, b"j");
        assert_eq!(fill.body().await.expect("body"), Bytes::from("abcdefghij"));
    }

    #[tokio::test]
    async fn a_failed_fetch_fails_its_readers() {
        let fill = Arc::new(Fill::default());
        fill.push(Bytes::from("ab"));
        fill.finish(Err("origin reset".into()));
        let mut s = std::pin::pin!(fill.clone().stream(0, None));
        assert_eq!(
            s.next().await.expect("data").expect("ok"),
            Bytes::from("ab")
        );
        assert!(s.next().await.expect("error").is_err());
        assert!(s.next().await.is_none());
    }

    #[test]
    fn one_leader_per_key() {
        let inflight = Inflight::default();
        let Joined::Leader(a) = inflight.join("k") else {
            panic!("first must lead")
        };
        assert!(matches!(inflight.join("k"), Joined::Follower(_)));
        inflight.done("k", &a);
        assert!(matches!(inflight.join("k"), Joined::Leader(_)));
    }
}
