//! The request lifecycle of the edge proxy, one phase after another:
//!
//! 1. **route**: the Host (or `:authority`) selects the tenant's service; unknown hosts get
//!    404 — the edge is never an open proxy. The artefact relay's host answers only the
//!    platform's nodes, and only for artefacts (`crate::relay::check`).
//! 2. **classify**: GET/HEAD go through the cache unless a cache rule bypasses it; other
//!    methods pass through and, on success, invalidate the target URL (RFC 9111 §4.4).
//! 3. **lookup**: the cache key (in the service's and scheme's namespace: host, path,
//!    query and headers as the service's rules say; URLs longer than
//!    `CacheLimits::max_url_bytes` pass through uncached)
//!    and the variant for the request's `Vary` fields; RFC 9111 decides whether the stored
//!    response is fresh, may be served stale while it is refreshed, or must be revalidated.
//! 4. **fill**: a miss (or revalidation) joins the one in-flight fetch for the key
//!    (`cache::fill`, a bounded buffer: a client too late for it fetches on its own). The
//!    leader runs it in its own task as a `FillJob`, phase by phase: `reuse_stored` (a
//!    fill that ended between lookup and join stored it already), `fetch` (the parent
//!    tier or the origins, through `crate::fetch`, conditional when revalidating),
//!    `freshen` (a matching 304), `decide` (storability, `Set-Cookie`, too big to store
//!    whole, shared or direct), `pump` (the body to the readers, a store copy, slices)
//!    and `store`. A response with `Set-Cookie` is shared and stored only under a
//!    `cache_set_cookie` rule (or when the origin lists it in a qualified
//!    `no-cache`/`private`), and then without the cookie (the client that fetched it alone
//!    gets it). The copy a fill keeps to store the body counts against the node's
//!    store-buffer budget (`cache::budget`): past it, the response is streamed to its
//!    clients but not stored.
//! 5. **respond**: conditional requests (304), ranges (206/416, built by the range
//!    responder `range::Ranged` from a stored body or a fill in progress), and the edge's
//!    headers: `Age`, `Via`, `X-Cache`, `Cache-Status` (RFC 9211).
//! 6. **log**: a JSON-able access log event and the Prometheus counters; the body bytes
//!    (usage, `sent_bytes`) are counted as the body is written (`body::counted`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{self, Body};
use crate::cache::fill::{Fill, FillHead, Joined, Reader};
use crate::cache::key;
use crate::cache::policy::{
    self, Evaluation, Freshness, RequestCacheControl, RuleOverride, Storability,
};
use crate::cache::store::{CachedResponse, Entry};
use crate::fetch;
use crate::node::Edge;
use crate::range::Ranged;
use crate::routes::ServiceRoute;
use crate::upstream::{self, strip_hop_by_hop};

/// Chunks buffered for the one reader of an unshared fill.
const DIRECT_CHUNKS: usize = 16;
/// How long an unshared fill waits for its reader to take a chunk before giving up on it.
const DIRECT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest response stored in the cache; larger ones are passed through unstored.
pub const MAX_OBJECT_BYTES: u64 = 64 * 1024 * 1024;

/// How the response was produced, for `X-Cache`, `Cache-Status`, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    Miss,
    /// Joined another client's fetch.
    Collapsed,
    /// Served stale while a refresh runs (RFC 5861 stale-while-revalidate).
    Stale,
    /// Served stale because the upstream failed (RFC 5861 stale-if-error).
    StaleIfError,
    Revalidated,
    Pass,
    Error,
}

impl CacheResult {
    /// How metering counts it: hit, miss or pass.
    pub fn served(self) -> crate::usage::Served {
        use crate::usage::Served;
        match self {
            CacheResult::Hit
            | CacheResult::Stale
            | CacheResult::StaleIfError
            | CacheResult::Revalidated => Served::Hit,
            CacheResult::Miss | CacheResult::Collapsed => Served::Miss,
            CacheResult::Pass | CacheResult::Error => Served::Pass,
        }
    }

    pub fn x_cache(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss | CacheResult::Collapsed => "MISS",
            CacheResult::Stale | CacheResult::StaleIfError => "STALE",
            CacheResult::Revalidated => "REVALIDATED",
            CacheResult::Pass => "PASS",
            CacheResult::Error => "ERROR",
        }
    }
}

struct Ctx {
    edge: Arc<Edge>,
    route: Arc<ServiceRoute>,
    /// The service's metering counters for the local address the client reached.
    meter: Arc<crate::usage::UsageCounters>,
    /// A child edge filling from this parent: the platform's own traffic, metered once,
    /// where the client was served. Only a mark from a node's address (or from loopback
    /// when the nodes are on one host) counts as one: the mark is no secret, and a client
    /// sending it from elsewhere is metered as any client.
    internal: bool,
    host: String,
    client: SocketAddr,
    /// The scheme the client used (see [`client_scheme`]).
    scheme: key::Scheme,
    started: Instant,
}

impl Ctx {
    /// The cache-key namespace of this request: its service and scheme.
    fn namespace(&self) -> String {
        key::namespace(&self.route.service.id, self.scheme)
    }
}

