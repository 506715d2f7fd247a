//! Node liveness as agents report it: registration, heartbeats and the snapshot version
//! each node has applied per role. Not desired state: writing it bumps no version.

use std::collections::BTreeMap;

use lingjing_model::snapshot::{Heartbeat, NodeStatus};
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;
use crate::time::{now_ms, now_rfc3339};

/// A heartbeat as stored.
#[derive(Debug, Clone)]
pub struct HeartbeatRecord {
    pub node: String,
    pub beat: Heartbeat,
}

/// Records a heartbeat (the first one registers the node for that role).
pub async fn record_heartbeat(
    conn: &mut AnyConnection,
    rec: &HeartbeatRecord,
) -> Result<(), StoreError> {
    let now = now_rfc3339();
    let role = rec.beat.role.as_str();
    let updated = sqlx::query(
        "UPDATE node_status SET last_heartbeat = $1, last_heartbeat_ms = $2, applied_version = $3, agent = $4 \
         WHERE node_id = $5 AND role = $6",
    )
    .bind(now.clone())
    .bind(now_ms())
    .bind(rec.beat.applied_version as i64)
    .bind(rec.beat.agent.clone())
    .bind(rec.node.clone())
    .bind(role)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO node_status (node_id, role, registered_at, last_heartbeat, last_heartbeat_ms, applied_version, agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(rec.node.clone())
        .bind(role)
        .bind(now.clone())
        .bind(now)
        .bind(now_ms())
        .bind(rec.beat.applied_version as i64)
        .bind(rec.beat.agent.clone())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The status of every node that has reported, by node id.
pub async fn node_statuses(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<String, NodeStatus>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, role, registered_at, last_heartbeat, applied_version, agent FROM node_status",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: BTreeMap<String, NodeStatus> = BTreeMap::new();
    for r in rows {
        let node: String = r.try_get(0)?;
        let role: String = r.try_get(1)?;
        let registered: String = r.try_get(2)?;
        let beat: String = r.try_get(3)?;
        let applied: i64 = r.try_get(4)?;
        let agent: Option<String> = r.try_get(5)?;
        let st = out.entry(node).or_default();
        if st.registered_at.as_ref().is_none_or(|r| *r > registered) {
            st.registered_at = Some(registered);
        }
        if st.last_heartbeat.as_ref().is_none_or(|b| *b < beat) {
            st.last_heartbeat = Some(beat);
        }
        st.applied.insert(role, applied as u64);
        if agent.is_some() {
            st.agent = agent;
        }
    }
    for (node, (mbps, percent)) in crate::store::load_percents(&mut *conn).await? {
        let st = out.entry(node).or_default();
        st.load_mbps = Some(mbps.max(0) as u64);
        st.load_percent = Some(u8::try_from(percent).unwrap_or(u8::MAX));
    }
    let rows = sqlx::query("SELECT node_id, healthy, since, reason FROM node_health")
        .fetch_all(conn)
        .await?;
    for r in rows {
        let node: String = r.try_get(0)?;
        let st = out.entry(node).or_default();
        st.healthy = Some(r.try_get::<i64, _>(1)? != 0);
        st.health_since = Some(r.try_get(2)?);
        st.health_reason = Some(r.try_get(3)?);
    }
    Ok(out)
}

/// When each node's agent last heartbeated (its latest over all roles), in milliseconds,
/// by node id.
pub async fn last_heartbeats(
    conn: &mut AnyConnection,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let mut beats = std::collections::HashMap::new();
    for r in sqlx::query("SELECT node_id, MAX(last_heartbeat_ms) FROM node_status GROUP BY node_id")
        .fetch_all(conn)
        .await?
    {
        beats.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(beats)
}
