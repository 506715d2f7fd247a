//! An edge node's shared state and its life: the routing table (swapped per snapshot), the
//! cache, the upstream client and the metrics; `start` binds the HTTP and admin listeners,
//! and `apply` takes a new edge snapshot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use lingjing_model::snapshot::{EdgeSnapshot, Snapshot};

use crate::cache::fill::Inflight;
use crate::cache::hybrid::HybridStore;
use crate::cache::store::{MemoryStore, Storage};
use crate::metrics::Metrics;
use crate::routes::Routes;
use crate::upstream::Upstream;

/// How an edge node runs.
#[derive(Clone)]
pub struct EdgeConfig {
    /// This node's id in the inventory (names it in `Via` and `Cache-Status`).
    pub node_id: String,
    /// Plain HTTP listeners (HTTP/1.1 and h2c).
    pub http: Vec<SocketAddr>,
    /// HTTPS listeners (HTTP/1.1 and h2 by ALPN; certificates by SNI from the snapshot).
    pub https: Vec<SocketAddr>,
    /// The admin listener: `/healthz`, `/metrics`.
    pub admin: SocketAddr,
    /// Memory cache size in bytes.
    pub memory_bytes: u64,
    /// Disk cache directory (`None`: memory only); it survives restarts.
    pub disk_dir: Option<PathBuf>,
    /// Disk cache size in bytes.
    pub disk_bytes: u64,
    /// Emit an access log event per request.
    pub access_log: bool,
    /// Size of the slices large objects and range requests are cached in
    /// (`crate::slice`; default [`crate::slice::DEFAULT_SLICE_BYTES`]).
    pub slice_bytes: u64,
    /// Limits of the HTTP, HTTPS and admin listeners (slow clients, connection counts,
    /// HTTP/2 streams); see [`crate::limits::ServerLimits`].
    pub limits: crate::limits::ServerLimits,
    /// Resource bounds of the cache (longest cached URL, fill buffer, store buffers); see
    /// [`crate::cache::CacheLimits`].
    pub cache_limits: crate::cache::CacheLimits,
    /// Serve the public listeners thread-per-core on this many threads, each with its own
    /// runtime and upstream pools (`crate::cores`); 0: on the caller's runtime.
    pub threads: usize,
    /// Traffic defence: table sizes, per-source connection caps, or off
    /// ([`crate::defence::DefenceConfig`]).
    pub defence: crate::defence::DefenceConfig,
    /// This node's own credential at the control plane (the agent's): the artefact relay
    /// (`crate::relay`) fetches with it. `None` (a standalone edge): the relay answers 503.
    pub platform_credential: Option<String>,
}

impl EdgeConfig {
    pub fn new(node_id: &str, http: SocketAddr, admin: SocketAddr) -> EdgeConfig {
        EdgeConfig {
            node_id: node_id.to_owned(),
            http: vec![http],
            https: Vec::new(),
            admin,
            memory_bytes: 256 * 1024 * 1024,
            disk_dir: None,
            disk_bytes: 10 * 1024 * 1024 * 1024,
            access_log: true,
            slice_bytes: crate::slice::DEFAULT_SLICE_BYTES,
            limits: crate::limits::ServerLimits::default(),
            cache_limits: crate::cache::CacheLimits::default(),
            threads: 0,
            defence: crate::defence::DefenceConfig::default(),
            platform_credential: None,
        }
    }
}

