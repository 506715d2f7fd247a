//! Steering: which nodes answer a service's name for one client, and why.
//!
//! Per service, [`ServicePlan::build`] precomputes once per snapshot the nodes that may
//! serve it (the "edge pool": nodes with the `edge` role at the sites the policy allows)
//! and the nodes of its fallback sites, each with the reason it is out of play if it is
//! (unhealthy, drained, ...). Per query, [`ServicePlan::steer`] picks the set to answer
//! from, in this order, the first that has a usable node of the asked address family:
//!
//! 1. nodes on the client's line (their site lists the line);
//! 2. nodes on the policy's fallback lines, one line at a time, in order;
//! 3. nodes of the policy's fallback sites (edge or parent role, any line);
//! 4. any usable node of the edge pool, so the answer is never empty while a healthy
//!    node can serve the service.
//!
//! A node at or above the policy's `max_load_percent` of its capacity (its
//! `load_percent` in the snapshot) is skipped in steps 1-3 and preferred against in step
//! 4: only when every usable node is over its share does an overloaded node answer.
//!
//! Within the set, nodes are ordered by nearness of their site's region to the client's
//! region (same county, city, province, country, elsewhere), and among equally near
//! nodes by a weighted order that is deterministic per client subnet (a hash of the
//! client's /24 or /56, or of its ECS prefix when shorter): a given client keeps its
//! answer, while clients as a whole spread across sites in proportion to the policy's
//! `site_weights` (and, inside a site, to the nodes' capacities). The first
//! `answer_count` nodes answer, each with its address on the chosen line when it has
//! addresses on several lines.
//!
//! `ServicePlan::steer` is the reference and explains itself; `ServicePlan::steer_quick`
//! makes the same choice for the query path without allocating (the chosen set on the
//! stack), for sets of up to `QUICK_SET` nodes.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use lingjing_model::{DnsSnapshot, NodeRole, RegionLevel, SteeringPolicy};
use serde::Serialize;

/// An address family, as asked by an A or AAAA query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Family {
    /// IPv4 (A records).
    #[serde(rename = "A")]
    V4,
    /// IPv6 (AAAA records).
    #[serde(rename = "AAAA")]
    V6,
}

impl Family {
    fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// How near a node's site is to the client, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Nearness {
    SameCounty,
    SameCity,
    SameProvince,
    SameCountry,
    /// Nothing in common, or the client's region is unknown.
    Elsewhere,
}

impl fmt::Display for Nearness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Nearness::SameCounty => "same county",
            Nearness::SameCity => "same city",
            Nearness::SameProvince => "same province",
            Nearness::SameCountry => "same country",
            Nearness::Elsewhere => "elsewhere",
        })
    }
}

/// The rule that chose the set of nodes an answer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rule {
    /// Nodes on the client's own line; `nearness` of the first node answered.
    ClientLine { line: String, nearness: Nearness },
    /// Nothing on the client's line: the first fallback line with a usable node.
    FallbackLine { line: String, nearness: Nearness },
    /// Nothing on any of those lines: the policy's fallback sites.
    FallbackSites { nearness: Nearness },
    /// Last resort: any usable node that may serve the service.
    AnyHealthyNode { nearness: Nearness },
    /// No usable node of the asked family at all: an empty answer (NODATA).
    NoHealthyNode,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::ClientLine { line, nearness } => write!(f, "client line {line}, {nearness}"),
            Rule::FallbackLine { line, nearness } => {
                write!(f, "fallback line {line}, {nearness}")
            }
            Rule::FallbackSites { nearness } => write!(f, "fallback sites, {nearness}"),
            Rule::AnyHealthyNode { nearness } => write!(f, "any healthy node, {nearness}"),
            Rule::NoHealthyNode => f.write_str("no healthy node"),
        }
    }
}

/// One node as the explanation shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CandidateView {
    pub node: String,
    pub site: String,
    /// `edge` (may serve the service) or `fallback` (a node of a fallback site).
    pub pool: &'static str,
    pub addresses: Vec<IpAddr>,
    /// Nearness to the client, for nodes in the set the rule chose.
    pub nearness: Option<Nearness>,
    /// The site's weight from the policy.
    pub weight: u32,
    /// What happened to it: `answered`, `not answered: ...`, `dropped: ...`.
    pub verdict: String,
}

