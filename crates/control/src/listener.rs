//! The control API's HTTP server: its own accept loop over plain TCP or TLS (rustls,
//! ALPN `h2` and `http/1.1`), serving the axum router through hyper-util's auto
//! (HTTP/1.1 or HTTP/2) connection builder, with the limits that keep slow or numerous
//! clients from holding the control plane: a connection cap (connections over it are
//! closed at once), a TLS handshake timeout, a header-read timeout (HTTP/1.1), an idle
//! timeout (no request in flight and no bytes either way), HTTP/2 keep-alive pings and a
//! cap on concurrent streams. Shutdown stops accepting and lets requests in flight finish
//! (up to [`SHUTDOWN_GRACE`]).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Largest HTTP/1.1 request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The limits of the control API's HTTP server.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Connections served at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// How long a client has to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// How long an HTTP/1.1 client has to send a whole request head (also the longest an
    /// idle keep-alive connection waits for its next request).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight that sends and receives nothing for this
    /// long is closed (long-polls are requests in flight: they are not idle).
    pub idle_timeout: Duration,
    /// HTTP/2: how often to ping an idle peer, and how long to wait for the answer.
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
    /// HTTP/2: streams (requests) in flight per connection.
    pub h2_max_concurrent_streams: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 4096,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_keep_alive_timeout: Duration::from_secs(20),
            h2_max_concurrent_streams: 128,
        }
    }
}

/// The PEM files of the control API's TLS certificate (chain first) and private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the control API is served: TLS or plain, its limits, and what else is served
/// beside it.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Serve HTTPS with this certificate (`None`: plain HTTP).
    pub tls: Option<TlsFiles>,
    pub limits: ServerLimits,
    /// Routes served beside the API (the web console), given the API's router.
    pub mount: Option<Mount>,
    /// Let the edges relay artefacts (edge AI models) from this control plane to the
    /// platform's nodes (`None`: nodes fetch from the control plane directly).
    pub relay: Option<RelaySettings>,
}

/// How edges reach this control plane to relay artefacts.
#[derive(Debug, Clone, Default)]
pub struct RelaySettings {
    /// The API's base URL as the edges reach it (`None`: the address it listens on).
    pub upstream: Option<String>,
    /// PEM of the CA that signed its certificate, for the edges to trust.
    pub ca_pem: Option<String>,
}

/// Adds routes beside the API: called once with the API's router (which the added
/// routes may call in-process) and whether it is served over TLS; returns the router to
/// serve. The binary mounts the web console this way, so this crate never depends on it.
#[derive(Clone)]
pub struct Mount(pub std::sync::Arc<dyn Fn(axum::Router, bool) -> axum::Router + Send + Sync>);

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mount(..)")
    }
}

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the TLS certificate {0}: {1} (give a PEM file with --tls-cert, the server certificate first)"
    )]
    Cert(PathBuf, String),
    #[error(
        "cannot read the TLS private key {0}: {1} (give a PEM file with --tls-key: PKCS#8, PKCS#1 or SEC1)"
    )]
    Key(PathBuf, String),
    #[error("the TLS certificate {0} and key {1} do not make a usable server identity: {2}")]
    Config(PathBuf, PathBuf, String),
}

/// Loads the certificate chain and key into a rustls server configuration (TLS 1.2 and
/// 1.3, ALPN `h2` and `http/1.1`).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert(files.cert.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Cert(
            files.cert.clone(),
            "no CERTIFICATE block in it".into(),
        ));
    }
    warn_if_readable_by_others(&files.key);
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::Key(files.key.clone(), e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_err =
        |e: rustls::Error| TlsError::Config(files.cert.clone(), files.key.clone(), e.to_string());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config_err)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), mode = format!("{:o}", meta.permissions().mode() & 0o777), "the TLS private key is readable by other users: chmod 600 it");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// What one connection is doing: requests in flight and when bytes last moved.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long the connection has been idle (`None` while a request is in flight).
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.start.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        ))
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }
}

/// A request in flight; ends when dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves once the connection has been idle for `timeout`.
async fn idle(activity: &Activity, timeout: Duration) {
    loop {
        let wait = match activity.idle_for() {
            Some(d) if d >= timeout => return,
            Some(d) => timeout - d,
            None => timeout,
        };
        tokio::time::sleep(wait).await;
    }
}

/// A stream that records when bytes move.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn conn_builder(limits: &ServerLimits) -> Arc<auto::Builder<TokioExecutor>> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.h2_keep_alive_interval)
        .keep_alive_timeout(limits.h2_keep_alive_timeout)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_pending_accept_reset_streams(32);
    Arc::new(builder)
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stopped` turns true, then
/// lets requests in flight finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ServerLimits,
    mut stopped: watch::Receiver<bool>,
) -> io::Result<()> {
    let builder = conn_builder(&limits);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut last_refusal_logged: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. out of file descriptors: pause instead of spinning.
                tracing::warn!(error = %e, "control API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if last_refusal_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                last_refusal_logged = Some(Instant::now());
                tracing::warn!(%client, max_connections = limits.max_connections, "control API: connection cap reached; closing new connections");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let io = Tracked {
            inner: stream,
            activity: activity.clone(),
        };
        tokio::spawn(serve_connection(
            io,
            client,
            app.clone(),
            tls.clone(),
            builder.clone(),
            graceful.watcher(),
            stopped.clone(),
            limits.clone(),
            activity,
            permit,
        ));
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("control API: requests still in flight after the shutdown grace period");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    io: Tracked<tokio::net::TcpStream>,
    client: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    mut stopped: watch::Receiver<bool>,
    limits: ServerLimits,
    activity: Arc<Activity>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let service = {
        let activity = activity.clone();
        service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            let guard = activity.begin();
            async move {
                let res = tower::ServiceExt::oneshot(app, req).await;
                drop(guard);
                res
            }
        })
    };
    match tls {
        None => {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let conn = watcher.watch(conn.into_owned());
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%client, error = %e, "control API connection ended with an error");
                },
                _ = idle(&activity, limits.idle_timeout) => {
                    tracing::debug!(%client, "control API: closing an idle connection");
                }
            }
        }
        Some(acceptor) => {
            let handshake = tokio::select! {
                h = tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(io)) => h,
                _ = stopped.wait_for(|s| *s) => return,
            };
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%client, error = %e, "control API: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%client, "control API: TLS handshake timed out");
                    return;
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let conn = watcher.watch(conn.into_owned());
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%client, error = %e, "control API connection ended with an error");
                },
                _ = idle(&activity, limits.idle_timeout) => {
                    tracing::debug!(%client, "control API: closing an idle connection");
                }
            }
        }
    }
}
