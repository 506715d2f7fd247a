//! Traffic defence in the control plane: edge nodes' reports of attacks become events (a
//! node's incident joins the service's event still going on, else opens one), and an
//! event whose sources a node refused in enforce mode becomes one fleet-wide rule that
//! every edge receives with the next snapshot; the rule lives as long as the service's
//! `block_seconds` after the last report of a source and expires by itself. Edges also
//! report each minute's busiest seconds per service; a learning pass (every 5 minutes, or
//! `POST /v1/defence/learned`) turns them into learned thresholds.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use lingjing_model::Service;
use lingjing_model::defence::{
    DefenceEvent, DefenceMode, DefenceReport, DefenceRule, LearnedThresholds, MAX_RULE_SOURCES,
    MAX_TOP_SOURCES, RuleAction, RuleMatch, RuleOrigin, RuleSpec,
};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::error::StoreError;
use crate::store::defence::{self as store, EventRow};
use crate::store::get_doc;

/// How far ahead of the control plane's clock a report's times may be.
const MAX_SKEW_MS: u64 = 120_000;
const DAY_MS: u64 = 24 * 3600 * 1000;
/// Node incidents one event holds at most (later ones are left out of it).
const MAX_EVENT_REPORTS: usize = 256;

/// Reports of an incident joins an event of its service last seen this recently.
const JOIN_WITHIN_MS: i64 = 30_000;
/// A detected rule is rewritten (a new version) when its expiry moves by more than this.
const EXTEND_STEP_MS: u64 = 30_000;

/// What an event row keeps: every node's latest report of it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct EventDoc {
    /// Node -> incident -> its latest report.
    pub reports: BTreeMap<String, BTreeMap<String, DefenceReport>>,
    /// The fleet-wide rule made of it.
    #[serde(default)]
    pub rule: Option<String>,
}

/// The API's view of an event row.
pub fn view(row: &EventRow) -> Result<DefenceEvent, StoreError> {
    let doc: EventDoc =
        serde_json::from_str(&row.doc).map_err(|_| StoreError::Corrupt("defence event".into()))?;
    let reports: Vec<&DefenceReport> = doc.reports.values().flat_map(|m| m.values()).collect();
    let mut top: Vec<lingjing_model::defence::SourceRate> = Vec::new();
    let mut dimensions = Vec::new();
    let (mut paths, mut agents) = (Vec::new(), Vec::new());
    let mut mode = DefenceMode::Monitor;
    for r in &reports {
        for s in &r.top_sources {
            match top.iter_mut().find(|t| t.source == s.source) {
                Some(t) => t.rps = t.rps.max(s.rps),
                None => top.push(s.clone()),
            }
        }
        lingjing_model::defence::merge_keys(&mut paths, &r.top_paths);
        lingjing_model::defence::merge_keys(&mut agents, &r.top_agents);
        for d in &r.dimensions {
            if !dimensions.contains(d) {
                dimensions.push(*d);
            }
        }
        if r.mode == DefenceMode::Enforce {
            mode = DefenceMode::Enforce;
        }
    }
    top.sort_by(|a, b| b.rps.cmp(&a.rps).then(a.source.cmp(&b.source)));
    top.truncate(MAX_TOP_SOURCES);
    let detected = reports.iter().map(|r| r.detected_ms).min().unwrap_or(0);
    Ok(DefenceEvent {
        id: row.id.clone(),
        service: row.service.clone(),
        started: crate::time::rfc3339_from_ms(row.started_ms),
        detected: crate::time::rfc3339_from_ms(detected as i64),
        ended: row.ended_ms.map(crate::time::rfc3339_from_ms),
        mode,
        dimensions,
        peak_rps: reports.iter().map(|r| r.peak_rps).max().unwrap_or(0),
        top_sources: top,
        top_paths: paths,
        top_agents: agents,
        rule: doc.rule.clone(),
        dropped: reports.iter().map(|r| r.dropped).sum(),
        nodes: doc.reports.keys().cloned().collect(),
    })
}

/// A detected rule to write after the reports are stored.
#[derive(Debug)]
pub struct RuleChange {
    pub event: String,
    pub rule: DefenceRule,
}

