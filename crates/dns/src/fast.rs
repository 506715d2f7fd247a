//! The fast path: the common query answered without hickory-proto, straight from the
//! request's bytes into a caller's reused buffer (no allocation of its own).
//!
//! "Common" is a QUERY with exactly one question of class IN (not AXFR/IXFR), a name of
//! plain labels (no compression pointer, at most [`MAX_LABELS`] labels), no answer or
//! authority records, and at most one additional record: an OPT of version 0 whose
//! options are at most one well-formed ECS (host bits clear, exact length) plus options
//! the slow path ignores too (COOKIE, padding, ...). Its answer must be addresses only
//! (A/AAAA), optionally with the SOA in the authority section (NXDOMAIN, NODATA), and
//! fit the transport's size limit. Anything else returns `false` and the caller takes
//! the hickory-based path in `crate::wire`, which owns every other rule (FORMERR,
//! NOTIMP, BADVERS, REFUSED for other classes, TC, SOA/NS answers and glue, ...).
//!
//! The decision comes from [`Gslb::answer_quick`] (service names and the usual
//! negatives, without allocating) when it can give it, else from
//! [`Gslb::answer_labels`], the slow path's.
//!
//! The bytes written are those the slow path writes for the same request, name
//! compression included: hickory-proto compresses a name against the earlier names'
//! suffixes compared byte for byte (case-sensitively), which [`Names`] mirrors. The
//! differential test `tests/fast_path.rs` holds the two paths to that.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::gslb::{ClientInfo, Decision, Gslb, NS_LABEL, QuickDecision, Rcode, Rdata, truncate};
use crate::steer::QuickAnswer;
use crate::wire::{CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD, Outcome, Transport};

/// The DNS header's length.
const HEADER_LEN: usize = 12;
/// Labels of a question name handled here; longer names take the slow path.
const MAX_LABELS: usize = 16;
/// Labels of a zone handled here.
const MAX_ZONE_LABELS: usize = 8;
/// Answer records handled here (hickory stops compressing after 120 names).
const MAX_ANSWERS: usize = 64;
/// Name suffixes remembered for compression (hickory remembers 64; ours never reach it).
const MAX_STORED: usize = 32;
const TYPE_A: u16 = 1;
const TYPE_SOA: u16 = 6;
const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
const OPTION_NSID: u16 = 3;
const OPTION_DAU: u16 = 5;
const OPTION_ECS: u16 = 8;

/// Answers `request` into `buf` (cleared first) and fills `out`, when the request and
/// its answer are of the common kind; `false` otherwise (then `buf` and `out` hold
/// nothing meaningful and the caller must use the slow path).
pub(crate) fn respond(
    gslb: &Gslb,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    out: &mut Outcome,
    buf: &mut Vec<u8>,
) -> bool {
    answer(gslb, request, src, transport, buf, |r| {
        *out = Outcome {
            qtype: Some(r.qtype),
            rcode: r.rcode,
            ecs: r.ecs,
            line: r.line.cloned(),
            sites: r.sites.iter().cloned().collect(),
            ..Outcome::default()
        };
    })
}

/// What the fast path answered, for the caller's metrics: [`Outcome`]'s fields,
/// borrowed.
pub(crate) struct Report<'r> {
    pub qtype: RecordType,
    pub rcode: ResponseCode,
    pub ecs: Option<(IpAddr, u8)>,
    pub line: Option<&'r Arc<str>>,
    pub sites: Sites<'r>,
}

/// The sites of the addresses answered, in answer order.
#[derive(Clone, Copy)]
pub(crate) enum Sites<'r> {
    Quick(&'r QuickAnswer<'r>),
    Full(&'r [Arc<str>]),
}

impl<'r> Sites<'r> {
    pub fn iter(self) -> impl Iterator<Item = &'r Arc<str>> {
        let (quick, full) = match self {
            Sites::Quick(q) => (Some(q.iter().map(|(_, site)| site)), None),
            Sites::Full(f) => (None, Some(f.iter())),
        };
        quick
            .into_iter()
            .flatten()
            .chain(full.into_iter().flatten())
    }
}

