//! The platform watches itself (issue 18): node health, edges' and DNS servers' error
//! rates (from the answer totals in their heartbeats), storage data at risk and storage
//! nearly full, and traffic-defence events become alerts through the same rules
//! engine (`lingjing_alerts`) and the same `alerts` table as the sites' sensors, so the
//! operator has one alert list; their transitions go to the same receivers (signed
//! webhooks, `lingjing_monitor::notify::deliver`).
//!
//! Every [`EVERY`] a pass reads the signals with the times they were measured (a node's
//! health change, a storage node's report, a defence event's last report), so a
//! transition's times, and so its id, are the same whichever replica or restart computes
//! it: the `alert_events` table keeps each once. After a restart the series start from
//! the alerts still pending or firing (`Series::resumed`), so an alert is neither raised
//! again nor forgotten. Notifications are sent from `alert_events` rows of node
//! `control` not yet marked `notified_ms` (at least once: a crash between sending and
//! marking sends again, with the same `X-Lingjing-Event`).

use std::collections::HashMap;
use std::time::Duration;

use lingjing_alerts::rule::{Condition, Rule, Severity};
use lingjing_alerts::{Alert, Phase, Reading, Series, Transition};
use lingjing_model::monitor::{AlertEvent, AlertState, Receiver, Silence};
use lingjing_model::{Node, Service};

use crate::error::StoreError;
use crate::store::{Store, list_docs};

/// How often the signals are read.
pub const EVERY: Duration = Duration::from_secs(10);
/// The node name the control plane's own alert transitions are kept under.
pub const NODE: &str = "control";
/// Fewest answers between two heartbeats that make an error rate (fewer say nothing).
const MIN_ANSWERS: u64 = 100;
/// A defence event not reported for this long is over.
const DEFENCE_QUIET_MS: i64 = 10 * 60 * 1000;

/// The platform's rules.
pub fn rules() -> [Rule; 6] {
    let r = |id: &str, severity, condition| Rule {
        id: id.to_owned(),
        severity,
        condition,
        for_s: 0,
    };
    [
        // Health is debounced by the prober already.
        r(
            "node-down",
            Severity::Critical,
            Condition::Below {
                value: 0.5,
                clear: 0.5,
            },
        ),
        r(
            "storage-corrupt",
            Severity::Critical,
            Condition::Above {
                value: 0.5,
                clear: 0.5,
            },
        ),
        r(
            "storage-full",
            Severity::Warning,
            Condition::Above {
                value: 90.0,
                clear: 85.0,
            },
        ),
        r(
            "defence-attack",
            Severity::Warning,
            Condition::Above {
                value: 0.5,
                clear: 0.5,
            },
        ),
        // Percent of requests failed between two heartbeats.
        r(
            "edge-errors",
            Severity::Warning,
            Condition::Above {
                value: 5.0,
                clear: 2.0,
            },
        ),
        // Percent of queries answered SERVFAIL between two heartbeats.
        r(
            "dns-errors",
            Severity::Warning,
            Condition::Above {
                value: 5.0,
                clear: 2.0,
            },
        ),
    ]
}

/// One signal: what is measured, of what, when.
struct Signal {
    rule: &'static str,
    subject: String,
    site: String,
    labels: Vec<(String, String)>,
    reading: Reading,
}

/// The series of the platform's alerts, by key.
#[derive(Default)]
pub struct Watch {
    series: HashMap<String, Series>,
    resumed: bool,
}

/// Runs passes and notifications until aborted.
pub async fn watch_loop(store: std::sync::Arc<Store>, every: Duration) {
    let client = match lingjing_monitor::notify::http_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the notifier's HTTP client: the platform's alerts are not watched");
            return;
        }
    };
    let metrics = lingjing_monitor::metrics::Metrics::default();
    let mut watch = Watch::default();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = pass(&store, &mut watch, crate::time::now_ms()).await {
            tracing::warn!(error = %e, "platform alerts: a pass failed; retried");
        }
        if let Err(e) = notify(&store, &client, &metrics).await {
            tracing::warn!(error = %e, "platform alerts: notifying failed; retried");
        }
    }
}

