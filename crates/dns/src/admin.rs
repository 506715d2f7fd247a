//! The DNS server's admin HTTP server (axum), on `DnsConfig::admin`:
//! - `GET /healthz`: 200 `ok <version>` once a snapshot is applied, 503 before;
//! - `GET /metrics`: the [`DnsMetrics`](crate::metrics::DnsMetrics) as OpenMetrics text;
//! - `GET /explain?name=demo.cdn.lingjing.test&client=203.0.113.70[&subnet=32][&type=AAAA]`:
//!   the [`Explanation`](crate::Explanation) of how that client is answered, as JSON;
//!   400 with `{"error": ...}` for bad parameters, 404 for a name that is not a service
//!   name of the zone, 503 before the first snapshot.
//!
//! Slow or numerous clients cannot hold it ([`AdminLimits`]): at most
//! `max_connections` at once (more are closed as soon as accepted), a connection on
//! which nothing moves for `idle_timeout` is closed, and none reads past
//! `read_deadline` after it opened (a client trickling its request's head a byte at a
//! time gets no further: hyper, under `axum::serve`, has no header-read timer).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};

use crate::gslb::ClientInfo;
use crate::server::DnsServer;
use crate::steer::Family;

/// The admin routes over `server`.
pub fn router(server: Arc<DnsServer>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/explain", get(explain))
        .with_state(server)
}

/// The admin server's limits on its clients (`DnsConfig::admin_limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminLimits {
    /// Connections served at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A connection on which no byte is read or written for this long, while the
    /// server waits on it, is closed.
    pub idle_timeout: Duration,
    /// Reads on a connection fail this long after it opened: how long a client may
    /// take over its requests (a response being written still completes).
    pub read_deadline: Duration,
}

impl Default for AdminLimits {
    /// 64 connections, 10 s idle, reads for 60 s.
    fn default() -> Self {
        AdminLimits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(10),
            read_deadline: Duration::from_secs(60),
        }
    }
}

/// The listener `axum::serve` takes connections from: the cap applied on accept, each
/// connection wrapped in its timeouts.
struct Capped {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: AdminLimits,
}

impl axum::serve::Listener for Capped {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let (stream, client) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::debug!(error = %e, "dns admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                tracing::debug!(%client, "dns admin: connection cap reached; closed");
                continue;
            };
            let now = Instant::now();
            let guarded = Guarded {
                stream,
                idle: self.limits.idle_timeout,
                reads_end: now + self.limits.read_deadline,
                idle_deadline: now + self.limits.idle_timeout,
                timer: Box::pin(tokio::time::sleep_until(now + self.limits.idle_timeout)),
                _permit: permit,
            };
            return (guarded, client);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// One admin connection: its stream, its timeouts, and its place under the cap.
struct Guarded {
    stream: TcpStream,
    idle: Duration,
    reads_end: Instant,
    /// When the connection is idle too long, moved on by every read or write.
    idle_deadline: Instant,
    /// Wakes a pending read or write at its deadline.
    timer: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Guarded {
    /// Something moved: the idle deadline starts again.
    fn active(&mut self) {
        self.idle_deadline = Instant::now() + self.idle;
    }

    /// Whether a pending read or write has waited past its deadline; if not, the
    /// timer wakes `cx` at the deadline (or the stream earlier).
    fn expired(&mut self, cx: &mut Context<'_>, reading: bool) -> bool {
        let deadline = if reading {
            self.idle_deadline.min(self.reads_end)
        } else {
            self.idle_deadline
        };
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "dns admin connection timed out")
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if Instant::now() >= this.reads_end {
            return Poll::Ready(Err(timed_out()));
        }
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.active();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx, true) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.active();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx, false) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.active();
                Poll::Ready(r)
            }
            Poll::Pending if this.expired(cx, false) => Poll::Ready(Err(timed_out())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves the admin routes on `listener` until `stopped` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<DnsServer>,
    limits: AdminLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let listener = Capped {
        listener,
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        limits,
    };
    let shutdown = async move {
        while !*stopped.borrow_and_update() {
            if stopped.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, router(server))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "dns admin server failed");
    }
}

async fn healthz(State(server): State<Arc<DnsServer>>) -> Response {
    match server.version() {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n").into_response(),
        v => (StatusCode::OK, format!("ok {v}\n")).into_response(),
    }
}

async fn metrics(State(server): State<Arc<DnsServer>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        server.metrics().encode(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn explain(
    State(server): State<Arc<DnsServer>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Query(params) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(name) = params.get("name").filter(|n| !n.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "give the name: ?name=SERVICE.ZONE&client=IP",
        );
    };
    let Some(client) = params.get("client") else {
        return error(
            StatusCode::BAD_REQUEST,
            "give the client's address: &client=IP",
        );
    };
    let Ok(client) = client.parse::<IpAddr>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("client `{client}` is not an IP address"),
        );
    };
    let subnet = match params.get("subnet").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let max = if client.is_ipv4() { 32 } else { 128 };
            match s.parse::<u8>() {
                Ok(len) if len <= max => Some(len),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("subnet `{s}` is not a prefix length from 0 to {max}"),
                    );
                }
            }
        }
    };
    let family = match params
        .get("type")
        .map(|t| t.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("" | "A") => Family::V4,
        Some("AAAA") => Family::V6,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("type `{other}` is not A or AAAA"),
            );
        }
    };
    if server.version() == 0 {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet");
    }
    let mut qname = name.to_ascii_lowercase();
    if !qname.ends_with('.') {
        qname.push('.');
    }
    let info = ClientInfo {
        addr: client,
        ecs: subnet.map(|len| (crate::gslb::truncate(client, len), len)),
    };
    match server.explain(&qname, family, &info) {
        Some(e) => Json(e).into_response(),
        None => {
            let zone = server.gslb().zone().to_owned();
            error(
                StatusCode::NOT_FOUND,
                format!("`{name}` is not a service name in zone {zone} (names are SERVICE.{zone})"),
            )
        }
    }
}