/// [`respond`] for callers that count the answer themselves: `report` gets what was
/// answered, before this returns `true`.
pub(crate) fn answer(
    gslb: &Gslb,
    request: &[u8],
    src: IpAddr,
    transport: Transport,
    buf: &mut Vec<u8>,
    report: impl FnOnce(Report<'_>),
) -> bool {
    let Some(query) = Query::parse(request) else {
        return false;
    };
    let qtype = RecordType::from(query.qtype);
    let client = ClientInfo {
        addr: src,
        ecs: query.ecs.as_ref().map(|e| (e.addr, e.source)),
    };
    buf.clear();
    // Service names and the other usual ones, without allocating; else the full
    // decision (still encoded here when it holds addresses only).
    let mut quick = QuickDecision::default();
    let (view, line, sites, full);
    if gslb.answer_quick(query.labels(), qtype, &client, &mut quick) {
        view = View::quick(&quick);
        (line, sites) = (quick.line, Sites::Quick(&quick.answer));
    } else {
        full = gslb.answer_labels(query.labels(), qtype, &client, false);
        view = View::full(&full);
        (line, sites) = (full.line.as_ref(), Sites::Full(&full.sites));
    }
    if encode(buf, &query, &view, gslb).is_none() || buf.len() > query.limit(transport) {
        return false;
    }
    report(Report {
        qtype,
        rcode: view.rcode.into(),
        ecs: client.ecs,
        line,
        sites,
    });
    true
}

/// The parts of a decision the response is made of, from either kind of decision.
struct View<'a> {
    rcode: Rcode,
    authoritative: bool,
    negative: bool,
    ecs_scope: Option<u8>,
    answers: Addrs<'a>,
}

/// The answer records: addresses with one TTL, or a full decision's records (which
/// may hold data the fast path does not encode, or glue).
enum Addrs<'a> {
    Quick(u32, &'a QuickAnswer<'a>),
    Full(&'a Decision),
}

impl<'a> View<'a> {
    fn quick(d: &'a QuickDecision<'a>) -> Self {
        View {
            rcode: d.rcode,
            authoritative: d.authoritative,
            negative: d.negative,
            ecs_scope: d.ecs_scope,
            answers: Addrs::Quick(d.ttl, &d.answer),
        }
    }

    fn full(d: &'a Decision) -> Self {
        View {
            rcode: d.rcode,
            authoritative: d.authoritative,
            negative: d.negative,
            ecs_scope: d.ecs_scope,
            answers: Addrs::Full(d),
        }
    }

    /// The number of answer records.
    fn answer_count(&self) -> usize {
        match self.answers {
            Addrs::Quick(_, q) => q.iter().count(),
            Addrs::Full(d) => d.answers.len(),
        }
    }

    /// Whether the decision holds anything besides A/AAAA answers and the SOA of a
    /// negative answer.
    fn unusual(&self) -> bool {
        match self.answers {
            Addrs::Quick(..) => false,
            Addrs::Full(d) => {
                !d.glue.is_empty() || d.answers.iter().any(|(_, r)| !matches!(r, Rdata::Addr(_)))
            }
        }
    }

    /// The answers' TTLs and addresses.
    fn addrs(&self) -> impl Iterator<Item = (u32, IpAddr)> + '_ {
        let (quick, full) = match self.answers {
            Addrs::Quick(ttl, q) => (Some(q.iter().map(move |(a, _)| (ttl, a))), None),
            Addrs::Full(d) => (
                None,
                Some(d.answers.iter().filter_map(|(ttl, r)| match r {
                    Rdata::Addr(a) => Some((*ttl, *a)),
                    _ => None,
                })),
            ),
        };
        quick
            .into_iter()
            .flatten()
            .chain(full.into_iter().flatten())
    }
}

/// A request of the common kind, borrowed from its bytes.
struct Query<'a> {
    /// The request's 2-byte id, its flags bytes (QR/opcode/AA/TC/RD, RA/Z/AD/CD/rcode).
    id: [u8; 2],
    flags: [u8; 2],
    /// The question as sent: name, type, class.
    question: &'a [u8],
    labels: [&'a [u8]; MAX_LABELS],
    label_count: usize,
    qtype: u16,
    /// The OPT record's UDP payload size, when the query had one.
    edns_payload: Option<u16>,
    ecs: Option<Ecs<'a>>,
}

