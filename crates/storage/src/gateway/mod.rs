//! The S3 gateway: the S3 API (on `s3s` 0.14.1, which checks SigV4 headers, presigned
//! URLs and aws-chunked payloads) over the metadata database ([`crate::meta`]) and the
//! blocks on the storage nodes, replicated ([`crate::replicas`]) or erasure-coded
//! ([`crate::coded`]). Stateless: any number
//! of gateways can share one PostgreSQL and one set of storage nodes.
//!
//! This module owns the server: path-style and virtual-hosted-style addressing
//! (`BUCKET.{domain}`), access keys that belong to a tenant ([`S3Key`]), and the HTTP layer
//! in front of s3s, which answers CORS preflights (`OPTIONS`, which s3s does not route)
//! and adds the CORS headers to the responses of requests that carry an `Origin`
//! ([`cors`]). Behind it: the operations in [`s3`] (everything else answers
//! `NotImplemented`), who may do what in [`acl`] (canned ACLs, unsigned reads of
//! `public-read` buckets), tag parsing and limits in [`tagging`], body integrity
//! (`Content-MD5`, flexible checksums) in `checksum`, and the metrics in [`metrics`],
//! whose `S3Access` check is where s3s asks about every routed request. The HTTP layer
//! also checks the digests of the bodies s3s reads whole (DeleteObjects, tagging and
//! other configurations: `checksum::CheckedBody`); s3s checks none.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::MultiDomain;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use std::time::Instant;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::meta::Meta;
use crate::placement::NodeRef;
use crate::replicas::{Redundancy, Replicas};
use metrics::{GatewayMetrics, OpSlot};

pub mod acl;
pub(crate) mod checksum;
pub(crate) mod class;
pub mod cors;
pub(crate) mod kept;
pub mod metrics;
pub mod s3;
pub mod tagging;

/// Default size objects are cut into.
pub const DEFAULT_BLOCK_BYTES: usize = 1024 * 1024;

/// An S3 access key and the tenant it belongs to.
#[derive(Debug, Clone)]
pub struct S3Key {
    pub access_key: String,
    pub secret: String,
    pub tenant: String,
    /// A bucket-origin credential (an edge's): it may only read objects of this bucket.
    pub read_only_bucket: Option<String>,
}

/// A gateway's settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// The virtual-host domain: `BUCKET.{domain}` addresses a bucket.
    pub domain: String,
    /// The metadata database URL (`sqlite://PATH` or `postgres://...`).
    pub meta_url: String,
    pub nodes: Vec<NodeRef>,
    /// How blocks are kept: copies, or erasure-coded above a size.
    pub redundancy: Redundancy,
    /// The cluster token the storage nodes want.
    pub cluster_token: String,
    pub block_bytes: usize,
    pub keys: Vec<S3Key>,
    /// Garbage collection of unreferenced blocks (`None`: this gateway never runs it).
    pub gc: Option<GcSchedule>,
    /// Repair of lost copies and shards (`None`: this gateway never runs it).
    pub repair: Option<RepairSchedule>,
}

/// When a gateway repairs (`crate::repair`) and then rebalances (`crate::rebalance`): a
/// pass of each every `interval` while it holds the metadata's `repair` lease, each
/// reading at most `bytes_per_sec` (0: no limit) so that foreground requests keep their
/// latency. A node the control plane has reported down for `gone_after` is taken for gone:
/// rebalancing rebuilds its pieces on the nodes left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSchedule {
    pub interval: std::time::Duration,
    pub bytes_per_sec: u64,
    pub gone_after: std::time::Duration,
}

impl Default for RepairSchedule {
    /// Every 10 minutes, at most 64 MiB/s; a node down for an hour is gone.
    fn default() -> Self {
        RepairSchedule {
            interval: std::time::Duration::from_secs(600),
            bytes_per_sec: 64 << 20,
            gone_after: crate::replicas::DEFAULT_GONE_AFTER,
        }
    }
}

/// When a gateway collects garbage (`crate::gc`): a pass every `interval` while it holds
/// the metadata's `gc` lease (so of many gateways one at a time does), each keeping
/// blocks written within `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcSchedule {
    pub interval: std::time::Duration,
    pub grace: std::time::Duration,
}

