//! DNS messages in and out: one request's bytes to one response's bytes, over a
//! [`Gslb`]. Pure (no I/O), so every protocol rule is tested without sockets.
//!
//! Rules, in the order they apply:
//! - fewer than 12 bytes, or a response (QR set): dropped, never answered;
//! - an opcode other than QUERY: NOTIMP;
//! - a message that does not parse: FORMERR (header only);
//! - EDNS version other than 0: BADVERS; a malformed ECS option or a question count
//!   other than one: FORMERR;
//! - a class other than IN, or a zone transfer: REFUSED;
//! - otherwise the [`Gslb`]'s decision, the question echoed as asked (case included),
//!   the ECS option echoed with its scope, the OPT record present iff the query had one;
//! - over UDP, a response larger than the client's EDNS size (512 bytes without EDNS)
//!   is cut to its header, question and OPT with TC set, so the client retries over
//!   TCP.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::gslb::{ClientInfo, Decision, Gslb, NS_LABEL, Rdata, truncate};

/// The largest UDP payload this server sends, whatever the client offers (the DNS flag
/// day 2020 value: no IP fragmentation on common paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// The UDP payload size without EDNS (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// How a request arrived: UDP responses are bounded by the client's payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What happened to one request, for metrics and the query log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The question's type, when the request had exactly one parsable question.
    pub qtype: Option<RecordType>,
    /// The response code sent (meaningless when no response was sent).
    pub rcode: ResponseCode,
    /// Cut to fit the client's UDP payload size (TC set).
    pub truncated: bool,
    /// The ECS option of the query: address and source prefix.
    pub ecs: Option<(IpAddr, u8)>,
    /// For service names: the client's line (`None`: on no line).
    pub line: Option<Arc<str>>,
    /// For service names: the site of each address answered.
    pub sites: Vec<Arc<str>>,
    /// With `detail` only: the question's name as asked.
    pub qname: Option<String>,
    /// With `detail` only: the addresses answered.
    pub answer: Vec<IpAddr>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome {
            qtype: None,
            rcode: ResponseCode::NoError,
            truncated: false,
            ecs: None,
            line: None,
            sites: Vec::new(),
            qname: None,
            answer: Vec::new(),
        }
    }
}

/// The response to one request, or `None` when it must not be answered.
pub fn respond(gslb: &Gslb, request: &[u8], src: IpAddr, transport: Transport) -> Option<Vec<u8>> {
    respond_traced(gslb, request, src, transport, false).0
}

/// [`respond`], also saying what happened; with `detail`, the outcome also carries the
/// question's name and the addresses answered (for the query log).
pub fn respond_traced(
    gslb: &Gslb,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    detail: bool,
) -> (Option<Vec<u8>>, Outcome) {
    let mut out = Outcome::default();
    // The common query takes the fast path (`crate::fast`, same bytes); everything else,
    // and every query whose log needs the detail, this module's hickory path.
    if !detail {
        let mut buf = Vec::with_capacity(512);
        if crate::fast::respond(gslb, request, src, transport, &mut out, &mut buf) {
            return (Some(buf), out);
        }
        out = Outcome::default();
    }
    let bytes = respond_into(gslb, request, src, transport, detail, &mut out);
    (bytes, out)
}

/// [`respond_traced`] without trying the fast path first: for a caller that already
/// tried it (`crate::server`), so a query the fast path leaves is not decided twice.
pub fn respond_hickory(
    gslb: &Gslb,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    detail: bool,
) -> (Option<Vec<u8>>, Outcome) {
    let mut out = Outcome::default();
    let bytes = respond_into(gslb, request, src, transport, detail, &mut out);
    (bytes, out)
}

