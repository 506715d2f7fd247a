//! The serving loops: UDP and TCP listeners (tokio) answering from the current
//! [`Gslb`], which [`DnsServer::apply`] swaps atomically when a new snapshot arrives (a
//! query in flight finishes on the version it started with).
//!
//! UDP: one datagram, one response (or none). TCP (RFC 7766): 2-byte length framing,
//! any number of queries per connection answered in order, the connection closed after
//! `tcp_idle_timeout` without a query or on any framing error; at most
//! `max_tcp_connections` at once (more wait in the accept queue). A panic while
//! answering one request (there should be none) drops that request, never the listener.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lingjing_model::{DnsSnapshot, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::gslb::{BuildError, ClientInfo, Gslb};
use crate::metrics::{DnsMetrics, qtype_name, rcode_name, transport_name};
use crate::steer::{Explanation, Family};
use crate::wire::{Outcome, Transport, respond_traced};

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Addresses served over both UDP and TCP. With port 0, the TCP listener takes the
    /// port the UDP socket got.
    pub listen: Vec<SocketAddr>,
    /// A TCP connection without a query for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// TCP connections served at once.
    pub max_tcp_connections: usize,
    /// The admin HTTP server (`/healthz`, `/metrics`, `/explain`); `None`: none.
    pub admin: Option<SocketAddr>,
    /// Log every query (`tracing` target `lingjing::dns::query`, level INFO).
    pub query_log: bool,
}

impl DnsConfig {
    /// UDP and TCP on `addr`, with default limits.
    pub fn on(addr: SocketAddr) -> Self {
        DnsConfig {
            listen: vec![addr],
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 1024,
            admin: None,
            query_log: false,
        }
    }
}

/// Errors of the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("snapshot version {got} is older than the one applied ({applied})")]
    Stale { got: u64, applied: u64 },
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The DNS data plane: the current answers, swapped per snapshot.
#[derive(Debug, Default)]
pub struct DnsServer {
    gslb: ArcSwap<Gslb>,
    metrics: DnsMetrics,
}

impl DnsServer {
    /// A server with no snapshot yet: it refuses every query until the first `apply`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `snapshot` from now on. A snapshot older than the one applied, or one
    /// whose zone is not a domain name, is refused and changes nothing.
    pub fn apply(&self, snapshot: &Snapshot<DnsSnapshot>) -> Result<(), DnsError> {
        let applied = self.gslb.load().version();
        if snapshot.version < applied {
            return Err(DnsError::Stale {
                got: snapshot.version,
                applied,
            });
        }
        let gslb = Gslb::from_snapshot(snapshot)?;
        self.gslb.store(Arc::new(gslb));
        self.metrics
            .snapshot_version
            .set(i64::try_from(snapshot.version).unwrap_or(i64::MAX));
        tracing::info!(version = snapshot.version, zone = %snapshot.body.zone, "dns snapshot applied");
        Ok(())
    }

    /// The snapshot version being served (0: none).
    pub fn version(&self) -> u64 {
        self.gslb.load().version()
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// The answers being served.
    pub fn gslb(&self) -> Arc<Gslb> {
        self.gslb.load_full()
    }

    /// How `client` is answered for `qname` (a service name of the zone) and why.
    pub fn explain(&self, qname: &str, family: Family, client: &ClientInfo) -> Option<Explanation> {
        self.gslb.load().explain(qname, family, client)
    }
}

/// A running server: its bound addresses; dropping it does not stop it, `shutdown` does.
#[derive(Debug)]
pub struct DnsHandle {
    pub server: Arc<DnsServer>,
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    admin: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsHandle {
    /// The UDP addresses bound, in the order of `DnsConfig::listen`.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp
    }

    /// The TCP addresses bound, in the order of `DnsConfig::listen`.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp
    }

    /// The admin HTTP server's address, when `DnsConfig::admin` asked for one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Stops the listeners; open TCP connections end with their current query.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Binds every address of `config` (UDP and TCP) and serves from `server`.
pub async fn start(config: &DnsConfig, server: Arc<DnsServer>) -> Result<DnsHandle, DnsError> {
    let (stop, stopped) = watch::channel(false);
    let mut handle = DnsHandle {
        server: server.clone(),
        udp: Vec::new(),
        tcp: Vec::new(),
        admin: None,
        stop,
        tasks: Vec::new(),
    };
    let log = config.query_log;
    let permits = Arc::new(Semaphore::new(config.max_tcp_connections.max(1)));
    for addr in &config.listen {
        let (udp, tcp) = bind_pair(*addr).await?;
        let udp_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: *addr,
            source,
        })?;
        let tcp_addr = tcp.local_addr().map_err(|source| DnsError::Bind {
            addr: *addr,
            source,
        })?;
        tracing::info!(udp = %udp_addr, tcp = %tcp_addr, "dns listening");
        handle.udp.push(udp_addr);
        handle.tcp.push(tcp_addr);
        handle.tasks.push(tokio::spawn(serve_udp(
            udp,
            server.clone(),
            stopped.clone(),
            log,
        )));
        for _ in 1..udp_workers() {
            let extra = udp_reuseport(udp_addr).map_err(|source| DnsError::Bind {
                addr: udp_addr,
                source,
            })?;
            handle.tasks.push(tokio::spawn(serve_udp(
                extra,
                server.clone(),
                stopped.clone(),
                log,
            )));
        }
        handle.tasks.push(tokio::spawn(serve_tcp(
            tcp,
            server.clone(),
            stopped.clone(),
            permits.clone(),
            config.tcp_idle_timeout,
            log,
        )));
    }
    if let Some(addr) = config.admin {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DnsError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| DnsError::Bind { addr, source })?;
        tracing::info!(admin = %bound, "dns admin listening");
        handle.admin = Some(bound);
        handle.tasks.push(tokio::spawn(crate::admin::serve(
            listener,
            server.clone(),
            stopped.clone(),
        )));
    }
    Ok(handle)
}

