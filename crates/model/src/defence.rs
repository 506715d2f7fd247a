//! Traffic defence: a service's detection settings (`DefenceSettings`), the rules edges
//! enforce (`DefenceRule`: manual or made by the control plane from a detection), what a
//! node reports of an attack (`DefenceReport`) and what the API shows of one
//! (`DefenceEvent`). Matching is pure and lives here so the control plane's checks and
//! the edge agree (`RuleMatch::matches`, `aggregate`).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError};

/// Most sources (addresses or prefixes) one rule names.
pub const MAX_RULE_SOURCES: usize = 1024;
/// Most methods one rule names.
pub const MAX_RULE_METHODS: usize = 16;
/// Longest path pattern, header value or user-agent fragment a rule matches on.
pub const MAX_MATCH_TEXT: usize = 1024;
/// Longest time to live of a rule (one year); a rule with none never expires.
pub const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;
/// Top sources an event or report keeps.
pub const MAX_TOP_SOURCES: usize = 16;
/// Reports one heartbeat carries at most.
pub const MAX_REPORTS: usize = 256;
/// Baseline samples one heartbeat carries at most.
pub const MAX_BASELINE_SAMPLES: usize = 10_000;

/// The prefix length traffic from an IPv4 address is aggregated to.
pub const V4_PREFIX: u8 = 24;
/// The prefix length traffic from an IPv6 address is aggregated to.
pub const V6_PREFIX: u8 = 48;

/// The /24 (IPv4) or /48 (IPv6) holding `addr`: the unit traffic is aggregated to when a
/// node's address table is full, and the second dimension detection watches.
pub fn aggregate(addr: IpAddr) -> IpNet {
    let len = match addr {
        IpAddr::V4(_) => V4_PREFIX,
        IpAddr::V6(_) => V6_PREFIX,
    };
    IpNet::new(addr, len)
        .map(|n| n.trunc())
        .unwrap_or_else(|_| IpNet::from(addr))
}

/// Whether a rule or a service's detection acts or only counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefenceMode {
    /// Count what would be refused, refuse nothing.
    Monitor,
    /// Refuse.
    #[default]
    Enforce,
}

/// A service's traffic defence. Every threshold is in requests per second over a one-second
/// window, on one edge node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefenceSettings {
    /// Whether detection runs for the service at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What automatic detection does: `enforce` refuses the sources it finds (here at
    /// once, on every node within seconds), `monitor` only reports them.
    #[serde(default)]
    pub mode: DefenceMode,
    /// One client address sending this many requests per second is an attacker.
    #[serde(default = "default_source_rps")]
    pub source_rps: u32,
    /// One /24 (IPv6: /48) sending this many is an attacking network.
    #[serde(default = "default_prefix_rps")]
    pub prefix_rps: u32,
    /// The service's whole rate above which the busiest sources are looked at together:
    /// when the top sources carry at least `concentration` of it, those of them above a
    /// fair share are refused; a crowd of many ordinary clients is left alone. 0: off
    /// (also when learning: a learned value replaces it only when it is set).
    #[serde(default)]
    pub service_rps: u32,
    /// The share (percent) of the service's traffic its ten busiest sources must carry
    /// for a surge to count as an attack from few sources.
    #[serde(default = "default_concentration")]
    pub concentration_percent: u8,
    /// How long a source found attacking stays refused, in seconds (extended while the
    /// attack goes on).
    #[serde(default = "default_block_seconds")]
    pub block_seconds: u32,
    /// Learn the thresholds from the service's own traffic: once `learn_min_minutes` of
    /// history exist, each threshold is the p95 of the per-minute maxima over the last
    /// `learn_window_days`, times `burst_percent` (never below the floors of
    /// [`LEARNED_FLOORS`]); until then the static ones above apply.
    #[serde(default = "default_true")]
    pub learn: bool,
    #[serde(default = "default_window_days")]
    pub learn_window_days: u16,
    #[serde(default = "default_min_minutes")]
    pub learn_min_minutes: u32,
    /// The burst factor on top of the learned p95, in percent (300: three times).
    #[serde(default = "default_burst_percent")]
    pub burst_percent: u16,
}

