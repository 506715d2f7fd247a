//! Large objects in fixed-size slices (like nginx's slice module).
//!
//! A client's `GET` with a `Range` header for an object that is not cached whole is served
//! from *slices*: slice `k` holds the bytes `k*S ..= (k+1)*S - 1` of the object (`S` is
//! [`crate::node::Edge::slice_bytes`]) and is cached under [`slice_key`] (the object's key,
//! [`SLICE_SEPARATOR`], `slice=k`; the separator is an ASCII control character, which
//! `cache::key` always escapes, so no object key contains it). Each slice is fetched from
//! upstream with exactly `Range: bytes=kS-(k+1)S-1`, collapsed per slice key through
//! [`crate::cache::fill::Inflight`] like whole-object fills, and stored as the upstream's
//! 206 (its `Content-Range` gives the object's total length) only when its body arrived
//! complete with exactly the length its `Content-Range` announced. So a range request for
//! a cold 1 GiB object fetches only the slices it needs, a fill holds at most one slice in
//! memory, and a client that goes away leaves no partial slice (the fill runs in its own
//! task, and a fill cut short stores nothing).
//!
//! Serving: the slice holding the first requested byte (slice 0 for a suffix range) is
//! opened first; its headers give the total length and the object's headers, against which
//! the `Range` (and `If-Range`) is evaluated by the range responder
//! ([`crate::range::Ranged`]): 206 (one range, or `multipart/byteranges`), 416, or —
//! `If-Range` not matching — the whole object as 200; the body's pieces are then streamed
//! in order, each span read slice by slice. `X-Cache` is HIT when every needed slice was cached.
//! Every slice must carry the same total length, `ETag` and `Last-Modified` as the first
//! one: on a mismatch the object changed between slices, every slice of the key is
//! dropped and the response is cut off (never spliced from two versions); the next request
//! starts over.
//!
//! A slice fill (`SliceFill`) runs in phases like a whole-object one (`crate::proxy`),
//! through the same upstream fetch, 304 merge and body pump (`crate::fetch`): reuse a
//! slice stored meanwhile, fetch, freshen (304), check that the 206 is exactly the slice,
//! decide (storable as the whole object would be), pump, store.
//!
//! Special answers to a slice request: a 206 covering the whole object (objects no larger
//! than one slice) is stored as the whole object (200) under the object's key; a 416 is
//! passed on; any other status (200 from an origin without range support, 404, 5xx…) makes
//! the proxy go its usual whole-object way (one more upstream request).
//!
//! A whole-object GET whose response is too large to store whole
//! ([`crate::proxy::MAX_OBJECT_BYTES`]) is cut into slices as it streams ([`Slicer`]), so
//! later range requests hit. A plain `GET` (no `Range`) of an object held only as slices
//! is served whole from them (missing slices fetched as slices), not fetched whole.
//!
//! Freshness: each slice carries the freshness of its own response, computed as for a 200
//! with the same headers, and is treated like a whole object: within
//! `stale-while-revalidate` it is served stale while one background fetch revalidates it;
//! otherwise a stale slice is revalidated with a conditional range request
//! (`If-None-Match`/`If-Modified-Since` from the slice), a matching 304 freshening the
//! stored slice without moving its bytes again, and `stale-if-error` serving it when the
//! upstream fails.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use tokio::sync::mpsc;

use crate::body::{self, Body};
use crate::cache::fill::{Fill, FillHead, Joined};
use crate::cache::policy::{self, Evaluation, Freshness, RequestCacheControl, RuleOverride};
use crate::cache::store::{CachedResponse, Storage};
use crate::fetch;
use crate::node::Edge;
use crate::range::{self, Piece, RangeRequest, Ranged};
use crate::upstream;

/// Default slice size: 1 MiB.
pub const DEFAULT_SLICE_BYTES: u64 = 1024 * 1024;

/// Separates an object's key from the slice suffix in a slice key.
pub const SLICE_SEPARATOR: char = '\u{1}';

/// The cache key of slice `k` of the object cached under `key`.
pub fn slice_key(key: &str, k: u64) -> String {
    format!("{key}{SLICE_SEPARATOR}slice={k}")
}

/// The object key of a slice key (the key itself for any other key).
pub fn object_key(key: &str) -> &str {
    key.split_once(SLICE_SEPARATOR).map_or(key, |(k, _)| k)
}