/// How a client is answered for a service and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub service: String,
    pub family: Family,
    /// The address the client was classified by (its ECS prefix or its source address).
    pub client: IpAddr,
    /// `ecs` or `source address`.
    pub classified_by: &'static str,
    pub line: Option<String>,
    pub region: Option<String>,
    /// The rule that chose, and its description.
    pub rule: Rule,
    pub rule_text: String,
    /// Every node considered, with its verdict.
    pub candidates: Vec<CandidateView>,
    pub answer: Vec<IpAddr>,
    pub ttl: u32,
    /// The ECS scope prefix returned, if the query carried ECS.
    pub ecs_scope: Option<u8>,
    pub snapshot_version: u64,
}

/// A client's classification, as steering needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client<'a> {
    pub line: Option<&'a str>,
    pub region: Option<&'a str>,
    /// The client subnet the weighted order is keyed on: address bits and length.
    pub hash_key: (IpAddr, u8),
}

/// A node of a service's plan.
#[derive(Debug, Clone)]
struct NodePlan {
    id: String,
    site: Arc<str>,
    /// The site's region.
    region: Option<String>,
    /// The lines the site is connected to.
    lines: Vec<String>,
    /// Addresses with the line of the pool each came from (if the pool has one).
    addrs: Vec<(IpAddr, Option<String>)>,
    /// The site's weight from the policy.
    weight: u32,
    capacity_mbps: u64,
    /// Its load share (percent of capacity) when that is at or above the policy's
    /// `max_load_percent`: skipped until it has room.
    overloaded: Option<u8>,
    /// Why the node may not answer, if it may not.
    dropped: Option<&'static str>,
}

impl NodePlan {
    fn usable(&self, family: Family) -> bool {
        self.dropped.is_none() && self.addrs.iter().any(|(a, _)| Family::of(a) == family)
    }

    /// The node's key in the weighted order for a client subnet (smaller first): an
    /// exponential variate of rate = the site's weight shared among its `count` nodes in
    /// the set by capacity (of `site_capacity` in all; equally when any node's capacity
    /// is unknown), so clients spread in proportion to the weights.
    fn order_key(&self, hash_key: (IpAddr, u8), count: usize, site_capacity: u64) -> f64 {
        let share = if site_capacity > 0 && self.capacity_mbps > 0 {
            self.capacity_mbps as f64 / site_capacity as f64
        } else {
            1.0 / count.max(1) as f64
        };
        let w = f64::from(self.weight) * share;
        if w > 0.0 {
            -unit_hash(hash_key, &self.id).ln() / w
        } else {
            f64::INFINITY
        }
    }

    /// Usable and under its capacity share.
    fn has_room(&self, family: Family) -> bool {
        self.overloaded.is_none() && self.usable(family)
    }

    /// The node's address of `family`, preferring one on `line`, then one on no line.
    fn address(&self, family: Family, line: Option<&str>) -> Option<IpAddr> {
        let of_family = || self.addrs.iter().filter(|(a, _)| Family::of(a) == family);
        of_family()
            .find(|(_, l)| line.is_some() && l.as_deref() == line)
            .or_else(|| of_family().find(|(_, l)| l.is_none()))
            .or_else(|| of_family().next())
            .map(|(a, _)| *a)
    }
}

/// Region ancestor chains: each region's id, then its parent's, up to the root, with
/// levels.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegionTree {
    chains: FastMap<String, Vec<(String, RegionLevel)>>,
}

impl RegionTree {
    pub fn build(snapshot: &DnsSnapshot) -> Self {
        let by_id: HashMap<&str, _> = snapshot
            .regions
            .iter()
            .map(|r| (r.id.as_str(), r))
            .collect();
        let mut chains = FastMap::default();
        for region in &snapshot.regions {
            let mut chain = Vec::new();
            let mut cur = Some(region);
            // A cycle in bad data ends the chain instead of looping.
            while let Some(r) = cur {
                if chain.len() > by_id.len() || chain.iter().any(|(id, _)| id == &r.id) {
                    break;
                }
                chain.push((r.id.clone(), r.level));
                cur = r.parent.as_deref().and_then(|p| by_id.get(p).copied());
            }
            chains.insert(region.id.clone(), chain);
        }
        RegionTree { chains }
    }