/// The scheme the client used: that of its connection, or, on a fetch from a child edge
/// (marked with [`crate::guard::PARENT_FETCH`], which the loop guard has checked), the
/// `X-Forwarded-Proto` the child sent, so that a parent keys and fetches an https client's
/// object as https, and an http client's as http even when the child reached the parent
/// over TLS. Trusting a forged mark is harmless: the object is then fetched from the
/// origin with the scheme claimed and stored under it, which is what it is.
fn client_scheme(headers: &HeaderMap, tls: bool) -> key::Scheme {
    let https = if headers.contains_key(&crate::guard::PARENT_FETCH) {
        headers
            .get("x-forwarded-proto")
            .map_or(tls, |v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    } else {
        tls
    };
    if https {
        key::Scheme::Https
    } else {
        key::Scheme::Http
    }
}

/// Handles one client request.
pub async fn handle(
    edge: Arc<Edge>,
    req: Request<Incoming>,
    client: SocketAddr,
    local: std::net::IpAddr,
    tls: bool,
) -> Response<Body> {
    // A request that already passed through this platform is a loop (`crate::guard`).
    if let Some(res) = crate::guard::refuse_loop(&edge, req.headers(), client) {
        return res;
    }
    let started = Instant::now();
    let host = req
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| crate::routes::strip_port(h).to_ascii_lowercase())
        })
        .unwrap_or_default();
    // One spelling per host (`:authority` keeps case; a trailing dot is the same name).
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let route = edge.routes.load().lookup(&host).cloned();
    let Some(route) = route else {
        let res = plain(
            &edge,
            StatusCode::NOT_FOUND,
            format!(
                "unknown host `{host}`: this Lingjing edge serves only the hostnames of services configured on the platform\n"
            ),
        );
        let access = Access {
            service: None,
            method: req.method(),
            host: &host,
            path: req.uri().path(),
            client,
            started,
        };
        log(&edge, &access, &res, CacheResult::Error);
        return res;
    };
    let ctx = Ctx {
        meter: route.usage.at(local),
        internal: req.headers().contains_key(&crate::guard::PARENT_FETCH)
            && edge.defence.may_be_peer(client.ip()),
        edge,
        route,
        host,
        client,
        scheme: client_scheme(req.headers(), tls),
        started,
    };
    let (parts, incoming) = req.into_parts();
    // Traffic defence: rules in force, and counting for detection (`crate::defence`).
    if let Some(res) = ctx.edge.defence.screen(
        &ctx.route.service.id,
        &ctx.route.defence,
        &parts,
        client.ip(),
    ) {
        let access = Access {
            service: Some(&ctx.route.service.id),
            method: &parts.method,
            host: &ctx.host,
            path: parts.uri.path(),
            client,
            started,
        };
        log(&ctx.edge, &access, &res, CacheResult::Error);
        return res;
    }
    // The artefact relay answers only the platform's nodes, only for artefacts
    // (`crate::relay`).
    if let Some(relay) = &ctx.route.relay
        && let Some(refusal) = crate::relay::check(
            relay,
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            client.ip(),
            ctx.internal,
        )
    {
        let mut res = plain(&ctx.edge, refusal.status, refusal.text);
        if refusal.status == StatusCode::METHOD_NOT_ALLOWED {
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        return finish(&ctx, &parts, res, CacheResult::Error);
    }
    let (res, result) = if parts.method == Method::GET || parts.method == Method::HEAD {
        cached(&ctx, &parts).await
    } else if ctx.route.service.bucket_origin().is_some() {
        let mut res = plain(
            &ctx.edge,
            StatusCode::METHOD_NOT_ALLOWED,
            "this site is served from a bucket: only GET and HEAD\n".to_owned(),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        (res, CacheResult::Error)
    } else {
        pass(&ctx, &parts, Some(body::incoming(incoming)), true).await
    };
    finish(&ctx, &parts, res, result)
}

/// Adds the edge's headers, counts and logs.
fn finish(
    ctx: &Ctx,
    parts: &Parts,
    mut res: Response<Body>,
    result: CacheResult,
) -> Response<Body> {
    let h = res.headers_mut();
    // Targeted cache-control fields (RFC 9213) are for this platform's caches: a child edge
    // (`PARENT_FETCH`) gets them, a client only when the service says so.
    if !ctx.route.service.forward_targeted_cache_control
        && !parts.headers.contains_key(&crate::guard::PARENT_FETCH)
    {
        for name in ctx.route.targeted.iter() {
            h.remove(name);
        }
    }
    h.append(header::VIA, ctx.edge.via.clone());
    h.insert(
        HeaderName::from_static("x-cache"),
        HeaderValue::from_static(result.x_cache()),
    );
    let service = &ctx.route.service.id;
    ctx.route.counters.request(result.x_cache());
    let served = result.served();
    let internal = ctx.internal;
    if !internal {
        ctx.meter.request(served);
    }
    // Body bytes are counted as they are written, whatever the framing: a chunked body
    // counts, an aborted download counts what was sent.
    let usage = ctx.meter.clone();
    let sent_bytes = ctx.route.counters.bytes_out.clone();
    let watch = ctx.route.defence.clone();
    watch.answered(res.status());
    let res = res.map(|b| {
        body::counted(b, move |n| {
            if !internal {
                usage.sent(served, n);
            }
            sent_bytes.inc_by(n);
            watch.sent(n);
        })
    });
    if !matches!(result, CacheResult::Pass | CacheResult::Error) {
        use std::sync::atomic::Ordering;
        ctx.edge.metrics.lookups.fetch_add(1, Ordering::Relaxed);
        if matches!(result, CacheResult::Hit | CacheResult::Stale) {
            ctx.edge.metrics.hits.fetch_add(1, Ordering::Relaxed);
        }
    }
    let access = Access {
        service: Some(service),
        method: &parts.method,
        host: &ctx.host,
        path: parts.uri.path(),
        client: ctx.client,
        started: ctx.started,
    };
    log(&ctx.edge, &access, &res, result);
    res
}

/// What the access log says of a request, besides its response.
struct Access<'a> {
    /// The service, when the host named one.
    service: Option<&'a str>,
    method: &'a Method,
    host: &'a str,
    path: &'a str,
    client: SocketAddr,
    started: Instant,
}

fn log(edge: &Edge, access: &Access<'_>, res: &Response<Body>, result: CacheResult) {
    let Access {
        service,
        method,
        host,
        path,
        client,
        started,
    } = *access;
    if !edge.access_log {
        return;
    }
    tracing::info!(
        target: "lingjing::access",
        node = %edge.node_id,
        client = %client.ip(),
        method = %method,
        host,
        path,
        status = res.status().as_u16(),
        cache = result.x_cache(),
        service = service.unwrap_or("-"),
        length = res.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).unwrap_or("-"),
        duration_us = started.elapsed().as_micros() as u64,
    );
}