/// Removes every slice stored for the object `key`; returns how many. The candidates are
/// the keys of the object's service and host (the purge index), not every key.
pub fn drop_slices(store: &dyn Storage, key: &str) -> usize {
    let prefix = format!("{key}{SLICE_SEPARATOR}slice=");
    let Some(bucket) = crate::cache::key::key_host_bucket(key) else {
        return 0;
    };
    let mut n = 0;
    for k in store.host_keys(&bucket) {
        if k.starts_with(&prefix) {
            store.remove(&k);
            n += 1;
        }
    }
    n
}

/// `Content-Range: bytes a-b/total` of a 206.
pub fn parse_content_range(headers: &HeaderMap) -> Option<(u64, u64, u64)> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, total) = (
        a.trim().parse::<u64>().ok()?,
        b.trim().parse::<u64>().ok()?,
        total.trim().parse::<u64>().ok()?,
    );
    (a <= b && b < total).then_some((a, b, total))
}

/// `bytes */total` of a 416.
fn unsatisfied_length(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    v.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

/// Whether a client's `Range` is worth slicing for: a syntactically usable `bytes=` range
/// set (a malformed one is ignored, and so served whole by the usual path).
pub fn wants_slices(req: &HeaderMap) -> bool {
    if !req.contains_key(header::RANGE) {
        return false;
    }
    let mut probe = req.clone();
    probe.remove(header::IF_RANGE);
    range::parse(&probe, &HeaderMap::new(), u64::MAX) != RangeRequest::Full
}

/// The first byte the client asks for, when its first range has an absolute start.
fn first_start(req: &HeaderMap) -> Option<u64> {
    let v = req.get(header::RANGE)?.to_str().ok()?;
    let spec = v.trim().strip_prefix("bytes=")?;
    let first = spec.split(',').map(str::trim).find(|p| !p.is_empty())?;
    let (a, _) = first.split_once('-')?;
    a.trim().parse().ok()
}

/// What fetching slices for one client request needs.
pub struct SliceRequest {
    pub edge: Arc<Edge>,
    pub targets: Vec<upstream::Target>,
    pub pq: String,
    /// Headers for upstream: forwarding headers added, `Range` and conditionals removed.
    pub upstream_headers: HeaderMap,
    /// The client's request headers.
    pub req_headers: HeaderMap,
    /// The object's cache key.
    pub key: String,
    pub rule: RuleOverride,
    /// The service's counters (the body bytes received are counted there).
    pub usage: Arc<crate::usage::UsageCounters>,
}

/// What [`respond`] decided.
pub enum Answer {
    /// Served from slices (`true`: every slice needed was cached).
    Served(Response<Body>, bool),
    /// The upstream does not answer with slices: take the usual whole-object way.
    Fallback,
    /// The upstream failed.
    Failed(String),
}

/// A slice to read from.
#[derive(Clone)]
enum Source {
    Stored(Arc<CachedResponse>),
    Filling(HeaderMap, Arc<Fill>),
}

impl Source {
    fn headers(&self) -> &HeaderMap {
        match self {
            Source::Stored(s) => &s.headers,
            Source::Filling(h, _) => h,
        }
    }
}

enum Opened {
    Slice(Source),
    /// The upstream's answer was not a slice.
    NotSlice(StatusCode, HeaderMap),
    Failed(String),
}

/// What the store holds under a slice key, as this request may use it.
enum Held {
    Fresh(Arc<CachedResponse>),
    /// Stale within `stale-while-revalidate`: served, and refreshed in the background.
    StaleWhileRevalidate(Arc<CachedResponse>),
    /// Stale: revalidate; serve it if the upstream fails and `stale_if_error` allows.
    Stale {
        stored: Arc<CachedResponse>,
        stale_if_error: bool,
    },
    Nothing,
}

fn held(req: &SliceRequest, skey: &str) -> Held {
    held_by(&req.edge, &req.req_headers, skey)
}

fn held_by(edge: &Edge, req_headers: &HeaderMap, skey: &str) -> Held {
    let Some(entry) = edge.store.get(skey) else {
        return Held::Nothing;
    };
    let Some(s) = entry.variant(&policy::vary_signature(&entry.vary, req_headers)) else {
        return Held::Nothing;
    };
    match policy::evaluate(
        &s.freshness,
        &RequestCacheControl::parse(req_headers),
        SystemTime::now(),
    ) {
        Evaluation::Fresh => Held::Fresh(s.clone()),
        Evaluation::StaleWhileRevalidate => Held::StaleWhileRevalidate(s.clone()),
        Evaluation::Revalidate { stale_if_error } => Held::Stale {
            stored: s.clone(),
            stale_if_error,
        },
    }
}

/// The stored slice under `skey` if it may be served now (fresh, or stale while it is
/// revalidated).
fn lookup(req: &SliceRequest, skey: &str) -> Option<Arc<CachedResponse>> {
    match held(req, skey) {
        Held::Fresh(s) | Held::StaleWhileRevalidate(s) => Some(s),
        Held::Stale { .. } | Held::Nothing => None,
    }
}

/// Whether a plain `GET` of the object `key` can be assembled from its slices: its first
/// slice is stored and may be served (the rest are fetched as slices when missing).
/// Cheap when the node holds no slices at all (no lookup).
pub fn held_as_slices(edge: &Edge, key: &str, req_headers: &HeaderMap) -> bool {
    edge.holds_slices.load(std::sync::atomic::Ordering::Relaxed)
        && matches!(
            held_by(edge, req_headers, &slice_key(key, 0)),
            Held::Fresh(_) | Held::StaleWhileRevalidate(_)
        )
}

/// A stale slice a fill revalidates, and whether it may be served when the upstream fails.
type Revalidating = Option<(Arc<CachedResponse>, bool)>;

/// Opens slice `k`: from the store, or from the (joined or started) fill.
async fn open(req: &Arc<SliceRequest>, k: u64) -> Opened {
    let skey = slice_key(&req.key, k);
    let stale = match held(req, &skey) {
        Held::Fresh(s) => return Opened::Slice(Source::Stored(s)),
        Held::StaleWhileRevalidate(s) => {
            // One background revalidation (none if a fetch of this slice is in flight).
            if let Some(fill) = req.edge.inflight.lead(&skey) {
                spawn_fill(req.clone(), k, skey, fill, true, Some((s.clone(), false)));
            }
            return Opened::Slice(Source::Stored(s));
        }
        Held::Stale {
            stored,
            stale_if_error,
        } => Some((stored, stale_if_error)),
        Held::Nothing => None,
    };
    // Unbounded by the fill buffer: a slice fill holds at most one slice.
    let (fill, leader) = match req.edge.inflight.join_bounded(&skey, u64::MAX) {
        Joined::Leader(r) => {
            spawn_fill(req.clone(), k, skey.clone(), r.fill().clone(), true, stale);
            (r.fill().clone(), true)
        }
        Joined::Follower(r) => (r.fill().clone(), false),
    };
    let mut head = fill.head().await;
    let foreign = |h: &FillHead| {
        !h.shareable
            || policy::vary_fields(&h.headers)
                .map(|f| policy::vary_signature(&f, &req.req_headers))
                .ok()
                .as_ref()
                != Some(&h.variant)
    };
    let mut fill = fill;
    if !leader && matches!(&head, Ok(h) if foreign(h)) {
        // Another client's response that may not be shared: fetch this one's own.
        let own = Arc::new(Fill::default());
        spawn_fill(req.clone(), k, skey, own.clone(), false, None);
        head = own.head().await;
        fill = own;
    }
    match head {
        Err(e) => Opened::Failed(e),
        Ok(h) if h.status == StatusCode::PARTIAL_CONTENT => {
            Opened::Slice(Source::Filling(h.headers, fill))
        }
        Ok(h) => Opened::NotSlice(h.status, h.headers),
    }
}

fn spawn_fill(
    req: Arc<SliceRequest>,
    k: u64,
    skey: String,
    fill: Arc<Fill>,
    registered: bool,
    stale: Revalidating,
) {
    tokio::spawn(async move {
        let job = SliceFill {
            req: &req,
            fill: &fill,
            k,
            skey: &skey,
            stale,
        };
        job.run().await;
        if registered {
            req.edge.inflight.done(&skey, &fill);
        }
    });
}

/// One slice fill: slice `k` of the object fetched into `fill`, phase by phase
/// ([`SliceFill::run`]).
struct SliceFill<'a> {
    req: &'a SliceRequest,
    fill: &'a Fill,
    k: u64,
    /// The slice's cache key.
    skey: &'a str,
    /// The stale stored slice this fill revalidates.
    stale: Revalidating,
}