    /// How near a site in `site` is to a client in `client`.
    pub fn nearness(&self, client: Option<&str>, site: Option<&str>) -> Nearness {
        self.nearness_from(client, self.chain(client), site)
    }

    /// The ancestor chain of a region, when the snapshot has it.
    fn chain(&self, region: Option<&str>) -> Option<&[(String, RegionLevel)]> {
        region.and_then(|r| self.chains.get(r)).map(Vec::as_slice)
    }

    /// [`nearness`](Self::nearness), with the client's chain (`client_chain`) looked
    /// up by the caller once for many sites.
    fn nearness_from(
        &self,
        client: Option<&str>,
        client_chain: Option<&[(String, RegionLevel)]>,
        site: Option<&str>,
    ) -> Nearness {
        let (Some(client), Some(site)) = (client, site) else {
            return Nearness::Elsewhere;
        };
        let (Some(c), Some(s)) = (client_chain, self.chains.get(site)) else {
            return if client == site {
                Nearness::SameCity
            } else {
                Nearness::Elsewhere
            };
        };
        c.iter()
            .find(|(id, _)| s.iter().any(|(sid, _)| sid == id))
            .map_or(Nearness::Elsewhere, |(_, level)| match level {
                RegionLevel::County => Nearness::SameCounty,
                RegionLevel::City => Nearness::SameCity,
                RegionLevel::Province => Nearness::SameProvince,
                RegionLevel::Country => Nearness::SameCountry,
            })
    }
}

/// A service's steering, precomputed from one snapshot.
#[derive(Debug, Clone)]
pub(crate) struct ServicePlan {
    pub id: String,
    pub policy: SteeringPolicy,
    /// The nodes that may serve it; shared by every service whose policy picks them the
    /// same way (most use the default), so 10,000 services over 1,000 nodes hold a few
    /// node lists, not ten million.
    nodes: Arc<NodePlans>,
}

/// The edge nodes and the fallback nodes of a policy.
#[derive(Debug)]
pub(crate) struct NodePlans {
    edge: Vec<NodePlan>,
    fallback: Vec<NodePlan>,
}

/// What of a policy decides its [`NodePlans`] (the snapshot aside).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PlanKey {
    sites: Vec<String>,
    fallback_sites: Vec<String>,
    site_weights: Vec<(String, u32)>,
    max_load_percent: u8,
}

impl PlanKey {
    fn of(policy: &SteeringPolicy) -> PlanKey {
        PlanKey {
            sites: policy.sites.clone(),
            fallback_sites: policy.fallback_sites.clone(),
            site_weights: policy
                .site_weights
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            max_load_percent: policy.max_load_percent,
        }
    }
}

/// The node lists built so far for one snapshot, by policy.
pub(crate) type PlanCache = HashMap<PlanKey, Arc<NodePlans>>;