fn plain(edge: &Edge, status: StatusCode, text: String) -> Response<Body> {
    let mut res = Response::new(body::full(text));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("cache-status"),
        edge.cache_status("fwd=request; detail=error"),
    );
    res
}

/// The request headers sent upstream: hop-by-hop removed, forwarding headers added. The
/// artefact relay never forwards the client's `Authorization` (to a parent neither: the
/// tier that reaches the control plane sends its own, `upstream::Target::platform_auth`).
fn upstream_headers(ctx: &Ctx, client_headers: &HeaderMap, fill: bool) -> HeaderMap {
    let mut h = client_headers.clone();
    strip_hop_by_hop(&mut h);
    h.remove(header::HOST);
    if ctx.route.relay.is_some() {
        h.remove(header::AUTHORIZATION);
    }
    if fill {
        for name in [
            header::RANGE,
            header::IF_RANGE,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
        ] {
            h.remove(name);
        }
    }
    let ip = ctx.client.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(ctx.scheme.as_str()),
    );
    h.append(header::VIA, ctx.edge.via.clone());
    h
}

fn path_and_query(parts: &Parts) -> &str {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
}

/// Passes a request through without caching. `invalidate`: apply RFC 9111 §4.4.
async fn pass(
    ctx: &Ctx,
    parts: &Parts,
    body: Option<Body>,
    invalidate: bool,
) -> (Response<Body>, CacheResult) {
    let pq = path_and_query(parts);
    let targets = upstream::targets(&ctx.route, pq, &ctx.host);
    let headers = upstream_headers(ctx, &parts.headers, false);
    let body = if parts.method == Method::GET || parts.method == Method::HEAD {
        None
    } else {
        let usage = ctx.meter.clone();
        // An upload a child forwards was counted in at the child.
        body.map(|b| match ctx.internal {
            true => b,
            false => body::counted(b, move |n| usage.received(n)),
        })
    };
    match ctx
        .edge
        .upstream
        .send(
            &targets,
            &parts.method,
            pq,
            &headers,
            body,
            &ctx.edge.metrics,
        )
        .await
    {
        Ok((res, target)) => {
            if invalidate && policy::invalidates(&parts.method, res.status()) {
                invalidate_targets(ctx, parts, res.headers());
            }
            let (mut head, incoming) = res.into_parts();
            strip_hop_by_hop(&mut head.headers);
            head.headers.remove("x-cache");
            head.headers.append(
                HeaderName::from_static("cache-status"),
                ctx.edge.cache_status(if invalidate {
                    "fwd=method"
                } else {
                    "fwd=bypass"
                }),
            );
            // Bytes from the origin enter the platform (from a parent, they already did).
            let incoming = if target.tier == upstream::Tier::Parent {
                body::incoming(incoming)
            } else {
                let usage = ctx.meter.clone();
                body::counted(body::incoming(incoming), move |n| usage.received(n))
            };
            (Response::from_parts(head, incoming), CacheResult::Pass)
        }
        Err(e) => (bad_gateway(ctx, &e.to_string()), CacheResult::Error),
    }
}

fn bad_gateway(ctx: &Ctx, why: &str) -> Response<Body> {
    tracing::warn!(service = %ctx.route.service.id, error = why, "upstream failed");
    plain(
        &ctx.edge,
        StatusCode::BAD_GATEWAY,
        format!("the edge could not fetch this from upstream: {why}\n"),
    )
}

/// Removes the cached target URL (and same-host Location/Content-Location) after an unsafe
/// request succeeded.
fn invalidate_targets(ctx: &Ctx, parts: &Parts, res_headers: &HeaderMap) {
    let mut paths = vec![path_and_query(parts).to_owned()];
    paths.extend(policy::invalidation_targets(&ctx.host, res_headers));
    let service = &ctx.route.service.id;
    let mut urls = std::collections::HashSet::new();
    for p in paths {
        let path_only = p.split('?').next().unwrap_or(&p);
        let rule = key::rule_for(&ctx.route.service.cache_rules, path_only);
        // Both schemes: the resource changed, whichever way it was fetched.
        urls.extend(
            key::Scheme::ALL
                .iter()
                .map(|s| key::url_key(&key::namespace(service, *s), &ctx.host, &p, rule)),
        );
    }
    for k in ctx
        .edge
        .store
        .host_keys(&key::host_bucket(service, &ctx.host))
    {
        if urls.contains(key::key_url(&k)) {
            ctx.edge.store.remove(&k);
        }
    }
}

