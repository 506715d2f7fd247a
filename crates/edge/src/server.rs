//! The listeners of an edge node: HTTP/1.1 and h2c on each HTTP address, HTTP/1.1 and h2
//! (by ALPN) over TLS on each HTTPS address, and the admin server (`/healthz`,
//! `/metrics`), all under the limits of `crate::limits` (header-read and idle timeouts,
//! connection caps, HTTP/2 streams). Shutdown stops accepting and lets in-flight requests
//! finish.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::body::{Body, BoxError};
use crate::limits::{self, ConnGate, Handler};
use crate::node::{Edge, EdgeConfig};

/// Largest request head accepted (request line and headers); larger gets 431/414.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long a client has to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running edge node.
pub struct EdgeHandle {
    pub edge: Arc<Edge>,
    http: Vec<SocketAddr>,
    https: Vec<SocketAddr>,
    admin: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl EdgeHandle {
    /// The bound HTTP addresses.
    pub fn http_addrs(&self) -> &[SocketAddr] {
        &self.http
    }

    /// The bound HTTPS addresses.
    pub fn https_addrs(&self) -> &[SocketAddr] {
        &self.https
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Stops accepting, waits (up to 10 s) for in-flight requests.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        // Queued disk cache writes reach the disk before the process exits.
        if let Some(h) = self.edge.hybrid.clone() {
            let _ = tokio::task::spawn_blocking(move || h.disk().flush()).await;
        }
    }
}

/// How long shutdown waits for a listener's connections to finish.
const DRAIN: Duration = Duration::from_secs(10);

/// Binds every listener of `config` and serves `edge`, under `config.limits`.
pub async fn start(config: &EdgeConfig, edge: Arc<Edge>) -> std::io::Result<EdgeHandle> {
    let (stop, stopped) = watch::channel(false);
    let limits = &config.limits;
    let builder = Arc::new(limits.builder());
    // One cap for the public listeners together; the admin port has its own.
    let public_gate = ConnGate::new(limits.max_connections, edge.conn_metrics.clone());
    let admin_gate = ConnGate::new(limits.admin_max_connections, edge.conn_metrics.clone());
    let mut tasks = Vec::new();
    let mut http = Vec::new();
    for addr in &config.http {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        http.push(listener.local_addr()?);
        tasks.push(tokio::spawn(serve_http(
            listener,
            edge.clone(),
            builder.clone(),
            public_gate.clone(),
            limits.idle_timeout,
            stopped.clone(),
        )));
    }
    let mut https = Vec::new();
    if !config.https.is_empty() {
        let tls = crate::tls::server_config(edge.certs.clone())
            .map_err(|e| std::io::Error::other(format!("cannot configure TLS: {e}")))?;
        let acceptor = TlsAcceptor::from(tls);
        for addr in &config.https {
            let listener = TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr} (https): {e}"))
            })?;
            https.push(listener.local_addr()?);
            tasks.push(tokio::spawn(serve_https(
                listener,
                acceptor.clone(),
                edge.clone(),
                builder.clone(),
                public_gate.clone(),
                limits.idle_timeout,
                stopped.clone(),
            )));
        }
    }
    let admin_listener = TcpListener::bind(config.admin).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {} (admin): {e}", config.admin),
        )
    })?;
    let admin = admin_listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(edge.clone());
    tasks.push(tokio::spawn(serve_admin(
        admin_listener,
        app,
        edge.clone(),
        builder.clone(),
        admin_gate,
        limits.idle_timeout,
        stopped.clone(),
    )));
    tracing::info!(node = %config.node_id, ?http, ?https, %admin, "edge node listening");
    Ok(EdgeHandle {
        edge,
        http,
        https,
        admin,
        stop,
        tasks,
    })
}

async fn serve_http(
    listener: TcpListener,
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    gate: ConnGate,
    idle: Duration,
    stopped: watch::Receiver<bool>,
) {
    limits::serve_listener(
        "http",
        listener,
        gate,
        stopped,
        DRAIN,
        |stream, client, stopped| {
            let edge = edge.clone();
            let builder = builder.clone();
            async move {
                let metrics = edge.conn_metrics.clone();
                let handler: Handler = Arc::new(move |req| {
                    Box::pin(crate::proxy::handle(edge.clone(), req, client, false))
                });
                limits::serve_connection(
                    &builder,
                    TokioIo::new(stream),
                    handler,
                    idle,
                    (&metrics, "http"),
                    stopped,
                )
                .await;
            }
        },
    )
    .await;
}