/// Which step of the steering order produced the set answered from.
#[derive(Debug, Clone, Copy)]
enum Chosen<'a> {
    ClientLine(&'a str),
    FallbackLine(&'a str),
    FallbackSites,
    Any,
}

/// What steering decided for one query.
#[derive(Debug, Clone)]
pub(crate) struct Steered {
    pub answer: Vec<IpAddr>,
    /// The site of each address of `answer`, in the same order.
    pub sites: Vec<Arc<str>>,
    /// Whether the client subnet's hash decided between candidates (so the answer is
    /// specific to the hashed subnet).
    pub hashed: bool,
    pub rule: Rule,
    pub candidates: Vec<CandidateView>,
}

impl ServicePlan {
    /// The plan of `service`, its node lists taken from `cache` when a service with the
    /// same policy built them already.
    pub fn build(
        service: &lingjing_model::Service,
        snapshot: &DnsSnapshot,
        cache: &mut PlanCache,
    ) -> Self {
        let nodes = cache
            .entry(PlanKey::of(&service.steering))
            .or_insert_with(|| Arc::new(NodePlans::build(&service.steering, snapshot)))
            .clone();
        ServicePlan {
            id: service.id.clone(),
            policy: service.steering.clone(),
            nodes,
        }
    }
}

impl NodePlans {
    fn build(policy: &SteeringPolicy, snapshot: &DnsSnapshot) -> Self {
        let sites: HashMap<&str, &lingjing_model::Site> =
            snapshot.sites.iter().map(|s| (s.id.as_str(), s)).collect();
        let plan_of = |info: &lingjing_model::NodeInfo, dropped: Option<&'static str>| {
            let node = &info.node;
            let site = sites.get(node.site.as_str());
            let addrs = info
                .addresses
                .iter()
                .map(|a| {
                    let line = snapshot
                        .pools
                        .iter()
                        .find(|p| p.site == node.site && p.cidr.contains(a))
                        .and_then(|p| p.line.clone());
                    (*a, line)
                })
                .collect();
            let dropped = dropped
                .or_else(|| site.is_none().then_some("unknown site"))
                .or_else(|| node.drained.then_some("drained"))
                .or_else(|| (!info.healthy).then_some("unhealthy"));
            NodePlan {
                id: node.id.clone(),
                site: Arc::from(node.site.as_str()),
                region: site.map(|s| s.region.clone()),
                lines: site.map(|s| s.lines.clone()).unwrap_or_default(),
                addrs,
                weight: policy.site_weights.get(&node.site).copied().unwrap_or(1),
                capacity_mbps: node.capacity_mbps,
                overloaded: (info.load_percent >= policy.max_load_percent)
                    .then_some(info.load_percent),
                dropped,
            }
        };
        let mut edge = Vec::new();
        let mut fallback = Vec::new();
        for info in &snapshot.nodes {
            let roles = &info.node.roles;
            if roles.contains(&NodeRole::Edge) {
                let allowed = policy.sites.is_empty() || policy.sites.contains(&info.node.site);
                edge.push(plan_of(
                    info,
                    (!allowed).then_some("site not allowed by the policy"),
                ));
            }
            if policy.fallback_sites.contains(&info.node.site)
                && (roles.contains(&NodeRole::Edge) || roles.contains(&NodeRole::Parent))
            {
                fallback.push(plan_of(info, None));
            }
        }
        NodePlans { edge, fallback }
    }
}

