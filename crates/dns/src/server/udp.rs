//! The UDP path: one datagram, one response (or none). One socket per core shares the
//! port (SO_REUSEPORT), each served by its own plain thread (no async runtime hop per
//! packet) in batches: on Linux one `recvmmsg` takes every datagram waiting (up to 32),
//! each is answered into a reused buffer (the fast path of `crate::fast` first), the
//! batch's counts go to the metrics, and one `sendmmsg` sends the answers. Elsewhere,
//! one datagram at a time. Every UDP answer passes response rate limiting first
//! (`crate::rrl`, `DnsConfig::rrl`): over its client network's rate it is dropped or
//! slipped (sent cut to a truncated answer).

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle as ThreadHandle;
use std::time::{Duration, Instant};

use super::{DnsServer, log_query};
use crate::gslb::Gslb;
use crate::metrics::{Answer, LocalMetrics};
use crate::rrl::{Rrl, Verdict};
use crate::wire::{Outcome, Transport, respond_hickory};

/// A blocking UDP socket with SO_REUSEPORT, so that several sockets (one per worker)
/// share a port and the kernel spreads queries over them; receives time out after
/// [`UDP_STOP_CHECK`] so that its worker sees a shutdown.
pub(super) fn reuseport(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
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
pub(super) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Starts the worker thread serving `socket` until `stop`.
pub(super) fn spawn_worker(
    socket: std::net::UdpSocket,
    server: Arc<DnsServer>,
    stop: Arc<AtomicBool>,
    log: bool,
    rrl: Option<Arc<Rrl>>,
) -> std::io::Result<ThreadHandle<()>> {
    // The caller's tracing subscriber, as the tasks on its runtime would log to.
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    std::thread::Builder::new()
        .name("dns-udp".into())
        .spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                serve(socket, &server, &stop, log, rrl.as_deref());
            });
        })
}

/// One UDP worker: until `stop`, receives a batch, answers it (each answer within its
/// client network's rate, with `rrl`), counts it, sends it.
fn serve(
    socket: std::net::UdpSocket,
    server: &DnsServer,
    stop: &AtomicBool,
    log: bool,
    rrl: Option<&Rrl>,
) {
    let mut batch = batch::Batch::new(socket);
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
mod batch {
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
mod batch {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn udp_answers_carry_df() {
        use rustix::net::sockopt::{Ipv4PathMtuDiscovery, ip_mtu_discover};
        let socket = reuseport("127.0.0.1:0".parse().expect("addr")).expect("bind");
        assert_eq!(
            ip_mtu_discover(&socket).expect("getsockopt"),
            Ipv4PathMtuDiscovery::PROBE
        );
    }
}