/// The query's ECS option (RFC 7871 §6).
struct Ecs<'a> {
    addr: IpAddr,
    source: u8,
    /// FAMILY and SOURCE PREFIX-LENGTH as sent (3 bytes).
    family_source: &'a [u8],
    /// ADDRESS as sent: `ceil(source / 8)` bytes.
    address: &'a [u8],
}

impl<'a> Query<'a> {
    fn parse(request: &'a [u8]) -> Option<Query<'a>> {
        let header: &[u8; HEADER_LEN] = request.get(..HEADER_LEN)?.try_into().ok()?;
        // QR (0x80) must be clear and OPCODE (0x78) QUERY; the other bits of a query
        // (AA, TC, RD, Z, AD, CD, RCODE) do not change the answer, as in the slow path.
        if header[2] & 0xf8 != 0 {
            return None;
        }
        // QDCOUNT 1, ANCOUNT 0, NSCOUNT 0, ARCOUNT 0 or 1.
        if header[4..10] != [0, 1, 0, 0, 0, 0] || header[10] != 0 || header[11] > 1 {
            return None;
        }
        let mut query = Query {
            id: [header[0], header[1]],
            flags: [header[2], header[3]],
            question: &[],
            labels: [&[]; MAX_LABELS],
            label_count: 0,
            qtype: 0,
            edns_payload: None,
            ecs: None,
        };
        let name_end = query.parse_name(request)?;
        query.qtype = read_u16(request, name_end)?;
        let class = read_u16(request, name_end + 2)?;
        // AXFR (252) and IXFR (251) are refused by the slow path.
        if class != CLASS_IN || matches!(query.qtype, 251 | 252) {
            return None;
        }
        let question_end = name_end + 4;
        query.question = request.get(HEADER_LEN..question_end)?;
        let rest = request.get(question_end..)?;
        match (header[11], rest) {
            (0, []) => {}
            (1, opt) => query.parse_opt(opt)?,
            // Bytes past the last record: left to the slow path.
            _ => return None,
        }
        Some(query)
    }

    /// Reads the question name's labels; returns the offset just past the name. Names
    /// with a compression pointer, an extended label type, or over 255 bytes (RFC 1035
    /// §2.3.4; hickory refuses them too) are left to the slow path.
    fn parse_name(&mut self, request: &'a [u8]) -> Option<usize> {
        let mut pos = HEADER_LEN;
        loop {
            let len = usize::from(*request.get(pos)?);
            if len == 0 {
                pos += 1;
                break;
            }
            // 0xC0: a pointer; 0x40, 0x80: reserved label types.
            if len > 63 {
                return None;
            }
            let label = request.get(pos + 1..pos + 1 + len)?;
            *self.labels.get_mut(self.label_count)? = label;
            self.label_count += 1;
            pos += 1 + len;
        }
        (pos - HEADER_LEN <= 255).then_some(pos)
    }

    /// Reads the OPT record (RFC 6891 §6.1.2), the last bytes of the request: root
    /// owner, TYPE 41, CLASS = UDP payload size, TTL = extended RCODE, VERSION and
    /// flags, RDLENGTH, then options as CODE, LENGTH, DATA.
    fn parse_opt(&mut self, opt: &'a [u8]) -> Option<()> {
        let fixed: &[u8; 11] = opt.get(..11)?.try_into().ok()?;
        // Root owner, type OPT, version 0 (others get BADVERS from the slow path). The
        // extended RCODE and the flags (DO) of a query change nothing.
        if fixed[0] != 0 || u16::from_be_bytes([fixed[1], fixed[2]]) != TYPE_OPT || fixed[6] != 0 {
            return None;
        }
        self.edns_payload = Some(u16::from_be_bytes([fixed[3], fixed[4]]));
        let rdlen = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
        let mut options = opt.get(11..)?;
        if options.len() != rdlen {
            return None;
        }
        while !options.is_empty() {
            let code = read_u16(options, 0)?;
            let len = usize::from(read_u16(options, 2)?);
            let data = options.get(4..4 + len)?;
            options = options.get(4 + len..)?;
            match code {
                // One ECS only (the slow path would use the first).
                OPTION_ECS if self.ecs.is_none() => self.ecs = Some(Ecs::parse(data)?),
                // Options hickory decodes (and may refuse) itself.
                OPTION_ECS | OPTION_NSID | OPTION_DAU => return None,
                // Any other option (COOKIE, padding, ...) is ignored, as in the slow path.
                _ => {}
            }
        }
        Some(())
    }

    fn labels(&self) -> &[&'a [u8]] {
        self.labels.get(..self.label_count).unwrap_or_default()
    }

    /// The largest response the transport allows: over UDP the client's EDNS payload
    /// size within [512, 1232], 512 without EDNS (the slow path's TC rule).
    fn limit(&self, transport: Transport) -> usize {
        match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => usize::from(self.edns_payload.map_or(CLASSIC_UDP_PAYLOAD, |p| {
                p.clamp(CLASSIC_UDP_PAYLOAD, MAX_UDP_PAYLOAD)
            })),
        }
    }
}