fn default_window_days() -> u16 {
    7
}
fn default_min_minutes() -> u32 {
    60
}
fn default_burst_percent() -> u16 {
    300
}

/// The lowest learned thresholds (requests per second: source, prefix, service): a quiet
/// service still lets a browser load a page at once.
pub const LEARNED_FLOORS: (u32, u32, u32) = (50, 200, 200);

/// The busiest second of each minute of a service on one node, reported with heartbeats;
/// the control plane keeps the maximum over nodes per minute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineSample {
    pub service: String,
    /// Start of the minute (ms since the epoch, a multiple of 60 000).
    pub minute_ms: u64,
    /// The service's busiest second.
    pub service_rps: u64,
    /// The busiest single address's busiest second.
    pub source_rps: u64,
    /// The busiest /24 (/48)'s busiest second.
    pub prefix_rps: u64,
}

/// Thresholds the control plane learned for a service, sent to edges in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnedThresholds {
    pub service: String,
    pub source_rps: u32,
    pub prefix_rps: u32,
    pub service_rps: u32,
    /// Minutes of history they come from.
    pub minutes: u32,
}

/// The p95 of `values` (nearest rank; 0 for none).
pub fn p95(values: &mut [u64]) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = (values.len() * 95).div_ceil(100).max(1);
    values[rank - 1]
}

/// Learned thresholds from per-minute maxima (`(service, source, prefix)` per minute),
/// with the burst factor and the floors; `None` below `min_minutes` of history.
pub fn learn(
    service: &str,
    minutes: &[(u64, u64, u64)],
    burst_percent: u16,
    min_minutes: u32,
) -> Option<LearnedThresholds> {
    if minutes.len() < min_minutes.max(1) as usize {
        return None;
    }
    let scale = |mut v: Vec<u64>, floor: u32| -> u32 {
        let learned = p95(&mut v).saturating_mul(u64::from(burst_percent)) / 100;
        u32::try_from(learned).unwrap_or(u32::MAX).max(floor)
    };
    let (fs, fp, fv) = LEARNED_FLOORS;
    Some(LearnedThresholds {
        service: service.to_owned(),
        service_rps: scale(minutes.iter().map(|m| m.0).collect(), fv),
        source_rps: scale(minutes.iter().map(|m| m.1).collect(), fs),
        prefix_rps: scale(minutes.iter().map(|m| m.2).collect(), fp),
        minutes: u32::try_from(minutes.len()).unwrap_or(u32::MAX),
    })
}