/// Accepts TLS connections: each handshakes in its own task (at most
/// [`TLS_HANDSHAKE_TIMEOUT`]; a failed one is logged at debug and closed), then is served
/// like a plain HTTP connection, with `tls` set for the proxy.
async fn serve_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    gate: ConnGate,
    idle: Duration,
    stopped: watch::Receiver<bool>,
) {
    limits::serve_listener(
        "https",
        listener,
        gate,
        stopped,
        DRAIN,
        |stream, client, mut stopped| {
            let edge = edge.clone();
            let builder = builder.clone();
            let acceptor = acceptor.clone();
            async move {
                let handshake = tokio::select! {
                    h = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => h,
                    _ = stopped.wait_for(|s| *s) => return,
                };
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%client, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%client, "TLS handshake timed out");
                        return;
                    }
                };
                let sni: Option<Arc<str>> = stream.get_ref().1.server_name().map(Arc::from);
                let metrics = edge.conn_metrics.clone();
                let handler: Handler = Arc::new(move |req| {
                    let edge = edge.clone();
                    let sni = sni.clone();
                    Box::pin(async move {
                        if misdirected(&edge, sni.as_deref(), &req) {
                            return misdirected_response();
                        }
                        crate::proxy::handle(edge, req, client, true).await
                    })
                });
                limits::serve_connection(
                    &builder,
                    TokioIo::new(stream),
                    handler,
                    idle,
                    (&metrics, "https"),
                    stopped,
                )
                .await;
            }
        },
    )
    .await;
}

/// The admin port (`/healthz`, `/metrics`), under the same limits with its own cap.
async fn serve_admin(
    listener: TcpListener,
    app: Router,
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    gate: ConnGate,
    idle: Duration,
    stopped: watch::Receiver<bool>,
) {
    limits::serve_listener(
        "admin",
        listener,
        gate,
        stopped,
        DRAIN,
        |stream, _client, stopped| {
            let app = app.clone();
            let builder = builder.clone();
            let metrics = edge.conn_metrics.clone();
            async move {
                let handler: Handler = Arc::new(move |req| {
                    let mut app = app.clone();
                    Box::pin(async move {
                        let res = match tower_service::Service::call(&mut app, req).await {
                            Ok(res) => res,
                            Err(never) => match never {},
                        };
                        res.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
                    })
                });
                limits::serve_connection(
                    &builder,
                    TokioIo::new(stream),
                    handler,
                    idle,
                    (&metrics, "admin"),
                    stopped,
                )
                .await;
            }
        },
    )
    .await;
}

/// Whether `req` names (by `:authority` or Host) a service other than the one whose
/// certificate the connection was set up with (its SNI): such a request is answered 421,
/// so that one tenant's TLS connection never carries another tenant's traffic (RFC 9110
/// section 15.5.20; an HTTP/2 client that coalesced connections retries on a new one).
fn misdirected(edge: &Edge, sni: Option<&str>, req: &Request<Incoming>) -> bool {
    let host = req.uri().host().or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(crate::routes::strip_port)
    });
    let Some(host) = host else {
        return false;
    };
    if sni.is_some_and(|s| s.eq_ignore_ascii_case(host.trim_end_matches('.'))) {
        return false;
    }
    let routes = edge.routes.load();
    match routes.lookup(host) {
        // Unknown hosts get the proxy's own answer.
        None => false,
        Some(target) => sni
            .and_then(|s| routes.lookup(s))
            .is_none_or(|own| own.service.id != target.service.id),
    }
}

fn misdirected_response() -> Response<Body> {
    let mut res = Response::new(crate::body::full(
        "misdirected request: this connection's TLS server name belongs to another service; retry on a new connection\n",
    ));
    *res.status_mut() = StatusCode::MISDIRECTED_REQUEST;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

async fn healthz(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    let version = edge.version();
    if version == 0 {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no snapshot yet\n".to_owned(),
        )
    } else {
        (StatusCode::OK, format!("ok {version}\n"))
    }
}

async fn metrics(State(edge): State<Arc<Edge>>) -> impl IntoResponse {
    edge.refresh_gauges();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        edge.metrics.encode(),
    )
}
