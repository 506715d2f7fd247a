//! Fetching from upstream: the service's parent-cache nodes first (tiered caching), then
//! its origins (weighted among the primaries, backups when no primary answers). Connections
//! are pooled; a request that failed to connect is retried on the next target, which is
//! safe because nothing was sent.
//!
//! Parents and origins use separate pools: parents are platform nodes (trusted, plain
//! connector), origins go through [`crate::guard::OriginConnector`], which checks every
//! resolved address against the snapshot's origin policy before connecting. Separate pools
//! also mean an origin whose authority equals a parent's address never reuses a parent's
//! (unchecked) connection.
//! The S3 gateways of bucket origins and the artefact relay's upstream (the control
//! plane, `crate::relay`, sent this node's own credential: [`Target::platform_auth`]) are
//! platform endpoints too, and use the trusted pools.
//!
//! Upstreams over TLS (origins with `tls`, parents for services with a certificate) go
//! through [`tls`]: one pooled client per address and trust, HTTP/2 when offered.
//!
//! Cache fills do not call [`Upstream::send`] directly: they go through `crate::fetch`,
//! which adds revalidation and the mismatched-304 retry on top.
//!
//! Every upstream request, to a parent or an origin, carries this node's RFC 8586
//! `CDN-Loop` entry (`crate::guard::cdn_info`), so the loop guard recognises it when it
//! comes back, even through another CDN that rewrote `Via`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use prometheus_client::metrics::counter::Counter;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::Rng;

pub mod bucket;
pub mod tls;

use crate::body::Body;
use crate::guard::{Guard, OriginConnector};
use crate::metrics::Metrics;
use crate::routes::ServiceRoute;
use tls::{TlsClients, Trust};

/// Time allowed to connect to one upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for the response head once connected.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// One place a request can go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    /// The Host header to send.
    pub host: String,
    pub tier: Tier,
    /// Connect with TLS, checking the certificate so.
    pub tls: Option<Trust>,
    /// An S3 gateway holding the service's bucket: the request is rewritten to read the
    /// object and signed ([`bucket`]).
    pub bucket: Option<Arc<bucket::BucketAccess>>,
    /// A platform endpoint (the artefact relay's upstream, `crate::relay`): reached
    /// through the trusted pools, as parents are, with this `Authorization` (this node's
    /// own credential) in place of any the request had.
    pub platform_auth: Option<HeaderValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Parent,
    Origin,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Parent => "parent",
            Tier::Origin => "origin",
        }
    }
}

/// Why an upstream fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no upstream could be reached: {0}")]
    Unreachable(String),
    #[error("upstream {0} did not answer in time")]
    Timeout(String),
    #[error("upstream {0} failed: {1}")]
    Failed(String, String),
    /// The origin policy refused every address of the origin (nothing was connected to).
    #[error("{0}")]
    Refused(String),
}

/// `err` and its sources, `: `-separated (hyper's errors put the cause in the sources).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

/// The pooled HTTP clients to parents and origins, one set per core (`crate::cores`):
/// a pooled connection is driven by the runtime that made it, so each core keeps its own.
pub struct Upstream {
    /// This node's id, named in the parent-fetch mark.
    node_id: String,
    /// This node's `CDN-Loop` entry, appended to every upstream request.
    cdn_info: HeaderValue,
    connector: OriginConnector,
    /// Never empty: index `crate::cores::current()` (modulo the length).
    cores: Vec<Pools>,
}

/// One core's pools.
struct Pools {
    parents: Client<HttpConnector, Body>,
    /// Replaced (with an empty pool) when the origin policy changes, so that no connection
    /// made under an older policy is reused.
    origins: ArcSwap<Client<OriginConnector, Body>>,
    /// TLS clients to origins (over the origin policy's connector), reset with `origins`.
    origins_tls: TlsClients<OriginConnector>,
    parents_tls: TlsClients<HttpConnector>,
}

fn origin_client(connector: OriginConnector) -> Client<OriginConnector, Body> {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector)
}