impl Default for GcSchedule {
    /// Hourly, keeping a day.
    fn default() -> Self {
        GcSchedule {
            interval: std::time::Duration::from_secs(3600),
            grace: crate::gc::DEFAULT_GRACE,
        }
    }
}

/// A running gateway.
pub struct GatewayHandle {
    addr: SocketAddr,
    usage: Arc<crate::usage::UsageLedger>,
    /// The further addresses of [`start_on`].
    also: Vec<SocketAddr>,
    metrics: Arc<GatewayMetrics>,
    replicas: Arc<Replicas>,
    keys: Keys,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a gateway takes from each new control-plane snapshot.
#[derive(Debug, Clone)]
pub struct ClusterUpdate {
    pub nodes: Vec<NodeRef>,
    /// Nodes the control plane reports unhealthy (tried last).
    pub down: HashSet<String>,
    pub redundancy: Redundancy,
    pub cluster_token: String,
    pub keys: Vec<S3Key>,
}

impl GatewayHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The addresses it serves on besides [`GatewayHandle::addr`] (see [`start_on`]).
    pub fn also(&self) -> &[SocketAddr] {
        &self.also
    }

    /// What it counted and sampled of each bucket's usage, for its agent to report.
    pub fn usage(&self) -> Arc<crate::usage::UsageLedger> {
        self.usage.clone()
    }

    /// The gateway's metrics (serve them with [`metrics::serve_admin`]).
    pub fn metrics(&self) -> Arc<GatewayMetrics> {
        self.metrics.clone()
    }

    /// What applies new views of the cluster while the gateway runs.
    pub fn updater(&self) -> GatewayUpdater {
        GatewayUpdater {
            replicas: self.replicas.clone(),
            keys: self.keys.clone(),
        }
    }

    /// Stops accepting; connections in flight end on their own.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Applies new views of the cluster to a running gateway.
#[derive(Clone)]
pub struct GatewayUpdater {
    replicas: Arc<Replicas>,
    keys: Keys,
}

impl GatewayUpdater {
    /// Applies a new view of the cluster and the access keys to the requests that start
    /// after it (a revoked key is refused from then on). Refused, changing nothing, when
    /// it has no storage nodes.
    pub fn update(&self, update: ClusterUpdate) -> Result<(), String> {
        self.replicas
            .update(
                update.nodes,
                update.down,
                update.redundancy,
                &update.cluster_token,
            )
            .map_err(|e| e.to_string())?;
        self.keys.replace(&update.keys);
        Ok(())
    }
}

/// The access keys, by key id (replaced as a whole when a snapshot brings new ones).
#[derive(Clone, Default)]
pub(crate) struct Keys(Arc<RwLock<Arc<HashMap<String, S3Key>>>>);

impl Keys {
    fn new(list: &[S3Key]) -> Keys {
        let keys = Keys::default();
        keys.replace(list);
        keys
    }

