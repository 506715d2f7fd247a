//! The DNS server's abuse defences, black-box over real sockets on 127.0.0.0/8:
//! response rate limiting of UDP per client network (with slip: truncated answers that
//! send genuine clients to TCP), RFC 8482 minimal answers to `ANY` over UDP and TCP,
//! the TCP connection caps (per client network and in all), and the TCP idle and write
//! timeouts, each with its metric; the admin HTTP server's connection cap, idle
//! timeout and read deadline. Nothing here depends on timing: rate limits are
//! checked against the time measured, timeouts are short but only bound how long an
//! outcome may take to show.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on unexpected failures

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Ask, DEMO, ZONE, addresses, demo_dns, name, record, serve_with, tcp, udp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use lingjing_dns::{AdminLimits, DnsHandle, RrlConfig};
use lingjing_model::DnsSnapshot;
use lingjing_model::record::RecordType as Kind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// How long any outcome may take to show: generous, never the thing tested.
const BOUND: Duration = Duration::from_secs(30);

/// Another client network than 127.0.0.1's /24 (Linux answers on all of 127/8).
const OTHER_CLIENT: &str = "127.0.2.1";

fn metric(h: &DnsHandle, line: &str) -> u64 {
    let text = h.server.metrics().encode();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn tcp_from(local: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(local.parse().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// One framed query on `stream` and its response; `None` when the connection ends
/// first.
async fn ask_on(stream: &mut TcpStream, ask: &Ask) -> Option<Message> {
    let bytes = ask.bytes();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.ok()?;
    let mut len = [0u8; 2];
    tokio::time::timeout(BOUND, stream.read_exact(&mut len))
        .await
        .expect("an answer or the end of the connection in time")
        .ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).unwrap())
}

/// Waits (bounded) for the server to end `stream`: end of stream or a reset.
async fn ended(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn a_udp_flood_from_one_network_is_rate_limited_with_slip() {
    const SENT: usize = 2000;
    const RATE: u32 = 10;
    const BURST: u32 = 10;
    let h = serve_with(1, demo_dns(), |c| {
        c.rrl = RrlConfig {
            responses_per_second: RATE,
            burst: BURST,
            ..RrlConfig::default()
        };
    })
    .await;
    let server = h.udp_addrs()[0];
    let flood = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let query = Ask::new(DEMO, RecordType::A).edns(1232).bytes();

    // Everything that comes back, until the flood has been sent and nothing more
    // arrives for a while (answers are at most late, never early).
    let started = Instant::now();
    let sent_all = Arc::new(AtomicBool::new(false));
    let receiver = {
        let (flood, sent_all) = (flood.clone(), sent_all.clone());
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0u8; 2048];
            loop {
                match tokio::time::timeout(Duration::from_secs(2), flood.recv_from(&mut buf)).await
                {
                    Ok(Ok((n, _))) => got.push(Message::from_vec(&buf[..n]).unwrap()),
                    Ok(Err(e)) => panic!("receive: {e}"),
                    Err(_) if sent_all.load(Ordering::SeqCst) => return got,
                    Err(_) => {}
                }
            }
        })
    };
    for i in 0..SENT {
        let mut q = query.clone();
        q[..2].copy_from_slice(&(i as u16).to_be_bytes());
        flood.send_to(&q, server).await.unwrap();
    }
    sent_all.store(true, Ordering::SeqCst);
    let got = receiver.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();

    let (slipped, full): (Vec<&Message>, Vec<&Message>) =
        got.iter().partition(|m| m.metadata.truncation);
    eprintln!(
        "{SENT} queries: {} full answers, {} slipped, in {elapsed:.2}s",
        full.len(),
        slipped.len()
    );
    // Full answers: within the rate over the time measured, plus the burst.
    let allowed = f64::from(RATE) * elapsed + f64::from(BURST);
    assert!(
        full.len() as f64 <= allowed,
        "{} full answers in {elapsed:.1}s at {RATE}/s with a burst of {BURST}",
        full.len()
    );
    assert!(full.iter().all(|m| !addresses(m).is_empty()));
    // Slipped answers: truncated, no records, the question echoed; about every second
    // suppressed response, so far fewer answers than queries.
    assert!(!slipped.is_empty(), "some suppressed answers slip");
    for m in &slipped {
        assert!(m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty());
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.queries[0].name().to_ascii(), DEMO);
    }
    assert!(
        got.len() < SENT * 3 / 4,
        "{} answers to {SENT} queries",
        got.len()
    );
    assert!(metric(&h, "lingjing_dns_rrl_slipped_responses_total") >= slipped.len() as u64);
    assert!(metric(&h, "lingjing_dns_rrl_dropped_responses_total") > 0);

    // Another client network is answered, and the flooded one still is over TCP.
    let other = UdpSocket::bind((OTHER_CLIENT, 0)).await.unwrap();
    other.send_to(&query, server).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(BOUND, other.recv_from(&mut buf))
        .await
        .expect("an answer for another network")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert!(!m.metadata.truncation);
    assert!(!addresses(&m).is_empty());
    let m = tcp(h.tcp_addrs()[0], &Ask::new(DEMO, RecordType::A)).await;
    assert!(!addresses(&m).is_empty(), "TCP is not rate limited");
    h.shutdown().await;
}