impl Upstream {
    /// The client of node `node_id`, with pools for `cores` cores (at least one); origins
    /// are checked against `guard`'s policy at connect time (`refused` counts refused
    /// addresses).
    pub fn new(
        node_id: &str,
        cores: usize,
        guard: Arc<ArcSwap<Guard>>,
        refused: Counter,
    ) -> Upstream {
        let mut plain = HttpConnector::new();
        plain.set_connect_timeout(Some(CONNECT_TIMEOUT));
        plain.set_nodelay(true);
        plain.enforce_http(true);
        let connector = OriginConnector::new(guard, refused, CONNECT_TIMEOUT);
        let cores = (0..cores.max(1))
            .map(|_| Pools {
                parents: Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(256)
                    .build(plain.clone()),
                parents_tls: TlsClients::new(plain.clone()),
                origins: ArcSwap::from_pointee(origin_client(connector.clone())),
                origins_tls: TlsClients::new(connector.clone()),
            })
            .collect();
        Upstream {
            node_id: node_id.to_owned(),
            cdn_info: crate::guard::cdn_info(node_id),
            connector,
            cores,
        }
    }

    /// The calling core's pools.
    fn pools(&self) -> &Pools {
        &self.cores[crate::cores::current() % self.cores.len()]
    }

    /// Drops the pooled origin connections (in-flight requests keep theirs): every later
    /// origin request connects anew, checked by the current origin policy.
    pub fn reset_origin_pool(&self) {
        for pools in &self.cores {
            pools
                .origins
                .store(Arc::new(origin_client(self.connector.clone())));
            pools.origins_tls.reset();
        }
    }
}