fn respond_into(
    gslb: &Gslb,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    detail: bool,
    out: &mut Outcome,
) -> Option<Vec<u8>> {
    if request.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    if request[2] & 0x80 != 0 {
        return None;
    }
    let op_code = OpCode::from_u8((request[2] >> 3) & 0x0f);
    let recursion_desired = request[2] & 0x01 != 0;
    let parsed = Message::from_vec(request);
    let raw = request;

    let mut response = Message::response(id, op_code);
    response.metadata.recursion_desired = recursion_desired;

    let request = match parsed {
        Ok(m) if op_code == OpCode::Query => m,
        Ok(m) => {
            // Not served: NOTIMP, question echoed, OPT if it had one.
            response.metadata.response_code = ResponseCode::NotImp;
            response.queries = m.queries.clone();
            if m.edns.is_some() {
                response.edns = Some(server_edns());
            }
            return encode(response, &m, transport, out);
        }
        Err(_) => {
            response.metadata.response_code = if op_code == OpCode::Query {
                ResponseCode::FormErr
            } else {
                ResponseCode::NotImp
            };
            out.rcode = response.metadata.response_code;
            return response.to_vec().ok();
        }
    };
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.queries = request.queries.clone();
    if let [query] = request.queries.as_slice() {
        out.qtype = Some(query.query_type());
        if detail {
            out.qname = Some(query.name().to_ascii());
        }
    }

    if let Some(edns) = &request.edns {
        response.edns = Some(server_edns());
        if edns.version() != 0 {
            response.metadata.response_code = ResponseCode::BADVERS;
            return encode(response, &request, transport, out);
        }
    }
    let ecs = match client_subnet(&request).and_then(|e| raw_subnet_ok(raw).then_some(e).ok_or(()))
    {
        Ok(ecs) => ecs,
        Err(()) => {
            response.metadata.response_code = ResponseCode::FormErr;
            return encode(response, &request, transport, out);
        }
    };
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return encode(response, &request, transport, out);
    };
    if query.query_class() != DNSClass::IN
        || matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR)
    {
        response.metadata.response_code = ResponseCode::Refused;
        return encode(response, &request, transport, out);
    }

    let client = ClientInfo {
        addr: src,
        ecs: ecs.map(|e| (e.addr(), e.source_prefix())),
    };
    out.ecs = client.ecs;
    let labels: Vec<&[u8]> = query.name().iter().collect();
    let decision = gslb.answer_labels(&labels, query.query_type(), &client, false);
    fill(&mut response, gslb, query, &decision);
    if detail {
        out.answer = decision
            .answers
            .iter()
            .filter_map(|(_, r)| match r {
                Rdata::Addr(a) => Some(*a),
                _ => None,
            })
            .collect();
    }
    out.line = decision.line;
    out.sites = decision.sites;
    if let (Some(ecs), Some(scope), Some(edns)) = (ecs, decision.ecs_scope, response.edns.as_mut())
    {
        let mut echo = ecs;
        echo.set_scope_prefix(scope);
        edns.options_mut().insert(EdnsOption::Subnet(echo));
    }
    encode(response, &request, transport, out)
}

/// The OPT record this server sends.
fn server_edns() -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.set_version(0);
    edns
}

/// The query's ECS option, validated (RFC 7871 §6): `Err` for a prefix longer than the
/// family allows or address bits set past the source prefix.
fn client_subnet(request: &Message) -> Result<Option<ClientSubnet>, ()> {
    let Some(edns) = &request.edns else {
        return Ok(None);
    };
    match edns.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(ecs)) => {
            let max = match ecs.addr() {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            };
            let len = ecs.source_prefix();
            if len > max || truncate(ecs.addr(), len) != ecs.addr() {
                return Err(());
            }
            Ok(Some(*ecs))
        }
        Some(_) => Err(()),
        None => Ok(None),
    }
}

