//! The rollout driver: steps every running rollout from the database (issue 16). Each
//! step reads what the nodes last reported (`aiot_reports`, `node_status`), asks the pure
//! [`crate::rollout::step`], and writes the new progress and the slot targets it changes
//! in one transaction (bumping the configuration version only when targets change), so a
//! restart neither skips nor repeats a group. The progress is replaced only over the
//! progress that was read, so of two control-plane replicas only one steps a rollout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lingjing_model::Node;
use lingjing_model::aiot::SlotStage;
use sqlx::AnyConnection;

use crate::error::StoreError;
use crate::rollout::{self, Action, NodeReport, RolloutState, SlotPhase};
use crate::snapshot::Hub;
use crate::store::aiot::{self, ReportRecord};
use crate::store::rollouts::{self, Rollout, Stored};
use crate::store::{Store, get_doc};

/// What the nodes of a rollout say now.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// For [`rollout::step`]: per node that has heartbeated as an edge AI node.
    pub reports: BTreeMap<String, NodeReport>,
    /// Each node's last report of the rollout's slot.
    pub slots: BTreeMap<String, ReportRecord>,
    /// The targets this rollout set: per node, version and revision.
    pub targets: BTreeMap<String, (u32, u64)>,
    /// When each edge AI node last heartbeated (ms since the epoch).
    pub heartbeats: BTreeMap<String, i64>,
}

/// Reads what `r`'s nodes last reported. A node's phase is the rollout's only when its
/// report is of the revision this rollout set (or a later one) and of the rollout's
/// version: committed, failed, or else in progress; anything else is waiting.
pub async fn observe(conn: &mut AnyConnection, r: &Rollout) -> Result<Observed, StoreError> {
    let heartbeats: BTreeMap<String, i64> =
        aiot::heartbeats(&mut *conn).await?.into_iter().collect();
    let slots: BTreeMap<String, ReportRecord> = aiot::reports_for_slot(&mut *conn, &r.model)
        .await?
        .into_iter()
        .map(|rec| (rec.node.clone(), rec))
        .collect();
    let targets = rollouts::targets_of(&mut *conn, &r.id, &r.model).await?;
    let mut reports = BTreeMap::new();
    for node in r.plan.groups.iter().flatten() {
        let Some(&heartbeat_ms) = heartbeats.get(node) else {
            continue;
        };
        let mine = match (targets.get(node), slots.get(node)) {
            (Some((version, revision)), Some(rec))
                if *version == r.version
                    && rec.report.revision >= *revision
                    && rec.report.version == r.version =>
            {
                Some(&rec.report)
            }
            _ => None,
        };
        let phase = match mine.map(|rep| rep.stage) {
            None => SlotPhase::Waiting,
            Some(SlotStage::Committed) => SlotPhase::Committed,
            Some(SlotStage::Failed) => SlotPhase::Failed,
            Some(_) => SlotPhase::InProgress,
        };
        reports.insert(
            node.clone(),
            NodeReport {
                heartbeat_ms,
                phase,
                reason: mine.and_then(|rep| rep.reason.clone()),
            },
        );
    }
    Ok(Observed {
        reports,
        slots,
        targets,
        heartbeats,
    })
}

/// Carries out `actions` of rollout `r` as slot targets of revision `revision` (the
/// configuration version of the write holding `conn`). A node deleted since the rollout
/// was made is skipped.
pub async fn apply(
    conn: &mut AnyConnection,
    r: &Rollout,
    actions: &[Action],
    revision: u64,
) -> Result<(), StoreError> {
    for action in actions {
        let (node, version) = match action {
            Action::Assign(node) => (node, r.version),
            Action::RollBack(node) => (node, r.previous.get(node).copied().unwrap_or(0)),
        };
        if get_doc::<Node>(&mut *conn, node).await?.is_none() {
            tracing::warn!(rollout = %r.id, node = %node, "rollout: the node no longer exists; skipped");
            continue;
        }
        aiot::set_target(
            &mut *conn,
            node,
            &r.model,
            version,
            revision,
            &r.plan.probation,
            Some(&r.id),
        )
        .await?;
    }
    Ok(())
}

/// What one step of one rollout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stepped {
    pub rollout: String,
    pub state: RolloutState,
    /// The group now being rolled out.
    pub group: usize,
    /// Nodes given the version.
    pub assigned: Vec<String>,
    /// Nodes sent back to their previous version.
    pub rolled_back: Vec<String>,
    /// The configuration version the step made (when it changed targets).
    pub version: Option<u64>,
}

/// Steps every running rollout once at `now_ms`, publishing each new configuration
/// version to `hub`. A rollout another writer stepped meanwhile is left to it. Every
/// rollout is tried; the first failure is returned after the others were stepped.
pub async fn step_rollouts(
    store: &Store,
    hub: &Hub,
    now_ms: i64,
) -> Result<Vec<Stepped>, StoreError> {
    let running = {
        let mut conn = store.pool().acquire().await?;
        rollouts::in_state(&mut conn, RolloutState::Running).await?
    };
    let mut done = Vec::new();
    let mut failure = None;
    for stored in running {
        match step_one(store, &stored, now_ms).await {
            Ok(Some(stepped)) => {
                if let Some(v) = stepped.version {
                    hub.publish(v);
                }
                done.push(stepped);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(rollout = %stored.rollout.id, error = %e, "rollout: step failed; retried next time");
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

/// One step of one rollout; `None` when another writer changed its progress first.
async fn step_one(
    store: &Store,
    stored: &Stored,
    now_ms: i64,
) -> Result<Option<Stepped>, StoreError> {
    let r = &stored.rollout;
    let observed = {
        let mut conn = store.pool().acquire().await?;
        observe(&mut conn, r).await?
    };
    let (next, actions) = rollout::step(&r.plan, &r.progress, &observed.reports, now_ms);
    let mut w = store.write(!actions.is_empty()).await?;
    let now = crate::time::rfc3339_from_ms(now_ms);
    if !rollouts::update_progress(&mut w.tx, &r.id, &stored.progress_json, &next, &now).await? {
        return Ok(None);
    }
    apply(&mut w.tx, r, &actions, w.version.unwrap_or_default()).await?;
    let version = w.commit().await?;
    let mut stepped = Stepped {
        rollout: r.id.clone(),
        state: next.state,
        group: next.group,
        assigned: Vec::new(),
        rolled_back: Vec::new(),
        version,
    };
    for action in actions {
        match action {
            Action::Assign(n) => stepped.assigned.push(n),
            Action::RollBack(n) => stepped.rolled_back.push(n),
        }
    }
    if !stepped.assigned.is_empty() {
        tracing::info!(rollout = %r.id, model = %r.model, version = r.version, group = next.group, nodes = ?stepped.assigned, "rollout: group given the version");
    }
    if next.state != r.progress.state {
        tracing::info!(rollout = %r.id, model = %r.model, version = r.version, state = ?next.state, reason = ?next.reason, rolled_back = stepped.rolled_back.len(), "rollout: state changed");
    }
    Ok(Some(stepped))
}

/// Steps the running rollouts every `every`, for as long as the control plane runs.
pub async fn drive(store: Arc<Store>, hub: Arc<Hub>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A rollout's failure is logged where it happens and retried at the next tick.
        if let Err(e) = step_rollouts(&store, &hub, crate::time::now_ms()).await {
            tracing::debug!(error = %e, "rollout: a step failed");
        }
    }
}