impl ServicePlan {
    /// Chooses the nodes answering `client` for addresses of `family`; with `explain`,
    /// also says what happened to every node.
    pub fn steer(
        &self,
        regions: &RegionTree,
        family: Family,
        client: &Client<'_>,
        explain: bool,
    ) -> Steered {
        let on_line = |line: &str| {
            let set: Vec<&NodePlan> = self
                .nodes
                .edge
                .iter()
                .filter(|n| n.has_room(family) && n.lines.iter().any(|l| l == line))
                .collect();
            (!set.is_empty()).then_some(set)
        };
        let mut chosen: Option<(Vec<&NodePlan>, Chosen<'_>)> = None;
        if let Some(line) = client.line
            && let Some(set) = on_line(line)
        {
            chosen = Some((set, Chosen::ClientLine(line)));
        }
        if chosen.is_none() {
            chosen = self
                .policy
                .fallback_lines
                .iter()
                .filter(|l| Some(l.as_str()) != client.line)
                .find_map(|l| on_line(l).map(|set| (set, Chosen::FallbackLine(l.as_str()))));
        }
        if chosen.is_none() {
            let set: Vec<&NodePlan> = self
                .nodes
                .fallback
                .iter()
                .filter(|n| n.has_room(family))
                .collect();
            if !set.is_empty() {
                chosen = Some((set, Chosen::FallbackSites));
            }
        }
        if chosen.is_none() {
            let mut set: Vec<&NodePlan> = self
                .nodes
                .edge
                .iter()
                .filter(|n| n.has_room(family))
                .collect();
            if set.is_empty() {
                // Every usable node is over its share: still answer rather than nothing.
                set = self
                    .nodes
                    .edge
                    .iter()
                    .filter(|n| n.usable(family))
                    .collect();
            }
            if !set.is_empty() {
                chosen = Some((set, Chosen::Any));
            }
        }
        let Some((set, how)) = chosen else {
            return Steered {
                answer: Vec::new(),
                sites: Vec::new(),
                hashed: false,
                rule: Rule::NoHealthyNode,
                candidates: if explain {
                    self.views(family, &[], &[], |_| None)
                } else {
                    Vec::new()
                },
            };
        };
        // The line whose addresses a multi-line node answers with.
        let addr_line = match how {
            Chosen::ClientLine(l) | Chosen::FallbackLine(l) => Some(l),
            Chosen::FallbackSites | Chosen::Any => client.line,
        };

        // Order: nearness first, then the weighted per-client order.
        let mut per_site: HashMap<&str, (usize, u64)> = HashMap::new();
        for n in &set {
            let e = per_site.entry(n.site.as_ref()).or_default();
            e.0 += 1;
            e.1 += n.capacity_mbps;
        }
        let mut ranked: Vec<(Nearness, f64, &NodePlan)> = set
            .iter()
            .map(|n| {
                let near = regions.nearness(client.region, n.region.as_deref());
                let (count, capacity) = per_site.get(n.site.as_ref()).copied().unwrap_or((1, 0));
                (near, n.order_key(client.hash_key, count, capacity), *n)
            })
            .collect();
        ranked.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then(a.1.total_cmp(&b.1))
                .then_with(|| a.2.id.cmp(&b.2.id))
        });
        let count = usize::from(self.policy.answer_count.max(1));
        let answered: Vec<&NodePlan> = ranked.iter().take(count).map(|r| r.2).collect();
        let mut answer: Vec<IpAddr> = Vec::with_capacity(answered.len());
        let mut sites: Vec<Arc<str>> = Vec::with_capacity(answered.len());
        for n in &answered {
            if let Some(a) = n.address(family, addr_line) {
                answer.push(a);
                sites.push(n.site.clone());
            }
        }
        let first_near = ranked.first().map_or(Nearness::Elsewhere, |r| r.0);
        let rule = match how {
            Chosen::ClientLine(line) => Rule::ClientLine {
                line: line.to_owned(),
                nearness: first_near,
            },
            Chosen::FallbackLine(line) => Rule::FallbackLine {
                line: line.to_owned(),
                nearness: first_near,
            },
            Chosen::FallbackSites => Rule::FallbackSites {
                nearness: first_near,
            },
            Chosen::Any => Rule::AnyHealthyNode {
                nearness: first_near,
            },
        };
        // The hash decided only if it split nodes of equal nearness at the cut.
        let hashed = ranked.len() > count
            && ranked
                .get(count)
                .zip(ranked.get(count - 1))
                .is_some_and(|(out, last)| out.0 == last.0);
        let candidates = if explain {
            let near_of = |id: &str| ranked.iter().find(|r| r.2.id == id).map(|r| r.0);
            self.views(family, &set, &answered, near_of)
        } else {
            Vec::new()
        };
        Steered {
            answer,
            sites,
            hashed,
            rule,
            candidates,
        }
    }

    /// [`steer`](Self::steer) for the query path: the same answer, without the
    /// explanation and without allocating; `false` (and `out` meaningless) when the
    /// set the rule chooses holds more than [`QUICK_SET`] nodes.
    pub fn steer_quick<'p>(
        &'p self,
        regions: &RegionTree,
        family: Family,
        client: &Client<'_>,
        out: &mut QuickAnswer<'p>,
    ) -> bool {
        out.len = 0;
        out.hashed = false;
        let mut set = QuickSet::default();
        let Some(addr_line) = self.choose_quick(family, client, &mut set) else {
            return false;
        };
        let nodes = set.nodes();
        if nodes.is_empty() {
            return true; // NODATA: no usable node at all
        }
        let client_chain = regions.chain(client.region);
        let mut ranked: [(Nearness, f64, usize); QUICK_SET] =
            [(Nearness::Elsewhere, 0.0, 0); QUICK_SET];
        for (i, n) in nodes.iter().enumerate() {
            // The site's weight, shared among its nodes in the set as `steer` does.
            let (count, capacity) = nodes
                .iter()
                .filter(|m| m.site == n.site)
                .fold((0usize, 0u64), |(c, cap), m| (c + 1, cap + m.capacity_mbps));
            let key = n.order_key(client.hash_key, count, capacity);
            let near = regions.nearness_from(client.region, client_chain, n.region.as_deref());
            if let Some(r) = ranked.get_mut(i) {
                *r = (near, key, i);
            }
        }
        let ranked = ranked.get_mut(..nodes.len()).unwrap_or_default();
        // At most QUICK_SET (16) elements: insertion sort, no allocation.
        ranked.sort_by(|a, b| {
            a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then_with(|| {
                let id = |i: usize| nodes.get(i).map(|n| n.id.as_str());
                id(a.2).cmp(&id(b.2))
            })
        });
        let count = usize::from(self.policy.answer_count.max(1));
        for (_, _, i) in ranked.iter().take(count) {
            let Some(n) = nodes.get(*i) else { continue };
            if let Some(a) = n.address(family, addr_line)
                && let Some(slot) = out.answer.get_mut(out.len)
            {
                *slot = Some((a, &n.site));
                out.len += 1;
            }
        }
        out.hashed = ranked.len() > count
            && ranked
                .get(count)
                .zip(ranked.get(count - 1))
                .is_some_and(|(out, last)| out.0 == last.0);
        true
    }

    /// The set [`steer`](Self::steer) chooses, into `set`; returns the line whose
    /// addresses multi-line nodes answer with. `None` when the set is too large.
    fn choose_quick<'p, 'c>(
        &'p self,
        family: Family,
        client: &Client<'c>,
        set: &mut QuickSet<'p>,
    ) -> Option<Option<&'c str>>
    where
        'p: 'c,
    {
        let on_line =
            |line: &str, n: &&NodePlan| n.has_room(family) && n.lines.iter().any(|l| l == line);
        if let Some(line) = client.line
            && set.fill(self.nodes.edge.iter().filter(|n| on_line(line, n)))?
        {
            return Some(Some(line));
        }
        for line in &self.policy.fallback_lines {
            if Some(line.as_str()) != client.line
                && set.fill(self.nodes.edge.iter().filter(|n| on_line(line, n)))?
            {
                return Some(Some(line.as_str()));
            }
        }
        if set.fill(self.nodes.fallback.iter().filter(|n| n.has_room(family)))?
            || set.fill(self.nodes.edge.iter().filter(|n| n.has_room(family)))?
            // Every usable node is over its share: still answer rather than nothing.
            || set.fill(self.nodes.edge.iter().filter(|n| n.usable(family)))?
        {
            return Some(client.line);
        }
        Some(None)
    }

    fn views(
        &self,
        family: Family,
        set: &[&NodePlan],
        answered: &[&NodePlan],
        near_of: impl Fn(&str) -> Option<Nearness>,
    ) -> Vec<CandidateView> {
        let view = |n: &NodePlan, pool: &'static str| {
            let in_set = set.iter().any(|s| std::ptr::eq(*s, n));
            let verdict = if answered.iter().any(|s| std::ptr::eq(*s, n)) {
                "answered".to_owned()
            } else if let Some(why) = n.dropped {
                format!("dropped: {why}")
            } else if !n.usable(family) {
                let f = match family {
                    Family::V4 => "IPv4",
                    Family::V6 => "IPv6",
                };
                format!("dropped: no {f} address")
            } else if let (Some(load), false) = (n.overloaded, in_set) {
                format!(
                    "skipped: at {load}% of capacity (policy max {}%)",
                    self.policy.max_load_percent
                )
            } else if in_set {
                "not answered: farther or lower in the weighted order".to_owned()
            } else {
                "not answered: not in the set the rule chose".to_owned()
            };
            CandidateView {
                node: n.id.clone(),
                site: n.site.to_string(),
                pool,
                addresses: n.addrs.iter().map(|(a, _)| *a).collect(),
                nearness: if in_set { near_of(&n.id) } else { None },
                weight: n.weight,
                verdict,
            }
        };
        self.nodes
            .edge
            .iter()
            .map(|n| view(n, "edge"))
            .chain(self.nodes.fallback.iter().map(|n| view(n, "fallback")))
            .collect()
    }
}

