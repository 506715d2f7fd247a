//! The rules in force on this node, compiled for the request path: the snapshot's rules
//! (manual and fleet-wide detected ones) and this node's own detections, per service and
//! for every service; swapped whole (`ArcSwap`) when either changes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use lingjing_model::defence::{DefenceMode, DefenceRule, RuleAction, RuleMatch, RuleOrigin};

/// One rule, ready to match.
#[derive(Debug)]
pub struct Compiled {
    pub id: Arc<str>,
    pub action: RuleAction,
    pub mode: DefenceMode,
    /// Requests per second per client (`limit`).
    pub rate: u32,
    /// Its counters' key in the limit tables.
    pub key: u32,
    /// Made from a detection (here or fleet-wide): refused with 429 and `Retry-After`,
    /// not 403.
    pub detected: bool,
    /// Single addresses among its sources (looked up by hash).
    hosts: HashSet<IpAddr>,
    /// Its other sources (prefixes).
    nets: Vec<IpNet>,
    /// Conditions besides the source.
    rest: RuleMatch,
    any_source: bool,
    pub expires_ms: Option<u64>,
}

impl Compiled {
    fn new(id: Arc<str>, action: RuleAction, mode: DefenceMode, m: &RuleMatch, key: u32) -> Self {
        let mut hosts = HashSet::new();
        let mut nets = Vec::new();
        for s in &m.sources {
            if s.prefix_len() == s.max_prefix_len() {
                hosts.insert(s.addr());
            } else {
                nets.push(*s);
            }
        }
        Compiled {
            id,
            action,
            mode,
            rate: 0,
            key,
            detected: false,
            hosts,
            nets,
            rest: RuleMatch {
                sources: Vec::new(),
                ..m.clone()
            },
            any_source: m.sources.is_empty(),
            expires_ms: None,
        }
    }

    pub fn source_matches(&self, addr: IpAddr) -> bool {
        self.any_source || self.hosts.contains(&addr) || self.nets.iter().any(|n| n.contains(&addr))
    }

    /// Whether only the source is matched on (so it can be applied at accept).
    pub fn source_only(&self) -> bool {
        self.rest.source_only()
    }

    pub fn request_matches(&self, req: &http::request::Parts) -> bool {
        if self.rest.source_only() {
            return true;
        }
        let header = |name: &str| {
            req.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let ua = req
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        self.rest
            .matches_request(req.method.as_str(), req.uri.path(), header, ua)
    }

    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| e > now_ms)
    }
}

/// The rules of one service (or of every service).
#[derive(Debug, Default)]
pub struct RuleSet {
    pub allow: Vec<Compiled>,
    pub block: Vec<Compiled>,
    pub limit: Vec<Compiled>,
}

impl RuleSet {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.block.is_empty() && self.limit.is_empty()
    }

    fn push(&mut self, c: Compiled) {
        match c.action {
            RuleAction::Allow => self.allow.push(c),
            RuleAction::Block => self.block.push(c),
            RuleAction::Limit => self.limit.push(c),
        }
    }
}

/// Everything in force.
#[derive(Debug, Default)]
pub struct Plan {
    /// Rules for every service.
    pub global: RuleSet,
    /// Per service id.
    pub services: HashMap<String, RuleSet>,
}

/// This node's own detections for one service: sources refused until a time.
#[derive(Debug, Clone, Default)]
pub struct LocalBlocks {
    pub mode: DefenceMode,
    /// Source -> refused until (ms since the epoch).
    pub sources: HashMap<IpNet, u64>,
}

impl Plan {
    /// Compiles the snapshot's `rules` and this node's `local` detections (per service).
    pub fn build(rules: &[DefenceRule], local: &HashMap<String, LocalBlocks>, now_ms: u64) -> Plan {
        let mut plan = Plan::default();
        for (i, r) in rules.iter().enumerate() {
            if !r.live(now_ms) {
                continue;
            }
            let mut c = Compiled::new(
                Arc::from(r.id.as_str()),
                r.spec.action,
                r.spec.mode,
                &r.spec.matches,
                u32::try_from(i).unwrap_or(u32::MAX),
            );
            c.rate = r.spec.rate.unwrap_or(0);
            c.expires_ms = r.expires_ms;
            c.detected = matches!(r.origin, RuleOrigin::Detected { .. });
            match &r.spec.service {
                Some(s) => plan.services.entry(s.clone()).or_default().push(c),
                None => plan.global.push(c),
            }
        }
        for (service, blocks) in local {
            let live: Vec<IpNet> = blocks
                .sources
                .iter()
                .filter(|(_, until)| **until > now_ms)
                .map(|(s, _)| *s)
                .collect();
            if live.is_empty() {
                continue;
            }
            let until = blocks.sources.values().copied().max();
            let m = RuleMatch {
                sources: live,
                ..RuleMatch::default()
            };
            let mut c = Compiled::new(
                Arc::from("detected-here"),
                RuleAction::Block,
                blocks.mode,
                &m,
                u32::MAX,
            );
            c.expires_ms = until;
            c.detected = true;
            plan.services.entry(service.clone()).or_default().push(c);
        }
        plan.services.retain(|_, set| !set.is_empty());
        plan
    }

    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.services.is_empty()
    }

    /// Whether `addr` is refused for every service by an enforced rule on the source
    /// alone (and no allow rule lets it in): its connections are closed at accept.
    pub fn blocked_at_accept(&self, addr: IpAddr, now_ms: u64) -> bool {
        let g = &self.global;
        if g.allow
            .iter()
            .any(|r| r.live(now_ms) && r.source_matches(addr))
        {
            return false;
        }
        g.block.iter().any(|r| {
            r.mode == DefenceMode::Enforce
                && r.source_only()
                && !r.any_source
                && r.live(now_ms)
                && r.source_matches(addr)
        })
    }
}