/// Binds UDP then TCP on the same address; for port 0, TCP on the port UDP got (retried
/// with a fresh port when another socket holds it for TCP).
/// A UDP socket with SO_REUSEPORT, so that several sockets (one per worker) share a port
/// and the kernel spreads queries over them.
fn udp_reuseport(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// UDP sockets per address: one per core, up to 8.
fn udp_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let bind_err = |source| DnsError::Bind { addr, source };
    let mut last = None;
    for _ in 0..16 {
        let udp = udp_reuseport(addr).map_err(bind_err)?;
        let port = udp.local_addr().map_err(bind_err)?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(bind_err(e)),
        }
    }
    Err(bind_err(last.unwrap_or_else(|| {
        std::io::Error::other("no port free for both UDP and TCP")
    })))
}

/// Answers one request, containing any panic to that request; counts it, and logs it
/// with `log`.
fn answer(
    server: &DnsServer,
    request: &[u8],
    src: SocketAddr,
    transport: Transport,
    log: bool,
) -> Option<Vec<u8>> {
    let started = Instant::now();
    let gslb = server.gslb.load();
    let (bytes, outcome) = std::panic::catch_unwind(AssertUnwindSafe(|| {
        respond_traced(&gslb, request, src.ip(), transport, log)
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%src, "panic while answering a DNS request; dropped");
        (None, Outcome::default())
    });
    server
        .metrics
        .record(&outcome, bytes.is_some(), transport, started.elapsed());
    if log {
        log_query(src, transport, &outcome, bytes.is_some());
    }
    bytes
}

/// One query log event.
fn log_query(src: SocketAddr, transport: Transport, outcome: &Outcome, answered: bool) {
    let ecs = outcome.ecs.map(|(a, len)| format!("{a}/{len}"));
    let answer: Vec<String> = outcome.answer.iter().map(ToString::to_string).collect();
    tracing::info!(
        target: "lingjing::dns::query",
        client = %src,
        transport = transport_name(transport),
        qname = outcome.qname.as_deref().unwrap_or("-"),
        qtype = outcome.qtype.map_or("none", qtype_name),
        rcode = if answered { rcode_name(outcome.rcode) } else { "DROPPED" },
        ecs = ecs.as_deref().unwrap_or("-"),
        line = outcome.line.as_deref().unwrap_or("-"),
        truncated = outcome.truncated,
        answer = %answer.join(","),
        "dns query"
    );
}

async fn serve_udp(
    socket: UdpSocket,
    server: Arc<DnsServer>,
    mut stopped: watch::Receiver<bool>,
    log: bool,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = stopped.changed() => return,
        };
        let (len, src) = match received {
            Ok(r) => r,
            Err(e) => {
                // E.g. ICMP port unreachable reported on a later receive: not fatal.
                tracing::debug!(error = %e, "udp receive error");
                continue;
            }
        };
        let Some(request) = buf.get(..len) else {
            continue;
        };
        if let Some(response) = answer(&server, request, src, Transport::Udp, log)
            && let Err(e) = socket.send_to(&response, src).await
        {
            tracing::debug!(error = %e, %src, "udp send error");
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    server: Arc<DnsServer>,
    mut stopped: watch::Receiver<bool>,
    permits: Arc<Semaphore>,
    idle: Duration,
    log: bool,
) {
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stopped.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => return,
        };
        match accepted {
            Ok((stream, src)) => {
                let server = server.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, src, &server, stopped, idle, log).await
                    {
                        tracing::debug!(error = %e, %src, "tcp connection ended");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept error");
                // Out of file descriptors and the like: back off a little.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    server: &DnsServer,
    mut stopped: watch::Receiver<bool>,
    idle: Duration,
    log: bool,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 65_535];
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_exact(&mut len)) => r,
            _ = stopped.changed() => return Ok(()),
        };
        match read {
            Ok(Ok(_)) => {}
            // Closed by the client, or idle too long: done.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let len = usize::from(u16::from_be_bytes(len));
        let Some(request) = buf.get_mut(..len) else {
            return Ok(());
        };
        match tokio::time::timeout(idle, stream.read_exact(request)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let Some(response) = answer(server, request, src, Transport::Tcp, log) else {
            continue;
        };
        let Ok(rlen) = u16::try_from(response.len()) else {
            server.metrics.dropped.inc();
            continue;
        };
        let mut out = Vec::with_capacity(response.len() + 2);
        out.extend_from_slice(&rlen.to_be_bytes());
        out.extend_from_slice(&response);
        stream.write_all(&out).await?;
    }
}
