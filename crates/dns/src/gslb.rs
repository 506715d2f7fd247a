//! The zone and its answers, computed per query from one DNS snapshot. Pure: no I/O.
//!
//! [`Gslb::build`] precomputes from a snapshot everything a query needs (the zone's
//! labels, the client classifier, the ECS scope table, the region tree, a steering plan
//! per service, the name servers' addresses); [`Gslb::answer`] then maps a question and
//! a client to a [`Decision`]: the response code, the records, and for service names an
//! [`Explanation`] of the choice. `Gslb::answer_quick` gives the same decision for the
//! usual names without allocating (the query path's, `crate::fast`). The wire format is
//! the server's business (`crate::wire`).
//!
//! Names served, under the platform zone `Z` (e.g. `cdn.lingjing.test.`):
//! - `Z`: SOA and NS (`ns1.Z`);
//! - `ns1.Z`: A/AAAA of the healthy, undrained nodes with the `dns` role;
//! - `<service id>.Z`: A/AAAA steered per client (see `crate::steer`);
//! - the operator's static records (`DnsSnapshot::records`) at their names, the apex
//!   included; a CNAME answers every type but CNAME's own (and ANY) with itself, chased
//!   within the zone (RFC 1034 §4.3.2 step 3a: the target's records follow, the
//!   response code and negative answer are the last name's, RFC 6604; at most
//!   [`MAX_CNAME_CHAIN`] CNAMEs, a cycle stops at its first repeat; a target outside
//!   the zone is left to the resolver); the ancestors of a static name exist (NODATA,
//!   not NXDOMAIN, RFC 8020);
//! - anything else under `Z`: NXDOMAIN; names outside `Z`: REFUSED.
//!
//! `ANY` gets a minimal answer (RFC 8482 §4.1): one RRset of the name, never all of
//! them: the SOA at the apex, the A set of `ns1.Z` (AAAA without IPv4), a service's
//! IPv4 addresses, a static name's CNAME or its first record set.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
use hickory_proto::rr::{Name, RData, RecordType};
use lingjing_model::classify::Classifier;
use lingjing_model::{DnsSnapshot, NodeRole, RecordValue, Snapshot};

use crate::scope::ScopeTable;
use crate::steer::{Client, Explanation, Family, FastMap, QuickAnswer, RegionTree, ServicePlan};

/// TTL of the SOA and NS records and of the name servers' addresses.
pub const ZONE_TTL: u32 = 3600;
/// The SOA `minimum`: how long resolvers cache NXDOMAIN and NODATA (RFC 2308).
pub const NEGATIVE_TTL: u32 = 30;
/// The label of the zone's name server.
pub const NS_LABEL: &str = "ns1";
/// The most CNAME records one answer holds when chasing static CNAMEs in the zone.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Client subnet length hashed for the weighted order, per family.
const HASH_LEN_V4: u8 = 24;
const HASH_LEN_V6: u8 = 56;

/// A client classified for steering (see [`Gslb::classify`]).
struct Classified<'a> {
    /// Classified by its ECS prefix (else by the packet's source address).
    by_ecs: bool,
    /// The address classified.
    addr: IpAddr,
    steer: Client<'a>,
}

/// The static records of a snapshot, ready to answer from.
#[derive(Default)]
struct StaticRecords {
    sets: HashMap<String, Vec<StaticSet>>,
    data: Vec<RData>,
    parents: HashSet<String>,
    tops: HashSet<String>,
}

