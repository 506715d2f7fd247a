//! The serving loops: UDP and TCP listeners answering from the current
//! [`Gslb`], which [`DnsServer::apply`] swaps atomically when a new snapshot arrives (a
//! query in flight finishes on the version it started with).
//!
//! UDP: one datagram, one response (or none). One socket per core shares the port
//! (SO_REUSEPORT), each served by its own plain thread (no async runtime hop per
//! packet) in batches: on Linux one `recvmmsg` takes every datagram waiting (up to 32),
//! each is answered into a reused buffer (the fast path of `crate::fast` first), the
//! batch's counts go to the metrics, and one `sendmmsg` sends the answers. Elsewhere,
//! one datagram at a time. Every UDP answer passes response rate limiting first
//! (`crate::rrl`, `DnsConfig::rrl`): over its client network's rate it is dropped or
//! slipped (sent cut to a truncated answer).
//!
//! TCP (RFC 7766, tokio): 2-byte length framing, any number of queries per connection
//! answered in order, not rate limited. A connection is closed when no complete query
//! arrives within `tcp_idle_timeout` (however it trickles in), when a response is not
//! taken within `tcp_write_timeout` (a client that does not read), or on any framing
//! error. At most `max_tcp_connections` at once, and `max_tcp_connections_per_client`
//! from one client network (the address cut to the prefix lengths rate limiting uses,
//! [`RrlConfig::ipv4_prefix`] and [`RrlConfig::ipv6_prefix`]: a /24 or a /56 by
//! default, so one client's many IPv6 addresses cannot take every place and shut the
//! TCP fallback slipped answers rely on): a connection past either cap is closed as
//! soon as accepted.
//!
//! A panic while answering one request (there should be none) drops that request,
//! never the listener.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use lingjing_model::{DnsSnapshot, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::AdminLimits;
use crate::gslb::{BuildError, ClientInfo, Gslb};
use crate::metrics::{
    Answer, DnsMetrics, LocalMetrics, RefusedLabels, TimeoutLabels, qtype_name, rcode_name,
    transport_name,
};
use crate::rrl::{Clock, Networks, Rrl, RrlConfig, Verdict};
use crate::steer::{Explanation, Family};
use crate::wire::{Outcome, Transport, respond_hickory, respond_traced};

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
    let tcp = Arc::new(TcpOptions {
        idle: config.tcp_idle_timeout,
        write: config.tcp_write_timeout,
        log,
        caps: Arc::new(TcpCaps::new(
            config.max_tcp_connections,
            config.max_tcp_connections_per_client,
            Networks::new(&config.rrl),
        )),
    });
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
        for _ in 1..udp_workers() {
            sockets.push(udp_reuseport(udp_addr).map_err(|source| DnsError::Bind {
                addr: udp_addr,
                source,
            })?);
        }
        for socket in sockets {
            let (server, stop, rrl) = (server.clone(), handle.udp_stop.clone(), rrl.clone());
            // The caller's tracing subscriber, as the tasks on its runtime would log to.
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            let thread = std::thread::Builder::new()
                .name("dns-udp".into())
                .spawn(move || {
                    tracing::dispatcher::with_default(&dispatch, || {
                        serve_udp(socket, &server, &stop, log, rrl.as_deref());
                    });
                })
                .map_err(|source| DnsError::Bind {
                    addr: udp_addr,
                    source,
                })?;
            handle.udp_threads.push(thread);
        }
        handle.tasks.push(tokio::spawn(serve_tcp(
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

/// A blocking UDP socket with SO_REUSEPORT, so that several sockets (one per worker)
/// share a port and the kernel spreads queries over them; receives time out after
/// [`UDP_STOP_CHECK`] so that its worker sees a shutdown.
fn udp_reuseport(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_read_timeout(Some(UDP_STOP_CHECK))?;
    #[cfg(target_os = "linux")]
    if addr.is_ipv4() {
        // DF on answers (never fragmented: UDP answers are at most 1232 bytes, the DNS
        // flag day size), at the interface MTU whatever ICMP says (PROBE: spoofed
        // "fragmentation needed" cannot shrink them). Also spares the kernel choosing
        // an IP ID per packet. Not essential: a failure only costs that.
        use rustix::net::sockopt::{Ipv4PathMtuDiscovery, set_ip_mtu_discover};
        if let Err(e) = set_ip_mtu_discover(&socket, Ipv4PathMtuDiscovery::PROBE) {
            tracing::debug!(error = %e, "cannot set DF on DNS answers");
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// How often an idle UDP worker checks for a shutdown.
const UDP_STOP_CHECK: Duration = Duration::from_millis(100);

/// UDP sockets per address: one per core, up to 8.
fn udp_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Binds UDP then TCP on the same address; for port 0, TCP on the port UDP got (retried
/// with a fresh port when another socket holds it for TCP).
async fn bind_pair(addr: SocketAddr) -> Result<(std::net::UdpSocket, TcpListener), DnsError> {
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

/// One UDP worker: until `stop`, receives a batch, answers it (each answer within its
/// client network's rate, with `rrl`), counts it, sends it.
fn serve_udp(
    socket: std::net::UdpSocket,
    server: &DnsServer,
    stop: &AtomicBool,
    log: bool,
    rrl: Option<&Rrl>,
) {
    let mut batch = udp::Batch::new(socket);
    let mut answers = Answers::default();
    let mut metrics = LocalMetrics::default();
    // This worker's count of responses suppressed by rate limiting (for slip).
    let mut suppressed = 0;
    while !stop.load(Ordering::Relaxed) {
        // The answers of the version current when the batch arrived.
        let mut gslb = None;
        // One clock reading per request: the end of one is the start of the next.
        let mut mark = None;
        // One rate limiting clock reading per batch.
        let mut now = None;
        let received = batch.recv(|request, src| {
            let gslb = gslb.get_or_insert_with(|| server.gslb.load());
            let started = mark.unwrap_or_else(Instant::now);
            if let Some(out) = answers.next(src) {
                let (answered, done) =
                    answer_udp(gslb, request, src, log, &mut metrics, out, started);
                let send = answered
                    && rrl.is_none_or(|rrl| {
                        let now = *now.get_or_insert_with(|| rrl.now());
                        within_rate(rrl, src.ip(), now, &mut suppressed, out, &mut metrics)
                    });
                if !send {
                    answers.cancel();
                }
                mark = Some(done);
            }
        });
        if let Err(e) = received {
            // A timeout (idle: check `stop`), or e.g. an ICMP port unreachable reported
            // on a later receive: not fatal.
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                tracing::debug!(error = %e, "udp receive error");
            }
        }
        // Counted before sent: a client holding its answer finds it in the metrics.
        metrics.flush(&server.metrics);
        batch.send(&answers);
        answers.clear();
    }
}

/// Rate limiting of one UDP answer in `out` to `client`: whether to send it (cut to a
/// truncated answer when it slips).
fn within_rate(
    rrl: &Rrl,
    client: IpAddr,
    now: u64,
    suppressed: &mut u32,
    out: &mut Vec<u8>,
    metrics: &mut LocalMetrics,
) -> bool {
    match rrl.verdict(client, now, suppressed) {
        Verdict::Send => true,
        Verdict::Slip if crate::rrl::slip(out) => {
            metrics.rrl_slipped += 1;
            true
        }
        Verdict::Slip | Verdict::Drop => {
            metrics.rrl_dropped += 1;
            false
        }
    }
}

/// The responses of one batch, in reused buffers, with their destinations.
#[derive(Default)]
struct Answers {
    entries: Vec<(Vec<u8>, SocketAddr)>,
    len: usize,
}

impl Answers {
    /// An empty buffer for the next response, to `dest`.
    fn next(&mut self, dest: SocketAddr) -> Option<&mut Vec<u8>> {
        if self.len == self.entries.len() {
            self.entries.push((Vec::with_capacity(512), dest));
        }
        let (buf, to) = self.entries.get_mut(self.len)?;
        self.len += 1;
        buf.clear();
        *to = dest;
        Some(buf)
    }

    /// Drops the last response asked for (nothing to send).
    fn cancel(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// The responses and their destinations.
    fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.entries
            .iter()
            .take(self.len)
            .map(|(b, d)| (b.as_slice(), *d))
    }
}

/// Answers one UDP request into `out`, containing any panic to that request; counts it
/// in `metrics` as having started at `started`, and logs it with `log`. Returns whether
/// there is an answer to send, and when this was done.
fn answer_udp(
    gslb: &Gslb,
    request: &[u8],
    src: SocketAddr,
    log: bool,
    metrics: &mut LocalMetrics,
    out: &mut Vec<u8>,
    started: Instant,
) -> (bool, Instant) {
    let mut finished = None;
    let mut took = || {
        let now = Instant::now();
        finished = Some(now);
        now.saturating_duration_since(started)
    };
    let answered = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // The common query, counted without copying its labels (the query log needs
        // the hickory path's detail).
        let fast = !log
            && crate::fast::answer(gslb, request, src.ip(), Transport::Udp, out, |r| {
                let answer = Answer {
                    qtype: Some(r.qtype),
                    rcode: r.rcode,
                    truncated: false,
                    transport: Transport::Udp,
                    line: r.line,
                };
                metrics.record_answer(&answer, r.sites.iter(), took());
            });
        if fast {
            return true;
        }
        let (bytes, outcome) = respond_hickory(gslb, request, src.ip(), Transport::Udp, log);
        out.clear();
        let answered = bytes.map(|b| out.extend_from_slice(&b)).is_some();
        metrics.record(&outcome, answered, Transport::Udp, took());
        if log {
            log_query(src, Transport::Udp, &outcome, answered);
        }
        answered
    }))
    .unwrap_or_else(|_| {
        tracing::error!(%src, "panic while answering a DNS request; dropped");
        metrics.record(&Outcome::default(), false, Transport::Udp, took());
        false
    });
    (answered, finished.unwrap_or_else(Instant::now))
}

/// Receiving and sending batches of datagrams: `recvmmsg`/`sendmmsg` on Linux.
#[cfg(target_os = "linux")]
mod udp {
    use std::io::{IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    use super::{Answers, BATCH, MAX_DATAGRAM};

    pub(super) struct Batch {
        socket: UdpSocket,
        recv_headers: MultiHeaders<SockaddrStorage>,
        send_headers: MultiHeaders<SockaddrStorage>,
        /// [`BATCH`] receive buffers of [`MAX_DATAGRAM`] bytes, end to end.
        bufs: Vec<u8>,
        /// Destinations of one send, reused.
        dests: Vec<Option<SockaddrStorage>>,
    }

    impl Batch {
        pub fn new(socket: UdpSocket) -> Self {
            Batch {
                socket,
                recv_headers: MultiHeaders::preallocate(BATCH, None),
                send_headers: MultiHeaders::preallocate(BATCH, None),
                bufs: vec![0; BATCH * MAX_DATAGRAM],
                dests: Vec::with_capacity(BATCH),
            }
        }

        /// Waits for at least one datagram (until the socket's read timeout), then takes
        /// every one waiting, up to [`BATCH`], and hands each to `each`.
        pub fn recv(&mut self, mut each: impl FnMut(&[u8], SocketAddr)) -> std::io::Result<()> {
            let mut chunks = self.bufs.chunks_mut(MAX_DATAGRAM);
            let mut slices: [[IoSliceMut<'_>; 1]; BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or(&mut []))]);
            let received = recvmmsg(
                self.socket.as_raw_fd(),
                &mut self.recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            )
            .map_err(std::io::Error::from)?;
            for msg in received {
                let Some(src) = msg.address.as_ref().and_then(socket_addr) else {
                    continue;
                };
                // A datagram cut to the buffer is not the request that was sent.
                if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                    continue;
                }
                let bytes = msg.bytes;
                if let Some(data) = msg.iovs().next() {
                    each(data.get(..bytes).unwrap_or(data), src);
                }
            }
            Ok(())
        }

        /// Sends every answer, skipping any a send error refuses.
        pub fn send(&mut self, answers: &Answers) {
            // As many slices as answers (at most BATCH; empty ones past them).
            let mut all = answers.iter();
            self.dests.clear();
            let slices: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| match all.next() {
                Some((bytes, dest)) => {
                    self.dests.push(Some(SockaddrStorage::from(dest)));
                    [IoSlice::new(bytes)]
                }
                None => [IoSlice::new(&[])],
            });
            let mut start = 0;
            while start < self.dests.len() {
                let (Some(s), Some(d)) = (slices.get(start..), self.dests.get(start..)) else {
                    break;
                };
                match sendmmsg(
                    self.socket.as_raw_fd(),
                    &mut self.send_headers,
                    s,
                    d,
                    [],
                    MsgFlags::empty(),
                ) {
                    Ok(sent) => start += sent.count().max(1),
                    Err(e) => {
                        tracing::debug!(error = %e, "udp send error");
                        start += 1;
                    }
                }
            }
        }
    }

    fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = addr.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        addr.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
    }
}

/// Elsewhere: one datagram at a time with the standard library.
#[cfg(not(target_os = "linux"))]
mod udp {
    use std::net::{SocketAddr, UdpSocket};

    use super::{Answers, MAX_DATAGRAM};

    pub(super) struct Batch {
        socket: UdpSocket,
        buf: Vec<u8>,
    }

    impl Batch {
        pub fn new(socket: UdpSocket) -> Self {
            Batch {
                socket,
                buf: vec![0; MAX_DATAGRAM],
            }
        }

        pub fn recv(&mut self, mut each: impl FnMut(&[u8], SocketAddr)) -> std::io::Result<()> {
            let (len, src) = self.socket.recv_from(&mut self.buf)?;
            if let Some(request) = self.buf.get(..len) {
                each(request, src);
            }
            Ok(())
        }

        pub fn send(&mut self, answers: &Answers) {
            for (bytes, dest) in answers.iter() {
                if let Err(e) = self.socket.send_to(bytes, dest) {
                    tracing::debug!(error = %e, %dest, "udp send error");
                }
            }
        }
    }
}

/// Datagrams taken per receive.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const BATCH: usize = 32;
/// The largest datagram received whole.
const MAX_DATAGRAM: usize = 65_535;

/// How TCP connections are served, shared by every TCP listener.
struct TcpOptions {
    idle: Duration,
    write: Duration,
    log: bool,
    caps: Arc<TcpCaps>,
}

/// The connection caps: in all, and per client network.
struct TcpCaps {
    max_total: usize,
    max_per_client: usize,
    /// What a client network is (the prefix lengths of rate limiting).
    networks: Networks,
    total: AtomicUsize,
    /// Open connections per client network (only networks with one open: at most
    /// `max_total` entries).
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused: the metric label of the cap reached.
const CAP_TOTAL: &str = "total";
const CAP_PER_CLIENT: &str = "per_client";

impl TcpCaps {
    fn new(max_total: usize, max_per_client: usize, networks: Networks) -> Self {
        TcpCaps {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            networks,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place for a connection from `client` (counted with the rest of its
    /// network), held until the [`TcpPlace`] is dropped; `Err` with the cap reached.
    fn admit(self: &Arc<Self>, client: IpAddr) -> Result<TcpPlace, &'static str> {
        let client = self.networks.network(client);
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(CAP_TOTAL);
        }
        let mut per_client = self
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = per_client.entry(client).or_insert(0);
        if *open >= self.max_per_client {
            drop(per_client);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(CAP_PER_CLIENT);
        }
        *open += 1;
        Ok(TcpPlace {
            caps: self.clone(),
            client,
        })
    }
}

/// A connection's place under the caps, given back when dropped.
struct TcpPlace {
    caps: Arc<TcpCaps>,
    /// The client's network.
    client: IpAddr,
}

impl Drop for TcpPlace {
    fn drop(&mut self) {
        let mut per_client = self
            .caps
            .per_client
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = per_client.get_mut(&self.client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_client.remove(&self.client);
            }
        }
        drop(per_client);
        self.caps.total.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_tcp(
    listener: TcpListener,
    server: Arc<DnsServer>,
    mut stopped: watch::Receiver<bool>,
    options: Arc<TcpOptions>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => return,
        };
        match accepted {
            Ok((stream, src)) => {
                let place = match options.caps.admit(src.ip()) {
                    Ok(place) => place,
                    Err(limit) => {
                        // Closed at once: the client reads end of stream.
                        drop(stream);
                        server
                            .metrics
                            .tcp_refused
                            .get_or_create(&RefusedLabels { limit })
                            .inc();
                        tracing::debug!(%src, limit, "tcp connection refused: cap reached");
                        continue;
                    }
                };
                let server = server.clone();
                let stopped = stopped.clone();
                let options = options.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, src, &server, stopped, &options).await
                    {
                        tracing::debug!(error = %e, %src, "tcp connection ended");
                    }
                    drop(place);
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

/// Reads one length-framed query into `buf`: its length, or `None` when the client
/// closed the connection between two queries.
async fn read_query(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = usize::from(u16::from_be_bytes(len));
    let request = buf
        .get_mut(..len)
        .ok_or_else(|| std::io::Error::other("query longer than the buffer"))?;
    stream.read_exact(request).await?;
    Ok(Some(len))
}

async fn serve_connection(
    mut stream: TcpStream,
    src: SocketAddr,
    server: &DnsServer,
    mut stopped: watch::Receiver<bool>,
    options: &TcpOptions,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let timed_out = |timeout: &'static str| {
        server
            .metrics
            .tcp_timeouts
            .get_or_create(&TimeoutLabels { timeout })
            .inc();
    };
    let mut buf = vec![0u8; 65_535];
    loop {
        // The whole query within the idle timeout, however slowly it trickles in.
        let read = tokio::select! {
            r = tokio::time::timeout(options.idle, read_query(&mut stream, &mut buf)) => r,
            _ = stopped.changed() => return Ok(()),
        };
        let len = match read {
            Ok(Ok(Some(len))) => len,
            // Closed by the client between queries: done.
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                timed_out("idle");
                return Ok(());
            }
        };
        let Some(request) = buf.get(..len) else {
            return Ok(());
        };
        let Some(response) = answer(server, request, src, Transport::Tcp, options.log) else {
            continue;
        };
        let Ok(rlen) = u16::try_from(response.len()) else {
            server.metrics.dropped.inc();
            continue;
        };
        let mut out = Vec::with_capacity(response.len() + 2);
        out.extend_from_slice(&rlen.to_be_bytes());
        out.extend_from_slice(&response);
        match tokio::time::timeout(options.write, stream.write_all(&out)).await {
            Ok(written) => written?,
            Err(_) => {
                timed_out("write");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_client_cap_counts_a_client_network_together() {
        let caps = Arc::new(TcpCaps::new(100, 2, Networks::new(&RrlConfig::default())));
        let ip = |s: &str| -> IpAddr { s.parse().expect("address") };
        // Two addresses of one /56: its two places.
        let a = caps.admit(ip("2001:db8:0:1::1")).expect("first");
        let _b = caps.admit(ip("2001:db8:0:ff:1:2:3:4")).expect("second");
        assert_eq!(
            caps.admit(ip("2001:db8:0:2::5")).err(),
            Some(CAP_PER_CLIENT),
            "a third address of the /56"
        );
        let _c = caps.admit(ip("2001:db8:0:100::1")).expect("another /56");
        // IPv4 per /24, mapped or not.
        let _d = caps.admit(ip("192.0.2.1")).expect("v4");
        let _e = caps
            .admit(ip("::ffff:192.0.2.200"))
            .expect("v4-mapped, same /24");
        assert_eq!(caps.admit(ip("192.0.2.99")).err(), Some(CAP_PER_CLIENT));
        let _f = caps.admit(ip("192.0.3.1")).expect("another /24");
        // A place given back serves any address of the network.
        drop(a);
        let _g = caps
            .admit(ip("2001:db8:0:3::9"))
            .expect("the place came back");
        assert_eq!(caps.total.load(Ordering::Relaxed), 6);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn udp_answers_carry_df() {
        use rustix::net::sockopt::{Ipv4PathMtuDiscovery, ip_mtu_discover};
        let socket = udp_reuseport("127.0.0.1:0".parse().expect("addr")).expect("bind");
        assert_eq!(
            ip_mtu_discover(&socket).expect("getsockopt"),
            Ipv4PathMtuDiscovery::PROBE
        );
    }
}