impl DefenceSettings {
    /// The thresholds in force: learned ones when the service learns and some exist,
    /// else the static ones.
    pub fn effective(&self, learned: Option<&LearnedThresholds>) -> DefenceSettings {
        match learned {
            Some(l) if self.learn => DefenceSettings {
                source_rps: l.source_rps,
                prefix_rps: l.prefix_rps,
                // The concentration test stays off unless the service turned it on.
                service_rps: if self.service_rps == 0 {
                    0
                } else {
                    l.service_rps
                },
                ..self.clone()
            },
            _ => self.clone(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_source_rps() -> u32 {
    200
}
fn default_prefix_rps() -> u32 {
    2000
}
fn default_concentration() -> u8 {
    50
}
fn default_block_seconds() -> u32 {
    300
}

impl Default for DefenceSettings {
    fn default() -> Self {
        DefenceSettings {
            enabled: true,
            mode: DefenceMode::Enforce,
            source_rps: default_source_rps(),
            prefix_rps: default_prefix_rps(),
            service_rps: 0,
            concentration_percent: default_concentration(),
            block_seconds: default_block_seconds(),
            learn: true,
            learn_window_days: default_window_days(),
            learn_min_minutes: default_min_minutes(),
            burst_percent: default_burst_percent(),
        }
    }
}

impl Validate for DefenceSettings {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.source_rps == 0 {
            return Err(ValidationError::new(
                "source_rps",
                "must be at least 1 (to stop detection, set `enabled` to false)",
            ));
        }
        if self.prefix_rps == 0 {
            return Err(ValidationError::new("prefix_rps", "must be at least 1"));
        }
        if !(1..=100).contains(&self.concentration_percent) {
            return Err(ValidationError::new(
                "concentration_percent",
                "must be 1 to 100",
            ));
        }
        if !(1..=30).contains(&self.learn_window_days) {
            return Err(ValidationError::new("learn_window_days", "1 to 30 days"));
        }
        if !(1..=43_200).contains(&self.learn_min_minutes) {
            return Err(ValidationError::new(
                "learn_min_minutes",
                "1 to 43200 minutes (30 days)",
            ));
        }
        if !(100..=10_000).contains(&self.burst_percent) {
            return Err(ValidationError::new(
                "burst_percent",
                "100 to 10000 (1x to 100x the learned p95)",
            ));
        }
        if !(1..=86_400).contains(&self.block_seconds) {
            return Err(ValidationError::new(
                "block_seconds",
                "must be 1 to 86400 (a day)",
            ));
        }
        Ok(())
    }
}

/// What a rule does to the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Never refused by any rule or by detection (the operator's monitoring).
    Allow,
    /// Refused: 403, and the connection closed.
    Block,
    /// At most `rate` requests per second per client address; past it 429 with
    /// `Retry-After`.
    Limit,
}

/// A header a rule matches on: the field is present and its value contains `contains`
/// (ASCII case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default)]
    pub contains: String,
}

/// Which requests a rule applies to: all of the given conditions hold (an empty one
/// holds for every request).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleMatch {
    /// Client addresses or prefixes (`192.0.2.7`, `198.51.100.0/24`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "sources"
    )]
    #[schema(value_type = Vec<String>)]
    pub sources: Vec<IpNet>,
    /// Request methods (`GET`, `POST`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Path pattern: a literal prefix, or with `*` wildcards (`/api/*/login`) matched
    /// against the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
    /// A fragment of the `User-Agent` (ASCII case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl RuleMatch {
    /// Whether the conditions other than the source hold for a request.
    pub fn matches_request(
        &self,
        method: &str,
        path: &str,
        header: impl Fn(&str) -> Option<String>,
        user_agent: Option<&str>,
    ) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return false;
        }
        if let Some(p) = &self.path
            && !path_matches(p, path)
        {
            return false;
        }
        if let Some(h) = &self.header {
            match header(&h.name) {
                Some(v) if contains_ignore_case(&v, &h.contains) => {}
                _ => return false,
            }
        }
        if let Some(ua) = &self.user_agent
            && !user_agent.is_some_and(|v| contains_ignore_case(v, ua))
        {
            return false;
        }
        true
    }

    /// Whether the rule names sources and `addr` is one of them (true when it names none).
    pub fn matches_source(&self, addr: IpAddr) -> bool {
        self.sources.is_empty() || self.sources.iter().any(|n| n.contains(&addr))
    }

    /// Whether only the source is matched on (so the rule can be checked at accept).
    pub fn source_only(&self) -> bool {
        self.methods.is_empty()
            && self.path.is_none()
            && self.header.is_none()
            && self.user_agent.is_none()
    }
}

/// A source as a rule names it: an address (`192.0.2.7`, as a /32 or /128) or a prefix
/// (`198.51.100.0/24`; bits past the prefix length are dropped).
pub fn parse_source(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("`{s}` is not an address or prefix (e.g. 192.0.2.7 or 198.51.100.0/24)")
    })
}

fn sources<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| parse_source(s).map_err(serde::de::Error::custom))
        .collect()
}