/// Stores node `node`'s `reports` (in the caller's transaction, which bumps nothing) and
/// returns the detected rules that must be written (with a new version) for them.
pub async fn record_reports(
    conn: &mut AnyConnection,
    node: &str,
    reports: &[DefenceReport],
    now_ms: i64,
) -> Result<Vec<RuleChange>, StoreError> {
    let mut changes: Vec<RuleChange> = Vec::new();
    if reports.is_empty() {
        return Ok(changes);
    }
    let platform: Vec<std::net::IpAddr> = crate::store::ipam::node_addresses(&mut *conn)
        .await?
        .into_values()
        .flatten()
        .collect();
    for report in reports {
        let Some(service) = get_doc::<Service>(&mut *conn, &report.service).await? else {
            continue;
        };
        // Times from another clock: only within a day before now and a little after.
        let now_u = now_ms.max(0) as u64;
        if report.started_ms > report.last_ms
            || report.last_ms > now_u + MAX_SKEW_MS
            || report.started_ms + DAY_MS < now_u
        {
            tracing::warn!(node, incident = %report.incident, "defence report with times out of range: ignored");
            continue;
        }
        let mut row = match store::incident_event(&mut *conn, node, &report.incident).await? {
            // An incident belongs to one service; a report naming another is not of it.
            Some(row) if row.service != report.service => {
                tracing::warn!(node, incident = %report.incident, "defence report changed service: ignored");
                continue;
            }
            Some(row) => row,
            None => {
                let row = match store::open_event(
                    &mut *conn,
                    &service.id,
                    report.started_ms as i64 - JOIN_WITHIN_MS,
                )
                .await?
                {
                    Some(row) => row,
                    None => EventRow {
                        id: event_id(&service.id, node, &report.incident),
                        service: service.id.clone(),
                        tenant: service.tenant.clone(),
                        started_ms: report.started_ms as i64,
                        last_ms: report.last_ms as i64,
                        ended_ms: None,
                        doc: serde_json::to_string(&EventDoc::default())
                            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    },
                };
                store::link_incident(&mut *conn, node, &report.incident, &row.id).await?;
                row
            }
        };
        let mut doc: EventDoc = serde_json::from_str(&row.doc)
            .map_err(|_| StoreError::Corrupt("defence event".into()))?;
        let held: usize = doc.reports.values().map(|m| m.len()).sum();
        let known = doc
            .reports
            .get(node)
            .is_some_and(|m| m.contains_key(&report.incident));
        if !known && held >= MAX_EVENT_REPORTS {
            continue;
        }
        // The platform's own nodes are never refused (a parent's child edges, say).
        let mut report = report.clone();
        report
            .blocked
            .retain(|b| !platform.iter().any(|a| b.contains(a)));
        doc.reports
            .entry(node.to_owned())
            .or_default()
            .insert(report.incident.clone(), report);
        let all: Vec<&DefenceReport> = doc.reports.values().flat_map(|m| m.values()).collect();
        row.started_ms = all
            .iter()
            .map(|r| r.started_ms as i64)
            .min()
            .unwrap_or(row.started_ms);
        row.last_ms = all
            .iter()
            .map(|r| r.last_ms as i64)
            .max()
            .unwrap_or(row.last_ms);
        row.ended_ms = all.iter().all(|r| r.ended).then_some(row.last_ms);
        // Sources refused in enforce mode become (or grow) the event's fleet-wide rule.
        let mut sources: BTreeSet<IpNet> = BTreeSet::new();
        let mut rates: std::collections::HashMap<IpNet, u64> = std::collections::HashMap::new();
        for r in all.iter().filter(|r| r.mode == DefenceMode::Enforce) {
            sources.extend(r.blocked.iter().copied());
            for t in &r.top_sources {
                let e = rates.entry(t.source).or_default();
                *e = (*e).max(t.rps);
            }
        }
        if !sources.is_empty() && service.defence.mode == DefenceMode::Enforce {
            let last = all
                .iter()
                .filter(|r| !r.blocked.is_empty())
                .map(|r| r.last_ms)
                .max()
                .unwrap_or(now_ms as u64);
            let expires = last + u64::from(service.defence.block_seconds) * 1000;
            let pending = changes.iter().find(|c| c.event == row.id).map(|c| &c.rule);
            let current = match pending {
                Some(r) => Some(r.clone()),
                None => store::event_rule(&mut *conn, &row.id).await?,
            };
            let sources = busiest(sources, &rates);
            if let Some(rule) = detected_rule(&service, &row.id, current, sources, expires, now_ms)
            {
                doc.rule = Some(rule.id.clone());
                changes.retain(|c| c.event != row.id);
                changes.push(RuleChange {
                    event: row.id.clone(),
                    rule,
                });
            }
        }
        row.doc = serde_json::to_string(&doc).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        store::put_event(&mut *conn, &row).await?;
    }
    Ok(changes)
}

/// The rule event `event` needs, when it differs enough from `current` to be rewritten:
/// new sources, or an expiry moved by more than [`EXTEND_STEP_MS`].
/// At most [`MAX_RULE_SOURCES`] of `sources`, the busiest first (by the highest rate any
/// report gave them; the rest in address order), returned in address order.
fn busiest(sources: BTreeSet<IpNet>, rates: &std::collections::HashMap<IpNet, u64>) -> Vec<IpNet> {
    let mut ranked: Vec<IpNet> = sources.into_iter().collect();
    if ranked.len() > MAX_RULE_SOURCES {
        // Stable: equal rates keep address order.
        ranked.sort_by_key(|s| std::cmp::Reverse(rates.get(s).copied().unwrap_or(0)));
        ranked.truncate(MAX_RULE_SOURCES);
        ranked.sort();
    }
    ranked
}