/// The order in which to try upstreams for `key`: parents (a stable choice per key, so
/// each parent caches its share), then primary origins by weighted random, then backups.
/// A service with a certificate reaches its parents over TLS, trusting only a parent that
/// presents that certificate.
pub fn targets(route: &ServiceRoute, key: &str, client_host: &str) -> Vec<Target> {
    let mut out = Vec::new();
    if !route.parents.is_empty() {
        let start = (fxhash(key) % route.parents.len() as u64) as usize;
        for i in 0..route.parents.len() {
            let p = route.parents[(start + i) % route.parents.len()];
            let (addr, tls): (SocketAddr, _) = match &route.parent_pin {
                Some(pin) => (p.https, Some(Trust::Pinned(pin.clone()))),
                None => (p.http, None),
            };
            out.push(Target {
                authority: addr.to_string(),
                host: client_host.to_owned(),
                tier: Tier::Parent,
                tls,
                bucket: None,
                platform_auth: None,
            });
        }
    }
    if route.service.bucket_origin().is_some() {
        // The gateways are interchangeable: start at a random one, try each once.
        if let Some(b) = &route.bucket
            && !b.gateways.is_empty()
        {
            let start = rand::rng().random_range(0..b.gateways.len());
            for i in 0..b.gateways.len() {
                let addr = b.gateways[(start + i) % b.gateways.len()].to_string();
                out.push(Target {
                    host: addr.clone(),
                    authority: addr,
                    tier: Tier::Origin,
                    tls: None,
                    bucket: Some(b.access.clone()),
                    platform_auth: None,
                });
            }
        }
        return out;
    }
    let mut primaries: Vec<_> = route.primaries().collect();
    let mut rng = rand::rng();
    while !primaries.is_empty() {
        let total: u64 = primaries.iter().map(|o| u64::from(o.weight.max(1))).sum();
        let mut pick = rng.random_range(0..total);
        let idx = primaries
            .iter()
            .position(|o| {
                let w = u64::from(o.weight.max(1));
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        let o = primaries.remove(idx);
        out.push(origin_target(route, o, client_host));
    }
    out.extend(
        route
            .backups()
            .map(|o| origin_target(route, o, client_host)),
    );
    out
}

fn origin_target(route: &ServiceRoute, o: &lingjing_model::Origin, client_host: &str) -> Target {
    let tls = match (o.tls, o.tls_skip_verify) {
        (false, _) => None,
        (true, true) => Some(Trust::SkipVerify),
        (true, false) => Some(Trust::Roots {
            extra_ca: route.origin_ca.clone(),
        }),
    };
    Target {
        authority: o.address.clone(),
        host: o
            .host_header
            .clone()
            .unwrap_or_else(|| client_host.to_owned()),
        tier: Tier::Origin,
        tls,
        bucket: None,
        platform_auth: route.relay.as_ref().and_then(|r| r.authorization.clone()),
    }
}

/// A small, fast, stable hash (FNV-1a) for choosing a parent per key.
fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Hop-by-hop header fields (RFC 9110 §7.6.1), never forwarded.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop fields, including those the Connection header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove("proxy-connection");
}

impl Upstream {
    /// Sends `parts`/`body` to the first target that accepts a connection. Only a request
    /// without a body (or an idempotent one) is retried on the next target.
    pub async fn send(
        &self,
        targets: &[Target],
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        mut body: Option<Body>,
        metrics: &Metrics,
    ) -> Result<(Response<Incoming>, Target), UpstreamError> {
        let mut failures = Vec::new();
        for target in targets {
            let authority = target.authority.as_str();
            let object;
            let path_and_query = match &target.bucket {
                Some(access) => {
                    if *method != Method::GET && *method != Method::HEAD {
                        return Err(UpstreamError::Failed(
                            authority.to_owned(),
                            "a bucket origin serves only GET and HEAD".to_owned(),
                        ));
                    }
                    object = bucket::object_path(&access.bucket, path_and_query);
                    object.as_str()
                }
                None => path_and_query,
            };
            // Over TLS the URI names the host (SNI, certificate name, HTTP/2 :authority);
            // the TLS client connects to `authority` whatever the URI says.
            let uri = match &target.tls {
                Some(_) => format!("https://{}{path_and_query}", target.host),
                None => format!("http://{authority}{path_and_query}"),
            };
            let uri: Uri = match uri.parse() {
                Ok(u) => u,
                Err(e) => {
                    failures.push(format!("{authority}: bad URI: {e}"));
                    continue;
                }
            };
            let mut req = Request::builder().method(method.clone()).uri(uri);
            if let Some(h) = req.headers_mut() {
                if let Some(access) = &target.bucket {
                    *h = bucket::signed_headers(
                        access,
                        method,
                        &target.host,
                        path_and_query,
                        headers,
                        std::time::SystemTime::now(),
                    );
                } else {
                    *h = headers.clone();
                    if let Ok(v) = HeaderValue::from_str(&target.host) {
                        h.insert(header::HOST, v);
                    }
                    crate::guard::mark_parent_fetch(h, target.tier == Tier::Parent, &self.node_id);
                    if let Some(auth) = &target.platform_auth {
                        h.insert(header::AUTHORIZATION, auth.clone());
                    }
                }
                crate::guard::append_cdn_loop(h, &self.cdn_info);
            }
            let retryable = body.is_none();
            let req = match req.body(body.take().unwrap_or_else(crate::body::empty)) {
                Ok(r) => r,
                Err(e) => return Err(UpstreamError::Failed(authority.to_owned(), e.to_string())),
            };
            let tier_metrics = metrics.tier(target.tier);
            let started = Instant::now();
            let pools = self.pools();
            // The S3 gateways and the relay's upstream are the platform's own endpoints:
            // the trusted pools, as for parents (the origin policy is for tenants' origins).
            let trusted = target.tier == Tier::Parent
                || target.bucket.is_some()
                || target.platform_auth.is_some();
            let sent = match (&target.tls, trusted) {
                (None, true) => pools.parents.request(req),
                (None, false) => pools.origins.load().request(req),
                (Some(trust), trusted) => {
                    let client = match trusted {
                        true => pools
                            .parents_tls
                            .client(authority, trust)
                            .map(|c| c.request(req)),
                        false => pools
                            .origins_tls
                            .client(authority, trust)
                            .map(|c| c.request(req)),
                    };
                    match client {
                        Ok(sent) => sent,
                        Err(e) if retryable => {
                            failures.push(format!("{authority}: {e}"));
                            continue;
                        }
                        Err(e) => {
                            return Err(UpstreamError::Failed(authority.to_owned(), e.to_string()));
                        }
                    }
                }
            };
            match tokio::time::timeout(RESPONSE_TIMEOUT, sent).await {
                Ok(Ok(res)) => {
                    tier_metrics
                        .seconds
                        .observe(started.elapsed().as_secs_f64());
                    return Ok((res, target.clone()));
                }
                Ok(Err(e)) => {
                    tier_metrics.errors.inc();
                    let connect_failed = e.is_connect();
                    if let Some(refused) = crate::guard::refusal(&e) {
                        let why = refused.to_string();
                        if !retryable {
                            return Err(UpstreamError::Refused(why));
                        }
                        failures.push(why);
                        continue;
                    }
                    let why = error_chain(&e);
                    failures.push(format!("{authority}: {why}"));
                    if !(connect_failed && retryable) {
                        return Err(UpstreamError::Failed(authority.to_owned(), why));
                    }
                    tracing::debug!(upstream = authority, error = %e, "connect failed, trying the next upstream");
                }
                Err(_) => {
                    tier_metrics.errors.inc();
                    return Err(UpstreamError::Timeout(authority.to_owned()));
                }
            }
        }
        Err(UpstreamError::Unreachable(failures.join("; ")))
    }
}