/// `pattern` against `path`: without `*` a prefix; with `*`, each `*` stands for any run
/// of characters and the whole path must match.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    if !pattern.contains('*') {
        return path.starts_with(pattern);
    }
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = path.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// A rule as an operator or tenant writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The service it applies to; none: every service (operator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub action: RuleAction,
    #[serde(default, rename = "match")]
    pub matches: RuleMatch,
    /// For `limit`: requests per second per client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    #[serde(default)]
    pub mode: DefenceMode,
    /// Seconds until the rule expires by itself; none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Validate for RuleSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(s) = &self.service {
            check_id("service", s)?;
        }
        let m = &self.matches;
        if m.sources.len() > MAX_RULE_SOURCES {
            return Err(ValidationError::new(
                "match.sources",
                format!("at most {MAX_RULE_SOURCES} sources per rule"),
            ));
        }
        if m.methods.len() > MAX_RULE_METHODS {
            return Err(ValidationError::new(
                "match.methods",
                format!("at most {MAX_RULE_METHODS} methods"),
            ));
        }
        for (i, method) in m.methods.iter().enumerate() {
            if method.is_empty()
                || method.len() > 32
                || !method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-')
            {
                return Err(ValidationError::new(
                    format!("match.methods[{i}]"),
                    "a method in capitals, e.g. GET or POST",
                ));
            }
        }
        if let Some(p) = &m.path
            && (!p.starts_with('/') && !p.starts_with('*') || p.len() > MAX_MATCH_TEXT)
        {
            return Err(ValidationError::new(
                "match.path",
                format!("a path pattern starting with `/` or `*`, at most {MAX_MATCH_TEXT} bytes"),
            ));
        }
        if let Some(h) = &m.header {
            if h.name.is_empty()
                || h.name.len() > 128
                || !h
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ValidationError::new(
                    "match.header.name",
                    "a header field name (letters, digits, `-`)",
                ));
            }
            if h.contains.len() > MAX_MATCH_TEXT {
                return Err(ValidationError::new(
                    "match.header.contains",
                    format!("at most {MAX_MATCH_TEXT} bytes"),
                ));
            }
        }
        if let Some(ua) = &m.user_agent
            && (ua.is_empty() || ua.len() > MAX_MATCH_TEXT)
        {
            return Err(ValidationError::new(
                "match.user_agent",
                format!("a non-empty fragment of at most {MAX_MATCH_TEXT} bytes"),
            ));
        }
        match (self.action, self.rate) {
            (RuleAction::Limit, None | Some(0)) => {
                return Err(ValidationError::new(
                    "rate",
                    "a `limit` rule needs a rate (requests per second per client, at least 1)",
                ));
            }
            (RuleAction::Allow | RuleAction::Block, Some(_)) => {
                return Err(ValidationError::new(
                    "rate",
                    "only a `limit` rule has a rate",
                ));
            }
            _ => {}
        }
        if self.action != RuleAction::Limit && m == &RuleMatch::default() {
            return Err(ValidationError::new(
                "match",
                "an allow or block rule must match on something (sources, methods, path, header or user agent)",
            ));
        }
        if let Some(ttl) = self.ttl_seconds
            && !(1..=MAX_TTL_SECONDS).contains(&ttl)
        {
            return Err(ValidationError::new(
                "ttl_seconds",
                format!(
                    "1 to {MAX_TTL_SECONDS} seconds (leave it out for a rule that never expires)"
                ),
            ));
        }
        if self.note.as_ref().is_some_and(|n| n.len() > 512) {
            return Err(ValidationError::new("note", "at most 512 bytes"));
        }
        Ok(())
    }
}

/// Who made a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleOrigin {
    /// An operator or tenant, through the API.
    Manual,
    /// The control plane, from an attack an edge node detected (the event's id).
    Detected { event: String },
}

/// A rule as stored, served by the API and sent to edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefenceRule {
    pub id: String,
    #[serde(flatten)]
    pub spec: RuleSpec,
    /// The tenant owning the service (none for an operator's rule for every service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub origin: RuleOrigin,
    /// Milliseconds since the epoch.
    pub created_ms: u64,
    /// When it stops applying (ms since the epoch); none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

impl DefenceRule {
    /// Whether the rule still applies at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|e| e > now_ms)
    }
}

/// What the edge counted as attacking: an address or a /24 (/48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// One client address above `source_rps`.
    Source,
    /// One /24 (/48) above `prefix_rps`.
    Prefix,
    /// Few sources carrying most of a surge above `service_rps`.
    Concentration,
}

/// A source and its rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRate {
    #[schema(value_type = String)]
    pub source: IpNet,
    /// Requests per second (the busiest second seen).
    pub rps: u64,
}

/// A path or user agent and its rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRate {
    /// At most [`MAX_KEY_TEXT`] bytes (longer ones are cut).
    pub key: String,
    /// Requests per second (the busiest second seen).
    pub rps: u64,
}

/// Longest path or user agent a report carries.
pub const MAX_KEY_TEXT: usize = 256;

