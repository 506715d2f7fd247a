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
    chains: HashMap<String, Vec<(String, RegionLevel)>>,
}

impl RegionTree {
    pub fn build(snapshot: &DnsSnapshot) -> Self {
        let by_id: HashMap<&str, _> = snapshot
            .regions
            .iter()
            .map(|r| (r.id.as_str(), r))
            .collect();
        let mut chains = HashMap::new();
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
        let (Some(client), Some(site)) = (client, site) else {
            return Nearness::Elsewhere;
        };
        let (Some(c), Some(s)) = (self.chains.get(client), self.chains.get(site)) else {
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
    edge: Vec<NodePlan>,
    fallback: Vec<NodePlan>,
}

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
    pub fn build(service: &lingjing_model::Service, snapshot: &DnsSnapshot) -> Self {
        let policy = &service.steering;
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
        ServicePlan {
            id: service.id.clone(),
            policy: policy.clone(),
            edge,
            fallback,
        }
    }

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
                .fallback
                .iter()
                .filter(|n| n.has_room(family))
                .collect();
            if !set.is_empty() {
                chosen = Some((set, Chosen::FallbackSites));
            }
        }
        if chosen.is_none() {
            let mut set: Vec<&NodePlan> = self.edge.iter().filter(|n| n.has_room(family)).collect();
            if set.is_empty() {
                // Every usable node is over its share: still answer rather than nothing.
                set = self.edge.iter().filter(|n| n.usable(family)).collect();
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
                // The site's weight, shared among its nodes by capacity (equally when
                // any node's capacity is unknown).
                let share = if capacity > 0 && n.capacity_mbps > 0 {
                    n.capacity_mbps as f64 / capacity as f64
                } else {
                    1.0 / count as f64
                };
                let w = f64::from(n.weight) * share;
                let key = if w > 0.0 {
                    -unit_hash(client.hash_key, &n.id).ln() / w
                } else {
                    f64::INFINITY
                };
                (near, key, *n)
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
        self.edge
            .iter()
            .map(|n| view(n, "edge"))
            .chain(self.fallback.iter().map(|n| view(n, "fallback")))
            .collect()
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
    fn unit_hash_is_in_range_and_stable() {
        let key = ("198.51.100.0".parse().unwrap(), 24);
        let a = unit_hash(key, "wuxi-1-e1");
        assert!(a > 0.0 && a <= 1.0);
        assert_eq!(a, unit_hash(key, "wuxi-1-e1"));
        assert_ne!(a, unit_hash(key, "suqian-1-e1"));
    }
}