/// State shared by every request of a node.
pub struct Edge {
    pub node_id: String,
    pub routes: ArcSwap<Routes>,
    /// The services' TLS certificates (swapped per snapshot, like `routes`).
    pub certs: Arc<crate::tls::Certificates>,
    pub store: Arc<dyn Storage>,
    /// The disk-backed store, when there is a disk cache.
    pub hybrid: Option<Arc<HybridStore>>,
    /// Traffic per service, reported to the control plane.
    pub usage: Arc<crate::usage::UsageRegistry>,
    /// Bumped by every purge; a fill started under an older epoch does not store.
    pub purge_epoch: std::sync::atomic::AtomicU64,
    /// Whether any slice has been stored (or was found in the store at start): until one
    /// is, a plain GET miss skips looking for slices to assemble (`slice::held_as_slices`).
    pub holds_slices: std::sync::atomic::AtomicBool,
    pub inflight: Inflight,
    pub upstream: Upstream,
    pub metrics: Metrics,
    /// The origin policy and loop guard of the snapshot being served (`crate::guard`).
    pub guard: Arc<ArcSwap<crate::guard::Guard>>,
    pub guard_metrics: crate::guard::GuardMetrics,
    /// Connection counters of the listeners (`crate::limits`).
    pub conn_metrics: crate::limits::ConnMetrics,
    /// `1.1 lingjing-<node>`.
    pub via: HeaderValue,
    pub access_log: bool,
    /// Slice size for large objects and range requests (`crate::slice`).
    pub slice_bytes: u64,
    /// Resource bounds of the cache (`crate::cache::CacheLimits`).
    pub cache_limits: crate::cache::CacheLimits,
    /// The budget of every fill's copy of a body kept to store it (`crate::cache::budget`).
    pub store_buffers: Arc<crate::cache::budget::StoreBudget>,
    /// Traffic defence: screening, counting, detection (`crate::defence`).
    pub defence: Arc<crate::defence::Defence>,
    /// This node's credential at the control plane, for the artefact relay
    /// (`EdgeConfig::platform_credential`).
    platform_credential: Option<String>,
}