#[tokio::test]
async fn without_rate_limiting_every_query_is_answered() {
    let h = serve_with(1, demo_dns(), |c| c.rrl = RrlConfig::off()).await;
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let query = Ask::new(DEMO, RecordType::A).bytes();
    let mut buf = vec![0u8; 2048];
    // One at a time: no loss anywhere, so every one comes back whole.
    for _ in 0..300 {
        sock.send_to(&query, h.udp_addrs()[0]).await.unwrap();
        let (n, _) = tokio::time::timeout(BOUND, sock.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(!Message::from_vec(&buf[..n]).unwrap().metadata.truncation);
    }
    assert_eq!(metric(&h, "lingjing_dns_rrl_dropped_responses_total"), 0);
    h.shutdown().await;
}

fn with_records() -> DnsSnapshot {
    let mut body = demo_dns();
    body.records = vec![
        record("api4", "api", Kind::A, &["192.0.2.10", "192.0.2.11"]),
        record("api6", "api", Kind::Aaaa, &["2001:db8::10"]),
        record("apitxt", "api", Kind::Txt, &["hello"]),
        record("mx", "@", Kind::Mx, &["10 mail.example.com."]),
        record("spf", "@", Kind::Txt, &["v=spf1 -all"]),
        record("www", "www", Kind::Cname, &["demo"]),
    ];
    body
}

/// The record types of the answer section, each once.
fn rrsets(m: &Message) -> HashSet<RecordType> {
    m.answers.iter().map(|r| r.record_type()).collect()
}

#[tokio::test]
async fn any_is_answered_with_one_rrset_over_udp_and_tcp() {
    let h = serve_with(1, with_records(), |_| {}).await;
    let mut asked = 0;
    for edns in [false, true] {
        for (qname, want) in [
            (ZONE.to_owned(), Some(RecordType::SOA)),
            (name("ns1"), None),
            (DEMO.to_owned(), Some(RecordType::A)),
            (name("api"), Some(RecordType::A)),
            (name("www"), Some(RecordType::CNAME)),
        ] {
            let mut ask = Ask::new(&qname, RecordType::ANY);
            if edns {
                ask = ask.edns(1232);
            }
            for m in [
                udp(h.udp_addrs()[0], &ask).await,
                tcp(h.tcp_addrs()[0], &ask).await,
            ] {
                asked += 1;
                assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{qname}");
                assert!(!m.metadata.truncation, "{qname}: small enough for UDP");
                let sets = rrsets(&m);
                assert_eq!(sets.len(), 1, "{qname}: one RRset, got {sets:?}");
                if let Some(want) = want {
                    assert!(sets.contains(&want), "{qname}: {sets:?}");
                }
                // No glue or other records beside it (only the OPT, which hickory
                // keeps apart).
                assert!(m.additionals.is_empty(), "{qname}");
                assert!(m.authorities.is_empty(), "{qname}");
            }
        }
    }
    // The other types are still answered in full.
    let m = udp(h.udp_addrs()[0], &Ask::new(ZONE, RecordType::NS)).await;
    assert!(!m.additionals.is_empty(), "NS keeps its glue");
    let m = udp(h.udp_addrs()[0], &Ask::new(&name("api"), RecordType::TXT)).await;
    assert_eq!(rrsets(&m), HashSet::from([RecordType::TXT]));
    assert_eq!(
        metric(&h, "lingjing_dns_any_minimized_responses_total"),
        asked
    );
    h.shutdown().await;
}

#[tokio::test]
async fn tcp_connections_past_the_per_client_cap_are_closed() {
    let h = serve_with(1, demo_dns(), |c| c.max_tcp_connections_per_client = 2).await;
    let server = h.tcp_addrs()[0];
    let ask = Ask::new(DEMO, RecordType::A);
    // Two connections from two addresses of one /24 (the client network, as rate
    // limiting cuts it), each answered (so the server holds both).
    let mut held = Vec::new();
    for local in ["127.0.5.1", "127.0.5.2"] {
        let mut s = tcp_from(local, server).await;
        assert!(ask_on(&mut s, &ask).await.is_some(), "{local}");
        held.push(s);
    }
    // A third from yet another address of that /24 is closed without an answer: the
    // network's addresses count together.
    let mut third = tcp_from("127.0.5.3", server).await;
    assert!(ended(&mut third).await, "closed past the cap");
    assert!(ask_on(&mut third, &ask).await.is_none());
    assert_eq!(
        metric(
            &h,
            "lingjing_dns_tcp_refused_connections_total{limit=\"per_client\"}"
        ),
        1
    );
    // A client of another /24 is served meanwhile, and the held connections still are.
    let mut other = tcp_from(OTHER_CLIENT, server).await;
    assert!(!addresses(&ask_on(&mut other, &ask).await.expect("answered")).is_empty());
    assert!(ask_on(&mut held[0], &ask).await.is_some());

    // One closed: the network's place comes back (once the server has seen the
    // close), for any of its addresses.
    drop(held.pop());
    let deadline = Instant::now() + BOUND;
    loop {
        let mut s = tcp_from("127.0.5.4", server).await;
        if ask_on(&mut s, &ask).await.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::task::yield_now().await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn tcp_connections_past_the_total_cap_are_closed() {
    let h = serve_with(1, demo_dns(), |c| c.max_tcp_connections = 2).await;
    let server = h.tcp_addrs()[0];
    let ask = Ask::new(DEMO, RecordType::A);
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tcp_from("127.0.0.1", server).await;
        assert!(ask_on(&mut s, &ask).await.is_some());
        held.push(s);
    }
    let mut other = tcp_from(OTHER_CLIENT, server).await;
    assert!(ended(&mut other).await, "closed past the total cap");
    assert_eq!(
        metric(
            &h,
            "lingjing_dns_tcp_refused_connections_total{limit=\"total\"}"
        ),
        1
    );
    // UDP is not affected.
    assert!(!addresses(&udp(h.udp_addrs()[0], &ask).await).is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn an_idle_tcp_connection_is_closed() {
    let h = serve_with(1, demo_dns(), |c| {
        c.tcp_idle_timeout = Duration::from_secs(1);
    })
    .await;
    let server = h.tcp_addrs()[0];
    // Silent from the start.
    let mut idle = TcpStream::connect(server).await.unwrap();
    assert!(ended(&mut idle).await, "an idle connection is closed");
    // A query begun and never finished (slowloris) is no activity either.
    let mut partial = TcpStream::connect(server).await.unwrap();
    partial.write_all(&[0, 40, 0x12, 0x34]).await.unwrap();
    assert!(
        ended(&mut partial).await,
        "a partial query does not hold it"
    );
    // Idle after an answer.
    let mut s = TcpStream::connect(server).await.unwrap();
    assert!(
        ask_on(&mut s, &Ask::new(DEMO, RecordType::A))
            .await
            .is_some()
    );
    assert!(ended(&mut s).await, "closed when idle after an answer");
    assert_eq!(
        metric(&h, "lingjing_dns_tcp_timeouts_total{timeout=\"idle\"}"),
        3
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_tcp_client_that_does_not_read_is_closed() {
    let h = serve_with(1, demo_dns(), |c| {
        c.tcp_write_timeout = Duration::from_secs(1);
    })
    .await;
    // A small receive window, then queries and never a read: the server's writes
    // block until its write timeout closes the connection, which fails our writes.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(h.tcp_addrs()[0]).await.unwrap();
    let bytes = Ask::new(DEMO, RecordType::A).bytes();
    let mut chunk = Vec::new();
    for _ in 0..256 {
        chunk.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        chunk.extend_from_slice(&bytes);
    }
    let closed = tokio::time::timeout(BOUND, async {
        while stream.write_all(&chunk).await.is_ok() {}
    })
    .await;
    assert!(closed.is_ok(), "the server closed the connection");
    assert_eq!(
        metric(&h, "lingjing_dns_tcp_timeouts_total{timeout=\"write\"}"),
        1
    );
    // Others are still served.
    let ask = Ask::new(DEMO, RecordType::A);
    assert!(!addresses(&tcp(h.tcp_addrs()[0], &ask).await).is_empty());
    h.shutdown().await;
}

/// A server with its admin HTTP server, with `limits`.
async fn serve_admin(limits: AdminLimits) -> DnsHandle {
    serve_with(1, demo_dns(), |c| {
        c.admin = Some("127.0.0.1:0".parse().unwrap());
        c.admin_limits = limits;
    })
    .await
}

/// One keep-alive `GET /healthz` on `stream`: whether a 200 came back.
async fn healthz_on(stream: &mut TcpStream) -> bool {
    let request = b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(BOUND, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => buf[..n].starts_with(b"HTTP/1.1 200"),
        _ => false,
    }
}

#[tokio::test]
async fn admin_connections_past_the_cap_are_closed() {
    let h = serve_admin(AdminLimits {
        max_connections: 2,
        ..AdminLimits::default()
    })
    .await;
    let admin = h.admin_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(admin).await.unwrap();
        assert!(healthz_on(&mut s).await);
        held.push(s);
    }
    let mut third = TcpStream::connect(admin).await.unwrap();
    assert!(ended(&mut third).await, "closed past the cap");
    assert!(healthz_on(&mut held[1]).await, "the held ones still served");
    drop(held.pop());
    let deadline = Instant::now() + BOUND;
    loop {
        let mut s = TcpStream::connect(admin).await.unwrap();
        if healthz_on(&mut s).await {
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::task::yield_now().await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn slow_and_idle_admin_clients_are_closed() {
    // Idle: nothing sent at all.
    let h = serve_admin(AdminLimits {
        idle_timeout: Duration::from_secs(1),
        ..AdminLimits::default()
    })
    .await;
    let mut idle = TcpStream::connect(h.admin_addr().unwrap()).await.unwrap();
    assert!(ended(&mut idle).await, "an idle admin connection is closed");
    h.shutdown().await;
    // Slow: a request head begun and never finished, with idleness allowed for long.
    let h = serve_admin(AdminLimits {
        idle_timeout: Duration::from_secs(3600),
        read_deadline: Duration::from_secs(1),
        ..AdminLimits::default()
    })
    .await;
    let mut slow = TcpStream::connect(h.admin_addr().unwrap()).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: a")
        .await
        .unwrap();
    assert!(ended(&mut slow).await, "a slow request head is cut off");
    h.shutdown().await;
}

#[tokio::test]
async fn settings_out_of_range_are_refused_at_start() {
    let server = Arc::new(lingjing_dns::DnsServer::new());
    let mut config = lingjing_dns::DnsConfig::on("127.0.0.1:0".parse().unwrap());
    config.rrl.ipv4_prefix = 33;
    let e = lingjing_dns::start(&config, server.clone())
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("0 to 32"), "{e}");
    let mut config = lingjing_dns::DnsConfig::on("127.0.0.1:0".parse().unwrap());
    config.max_tcp_connections_per_client = 0;
    let e = lingjing_dns::start(&config, server)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("at least 1"), "{e}");
}
