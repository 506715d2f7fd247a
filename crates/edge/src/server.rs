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
use tokio::net::{TcpListener, TcpStream};
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

/// Binds every listener of `config` and serves `edge`, under `config.limits`. With
/// `config.threads` set, the public listeners are served thread-per-core
/// (`crate::cores`); the admin listener always runs on the caller's runtime.
pub async fn start(config: &EdgeConfig, edge: Arc<Edge>) -> std::io::Result<EdgeHandle> {
    let (stop, stopped) = watch::channel(false);
    let limits = &config.limits;
    let builder = Arc::new(limits.builder());
    // One cap for the public listeners together; the admin port has its own.
    let public_gate = ConnGate::new(limits.max_connections, edge.conn_metrics.clone())
        .with_defence(edge.defence.clone());
    let admin_gate = ConnGate::new(limits.admin_max_connections, edge.conn_metrics.clone());
    let serving = Serving {
        edge: edge.clone(),
        builder,
        idle: limits.idle_timeout,
        stopped,
    };
    let mut public = Public::new(config.threads);
    let mut http = Vec::new();
    for addr in &config.http {
        http.push(public.bind(*addr, "", Kind::Http).await?);
    }
    let mut https = Vec::new();
    if !config.https.is_empty() {
        let tls = crate::tls::server_config(edge.certs.clone())
            .map_err(|e| std::io::Error::other(format!("cannot configure TLS: {e}")))?;
        let acceptor = TlsAcceptor::from(tls);
        for addr in &config.https {
            https.push(
                public
                    .bind(*addr, " (https)", Kind::Https(acceptor.clone()))
                    .await?,
            );
        }
    }
    let mut tasks = public.serve(&serving, &public_gate)?;
    tasks.push(tokio::spawn(crate::defence::run(
        edge.defence.clone(),
        serving.stopped.clone(),
    )));
    let admin_listener = bind(config.admin, " (admin)").await?;
    let admin = admin_listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(edge.clone());
    tasks.push(tokio::spawn(serving.clone().serve(
        Kind::Admin(app),
        admin_listener,
        admin_gate,
    )));
    tracing::info!(node = %config.node_id, ?http, ?https, %admin, threads = config.threads, "edge node listening");
    Ok(EdgeHandle {
        edge,
        http,
        https,
        admin,
        stop,
        tasks,
    })
}

/// Binds `addr`; a failure names the address and `what` (e.g. `" (https)"`).
async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| cannot_listen(addr, what, e))
}

fn cannot_listen(addr: SocketAddr, what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot listen on {addr}{what}: {e}"))
}

/// The public listeners: on the caller's runtime (`threads` 0), or one socket per address
/// and core, each core serving its own sockets.
enum Public {
    Shared(Vec<(Kind, TcpListener)>),
    PerCore(Vec<Vec<(Kind, std::net::TcpListener)>>),
}

impl Public {
    fn new(threads: usize) -> Public {
        if threads == 0 {
            Public::Shared(Vec::new())
        } else {
            Public::PerCore((0..threads).map(|_| Vec::new()).collect())
        }
    }

    /// Binds `addr` (once per core when per-core) to be served as `kind`; the bound
    /// address.
    async fn bind(
        &mut self,
        addr: SocketAddr,
        what: &str,
        kind: Kind,
    ) -> std::io::Result<SocketAddr> {
        match self {
            Public::Shared(listeners) => {
                let listener = bind(addr, what).await?;
                let bound = listener.local_addr()?;
                listeners.push((kind, listener));
                Ok(bound)
            }
            Public::PerCore(cores) => {
                let sockets = crate::cores::bind_shared(addr, cores.len())
                    .map_err(|e| cannot_listen(addr, what, e))?;
                let bound = sockets[0].local_addr()?;
                for (core, socket) in cores.iter_mut().zip(sockets) {
                    core.push((kind.clone(), socket));
                }
                Ok(bound)
            }
        }
    }

    /// Starts serving every listener; a task per listener (shared) or per core thread.
    fn serve(self, serving: &Serving, gate: &ConnGate) -> std::io::Result<Vec<JoinHandle<()>>> {
        let mut tasks = Vec::new();
        match self {
            Public::Shared(listeners) => {
                for (kind, listener) in listeners {
                    tasks.push(tokio::spawn(serving.clone().serve(
                        kind,
                        listener,
                        gate.clone(),
                    )));
                }
            }
            Public::PerCore(cores) => {
                for (core, listeners) in cores.into_iter().enumerate() {
                    let serving = serving.clone();
                    let gate = gate.clone();
                    let finished = crate::cores::spawn("edge", core, move |_| async move {
                        let mut set = tokio::task::JoinSet::new();
                        for (kind, socket) in listeners {
                            match TcpListener::from_std(socket) {
                                Ok(listener) => {
                                    set.spawn(serving.clone().serve(kind, listener, gate.clone()));
                                }
                                Err(e) => tracing::error!(error = %e, "cannot serve a listener"),
                            }
                        }
                        set.join_all().await;
                    })?;
                    tasks.push(tokio::spawn(async move {
                        let _ = finished.await;
                    }));
                }
            }
        }
        Ok(tasks)
    }
}