/// Whether every ECS option of `request` (already parsed by hickory) has exactly
/// `ceil(source / 8)` address bytes (RFC 7871 §6: a wrong size is FORMERR); hickory
/// drops the extra bytes, and with them address bits past the source prefix.
fn raw_subnet_ok(request: &[u8]) -> bool {
    fn u16_at(b: &[u8], at: usize) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            b.get(at..at + 2)?.try_into().ok()?,
        )))
    }
    fn skip_name(b: &[u8], mut pos: usize) -> Option<usize> {
        loop {
            let len = *b.get(pos)?;
            match len {
                0 => return Some(pos + 1),
                l if l & 0xc0 == 0xc0 => return Some(pos + 2),
                l => pos += 1 + usize::from(l),
            }
        }
    }
    let check = || -> Option<bool> {
        let counts: Vec<usize> = (0..4)
            .map(|i| u16_at(request, 4 + 2 * i))
            .collect::<Option<_>>()?;
        let mut pos = 12;
        for _ in 0..counts[0] {
            pos = skip_name(request, pos)? + 4;
        }
        for _ in 0..counts[1] + counts[2] + counts[3] {
            pos = skip_name(request, pos)?;
            let rtype = u16_at(request, pos)?;
            let rdlen = u16_at(request, pos + 8)?;
            let rdata = request.get(pos + 10..pos + 10 + rdlen)?;
            pos += 10 + rdlen;
            if rtype != 41 {
                continue;
            }
            let mut at = 0;
            while at < rdata.len() {
                let (code, len) = (u16_at(rdata, at)?, u16_at(rdata, at + 2)?);
                if code == 8 {
                    let source = usize::from(*rdata.get(at + 6)?);
                    if len != 4 + source.div_ceil(8) {
                        return Some(false);
                    }
                }
                at += 4 + len;
            }
        }
        Some(true)
    };
    check().unwrap_or(true)
}

/// Puts the decision's records into the response.
fn fill(response: &mut Message, gslb: &Gslb, query: &Query, decision: &Decision) {
    response.metadata.response_code = decision.rcode.into();
    response.metadata.authoritative = decision.authoritative;
    let Ok(zone) = Name::from_ascii(gslb.zone()) else {
        return;
    };
    let Ok(ns_name) = Name::from_ascii(format!("{NS_LABEL}.{}", gslb.zone())) else {
        return;
    };
    // The query name owns the answers up to a CNAME; its target owns those after it
    // (a chain chased in the zone).
    let mut owner = query.name().clone();
    for (ttl, rdata) in &decision.answers {
        let data = match rdata {
            Rdata::Addr(a) => addr_rdata(*a),
            Rdata::Soa => soa_rdata(gslb, &zone),
            Rdata::Ns => RData::NS(NS(ns_name.clone())),
            Rdata::Static(i) => match gslb.static_rdata(*i) {
                Some(data) => data.clone(),
                None => continue,
            },
        };
        let next_owner = match (rdata, &data) {
            (Rdata::Static(_), RData::CNAME(CNAME(target))) => Some(target.clone()),
            _ => None,
        };
        response
            .answers
            .push(Record::from_rdata(owner.clone(), *ttl, data));
        if let Some(target) = next_owner {
            owner = target;
        }
    }
    if decision.negative {
        // RFC 2308 §3: the SOA's TTL is the negative caching time.
        let ttl = gslb.soa().minimum;
        let soa = soa_rdata(gslb, &zone);
        response
            .authorities
            .push(Record::from_rdata(zone.clone(), ttl, soa));
    }
    for a in &decision.glue {
        response.additionals.push(Record::from_rdata(
            ns_name.clone(),
            crate::gslb::ZONE_TTL,
            addr_rdata(*a),
        ));
    }
}

fn addr_rdata(a: IpAddr) -> RData {
    match a {
        IpAddr::V4(a) => RData::A(A(a)),
        IpAddr::V6(a) => RData::AAAA(AAAA(a)),
    }
}

fn soa_rdata(gslb: &Gslb, zone: &Name) -> RData {
    let soa = gslb.soa();
    let prefixed = |label: &str| zone.prepend_label(label).unwrap_or_else(|_| zone.clone());
    RData::SOA(SOA::new(
        prefixed(NS_LABEL),
        prefixed("hostmaster"),
        soa.serial,
        soa.refresh,
        soa.retry,
        soa.expire,
        soa.minimum,
    ))
}