impl<'a> Ecs<'a> {
    /// FAMILY (1: IPv4, 2: IPv6), SOURCE PREFIX-LENGTH, SCOPE PREFIX-LENGTH (ignored in a
    /// query), then exactly `ceil(source / 8)` address bytes with no bit set past the
    /// source prefix. Anything else is the slow path's (FORMERR, mostly).
    fn parse(data: &'a [u8]) -> Option<Ecs<'a>> {
        let family = read_u16(data, 0)?;
        let source = *data.get(2)?;
        let address = data.get(4..)?;
        if address.len() != usize::from(source.div_ceil(8)) {
            return None;
        }
        let addr = match family {
            1 if source <= 32 => {
                let mut octets = [0u8; 4];
                octets.get_mut(..address.len())?.copy_from_slice(address);
                IpAddr::V4(Ipv4Addr::from(octets))
            }
            2 if source <= 128 => {
                let mut octets = [0u8; 16];
                octets.get_mut(..address.len())?.copy_from_slice(address);
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            _ => return None,
        };
        if truncate(addr, source) != addr {
            return None;
        }
        Some(Ecs {
            addr,
            source,
            family_source: data.get(..3)?,
            address,
        })
    }
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b: [u8; 2] = bytes.get(at..at + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

/// Writes the response: header, the question as asked, the answers (owner: a pointer to
/// the question), the SOA for negative answers, the OPT record iff the query had one.
/// `None` when the decision holds anything the fast path does not encode.
fn encode(buf: &mut Vec<u8>, query: &Query<'_>, view: &View<'_>, gslb: &Gslb) -> Option<()> {
    let answers = view.answer_count();
    if view.unusual() || answers > MAX_ANSWERS || (view.negative && answers > 0) {
        return None;
    }
    write_header(buf, query, view, answers);
    buf.extend_from_slice(query.question);
    // The owner of every answer is the question's name: hickory compresses it to a
    // pointer to offset 12, the root name excepted (just its zero byte).
    let owner: &[u8] = if query.labels().is_empty() {
        &[0]
    } else {
        &[0xc0, HEADER_LEN as u8]
    };
    for (ttl, addr) in view.addrs() {
        let (rtype, addr) = match addr {
            IpAddr::V4(a) => (TYPE_A, AddrBytes::V4(a.octets())),
            IpAddr::V6(a) => (TYPE_AAAA, AddrBytes::V6(a.octets())),
        };
        buf.extend_from_slice(owner);
        write_record_head(buf, rtype, ttl);
        let data = addr.as_slice();
        buf.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
        buf.extend_from_slice(data);
    }
    if view.negative {
        let soa_names = SoaNames::new(gslb)?;
        // The question's suffixes, remembered for compressing the SOA's names.
        let mut names = Names::default();
        names.remember_all(HEADER_LEN, query.labels())?;
        write_soa(buf, &mut names, &soa_names, gslb)?;
    }
    if query.edns_payload.is_some() {
        write_opt(buf, query, view);
    }
    Some(())
}

/// ID echoed; QR, OPCODE QUERY, AA per the decision, RD echoed; CD echoed, RCODE.
/// Counts: one question, the answers, the SOA, the OPT record.
fn write_header(buf: &mut Vec<u8>, query: &Query<'_>, view: &View<'_>, answers: usize) {
    let aa = if view.authoritative { 0x04 } else { 0 };
    let rd = query.flags[0] & 0x01;
    let cd = query.flags[1] & 0x10;
    let code: ResponseCode = view.rcode.into();
    let rcode = u16::from(code) as u8 & 0x0f;
    // At most MAX_ANSWERS answers: the cast cannot truncate.
    let answers = answers as u16;
    let authorities = u16::from(view.negative);
    let additionals = u16::from(query.edns_payload.is_some());
    buf.extend_from_slice(&query.id);
    buf.extend_from_slice(&[0x80 | aa | rd, cd | rcode]);
    for count in [1, answers, authorities, additionals] {
        buf.extend_from_slice(&count.to_be_bytes());
    }
}

/// TYPE, CLASS IN, TTL of a record (its owner written before, its RDLENGTH after).
fn write_record_head(buf: &mut Vec<u8>, rtype: u16, ttl: u32) {
    buf.extend_from_slice(&rtype.to_be_bytes());
    buf.extend_from_slice(&CLASS_IN.to_be_bytes());
    buf.extend_from_slice(&ttl.to_be_bytes());
}

enum AddrBytes {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl AddrBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            AddrBytes::V4(a) => a,
            AddrBytes::V6(a) => a,
        }
    }
}

/// The names of the zone's SOA record, as label lists: the zone, `ns1.<zone>` (MNAME)
/// and `hostmaster.<zone>` (RNAME), all lowercase as the snapshot gave the zone.
struct SoaNames<'z> {
    /// `[ns1, zone labels...]`
    mname: [&'z [u8]; MAX_ZONE_LABELS + 1],
    /// `[hostmaster, zone labels...]`
    rname: [&'z [u8]; MAX_ZONE_LABELS + 1],
    zone_len: usize,
}

impl<'z> SoaNames<'z> {
    fn new(gslb: &'z Gslb) -> Option<SoaNames<'z>> {
        let zone = gslb.zone().strip_suffix('.')?;
        let mut names = SoaNames {
            mname: [&[]; MAX_ZONE_LABELS + 1],
            rname: [&[]; MAX_ZONE_LABELS + 1],
            zone_len: 0,
        };
        names.mname[0] = NS_LABEL.as_bytes();
        names.rname[0] = b"hostmaster";
        for label in zone.split('.') {
            names.zone_len += 1;
            *names.mname.get_mut(names.zone_len)? = label.as_bytes();
            *names.rname.get_mut(names.zone_len)? = label.as_bytes();
        }
        Some(names)
    }

    fn zone(&self) -> &[&'z [u8]] {
        self.mname.get(1..=self.zone_len).unwrap_or_default()
    }

    fn mname(&self) -> &[&'z [u8]] {
        self.mname.get(..=self.zone_len).unwrap_or_default()
    }

    fn rname(&self) -> &[&'z [u8]] {
        self.rname.get(..=self.zone_len).unwrap_or_default()
    }
}

/// The zone's SOA in the authority section (RFC 2308 §3: its TTL is the negative
/// caching time), exactly as `crate::wire` builds it: owner the zone, then MNAME,
/// RNAME, SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM.
fn write_soa<'n>(
    buf: &mut Vec<u8>,
    names: &mut Names<'n>,
    soa_names: &'n SoaNames<'_>,
    gslb: &Gslb,
) -> Option<()> {
    let soa = gslb.soa();
    names.write(buf, soa_names.zone())?;
    write_record_head(buf, TYPE_SOA, soa.minimum);
    let rdlength_at = buf.len();
    buf.extend_from_slice(&[0, 0]);
    names.write(buf, soa_names.mname())?;
    names.write(buf, soa_names.rname())?;
    buf.extend_from_slice(&soa.serial.to_be_bytes());
    for field in [soa.refresh, soa.retry, soa.expire] {
        buf.extend_from_slice(&field.to_be_bytes());
    }
    buf.extend_from_slice(&soa.minimum.to_be_bytes());
    let rdlength = u16::try_from(buf.len() - rdlength_at - 2).ok()?;
    buf.get_mut(rdlength_at..rdlength_at + 2)?
        .copy_from_slice(&rdlength.to_be_bytes());
    Some(())
}

/// The server's OPT record: root owner, TYPE 41, CLASS 1232 (our UDP payload size),
/// TTL 0 (extended RCODE 0, version 0, no flags), and the query's ECS echoed with the
/// decision's scope (RFC 7871 §7.2.1) when both are there.
fn write_opt(buf: &mut Vec<u8>, query: &Query<'_>, view: &View<'_>) {
    buf.push(0);
    buf.extend_from_slice(&TYPE_OPT.to_be_bytes());
    buf.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0]);
    match (&query.ecs, view.ecs_scope) {
        (Some(ecs), Some(scope)) => {
            // An address of at most 16 bytes: the lengths fit in a u16.
            let len = (4 + ecs.address.len()) as u16;
            buf.extend_from_slice(&(len + 4).to_be_bytes());
            buf.extend_from_slice(&OPTION_ECS.to_be_bytes());
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(ecs.family_source);
            buf.push(scope);
            buf.extend_from_slice(ecs.address);
        }
        _ => buf.extend_from_slice(&[0, 0]),
    }
}

/// Name compression as hickory-proto does it (RFC 1035 §4.1.4): every suffix of every
/// name written in full is remembered with its offset; a later name is written label
/// by label until its remaining suffix equals a remembered one byte for byte, which is
/// then replaced by a pointer (0xC000 | offset).
#[derive(Default)]
struct Names<'a> {
    stored: [(u16, &'a [&'a [u8]]); MAX_STORED],
    len: usize,
}