/// A 206 that [`SliceFill::check`] found to be exactly the slice asked for.
struct SliceBytes {
    /// Its length (the object's end may cut the last slice short).
    expected: u64,
    /// The object's length.
    total: u64,
}

impl SliceFill<'_> {
    /// Fetches the slice and stores it when it arrived complete; with `stale`, a
    /// conditional request that a matching 304 answers by freshening the stored slice.
    /// Phases: [`reuse_stored`](Self::reuse_stored), [`fetch`](Self::fetch),
    /// [`freshen`](Self::freshen) (a 304), else [`check`](Self::check),
    /// [`decide`](Self::decide), [`pump`](Self::pump) and [`store`](Self::store). The
    /// fill is finished whichever way it ends.
    async fn run(&self) {
        let epoch = self
            .req
            .edge
            .purge_epoch
            .load(std::sync::atomic::Ordering::Acquire);
        if self.reuse_stored() {
            return;
        }
        let Some(mut fetched) = self.fetch().await else {
            return;
        };
        if fetched.head.status == StatusCode::NOT_MODIFIED
            && let Some((s, _)) = &self.stale
        {
            self.freshen(s, &fetched, epoch);
            return;
        }
        let Some(bytes) = self.check(&fetched) else {
            return;
        };
        let (params, object_headers) = self.decide(&mut fetched);
        let pumped = self.pump(&mut fetched, &bytes, params.is_some()).await;
        let storing = params.map(|p| (p, object_headers));
        self.store(fetched, &bytes, storing, pumped, epoch);
    }

    /// A fill that ended between the lookup and the join has stored the slice already:
    /// hands it to this fill's readers (`true`: done).
    fn reuse_stored(&self) -> bool {
        match held(self.req, self.skey) {
            Held::Fresh(s) => {
                self.fill.complete_from(&s, Vec::new());
                true
            }
            _ => false,
        }
    }

    /// The first and last byte of the slice.
    fn span(&self) -> (u64, u64) {
        let size = self.req.edge.slice_bytes.max(1);
        let start = self.k.saturating_mul(size);
        (start, start.saturating_add(size - 1))
    }

    /// The upstream's answer to `Range: bytes=<the slice>` (`crate::fetch::fetch`,
    /// conditional when revalidating); `None`: it failed, and the fill was finished with
    /// the error or, within `stale-if-error`, with the stale slice (RFC 5861 §4).
    async fn fetch(&self) -> Option<fetch::Fetched> {
        let req = self.req;
        let (start, end) = self.span();
        let mut headers = req.upstream_headers.clone();
        if let Ok(v) = HeaderValue::from_str(&format!("bytes={start}-{end}")) {
            headers.insert(header::RANGE, v);
        }
        let revalidating = self.stale.as_ref().map(|(s, _)| &s.headers);
        match fetch::fetch(&req.edge, &req.targets, &req.pq, &headers, revalidating).await {
            Ok(f) => Some(f),
            Err(e) => {
                match &self.stale {
                    Some((s, true)) => self.fill.complete_from(s, Vec::new()),
                    _ => self.fill.finish(Err(e.to_string())),
                }
                None
            }
        }
    }

    /// A 304 for the stale slice `old`: freshened with its headers and stored if it may
    /// still be (else dropped), and served to the fill's readers.
    fn freshen(&self, old: &Arc<CachedResponse>, not_modified: &fetch::Fetched, epoch: u64) {
        let req = self.req;
        // A slice is as storable, and as fresh, as the whole response would be; the 304's
        // cookie goes to no one.
        let served = fetch::freshen(old, not_modified, &req.req_headers, &req.rule, |merged| {
            (StatusCode::OK, object_headers(merged))
        })
        .updated;
        match &served {
            Some(updated) => crate::proxy::store(
                &req.edge,
                self.skey,
                &req.req_headers,
                updated.clone(),
                epoch,
            ),
            None => req.edge.store.remove(self.skey),
        }
        self.fill
            .complete_from(served.as_ref().unwrap_or(old), Vec::new());
    }

    /// Whether the response is a 206 with exactly this slice's bytes; if not, the fill is
    /// finished (another status is published as its head, unread, for the proxy to go the
    /// usual way).
    fn check(&self, fetched: &fetch::Fetched) -> Option<SliceBytes> {
        let head = &fetched.head;
        if head.status != StatusCode::PARTIAL_CONTENT {
            self.fill.set_head(Ok(FillHead {
                direct: None,
                status: head.status,
                headers: head.headers.clone(),
                shareable: false,
                variant: String::new(),
                leader_only: Vec::new(),
            }));
            self.fill
                .finish(Err("the upstream did not answer with a slice".into()));
            return None;
        }
        let Some((a, b, total)) = parse_content_range(&head.headers) else {
            self.fill.finish(Err(
                "the upstream sent a 206 without a usable Content-Range".into(),
            ));
            return None;
        };
        let (start, end) = self.span();
        if a != start || b != end.min(total - 1) {
            self.fill.finish(Err(format!(
                "the upstream sent bytes {a}-{b} for slice bytes {start}-{end}"
            )));
            return None;
        }
        Some(SliceBytes {
            expected: b - a + 1,
            total,
        })
    }

    /// Whether the slice may be stored (as the whole response would be), and publishes
    /// its head: a stored slice is shared, without `Set-Cookie` and the fields a
    /// qualified no-cache/private lists. Returns the storage parameters and the object's
    /// headers (for a slice that is the whole object).
    fn decide(&self, fetched: &mut fetch::Fetched) -> (Option<policy::Storable>, HeaderMap) {
        let req = self.req;
        let head = &mut fetched.head;
        let mut object_headers = object_headers(&head.headers);
        // A slice is as storable, and as fresh, as the whole response would be.
        let params = match policy::storability(
            &Method::GET,
            &req.req_headers,
            StatusCode::OK,
            &object_headers,
            &req.rule,
            fetched.response_time,
        ) {
            policy::Storability::Yes(p) => Some(p),
            policy::Storability::No(_) => None,
        };
        if params.is_some() {
            // Shared and stored (a rule allows cookies, or the origin listed Set-Cookie in
            // a qualified no-cache/private): no client gets another's cookie.
            head.headers.remove(header::SET_COOKIE);
            object_headers.remove(header::SET_COOKIE);
            policy::remove_fields_not_to_store(&mut head.headers, &req.rule);
            policy::remove_fields_not_to_store(&mut object_headers, &req.rule);
        }
        self.fill.set_head(Ok(FillHead {
            direct: None,
            leader_only: Vec::new(),
            status: StatusCode::PARTIAL_CONTENT,
            headers: head.headers.clone(),
            shareable: params.is_some(),
            variant: policy::vary_fields(&head.headers)
                .map(|f| policy::vary_signature(&f, &req.req_headers))
                .unwrap_or_default(),
        }));
        (params, object_headers)
    }

    /// Streams the slice to the fill's readers (exactly its expected bytes), keeping a
    /// copy to store when `keep` (`crate::fetch::pump`).
    async fn pump(
        &self,
        fetched: &mut fetch::Fetched,
        bytes: &SliceBytes,
        keep: bool,
    ) -> fetch::Pumped {
        let edge = &self.req.edge;
        // The copy kept to store the slice, within the node's store-buffer budget (when
        // that is spent, the slice is served but not stored).
        let copy = keep.then(|| {
            crate::cache::budget::StoreBuffer::new(edge.store_buffers.clone(), Some(bytes.expected))
        });
        let mut sink = SliceSink {
            fill: self.fill,
            expected: bytes.expected,
        };
        let pumped = fetch::pump(edge, fetched, copy, bytes.expected, &mut sink).await;
        // Bytes from the origin enter the platform (from a parent, they already did).
        if fetched.target.tier != crate::upstream::Tier::Parent {
            self.req.usage.received(pumped.received);
        }
        pumped
    }

    /// Stores the slice when it arrived complete and may be stored (`storing`: its
    /// storage parameters and the object's headers); a slice that is the whole object is
    /// stored as the object (200). Finishes the fill.
    fn store(
        &self,
        fetched: fetch::Fetched,
        bytes: &SliceBytes,
        storing: Option<(policy::Storable, HeaderMap)>,
        pumped: fetch::Pumped,
        epoch: u64,
    ) {
        let req = self.req;
        let fetch::Pumped { result, copy, .. } = pumped;
        if let (Ok(()), Some((params, object_headers)), Some(body)) = (&result, storing, copy) {
            let whole = self.k == 0 && bytes.expected == bytes.total;
            let (status, headers, key) = if whole {
                (StatusCode::OK, object_headers, req.key.as_str())
            } else {
                (StatusCode::PARTIAL_CONTENT, fetched.head.headers, self.skey)
            };
            let (request_time, response_time) = (fetched.request_time, fetched.response_time);
            let response = CachedResponse {
                status,
                freshness: Freshness::new(
                    &params,
                    policy::initial_age(&headers, request_time, response_time),
                    response_time,
                ),
                tags: crate::proxy::surrogate_keys(&headers),
                headers,
                body: body.into_bytes(),
                variant: String::new(),
                stored_at: response_time,
            };
            crate::proxy::store(&req.edge, key, &req.req_headers, response, epoch);
        }
        self.fill.finish(result);
    }
}

