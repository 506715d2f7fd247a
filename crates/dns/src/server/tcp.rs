//! The TCP path (RFC 7766, tokio): 2-byte length framing, any number of queries per
//! connection answered in order, not rate limited. A connection is closed when no
//! complete query arrives within `tcp_idle_timeout` (however it trickles in), when a
//! response is not taken within `tcp_write_timeout` (a client that does not read), or on
//! any framing error. At most `max_tcp_connections` at once, and
//! `max_tcp_connections_per_client` from one client network (the address cut to the
//! prefix lengths rate limiting uses, [`RrlConfig::ipv4_prefix`] and
//! [`RrlConfig::ipv6_prefix`]: a /24 or a /56 by default, so one client's many IPv6
//! addresses cannot take every place and shut the TCP fallback slipped answers rely
//! on): a connection past either cap is closed as soon as accepted.
//!
//! [`RrlConfig::ipv4_prefix`]: crate::rrl::RrlConfig::ipv4_prefix
//! [`RrlConfig::ipv6_prefix`]: crate::rrl::RrlConfig::ipv6_prefix

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{DnsConfig, DnsServer, log_query};
use crate::metrics::{RefusedLabels, TimeoutLabels};
use crate::rrl::Networks;
use crate::wire::{Outcome, Transport, respond_traced};

/// How TCP connections are served, shared by every TCP listener.
pub(super) struct TcpOptions {
    idle: Duration,
    write: Duration,
    log: bool,
    caps: Arc<TcpCaps>,
}

impl TcpOptions {
    /// The TCP timeouts, query logging and connection caps of `config`.
    pub(super) fn new(config: &DnsConfig) -> Self {
        TcpOptions {
            idle: config.tcp_idle_timeout,
            write: config.tcp_write_timeout,
            log: config.query_log,
            caps: Arc::new(TcpCaps::new(
                config.max_tcp_connections,
                config.max_tcp_connections_per_client,
                Networks::new(&config.rrl),
            )),
        }
    }
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

/// Accepts connections on `listener` until `stopped`, each served on its own task.
pub(super) async fn serve(
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
    use crate::rrl::RrlConfig;

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
}