fn detected_rule(
    service: &Service,
    event: &str,
    current: Option<DefenceRule>,
    sources: Vec<IpNet>,
    expires_ms: u64,
    now_ms: i64,
) -> Option<DefenceRule> {
    if let Some(c) = &current {
        let mut had: Vec<IpNet> = c.spec.matches.sources.clone();
        had.sort();
        let extends = c
            .expires_ms
            .is_some_and(|e| expires_ms > e + EXTEND_STEP_MS);
        if had == sources && !extends {
            return None;
        }
    }
    let created_ms = current.as_ref().map_or(now_ms as u64, |c| c.created_ms);
    let expires_ms = current
        .as_ref()
        .and_then(|c| c.expires_ms)
        .map_or(expires_ms, |e| e.max(expires_ms));
    Some(DefenceRule {
        id: format!("detected-{event}"),
        spec: RuleSpec {
            service: Some(service.id.clone()),
            action: RuleAction::Block,
            matches: RuleMatch {
                sources,
                ..RuleMatch::default()
            },
            rate: None,
            mode: DefenceMode::Enforce,
            ttl_seconds: Some(u64::from(service.defence.block_seconds)),
            note: Some(format!("made from attack {event}")),
        },
        tenant: Some(service.tenant.clone()),
        origin: RuleOrigin::Detected {
            event: event.to_owned(),
        },
        created_ms,
        expires_ms: Some(expires_ms),
    })
}

/// A short, stable event id.
fn event_id(service: &str, node: &str, incident: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{service}\n{node}\n{incident}").as_bytes());
    let hex: String = h.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("ev-{hex}")
}

/// Minutes of traffic history kept (the longest learning window).
const KEEP_MINUTES_MS: i64 = 30 * 24 * 3600 * 1000;

/// Attack events kept (90 days).
const KEEP_EVENTS_MS: i64 = 90 * 24 * 3600 * 1000;

/// A learned threshold is republished only when it moves by at least this share (percent).
const RELEARN_PERCENT: u64 = 10;

/// Whether `new` differs from `old` enough to publish.
fn moved(old: Option<&LearnedThresholds>, new: Option<&LearnedThresholds>) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(o), Some(n)) => {
            let far = |a: u32, b: u32| {
                let (a, b) = (u64::from(a), u64::from(b));
                a.abs_diff(b) * 100 >= a.max(1) * RELEARN_PERCENT
            };
            far(o.source_rps, n.source_rps)
                || far(o.prefix_rps, n.prefix_rps)
                || far(o.service_rps, n.service_rps)
        }
        _ => true,
    }
}

/// One learning pass: recomputes every service's thresholds from its history and
/// publishes those that moved (one new version for all of them); forgets old minutes.
/// Returns the thresholds in force afterwards.
pub async fn learn_pass(
    state: &crate::api::AppState,
) -> Result<Vec<LearnedThresholds>, StoreError> {
    let now = crate::time::now_ms();
    let mut conn = state.store.pool().acquire().await?;
    let services = crate::store::list_docs::<Service>(&mut conn).await?;
    let stored = store::learned(&mut conn).await?;
    let mut changes: Vec<(String, Option<LearnedThresholds>)> = Vec::new();
    for s in &services {
        let d = &s.defence;
        let since = now - i64::from(d.learn_window_days) * 24 * 3600 * 1000;
        let new = if d.learn && d.enabled {
            let minutes = store::minutes(&mut conn, &s.id, since).await?;
            lingjing_model::defence::learn(&s.id, &minutes, d.burst_percent, d.learn_min_minutes)
        } else {
            None
        };
        let old = stored.iter().find(|l| l.service == s.id);
        if moved(old, new.as_ref()) {
            changes.push((s.id.clone(), new));
        }
    }
    for l in &stored {
        if !services.iter().any(|s| s.id == l.service) {
            changes.push((l.service.clone(), None));
        }
    }
    drop(conn);
    let mut w = state.store.write(!changes.is_empty()).await?;
    for (service, learned) in &changes {
        store::put_learned(&mut w.tx, service, learned.as_ref()).await?;
    }
    store::sweep_minutes(&mut w.tx, now - KEEP_MINUTES_MS).await?;
    store::sweep_rules(&mut w.tx, now - 3600 * 1000).await?;
    store::sweep_events(&mut w.tx, now - KEEP_EVENTS_MS).await?;
    let all = store::learned(&mut w.tx).await?;
    state.published(w.commit().await?);
    if !changes.is_empty() {
        tracing::info!(
            services = changes.len(),
            "defence: learned thresholds updated"
        );
    }
    Ok(all)
}

/// Runs a learning pass every `every` until the task is dropped.
pub async fn learn_loop(state: crate::api::AppState, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = learn_pass(&state).await {
            tracing::warn!(error = %e, "defence: learning pass failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_rule_keeps_the_busiest_sources() {
        let net = |i: u32| IpNet::from(std::net::IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()));
        let all: BTreeSet<IpNet> = (0..2000).map(net).collect();
        // The last ten addresses are the busiest.
        let rates: std::collections::HashMap<IpNet, u64> =
            (1990..2000).map(|i| (net(i), 5000)).collect();
        let kept = busiest(all, &rates);
        assert_eq!(kept.len(), MAX_RULE_SOURCES);
        assert!((1990..2000).all(|i| kept.contains(&net(i))));
        assert!(kept.windows(2).all(|w| w[0] < w[1]), "in address order");
    }
}
