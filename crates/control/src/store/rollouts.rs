//! Fleet rollouts of a model version (`rollouts`): inserted with their plan fixed, read
//! newest first, and their progress replaced only over the progress the writer read (an
//! optimistic check, so two control-plane replicas never both step one rollout).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::StoreError;
use crate::rollout::{RolloutPlan, RolloutProgress, RolloutState};

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Rollout {
    /// A number, counting rollouts from 1.
    pub id: String,
    /// The model; its nodes' slot of that name is rolled out.
    pub model: String,
    pub version: u32,
    pub state: RolloutState,
    pub plan: RolloutPlan,
    pub progress: RolloutProgress,
    /// Per node, the version its slot had before (0: none): where a rollback sends it.
    pub previous: BTreeMap<String, u32>,
    /// RFC 3339.
    pub created_at: String,
    /// When the progress last changed (RFC 3339).
    pub updated_at: String,
}

/// A rollout and its progress exactly as read (what [`update_progress`] checks against).
#[derive(Debug, Clone)]
pub struct Stored {
    pub rollout: Rollout,
    pub progress_json: String,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("rollout {what}: {e}"))
}

fn state_text(state: RolloutState) -> Result<String, StoreError> {
    match serde_json::to_value(state).map_err(|e| corrupt("state", e))? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(corrupt("state", other)),
    }
}

fn json<T: Serialize>(what: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt(what, e))
}

const COLUMNS: &str = "id, model, version, plan, progress, previous, created_at, updated_at";

fn row_to_stored(r: &sqlx::any::AnyRow) -> Result<Stored, StoreError> {
    let progress_json: String = r.try_get(4)?;
    let progress: RolloutProgress =
        serde_json::from_str(&progress_json).map_err(|e| corrupt("progress", e))?;
    Ok(Stored {
        rollout: Rollout {
            id: r.try_get(0)?,
            model: r.try_get(1)?,
            version: u32::try_from(r.try_get::<i64, _>(2)?).map_err(|e| corrupt("version", e))?,
            state: progress.state,
            plan: serde_json::from_str(&r.try_get::<String, _>(3)?)
                .map_err(|e| corrupt("plan", e))?,
            progress,
            previous: serde_json::from_str(&r.try_get::<String, _>(5)?)
                .map_err(|e| corrupt("previous", e))?,
            created_at: r.try_get(6)?,
            updated_at: r.try_get(7)?,
        },
        progress_json,
    })
}

/// The id the next rollout gets (inside a write transaction, which serialises writers).
pub async fn next_id(conn: &mut AnyConnection) -> Result<String, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM rollouts")
        .fetch_one(conn)
        .await?;
    Ok((row.try_get::<i64, _>(0)? + 1).to_string())
}

/// Stores a new rollout.
pub async fn insert(conn: &mut AnyConnection, r: &Rollout) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO rollouts (id, model, version, state, plan, progress, previous, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(r.id.clone())
    .bind(r.model.clone())
    .bind(i64::from(r.version))
    .bind(state_text(r.progress.state)?)
    .bind(json("plan", &r.plan)?)
    .bind(json("progress", &r.progress)?)
    .bind(json("previous", &r.previous)?)
    .bind(r.created_at.clone())
    .bind(r.updated_at.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// Rollout `id`, if it exists.
pub async fn get(conn: &mut AnyConnection, id: &str) -> Result<Option<Stored>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM rollouts WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(row_to_stored).transpose()
}

/// The newest `limit` rollouts, newest first.
pub async fn list(conn: &mut AnyConnection, limit: i64) -> Result<Vec<Stored>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts ORDER BY created_at DESC, CAST(id AS BIGINT) DESC LIMIT $1"
    );
    let rows = sqlx::query(&sql).bind(limit).fetch_all(conn).await?;
    rows.iter().map(row_to_stored).collect()
}

/// Every rollout in `state`, oldest first.
pub async fn in_state(
    conn: &mut AnyConnection,
    state: RolloutState,
) -> Result<Vec<Stored>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts WHERE state = $1 ORDER BY created_at, CAST(id AS BIGINT)"
    );
    let rows = sqlx::query(&sql)
        .bind(state_text(state)?)
        .fetch_all(conn)
        .await?;
    rows.iter().map(row_to_stored).collect()
}

/// The rollouts of `model` that are running or paused, oldest first.
pub async fn active_of_model(
    conn: &mut AnyConnection,
    model: &str,
) -> Result<Vec<Stored>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts WHERE model = $1 AND state IN ($2, $3) \
         ORDER BY created_at, CAST(id AS BIGINT)"
    );
    let rows = sqlx::query(&sql)
        .bind(model.to_owned())
        .bind(state_text(RolloutState::Running)?)
        .bind(state_text(RolloutState::Paused)?)
        .fetch_all(conn)
        .await?;
    rows.iter().map(row_to_stored).collect()
}

/// Replaces rollout `id`'s progress (and state) with `progress`, only if it is still
/// `old` (the JSON as read): false when another writer changed it first.
pub async fn update_progress(
    conn: &mut AnyConnection,
    id: &str,
    old: &str,
    progress: &RolloutProgress,
    now: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE rollouts SET progress = $1, state = $2, updated_at = $3 WHERE id = $4 AND progress = $5",
    )
    .bind(json("progress", progress)?)
    .bind(state_text(progress.state)?)
    .bind(now.to_owned())
    .bind(id.to_owned())
    .bind(old.to_owned())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The slot targets rollout `id` set for slot `slot`: per node, version and revision.
pub async fn targets_of(
    conn: &mut AnyConnection,
    id: &str,
    slot: &str,
) -> Result<BTreeMap<String, (u32, u64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, version, revision FROM aiot_targets WHERE rollout = $1 AND slot = $2",
    )
    .bind(id.to_owned())
    .bind(slot.to_owned())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                (
                    u32::try_from(r.try_get::<i64, _>(1)?).map_err(|e| corrupt("target", e))?,
                    r.try_get::<i64, _>(2)?.max(0) as u64,
                ),
            ))
        })
        .collect()
}
