//! The DNS server: startup ([`start`]), the shared state every listener answers from
//! (the current [`Gslb`], which [`DnsServer::apply`] swaps atomically when a new snapshot
//! arrives: a query in flight finishes on the version it started with), the running
//! server's [`DnsHandle`], and the query log. The transports live in their own files:
//! `udp` (SO_REUSEPORT socket-per-thread workers, `recvmmsg`/`sendmmsg` batches,
//! response rate limiting) and `tcp` (RFC 7766 framing, connection caps, timeouts).
//!
//! A panic while answering one request (there should be none) drops that request,
//! never the listener.

mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use lingjing_model::{DnsSnapshot, Snapshot};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::AdminLimits;
use crate::gslb::{BuildError, ClientInfo, Gslb};
use crate::metrics::{DnsMetrics, qtype_name, rcode_name, transport_name};
use crate::rrl::{Clock, Rrl, RrlConfig};
use crate::steer::{Explanation, Family};
use crate::wire::{Outcome, Transport};

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Addresses served over both UDP and TCP. With port 0, the TCP listener takes the
    /// port the UDP socket got.
    pub listen: Vec<SocketAddr>,
    /// A TCP connection on which no complete query arrives for this long (since it
    /// opened or since its last response) is closed.
    pub tcp_idle_timeout: Duration,
    /// A TCP connection whose response the client does not take within this long is
    /// closed.
    pub tcp_write_timeout: Duration,
    /// TCP connections served at once; more are closed as soon as accepted.
    pub max_tcp_connections: usize,
    /// TCP connections served at once from one client network (cut to `rrl`'s
    /// `ipv4_prefix` / `ipv6_prefix`, whether or not rate limiting is on); more are
    /// closed as soon as accepted.
    pub max_tcp_connections_per_client: usize,
    /// Response rate limiting of UDP answers per client network.
    pub rrl: RrlConfig,
    /// The admin HTTP server (`/healthz`, `/metrics`, `/explain`); `None`: none.
    pub admin: Option<SocketAddr>,
    /// The admin server's connection cap and timeouts.
    pub admin_limits: AdminLimits,
    /// Log every query (`tracing` target `lingjing::dns::query`, level INFO).
    pub query_log: bool,
}

impl DnsConfig {
    /// UDP and TCP on `addr`, with default limits: TCP idle timeout 10 s (Knot's),
    /// write timeout 5 s, 1,024 TCP connections, 16 per client network (/24 or /56), and
    /// [`RrlConfig::default`] (200 responses a second per /24 or /56, slip 2).
    pub fn on(addr: SocketAddr) -> Self {
        DnsConfig {
            listen: vec![addr],
            tcp_idle_timeout: Duration::from_secs(10),
            tcp_write_timeout: Duration::from_secs(5),
            max_tcp_connections: 1024,
            max_tcp_connections_per_client: 16,
            rrl: RrlConfig::default(),
            admin: None,
            admin_limits: AdminLimits::default(),
            query_log: false,
        }
    }

    /// Why this configuration cannot be served, if it cannot.
    fn check(&self) -> Result<(), DnsError> {
        self.rrl.check().map_err(DnsError::Config)?;
        for (name, value) in [
            ("TCP idle timeout", self.tcp_idle_timeout),
            ("TCP write timeout", self.tcp_write_timeout),
            ("admin idle timeout", self.admin_limits.idle_timeout),
            ("admin read deadline", self.admin_limits.read_deadline),
        ] {
            if value.is_zero() {
                return Err(DnsError::Config(format!(
                    "the {name} is zero: every connection would close at once; give a \
                     duration such as 10s"
                )));
            }
        }
        for (name, value) in [
            ("max TCP connections", self.max_tcp_connections),
            (
                "max TCP connections per client",
                self.max_tcp_connections_per_client,
            ),
            ("max admin connections", self.admin_limits.max_connections),
        ] {
            if value == 0 {
                return Err(DnsError::Config(format!(
                    "the {name} is 0: no TCP connection could be served; give at least 1"
                )));
            }
        }
        Ok(())
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
    #[error("invalid DNS server setting: {0}")]
    Config(String),
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
    /// The UDP worker threads, and the flag that stops them.
    udp_stop: Arc<AtomicBool>,
    udp_threads: Vec<ThreadHandle<()>>,
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
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.udp_stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        // Each UDP thread sees the flag within one receive timeout.
        let threads = std::mem::take(&mut self.udp_threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(5), joined).await;
    }
}

impl Drop for DnsHandle {
    /// A handle dropped without [`DnsHandle::shutdown`] (or a `start` that failed half
    /// way) still stops its listeners: the UDP threads would otherwise keep the port.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.udp_stop.store(true, Ordering::Relaxed);
    }
}

/// Binds every address of `config` (UDP and TCP) and serves from `server`.
pub async fn start(config: &DnsConfig, server: Arc<DnsServer>) -> Result<DnsHandle, DnsError> {
    config.check()?;
    let (stop, stopped) = watch::channel(false);
    let mut handle = DnsHandle {
        server: server.clone(),
        udp: Vec::new(),
        tcp: Vec::new(),
        admin: None,
        stop,
        tasks: Vec::new(),
        udp_stop: Arc::new(AtomicBool::new(false)),
        udp_threads: Vec::new(),
    };
    let log = config.query_log;
    let rrl = Rrl::new(&config.rrl, Clock::monotonic()).map(Arc::new);
    let tcp = Arc::new(tcp::TcpOptions::new(config));
    for addr in &config.listen {
        let (udp, tcp_listener) = bind_pair(*addr).await?;
        let udp_addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: *addr,
            source,
        })?;
        let tcp_addr = tcp_listener.local_addr().map_err(|source| DnsError::Bind {
            addr: *addr,
            source,
        })?;
        tracing::info!(udp = %udp_addr, tcp = %tcp_addr, "dns listening");
        handle.udp.push(udp_addr);
        handle.tcp.push(tcp_addr);
        let mut sockets = vec![udp];
        for _ in 1..udp::workers() {
            sockets.push(udp::reuseport(udp_addr).map_err(|source| DnsError::Bind {
                addr: udp_addr,
                source,
            })?);
        }
        for socket in sockets {
            let (server, stop, rrl) = (server.clone(), handle.udp_stop.clone(), rrl.clone());
            let thread = udp::spawn_worker(socket, server, stop, log, rrl).map_err(|source| {
                DnsError::Bind {
                    addr: udp_addr,
                    source,
                }
            })?;
            handle.udp_threads.push(thread);
        }
        handle.tasks.push(tokio::spawn(tcp::serve(
            tcp_listener,
            server.clone(),
            stopped.clone(),
            tcp.clone(),
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
            config.admin_limits.clone(),
            stopped.clone(),
        )));
    }
    Ok(handle)
}

/// Binds UDP then TCP on the same address; for port 0, TCP on the port UDP got (retried
/// with a fresh port when another socket holds it for TCP).
async fn bind_pair(addr: SocketAddr) -> Result<(std::net::UdpSocket, TcpListener), DnsError> {
    let bind_err = |source| DnsError::Bind { addr, source };
    let mut last = None;
    for _ in 0..16 {
        let udp = udp::reuseport(addr).map_err(bind_err)?;
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