/// GET and HEAD: through the cache.
async fn cached(ctx: &Ctx, parts: &Parts) -> (Response<Body>, CacheResult) {
    let pq = path_and_query(parts);
    let rule = key::rule_for(&ctx.route.service.cache_rules, parts.uri.path());
    let rule_override = RuleOverride {
        targeted: ctx.route.targeted.clone(),
        ..rule.map(RuleOverride::from).unwrap_or_default()
    };
    if rule_override.bypass {
        return pass(ctx, parts, None, false).await;
    }
    if pq.len() > ctx.edge.cache_limits.max_url_bytes {
        // Not cached: a key this long would cost memory out of proportion (limit in
        // `CacheLimits::max_url_bytes`).
        return pass(ctx, parts, None, false).await;
    }
    let cache_key = key::cache_key(&ctx.namespace(), &ctx.host, pq, rule, &parts.headers);
    let req_cc = RequestCacheControl::parse(&parts.headers);
    let now = SystemTime::now();
    let mut stale: Option<Arc<CachedResponse>> = None;
    let mut stale_if_error = false;
    if let Some(entry) = ctx.edge.store.get(&cache_key) {
        let signature = policy::vary_signature(&entry.vary, &parts.headers);
        if let Some(stored) = entry.variant(&signature) {
            match policy::evaluate(&stored.freshness, &req_cc, now) {
                Evaluation::Fresh => {
                    return (
                        respond_stored(ctx, parts, stored, now, CacheResult::Hit),
                        CacheResult::Hit,
                    );
                }
                Evaluation::StaleWhileRevalidate => {
                    // Refresh in the background; this client gets the stale copy now.
                    if let Some(fill) = ctx.edge.inflight.lead(&cache_key) {
                        start_fill(
                            ctx,
                            parts,
                            &cache_key,
                            rule_override,
                            Some(stored.clone()),
                            fill,
                        );
                    }
                    return (
                        respond_stored(ctx, parts, stored, now, CacheResult::Stale),
                        CacheResult::Stale,
                    );
                }
                Evaluation::Revalidate {
                    stale_if_error: sie,
                } => {
                    stale = Some(stored.clone());
                    stale_if_error = sie;
                }
            }
        }
    }
    if req_cc.only_if_cached {
        return (
            plain(
                &ctx.edge,
                StatusCode::GATEWAY_TIMEOUT,
                "not in cache (only-if-cached)\n".into(),
            ),
            CacheResult::Miss,
        );
    }
    // A range of an object not stored whole: fetch and serve only the slices it needs; a
    // plain GET of an object held only as slices: assemble it from them.
    if stale.is_none()
        && parts.method == Method::GET
        && (crate::slice::wants_slices(&parts.headers)
            || crate::slice::held_as_slices(&ctx.edge, &cache_key, &parts.headers))
    {
        let req = crate::slice::SliceRequest {
            edge: ctx.edge.clone(),
            targets: upstream::targets(&ctx.route, &cache_key, &ctx.host),
            pq: pq.to_owned(),
            upstream_headers: upstream_headers(ctx, &parts.headers, true),
            req_headers: parts.headers.clone(),
            key: cache_key.clone(),
            rule: rule_override.clone(),
            usage: ctx.meter.clone(),
        };
        let edge = ctx.edge.clone();
        match crate::slice::respond(Arc::new(req), move |p| edge.cache_status(p)).await {
            crate::slice::Answer::Served(res, true) => return (res, CacheResult::Hit),
            crate::slice::Answer::Served(res, false) => return (res, CacheResult::Miss),
            crate::slice::Answer::Failed(e) => {
                return (bad_gateway(ctx, &e), CacheResult::Error);
            }
            crate::slice::Answer::Fallback => {}
        }
    }
    let (reader, leader) = match ctx.edge.inflight.join(&cache_key) {
        Joined::Leader(reader) => {
            start_fill(
                ctx,
                parts,
                &cache_key,
                rule_override,
                stale.clone(),
                reader.fill().clone(),
            );
            (reader, true)
        }
        Joined::Follower(reader) => (reader, false),
    };
    let head = reader.fill().head().await;
    let serve_stale = |stale: &Arc<CachedResponse>| {
        (
            respond_stored(
                ctx,
                parts,
                stale,
                SystemTime::now(),
                CacheResult::StaleIfError,
            ),
            CacheResult::StaleIfError,
        )
    };
    match head {
        Err(e) => match &stale {
            Some(s) if stale_if_error => serve_stale(s),
            _ => (bad_gateway(ctx, &e), CacheResult::Error),
        },
        Ok(h) if h.status.is_server_error() && stale_if_error && stale.is_some() => match &stale {
            Some(s) => serve_stale(s),
            None => (bad_gateway(ctx, "unreachable"), CacheResult::Error),
        },
        Ok(h)
            if !leader
                && (!h.shareable
                    || policy::vary_fields(&h.headers)
                        .map(|f| policy::vary_signature(&f, &parts.headers))
                        .ok()
                        .as_ref()
                        != Some(&h.variant)) =>
        {
            // Leave the shared fetch first: a reader that never reads would hold its
            // buffer (and the fetch) back.
            drop(reader);
            pass(ctx, parts, None, false).await
        }
        Ok(h) => {
            let result = if h.status == StatusCode::NOT_MODIFIED && stale.is_some() {
                CacheResult::Revalidated
            } else if leader {
                CacheResult::Miss
            } else {
                CacheResult::Collapsed
            };
            (
                respond_fill(ctx, parts, h, reader, result, leader).await,
                result,
            )
        }
    }
}

/// Starts the fetch that fills `key` (a revalidation when `stored` is given). It runs in
/// its own task ([`FillJob::run`]) and ends by storing the response (when it may) and
/// leaving `inflight`.
fn start_fill(
    ctx: &Ctx,
    parts: &Parts,
    cache_key: &str,
    rule: RuleOverride,
    stored: Option<Arc<CachedResponse>>,
    fill: Arc<Fill>,
) {
    let job = FillJob {
        edge: ctx.edge.clone(),
        fill,
        targets: upstream::targets(&ctx.route, cache_key, &ctx.host),
        pq: path_and_query(parts).to_owned(),
        headers: upstream_headers(ctx, &parts.headers, true),
        req_headers: parts.headers.clone(),
        key: cache_key.to_owned(),
        rule,
        stale: stored,
        usage: ctx.meter.clone(),
    };
    tokio::spawn(async move {
        job.run().await;
        job.edge.inflight.done(&job.key, &job.fill);
    });
}

/// One whole-object fill: the request it fetches for, and its phases ([`FillJob::run`]).
struct FillJob {
    edge: Arc<Edge>,
    /// The fill its readers follow.
    fill: Arc<Fill>,
    targets: Vec<upstream::Target>,
    pq: String,
    /// Headers for upstream: forwarding headers added, `Range` and conditionals removed.
    headers: HeaderMap,
    /// The headers of the client request that started the fill.
    req_headers: HeaderMap,
    /// The cache key filled.
    key: String,
    rule: RuleOverride,
    /// The stale stored response this fill revalidates.
    stale: Option<Arc<CachedResponse>>,
    /// The service's counters (the body bytes received are counted there).
    usage: Arc<crate::usage::UsageCounters>,
}

