//! Running the control plane: open the store, build the API, bind, serve until told to
//! stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{AppState, router};
use crate::auth::sha256_hex;
use crate::context::ViewContext;
use crate::error::StoreError;
pub use crate::listener::{HttpOptions, Mount, RelaySettings, ServerLimits, TlsFiles};
use crate::snapshot::Hub;
use crate::store::Store;

/// The platform DNS zone by default.
pub const DEFAULT_ZONE: &str = "cdn.lingjing.test.";

/// What the control plane needs to run.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Where the REST API listens, e.g. `127.0.0.1:7700` (port 0 picks one).
    pub listen: SocketAddr,
    /// The operator's bearer token.
    pub operator_token: String,
    /// The platform DNS zone (with the trailing dot).
    pub zone: String,
    /// Active health checks of the nodes (`None`: off).
    pub health: Option<crate::health::HealthConfig>,
    /// What tenants may point at and name (origins, reserved labels, domain control).
    pub policy: crate::policy::TrustPolicy,
    /// How object storage keeps blocks (handed to the S3 gateways).
    pub storage: lingjing_model::snapshot::StoragePolicy,
    /// How long metering samples are kept, in days ([`DEFAULT_METER_RETENTION_DAYS`]).
    pub meter_retention_days: u32,
}

/// Metering samples are kept this long by default (a year and a month: last year's
/// same month stays comparable).
pub const DEFAULT_METER_RETENTION_DAYS: u32 = 400;

/// A running control plane.
pub struct ControlHandle {
    addr: SocketAddr,
    /// Serving HTTPS.
    tls: bool,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    watcher: JoinHandle<()>,
    prober: Option<JoinHandle<()>>,
    learner: JoinHandle<()>,
    metering: JoinHandle<()>,
    evidence: JoinHandle<()>,
    hub: Arc<Hub>,
    rollouts: JoinHandle<()>,
    platform_alerts: JoinHandle<()>,
}

impl ControlHandle {
    /// The bound address of the REST API.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:7700` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Where committed configuration versions are announced to long-pollers.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Stops the background rollout driver (tests then step rollouts themselves with
    /// [`crate::rollout_driver::step_rollouts`] at a time of their choosing).
    pub fn stop_rollout_driver(&self) {
        self.rollouts.abort();
    }

    /// Stops the background watch of the platform's own alerts (tests then run
    /// [`crate::platform_alerts::pass`] and `notify` themselves).
    pub fn stop_platform_alerts(&self) {
        self.platform_alerts.abort();
    }

    /// Stops accepting requests, lets in-flight ones finish, and closes the store.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.watcher.abort();
        self.learner.abort();
        self.metering.abort();
        self.evidence.abort();
        self.rollouts.abort();
        self.platform_alerts.abort();
        if let Some(p) = &self.prober {
            p.abort();
        }
        let result = match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        self.store.close().await;
        result
    }
}

/// Binds `config.listen` and serves the API over `store` (plain HTTP, default limits).
pub async fn serve(config: ControlConfig, store: Store) -> Result<ControlHandle, ServeError> {
    serve_with(config, HttpOptions::default(), store).await
}

/// Binds `config.listen` and serves the API over `store`, over TLS when `http.tls` is set,
/// with `http.limits` (see [`crate::listener`]).
pub async fn serve_with(
    config: ControlConfig,
    http: HttpOptions,
    store: Store,
) -> Result<ControlHandle, ServeError> {
    let acceptor = match &http.tls {
        Some(files) => Some(tokio_rustls::TlsAcceptor::from(
            crate::listener::server_config(files)?,
        )),
        None => None,
    };
    let tls = acceptor.is_some();
    let store = Arc::new(store);
    {
        let mut w = store.write(false).await?;
        crate::store::storage::ensure_cluster_token(&mut w.tx).await?;
        w.commit().await?;
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    let views = Arc::new(ViewContext {
        zone: config.zone.clone(),
        policy: config.policy.clone(),
        control_endpoint: Some(addr),
        storage: lingjing_model::snapshot::StoragePolicy {
            replicas: config.storage.replicas.max(1),
            ..config.storage
        },
        meter_retention_days: config.meter_retention_days.max(1),
        relay: http.relay.as_ref().map(|r| {
            let upstream = r
                .upstream
                .clone()
                .unwrap_or_else(|| format!("{}://{addr}", if tls { "https" } else { "http" }));
            (upstream, r.ca_pem.clone())
        }),
    });
    let hub = Hub::new(store.version().await?, views.clone());
    let state = AppState {
        store: store.clone(),
        hub: hub.clone(),
        operator_token_sha256: sha256_hex(&config.operator_token),
        views,
    };
    // Traffic defence learns thresholds from the edges' per-minute reports.
    let learner = tokio::spawn(crate::defence::learn_loop(
        state.clone(),
        Duration::from_secs(300),
    ));
    // This month's partition exists before the first heartbeat can land in the default.
    if let Err(e) = crate::metering::pass(&state).await {
        tracing::warn!(error = %e, "metering: upkeep at start failed; retried hourly");
    }
    let metering = tokio::spawn(crate::metering::maintain_loop(
        state.clone(),
        Duration::from_secs(3600),
    ));
    // Road inspection's evidence images move into the tenants' buckets every 10 s.
    let evidence = tokio::spawn(crate::evidence::mover_loop(
        store.clone(),
        hub.clone(),
        crate::evidence::EVERY,
    ));
    let api = router(state);
    let app = match &http.mount {
        Some(Mount(mount)) => mount(api, tls),
        None => api,
    }
    .layer(tower_http::trace::TraceLayer::new_for_http());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let (stop_all, stop_seen) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = stopped.await;
            let _ = stop_all.send(true);
        });
        crate::listener::serve(listener, app, acceptor, http.limits, stop_seen).await
    });
    // Writes by another control-plane replica on the same PostgreSQL reach this one's
    // long-pollers through this check.
    let watcher = {
        let (store, hub) = (store.clone(), hub.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Ok(v) = store.version().await {
                    hub.publish(v);
                }
            }
        })
    };
    // The platform watches itself: its health, storage and defence signals as alerts.
    let platform_alerts = tokio::spawn(crate::platform_alerts::watch_loop(
        store.clone(),
        crate::platform_alerts::EVERY,
    ));
    // Rollouts of model versions step every second.
    let rollouts = tokio::spawn(crate::rollout_driver::drive(
        store.clone(),
        hub.clone(),
        Duration::from_secs(1),
    ));
    let prober = config
        .health
        .map(|h| crate::health::spawn(store.clone(), hub.clone(), h));
    tracing::info!(%addr, tls, "control plane listening");
    Ok(ControlHandle {
        addr,
        tls,
        store,
        stop: Some(stop),
        task,
        watcher,
        prober,
        learner,
        metering,
        evidence,
        hub,
        rollouts,
        platform_alerts,
    })
}

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(
        "cannot listen on {0}: {1} (is another lingjing already running? pick another address with --listen)"
    )]
    Bind(SocketAddr, std::io::Error),
    #[error("{0}")]
    Tls(#[from] crate::listener::TlsError),
}
