//! The built-in demo origin: a small real HTTP site (axum) that `lingjing up` runs on
//! `127.0.0.1:7900` as the origin of `www.demo.example`, and that edge tests use as an
//! origin with countable traffic. This module owns the configuration, the router, the
//! startup and the [`OriginHandle`]; the submodules own the individual resources.
//!
//! Resources served (every response carries `X-Origin: lingjing-demo`):
//! - `GET /`: HTML page, `public, max-age=60`, strong `ETag`, `Last-Modified`, 304s.
//! - `GET /assets/{app.css,app.js,logo.svg}`: `public, max-age=86400, immutable`, 304s.
//! - `GET /large.bin`: [`OriginConfig::large_size`] bytes from [`large_byte`], streamed in
//!   64 KiB chunks, single byte ranges (206 / 416). A request for several ranges is
//!   answered with the whole body (200), which RFC 9110 allows.
//! - `/api/...` (any method): dynamic JSON `{"now_ms":..,"hits":..}`, `no-store`.
//! - `GET /slow?ms=N`: answers after N ms (default 1000, capped at 30 000), `max-age=30`.
//! - `GET /tagged/{name}`: `Surrogate-Key: tag-{name} all`, `Cache-Tag: tag-{name}`.
//! - anything else: 404 with a short text body.

mod conditional;
mod dynamic;
mod generator;
mod large;
mod pages;
mod range;
mod stats;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use generator::{fill_large, large_byte};

/// Where `lingjing up` runs the demo origin.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7900));

/// Default size of `/large.bin`: 64 MiB.
pub const DEFAULT_LARGE_SIZE: u64 = 64 * 1024 * 1024;

/// Value of the `X-Origin` header on every response.
pub const ORIGIN_NAME: &str = "lingjing-demo";

/// How long [`OriginHandle::shutdown`] waits for in-flight requests before aborting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How to run the demo origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// Address to bind; port 0 picks a free port (read it back with [`OriginHandle::addr`]).
    pub listen: SocketAddr,
    /// Size of `/large.bin` in bytes.
    pub large_size: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            large_size: DEFAULT_LARGE_SIZE,
        }
    }
}

/// State shared by all handlers.
struct Shared {
    stats: stats::Stats,
    site: pages::Site,
    large: large::Large,
    api_hits: AtomicU64,
}

type AppState = Arc<Shared>;

/// Binds `config.listen`, spawns the server on the current tokio runtime and returns a
/// handle to it. Fails only when the address cannot be bound.
pub async fn serve(config: OriginConfig) -> io::Result<OriginHandle> {
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    // Last-Modified is fixed at start, truncated to whole seconds like HTTP dates.
    let started = SystemTime::from(httpdate::HttpDate::from(SystemTime::now()));
    let shared = Arc::new(Shared {
        stats: stats::Stats::default(),
        site: pages::Site::new(started)?,
        large: large::Large::new(config.large_size, started)?,
        api_hits: AtomicU64::new(0),
    });
    let app = router(Arc::clone(&shared));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // Resolves on an explicit stop and when the handle is dropped.
                let _ = stop_rx.await;
            })
            .await
    });
    tracing::info!(%addr, large_size = config.large_size, "demo origin listening");
    Ok(OriginHandle {
        addr,
        shared,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

fn router(shared: AppState) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/assets/{file}", get(pages::asset))
        .route("/large.bin", get(large::large))
        .route("/api/", any(dynamic::api))
        .route("/api/{*rest}", any(dynamic::api))
        .route("/slow", get(dynamic::slow))
        .route("/tagged/{name}", get(pages::tagged))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            count_and_mark,
        ))
        .with_state(shared)
}

/// Counts the request (before handling, so a test sees it as soon as the answer starts)
/// and marks the response with `X-Origin`.
async fn count_and_mark(State(shared): State<AppState>, req: Request, next: Next) -> Response {
    shared.stats.record(req.uri().path());
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert("x-origin", HeaderValue::from_static(ORIGIN_NAME));
    res
}

/// A running demo origin. Dropping it stops the server too (gracefully, in the
/// background); call [`OriginHandle::shutdown`] to stop it and wait.
#[derive(Debug)]
pub struct OriginHandle {
    addr: SocketAddr,
    shared: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("total_requests", &self.stats.total())
            .finish_non_exhaustive()
    }
}

impl OriginHandle {
    /// The bound address (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Size of `/large.bin` in bytes.
    pub fn large_size(&self) -> u64 {
        self.shared.large.size()
    }

    /// Requests seen so far for exactly this path (no query string), any method and
    /// status. Only the first 4096 distinct paths are counted one by one.
    pub fn requests(&self, path: &str) -> u64 {
        self.shared.stats.requests(path)
    }

    /// All requests seen so far.
    pub fn total_requests(&self) -> u64 {
        self.shared.stats.total()
    }

    /// Stops accepting connections, lets in-flight requests finish (at most 10 s, then
    /// aborts them) and waits for the server task.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(io::Error::other(join)),
            Err(_elapsed) => {
                task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for OriginHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