/// The headers of the whole object, from those of one of its slices: no `Content-Range`,
/// and the `Content-Length` of the whole (when the `Content-Range` gives it).
fn object_headers(slice: &HeaderMap) -> HeaderMap {
    let mut headers = slice.clone();
    headers.remove(header::CONTENT_RANGE);
    if let Some((_, _, total)) = parse_content_range(slice) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
    }
    headers
}

/// Where a slice fill's body goes: to the fill's readers, exactly the `expected` bytes
/// its `Content-Range` announced.
struct SliceSink<'a> {
    fill: &'a Fill,
    expected: u64,
}

impl fetch::Sink for SliceSink<'_> {
    async fn take(&mut self, data: Bytes, received: u64) -> Result<(), String> {
        if received > self.expected {
            return Err("slice longer than its Content-Range".into());
        }
        self.fill.push(data).await;
        Ok(())
    }

    fn end(&mut self, received: u64) -> Result<(), String> {
        if received == self.expected {
            Ok(())
        } else {
            Err(format!(
                "slice cut short: {received} of {} bytes",
                self.expected
            ))
        }
    }
}

/// The headers that must agree between slices of one object.
fn version(headers: &HeaderMap) -> (Option<HeaderValue>, Option<HeaderValue>, Option<u64>) {
    (
        headers.get(header::ETAG).cloned(),
        headers.get(header::LAST_MODIFIED).cloned(),
        parse_content_range(headers).map(|(_, _, t)| t),
    )
}