    fn current(&self) -> Arc<HashMap<String, S3Key>> {
        match self.0.read() {
            Ok(k) => k.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }

    fn replace(&self, keys: &[S3Key]) {
        let next: Arc<HashMap<String, S3Key>> = Arc::new(
            keys.iter()
                .map(|k| (k.access_key.clone(), k.clone()))
                .collect(),
        );
        match self.0.write() {
            Ok(mut k) => *k = next,
            Err(e) => *e.into_inner() = next,
        }
    }

    pub(crate) fn tenant(&self, access_key: &str) -> Option<String> {
        self.current().get(access_key).map(|k| k.tenant.clone())
    }

    /// The one bucket `access_key` may read, when it is a bucket-origin credential.
    pub(crate) fn read_only_bucket(&self, access_key: &str) -> Option<String> {
        self.current()
            .get(access_key)
            .and_then(|k| k.read_only_bucket.clone())
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.current().get(access_key) {
            Some(k) => Ok(SecretKey::from(k.secret.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "the access key is not known to this platform"
            )),
        }
    }
}

/// Runs `work` every `interval` while this gateway holds lease `name` in the metadata
/// (held for two intervals, renewed before each run and every half interval while a run
/// lasts, so of several gateways one at a time does the work, however long a pass
/// takes), until `stopped`.
async fn every_with_lease<F, Fut>(
    meta: Meta,
    name: &'static str,
    interval: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let holder = format!("gateway-{:016x}", rand::random::<u64>());
    let ttl = i64::try_from(interval.as_millis().saturating_mul(2)).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        match meta.take_lease(name, &holder, now, ttl).await {
            Ok(true) => {
                tokio::select! {
                    () = work() => {}
                    () = keep_lease(&meta, name, &holder, interval / 2, ttl) => {}
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(lease = name, error = %e, "cannot take the lease"),
        }
    }
}

/// Renews lease `name` for `holder` every `every` (for `ttl_ms`), forever: run beside the
/// work the lease guards.
async fn keep_lease(
    meta: &Meta,
    name: &str,
    holder: &str,
    every: std::time::Duration,
    ttl_ms: i64,
) {
    loop {
        tokio::time::sleep(every).await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        match meta.take_lease(name, holder, now, ttl_ms).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(lease = name, "lease lost to another gateway mid-run"),
            Err(e) => tracing::warn!(lease = name, error = %e, "cannot renew the lease"),
        }
    }
}

/// Every 10 seconds, moves the bucket traffic counted to `ledger`'s report; on each
/// 5-minute wall-clock boundary, the gateway holding the `usage` lease samples what every
/// bucket holds (`crate::usage::sample`).
async fn usage_loop(
    meta: Meta,
    ledger: Arc<crate::usage::UsageLedger>,
    mut stopped: watch::Receiver<bool>,
) {
    use crate::usage::SAMPLE_EVERY_MS;
    let holder = format!("gateway-{:016x}", rand::random::<u64>());
    let mut sampled_at = 0u64;
    loop {
        if let Err(e) = ledger.drain(&meta).await {
            tracing::warn!(error = %e, "bucket usage: cannot resolve the buckets counted");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let boundary = now - now % SAMPLE_EVERY_MS;
        if boundary > sampled_at {
            let ttl = i64::try_from(SAMPLE_EVERY_MS).unwrap_or(i64::MAX);
            let at = i64::try_from(now).unwrap_or(i64::MAX);
            match meta.take_lease("usage", &holder, at, ttl).await {
                Ok(true) => match crate::usage::sample(&meta, boundary).await {
                    Ok(sample) => {
                        ledger.add_sample(sample);
                        sampled_at = boundary;
                    }
                    Err(e) => tracing::warn!(error = %e, "bucket usage: sampling failed"),
                },
                // Another gateway samples this one.
                Ok(false) => sampled_at = boundary,
                Err(e) => tracing::warn!(error = %e, "bucket usage: cannot take the lease"),
            }
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// Starts the background work `config` asks for: garbage collection and repair passes.
fn start_upkeep(
    config: &GatewayConfig,
    meta: &Meta,
    replicas: &Arc<Replicas>,
    metrics: &Arc<GatewayMetrics>,
    stop: &watch::Sender<bool>,
) {
    if let Some(schedule) = config.gc {
        let (m, r, metrics) = (meta.clone(), replicas.clone(), metrics.clone());
        tokio::spawn(every_with_lease(
            meta.clone(),
            "gc",
            schedule.interval,
            stop.subscribe(),
            move || {
                let (m, r, metrics) = (m.clone(), r.clone(), metrics.clone());
                async move {
                    match crate::gc::collect(&m, &r, schedule.grace).await {
                        Ok(report) => metrics.gc(Some(&report)),
                        Err(e) => {
                            tracing::error!(error = %e, "garbage collection pass failed; nothing deleted");
                            metrics.gc(None);
                        }
                    }
                }
            },
        ));
    }
    if let Some(schedule) = config.repair {
        replicas.set_gone_after(schedule.gone_after);
        let (m, r, metrics) = (meta.clone(), replicas.clone(), metrics.clone());
        tokio::spawn(every_with_lease(
            meta.clone(),
            "repair",
            schedule.interval,
            stop.subscribe(),
            move || {
                let (m, r, metrics) = (m.clone(), r.clone(), metrics.clone());
                async move {
                    match crate::repair::repair(&m, &r, schedule.bytes_per_sec).await {
                        Ok(report) => metrics.repair(Some(&report)),
                        Err(e) => {
                            tracing::error!(error = %e, "repair pass failed");
                            metrics.repair(None);
                        }
                    }
                    // Then pieces move to where the layout places them now.
                    match crate::rebalance::rebalance(&m, &r, schedule.bytes_per_sec).await {
                        Ok(report) => metrics.rebalance(Some(&report)),
                        Err(e) => {
                            tracing::error!(error = %e, "rebalance pass failed");
                            metrics.rebalance(None);
                        }
                    }
                }
            },
        ));
    }
}

/// Serves S3 on `listener` until `stopped`: the HTTP layer in front of s3s (CORS, body
/// digests, metrics).
async fn serve_listener(
    listener: tokio::net::TcpListener,
    service: s3s::service::S3Service,
    (counted, usage): (Arc<GatewayMetrics>, Arc<crate::usage::UsageLedger>),
    meta: Meta,
    host: Arc<MultiDomain>,
    mut stopped: watch::Receiver<bool>,
) {
    let http = auto::Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "S3 accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { stopped.wait_for(|s| *s).await.map(|_| ()) } => break,
        };
        // Small answers must not wait for the client's delayed ACK (Nagle).
        let _ = socket.set_nodelay(true);
        let service = service.clone();
        let metrics = counted.clone();
        let usage = usage.clone();
        let (meta, host) = (meta.clone(), host.clone());
        let counting =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                let slot = OpSlot::default();
                req.extensions_mut().insert(slot.clone());
                let bytes_in = metrics::declared_len(req.headers());
                let method_is_head = req.method() == http::Method::HEAD;
                // A body the handler may refuse before reading it all (a bad header, a
                // storage class not offered): then the connection must not be reused, or
                // the unread bytes would be parsed as the next request.
                let has_body = bytes_in.is_some_and(|n| n > 0)
                    || req.headers().contains_key(http::header::TRANSFER_ENCODING);
                let started = Instant::now();
                let service = service.clone();
                let metrics = metrics.clone();
                let usage = usage.clone();
                let (meta, host) = (meta.clone(), host.clone());
                // The bucket addressed, for its usage (one that does not exist is not
                // reported).
                let bucket = cors::addressed(&host, &req).map(|(b, _)| b);
                async move {
                    let res = if req.method() == http::Method::OPTIONS {
                        slot.set("CorsPreflight");
                        let addressed = cors::addressed(&host, &req);
                        Ok(cors::preflight(&meta, addressed, req.headers()).await)
                    } else {
                        // An `Origin` costs a read of the bucket's CORS configuration.
                        let cors = req
                            .headers()
                            .get(http::header::ORIGIN)
                            .cloned()
                            .and_then(|o| Some((o, cors::addressed(&host, &req)?.0)));
                        let method = req.method().clone();
                        // Bodies s3s reads whole are checked against their digests
                        // here (s3s does not); PutObject and UploadPart check theirs.
                        let verdict = checksum::Verdict::default();
                        let req = if checksum::wants_check(req.headers()) {
                            let (parts, body) = req.into_parts();
                            let body = checksum::CheckedBody::new(
                                body,
                                &parts.headers,
                                slot.clone(),
                                verdict.clone(),
                            );
                            http::Request::from_parts(parts, s3s::Body::http_body(body))
                        } else {
                            req.map(s3s::Body::from)
                        };
                        let mut res = service.call(req).await;
                        if let Some((code, message)) = verdict.take() {
                            res = Ok(cors::error_response(
                                http::StatusCode::BAD_REQUEST,
                                code.as_str(),
                                &message,
                                "",
                            ));
                        }
                        if let (Ok(r), Some((origin, bucket))) = (&mut res, cors) {
                            cors::decorate(&meta, &bucket, &origin, &method, r.headers_mut()).await;
                        }
                        res
                    };
                    let mut res = res;
                    if let Ok(r) = &mut res
                        && has_body
                        && (r.status().is_client_error() || r.status().is_server_error())
                    {
                        r.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    if let Ok(r) = &res {
                        // Usage counts requests that were let in and answered (not 4xx or
                        // 5xx: a refused request names any bucket it likes), with the body
                        // a successful write really stored (its declared length, checked
                        // against what arrived) and the body really sent (none for HEAD).
                        if let Some(bucket) = &bucket
                            && r.status().as_u16() < 400
                        {
                            let bytes_out = if method_is_head {
                                0
                            } else {
                                metrics::declared_len(r.headers()).unwrap_or(0)
                            };
                            usage.count(bucket, bytes_in.unwrap_or(0), bytes_out);
                        }
                        metrics.observe(
                            slot.take(),
                            r.status(),
                            started.elapsed(),
                            bytes_in,
                            r.headers(),
                        );
                    }
                    res
                }
            });
        let conn = http.serve_connection(TokioIo::new(socket), counting);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(graceful);
}

/// Opens the metadata database and serves S3 on `config.listen` until shut down.
pub async fn start(config: GatewayConfig) -> std::io::Result<GatewayHandle> {
    start_on(config, &[]).await
}

/// [`start`], serving on the addresses `also` as well as on `config.listen` (e.g. a
/// gateway that clients reach on a well-known address and edges on its node's own).
pub async fn start_on(
    config: GatewayConfig,
    also: &[SocketAddr],
) -> std::io::Result<GatewayHandle> {
    let meta = Meta::open(&config.meta_url)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let replicas = Replicas::new(
        config.nodes.clone(),
        config.redundancy,
        &config.cluster_token,
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    let keys = Keys::new(&config.keys);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {} (S3): {e}", config.listen),
            )
        })?;
    let addr = listener.local_addr()?;
    let mut extra = Vec::new();
    for a in also {
        extra.push(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {a} (S3): {e}"))
        })?);
    }
    let extra_addrs = extra
        .iter()
        .map(tokio::net::TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    let replicas = Arc::new(replicas);
    let gateway = s3::Gateway {
        meta: meta.clone(),
        replicas: replicas.clone(),
        keys: keys.clone(),
        block_bytes: config.block_bytes.max(4096),
    };
    let mut builder = S3ServiceBuilder::new(gateway);
    builder.set_auth(keys.clone());
    builder.set_access(metrics::Access {
        meta: meta.clone(),
        keys: keys.clone(),
    });
    let domains = [
        config.domain.clone(),
        format!("{}:{}", config.domain, addr.port()),
    ];
    let domain_error = |e| {
        let domain = &config.domain;
        std::io::Error::other(format!("bad S3 domain {domain:?}: {e}"))
    };
    builder.set_host(MultiDomain::new(&domains).map_err(domain_error)?);
    // The same parsing of the Host header, for the CORS layer.
    let host = Arc::new(MultiDomain::new(&domains).map_err(domain_error)?);
    let service = builder.build();
    let metrics = Arc::new(GatewayMetrics::default());
    let counted = metrics.clone();
    let (stop, _) = watch::channel(false);
    start_upkeep(&config, &meta, &replicas, &metrics, &stop);
    let usage = Arc::new(crate::usage::UsageLedger::default());
    tokio::spawn(usage_loop(meta.clone(), usage.clone(), stop.subscribe()));
    let mut loops = Vec::new();
    for listener in std::iter::once(listener).chain(extra) {
        loops.push(tokio::spawn(serve_listener(
            listener,
            service.clone(),
            (counted.clone(), usage.clone()),
            meta.clone(),
            host.clone(),
            stop.subscribe(),
        )));
    }
    let task = tokio::spawn(async move {
        for l in loops {
            let _ = l.await;
        }
    });
    tracing::info!(%addr, domain = %config.domain, "S3 gateway listening");
    Ok(GatewayHandle {
        addr,
        usage,
        also: extra_addrs,
        metrics,
        replicas,
        keys,
        stop,
        task,
    })
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    #[tokio::test]
    async fn a_lease_is_kept_while_a_long_run_lasts() {
        let meta = Meta::open("sqlite::memory:").await.expect("meta");
        let (_stop, stopped) = watch::channel(false);
        let (started, mut seen) = tokio::sync::mpsc::channel::<()>(1);
        // Runs every second (a lease of 2 s, renewed every 0.5 s); a run takes 6 s.
        let runner = tokio::spawn(every_with_lease(
            meta.clone(),
            "repair",
            std::time::Duration::from_secs(1),
            stopped,
            move || {
                let started = started.clone();
                async move {
                    let _ = started.send(()).await;
                    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
                }
            },
        ));
        seen.recv().await.expect("a run starts");
        // Past the first lease's 2 s, another gateway still cannot take it.
        for _ in 0..2 {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            assert!(
                !meta
                    .take_lease("repair", "other", now, 2000)
                    .await
                    .expect("lease"),
                "the lease lapsed while its run went on"
            );
        }
        runner.abort();
    }
}