/// Reads the signals and keeps the transitions they make; returns them.
pub async fn pass(
    store: &Store,
    watch: &mut Watch,
    now_ms: i64,
) -> Result<Vec<AlertEvent>, StoreError> {
    let rules = rules();
    let mut conn = store.pool().acquire().await?;
    if !watch.resumed {
        let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
        for (key, state, since) in crate::store::monitor::open_alerts(&mut conn, &ids).await? {
            let phase = if state == "firing" {
                Phase::Firing { since_ms: since }
            } else {
                Phase::Pending { since_ms: since }
            };
            watch.series.insert(key, Series::resumed(phase));
        }
        watch.resumed = true;
    }
    let signals = signals(&mut conn, now_ms).await?;
    let silences: Vec<lingjing_alerts::Silence> = list_docs::<Silence>(&mut conn)
        .await?
        .iter()
        .map(Silence::to_alerts)
        .collect();
    drop(conn);
    let mut events = Vec::new();
    for s in signals {
        let Some(rule) = rules.iter().find(|r| r.id == s.rule) else {
            continue;
        };
        let key = lingjing_alerts::alert::key(s.rule, &s.subject);
        let series = watch.series.entry(key.clone()).or_default();
        let before = series.phase();
        let Some(t) = series.observe(rule, s.reading) else {
            continue;
        };
        let (state, since_ms, at_ms) = match t {
            Transition::Pending { since_ms } => (AlertState::Pending, since_ms, since_ms),
            Transition::Cancelled { at_ms } => {
                let since = match before {
                    Phase::Pending { since_ms } => since_ms,
                    _ => at_ms,
                };
                (AlertState::Cancelled, since, at_ms)
            }
            Transition::Firing { since_ms } => (AlertState::Firing, since_ms, since_ms),
            Transition::Resolved { fired_ms, at_ms } => (AlertState::Resolved, fired_ms, at_ms),
        };
        let mut labels = s.labels;
        labels.push(("kind".into(), "platform".into()));
        let silenced = lingjing_alerts::silenced(
            &silences,
            &Alert {
                rule: rule.id.clone(),
                sensor: s.subject.clone(),
                site: s.site.clone(),
                severity: rule.severity,
                phase: series.phase(),
                labels: labels.clone(),
                acknowledged: None,
                escalated: false,
            },
            now_ms,
        );
        let mut labels: std::collections::BTreeMap<String, String> = labels.into_iter().collect();
        labels.insert("rule".into(), rule.id.clone());
        labels.insert("site".into(), s.site.clone());
        events.push(AlertEvent {
            key,
            rule: rule.id.clone(),
            sensor: s.subject,
            site: s.site,
            severity: rule.severity,
            state,
            since_ms,
            at_ms,
            value: Some(s.reading.value),
            labels,
            silenced,
        });
    }
    if !events.is_empty() {
        let mut w = store.write(false).await?;
        for e in &events {
            if crate::store::monitor::record_alert(&mut w.tx, NODE, e).await? {
                tracing::info!(alert = %e.key, state = e.state.as_str(), "platform alert");
            }
        }
        w.commit().await?;
    }
    Ok(events)
}