/// Chosen sets larger than this take the full [`ServicePlan::steer`].
pub(crate) const QUICK_SET: usize = 16;

/// The answer of [`ServicePlan::steer_quick`]: addresses with their nodes' sites, in
/// answer order.
#[derive(Debug)]
pub(crate) struct QuickAnswer<'p> {
    answer: [Option<(IpAddr, &'p Arc<str>)>; QUICK_SET],
    len: usize,
    /// As [`Steered::hashed`].
    pub hashed: bool,
}

impl Default for QuickAnswer<'_> {
    fn default() -> Self {
        QuickAnswer {
            answer: [None; QUICK_SET],
            len: 0,
            hashed: false,
        }
    }
}

impl<'p> QuickAnswer<'p> {
    /// The addresses answered and their sites.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &'p Arc<str>)> + '_ {
        self.answer.iter().take(self.len).flatten().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.hashed = false;
    }
}

/// The nodes of a chosen set, on the stack.
struct QuickSet<'p> {
    nodes: [Option<&'p NodePlan>; QUICK_SET],
    len: usize,
}

impl Default for QuickSet<'_> {
    fn default() -> Self {
        QuickSet {
            nodes: [None; QUICK_SET],
            len: 0,
        }
    }
}

impl<'p> QuickSet<'p> {
    /// Takes `nodes` as the set: `Some(true)` when there is any, `None` when there
    /// are more than [`QUICK_SET`].
    fn fill(&mut self, nodes: impl Iterator<Item = &'p NodePlan>) -> Option<bool> {
        self.len = 0;
        for n in nodes {
            *self.nodes.get_mut(self.len)? = Some(n);
            self.len += 1;
        }
        Some(self.len > 0)
    }