impl StaticRecords {
    /// Records that cannot be served (a name a service holds, a value that does not
    /// parse, a second record set of the same name and type) are left out with a
    /// warning; the control plane refuses them, so this only guards against bad data.
    fn build(snapshot: &DnsSnapshot, zone: &str, services: &FastMap<String, ServicePlan>) -> Self {
        let mut out = StaticRecords::default();
        if zone.is_empty() {
            return out;
        }
        for record in &snapshot.records {
            let labels = record.owner_labels();
            let owner = labels.join(".");
            let taken = (labels.len() == 1 && (services.contains_key(&owner) || owner == NS_LABEL))
                || out.sets.get(&owner).is_some_and(|sets| {
                    sets.iter()
                        .any(|s| s.rtype.to_string() == record.rtype.as_str())
                });
            let values = match record.parse_values(zone) {
                Ok(v) if !taken => v,
                Ok(_) => {
                    tracing::warn!(record = %record.id, name = %owner, "static record clashes with another name; not served");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(record = %record.id, error = %e, "static record does not parse; not served");
                    continue;
                }
            };
            let mut set = StaticSet {
                rtype: RecordType::A,
                ttl: record.ttl.max(1),
                data: Vec::new(),
            };
            for value in values {
                let Some(rdata) = static_rdata(value) else {
                    continue;
                };
                set.rtype = rdata.record_type();
                set.data.push(out.data.len() as u32);
                out.data.push(rdata);
            }
            if set.data.is_empty() {
                continue;
            }
            if set.rtype == RecordType::CNAME && set.data.len() > 1 {
                tracing::warn!(record = %record.id, name = %owner, "a CNAME has more than one target; not served");
                continue;
            }
            for i in 1..labels.len() {
                out.parents.insert(labels[i..].join("."));
            }
            if let Some(top) = labels.last() {
                out.tops.insert(top.clone());
            }
            out.sets.entry(owner).or_default().push(set);
        }
        out
    }
}

/// The wire data of one static value; `None` for a name hickory will not take.
fn static_rdata(value: RecordValue) -> Option<RData> {
    Some(match value {
        RecordValue::A(a) => RData::A(A(a)),
        RecordValue::Aaaa(a) => RData::AAAA(AAAA(a)),
        RecordValue::Cname(n) => RData::CNAME(CNAME(Name::from_ascii(&n).ok()?)),
        RecordValue::Mx(pref, n) => RData::MX(MX::new(pref, Name::from_ascii(&n).ok()?)),
        RecordValue::Txt(text) => {
            // Character strings hold at most 255 bytes each; an empty text is one empty
            // string (RDATA may not be empty, RFC 1035 §3.3.14).
            let mut chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
            if chunks.is_empty() {
                chunks.push(b"");
            }
            RData::TXT(TXT::from_bytes(chunks))
        }
    })
}

/// Why a snapshot cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("zone `{0}` is not a valid domain name")]
    BadZone(String),
}

/// The client of a query, as the server sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// The packet's source address (a resolver, usually).
    pub addr: IpAddr,
    /// EDNS Client Subnet: the address (host bits zero) and source prefix length.
    pub ecs: Option<(IpAddr, u8)>,
}

/// The response code of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError,
    NxDomain,
    Refused,
}

impl From<Rcode> for hickory_proto::op::ResponseCode {
    fn from(rcode: Rcode) -> Self {
        match rcode {
            Rcode::NoError => Self::NoError,
            Rcode::NxDomain => Self::NXDomain,
            Rcode::Refused => Self::Refused,
        }
    }
}

/// The data of one answer record; the owner is the query name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rdata {
    /// An A or AAAA record.
    Addr(IpAddr),
    /// The zone's SOA (see [`Gslb::soa`]).
    Soa,
    /// The zone's NS record (`ns1.<zone>`).
    Ns,
    /// An operator's static record: its index in [`Gslb::static_rdata`].
    Static(u32),
}

/// What to answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub rcode: Rcode,
    /// Whether the name is in the zone (the AA bit).
    pub authoritative: bool,
    /// Answer records: TTL and data. The owner of each is the query name, or, after a
    /// static CNAME record, that CNAME's target (a chased chain, RFC 1034 §4.3.2).
    pub answers: Vec<(u32, Rdata)>,
    /// NXDOMAIN or NODATA: the SOA goes in the authority section.
    pub negative: bool,
    /// Addresses of `ns1.<zone>` for the additional section (with NS answers).
    pub glue: Vec<IpAddr>,
    /// The ECS scope prefix to echo (only when the query carried ECS).
    pub ecs_scope: Option<u8>,
    /// For service names: how the client was answered and why.
    pub explanation: Option<Box<Explanation>>,
    /// For service names: the site of each address answered, in answer order.
    pub sites: Vec<Arc<str>>,
    /// For service names: the client's line (`None`: on no line).
    pub line: Option<Arc<str>>,
}