/// Keeps the busiest `MAX_TOP_SOURCES` of `into` and `new` (each at its peak).
pub fn merge_keys(into: &mut Vec<KeyRate>, new: &[KeyRate]) {
    for k in new {
        match into.iter_mut().find(|t| t.key == k.key) {
            Some(t) => t.rps = t.rps.max(k.rps),
            None => into.push(k.clone()),
        }
    }
    into.sort_by(|a, b| b.rps.cmp(&a.rps).then_with(|| a.key.cmp(&b.key)));
    into.truncate(MAX_TOP_SOURCES);
}

/// One edge node's account of an attack on one service, sent with its heartbeats (at
/// once when it starts, then while it lasts). Reports of one incident carry the same
/// `incident` and grow; the control plane keeps the latest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefenceReport {
    /// The node's own id of the incident.
    pub incident: String,
    pub service: String,
    /// Start of the first second over a threshold (ms since the epoch).
    pub started_ms: u64,
    /// When the node found it.
    pub detected_ms: u64,
    /// The last second over a threshold or with requests refused.
    pub last_ms: u64,
    /// Set when the node has seen nothing of it for a while.
    #[serde(default)]
    pub ended: bool,
    pub mode: DefenceMode,
    pub dimensions: Vec<Dimension>,
    /// The service's busiest second on this node.
    pub peak_rps: u64,
    pub top_sources: Vec<SourceRate>,
    /// Addresses and prefixes the node refuses for it (or would, in monitor mode).
    #[schema(value_type = Vec<String>)]
    pub blocked: Vec<IpNet>,
    /// Requests of the service this node refused (or counted, in monitor mode) since the
    /// incident started.
    pub dropped: u64,
    /// The busiest paths and user agents while it lasted.
    #[serde(default)]
    pub top_paths: Vec<KeyRate>,
    #[serde(default)]
    pub top_agents: Vec<KeyRate>,
}

impl Validate for DefenceReport {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.incident.is_empty() || self.incident.len() > 64 {
            return Err(ValidationError::new("incident", "1 to 64 bytes"));
        }
        check_id("service", &self.service)?;
        if self.top_sources.len() > MAX_TOP_SOURCES {
            return Err(ValidationError::new(
                "top_sources",
                format!("at most {MAX_TOP_SOURCES}"),
            ));
        }
        if self.blocked.len() > MAX_RULE_SOURCES {
            return Err(ValidationError::new(
                "blocked",
                format!("at most {MAX_RULE_SOURCES}"),
            ));
        }
        // What an edge finds: single addresses or the /24 (/48) they aggregate to.
        for (i, b) in self.blocked.iter().enumerate() {
            let len = b.prefix_len();
            let ok = len == b.max_prefix_len()
                || (b.addr().is_ipv4() && len == V4_PREFIX)
                || (b.addr().is_ipv6() && len == V6_PREFIX);
            if !ok {
                return Err(ValidationError::new(
                    format!("blocked[{i}]"),
                    "an address, or the /24 (IPv6: /48) holding one",
                ));
            }
        }
        for (field, list) in [
            ("top_paths", &self.top_paths),
            ("top_agents", &self.top_agents),
        ] {
            if list.len() > MAX_TOP_SOURCES || list.iter().any(|k| k.key.len() > MAX_KEY_TEXT) {
                return Err(ValidationError::new(
                    field,
                    format!("at most {MAX_TOP_SOURCES}, each at most {MAX_KEY_TEXT} bytes"),
                ));
            }
        }
        if self.dimensions.len() > 3 {
            return Err(ValidationError::new("dimensions", "at most 3"));
        }
        Ok(())
    }
}