/// What [`FillJob::decide`] made of a response to stream (not a matching 304).
struct Decision {
    storable: Storability,
    /// The copy kept to store the body whole (stored and shared, not too big).
    copy: Option<crate::cache::budget::StoreBuffer>,
    /// The slicer of a response too large to store whole.
    slicer: Option<crate::slice::Slicer>,
    /// The direct channel of a response that is not shared.
    direct: Option<tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>>,
}

impl FillJob {
    /// The phases of a fill: [`reuse_stored`](Self::reuse_stored) (done already),
    /// [`fetch`](Self::fetch), [`freshen`](Self::freshen) (a matching 304), else
    /// [`decide`](Self::decide), [`pump`](Self::pump) and [`store`](Self::store). The fill
    /// is finished whichever way it ends.
    async fn run(&self) {
        // A purge from now on may target what this fill fetches: then it is not stored.
        let epoch = self
            .edge
            .purge_epoch
            .load(std::sync::atomic::Ordering::Acquire);
        if self.reuse_stored() {
            return;
        }
        let Some(mut fetched) = self.fetch().await else {
            return;
        };
        if let Some(old) = &self.stale
            && fetched.freshens(&old.headers)
        {
            self.freshen(old, &fetched, epoch);
            return;
        }
        let decision = self.decide(&mut fetched);
        let storable = decision.storable;
        let pumped = self.pump(&mut fetched, decision, epoch).await;
        self.store(fetched, storable, pumped, epoch);
    }

    /// A fill that ended between this request's lookup and its `join` has stored the
    /// response already: hands that to this fill's readers instead of fetching again
    /// (`true`: done).
    fn reuse_stored(&self) -> bool {
        if let Some(entry) = self.edge.store.get(&self.key)
            && let Some(s) = entry.variant(&policy::vary_signature(&entry.vary, &self.req_headers))
            && policy::evaluate(
                &s.freshness,
                &RequestCacheControl::parse(&self.req_headers),
                SystemTime::now(),
            ) == Evaluation::Fresh
        {
            self.fill.complete_from(s, Vec::new());
            return true;
        }
        false
    }

    /// The upstream response (`crate::fetch::fetch`: conditional when revalidating);
    /// `None`: it failed, and so did the fill.
    async fn fetch(&self) -> Option<fetch::Fetched> {
        let stale = self.stale.as_ref().map(|s| &s.headers);
        match fetch::fetch(&self.edge, &self.targets, &self.pq, &self.headers, stale).await {
            Ok(f) => Some(f),
            Err(e) => {
                self.fill.finish(Err(e.to_string()));
                None
            }
        }
    }

    /// RFC 9111 §4.3.4: `old` freshened with the matching 304's headers, stored if it may
    /// still be (else dropped), and served to the fill's readers.
    fn freshen(&self, old: &Arc<CachedResponse>, not_modified: &fetch::Fetched, epoch: u64) {
        // A cookie the 304 sets is for the client that asked, never stored or shared;
        // unless the rule or the origin's list allows it, it keeps the freshened response
        // out of the store.
        let fetch::Freshened {
            updated,
            set_cookie,
        } = fetch::freshen(old, not_modified, &self.req_headers, &self.rule, |merged| {
            (old.status, merged.clone())
        });
        let served = updated.clone().unwrap_or_else(|| (**old).clone());
        match updated {
            Some(u) => store(&self.edge, &self.key, &self.req_headers, u, epoch),
            None => self.edge.store.remove(&self.key),
        }
        self.fill.set_head(Ok(FillHead {
            direct: None,
            status: StatusCode::NOT_MODIFIED,
            headers: served.headers.clone(),
            shareable: true,
            variant: served.variant.clone(),
            leader_only: set_cookie
                .into_iter()
                .map(|v| (header::SET_COOKIE, v))
                .collect(),
        }));
        self.fill.push_stored(served.body.clone());
        self.fill.finish(Ok(()));
    }

    /// Decides what becomes of the response and publishes its head to the fill's readers:
    /// whether it may be stored (`Set-Cookie` only for the client that started the fetch),
    /// whether it is too big to store whole (then stored as slices, when its length is
    /// known), and whether it is shared or goes to that client alone over a bounded
    /// channel. The head kept in `fetched` is then what would be stored.
    fn decide(&self, fetched: &mut fetch::Fetched) -> Decision {
        let head = &mut fetched.head;
        let storable = policy::storability(
            &Method::GET,
            &self.req_headers,
            head.status,
            &head.headers,
            &self.rule,
            fetched.response_time,
        );
        let content_length = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_big = content_length.is_some_and(|l| l > MAX_OBJECT_BYTES);
        let keep = matches!(storable, Storability::Yes(_)) && !too_big;
        // A shared (stored) response never carries the first client's cookie, nor the
        // fields a qualified no-cache/private lists: that client alone gets them (a cache
        // rule or the origin's list allowed storing the cookie; otherwise it is not shared).
        let leader_only = if keep {
            let mut taken: Vec<_> = take_set_cookie(&mut head.headers)
                .into_iter()
                .map(|v| (header::SET_COOKIE, v))
                .collect();
            taken.extend(policy::take_fields_not_to_store(
                &mut head.headers,
                &self.rule,
            ));
            taken
        } else {
            Vec::new()
        };
        // Not shared: only the client that started the fetch reads it, through a bounded
        // channel, so a huge or private body never piles up in memory.
        let (direct_tx, direct) = if keep {
            (None, None)
        } else {
            let (tx, rx) = tokio::sync::mpsc::channel(DIRECT_CHUNKS);
            (Some(tx), Some(Arc::new(std::sync::Mutex::new(Some(rx)))))
        };
        self.fill.set_head(Ok(FillHead {
            direct,
            status: head.status,
            headers: head.headers.clone(),
            shareable: keep,
            variant: policy::vary_fields(&head.headers)
                .map(|f| policy::vary_signature(&f, &self.req_headers))
                .unwrap_or_default(),
            leader_only,
        }));
        // What is stored (whole or as slices) lacks the fields of a qualified
        // no-cache/private (a shared response's were taken for the leader above).
        if !keep {
            policy::remove_fields_not_to_store(&mut head.headers, &self.rule);
        }
        // Too large to store whole: store it as slices as it streams, for range requests.
        let slicer = match (&storable, too_big, head.status) {
            // The length as stored: one the origin listed in a qualified no-cache/private
            // is not.
            (Storability::Yes(params), true, StatusCode::OK) => head
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(|total| {
                    crate::slice::Slicer::new(
                        self.edge.slice_bytes,
                        total,
                        head.headers.clone(),
                        *params,
                        fetched.request_time,
                        fetched.response_time,
                    )
                }),
            _ => None,
        };
        // The copy kept to store the body, within the node's store-buffer budget: when
        // that is spent (or the body outgrows `MAX_OBJECT_BYTES`), the copy is dropped and
        // the response is only streamed, not stored.
        let copy = keep.then(|| {
            crate::cache::budget::StoreBuffer::new(self.edge.store_buffers.clone(), content_length)
        });
        Decision {
            storable,
            copy,
            slicer,
            direct: direct_tx,
        }
    }