/// What a listener serves; accepting, caps, limits and draining are the same for all.
#[derive(Clone)]
enum Kind {
    /// HTTP/1.1 and h2c to the proxy.
    Http,
    /// TLS, then HTTP/1.1 or h2 (by ALPN) to the proxy, with `tls` set for it.
    Https(TlsAcceptor),
    /// The admin port (`/healthz`, `/metrics`), under the same limits with its own cap.
    Admin(Router),
}

impl Kind {
    /// The listener's name in logs and connection metrics.
    fn name(&self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https(_) => "https",
            Kind::Admin(_) => "admin",
        }
    }
}

/// What every listener's accept loop shares.
#[derive(Clone)]
struct Serving {
    edge: Arc<Edge>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    idle: Duration,
    stopped: watch::Receiver<bool>,
}

impl Serving {
    /// Serves `listener` as `kind` until stopped, each connection admitted by `gate` and
    /// in its own task. A TLS connection handshakes first (at most
    /// [`TLS_HANDSHAKE_TIMEOUT`]; a failed one is logged at debug and closed), then is
    /// served like a plain one.
    async fn serve(self, kind: Kind, listener: TcpListener, gate: ConnGate) {
        let Serving {
            edge,
            builder,
            idle,
            stopped,
        } = self;
        let name = kind.name();
        limits::serve_listener(
            name,
            listener,
            gate,
            stopped,
            DRAIN,
            |stream, client, mut stopped| {
                let kind = kind.clone();
                let edge = edge.clone();
                let builder = builder.clone();
                async move {
                    let metrics = edge.conn_metrics.clone();
                    // A TLS connection is served over its TLS stream, the others over TCP.
                    let handler = match kind {
                        Kind::Http => proxy_handler(edge, client, local_ip(&stream), None),
                        Kind::Admin(app) => admin_handler(app),
                        Kind::Https(acceptor) => {
                            let Some(stream) =
                                handshake(&acceptor, stream, client, &mut stopped).await
                            else {
                                return;
                            };
                            let sni: Option<Arc<str>> =
                                stream.get_ref().1.server_name().map(Arc::from);
                            let local = local_ip(stream.get_ref().0);
                            let handler = proxy_handler(edge, client, local, Some(sni));
                            let io = TokioIo::new(stream);
                            limits::serve_connection(
                                &builder,
                                io,
                                handler,
                                idle,
                                (&metrics, name),
                                stopped,
                            )
                            .await;
                            return;
                        }
                    };
                    // Plain TCP: large cached bodies go out with sendfile.
                    let io = TokioIo::new(crate::sendfile::Stream::new(stream));
                    limits::serve_connection(
                        &builder,
                        io,
                        handler,
                        idle,
                        (&metrics, name),
                        stopped,
                    )
                    .await;
                }
            },
        )
        .await;
    }
}

/// The node's own address a connection reached (`::` when the socket cannot say).
fn local_ip(stream: &TcpStream) -> std::net::IpAddr {
    stream
        .local_addr()
        .map_or(std::net::Ipv6Addr::UNSPECIFIED.into(), |a| {
            a.ip().to_canonical()
        })
}

/// The TLS handshake of `stream`, at most [`TLS_HANDSHAKE_TIMEOUT`]; `None` (logged at
/// debug) when it fails, times out or the listener stops meanwhile.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    client: SocketAddr,
    stopped: &mut watch::Receiver<bool>,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let handshake = tokio::select! {
        h = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => h,
        _ = stopped.wait_for(|s| *s) => return None,
    };
    match handshake {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            None
        }
    }
}

/// The proxy for a connection from `client`. `tls` holds the server name (SNI) of a TLS
/// connection, whose requests for another service are answered 421; `None` on plain HTTP.
fn proxy_handler(
    edge: Arc<Edge>,
    client: SocketAddr,
    local: std::net::IpAddr,
    tls: Option<Option<Arc<str>>>,
) -> Handler {
    Arc::new(move |req| {
        let edge = edge.clone();
        let tls = tls.clone();
        Box::pin(async move {
            if let Some(sni) = &tls
                && misdirected(&edge, sni.as_deref(), &req)
            {
                return misdirected_response();
            }
            crate::proxy::handle(edge, req, client, local, tls.is_some()).await
        })
    })
}

/// The admin router as a connection's handler.
fn admin_handler(app: Router) -> Handler {
    Arc::new(move |req| {
        let mut app = app.clone();
        Box::pin(async move {
            let res = match tower_service::Service::call(&mut app, req).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            res.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
        })
    })
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