/// The platform's signals now, each with the time it was measured.
async fn signals(conn: &mut sqlx::AnyConnection, now_ms: i64) -> Result<Vec<Signal>, StoreError> {
    let nodes = list_docs::<Node>(&mut *conn).await?;
    let site_of = |node: &str| {
        nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.site.clone())
            .unwrap_or_else(|| "platform".into())
    };
    let mut out = Vec::new();
    for (node, healthy, since_ms) in crate::store::health::health_since(&mut *conn).await? {
        out.push(Signal {
            rule: "node-down",
            site: site_of(&node),
            labels: vec![("node".into(), node.clone())],
            subject: node,
            reading: Reading {
                at_ms: since_ms,
                value: if healthy { 1.0 } else { 0.0 },
            },
        });
    }
    for (node, (report, at)) in crate::store::storage::reports(&mut *conn).await? {
        let Some(at_ms) = crate::time::parse_rfc3339_ms(&at) else {
            continue;
        };
        let site = site_of(&node);
        let labels = vec![("node".to_owned(), node.clone())];
        out.push(Signal {
            rule: "storage-corrupt",
            subject: node.clone(),
            site: site.clone(),
            labels: labels.clone(),
            reading: Reading {
                at_ms,
                value: report.corrupt_found as f64,
            },
        });
        let total = report.used_bytes.saturating_add(report.free_bytes);
        if total > 0 {
            out.push(Signal {
                rule: "storage-full",
                subject: node,
                site,
                labels,
                reading: Reading {
                    at_ms,
                    value: report.used_bytes as f64 * 100.0 / total as f64,
                },
            });
        }
    }
    // Error rates of edges and DNS servers between their last two heartbeats.
    for (node, answered, failed, at_ms) in crate::store::health::answer_deltas(&mut *conn).await? {
        if answered < MIN_ANSWERS {
            continue;
        }
        let Some(n) = nodes.iter().find(|n| n.id == node) else {
            continue;
        };
        let rule = if n.roles.contains(&lingjing_model::NodeRole::Edge) {
            "edge-errors"
        } else if n.roles.contains(&lingjing_model::NodeRole::Dns) {
            "dns-errors"
        } else {
            continue;
        };
        out.push(Signal {
            rule,
            site: n.site.clone(),
            labels: vec![("node".into(), node.clone())],
            subject: node,
            reading: Reading {
                at_ms,
                value: failed as f64 * 100.0 / answered as f64,
            },
        });
    }
    // The newest defence event of each service: under attack while it is reported.
    let services = list_docs::<Service>(&mut *conn).await?;
    let mut seen = std::collections::HashSet::new();
    for e in crate::store::defence::events(&mut *conn, None, None, 500).await? {
        if !seen.insert(e.service.clone()) || !services.iter().any(|s| s.id == e.service) {
            continue;
        }
        let quiet_from = e.last_ms.saturating_add(DEFENCE_QUIET_MS);
        let (value, at_ms) = match e.ended_ms {
            None if quiet_from > now_ms => (1.0, e.started_ms),
            None => (0.0, quiet_from),
            Some(end) => (0.0, end),
        };
        out.push(Signal {
            rule: "defence-attack",
            subject: e.service.clone(),
            site: "platform".into(),
            labels: vec![
                ("service".into(), e.service.clone()),
                ("tenant".into(), e.tenant.clone()),
            ],
            reading: Reading { at_ms, value },
        });
    }
    Ok(out)
}

/// Sends the control plane's transitions not yet sent (firing, resolved; not silenced)
/// to the receivers whose routes match, and marks them sent.
pub async fn notify(
    store: &Store,
    client: &reqwest::Client,
    metrics: &lingjing_monitor::metrics::Metrics,
) -> Result<usize, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let pending = crate::store::monitor::unnotified(&mut conn, NODE, 100).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let receivers = list_docs::<Receiver>(&mut conn).await?;
    drop(conn);
    let mut sent = 0;
    for (id, e) in pending {
        let wanted = matches!(
            e.state,
            AlertState::Firing | AlertState::Resolved | AlertState::Escalated
        ) && !e.silenced;
        if wanted {
            let note = lingjing_monitor::notify::Notification {
                id: id.clone(),
                node: NODE,
                alert: &e,
            };
            for r in receivers
                .iter()
                .filter(|r| r.routes(&e.site, e.tenant(), e.severity))
            {
                lingjing_monitor::notify::deliver(client, metrics, r, &note).await;
            }
            sent += 1;
        }
        let mut w = store.write(false).await?;
        crate::store::monitor::mark_notified(&mut w.tx, &id, crate::time::now_ms()).await?;
        w.commit().await?;
    }
    Ok(sent)
}