    /// Streams the body to the fill's readers (or the direct channel) and the slicer,
    /// keeping the store copy (`crate::fetch::pump`).
    async fn pump(
        &self,
        fetched: &mut fetch::Fetched,
        decision: Decision,
        epoch: u64,
    ) -> fetch::Pumped {
        let mut sink = FillSink {
            edge: &self.edge,
            fill: &self.fill,
            key: &self.key,
            req_headers: &self.req_headers,
            epoch,
            slicer: decision.slicer,
            shared: decision.direct.is_none(),
            direct: decision.direct,
        };
        // The sink (and its direct channel) is dropped on return: the one reader of an
        // unshared body sees its end before the response is stored.
        let pumped = fetch::pump(
            &self.edge,
            fetched,
            decision.copy,
            MAX_OBJECT_BYTES,
            &mut sink,
        )
        .await;
        if fetched.target.tier != upstream::Tier::Parent {
            self.usage.received(pumped.received);
        }
        pumped
    }

    /// Stores the response when it arrived whole and may be stored; when it may not, a
    /// stale response it revalidated is dropped too (but not for a 5xx). Finishes the
    /// fill.
    fn store(
        &self,
        fetched: fetch::Fetched,
        storable: Storability,
        pumped: fetch::Pumped,
        epoch: u64,
    ) {
        let fetch::Pumped { result, copy, .. } = pumped;
        let (head, request_time, response_time) =
            (fetched.head, fetched.request_time, fetched.response_time);
        let kept = copy.is_some();
        if let (Ok(()), Some(body), Storability::Yes(params)) = (&result, copy, &storable) {
            let response = CachedResponse {
                status: head.status,
                freshness: Freshness::new(
                    params,
                    policy::initial_age(&head.headers, request_time, response_time),
                    response_time,
                ),
                tags: surrogate_keys(&head.headers),
                headers: head.headers,
                body: body.into_bytes(),
                variant: String::new(),
                stored_at: response_time,
            };
            store(&self.edge, &self.key, &self.req_headers, response, epoch);
        } else if self.stale.is_some() && result.is_ok() && !kept && !head.status.is_server_error()
        {
            // The new response may not be stored: the old one must not be served either.
            // A 5xx does not replace it (RFC 9111 §4.3.3): it stays for stale-if-error.
            self.edge.store.remove(&self.key);
        }
        self.fill.finish(result);
    }
}

/// Where a whole-object fill's body goes: to every reader of the fill (shared), or
/// through the bounded channel to the one client that started it (direct); and into the
/// slicer of a response too large to store whole.
struct FillSink<'a> {
    edge: &'a Edge,
    fill: &'a Fill,
    key: &'a str,
    req_headers: &'a HeaderMap,
    epoch: u64,
    slicer: Option<crate::slice::Slicer>,
    /// The direct channel, until its client goes away.
    direct: Option<tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>>,
    /// The body goes to the fill's readers (no direct channel).
    shared: bool,
}

impl fetch::Sink for FillSink<'_> {
    async fn take(&mut self, data: Bytes, _received: u64) -> Result<(), String> {
        if let Some(s) = &mut self.slicer
            && !s.push(self.edge, self.key, self.req_headers, self.epoch, &data)
        {
            self.slicer = None;
        }
        match &self.direct {
            Some(tx) => {
                let sent = tokio::time::timeout(DIRECT_WAIT, tx.send(Ok(data))).await;
                if !matches!(sent, Ok(Ok(()))) {
                    // The client left (or never came): keep going only to store slices.
                    self.direct = None;
                    if self.slicer.is_none() {
                        return Err("the client went away".to_owned());
                    }
                }
            }
            None if self.shared => self.fill.push(data).await,
            None => {}
        }
        Ok(())
    }

    fn failed(&mut self, why: &str) {
        if let Some(tx) = &self.direct {
            let _ = tx.try_send(Err(std::io::Error::other(why.to_owned())));
        }
    }
}

/// Stores `response` as the variant for `req_headers`.
pub(crate) fn store(
    edge: &Edge,
    cache_key: &str,
    req_headers: &HeaderMap,
    mut response: CachedResponse,
    epoch: u64,
) {
    // A purge applied while this response was on its way may have targeted it.
    if edge.purge_epoch.load(std::sync::atomic::Ordering::Acquire) != epoch {
        return;
    }
    let Ok(vary) = policy::vary_fields(&response.headers) else {
        return;
    };
    if cache_key.contains(crate::slice::SLICE_SEPARATOR) {
        edge.holds_slices
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // Hits never carry the cookie of the client whose fetch stored the response.
    response.headers.remove(header::SET_COOKIE);
    response.variant = policy::vary_signature(&vary, req_headers);
    let mut response = response.detached();
    // Large bodies move into a sealed memfd, so hits send them with sendfile.
    response.body = crate::sendfile::shareable(std::mem::take(&mut response.body));
    let entry = match edge.store.get(cache_key) {
        Some(e) => e.with_variant(vary, response),
        None => Entry {
            vary,
            variants: vec![Arc::new(response)],
        },
    };
    edge.store.put(cache_key.to_owned(), Arc::new(entry));
}

/// Removes and returns the `Set-Cookie` lines of `headers`.
fn take_set_cookie(headers: &mut HeaderMap) -> Vec<HeaderValue> {
    let values = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    values
}

/// `Surrogate-Key` (space-separated) and `Cache-Tag` (comma-separated) values.
pub(crate) fn surrogate_keys(headers: &HeaderMap) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for v in headers
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        tags.extend(v.split_whitespace().map(str::to_owned));
    }
    for v in headers
        .get_all("cache-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        tags.extend(
            v.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        );
    }
    tags.sort();
    tags.dedup();
    tags
}

