//! Traffic defence on an edge node: every request of a service is screened against the
//! rules in force (allow wins, then block, then per-client limits) and counted in fixed
//! memory (`window`); once a second the counts are judged per service (`detect`), sources
//! found attacking are refused here at once (`LocalBlocks`, when the service enforces) and
//! reported to the control plane, which makes a fleet-wide rule of them that comes back
//! to every node in the next snapshot (`rules`). Connections are capped per source at
//! accept (`conn`).
//!
//! **Invariants:** counting never stops (a full table degrades to prefixes and says so in
//! metrics and logs); an allow rule's requests are never refused nor counted as attacking;
//! in monitor mode nothing is refused, only counted.

pub mod conn;
pub mod detect;
pub mod rules;
pub mod window;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Response, StatusCode, header};
use ipnet::IpNet;
use lingjing_model::defence::{
    BaselineSample, DefenceMode, DefenceReport, DefenceRule, DefenceSettings, Dimension, KeyRate,
    LearnedThresholds, MAX_REPORTS, MAX_RULE_SOURCES, MAX_TOP_SOURCES, SourceRate, merge_keys,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, watch};

use crate::body::{self, Body};
use rules::{LocalBlocks, Plan};
use window::{Shards, TableSizes};

/// An incident with nothing over a threshold and nothing refused for this long has ended.
const QUIET_MS: u64 = 10_000;
/// Why a request is refused (the `reason` label).
const REASONS: [&str; 3] = ["detected", "rule_block", "rule_limit"];
/// The smallest per-window count of one address that wakes the judge early.
const MIN_TRIP: u32 = 50;
/// The shortest window judged early (an address crossing its threshold mid-window).
const EARLY_GAP: Duration = Duration::from_millis(200);
/// Most sources one service's local blocks hold.
const MAX_LOCAL_BLOCKS: usize = MAX_RULE_SOURCES;

/// How a node defends itself (`lingjing edge --defence ...`).
#[derive(Debug, Clone, Copy)]
pub struct DefenceConfig {
    /// Off: nothing is counted, screened or capped (for measuring what defence costs).
    pub enabled: bool,
    pub tables: TableSizes,
    pub connections: conn::ConnCaps,
}

impl Default for DefenceConfig {
    fn default() -> Self {
        DefenceConfig {
            enabled: true,
            tables: TableSizes::default(),
            connections: conn::ConnCaps::default(),
        }
    }
}

/// One service's counters for the current second (kept across snapshots).
#[derive(Debug)]
pub struct ServiceWatch {
    pub slot: u32,
    requests: AtomicU64,
    /// When the window's first request came (ms since the epoch; 0: none yet).
    first_ms: AtomicU64,
    /// An address reaching this many requests in a window wakes the judge at once
    /// (the service's source threshold; 0: never).
    trip: std::sync::atomic::AtomicU32,
    /// Whether the last judged second had traffic.
    busy: std::sync::atomic::AtomicBool,
    /// Its refused and monitored counters by reason (`REASONS`), resolved once: a flood's
    /// requests count without building label sets.
    counters: std::sync::OnceLock<[[Counter; 3]; 2]>,
    errors_4xx: AtomicU64,
    errors_5xx: AtomicU64,
    bytes: AtomicU64,
    refused: AtomicU64,
}