/// Encodes the response; over UDP, cuts it to header, question and OPT with TC set when
/// it exceeds the client's payload size.
fn encode(
    response: Message,
    request: &Message,
    transport: Transport,
    out: &mut Outcome,
) -> Option<Vec<u8>> {
    out.rcode = response.metadata.response_code;
    let bytes = match response.to_vec() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a response; answering SERVFAIL");
            out.rcode = ResponseCode::ServFail;
            out.sites.clear();
            let mut failed = Message::response(response.metadata.id, response.metadata.op_code);
            failed.metadata.response_code = ResponseCode::ServFail;
            failed.metadata.recursion_desired = response.metadata.recursion_desired;
            return failed.to_vec().ok();
        }
    };
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(match &request.edns {
            Some(edns) => edns
                .max_payload()
                .clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD),
            None => CLASSIC_UDP_PAYLOAD,
        }),
    };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut cut = Message::response(response.metadata.id, response.metadata.op_code);
    cut.metadata = response.metadata;
    cut.metadata.truncation = true;
    out.truncated = true;
    cut.queries = response.queries;
    cut.edns = response.edns;
    cut.to_vec().ok().filter(|b| b.len() <= limit)
}

#[cfg(test)]
pub(crate) mod tests {
    use hickory_proto::op::Query;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let mut edns = Edns::new();
        edns.options_mut()
            .insert(EdnsOption::Subnet("198.51.100.0/24".parse().unwrap()));
        m.set_edns(edns);
        m.to_vec().unwrap()
    }

    /// One edge+DNS node at one site serving service `demo` (shared with `fast`'s tests).
    pub(crate) fn small_gslb() -> Gslb {
        use lingjing_model::{DnsSnapshot, Node, NodeInfo, NodePorts, NodeRole, Service, Site};
        let snap = DnsSnapshot {
            zone: "cdn.lingjing.test.".into(),
            sites: vec![Site {
                id: "s1".into(),
                name: "S1".into(),
                region: "r".into(),
                lines: vec!["telecom".into()],
                bandwidth_mbps: 0,
                parent: None,
            }],
            nodes: vec![NodeInfo {
                node: Node {
                    id: "n1".into(),
                    site: "s1".into(),
                    roles: vec![NodeRole::Edge, NodeRole::Dns],
                    ports: NodePorts::default(),
                    capacity_mbps: 0,
                    drained: false,
                },
                addresses: vec!["127.0.1.1".parse().unwrap(), "::1".parse().unwrap()],
                healthy: true,
                load_percent: 0,
            }],
            services: vec![Service {
                id: "demo".into(),
                tenant: "t".into(),
                hostnames: vec!["www.demo.example".into()],
                origins: Vec::new(),
                cache_rules: Vec::new(),
                steering: Default::default(),
                tls: None,
                targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
                forward_targeted_cache_control: false,
                origin_ca_pem: None,
                defence: Default::default(),
            }],
            ..DnsSnapshot::default()
        };
        Gslb::build(&snap, 1).unwrap()
    }

    #[test]
    fn answers_a_plain_query() {
        let r = respond(
            &small_gslb(),
            &query("DEMO.cdn.lingjing.test.", RecordType::A),
            "192.0.2.1".parse().unwrap(),
            Transport::Udp,
        )
        .unwrap();
        let m = Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name.to_ascii(), "DEMO.cdn.lingjing.test.");
    }

    #[test]
    fn mutated_queries_never_panic_and_responses_parse() {
        let gslb = small_gslb();
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let seeds = [
            query("demo.cdn.lingjing.test.", RecordType::A),
            query("cdn.lingjing.test.", RecordType::SOA),
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for i in 0..50_000 {
            let mut p = seeds[i % 2].clone();
            for _ in 0..rng.random_range(1..8) {
                match rng.random_range(0..3) {
                    0 => {
                        let at = rng.random_range(0..p.len());
                        p[at] = rng.random();
                    }
                    1 => p.truncate(rng.random_range(0..p.len())),
                    _ => p.push(rng.random()),
                }
                if p.is_empty() {
                    break;
                }
            }
            for transport in [Transport::Udp, Transport::Tcp] {
                if let Some(r) = respond(&gslb, &p, src, transport) {
                    let m = Message::from_vec(&r).expect("our responses parse");
                    assert_eq!(
                        m.metadata.message_type,
                        hickory_proto::op::MessageType::Response
                    );
                    if transport == Transport::Udp {
                        assert!(r.len() <= usize::from(MAX_UDP_PAYLOAD));
                    }
                }
            }
        }
    }
}