/// Headers that describe the body and so are not sent on a 304.
const CONTENT_HEADERS: [HeaderName; 4] = [
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::CONTENT_RANGE,
    header::TRANSFER_ENCODING,
];

/// Answers from a stored response: 304 for a matching conditional request, 206/416 for
/// ranges, else the whole response.
fn respond_stored(
    ctx: &Ctx,
    parts: &Parts,
    stored: &CachedResponse,
    now: SystemTime,
    result: CacheResult,
) -> Response<Body> {
    let age = stored.freshness.age(now);
    let mut headers = stored.headers.clone();
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    let ttl = stored.freshness.lifetime.as_secs() as i64 - age.as_secs() as i64;
    let status_detail = match result {
        CacheResult::Hit => format!("hit; ttl={ttl}"),
        CacheResult::Stale => format!("hit; ttl={ttl}; fwd=stale; detail=stale-while-revalidate"),
        CacheResult::StaleIfError => "fwd=stale; detail=stale-if-error".to_owned(),
        _ => "hit".to_owned(),
    };
    headers.append(
        HeaderName::from_static("cache-status"),
        ctx.edge.cache_status(&status_detail),
    );
    if stored.status == StatusCode::OK
        && policy::client_not_modified(&parts.headers, &stored.headers)
    {
        for h in CONTENT_HEADERS {
            headers.remove(h);
        }
        return response(StatusCode::NOT_MODIFIED, headers, body::empty());
    }
    ranged(parts, stored.status, headers, &stored.body)
}

/// The whole body, or the requested ranges of it (`range::Ranged`). HEAD builds no body.
fn ranged(parts: &Parts, status: StatusCode, headers: HeaderMap, whole: &Bytes) -> Response<Body> {
    let ranged = Ranged::new(&parts.headers, status, headers, whole.len() as u64);
    let b = if parts.method == Method::HEAD {
        body::empty()
    } else {
        body::full(ranged.cut(whole))
    };
    response(ranged.status, ranged.headers, b)
}

/// Answers from a fill in progress (streaming), with ranges when the length is known.
/// `leader`: this client started the fetch (it alone gets the response's cookies).
async fn respond_fill(
    ctx: &Ctx,
    parts: &Parts,
    head: FillHead,
    reader: Reader,
    result: CacheResult,
    leader: bool,
) -> Response<Body> {
    let mut headers = head.headers;
    if leader {
        for (name, value) in head.leader_only {
            headers.append(name, value);
        }
    }
    let status = if head.status == StatusCode::NOT_MODIFIED {
        StatusCode::OK
    } else {
        head.status
    };
    let detail = match result {
        CacheResult::Revalidated => "fwd=stale; fwd-status=304".to_owned(),
        CacheResult::Collapsed => format!(
            "fwd=uri-miss; fwd-status={}; collapsed",
            head.status.as_u16()
        ),
        _ if head.shareable => format!("fwd=uri-miss; fwd-status={}; stored", head.status.as_u16()),
        _ => format!("fwd=uri-miss; fwd-status={}", head.status.as_u16()),
    };
    headers.append(
        HeaderName::from_static("cache-status"),
        ctx.edge.cache_status(&detail),
    );
    if status == StatusCode::OK && policy::client_not_modified(&parts.headers, &headers) {
        for h in CONTENT_HEADERS {
            headers.remove(h);
        }
        return response(StatusCode::NOT_MODIFIED, headers, body::empty());
    }
    let head_only = parts.method == Method::HEAD;
    if let Some(direct) = &head.direct {
        // Not shared: this client alone reads the body as it arrives (Range ignored: the
        // whole response is sent, which RFC 9110 allows).
        let rx = direct.lock().ok().and_then(|mut r| r.take());
        let Some(rx) = rx else {
            return bad_gateway(ctx, "the response was already handed to another client");
        };
        let b = if head_only {
            body::empty()
        } else {
            body::stream(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }))
        };
        return response(status, headers, b);
    }
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let (Some(len), StatusCode::OK) = (len, status) {
        let ranged = Ranged::new(&parts.headers, status, headers.clone(), len);
        let b = match ranged.spans().as_slice() {
            _ if head_only || ranged.status == StatusCode::RANGE_NOT_SATISFIABLE => body::empty(),
            _ if ranged.status == StatusCode::OK => body::stream(reader.stream(0, None)),
            [(s, e)] => body::stream(reader.stream(*s, Some(e + 1))),
            // Several ranges: wait for the whole body (it fits the fill's buffer), then cut
            // it.
            _ if len <= reader.fill().limit() => {
                return match reader.body().await {
                    Ok(whole) => {
                        let b = body::full(ranged.cut(&whole));
                        response(ranged.status, ranged.headers, b)
                    }
                    Err(e) => bad_gateway(ctx, &e),
                };
            }
            // Several ranges of a body larger than the fill's buffer: the whole response
            // streams instead (RFC 9110 §14.2 lets a server ignore Range).
            _ => {
                headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                return response(status, headers, body::stream(reader.stream(0, None)));
            }
        };
        return response(ranged.status, ranged.headers, b);
    }
    let b = if head_only {
        body::empty()
    } else {
        body::stream(reader.stream(0, None))
    };
    response(status, headers, b)
}