impl ServiceWatch {
    pub fn new(slot: u32) -> ServiceWatch {
        ServiceWatch {
            slot,
            requests: AtomicU64::new(0),
            first_ms: AtomicU64::new(0),
            trip: std::sync::atomic::AtomicU32::new(0),
            busy: std::sync::atomic::AtomicBool::new(true),
            counters: std::sync::OnceLock::new(),
            errors_4xx: AtomicU64::new(0),
            errors_5xx: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Counts the status of an answered request.
    pub fn answered(&self, status: StatusCode) {
        match status.as_u16() {
            400..=499 => self.errors_4xx.fetch_add(1, Ordering::Relaxed),
            500..=599 => self.errors_5xx.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Counts body bytes sent.
    pub fn sent(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub service: String,
    /// `rule_block`, `rule_limit` or `detected`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// `sources`, `prefixes` or `connections`.
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnReasonLabels {
    /// `blocked`, `connections_open` or `connections_new`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectionLabels {
    pub service: String,
    /// `source`, `prefix` or `concentration`.
    pub dimension: String,
}

/// The defence metrics of a node.
#[derive(Clone)]
pub struct DefenceMetrics {
    pub refused: Family<ReasonLabels, Counter>,
    pub monitored: Family<ReasonLabels, Counter>,
    pub connections_refused: Family<ConnReasonLabels, Counter>,
    pub fill: Family<TableLabels, Gauge<f64, AtomicU64>>,
    pub degraded: Family<TableLabels, Counter>,
    pub detections: Family<DetectionLabels, Counter>,
    pub detection_seconds: Histogram,
    pub service_rps: Family<ReasonLabels, Gauge>,
}

impl DefenceMetrics {
    fn register(registry: &mut Registry) -> DefenceMetrics {
        let m = DefenceMetrics {
            refused: Family::default(),
            monitored: Family::default(),
            connections_refused: Family::default(),
            fill: Family::default(),
            degraded: Family::default(),
            detections: Family::default(),
            detection_seconds: Histogram::new([0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]),
            service_rps: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("defence");
        r.register(
            "requests_refused",
            "Requests refused by defence, by service and reason (rule_block, rule_limit, detected)",
            m.refused.clone(),
        );
        r.register(
            "requests_monitored",
            "Requests a rule or detection in monitor mode would have refused",
            m.monitored.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at accept, by reason (blocked, connections_open, connections_new)",
            m.connections_refused.clone(),
        );
        r.register(
            "table_fill_ratio",
            "How full the per-second tables are (sources, prefixes; connections: the per-source connection table)",
            m.fill.clone(),
        );
        r.register(
            "table_degraded",
            "Requests (connections) counted under their /24 (/48) prefix, or in the overflow sketch, because a table was full",
            m.degraded.clone(),
        );
        r.register(
            "detections",
            "Sources found attacking, by service and dimension",
            m.detections.clone(),
        );
        r.register(
            "detection_seconds",
            "From the first request of the first window over a threshold to detection",
            m.detection_seconds.clone(),
        );
        r.register(
            "service_rate",
            "A service's requests in the last second (reason: requests, errors_4xx, errors_5xx, bytes)",
            m.service_rps.clone(),
        );
        m
    }
}

/// One request being screened.
struct Screened<'a> {
    service: &'a str,
    watch: &'a ServiceWatch,
    parts: &'a http::request::Parts,
    client: IpAddr,
    /// Now (ms since the epoch; 0 when no rule is in force).
    now: u64,
}

impl Screened<'_> {
    /// Whether rule `r` is live and matches this request.
    fn matches(&self, r: &rules::Compiled) -> bool {
        r.live(self.now) && r.source_matches(self.client) && r.request_matches(self.parts)
    }
}

/// One service's second as the judge saw it.
#[derive(Clone, Copy)]
struct Second {
    total: u64,
    refused: u64,
    /// When its first request came (0: unknown).
    first_ms: u64,
    now: u64,
}

/// One attack on one service as this node sees it.
struct Incident {
    report: DefenceReport,
    blocked: BTreeSet<IpNet>,
}

/// What the once-a-second judge keeps between seconds.
#[derive(Default)]
struct Judge {
    incidents: HashMap<String, Incident>,
    local: HashMap<String, LocalBlocks>,
    /// Last time a full table was logged (ms).
    logged_full_ms: u64,
    next_incident: u64,
    /// Per service: the current minute and its busiest seconds (service, source, prefix).
    minutes: HashMap<String, (u64, u64, u64, u64)>,
}

/// A node's defence: shared by every request (`Edge::defence`).
pub struct Defence {
    pub enabled: bool,
    node: String,
    shards: Shards,
    limits: Vec<Mutex<LimitTable>>,
    plan: ArcSwap<Plan>,
    rules: Mutex<Arc<Vec<DefenceRule>>>,
    /// Service id -> (slot, settings), from the snapshot.
    settings: ArcSwap<HashMap<String, (u32, DefenceSettings)>>,
    watches: Mutex<HashMap<String, Arc<ServiceWatch>>>,
    judge: Mutex<Judge>,
    pending: Mutex<HashMap<String, DefenceReport>>,
    baseline: Mutex<Vec<BaselineSample>>,
    /// Woken when a report is waiting (the agent sends it at once).
    pub wake: Arc<Notify>,
    /// Woken when an address crosses its service's threshold mid-window.
    early: Notify,
    pub gate: Arc<conn::SourceGate>,
    pub metrics: DefenceMetrics,
    /// The platform's node addresses (from the snapshot): never screened, counted or capped.
    platform: ArcSwap<std::collections::HashSet<IpAddr>>,
    /// When the per-source connection table was last swept.
    swept: Mutex<Option<std::time::Instant>>,
}

/// Per-client counts of limit rules in the current second.
struct LimitTable {
    second: u64,
    counts: HashMap<(u32, IpNet), u32>,
    cap: usize,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Defence {
    pub fn new(node: &str, config: &DefenceConfig, registry: &mut Registry) -> Defence {
        let shards = 8usize;
        let limit_cap = (config.tables.sources / shards).max(16);
        Defence {
            enabled: config.enabled,
            node: node.to_owned(),
            shards: Shards::new(config.tables),
            limits: (0..shards)
                .map(|_| {
                    Mutex::new(LimitTable {
                        second: 0,
                        counts: HashMap::with_capacity(limit_cap),
                        cap: limit_cap,
                    })
                })
                .collect(),
            plan: ArcSwap::from_pointee(Plan::default()),
            rules: Mutex::new(Arc::new(Vec::new())),
            settings: ArcSwap::from_pointee(HashMap::new()),
            watches: Mutex::new(HashMap::new()),
            judge: Mutex::new(Judge::default()),
            pending: Mutex::new(HashMap::new()),
            baseline: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            early: Notify::new(),
            gate: conn::SourceGate::new(config.connections),
            platform: ArcSwap::from_pointee(std::collections::HashSet::new()),
            swept: Mutex::new(None),
            metrics: DefenceMetrics::register(registry),
        }
    }

    /// The counters of service `id` (made on first use, kept across snapshots).
    pub fn watch(&self, id: &str) -> Arc<ServiceWatch> {
        let mut w = lock(&self.watches);
        let next = u32::try_from(w.len()).unwrap_or(u32::MAX);
        w.entry(id.to_owned())
            .or_insert_with(|| {
                let watch = ServiceWatch::new(next);
                let resolve = |family: &Family<ReasonLabels, Counter>| {
                    REASONS.map(|reason| {
                        family
                            .get_or_create(&ReasonLabels {
                                service: id.to_owned(),
                                reason: reason.to_owned(),
                            })
                            .clone()
                    })
                };
                let _ = watch.counters.set([
                    resolve(&self.metrics.refused),
                    resolve(&self.metrics.monitored),
                ]);
                Arc::new(watch)
            })
            .clone()
    }

    /// Takes a snapshot's services, rules, learned thresholds and the platform's nodes.
    pub fn apply(
        &self,
        services: &[lingjing_model::Service],
        rules: &[DefenceRule],
        learned: &[LearnedThresholds],
        nodes: &[lingjing_model::snapshot::NodeInfo],
    ) {
        self.platform.store(Arc::new(
            nodes
                .iter()
                .flat_map(|n| n.addresses.iter().copied())
                .collect(),
        ));
        let settings: HashMap<String, (u32, DefenceSettings)> = services
            .iter()
            .map(|s| {
                let l = learned.iter().find(|l| l.service == s.id);
                let effective = s.defence.effective(l);
                let watch = self.watch(&s.id);
                // Early judgement only for clear floods (not a source threshold of 1).
                let trip = if effective.enabled {
                    effective.source_rps.max(MIN_TRIP)
                } else {
                    0
                };
                watch.trip.store(trip, Ordering::Relaxed);
                (s.id.clone(), (watch.slot, effective))
            })
            .collect();
        self.settings.store(Arc::new(settings));
        *lock(&self.rules) = Arc::new(rules.to_vec());
        let judge = lock(&self.judge);
        self.rebuild(&judge.local);
    }

    fn rebuild(&self, local: &HashMap<String, LocalBlocks>) {
        let rules = lock(&self.rules).clone();
        self.plan
            .store(Arc::new(Plan::build(&rules, local, now_ms())));
    }

    /// Whether a connection from `addr` is closed at accept (an enforced rule refuses it
    /// for every service).
    pub fn blocked_at_accept(&self, addr: IpAddr) -> bool {
        if !self.enabled || self.is_platform(addr) {
            return false;
        }
        let plan = self.plan.load();
        !plan.global.block.is_empty() && plan.blocked_at_accept(addr, now_ms())
    }

    /// Screens one request of service `service` from `client`: `Some(response)` when it
    /// is refused. Precedence: the operator's allow rules for every service, then its
    /// block rules for every service, then the service's allow rules (which also exempt
    /// from detection), then the service's block rules (manual and detected) and limits,
    /// then the operator's limits. The platform's own nodes (a child edge filling from
    /// this parent) are never screened nor counted.
    pub fn screen(
        &self,
        service: &str,
        watch: &ServiceWatch,
        parts: &http::request::Parts,
        client: IpAddr,
    ) -> Option<Response<Body>> {
        if !self.enabled || self.is_platform(client) {
            return None;
        }
        let plan = self.plan.load();
        let own = plan.services.get(service);
        let req = Screened {
            service,
            watch,
            parts,
            client,
            now: if plan.is_empty() { 0 } else { now_ms() },
        };
        let allows = |set: Option<&rules::RuleSet>| {
            set.is_some_and(|set| set.allow.iter().any(|r| req.matches(r)))
        };
        if allows(Some(&plan.global)) {
            return None;
        }
        let mut known = false;
        if let Some(res) = self.blocks(&plan.global, &req, &mut known) {
            return Some(res);
        }
        if allows(own) {
            return None;
        }
        if watch.requests.fetch_add(1, Ordering::Relaxed) == 0 {
            watch.first_ms.store(now_ms(), Ordering::Relaxed);
        }
        let ua = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let n = window::lock(self.shards.mine()).count(watch.slot, client, parts.uri.path(), ua);
        let refused = own.and_then(|set| self.blocks(set, &req, &mut known));
        let refused = refused.or_else(|| {
            [own, Some(&plan.global)]
                .into_iter()
                .flatten()
                .find_map(|set| self.limits(set, &req))
        });
        // An address over the threshold before the window ends, that no rule knows yet:
        // the judge looks at once, not at the next tick.
        if !known && refused.is_none() && n > 0 && n == watch.trip.load(Ordering::Relaxed) {
            self.early.notify_one();
        }
        refused
    }

    /// Whether `addr` is one of the platform's nodes.
    pub fn is_platform(&self, addr: IpAddr) -> bool {
        let p = self.platform.load();
        !p.is_empty() && p.contains(&addr)
    }

    /// Whether a connection from `addr` may come from another node: one of the
    /// platform's addresses, or loopback when the platform's nodes are on loopback (one
    /// host: a node's outgoing connections leave from 127.0.0.1, not its own address).
    pub fn may_be_peer(&self, addr: IpAddr) -> bool {
        let p = self.platform.load();
        p.contains(&addr) || (addr.is_loopback() && p.iter().any(IpAddr::is_loopback))
    }

    /// The block rules of `set` for one request: `Some(response)` to refuse it; `known`
    /// set when any (also a monitored one) matched.
    fn blocks(
        &self,
        set: &rules::RuleSet,
        req: &Screened<'_>,
        known: &mut bool,
    ) -> Option<Response<Body>> {
        for r in set.block.iter().filter(|r| req.matches(r)) {
            *known = true;
            let reason = if r.detected { "detected" } else { "rule_block" };
            if r.mode == DefenceMode::Monitor {
                self.count(req, true, reason);
                continue;
            }
            self.count(req, false, reason);
            // HTTP/1 connections are closed after the refusal (HTTP/2 has no such
            // header; its client keeps the connection and is refused per request).
            let close = req.parts.version <= http::Version::HTTP_11;
            return Some(if r.detected {
                let left = r
                    .expires_ms
                    .map_or(60, |e| e.saturating_sub(req.now).div_ceil(1000));
                refusal(StatusCode::TOO_MANY_REQUESTS, Some(left.max(1)), close)
            } else {
                refusal(StatusCode::FORBIDDEN, None, close)
            });
        }
        None
    }

    /// The limit rules of `set` for one request: `Some(response)` to refuse it.
    fn limits(&self, set: &rules::RuleSet, req: &Screened<'_>) -> Option<Response<Body>> {
        for r in set.limit.iter().filter(|r| req.matches(r)) {
            if self.over_limit(r.key, req.client, r.rate, req.now / 1000) {
                if r.mode == DefenceMode::Monitor {
                    self.count(req, true, "rule_limit");
                    continue;
                }
                self.count(req, false, "rule_limit");
                return Some(refusal(StatusCode::TOO_MANY_REQUESTS, Some(1), false));
            }
        }
        None
    }

    /// Counts a refused (`monitored`: would-be refused) request for `reason`, through the
    /// service's resolved counters when it has them.
    fn count(&self, req: &Screened<'_>, monitored: bool, reason: &str) {
        if !monitored {
            req.watch.refused.fetch_add(1, Ordering::Relaxed);
        }
        let i = REASONS.iter().position(|r| *r == reason);
        if let (Some(c), Some(i)) = (req.watch.counters.get(), i) {
            c[usize::from(monitored)][i].inc();
            return;
        }
        let family = if monitored {
            &self.metrics.monitored
        } else {
            &self.metrics.refused
        };
        family
            .get_or_create(&ReasonLabels {
                service: req.service.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts a request of limit rule `key` from `client` in `second`; whether it is
    /// over `rate`.
    fn over_limit(&self, key: u32, client: IpAddr, rate: u32, second: u64) -> bool {
        let i = match client {
            IpAddr::V4(a) => u32::from(a) as usize,
            IpAddr::V6(a) => (u128::from(a) >> 64) as usize,
        } % self.limits.len();
        let mut t = lock(&self.limits[i]);
        if t.second != second {
            t.second = second;
            t.counts.clear();
        }
        let host = IpNet::from(client);
        let prefix = lingjing_model::defence::aggregate(client);
        let k = if t.counts.contains_key(&(key, host)) || t.counts.len() < t.cap {
            (key, host)
        } else if t.counts.contains_key(&(key, prefix)) || t.counts.len() < t.cap + t.cap / 8 {
            // Full: clients share their prefix's count.
            (key, prefix)
        } else {
            // Even the prefixes do not fit: one shared count for the rest.
            (key, IpNet::default())
        };
        let n = t.counts.entry(k).or_insert(0);
        *n = n.saturating_add(1);
        *n > rate
    }

    /// Takes the reports waiting to be sent.
    pub fn take_reports(&self) -> Vec<DefenceReport> {
        let mut p = lock(&self.pending);
        let n = p.len().min(MAX_REPORTS);
        let keys: Vec<String> = p.keys().take(n).cloned().collect();
        keys.into_iter().filter_map(|k| p.remove(&k)).collect()
    }

    /// Judges the second that just ended: called once a second.
    pub fn tick(&self) {
        let now = now_ms();
        let merged = window::merge(self.shards.take());
        let m = &self.metrics;
        // The connection table is swept once a second, whatever the judging pace (its
        // per-second counts live in the entries).
        let (conn_fill, conn_degraded) = {
            let mut swept = lock(&self.swept);
            if swept.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                *swept = Some(std::time::Instant::now());
                self.gate.sweep()
            } else {
                (self.gate.fill(), 0)
            }
        };
        for (table, fill, degraded) in [
            ("sources", merged.source_fill, merged.degraded_sources),
            ("prefixes", merged.prefix_fill, merged.degraded_prefixes),
            ("connections", conn_fill, conn_degraded),
        ] {
            let labels = TableLabels {
                table: table.to_owned(),
            };
            m.fill.get_or_create(&labels).set(fill);
            m.degraded.get_or_create(&labels).inc_by(degraded);
        }
        let settings = self.settings.load();
        let watches = lock(&self.watches).clone();
        let mut judge = lock(&self.judge);
        if (merged.degraded_sources > 0 || conn_degraded > 0)
            && now.saturating_sub(judge.logged_full_ms) >= 10_000
        {
            judge.logged_full_ms = now;
            tracing::warn!(
                node = %self.node,
                requests = merged.degraded_sources,
                in_overflow_sketch = merged.degraded_prefixes,
                connections = conn_degraded,
                "defence: the address table is full; counting these under their /24 (/48) prefix"
            );
        }
        let mut changed = false;
        for (service, (slot, s)) in settings.iter() {
            let Some(watch) = watches.get(service) else {
                continue;
            };
            let total = watch.requests.swap(0, Ordering::Relaxed);
            let first = watch.first_ms.swap(0, Ordering::Relaxed);
            let e4 = watch.errors_4xx.swap(0, Ordering::Relaxed);
            let e5 = watch.errors_5xx.swap(0, Ordering::Relaxed);
            let bytes = watch.bytes.swap(0, Ordering::Relaxed);
            let refused = watch.refused.swap(0, Ordering::Relaxed);
            // An idle service's gauges are set to zero once, not every second.
            let busy = total > 0 || e4 > 0 || e5 > 0 || bytes > 0;
            let was_busy = watch.busy.swap(busy, Ordering::Relaxed);
            for (what, v) in [
                ("requests", total),
                ("errors_4xx", e4),
                ("errors_5xx", e5),
                ("bytes", bytes),
            ] {
                if !busy && !was_busy {
                    break;
                }
                m.service_rps
                    .get_or_create(&ReasonLabels {
                        service: service.clone(),
                        reason: what.to_owned(),
                    })
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
            let empty = window::Tally::default();
            let tally = merged.services.get(slot).unwrap_or(&empty);
            self.note_minute(&mut judge, service, now, total, tally);
            let findings = if s.enabled {
                detect::judge(s, tally, total)
            } else {
                detect::Findings::default()
            };
            let window = Second {
                total,
                refused,
                first_ms: first,
                now,
            };
            changed |= self.follow(&mut judge, service, s, &findings, tally, &window);
        }
        // Local blocks run out.
        for blocks in judge.local.values_mut() {
            let before = blocks.sources.len();
            blocks.sources.retain(|_, until| *until > now);
            changed |= blocks.sources.len() != before;
        }
        judge.local.retain(|_, b| !b.sources.is_empty());
        if changed {
            self.rebuild(&judge.local);
        }
    }

    /// Keeps the busiest second of the minute per dimension; a finished minute with
    /// traffic becomes a baseline sample for the control plane.
    fn note_minute(
        &self,
        judge: &mut Judge,
        service: &str,
        now: u64,
        total: u64,
        tally: &window::Tally,
    ) {
        let minute = now / 60_000 * 60_000;
        let source = tally.sources.values().copied().max().unwrap_or(0);
        let prefix = tally.prefixes.values().copied().max().unwrap_or(0);
        let entry = judge
            .minutes
            .entry(service.to_owned())
            .or_insert((minute, 0, 0, 0));
        if entry.0 != minute {
            let (m, svc, src, pfx) = *entry;
            if svc > 0 {
                let mut b = lock(&self.baseline);
                if b.len() < lingjing_model::defence::MAX_BASELINE_SAMPLES {
                    b.push(BaselineSample {
                        service: service.to_owned(),
                        minute_ms: m,
                        service_rps: svc,
                        source_rps: src,
                        prefix_rps: pfx,
                    });
                }
            }
            *entry = (minute, 0, 0, 0);
        }
        entry.1 = entry.1.max(total);
        entry.2 = entry.2.max(source);
        entry.3 = entry.3.max(prefix);
    }

    /// Opens, grows or ends service `service`'s incident after a second judged as
    /// `findings`; whether its local blocks changed.
    fn follow(
        &self,
        judge: &mut Judge,
        service: &str,
        s: &DefenceSettings,
        findings: &detect::Findings,
        tally: &window::Tally,
        second: &Second,
    ) -> bool {
        let Second {
            total,
            refused,
            first_ms,
            now,
        } = *second;
        let mut changed = false;
        if !findings.attacking.is_empty() && !judge.incidents.contains_key(service) {
            judge.next_incident += 1;
            // The window's first request: the attack began no earlier than that.
            let started = if first_ms > 0 && first_ms <= now {
                first_ms
            } else {
                now.saturating_sub(1000)
            };
            let report = DefenceReport {
                // Unique on this node (the control plane keys incidents by node too).
                incident: format!("{now}-{}", judge.next_incident),
                service: service.to_owned(),
                started_ms: started,
                detected_ms: now,
                last_ms: now,
                ended: false,
                mode: s.mode,
                dimensions: Vec::new(),
                peak_rps: 0,
                top_sources: Vec::new(),
                blocked: Vec::new(),
                dropped: 0,
                top_paths: Vec::new(),
                top_agents: Vec::new(),
            };
            self.metrics
                .detection_seconds
                .observe((now - started) as f64 / 1000.0);
            tracing::warn!(
                node = %self.node,
                service,
                mode = ?s.mode,
                sources = findings.attacking.len(),
                rps = total,
                "defence: attack detected"
            );
            judge.incidents.insert(
                service.to_owned(),
                Incident {
                    report,
                    blocked: BTreeSet::new(),
                },
            );
        }
        if findings.crowd && findings.attacking.is_empty() {
            tracing::info!(
                service,
                rps = total,
                "defence: surge from many sources (not an attack from few): nothing refused"
            );
        }
        let Some(inc) = judge.incidents.get_mut(service) else {
            return false;
        };
        let r = &mut inc.report;
        r.dropped += refused;
        let mut report = refused > 0;
        if refused > 0 {
            r.last_ms = now;
        }
        if !findings.attacking.is_empty() {
            r.last_ms = now;
            r.peak_rps = r.peak_rps.max(total);
            r.mode = s.mode;
            merge_top(&mut r.top_sources, &findings.top);
            let keys = |list: &[(Box<str>, u64)]| -> Vec<KeyRate> {
                list.iter()
                    .map(|(k, n)| KeyRate {
                        key: cut(k, lingjing_model::defence::MAX_KEY_TEXT),
                        rps: *n,
                    })
                    .collect()
            };
            merge_keys(&mut r.top_paths, &keys(&tally.paths));
            merge_keys(&mut r.top_agents, &keys(&tally.agents));
            let until = now + u64::from(s.block_seconds) * 1000;
            let local = judge.local.entry(service.to_owned()).or_default();
            local.mode = s.mode;
            for (source, _, dimension) in &findings.attacking {
                if !r.dimensions.contains(dimension) {
                    r.dimensions.push(*dimension);
                }
                self.metrics
                    .detections
                    .get_or_create(&DetectionLabels {
                        service: service.to_owned(),
                        dimension: dimension_name(*dimension).to_owned(),
                    })
                    .inc();
                if local.sources.len() < MAX_LOCAL_BLOCKS || local.sources.contains_key(source) {
                    let before = local.sources.insert(*source, until);
                    // A new source, or one that was about to run out.
                    changed |= before.is_none_or(|b| b < now + 1000);
                }
                if inc.blocked.len() < MAX_RULE_SOURCES {
                    inc.blocked.insert(*source);
                }
            }
            r.blocked = inc.blocked.iter().copied().collect();
            report = true;
        }
        if now.saturating_sub(r.last_ms) >= QUIET_MS {
            r.ended = true;
            report = true;
            tracing::info!(service, dropped = r.dropped, "defence: attack over");
        }
        if report {
            let done = r.ended;
            lock(&self.pending).insert(r.incident.clone(), r.clone());
            self.wake.notify_one();
            if done {
                judge.incidents.remove(service);
            }
        }
        changed
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn dimension_name(d: Dimension) -> &'static str {
    match d {
        Dimension::Source => "source",
        Dimension::Prefix => "prefix",
        Dimension::Concentration => "concentration",
    }
}

/// Keeps the busiest `MAX_TOP_SOURCES` of `into` and `new` (each source at its peak).
fn merge_top(into: &mut Vec<SourceRate>, new: &[SourceRate]) {
    for s in new {
        match into.iter_mut().find(|t| t.source == s.source) {
            Some(t) => t.rps = t.rps.max(s.rps),
            None => into.push(s.clone()),
        }
    }
    into.sort_by_key(|s| std::cmp::Reverse(s.rps));
    into.truncate(MAX_TOP_SOURCES);
}

/// A refusal: 429 (with `Retry-After`) or 403; `close` ends the connection after it.
fn refusal(status: StatusCode, retry_after: Option<u64>, close: bool) -> Response<Body> {
    let text = if status == StatusCode::FORBIDDEN {
        "refused by a traffic defence rule of this service\n"
    } else {
        "too many requests: refused by traffic defence; retry later\n"
    };
    let mut res = Response::new(body::full(text.to_owned()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(s) = retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// Judges every second until `stopped`.
pub async fn run(defence: Arc<Defence>, mut stopped: watch::Receiver<bool>) {
    if !defence.enabled {
        return;
    }
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            // An address crossed its threshold: judge the window so far at once (at most
            // every EARLY_GAP, so a flood that keeps crossing cannot spin the judge).
            _ = defence.early.notified(), if last.elapsed() >= EARLY_GAP => every.reset(),
            _ = stopped.wait_for(|s| *s) => return,
        }
        last = tokio::time::Instant::now();
        defence.tick();
    }
}

impl lingjing_model::snapshot::DefenceSource for Defence {
    fn take(&self) -> Vec<DefenceReport> {
        self.take_reports()
    }

    fn take_baseline(&self) -> Vec<BaselineSample> {
        std::mem::take(&mut *lock(&self.baseline))
    }
}

#[cfg(test)]
mod peer_tests {
    use super::*;

    #[test]
    fn a_peer_is_a_node_address_or_loopback_when_the_nodes_are() {
        let mut registry = Registry::default();
        let d = Defence::new("n", &DefenceConfig::default(), &mut registry);
        let ip = |s: &str| -> IpAddr { s.parse().expect("addr") };
        d.platform
            .store(Arc::new([ip("10.0.0.1")].into_iter().collect()));
        assert!(d.may_be_peer(ip("10.0.0.1")));
        assert!(!d.may_be_peer(ip("10.0.0.2")));
        assert!(!d.may_be_peer(ip("127.0.0.1")), "nodes are not on loopback");
        d.platform
            .store(Arc::new([ip("127.0.1.1")].into_iter().collect()));
        assert!(d.may_be_peer(ip("127.0.0.1")), "one host");
        assert!(!d.may_be_peer(ip("192.0.2.1")));
    }
}
