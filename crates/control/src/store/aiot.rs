//! Edge AI on nodes: each node's slot targets (desired state, `aiot_targets`) and the
//! slots its newest heartbeat reported (`aiot_reports`).

use lingjing_model::aiot::{Probation, SlotReport, SlotTarget};
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Every node's slot targets, by node and slot.
pub async fn targets(conn: &mut AnyConnection) -> Result<Vec<SlotTarget>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, slot, version, revision, probation FROM aiot_targets ORDER BY node_id, slot",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SlotTarget {
                node: r.try_get(0)?,
                slot: r.try_get(1)?,
                version: u32::try_from(r.try_get::<i64, _>(2)?)
                    .map_err(|e| corrupt("aiot target version", e))?,
                revision: r.try_get::<i64, _>(3)?.max(0) as u64,
                probation: serde_json::from_str(&r.try_get::<String, _>(4)?)
                    .map_err(|e| corrupt("aiot target probation", e))?,
            })
        })
        .collect()
}

/// The target of `node`'s `slot`, if any.
pub async fn target(
    conn: &mut AnyConnection,
    node: &str,
    slot: &str,
) -> Result<Option<SlotTarget>, StoreError> {
    let row = sqlx::query(
        "SELECT version, revision, probation FROM aiot_targets WHERE node_id = $1 AND slot = $2",
    )
    .bind(node.to_owned())
    .bind(slot.to_owned())
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(SlotTarget {
            node: node.to_owned(),
            slot: slot.to_owned(),
            version: u32::try_from(r.try_get::<i64, _>(0)?)
                .map_err(|e| corrupt("aiot target version", e))?,
            revision: r.try_get::<i64, _>(1)?.max(0) as u64,
            probation: serde_json::from_str(&r.try_get::<String, _>(2)?)
                .map_err(|e| corrupt("aiot target probation", e))?,
        })
    })
    .transpose()
}

/// Sets `node`'s `slot` to `version` (0: nothing) as revision `revision` (the
/// configuration version of the write doing it), on behalf of `rollout`.
pub async fn set_target(
    conn: &mut AnyConnection,
    node: &str,
    slot: &str,
    version: u32,
    revision: u64,
    probation: &Probation,
    rollout: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM aiot_targets WHERE node_id = $1 AND slot = $2")
        .bind(node.to_owned())
        .bind(slot.to_owned())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO aiot_targets (node_id, slot, version, revision, probation, rollout) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(node.to_owned())
    .bind(slot.to_owned())
    .bind(i64::from(version))
    .bind(revision as i64)
    .bind(serde_json::to_string(probation).map_err(|e| corrupt("probation", e))?)
    .bind(rollout.map(ToOwned::to_owned))
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps the slots `node`'s heartbeat reported (replacing what it reported before).
pub async fn record_reports(
    conn: &mut AnyConnection,
    node: &str,
    reports: &[SlotReport],
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM aiot_reports WHERE node_id = $1")
        .bind(node.to_owned())
        .execute(&mut *conn)
        .await?;
    for r in reports {
        sqlx::query(
            "INSERT INTO aiot_reports (node_id, slot, body, reported_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(node.to_owned())
        .bind(r.slot.clone())
        .bind(serde_json::to_string(r).map_err(|e| corrupt("slot report", e))?)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A slot as a node reported it, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    pub node: String,
    pub report: SlotReport,
    pub reported_ms: i64,
}

/// What nodes last reported for `slot`.
pub async fn reports_for_slot(
    conn: &mut AnyConnection,
    slot: &str,
) -> Result<Vec<ReportRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, body, reported_ms FROM aiot_reports WHERE slot = $1 ORDER BY node_id",
    )
    .bind(slot.to_owned())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ReportRecord {
                node: r.try_get(0)?,
                report: serde_json::from_str(&r.try_get::<String, _>(1)?)
                    .map_err(|e| corrupt("slot report", e))?,
                reported_ms: r.try_get(2)?,
            })
        })
        .collect()
}

/// When each node with the `aiot` role last heartbeated (ms since the epoch).
pub async fn heartbeats(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, last_heartbeat_ms FROM node_status WHERE role = 'aiot' ORDER BY node_id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