fn response(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// The responders for HEAD: the body built is empty (`size_hint` exactly 0, so nothing
/// could be written whatever the connection does with a HEAD), while `Content-Length` is
/// that of the GET. Checked here, on the responses the edge builds, because an HTTP client
/// cannot tell: hyper never sends a HEAD body anyway.
#[cfg(test)]
mod head_tests {
    use std::time::Duration;

    use http::Request;
    use http_body::Body as _;

    use super::*;
    use crate::cache::fill::Fill;
    use crate::routes::ServiceRoute;

    const LEN: usize = 1000;

    fn whole() -> Bytes {
        Bytes::from((0..LEN).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
    }

    fn parts(method: Method, range: Option<&str>) -> Parts {
        let mut req = Request::builder().method(method).uri("/obj");
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        req.body(()).expect("request").into_parts().0
    }

    fn stored_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(LEN));
        h
    }

    fn content_length(res: &Response<Body>) -> u64 {
        res.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length")
    }

    /// A HEAD answer: `status`, `Content-Length` `len`, and a body that is exactly empty.
    fn assert_head(res: &Response<Body>, status: StatusCode, len: u64) {
        assert_eq!(res.status(), status);
        assert_eq!(content_length(res), len);
        assert_eq!(res.body().size_hint().exact(), Some(0), "HEAD built a body");
    }

    const RANGES: [(Option<&str>, StatusCode); 3] = [
        (None, StatusCode::OK),
        (Some("bytes=10-19"), StatusCode::PARTIAL_CONTENT),
        (Some("bytes=0-99,50-199,-100"), StatusCode::PARTIAL_CONTENT),
    ];

    #[test]
    fn a_stored_response_answers_head_with_the_gets_length_and_no_body() {
        for (range, status) in RANGES {
            let get = ranged(
                &parts(Method::GET, range),
                StatusCode::OK,
                stored_headers(),
                &whole(),
            );
            let len = content_length(&get);
            // The GET builds exactly the body its Content-Length announces.
            assert_eq!(get.body().size_hint().exact(), Some(len), "{range:?}");
            let head = ranged(
                &parts(Method::HEAD, range),
                StatusCode::OK,
                stored_headers(),
                &whole(),
            );
            assert_head(&head, status, len);
            if range.is_some_and(|r| r.contains(',')) {
                assert!(
                    head.headers()[header::CONTENT_TYPE]
                        .to_str()
                        .expect("ascii")
                        .starts_with("multipart/byteranges")
                );
            }
        }
        // Unsatisfiable: 416 with no body either way.
        let head = ranged(
            &parts(Method::HEAD, Some("bytes=5000-")),
            StatusCode::OK,
            stored_headers(),
            &whole(),
        );
        assert_head(&head, StatusCode::RANGE_NOT_SATISFIABLE, 0);
    }

    fn ctx() -> Ctx {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut config = crate::EdgeConfig::new("edge-head", any, any);
        config.access_log = false;
        Ctx {
            edge: Edge::new(&config),
            route: Arc::new(ServiceRoute {
                service: lingjing_model::Service {
                    id: "svc".to_owned(),
                    tenant: "t".to_owned(),
                    hostnames: vec!["h.example".to_owned()],
                    origins: Vec::new(),
                    cache_rules: Vec::new(),
                    steering: Default::default(),
                    tls: None,
                    targeted_cache_control: lingjing_model::service::default_targeted_cache_control(
                    ),
                    forward_targeted_cache_control: false,
                    origin_ca_pem: None,
                    defence: Default::default(),
                },
                parents: Vec::new(),
                usage: Arc::default(),
                defence: Arc::new(crate::defence::ServiceWatch::new(0)),
                targeted: Arc::default(),
                origin_ca: None,
                parent_pin: None,
                counters: Default::default(),
                bucket: None,
                relay: None,
            }),
            meter: Arc::default(),
            internal: false,
            host: "h.example".to_owned(),
            client: any,
            scheme: key::Scheme::Http,
            started: Instant::now(),
        }
    }

    fn fill_head(direct: bool) -> (FillHead, Option<crate::cache::fill::DirectBody>) {
        let direct = direct.then(|| {
            let (_tx, rx) = tokio::sync::mpsc::channel(1);
            Arc::new(std::sync::Mutex::new(Some(rx)))
        });
        (
            FillHead {
                direct: direct.clone(),
                status: StatusCode::OK,
                headers: stored_headers(),
                shareable: direct.is_none(),
                variant: String::new(),
                leader_only: Vec::new(),
            },
            direct,
        )
    }

    /// HEAD on a fill whose body has not arrived (and never will): answered at once,
    /// without waiting for or building a body.
    #[tokio::test]
    async fn a_fill_in_progress_answers_head_without_a_body_or_waiting_for_one() {
        let ctx = ctx();
        // The multipart length, as a stored response would announce it.
        let multipart_len = content_length(&ranged(
            &parts(Method::GET, RANGES[2].0),
            StatusCode::OK,
            stored_headers(),
            &whole(),
        ));
        for (direct, range, status, len) in [
            (false, RANGES[0].0, RANGES[0].1, LEN as u64),
            (false, RANGES[1].0, RANGES[1].1, 10),
            (false, RANGES[2].0, RANGES[2].1, multipart_len),
            (true, None, StatusCode::OK, LEN as u64),
        ] {
            let fill = Arc::new(Fill::default());
            let reader = fill.reader().expect("a reader");
            let (head, _direct) = fill_head(direct);
            let res = tokio::time::timeout(
                Duration::from_secs(20),
                respond_fill(
                    &ctx,
                    &parts(Method::HEAD, range),
                    head,
                    reader,
                    CacheResult::Miss,
                    true,
                ),
            )
            .await
            .expect("HEAD answered without waiting for the body");
            assert_head(&res, status, len);
        }
    }
}