/// Serves a client's range request from slices. `cache_status` makes the `Cache-Status`
/// value (from its parameters).
pub async fn respond(req: Arc<SliceRequest>, cache_status: impl Fn(&str) -> HeaderValue) -> Answer {
    let size = req.edge.slice_bytes.max(1);
    let mut probe_k = first_start(&req.req_headers).map_or(0, |s| s / size);
    let mut opened = open(&req, probe_k).await;
    if probe_k != 0
        && matches!(
            opened,
            Opened::NotSlice(StatusCode::RANGE_NOT_SATISFIABLE, _)
        )
    {
        // The first range starts past the end; another one may not: learn the length.
        probe_k = 0;
        opened = open(&req, 0).await;
    }
    let probe = match opened {
        Opened::Slice(s) => s,
        Opened::Failed(e) => return Answer::Failed(e),
        Opened::NotSlice(StatusCode::RANGE_NOT_SATISFIABLE, h) => {
            let Some(total) = unsatisfied_length(&h) else {
                return Answer::Fallback;
            };
            let mut headers = HeaderMap::new();
            for name in [header::CACHE_CONTROL, header::ETAG, header::LAST_MODIFIED] {
                if let Some(v) = h.get(&name) {
                    headers.insert(name, v.clone());
                }
            }
            return Answer::Served(
                unsatisfiable(Ranged::unsatisfiable(headers, total), &cache_status),
                false,
            );
        }
        Opened::NotSlice(..) => return Answer::Fallback,
    };
    let Some((_, _, total)) = parse_content_range(probe.headers()) else {
        return Answer::Failed("slice without Content-Range".into());
    };
    let now = SystemTime::now();
    let mut headers = probe.headers().clone();
    headers.remove(header::CONTENT_RANGE);
    headers.remove(header::CONTENT_LENGTH);
    if policy::client_not_modified(&req.req_headers, &headers) {
        // The client has this representation: 304 (RFC 9110 §13.2.2, before Range).
        headers.remove(header::CONTENT_TYPE);
        headers.insert(header::AGE, HeaderValue::from(0));
        let mut res = Response::new(body::empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        *res.headers_mut() = headers;
        return Answer::Served(res, matches!(probe, Source::Stored(_)));
    }
    let ranged = Ranged::new(&req.req_headers, StatusCode::OK, headers, total);
    if ranged.status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Answer::Served(unsatisfiable(ranged, &cache_status), false);
    }
    if ranged.status == StatusCode::OK && total == 0 {
        return Answer::Fallback;
    }
    let hit = matches!(probe, Source::Stored(_))
        && ranged.spans().iter().all(|&(s, e)| {
            (s / size..=e / size)
                .all(|k| k == probe_k || lookup(&req, &slice_key(&req.key, k)).is_some())
        });
    let age = match &probe {
        Source::Stored(s) => s.freshness.age(now).as_secs(),
        Source::Filling(..) => 0,
    };
    let Ranged {
        status,
        mut headers,
        pieces,
    } = ranged;
    headers.insert(header::AGE, HeaderValue::from(age));
    headers.append(
        HeaderName::from_static("cache-status"),
        cache_status(if hit {
            "hit; detail=slices"
        } else {
            "fwd=uri-miss; detail=slices"
        }),
    );
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(send_pieces(req, pieces, (probe_k, probe), tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut res = Response::new(body::stream(stream));
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Answer::Served(res, hit)
}

/// Streams `pieces` into `tx`, opening slices one at a time; stops when the client is gone.
async fn send_pieces(
    req: Arc<SliceRequest>,
    pieces: Vec<Piece>,
    probe: (u64, Source),
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let size = req.edge.slice_bytes.max(1);
    let expected = version(probe.1.headers());
    let mut current = probe;
    let fail = |why: String| std::io::Error::other(why);
    for piece in pieces {
        let (s, e) = match piece {
            Piece::Literal(b) => {
                if tx.send(Ok(b)).await.is_err() {
                    return;
                }
                continue;
            }
            Piece::Span(s, e) => (s, e),
        };
        for k in s / size..=e / size {
            if current.0 != k {
                let src = match open(&req, k).await {
                    Opened::Slice(src) => src,
                    Opened::Failed(why) => {
                        let _ = tx.send(Err(fail(why))).await;
                        return;
                    }
                    Opened::NotSlice(status, _) => {
                        let _ = tx
                            .send(Err(fail(format!("slice {k} answered {status}"))))
                            .await;
                        return;
                    }
                };
                if version(src.headers()) != expected {
                    // The object changed between slices: never splice two versions.
                    drop_slices(req.edge.store.as_ref(), &req.key);
                    tracing::warn!(key = %req.key, slice = k, "object changed between slices: slices dropped");
                    let _ = tx
                        .send(Err(fail("the object changed between slices".into())))
                        .await;
                    return;
                }
                current = (k, src);
            }
            let base = k * size;
            let from = s.max(base) - base;
            let to = e.min(base + size - 1) - base + 1;
            if !send_span(&current.1, from, to, &tx).await {
                return;
            }
        }
    }
}

/// Sends the bytes `[from, to)` of a slice; false when the client is gone or it failed.
async fn send_span(
    src: &Source,
    from: u64,
    to: u64,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> bool {
    match src {
        Source::Stored(s) => {
            let len = s.body.len() as u64;
            if to > len {
                let _ = tx
                    .send(Err(std::io::Error::other("stored slice too short")))
                    .await;
                return false;
            }
            tx.send(Ok(s.body.slice(from as usize..to as usize)))
                .await
                .is_ok()
        }
        Source::Filling(_, fill) => {
            use futures::StreamExt;
            // Slice fills are unbounded (one slice at most), so never sealed.
            let Some(reader) = fill.reader() else {
                let _ = tx
                    .send(Err(std::io::Error::other("slice fetch no longer buffered")))
                    .await;
                return false;
            };
            let mut stream = std::pin::pin!(reader.stream(from, Some(to)));
            let mut sent = from;
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if let Ok(b) = &item {
                    sent += b.len() as u64;
                }
                if tx.send(item).await.is_err() || failed {
                    return false;
                }
            }
            if sent != to {
                let _ = tx
                    .send(Err(std::io::Error::other("slice fetch cut short")))
                    .await;
                return false;
            }
            true
        }
    }
}

/// A 416 ([`Ranged::unsatisfiable`]) served from slices: no body.
fn unsatisfiable(ranged: Ranged, cache_status: &impl Fn(&str) -> HeaderValue) -> Response<Body> {
    let Ranged {
        status,
        mut headers,
        ..
    } = ranged;
    headers.append(
        HeaderName::from_static("cache-status"),
        cache_status("detail=slices"),
    );
    let mut res = Response::new(body::empty());
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Cuts a whole-object response streaming through a fill into slices, storing each one
/// when its bytes are complete (the last one at the object's end).
pub struct Slicer {
    size: u64,
    total: u64,
    next: u64,
    /// The slice being filled, within the node's store-buffer budget (`None` before the
    /// first byte of each slice).
    buf: Option<crate::cache::budget::StoreBuffer>,
    headers: HeaderMap,
    params: policy::Storable,
    request_time: SystemTime,
    response_time: SystemTime,
}

impl Slicer {
    /// A slicer for a 200 of `total` bytes with `headers`, storable with `params`.
    pub fn new(
        size: u64,
        total: u64,
        headers: HeaderMap,
        params: policy::Storable,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Slicer {
        Slicer {
            size: size.max(1),
            total,
            next: 0,
            buf: None,
            headers,
            params,
            request_time,
            response_time,
        }
    }

    /// Takes the next body bytes; stores the slices they complete. Returns false when the
    /// body is longer than announced, or the node's store-buffer budget has no room for
    /// the slice (nothing more is stored).
    pub fn push(
        &mut self,
        edge: &Edge,
        key: &str,
        req_headers: &HeaderMap,
        epoch: u64,
        mut data: &[u8],
    ) -> bool {
        while !data.is_empty() {
            let start = self.next * self.size;
            if start >= self.total {
                return false;
            }
            let slice_len = self.size.min(self.total - start);
            let buf = self.buf.get_or_insert_with(|| {
                crate::cache::budget::StoreBuffer::new(edge.store_buffers.clone(), Some(slice_len))
            });
            let room = (slice_len - buf.len()) as usize;
            let take = room.min(data.len());
            if !buf.push(&data[..take]) {
                self.buf = None;
                return false;
            }
            data = &data[take..];
            if buf.len() == slice_len {
                let Some(buf) = self.buf.take() else {
                    return false;
                };
                let body = buf.into_bytes();
                let mut headers = self.headers.clone();
                headers.insert(
                    header::CONTENT_RANGE,
                    value(&range::content_range(
                        start,
                        start + slice_len - 1,
                        self.total,
                    )),
                );
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(slice_len));
                let response = CachedResponse {
                    status: StatusCode::PARTIAL_CONTENT,
                    freshness: Freshness::new(
                        &self.params,
                        policy::initial_age(&headers, self.request_time, self.response_time),
                        self.response_time,
                    ),
                    tags: crate::proxy::surrogate_keys(&headers),
                    headers,
                    body,
                    variant: String::new(),
                    stored_at: self.response_time,
                };
                crate::proxy::store(
                    edge,
                    &slice_key(key, self.next),
                    req_headers,
                    response,
                    epoch,
                );
                self.next += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_keys_map_back_to_their_object() {
        let k = slice_key("a.com/x?y=1 accept=gzip", 7);
        assert_eq!(object_key(&k), "a.com/x?y=1 accept=gzip");
        assert!(k.ends_with("\u{1}slice=7"));
        assert_eq!(object_key("a.com/x"), "a.com/x");
    }

    #[test]
    fn content_range_parses() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-9/100"),
        );
        assert_eq!(parse_content_range(&h), Some((0, 9, 100)));
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-100/100"),
        );
        assert_eq!(parse_content_range(&h), None);
    }

    #[test]
    fn usable_ranges_are_sliced() {
        let mut h = HeaderMap::new();
        assert!(!wants_slices(&h));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=5-1"));
        assert!(!wants_slices(&h));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=-500"));
        assert!(wants_slices(&h));
        assert_eq!(first_start(&h), None);
        h.insert(header::RANGE, HeaderValue::from_static("bytes=70000-,0-1"));
        assert_eq!(first_start(&h), Some(70_000));
    }
}
