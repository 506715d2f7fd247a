//! Node health as the prober decided it: the current state per node (`node_health`) and
//! every change with its time and reason (`health_events`, what SLA reports read).

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyConnection, Row};

use crate::error::StoreError;
use crate::store::Store;

/// Records that `node` became `healthy` (or not) at `at` (`at_ms` in milliseconds) for
/// `reason`, in the caller's (version-bumping) transaction. False, with nothing written,
/// when the node no longer exists.
pub async fn record_change(
    conn: &mut AnyConnection,
    node: &str,
    healthy: bool,
    at: &str,
    at_ms: i64,
    reason: &str,
) -> Result<bool, StoreError> {
    let exists = sqlx::query("SELECT 1 FROM nodes WHERE id = $1")
        .bind(node.to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if !exists {
        return Ok(false);
    }
    sqlx::query("DELETE FROM node_health WHERE node_id = $1")
        .bind(node.to_owned())
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO node_health (node_id, healthy, since, since_ms, reason) VALUES ($1, $2, $3, $4, $5)")
        .bind(node.to_owned())
        .bind(i64::from(healthy))
        .bind(at.to_owned())
        .bind(at_ms)
        .bind(reason.to_owned())
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO health_events (node_id, healthy, at, at_ms, reason) VALUES ($1, $2, $3, $4, $5)")
        .bind(node.to_owned())
        .bind(i64::from(healthy))
        .bind(at.to_owned())
        .bind(at_ms)
        .bind(reason.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// The stored state of every node that has one: (node, healthy). Rows that cannot be
/// read are skipped (the prober starts from what it can read).
pub async fn health_states(store: &Store) -> Result<Vec<(String, bool)>, StoreError> {
    let rows = sqlx::query("SELECT node_id, healthy FROM node_health")
        .fetch_all(store.pool())
        .await?;
    Ok(rows
        .iter()
        .filter_map(
            |r| match (r.try_get::<String, _>(0), r.try_get::<i64, _>(1)) {
                (Ok(node), Ok(h)) => Some((node, h != 0)),
                _ => None,
            },
        )
        .collect())
}

/// Every node's stored state with when it began: (node, healthy, since_ms).
pub async fn health_since(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, bool, i64)>, StoreError> {
    sqlx::query("SELECT node_id, healthy, since_ms FROM node_health ORDER BY node_id")
        .fetch_all(conn)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0)?,
                r.try_get::<i64, _>(1)? != 0,
                r.try_get::<i64, _>(2)?,
            ))
        })
        .collect()
}

/// Keeps a node's answer totals, the previous ones beside them (a new `run` starts again
/// from zero).
pub async fn record_answers(
    conn: &mut AnyConnection,
    node: &str,
    c: &lingjing_model::snapshot::AnswerCounts,
    now_ms: i64,
) -> Result<(), StoreError> {
    let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let run = clamp(c.run);
    let prev =
        sqlx::query("SELECT run, answered, failed, at_ms FROM node_answers WHERE node_id = $1")
            .bind(node)
            .fetch_optional(&mut *conn)
            .await?;
    let (pa, pf, pat) = match prev {
        Some(r) if r.try_get::<i64, _>(0)? == run => (
            r.try_get::<i64, _>(1)?,
            r.try_get::<i64, _>(2)?,
            r.try_get::<i64, _>(3)?,
        ),
        // A new run: its totals count from zero, from an unknown start.
        _ => (0, 0, now_ms),
    };
    sqlx::query("DELETE FROM node_answers WHERE node_id = $1")
        .bind(node)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO node_answers (node_id, run, answered, failed, at_ms, prev_answered, prev_failed, prev_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(node)
    .bind(run)
    .bind(clamp(c.answered))
    .bind(clamp(c.failed))
    .bind(now_ms)
    .bind(pa)
    .bind(pf)
    .bind(pat)
    .execute(conn)
    .await?;
    Ok(())
}

/// Per node, what it answered and failed between its last two heartbeats, and when
/// the later was: (node, answered, failed, at_ms).
pub async fn answer_deltas(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, u64, u64, i64)>, StoreError> {
    sqlx::query(
        "SELECT node_id, answered - prev_answered, failed - prev_failed, at_ms FROM node_answers \
         WHERE at_ms > prev_at_ms ORDER BY node_id",
    )
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok((
            r.try_get::<String, _>(0)?,
            u64::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0),
            u64::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
            r.try_get::<i64, _>(3)?,
        ))
    })
    .collect()
}

/// The nodes stored as down.
pub async fn unhealthy_nodes(conn: &mut AnyConnection) -> Result<BTreeSet<String>, StoreError> {
    Ok(
        sqlx::query("SELECT node_id FROM node_health WHERE healthy = 0")
            .fetch_all(conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?,
    )
}

/// Node `node`'s last `limit` health changes, latest first: (at, healthy, reason).
pub async fn node_history(
    conn: &mut AnyConnection,
    node: &str,
    limit: u32,
) -> Result<Vec<(String, bool, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT at, healthy, reason FROM health_events WHERE node_id = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
    )
    .bind(node.to_owned())
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get::<i64, _>(1)? != 0, r.try_get(2)?)))
        .collect()
}

/// Every health change before `before_ms`, per node, in order: (at_ms, healthy).
pub async fn health_changes(
    conn: &mut AnyConnection,
    before_ms: i64,
) -> Result<BTreeMap<String, Vec<(i64, bool)>>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, at_ms, healthy FROM health_events WHERE at_ms < $1 ORDER BY at_ms, id",
    )
    .bind(before_ms)
    .fetch_all(conn)
    .await?;
    let mut changes: BTreeMap<String, Vec<(i64, bool)>> = BTreeMap::new();
    for r in rows {
        changes
            .entry(r.try_get(0)?)
            .or_default()
            .push((r.try_get(1)?, r.try_get::<i64, _>(2)? != 0));
    }
    Ok(changes)
}