impl Decision {
    fn new(rcode: Rcode, authoritative: bool) -> Self {
        Decision {
            rcode,
            authoritative,
            answers: Vec::new(),
            negative: false,
            glue: Vec::new(),
            ecs_scope: None,
            explanation: None,
            sites: Vec::new(),
            line: None,
        }
    }

    fn negative(rcode: Rcode) -> Self {
        Decision {
            negative: true,
            ..Decision::new(rcode, true)
        }
    }
}

/// [`Gslb::answer_quick`]'s decision: the fields of a [`Decision`] for the answers
/// most queries get, borrowed from the snapshot instead of allocated.
#[derive(Debug)]
pub(crate) struct QuickDecision<'g> {
    pub rcode: Rcode,
    pub authoritative: bool,
    pub negative: bool,
    pub ecs_scope: Option<u8>,
    /// The TTL of the addresses answered.
    pub ttl: u32,
    /// The addresses answered, with their sites.
    pub answer: QuickAnswer<'g>,
    pub line: Option<&'g Arc<str>>,
}

impl Default for QuickDecision<'_> {
    fn default() -> Self {
        QuickDecision {
            rcode: Rcode::NoError,
            authoritative: false,
            negative: false,
            ecs_scope: None,
            ttl: 0,
            answer: QuickAnswer::default(),
            line: None,
        }
    }
}

impl QuickDecision<'_> {
    /// Resets to a decision without records, as [`Decision::new`] or
    /// [`Decision::negative`].
    fn reset(&mut self, rcode: Rcode, authoritative: bool, negative: bool) {
        self.rcode = rcode;
        self.authoritative = authoritative;
        self.negative = negative;
        self.ecs_scope = None;
        self.ttl = 0;
        self.answer.clear();
        self.line = None;
    }
}

/// The SOA fields of the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoaFields {
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    pub minimum: u32,
}

/// Everything needed to answer queries for one snapshot version.
#[derive(Debug, Clone)]
pub struct Gslb {
    version: u64,
    /// The zone, lowercase, with the trailing dot; empty when there is none.
    zone: String,
    /// The zone's labels, lowercase.
    zone_labels: Vec<String>,
    classifier: Classifier,
    scopes: ScopeTable,
    regions: RegionTree,
    services: FastMap<String, ServicePlan>,
    ns_addrs: Vec<IpAddr>,
    /// Every line id of the snapshot, shared (metric labels without allocation).
    lines: FastMap<String, Arc<str>>,
    /// Static records by owner (relative to the zone, lowercase, `""` at the apex):
    /// type, TTL and the indexes of their data in `static_data`.
    statics: HashMap<String, Vec<StaticSet>>,
    static_data: Vec<RData>,
    /// Ancestors of static names under the zone (empty non-terminals).
    static_parents: HashSet<String>,
    /// The label next to the zone of every static name: a name whose label there is none
    /// of these is no static name (NXDOMAIN without building its owner string).
    static_tops: HashSet<String>,
}

/// One static record set: type, TTL and where its records' data are.
#[derive(Debug, Clone)]
struct StaticSet {
    rtype: RecordType,
    ttl: u32,
    data: Vec<u32>,
}

impl Default for Gslb {
    /// No zone: every query is refused (the state before the first snapshot).
    fn default() -> Self {
        Gslb {
            version: 0,
            zone: String::new(),
            zone_labels: Vec::new(),
            classifier: Classifier::default(),
            scopes: ScopeTable::default(),
            regions: RegionTree::default(),
            services: FastMap::default(),
            ns_addrs: Vec::new(),
            lines: FastMap::default(),
            statics: HashMap::new(),
            static_data: Vec::new(),
            static_parents: HashSet::new(),
            static_tops: HashSet::new(),
        }
    }
}

impl Gslb {
    /// Precomputes the answers' inputs from a snapshot.
    pub fn from_snapshot(snapshot: &Snapshot<DnsSnapshot>) -> Result<Self, BuildError> {
        Self::build(&snapshot.body, snapshot.version)
    }