impl std::fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("node_id", &self.node_id)
            .field("http", &self.http)
            .field("https", &self.https)
            .field("admin", &self.admin)
            .field("memory_bytes", &self.memory_bytes)
            .field("disk_dir", &self.disk_dir)
            .field("disk_bytes", &self.disk_bytes)
            .field("access_log", &self.access_log)
            .field("slice_bytes", &self.slice_bytes)
            .field("limits", &self.limits)
            .field("cache_limits", &self.cache_limits)
            .field("threads", &self.threads)
            .field("defence", &self.defence)
            .field(
                "platform_credential",
                &self.platform_credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Edge {
    pub fn new(config: &EdgeConfig) -> Arc<Edge> {
        let via = HeaderValue::from_str(&format!("1.1 lingjing-{}", config.node_id))
            .unwrap_or_else(|_| HeaderValue::from_static("1.1 lingjing"));
        let hybrid = config.disk_dir.as_ref().and_then(|dir| {
            match HybridStore::open(config.memory_bytes, dir, config.disk_bytes) {
                Ok(h) => Some(Arc::new(h)),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "disk cache unavailable: memory only");
                    None
                }
            }
        });
        let store: Arc<dyn Storage> = match &hybrid {
            Some(h) => h.clone(),
            None => Arc::new(MemoryStore::new(config.memory_bytes)),
        };
        let mut metrics = Metrics::default();
        let guard_metrics = crate::guard::GuardMetrics::register(&mut metrics.registry);
        let conn_metrics = crate::limits::ConnMetrics::register(&mut metrics.registry);
        let defence = Arc::new(crate::defence::Defence::new(
            &config.node_id,
            &config.defence,
            &mut metrics.registry,
        ));
        let guard = Arc::new(ArcSwap::from_pointee(crate::guard::Guard::empty(
            &config.node_id,
        )));
        let upstream = Upstream::new(
            &config.node_id,
            config.threads,
            guard.clone(),
            guard_metrics.origin_refused.clone(),
        );
        let store_buffers = Arc::new(crate::cache::budget::StoreBudget::new(
            config.cache_limits.store_buffer_bytes,
            metrics.store_budget.clone(),
        ));
        let holds_slices = store
            .keys()
            .iter()
            .any(|k| k.contains(crate::slice::SLICE_SEPARATOR));
        Arc::new(Edge {
            holds_slices: std::sync::atomic::AtomicBool::new(holds_slices),
            node_id: config.node_id.clone(),
            routes: ArcSwap::from_pointee(Routes::default()),
            certs: Arc::new(crate::tls::Certificates::default()),
            store,
            hybrid,
            purge_epoch: std::sync::atomic::AtomicU64::new(0),
            usage: Arc::default(),
            inflight: Inflight::new(config.cache_limits.fill_buffer_bytes, metrics.fill.clone()),
            upstream,
            metrics,
            guard,
            guard_metrics,
            conn_metrics,
            via,
            access_log: config.access_log,
            slice_bytes: config.slice_bytes.max(1),
            cache_limits: config.cache_limits,
            store_buffers,
            defence,
            platform_credential: config.platform_credential.clone(),
        })
    }

    /// A `Cache-Status` value naming this node (RFC 9211).
    pub fn cache_status(&self, params: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("lingjing-{}; {params}", self.node_id))
            .unwrap_or_else(|_| HeaderValue::from_static("lingjing"))
    }

    /// The snapshot version being served (0: none yet).
    pub fn version(&self) -> u64 {
        self.routes.load().version
    }

    /// Takes a new edge snapshot. In-flight requests finish on the table they started with.
    pub fn apply(&self, snapshot: &Snapshot<EdgeSnapshot>) -> Result<(), String> {
        let previous = self.version();
        if snapshot.version < previous {
            return Err(format!(
                "snapshot version {} is older than the one applied ({previous})",
                snapshot.version
            ));
        }
        let routes = Routes::build(
            snapshot.version,
            &snapshot.body,
            &self.node_id,
            self.platform_credential.as_deref(),
            &self.usage,
            &self.metrics,
            &self.defence,
        );
        self.defence.apply(
            &snapshot.body.services,
            &snapshot.body.defence_rules,
            &snapshot.body.defence_learned,
            &snapshot.body.nodes,
        );
        self.certs.update(&snapshot.body.services);
        // Before the routes: a request routed by the new table is checked by its policy.
        let guard = crate::guard::Guard::build(&snapshot.body, &self.node_id);
        let policy_changed = self.guard.load().policy != guard.policy;
        self.guard.store(Arc::new(guard));
        if policy_changed {
            self.upstream.reset_origin_pool();
        }
        self.routes.store(Arc::new(routes));
        self.apply_purges(previous, snapshot.version, &snapshot.body);
        self.metrics.snapshot_version.set(snapshot.version as i64);
        Ok(())
    }

    /// Applies the purges issued after `previous` (all of them on a fresh start). A node
    /// whose cache is older than the purges the snapshot still carries drops it whole.
    fn apply_purges(&self, previous: u64, version: u64, body: &EdgeSnapshot) {
        use std::sync::atomic::Ordering;
        let mut previous = previous;
        // A disk cache from an earlier run reflects the purges recorded with it.
        if previous == 0
            && let Some(h) = &self.hybrid
        {
            match h
                .disk()
                .meta("purges_applied")
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(v) => previous = v,
                None => {
                    crate::purge::flush(self.store.as_ref());
                }
            }
        }
        if previous > 0 && previous < body.purges_complete_after {
            let n = crate::purge::flush(self.store.as_ref());
            self.purge_epoch.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(
                previous,
                removed = n,
                "missed purges while away: cache dropped"
            );
            self.record_purges(version);
            return;
        }
        for purge in body.purges.iter().filter(|p| p.version > previous) {
            // Fills already running may carry purged content: they must not store it.
            self.purge_epoch.fetch_add(1, Ordering::AcqRel);
            let service = body.services.iter().find(|s| s.id == purge.service);
            let n = crate::purge::apply(self.store.as_ref(), purge, service);
            tracing::info!(id = purge.id, kind = ?purge.kind, mode = ?purge.mode, touched = n, "purge applied");
        }
        self.record_purges(version);
    }

    /// Records on disk that the disk cache reflects every purge up to `version`.
    fn record_purges(&self, version: u64) {
        if let Some(h) = &self.hybrid {
            h.disk().flush();
            if let Err(e) = h.disk().set_meta("purges_applied", &version.to_string()) {
                tracing::warn!(error = %e, "could not record the applied purges");
            }
        }
    }

    /// Refreshes the cache gauges (called on each scrape).
    pub fn refresh_gauges(&self) {
        let (bytes, objects) = self.store.usage();
        self.metrics.cache_bytes.set(bytes as i64);
        self.metrics.cache_objects.set(objects as i64);
        self.metrics.evictions.set(self.store.evictions() as i64);
        use std::sync::atomic::Ordering;
        let lookups = self.metrics.lookups.load(Ordering::Relaxed);
        if lookups > 0 {
            let hits = self.metrics.hits.load(Ordering::Relaxed);
            self.metrics.hit_ratio.set(hits as f64 / lookups as f64);
        }
        if let Some(h) = &self.hybrid {
            self.metrics
                .disk_corrupt
                .set(h.disk().corrupt_entries() as i64);
        }
    }
}
