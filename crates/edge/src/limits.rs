//! The limits of the edge's HTTP servers (HTTP, HTTPS and admin listeners), and the
//! machinery that serves one connection under them: how long a client may take to send a
//! request head (slowloris), how long a connection may sit idle, how many connections a
//! listener group holds at once (over the cap they are closed at accept and counted),
//! HTTP/2 keep-alive pings and the number of concurrent streams, and the largest request
//! head.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::body::{Body, BoxError};

/// Limits of the edge's HTTP servers. The defaults follow common reverse-proxy practice
/// (nginx: 60 s header timeout, 75 s keep-alive, 128 HTTP/2 streams).
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time a client has to send a whole request head, from the moment the server waits
    /// for it; on HTTP/1.1 that includes waiting for the next request on a kept-alive
    /// connection, so it also bounds HTTP/1.1 keep-alive.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY;
    /// also a connection that never sends its first bytes).
    pub idle_timeout: Duration,
    /// Connections the public HTTP and HTTPS listeners hold together; more are closed at
    /// accept.
    pub max_connections: usize,
    /// Connections the admin listener holds (its own cap, so a flood on the public ports
    /// never locks the operator out of `/metrics` and `/healthz`).
    pub admin_max_connections: usize,
    /// Concurrent streams an HTTP/2 client may open (advertised in SETTINGS).
    pub h2_max_concurrent_streams: u32,
    /// Interval of HTTP/2 keep-alive PINGs (zero: none).
    pub h2_keepalive_interval: Duration,
    /// A PING not acknowledged within this closes the connection.
    pub h2_keepalive_timeout: Duration,
    /// Largest request head (request line and header fields) in bytes, on HTTP/1.1 (431
    /// past it) and HTTP/2 (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub max_header_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_connections: 16_384,
            admin_max_connections: 64,
            h2_max_concurrent_streams: 128,
            h2_keepalive_interval: Duration::from_secs(30),
            h2_keepalive_timeout: Duration::from_secs(20),
            max_header_bytes: crate::server::MAX_HEAD_BYTES,
        }
    }
}

impl ServerLimits {
    /// The connection builder: HTTP/1.1, or HTTP/2 when the connection starts with its
    /// preface (h2c, or h2 negotiated by ALPN), both under these limits.
    pub fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // hyper refuses a buffer under 8 KiB.
            .max_buf_size(self.max_header_bytes.max(8192))
            .writev(true)
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let interval = Some(self.h2_keepalive_interval).filter(|d| !d.is_zero());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(interval)
            .keep_alive_timeout(self.h2_keepalive_timeout);
        builder
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `http`, `https` or `admin`.
    pub listener: String,
}

/// Connection counters of the listeners.
#[derive(Clone, Default)]
pub struct ConnMetrics {
    /// Connections open now.
    pub open: Family<ListenerLabels, Gauge>,
    /// Connections closed at accept because the cap was reached.
    pub refused: Family<ListenerLabels, Counter>,
    /// Connections closed for being idle.
    pub idle_closed: Family<ListenerLabels, Counter>,
}

impl ConnMetrics {
    pub fn register(registry: &mut Registry) -> ConnMetrics {
        let m = ConnMetrics::default();
        registry.register(
            "connections_open",
            "Client connections open, by listener",
            m.open.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed at accept because the connection cap was reached",
            m.refused.clone(),
        );
        registry.register(
            "connections_idle_closed",
            "Client connections closed after the idle timeout",
            m.idle_closed.clone(),
        );
        m
    }
}

/// A connection cap shared by some listeners.
#[derive(Clone)]
pub struct ConnGate {
    slots: Arc<Semaphore>,
    metrics: ConnMetrics,
    /// Per-source caps and blocks (public listeners only; `crate::defence::conn`).
    defence: Option<Arc<crate::defence::Defence>>,
}