    fn nodes(&self) -> QuickNodes<'_, 'p> {
        QuickNodes(self.nodes.get(..self.len).unwrap_or_default())
    }
}

/// The nodes of a [`QuickSet`], by position.
#[derive(Clone, Copy)]
struct QuickNodes<'s, 'p>(&'s [Option<&'p NodePlan>]);

impl<'p> QuickNodes<'_, 'p> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, i: usize) -> Option<&'p NodePlan> {
        self.0.get(i).copied().flatten()
    }

    fn iter(&self) -> impl Iterator<Item = &'p NodePlan> + '_ {
        self.0.iter().copied().flatten()
    }
}

/// A map hashed with [`FastHash`].
pub(crate) type FastMap<K, V> = HashMap<K, V, FastHash>;

/// A quick, unkeyed hasher (FxHash's multiply-rotate over 8-byte words) for maps
/// whose keys come from the snapshot: queries only look keys up, so the keyed
/// SipHash's protection against crafted collisions buys nothing there.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = FxHasher;

    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            self.add(u64::from_le_bytes(word));
        }
        let rest = words.remainder();
        let mut word = [0u8; 8];
        if let Some(w) = word.get_mut(..rest.len()) {
            w.copy_from_slice(rest);
        }
        self.add(u64::from_le_bytes(word) ^ (rest.len() as u64) << 56);
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A number in (0, 1] from the client subnet and a node id, stable across processes
/// and versions (FNV-1a, then the SplitMix64 finaliser).
fn unit_hash(key: (IpAddr, u8), node: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match key.0 {
        IpAddr::V4(a) => eat(&a.octets()),
        IpAddr::V6(a) => eat(&a.octets()),
    }
    eat(&[key.1, 0xff]);
    eat(node.as_bytes());
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 11) as f64 + 1.0) / ((1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_with_the_same_policy_share_their_node_lists() {
        let service = |id: &str, sites: &[&str]| -> lingjing_model::Service {
            serde_json::from_value(serde_json::json!({
                "id": id, "tenant": "t", "hostnames": [], "origins": [],
                "steering": {"sites": sites},
            }))
            .expect("service")
        };
        let snapshot = DnsSnapshot::default();
        let mut cache = PlanCache::new();
        let a = ServicePlan::build(&service("a", &[]), &snapshot, &mut cache);
        let b = ServicePlan::build(&service("b", &[]), &snapshot, &mut cache);
        let c = ServicePlan::build(&service("c", &["wx-1"]), &snapshot, &mut cache);
        assert!(Arc::ptr_eq(&a.nodes, &b.nodes));
        assert!(!Arc::ptr_eq(&a.nodes, &c.nodes));
        assert_eq!(cache.len(), 2);
        assert_eq!((a.id.as_str(), c.policy.sites.len()), ("a", 1));
    }

    #[test]
    fn unit_hash_is_in_range_and_stable() {
        let key = ("198.51.100.0".parse().unwrap(), 24);
        let a = unit_hash(key, "wuxi-1-e1");
        assert!(a > 0.0 && a <= 1.0);
        assert_eq!(a, unit_hash(key, "wuxi-1-e1"));
        assert_ne!(a, unit_hash(key, "suqian-1-e1"));
    }
}