/// An attack as the API reports it: the nodes' reports of it merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DefenceEvent {
    pub id: String,
    pub service: String,
    /// RFC 3339.
    pub started: String,
    /// When the first node found it (RFC 3339).
    pub detected: String,
    /// When the last node saw the end of it (RFC 3339); none while it goes on.
    pub ended: Option<String>,
    pub mode: DefenceMode,
    pub dimensions: Vec<Dimension>,
    /// The busiest second of the service on any one node.
    pub peak_rps: u64,
    pub top_sources: Vec<SourceRate>,
    pub top_paths: Vec<KeyRate>,
    pub top_agents: Vec<KeyRate>,
    /// The fleet-wide rule made of it (none in monitor mode or before any source was
    /// blocked).
    pub rule: Option<String>,
    /// Requests refused (or counted, in monitor mode), over all nodes.
    pub dropped: u64,
    /// The nodes that reported it.
    pub nodes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_prefixes_and_wildcards() {
        assert!(path_matches("/api/", "/api/x"));
        assert!(!path_matches("/api/", "/ap"));
        assert!(path_matches("/api/*/login", "/api/v1/login"));
        assert!(!path_matches("/api/*/login", "/api/v1/login/x"));
        assert!(path_matches("*.php", "/a/b.php"));
        assert!(path_matches("/a*", "/abc"));
        assert!(!path_matches("/a*c*e", "/abd"));
    }

    #[test]
    fn thresholds_are_learned_from_the_p95_with_a_burst_factor_and_floors() {
        assert_eq!(p95(&mut []), 0);
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(p95(&mut v), 95);
        // 100 minutes: service 1000..1099/s, top source 100/s (one minute 5000), prefix 300.
        let mut minutes: Vec<(u64, u64, u64)> = (0..100).map(|i| (1000 + i, 100, 300)).collect();
        minutes[7].1 = 5000;
        assert!(
            learn("s", &minutes[..30], 300, 60).is_none(),
            "too little history"
        );
        let l = learn("s", &minutes, 300, 60).expect("learned");
        assert_eq!(l.service_rps, 1094 * 3);
        assert_eq!(l.source_rps, 300, "one busy minute is past the p95");
        assert_eq!(l.prefix_rps, 900);
        assert_eq!(l.minutes, 100);
        // A quiet service gets the floors.
        let quiet = vec![(2, 1, 1); 100];
        let l = learn("s", &quiet, 300, 60).expect("learned");
        assert_eq!((l.source_rps, l.prefix_rps, l.service_rps), LEARNED_FLOORS);
        // Learned ones replace the static thresholds unless the service does not learn.
        let s = DefenceSettings::default();
        assert_eq!(s.effective(Some(&l)).source_rps, 50);
        assert_eq!(
            s.effective(Some(&l)).service_rps,
            0,
            "the concentration test stays off"
        );
        let fixed = DefenceSettings {
            learn: false,
            ..DefenceSettings::default()
        };
        assert_eq!(fixed.effective(Some(&l)).source_rps, 200);
    }

    #[test]
    fn addresses_aggregate_to_24_and_48() {
        assert_eq!(
            aggregate("192.0.2.77".parse().unwrap()).to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            aggregate("2001:db8:1:2::9".parse().unwrap()).to_string(),
            "2001:db8:1::/48"
        );
    }

    #[test]
    fn rules_are_checked() {
        let block = |m: RuleMatch| RuleSpec {
            service: None,
            action: RuleAction::Block,
            matches: m,
            rate: None,
            mode: DefenceMode::Enforce,
            ttl_seconds: Some(60),
            note: None,
        };
        let err = block(RuleMatch::default()).validate().unwrap_err();
        assert_eq!(err.field, "match");
        let mut limit = block(RuleMatch::default());
        limit.action = RuleAction::Limit;
        assert_eq!(limit.validate().unwrap_err().field, "rate");
        limit.rate = Some(10);
        limit.validate().unwrap();
        let mut bad = block(RuleMatch {
            methods: vec!["get".into()],
            ..RuleMatch::default()
        });
        assert_eq!(bad.validate().unwrap_err().field, "match.methods[0]");
        bad.matches.methods = vec!["GET".into()];
        bad.ttl_seconds = Some(0);
        assert_eq!(bad.validate().unwrap_err().field, "ttl_seconds");
    }

    #[test]
    fn requests_match_every_condition() {
        let m = RuleMatch {
            methods: vec!["POST".into()],
            path: Some("/login".into()),
            user_agent: Some("curl".into()),
            ..RuleMatch::default()
        };
        assert!(m.matches_request("POST", "/login", |_| None, Some("CURL/8")));
        assert!(!m.matches_request("GET", "/login", |_| None, Some("curl")));
        assert!(!m.matches_request("POST", "/login", |_| None, None));
        assert!(!m.source_only());
    }
}