/// One admitted connection: its slot is freed (and the gauge lowered) when dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _source: Option<crate::defence::conn::SourceSlot>,
    open: Gauge,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl ConnGate {
    pub fn new(max: usize, metrics: ConnMetrics) -> ConnGate {
        ConnGate {
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            metrics,
            defence: None,
        }
    }

    /// The same gate, also applying `defence`'s per-source caps and blocks at accept.
    pub fn with_defence(mut self, defence: Arc<crate::defence::Defence>) -> ConnGate {
        self.defence = defence.enabled.then_some(defence);
        self
    }

    /// Per-source checks of a connection from `client`: its slot, or `None` (counted)
    /// when refused.
    fn admit_source(
        &self,
        client: std::net::IpAddr,
    ) -> Result<Option<crate::defence::conn::SourceSlot>, ()> {
        let Some(d) = &self.defence else {
            return Ok(None);
        };
        if d.is_platform(client) {
            return Ok(None);
        }
        let refused = if d.blocked_at_accept(client) {
            crate::defence::conn::Refusal::Blocked
        } else {
            let second = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_secs());
            match d.gate.admit(client, second) {
                Ok(slot) => return Ok(Some(slot)),
                Err(r) => r,
            }
        };
        d.metrics
            .connections_refused
            .get_or_create(&crate::defence::ConnReasonLabels {
                reason: refused.reason().to_owned(),
            })
            .inc();
        Err(())
    }

    /// A slot for a new connection from `client` on `listener`, or `None` (counted) at
    /// the cap or when defence refuses the source.
    fn admit(&self, listener: &str, client: std::net::IpAddr) -> Option<Admitted> {
        let labels = ListenerLabels {
            listener: listener.to_owned(),
        };
        let source = self.admit_source(client).ok()?;
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let open = self.metrics.open.get_or_create(&labels).clone();
                open.inc();
                Some(Admitted {
                    _permit: permit,
                    _source: source,
                    open,
                })
            }
            Err(_) => {
                self.metrics.refused.get_or_create(&labels).inc();
                None
            }
        }
    }
}

/// Serves one request: the response future of a connection's service.
pub type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

/// Accepts connections on `listener` until `stopped`, each admitted by `gate` (or closed
/// at once) and handed to `serve` in its own task. On stop, waits up to `drain` for the
/// connections to finish, then drops the rest.
pub async fn serve_listener<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    gate: ConnGate,
    mut stopped: watch::Receiver<bool>,
    drain: Duration,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, client) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // E.g. out of file descriptors: pause rather than spin.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = gate.admit(name, client.ip()) else {
            tracing::debug!(listener = name, %client, "connection refused at accept (cap or defence): closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = serve(stream, client, stopped.clone());
        conns.spawn(async move {
            let _admitted = admitted;
            conn.await;
        });
    }
    let _ = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
}

/// Serves the HTTP connection `io` with `handler` until the client closes it, it has been
/// idle for `idle`, or `stopped` (then gracefully: in-flight requests finish).
pub async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    handler: Handler,
    idle: Duration,
    metrics: (&ConnMetrics, &'static str),
    mut stopped: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        service_fn(move |req| {
            let busy = Busy::new(activity.clone());
            let res = handler(req);
            async move {
                let res = res.await;
                Ok::<_, std::convert::Infallible>(res.map(|body| Tracked {
                    inner: body,
                    busy: Some(busy),
                }))
            }
        })
    };
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let deadline = activity.idle_deadline(idle);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = activity.changed.notified() => {}
            _ = sleep_until_opt(deadline), if deadline.is_some() && !closing => {
                if activity.idle_deadline(idle).is_some_and(|d| d <= Instant::now()) {
                    metrics.0.idle_closed.get_or_create(&ListenerLabels {
                        listener: metrics.1.to_owned(),
                    }).inc();
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Requests in flight on one connection (a response counts until its body is done), and
/// since when there have been none.
struct Activity {
    base: Instant,
    active: AtomicUsize,
    /// Milliseconds after `base` when `active` last dropped to zero.
    idle_since_ms: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    /// When the connection counts as idle, if no request is in flight.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.base + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(since + idle)
    }
}

/// One request in flight.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Busy {
        activity.active.fetch_add(1, Ordering::AcqRel);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.idle_since_ms.store(ms, Ordering::Release);
        if a.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.changed.notify_one();
        }
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct Tracked {
    inner: Body,
    busy: Option<Busy>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.busy = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