    /// Precomputes the answers' inputs from the body of a snapshot of `version`.
    pub fn build(snapshot: &DnsSnapshot, version: u64) -> Result<Self, BuildError> {
        let zone = snapshot.zone.trim().to_ascii_lowercase();
        let zone = zone.trim_end_matches('.');
        let zone_labels: Vec<String> = if zone.is_empty() {
            Vec::new()
        } else {
            zone.split('.').map(str::to_owned).collect()
        };
        let valid = zone.len() <= 250
            && zone_labels.iter().all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(BuildError::BadZone(snapshot.zone.clone()));
        }
        let ns_addrs = snapshot
            .nodes
            .iter()
            .filter(|n| n.healthy && !n.node.drained && n.node.roles.contains(&NodeRole::Dns))
            .flat_map(|n| n.addresses.iter().copied())
            .collect();
        let mut plans = crate::steer::PlanCache::new();
        let services: FastMap<String, ServicePlan> = snapshot
            .services
            .iter()
            .map(|s| {
                (
                    s.id.to_ascii_lowercase(),
                    ServicePlan::build(s, snapshot, &mut plans),
                )
            })
            .collect();
        let zone_fqdn = if zone.is_empty() {
            String::new()
        } else {
            format!("{zone}.")
        };
        let statics = StaticRecords::build(snapshot, &zone_fqdn, &services);
        Ok(Gslb {
            version,
            zone: zone_fqdn,
            zone_labels,
            classifier: Classifier::from_prefixes(&snapshot.prefixes),
            scopes: ScopeTable::new(snapshot.prefixes.iter().map(|p| &p.cidr)),
            regions: RegionTree::build(snapshot),
            services,
            ns_addrs,
            lines: snapshot
                .lines
                .iter()
                .map(|l| l.id.as_str())
                .chain(snapshot.prefixes.iter().map(|p| p.line.as_str()))
                .map(|l| (l.to_owned(), Arc::from(l)))
                .collect(),
            statics: statics.sets,
            static_data: statics.data,
            static_parents: statics.parents,
            static_tops: statics.tops,
        })
    }

    /// The data of a static record (see [`Rdata::Static`]).
    pub fn static_rdata(&self, index: u32) -> Option<&RData> {
        self.static_data.get(index as usize)
    }

    /// The snapshot version this was built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The zone, lowercase with the trailing dot (`cdn.lingjing.test.`); empty when the
    /// snapshot has none.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The SOA: serial = the snapshot version (modulo 2^32, which serial number
    /// arithmetic tolerates), `minimum` = the negative TTL.
    pub fn soa(&self) -> SoaFields {
        SoaFields {
            serial: (self.version & u64::from(u32::MAX)) as u32,
            refresh: 3600,
            retry: 600,
            expire: 604_800,
            minimum: NEGATIVE_TTL,
        }
    }

    /// The answer for a name given as text (`demo.cdn.lingjing.test.`, any case, the
    /// final dot optional). See [`answer_labels`](Self::answer_labels).
    pub fn answer(&self, qname: &str, qtype: RecordType, client: &ClientInfo) -> Decision {
        let name = qname.strip_suffix('.').unwrap_or(qname);
        let labels: Vec<&[u8]> = if name.is_empty() {
            Vec::new()
        } else {
            name.split('.').map(str::as_bytes).collect()
        };
        self.answer_labels(&labels, qtype, client, false)
    }

    /// How `client` is answered for a service's name and why; `None` when `qname` is not
    /// a service name of the zone.
    pub fn explain(&self, qname: &str, family: Family, client: &ClientInfo) -> Option<Explanation> {
        let name = qname.strip_suffix('.').unwrap_or(qname);
        let labels: Vec<&[u8]> = name.split('.').map(str::as_bytes).collect();
        let qtype = match family {
            Family::V4 => RecordType::A,
            Family::V6 => RecordType::AAAA,
        };
        self.answer_labels(&labels, qtype, client, true)
            .explanation
            .map(|e| *e)
    }

    /// The answer for a name given as its labels (root excluded), compared without
    /// regard to ASCII case. With `explain`, service answers carry an [`Explanation`].
    pub fn answer_labels(
        &self,
        labels: &[&[u8]],
        qtype: RecordType,
        client: &ClientInfo,
        explain: bool,
    ) -> Decision {
        let Some(relative) = self.relative(labels) else {
            return Decision::new(Rcode::Refused, false);
        };
        let mut decision = self.decide(relative, qtype, client, explain);
        self.chase(&mut decision, qtype, client);
        // Answers not tailored to the client are valid for every client: scope 0.
        if client.ecs.is_some() && decision.ecs_scope.is_none() {
            decision.ecs_scope = Some(0);
        }
        decision
    }

    /// The labels of `labels` below the zone; `None` for a name outside it (or no zone).
    fn relative<'l>(&self, labels: &'l [&'l [u8]]) -> Option<&'l [&'l [u8]]> {
        let z = self.zone_labels.len();
        let r = labels.len().checked_sub(z)?;
        let (relative, zone) = labels.split_at(r);
        let in_zone = !self.zone.is_empty()
            && zone
                .iter()
                .zip(&self.zone_labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b.as_bytes()));
        in_zone.then_some(relative)
    }

    /// The decision for a name in the zone given by its labels below the zone, before
    /// any CNAME is chased.
    fn decide(
        &self,
        relative: &[&[u8]],
        qtype: RecordType,
        client: &ClientInfo,
        explain: bool,
    ) -> Decision {
        match relative {
            [] => self.with_statics(self.apex(qtype), "", qtype),
            [label] if label.eq_ignore_ascii_case(NS_LABEL.as_bytes()) => self.name_server(qtype),
            [label] => match std::str::from_utf8(label)
                .ok()
                .and_then(|l| self.services.get(&l.to_ascii_lowercase()))
            {
                Some(plan) => self.service(plan, qtype, client, explain),
                None => self.static_name(relative, qtype),
            },
            relative => self.static_name(relative, qtype),
        }
    }

    /// The static CNAME that `decision` ends with: its index and target.
    fn last_cname<'s>(&'s self, decision: &Decision) -> Option<(u32, &'s Name)> {
        match decision.answers.last() {
            Some(&(_, Rdata::Static(i))) => match self.static_rdata(i) {
                Some(RData::CNAME(CNAME(target))) => Some((i, target)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Chases the static CNAME a decision ends with into the zone (RFC 1034 §4.3.2
    /// step 3a): the target's decision (a static name, a service steered for `client`,
    /// the apex or the name server) is appended, its response code, negative flag,
    /// glue, ECS scope, sites and line replace the alias's (RFC 6604: the last name's
    /// code). Stops at a target outside the zone, at [`MAX_CNAME_CHAIN`] CNAMEs, and
    /// before a CNAME already in the answer (a cycle). Not for CNAME or ANY questions,
    /// which the CNAME itself answers.
    fn chase(&self, decision: &mut Decision, qtype: RecordType, client: &ClientInfo) {
        if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
            return;
        }
        let mut chain: Vec<u32> = Vec::new();
        while let Some((index, target)) = self.last_cname(decision) {
            chain.push(index);
            let labels: Vec<&[u8]> = target.iter().collect();
            let Some(relative) = self.relative(&labels) else {
                return;
            };
            let next = self.decide(relative, qtype, client, false);
            let next_cname = self.last_cname(&next).map(|(j, _)| j);
            if next_cname.is_some_and(|j| chain.contains(&j) || chain.len() >= MAX_CNAME_CHAIN) {
                return;
            }
            decision.answers.extend(next.answers);
            decision.rcode = next.rcode;
            decision.negative = next.negative;
            decision.glue.extend(next.glue);
            decision.ecs_scope = next.ecs_scope;
            decision.sites.extend(next.sites);
            decision.line = next.line;
            if next_cname.is_none() {
                return;
            }
        }
    }

    /// [`answer_labels`](Self::answer_labels) without explanation and without
    /// allocating, for the names most queries ask: names outside the zone, service
    /// names, and other names below the zone when there are no static records.
    /// `false` for the rest (the apex, the name server, static records, a service whose
    /// steering set is large), which `answer_labels` answers; otherwise `out` holds
    /// what `answer_labels` decides.
    pub(crate) fn answer_quick<'g>(
        &'g self,
        labels: &[&[u8]],
        qtype: RecordType,
        client: &ClientInfo,
        out: &mut QuickDecision<'g>,
    ) -> bool {
        let z = self.zone_labels.len();
        let relative = labels.len().checked_sub(z).and_then(|r| {
            let (relative, zone) = labels.split_at(r);
            let in_zone = zone
                .iter()
                .zip(&self.zone_labels)
                .all(|(a, b)| a.eq_ignore_ascii_case(b.as_bytes()));
            in_zone.then_some(relative)
        });
        let relative = match relative {
            Some(r) if !self.zone.is_empty() => r,
            _ => {
                out.reset(Rcode::Refused, false, false);
                return true;
            }
        };
        match relative {
            [] => return false,
            [label] if label.eq_ignore_ascii_case(NS_LABEL.as_bytes()) => return false,
            [label] => match self.plan_of(label) {
                Ok(Some(plan)) => {
                    if !self.service_quick(plan, qtype, client, out) {
                        return false;
                    }
                }
                Ok(None) if !self.static_top(label) => out.reset(Rcode::NxDomain, true, true),
                _ => return false,
            },
            [.., top] if !self.static_top(top) => out.reset(Rcode::NxDomain, true, true),
            _ => return false,
        }
        // Answers not tailored to the client are valid for every client: scope 0.
        if client.ecs.is_some() && out.ecs_scope.is_none() {
            out.ecs_scope = Some(0);
        }
        true
    }

    /// The plan of the service named by `label` (any case), without allocating; `Err`
    /// for a label too long to look up this way.
    /// Whether `label` (any case) is the label next to the zone of a static name.
    fn static_top(&self, label: &[u8]) -> bool {
        if self.static_tops.is_empty() {
            return false;
        }
        let mut lower = [0u8; 63];
        let Some(lower) = lower.get_mut(..label.len()) else {
            return false;
        };
        lower.copy_from_slice(label);
        lower.make_ascii_lowercase();
        std::str::from_utf8(lower).is_ok_and(|l| self.static_tops.contains(l))
    }

    fn plan_of(&self, label: &[u8]) -> Result<Option<&ServicePlan>, ()> {
        let mut lower = [0u8; 63];
        let lower = lower.get_mut(..label.len()).ok_or(())?;
        lower.copy_from_slice(label);
        lower.make_ascii_lowercase();
        Ok(std::str::from_utf8(lower)
            .ok()
            .and_then(|l| self.services.get(l)))
    }

    /// [`service`](Self::service) for [`answer_quick`](Self::answer_quick).
    fn service_quick<'g>(
        &'g self,
        plan: &'g ServicePlan,
        qtype: RecordType,
        client: &ClientInfo,
        out: &mut QuickDecision<'g>,
    ) -> bool {
        let family = match qtype {
            RecordType::A | RecordType::ANY => Family::V4,
            RecordType::AAAA => Family::V6,
            _ => {
                out.reset(Rcode::NoError, true, true);
                return true;
            }
        };
        let Classified {
            steer: steer_client,
            ..
        } = self.classify(client);
        let line = match steer_client.line {
            Some(l) => match self.lines.get(l) {
                Some(shared) => Some(shared),
                None => return false,
            },
            None => None,
        };
        if !plan.steer_quick(&self.regions, family, &steer_client, &mut out.answer) {
            return false;
        }
        let empty = out.answer.is_empty();
        out.rcode = Rcode::NoError;
        out.authoritative = true;
        out.negative = empty;
        out.ttl = if empty { 0 } else { plan.policy.ttl.max(1) };
        out.line = line;
        out.ecs_scope = self.ecs_scope(client, &steer_client, out.answer.hashed);
        true
    }

    /// The client as steering sees it: classified by its ECS prefix (unless /0) or else
    /// its source address, keyed for the weighted order on its subnet.
    fn classify(&self, client: &ClientInfo) -> Classified<'_> {
        // ECS with a /0 source means "do not tailor on my address": the resolver's
        // source address is used and the answer is for everyone (scope 0).
        let ecs = client.ecs.filter(|(_, len)| *len > 0);
        let addr = ecs.map_or(client.addr, |(a, _)| a);
        let hash_len = match addr {
            IpAddr::V4(_) => HASH_LEN_V4,
            IpAddr::V6(_) => HASH_LEN_V6,
        };
        let hash_len = ecs.map_or(hash_len, |(_, len)| len.min(hash_len));
        let class = self.classifier.classify(addr);
        Classified {
            by_ecs: ecs.is_some(),
            addr,
            steer: Client {
                line: class.map(|c| c.line),
                region: class.and_then(|c| c.region),
                hash_key: (truncate(addr, hash_len), hash_len),
            },
        }
    }

    /// The ECS scope to echo for an answer steered for `steer` (`None` without ECS): the
    /// matching line prefix's length, at least the hashed subnet's when the weighted
    /// order decided; 0 when the answer does not depend on the client.
    fn ecs_scope(&self, client: &ClientInfo, steer: &Client<'_>, hashed: bool) -> Option<u8> {
        let ecs = client.ecs?;
        if ecs.1 == 0 {
            return Some(0);
        }
        let scope = self.scopes.scope(ecs.0);
        let hash_len = steer.hash_key.1;
        Some(if hashed { scope.max(hash_len) } else { scope })
    }

    /// A name that is neither the apex, the name server nor a service: its static
    /// records, NODATA for an ancestor of one, else NXDOMAIN.
    fn static_name(&self, relative: &[&[u8]], qtype: RecordType) -> Decision {
        if self.statics.is_empty() {
            return Decision::negative(Rcode::NxDomain);
        }
        let mut owner = String::new();
        for (i, label) in relative.iter().enumerate() {
            // A label holding a dot (`a\.b` on the wire) is no static name's label.
            if label.contains(&b'.') {
                return Decision::negative(Rcode::NxDomain);
            }
            if i > 0 {
                owner.push('.');
            }
            match std::str::from_utf8(label) {
                Ok(l) => owner.push_str(&l.to_ascii_lowercase()),
                Err(_) => return Decision::negative(Rcode::NxDomain),
            }
        }
        if self.statics.contains_key(&owner) {
            self.with_statics(Decision::negative(Rcode::NoError), &owner, qtype)
        } else if self.static_parents.contains(&owner) {
            Decision::negative(Rcode::NoError)
        } else {
            Decision::negative(Rcode::NxDomain)
        }
    }

    /// Adds the static records of `owner` that answer `qtype` to `decision` (a NODATA
    /// decision becomes an answer when any do).
    fn with_statics(&self, mut decision: Decision, owner: &str, qtype: RecordType) -> Decision {
        let Some(sets) = self.statics.get(owner) else {
            return decision;
        };
        // ANY (RFC 8482): one RRset, none when the name already answers with one (the
        // apex's SOA).
        if qtype == RecordType::ANY && !decision.answers.is_empty() {
            return decision;
        }
        let cname = sets.iter().find(|s| s.rtype == RecordType::CNAME);
        let set = match cname {
            Some(c) if qtype != RecordType::CNAME => Some(c),
            _ => sets
                .iter()
                .find(|s| qtype == RecordType::ANY || s.rtype == qtype),
        };
        if let Some(set) = set {
            decision
                .answers
                .extend(set.data.iter().map(|i| (set.ttl, Rdata::Static(*i))));
        }
        if !decision.answers.is_empty() {
            decision.negative = false;
            decision.rcode = Rcode::NoError;
        }
        decision
    }

    fn apex(&self, qtype: RecordType) -> Decision {
        let answers: Vec<(u32, Rdata)> = match qtype {
            RecordType::SOA => vec![(ZONE_TTL, Rdata::Soa)],
            RecordType::NS => vec![(ZONE_TTL, Rdata::Ns)],
            // RFC 8482: one RRset, not every one the name has.
            RecordType::ANY => vec![(ZONE_TTL, Rdata::Soa)],
            _ => Vec::new(),
        };
        if answers.is_empty() {
            return Decision::negative(Rcode::NoError);
        }
        let glue = if answers.iter().any(|(_, r)| *r == Rdata::Ns) {
            self.ns_addrs.clone()
        } else {
            Vec::new()
        };
        Decision {
            answers,
            glue,
            ..Decision::new(Rcode::NoError, true)
        }
    }

    fn name_server(&self, qtype: RecordType) -> Decision {
        // ANY (RFC 8482): one RRset, the A set unless there is none.
        let any_v4 = self.ns_addrs.iter().any(IpAddr::is_ipv4);
        let want = |a: &IpAddr| match qtype {
            RecordType::A => a.is_ipv4(),
            RecordType::AAAA => a.is_ipv6(),
            RecordType::ANY => a.is_ipv4() == any_v4,
            _ => false,
        };
        let answers: Vec<(u32, Rdata)> = self
            .ns_addrs
            .iter()
            .filter(|a| want(a))
            .map(|a| (ZONE_TTL, Rdata::Addr(*a)))
            .collect();
        if answers.is_empty() {
            return Decision::negative(Rcode::NoError);
        }
        Decision {
            answers,
            ..Decision::new(Rcode::NoError, true)
        }
    }

    fn service(
        &self,
        plan: &ServicePlan,
        qtype: RecordType,
        client: &ClientInfo,
        explain: bool,
    ) -> Decision {
        let family = match qtype {
            RecordType::A | RecordType::ANY => Family::V4,
            RecordType::AAAA => Family::V6,
            _ => return Decision::negative(Rcode::NoError),
        };
        let Classified {
            by_ecs,
            addr,
            steer: steer_client,
        } = self.classify(client);
        let classified_by = if by_ecs { "ecs" } else { "source address" };
        let steered = plan.steer(&self.regions, family, &steer_client, explain);
        let ecs_scope = self.ecs_scope(client, &steer_client, steered.hashed);
        let ttl = plan.policy.ttl.max(1);
        let explanation = explain.then(|| {
            Box::new(Explanation {
                service: plan.id.clone(),
                family,
                client: addr,
                classified_by,
                line: steer_client.line.map(str::to_owned),
                region: steer_client.region.map(str::to_owned),
                rule_text: steered.rule.to_string(),
                rule: steered.rule.clone(),
                candidates: steered.candidates.clone(),
                answer: steered.answer.clone(),
                ttl,
                ecs_scope,
                snapshot_version: self.version,
            })
        });
        let line = steer_client
            .line
            .map(|l| self.lines.get(l).cloned().unwrap_or_else(|| Arc::from(l)));
        if steered.answer.is_empty() {
            return Decision {
                ecs_scope,
                explanation,
                line,
                ..Decision::negative(Rcode::NoError)
            };
        }
        Decision {
            answers: steered
                .answer
                .iter()
                .map(|a| (ttl, Rdata::Addr(*a)))
                .collect(),
            ecs_scope,
            explanation,
            sites: steered.sites,
            line,
            ..Decision::new(Rcode::NoError, true)
        }
    }
}

/// `addr` with all bits past the first `len` cleared.
pub(crate) fn truncate(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let len = u32::from(len.min(32));
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let len = u32::from(len.min(128));
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_addresses() {
        assert_eq!(
            truncate("198.51.100.77".parse().unwrap(), 26),
            "198.51.100.64".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            truncate("198.51.100.77".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            truncate("2001:db8::1".parse().unwrap(), 128),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn no_zone_refuses_everything() {
        let g = Gslb::default();
        let client = ClientInfo {
            addr: "192.0.2.1".parse().unwrap(),
            ecs: None,
        };
        assert_eq!(
            g.answer(".", RecordType::SOA, &client).rcode,
            Rcode::Refused
        );
        assert_eq!(
            g.answer("a.example.", RecordType::A, &client).rcode,
            Rcode::Refused
        );
    }

    #[test]
    fn refuses_a_bad_zone() {
        let snap = DnsSnapshot {
            zone: "bad zone.".into(),
            ..DnsSnapshot::default()
        };
        assert!(Gslb::build(&snap, 1).is_err());
    }
}