impl<'a> Names<'a> {
    fn find(&self, name: &[&[u8]]) -> Option<u16> {
        self.stored
            .get(..self.len)?
            .iter()
            .find(|(_, s)| *s == name)
            .map(|(at, _)| *at)
    }

    fn remember(&mut self, at: usize, suffix: &'a [&'a [u8]]) -> Option<()> {
        *self.stored.get_mut(self.len)? = (u16::try_from(at).ok()?, suffix);
        self.len += 1;
        Some(())
    }

    /// Remembers the suffixes of a name already written in full at `at`.
    fn remember_all(&mut self, mut at: usize, name: &'a [&'a [u8]]) -> Option<()> {
        for i in 0..name.len() {
            self.remember(at, name.get(i..)?)?;
            at += 1 + name.get(i)?.len();
        }
        Some(())
    }

    /// Writes `name`, compressed against the names remembered.
    fn write(&mut self, buf: &mut Vec<u8>, name: &'a [&'a [u8]]) -> Option<()> {
        for i in 0..name.len() {
            let suffix = name.get(i..)?;
            if let Some(at) = self.find(suffix) {
                buf.extend_from_slice(&(0xc000 | at).to_be_bytes());
                return Some(());
            }
            self.remember(buf.len(), suffix)?;
            let label = name.get(i)?;
            buf.push(u8::try_from(label.len()).ok()?);
            buf.extend_from_slice(label);
        }
        buf.push(0);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gslb() -> Gslb {
        crate::wire::tests::small_gslb()
    }

    /// A query for `name` (dotted, no final dot) of `qtype`, with an OPT record carrying
    /// `ecs` (ECS option data) when given.
    fn query(name: &str, qtype: u16, ecs: Option<&[u8]>) -> Vec<u8> {
        let mut p = vec![
            0xab,
            0xcd,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(ecs.is_some()),
        ];
        for label in name.split('.') {
            p.push(label.len() as u8);
            p.extend(label.as_bytes());
        }
        p.push(0);
        p.extend(qtype.to_be_bytes());
        p.extend([0, 1]);
        if let Some(ecs) = ecs {
            p.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
            p.extend(((ecs.len() + 4) as u16).to_be_bytes());
            p.extend([0, 8]);
            p.extend((ecs.len() as u16).to_be_bytes());
            p.extend(ecs);
        }
        p
    }

    fn fast(request: &[u8]) -> Option<(Vec<u8>, Outcome)> {
        let mut out = Outcome::default();
        let mut buf = Vec::new();
        let src = "192.0.2.1".parse().unwrap();
        respond(&gslb(), request, src, Transport::Udp, &mut out, &mut buf).then_some((buf, out))
    }

    #[test]
    fn takes_the_common_queries() {
        let ecs: &[u8] = &[0, 1, 24, 0, 198, 51, 100];
        for (name, qtype, rcode) in [
            ("demo.cdn.lingjing.test", 1, ResponseCode::NoError),
            ("DEMO.cdn.lingjing.test", 28, ResponseCode::NoError),
            ("demo.cdn.lingjing.test", 16, ResponseCode::NoError),
            ("nope.cdn.lingjing.test", 1, ResponseCode::NXDomain),
            ("example.org", 1, ResponseCode::Refused),
        ] {
            for ecs in [None, Some(ecs)] {
                let (bytes, out) = fast(&query(name, qtype, ecs)).expect(name);
                assert_eq!(out.rcode, rcode, "{name}");
                assert_eq!(bytes[..2], [0xab, 0xcd]);
                assert_eq!(out.ecs.is_some(), ecs.is_some());
            }
        }
    }

    #[test]
    fn service_names_take_the_quick_decision() {
        let g = gslb();
        let client = ClientInfo {
            addr: "192.0.2.1".parse().unwrap(),
            ecs: Some(("198.51.100.0".parse().unwrap(), 24)),
        };
        let name =
            |first: &'static [u8]| -> [&'static [u8]; 4] { [first, b"cdn", b"lingjing", b"test"] };
        let mut d = QuickDecision::default();
        assert!(g.answer_quick(&name(b"DEMO"), RecordType::A, &client, &mut d));
        assert_eq!(d.answer.iter().count(), 1);
        assert_eq!(
            (d.rcode, d.negative, d.ecs_scope),
            (Rcode::NoError, false, Some(0))
        );
        assert!(g.answer_quick(&name(b"nope"), RecordType::A, &client, &mut d));
        assert_eq!((d.rcode, d.negative), (Rcode::NxDomain, true));
        assert!(g.answer_quick(&[b"example", b"org"], RecordType::A, &client, &mut d));
        assert_eq!((d.rcode, d.authoritative), (Rcode::Refused, false));
        // The apex and the name server: the full decision.
        let apex: [&[u8]; 3] = [b"cdn", b"lingjing", b"test"];
        assert!(!g.answer_quick(&apex, RecordType::SOA, &client, &mut d));
        assert!(!g.answer_quick(&name(b"ns1"), RecordType::A, &client, &mut d));
    }

    #[test]
    fn leaves_the_rest_to_the_slow_path() {
        let ecs_host_bits: &[u8] = &[0, 1, 24, 0, 198, 51, 100, 7];
        for request in [
            query("cdn.lingjing.test", 6, None),        // SOA answer
            query("cdn.lingjing.test", 2, None),        // NS answer and glue
            query("demo.cdn.lingjing.test", 252, None), // AXFR
            query("demo.cdn.lingjing.test", 1, Some(ecs_host_bits)),
            query("demo.cdn.lingjing.test", 1, None)[..20].to_vec(),
            vec![0; 11],
        ] {
            assert!(fast(&request).is_none(), "{request:02x?}");
        }
    }

    #[test]
    fn compresses_like_hickory() {
        // NXDOMAIN for a name whose zone part is in another case: the SOA's owner is
        // written out (lowercase), its MNAME and RNAME point at it.
        let (bytes, _) = fast(&query("x.CDN.lingjing.test", 1, None)).unwrap();
        let question_end = 12 + 21 + 4;
        let soa_owner = question_end;
        // "cdn" then a pointer to "lingjing.test" in the question (offset 12 + 2 + 4).
        assert_eq!(
            bytes[soa_owner..soa_owner + 6],
            [3, b'c', b'd', b'n', 0xc0, 18]
        );
        let mname = soa_owner + 6 + 10;
        assert_eq!(
            bytes[mname..mname + 6],
            [3, b'n', b's', b'1', 0xc0, soa_owner as u8]
        );
    }
}
