//! Shared test helpers: the demo topology as a DNS snapshot, a running server, and a
//! small DNS client (hand-built queries with hickory-proto over UDP and TCP sockets).

// Each test binary uses a different part of this module; tests may panic on
// unexpected failures.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use lingjing_dns::{DnsConfig, DnsHandle, DnsServer, start};
use lingjing_model::{DnsSnapshot, NodeInfo, Role, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const ZONE: &str = "cdn.lingjing.test.";
pub const DEMO: &str = "demo.cdn.lingjing.test.";

/// `n` in the zone: `{n}.{ZONE}`.
pub fn name(n: &str) -> String {
    format!("{n}.{ZONE}")
}

/// A static record `id`: `name` (relative to the zone, `@` for the apex) of type `rtype`,
/// TTL 120, with `values`.
pub fn record(
    id: &str,
    name: &str,
    rtype: lingjing_model::record::RecordType,
    values: &[&str],
) -> lingjing_model::DnsRecord {
    lingjing_model::DnsRecord {
        id: id.into(),
        name: name.into(),
        rtype,
        ttl: 120,
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

/// The demo topology as the control plane would hand it to DNS: every node healthy, its
/// address allocated by IPAM from the demo pools.
pub fn demo_dns() -> DnsSnapshot {
    let t = lingjing_demo::demo_topology(lingjing_demo::DEFAULT_LISTEN);
    let mut taken = BTreeSet::new();
    let mut addrs: Vec<(String, IpAddr)> = Vec::new();
    for (pool, node) in &t.allocations {
        let pool = t.pools.iter().find(|p| &p.id == pool).unwrap();
        let a = lingjing_model::ipam::first_free(pool, &taken).unwrap();
        taken.insert(a);
        addrs.push((node.clone(), a));
    }
    let nodes = t
        .nodes
        .iter()
        .map(|n| NodeInfo {
            node: n.clone(),
            addresses: addrs
                .iter()
                .filter(|(id, _)| id == &n.id)
                .map(|(_, a)| *a)
                .collect(),
            healthy: true,
            load_percent: 0,
        })
        .collect();
    DnsSnapshot {
        zone: ZONE.into(),
        regions: t.regions,
        lines: t.lines,
        prefixes: t.prefixes,
        sites: t.sites,
        pools: t.pools,
        nodes,
        services: t.services,
        records: Vec::new(),
    }
}

pub fn snapshot(version: u64, body: DnsSnapshot) -> Snapshot<DnsSnapshot> {
    Snapshot {
        version,
        role: Role::Dns,
        generated_at: "2026-01-01T00:00:00Z".into(),
        body,
    }
}

/// The (first) address of node `id`.
pub fn addr_of(body: &DnsSnapshot, id: &str) -> IpAddr {
    body.nodes
        .iter()
        .find(|n| n.node.id == id)
        .unwrap()
        .addresses[0]
}

pub fn node_mut<'a>(body: &'a mut DnsSnapshot, id: &str) -> &'a mut NodeInfo {
    body.nodes.iter_mut().find(|n| n.node.id == id).unwrap()
}

/// A server on 127.0.0.1:0 serving `body` at `version`.
pub async fn serve(version: u64, body: DnsSnapshot) -> DnsHandle {
    serve_with(version, body, |_| {}).await
}

/// [`serve`] with the default configuration changed by `configure`.
pub async fn serve_with(
    version: u64,
    body: DnsSnapshot,
    configure: impl FnOnce(&mut DnsConfig),
) -> DnsHandle {
    let server = Arc::new(DnsServer::new());
    server.apply(&snapshot(version, body)).unwrap();
    let mut config = DnsConfig::on("127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    start(&config, server).await.unwrap()
}

/// A query message.
pub struct Ask {
    pub name: String,
    pub qtype: RecordType,
    /// EDNS UDP payload size; `None`: no EDNS at all (unless `ecs` is set).
    pub edns: Option<u16>,
    pub ecs: Option<&'static str>,
}

impl Ask {
    pub fn new(name: &str, qtype: RecordType) -> Self {
        Ask {
            name: name.into(),
            qtype,
            edns: None,
            ecs: None,
        }
    }

    pub fn ecs(mut self, subnet: &'static str) -> Self {
        self.ecs = Some(subnet);
        self
    }

    pub fn edns(mut self, size: u16) -> Self {
        self.edns = Some(size);
        self
    }

    pub fn message(&self, id: u16) -> Message {
        let mut m = Message::query();
        m.metadata.id = id;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(
            Name::from_ascii(&self.name).unwrap(),
            self.qtype,
        ));
        if self.edns.is_some() || self.ecs.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(self.edns.unwrap_or(1232));
            if let Some(ecs) = self.ecs {
                let subnet: ClientSubnet = ecs.parse().unwrap();
                edns.options_mut().insert(EdnsOption::Subnet(subnet));
            }
            m.set_edns(edns);
        }
        m
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.message(0x4a4a).to_vec().unwrap()
    }
}

/// Sends raw bytes over UDP and waits (bounded) for one response.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    match tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

pub async fn udp(server: SocketAddr, ask: &Ask) -> Message {
    let bytes = udp_raw(server, &ask.bytes()).await.expect("a UDP response");
    Message::from_vec(&bytes).unwrap()
}

/// Sends each request over one TCP connection and reads one response per request.
pub async fn tcp_many(server: SocketAddr, requests: &[Vec<u8>]) -> Vec<Message> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut out = Vec::new();
    for r in requests {
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(r);
        stream.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut len))
            .await
            .unwrap()
            .unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.unwrap();
        out.push(Message::from_vec(&buf).unwrap());
    }
    out
}

pub async fn tcp(server: SocketAddr, ask: &Ask) -> Message {
    tcp_many(server, &[ask.bytes()]).await.remove(0)
}

/// The A/AAAA addresses of the answer section.
pub fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The ECS option of the response, if any.
pub fn ecs_of(m: &Message) -> Option<ClientSubnet> {
    match m
        .edns
        .as_ref()?
        .option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)?
    {
        EdnsOption::Subnet(s) => Some(*s),
        _ => None,
    }
}
