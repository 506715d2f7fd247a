//! Active health checking: the control plane probes every edge, parent and storage
//! node's `/healthz` on its admin port, and after `fall` failures in a row marks it down (after
//! `rise` successes, up again). Every change is stored with its time — that of the first
//! check of the streak that made it — and reason (uptime
//! and SLA reports are computed from these) and bumps the configuration version, so DNS
//! stops handing out a dead node within a few seconds.
//!
//! Heartbeats count too: a node whose agent has registered but not heartbeated for
//! `heartbeat_timeout` is down even if its `/healthz` answers (its snapshot is going
//! stale), and nodes that are not probed (DNS-only nodes) are judged by heartbeats alone.
//! Staleness is measured from the prober's start at the earliest, so a restarted control
//! plane does not mark every node down for the time it was away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lingjing_model::{Node, NodeRole};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::StoreError;
use crate::snapshot::Hub;
use crate::store::ipam::node_addresses;
use crate::store::{Store, last_heartbeats, list_docs};
use crate::time::{now_ms, rfc3339_from_ms};

/// How nodes are probed.
#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures in a row that mark a node down.
    pub fall: u32,
    /// Successes in a row that mark it up again.
    pub rise: u32,
    /// A registered agent silent for this long fails its node's checks.
    pub heartbeat_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            fall: 2,
            rise: 3,
            heartbeat_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Default)]
struct Tracker {
    /// The stored state (`None`: never recorded).
    healthy: Option<bool>,
    ok: u32,
    failed: u32,
    /// When the first check of the current streak (passes or failures) started: the
    /// time a change is recorded at, so recorded outages are accurate to one interval
    /// rather than `fall` intervals late.
    streak_since_ms: i64,
}

/// One probe: `GET /healthz` must answer 200 within `timeout`.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream
            .write_all(
                b"GET /healthz HTTP/1.1\r\nHost: lingjing-health\r\nConnection: close\r\n\r\n",
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let read = stream
                .read(&mut buf[n..])
                .await
                .map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            n += read;
        }
        let head = String::from_utf8_lossy(&buf[..n]);
        match head.split_whitespace().nth(1) {
            Some("200") => Ok(()),
            Some(code) => Err(format!("/healthz answered {code}")),
            None => Err("no HTTP answer".to_owned()),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// A node to check: the admin address to probe (edge and parent nodes) and when its
/// agent last heartbeated (`None`: never registered).
struct Target {
    node: String,
    probe: Option<SocketAddr>,
    last_heartbeat_ms: Option<i64>,
}

/// The nodes to check this round.
async fn targets(store: &Store) -> Result<Vec<Target>, StoreError> {
    let mut conn = store.pool().acquire().await?;
    let mut addresses = node_addresses(&mut conn).await?;
    let beats = last_heartbeats(&mut conn).await?;
    Ok(list_docs::<Node>(&mut conn)
        .await?
        .into_iter()
        .map(|n| {
            let probed = n
                .roles
                .iter()
                .any(|r| matches!(r, NodeRole::Edge | NodeRole::Parent | NodeRole::Storage));
            let probe = addresses
                .remove(&n.id)
                .and_then(|a| a.into_iter().next())
                .filter(|_| probed)
                .map(|a| SocketAddr::new(a, n.ports.admin));
            Target {
                last_heartbeat_ms: beats.get(&n.id).copied(),
                probe,
                node: n.id,
            }
        })
        .collect())
}

/// One node's check: its probe (if it is probed), then its heartbeat (if its agent has
/// registered). `None`: nothing to judge it by.
async fn check(
    target: &Target,
    config: HealthConfig,
    started_ms: i64,
) -> Option<Result<(), String>> {
    if let Some(addr) = target.probe
        && let Err(why) = probe(addr, config.timeout).await
    {
        return Some(Err(format!("probe {addr}: {why}")));
    }
    if let Some(beat) = target.last_heartbeat_ms {
        let silent = now_ms() - beat.max(started_ms);
        let limit = i64::try_from(config.heartbeat_timeout.as_millis()).unwrap_or(i64::MAX);
        if silent > limit {
            return Some(Err(format!("no heartbeat for {} s", silent / 1000)));
        }
        if beat < started_ms {
            // Not heard from since this control plane started, and still within the
            // grace: no verdict, so a node stored down for silence is not marked up
            // by its probes alone before its agent is back.
            return None;
        }
        return Some(Ok(()));
    }
    target.probe.map(|_| Ok(()))
}

/// Records a state change; returns the new configuration version.
async fn record(
    store: &Store,
    node: &str,
    healthy: bool,
    reason: &str,
    at_ms: i64,
) -> Result<Option<u64>, StoreError> {
    let mut w = store.write(true).await?;
    let at = rfc3339_from_ms(at_ms);
    if !crate::store::health::record_change(&mut w.tx, node, healthy, &at, at_ms, reason).await? {
        return Ok(None);
    }
    w.commit().await
}

/// Starts the prober.
pub fn spawn(store: Arc<Store>, hub: Arc<Hub>, config: HealthConfig) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut trackers: HashMap<String, Tracker> = HashMap::new();
        if let Ok(states) = crate::store::health::health_states(&store).await {
            for (node, healthy) in states {
                trackers.entry(node).or_default().healthy = Some(healthy);
            }
        }
        let started_ms = now_ms();
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Ok(targets) = targets(&store).await else {
                continue;
            };
            let mut checks = JoinSet::new();
            for target in targets {
                checks.spawn(async move {
                    let at = now_ms();
                    let result = check(&target, config, started_ms).await;
                    (target.node, at, result)
                });
            }
            while let Some(Ok((node, at, result))) = checks.join_next().await {
                let Some(result) = result else {
                    continue;
                };
                let t = trackers.entry(node.clone()).or_default();
                let change = match result {
                    Ok(()) => {
                        if t.ok == 0 {
                            t.streak_since_ms = at;
                        }
                        t.ok += 1;
                        t.failed = 0;
                        match t.healthy {
                            None => Some((true, "first check passed".to_owned())),
                            Some(false) if t.ok >= config.rise => {
                                Some((true, format!("{} passed checks", t.ok)))
                            }
                            _ => None,
                        }
                    }
                    Err(why) => {
                        if t.failed == 0 {
                            t.streak_since_ms = at;
                        }
                        t.failed += 1;
                        t.ok = 0;
                        match t.healthy {
                            Some(true) | None if t.failed >= config.fall => {
                                Some((false, format!("{} failed checks: {why}", t.failed)))
                            }
                            _ => None,
                        }
                    }
                };
                if let Some((healthy, reason)) = change {
                    match record(&store, &node, healthy, &reason, t.streak_since_ms).await {
                        Ok(version) => {
                            t.healthy = Some(healthy);
                            if let Some(v) = version {
                                hub.publish(v);
                            }
                            tracing::warn!(node = %node, healthy, reason = %reason, "node health changed");
                        }
                        Err(e) => {
                            tracing::error!(node = %node, error = %e, "could not record a health change")
                        }
                    }
                }
            }
        }
    })
}
