//! Fleet rollouts of a model version (operator only): `POST /v1/rollouts` fixes the groups
//! (sites interleaved: a canary, then cumulative shares of the nodes) and what each node
//! goes back to; `GET /v1/rollouts` (newest first) and `GET /v1/rollouts/{id}` show the
//! plan, the progress, each group's committed count and each node as it reported;
//! `POST /v1/rollouts/{id}/pause`, `/resume` and `/abort` (every touched node back). A
//! new rollout of a model supersedes its running or paused one. The steps themselves are
//! [`crate::rollout_driver`]'s.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use lingjing_model::aiot::{Probation, SlotReport};
use lingjing_model::ident::check_id;
use lingjing_model::validate::check_max_items;
use lingjing_model::{Node, NodeRole, Region, Site, Validate};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{ApiJson, AppState};
use crate::auth::Caller;
use crate::error::{ApiError, StoreError};
use crate::rollout::{self, Action, RolloutPlan, RolloutProgress, RolloutState, SlotPhase};
use crate::rollout_driver::{Observed, apply, observe};
use crate::store::rollouts::{self, Rollout, Stored};
use crate::store::{aiot, list_docs, models};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/rollouts", get(list).post(create))
        .route("/v1/rollouts/{id}", get(show))
        .route("/v1/rollouts/{id}/pause", post(pause))
        .route("/v1/rollouts/{id}/resume", post(resume))
        .route("/v1/rollouts/{id}/abort", post(abort))
}

/// Most rollouts a list shows.
const LIST_LIMIT: i64 = 100;
/// Most sites, regions or shares a rollout names.
const MAX_NAMED: usize = 1000;

fn one() -> u32 {
    1
}
fn default_percents() -> Vec<u8> {
    vec![10, 50, 100]
}
fn hundred() -> u8 {
    100
}
fn ten_minutes() -> u32 {
    600
}
fn thirty() -> u32 {
    30
}

/// A rollout to make.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRollout {
    /// The model; its nodes' slot of that name is rolled out.
    pub model: String,
    /// A registered version of it.
    pub version: u32,
    /// Nodes in the first group (default 1; 0: none).
    #[serde(default = "one")]
    pub canary: u32,
    /// After the canary, groups up to these cumulative shares of the nodes (percent,
    /// ascending, rounded up); the last group always reaches every node.
    #[serde(default = "default_percents")]
    pub percents: Vec<u8>,
    /// Only the edge AI nodes of these sites (and of `regions`); default: every node
    /// with the `aiot` role.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Only the edge AI nodes of sites in these regions (or below them).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Share of a group (percent) that must have committed before the next group starts.
    #[serde(default = "hundred")]
    pub success_percent: u8,
    /// Failed nodes that stop the rollout and roll every touched node back.
    #[serde(default = "one")]
    pub error_threshold: u32,
    /// Heartbeating time a node has to commit the version, in seconds.
    #[serde(default = "ten_minutes")]
    pub node_deadline_s: u32,
    /// A node silent this long is offline: pending, its deadline stopped.
    #[serde(default = "thirty")]
    pub offline_after_s: u32,
    /// What the version must do on each node before it commits there.
    #[serde(default)]
    pub probation: Probation,
}

/// Where a node of a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Its group has not started.
    NotStarted,
    /// Given the version, not yet committed.
    InProgress,
    /// Given the version, silent longer than `offline_after`: pending, never failed for it.
    PendingOffline,
    Committed,
    Failed,
    /// Sent back to its previous version (the rollout was rolled back or aborted).
    RolledBack,
    /// Its slot was given something else since (by a newer rollout), or the node is gone.
    Replaced,
}

/// One node of a rollout.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutNode {
    pub node: String,
    /// Its site (none when the node was deleted since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Its group (0: the first).
    pub group: usize,
    pub state: NodeState,
    /// Version and revision of the slot target this rollout set, if it set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<u64>,
    /// The version a rollback sends it to (0: nothing).
    pub previous: u32,
    /// No heartbeat within `offline_after`.
    pub offline: bool,
    /// Its last heartbeat as an edge AI node (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
    /// What it last reported for the slot (stage, version, reason, probation figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<SlotReport>,
    /// Why the rollout counts it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// One group's count.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutGroup {
    pub index: usize,
    pub total: usize,
    pub committed: usize,
    pub failed: usize,
    /// Given the version and offline.
    pub pending_offline: usize,
    /// Its nodes were given the version.
    pub started: bool,
}

/// A rollout with its groups' counts and (for one rollout) its nodes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutStatus {
    #[serde(flatten)]
    pub rollout: Rollout,
    pub groups: Vec<RolloutGroup>,
    /// Every node of the plan, in group order (`GET /v1/rollouts/{id}` and the answers of
    /// the changes; lists leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<RolloutNode>>,
}

/// The nodes' sites, by node id.
async fn node_sites(conn: &mut AnyConnection) -> Result<BTreeMap<String, String>, StoreError> {
    Ok(list_docs::<Node>(conn)
        .await?
        .into_iter()
        .map(|n| (n.id, n.site))
        .collect())
}

/// `r` as the API shows it at `now_ms`.
fn view(
    r: Rollout,
    seen: &Observed,
    sites: &BTreeMap<String, String>,
    now_ms: i64,
    with_nodes: bool,
) -> RolloutStatus {
    let stopped_back = matches!(
        r.progress.state,
        RolloutState::RolledBack | RolloutState::Aborted
    );
    let mut groups = Vec::with_capacity(r.plan.groups.len());
    let mut nodes = Vec::new();
    for (index, members) in r.plan.groups.iter().enumerate() {
        let mut g = RolloutGroup {
            index,
            total: members.len(),
            committed: 0,
            failed: 0,
            pending_offline: 0,
            started: false,
        };
        for node in members {
            let heartbeat = seen.heartbeats.get(node).copied();
            let offline = heartbeat.is_none_or(|t| now_ms - t > r.plan.offline_after_ms);
            let touched = r.progress.active_ms.contains_key(node);
            let failure = r.progress.failed.get(node).cloned();
            let committed = seen
                .reports
                .get(node)
                .is_some_and(|rep| rep.phase == SlotPhase::Committed);
            let state = if !touched {
                NodeState::NotStarted
            } else if failure.is_some() {
                NodeState::Failed
            } else if !seen.targets.contains_key(node) {
                NodeState::Replaced
            } else if stopped_back {
                NodeState::RolledBack
            } else if committed {
                NodeState::Committed
            } else if offline {
                NodeState::PendingOffline
            } else {
                NodeState::InProgress
            };
            g.started |= touched;
            match state {
                NodeState::Committed => g.committed += 1,
                NodeState::Failed => g.failed += 1,
                NodeState::PendingOffline => g.pending_offline += 1,
                _ => {}
            }
            if with_nodes {
                let target = seen.targets.get(node);
                nodes.push(RolloutNode {
                    node: node.clone(),
                    site: sites.get(node).cloned(),
                    group: index,
                    state,
                    target_version: target.map(|t| t.0),
                    target_revision: target.map(|t| t.1),
                    previous: r.previous.get(node).copied().unwrap_or(0),
                    offline,
                    last_heartbeat: heartbeat.map(crate::time::rfc3339_from_ms),
                    report: seen.slots.get(node).map(|rec| rec.report.clone()),
                    failure,
                });
            }
        }
        groups.push(g);
    }
    RolloutStatus {
        rollout: r,
        groups,
        nodes: with_nodes.then_some(nodes),
    }
}

/// `r` as the API shows it now, read on `conn`.
async fn status(
    conn: &mut AnyConnection,
    r: Rollout,
    with_nodes: bool,
) -> Result<RolloutStatus, StoreError> {
    let seen = observe(&mut *conn, &r).await?;
    let sites = if with_nodes {
        node_sites(conn).await?
    } else {
        BTreeMap::new()
    };
    Ok(view(r, &seen, &sites, crate::time::now_ms(), with_nodes))
}

/// The checks that need no database.
fn check_request(req: &NewRollout) -> Result<(), ApiError> {
    check_id("model", &req.model)?;
    if req.version == 0 {
        return Err(ApiError::invalid(
            "version",
            "a registered version (versions start at 1; 0 would serve nothing)",
        ));
    }
    if req.percents.is_empty() {
        return Err(ApiError::invalid(
            "percents",
            "give at least one share, e.g. [10, 50, 100]",
        ));
    }
    check_max_items("percents", &req.percents, 100)?;
    for (i, p) in req.percents.iter().enumerate() {
        if !(1..=100).contains(p) {
            return Err(ApiError::invalid(
                format!("percents[{i}]"),
                "a share of the nodes from 1 to 100 (percent)",
            ));
        }
        if i > 0 && *p <= req.percents[i - 1] {
            return Err(ApiError::invalid(
                format!("percents[{i}]"),
                "shares are cumulative: each must be more than the one before",
            ));
        }
    }
    for (field, list) in [("sites", &req.sites), ("regions", &req.regions)] {
        check_max_items(field, list, MAX_NAMED)?;
        let mut seen = BTreeSet::new();
        for (i, id) in list.iter().enumerate() {
            check_id(&format!("{field}[{i}]"), id)?;
            if !seen.insert(id) {
                return Err(ApiError::invalid(
                    format!("{field}[{i}]"),
                    format!("`{id}` is named twice"),
                ));
            }
        }
    }
    if !(1..=100).contains(&req.success_percent) {
        return Err(ApiError::invalid(
            "success_percent",
            "a share of a group from 1 to 100 (percent)",
        ));
    }
    if req.error_threshold == 0 {
        return Err(ApiError::invalid(
            "error_threshold",
            "at least 1 (the failed nodes that roll the rollout back)",
        ));
    }
    if !(1..=7 * 86_400).contains(&req.node_deadline_s) {
        return Err(ApiError::invalid(
            "node_deadline_s",
            "from 1 second to a week (604800)",
        ));
    }
    if !(1..=86_400).contains(&req.offline_after_s) {
        return Err(ApiError::invalid(
            "offline_after_s",
            "from 1 second to a day (86400)",
        ));
    }
    req.probation
        .validate()
        .map_err(|e| ApiError::Invalid(e.within("probation")))?;
    Ok(())
}

/// Whether `region` is `within` or below it (loops are refused when regions are written;
/// a step limit guards anyway).
fn inside<'a>(
    regions: &'a BTreeMap<String, Region>,
    mut region: Option<&'a str>,
    within: &str,
) -> bool {
    for _ in 0..64 {
        match region {
            Some(r) if r == within => return true,
            Some(r) => region = regions.get(r).and_then(|x| x.parent.as_deref()),
            None => return false,
        }
    }
    false
}

/// The edge AI nodes `req` names, each with its site.
async fn chosen_nodes(
    conn: &mut AnyConnection,
    req: &NewRollout,
) -> Result<Vec<(String, String)>, ApiError> {
    let aiot: Vec<Node> = list_docs::<Node>(&mut *conn)
        .await?
        .into_iter()
        .filter(|n| n.roles.contains(&NodeRole::Aiot))
        .collect();
    if req.sites.is_empty() && req.regions.is_empty() {
        if aiot.is_empty() {
            return Err(ApiError::invalid(
                "sites",
                "no node has the `aiot` role: give the edge AI nodes that role first",
            ));
        }
        return Ok(aiot.into_iter().map(|n| (n.id, n.site)).collect());
    }
    let sites: BTreeMap<String, Site> = list_docs::<Site>(&mut *conn)
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let regions: BTreeMap<String, Region> = list_docs::<Region>(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let site_region = |site: &str| sites.get(site).map(|s| s.region.as_str());
    let mut chosen = BTreeSet::new();
    for (i, site) in req.sites.iter().enumerate() {
        let field = format!("sites[{i}]");
        if !sites.contains_key(site) {
            return Err(ApiError::invalid(field, format!("no site `{site}`")));
        }
        let mine: Vec<&String> = aiot
            .iter()
            .filter(|n| &n.site == site)
            .map(|n| &n.id)
            .collect();
        if mine.is_empty() {
            return Err(ApiError::invalid(
                field,
                format!("site `{site}` has no node with the `aiot` role"),
            ));
        }
        chosen.extend(mine);
    }
    for (i, region) in req.regions.iter().enumerate() {
        let field = format!("regions[{i}]");
        if !regions.contains_key(region) {
            return Err(ApiError::invalid(field, format!("no region `{region}`")));
        }
        let mine: Vec<&String> = aiot
            .iter()
            .filter(|n| inside(&regions, site_region(&n.site), region))
            .map(|n| &n.id)
            .collect();
        if mine.is_empty() {
            return Err(ApiError::invalid(
                field,
                format!("no node with the `aiot` role is at a site in region `{region}`"),
            ));
        }
        chosen.extend(mine);
    }
    Ok(aiot
        .iter()
        .filter(|n| chosen.contains(&n.id))
        .map(|n| (n.id.clone(), n.site.clone()))
        .collect())
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewRollout>,
) -> Result<(StatusCode, Json<RolloutStatus>), ApiError> {
    caller.require_operator()?;
    check_request(&req)?;
    // A version: the id is counted, and the writes of the rollouts it supersedes are
    // ordered before it on every backend.
    let mut w = state.store.write(true).await?;
    if models::get(&mut w.tx, &req.model, req.version)
        .await?
        .is_none()
    {
        return Err(ApiError::invalid(
            "version",
            format!(
                "model `{}` has no version {}: register it first (lingjing model push)",
                req.model, req.version
            ),
        ));
    }
    let nodes = chosen_nodes(&mut w.tx, &req).await?;
    let canary = usize::try_from(req.canary).unwrap_or(usize::MAX);
    if canary > nodes.len() {
        return Err(ApiError::invalid(
            "canary",
            format!("more than the {} nodes chosen", nodes.len()),
        ));
    }
    if req.error_threshold as usize > nodes.len() {
        return Err(ApiError::invalid(
            "error_threshold",
            format!(
                "more than the {} nodes chosen: failures could never stop it",
                nodes.len()
            ),
        ));
    }
    let plan = RolloutPlan {
        groups: rollout::groups(&nodes, canary, &req.percents),
        success_percent: req.success_percent,
        error_threshold: req.error_threshold,
        node_deadline_ms: i64::from(req.node_deadline_s) * 1000,
        offline_after_ms: i64::from(req.offline_after_s) * 1000,
        probation: req.probation,
    };
    let mut previous = BTreeMap::new();
    for (node, _) in &nodes {
        let before = aiot::target(&mut w.tx, node, &req.model).await?;
        previous.insert(node.clone(), before.map_or(0, |t| t.version));
    }
    let id = rollouts::next_id(&mut w.tx).await?;
    let now = crate::time::now_rfc3339();
    for old in rollouts::active_of_model(&mut w.tx, &req.model).await? {
        let why = format!("superseded by rollout {id}");
        change(&mut w.tx, old, &now, |p| {
            rollout::supersede(p, &why).map(|p| (p, Vec::new()))
        })
        .await?;
    }
    let progress = RolloutProgress::new();
    let r = Rollout {
        id: id.clone(),
        model: req.model.clone(),
        version: req.version,
        state: progress.state,
        plan,
        progress,
        previous,
        created_at: now.clone(),
        updated_at: now,
    };
    rollouts::insert(&mut w.tx, &r).await?;
    let st = status(&mut w.tx, r, true).await?;
    state.published(w.commit().await?);
    tracing::info!(rollout = %id, model = %req.model, version = req.version, nodes = nodes.len(), groups = st.groups.len(), "rollout made");
    Ok((StatusCode::CREATED, Json(st)))
}

/// Writers that may meet the driver's step of the same rollout try this often.
const ATTEMPTS: usize = 5;

/// Replaces `stored`'s progress by what `decide` makes of it (with the actions to carry
/// out) inside `conn`'s write, re-reading it when another writer changed it meanwhile.
/// `decide` answers `None` when the rollout's state does not allow the change.
async fn change<F>(
    conn: &mut AnyConnection,
    mut stored: Stored,
    now: &str,
    decide: F,
) -> Result<Option<(Rollout, Vec<Action>)>, ApiError>
where
    F: Fn(&RolloutProgress) -> Option<(RolloutProgress, Vec<Action>)>,
{
    for _ in 0..ATTEMPTS {
        let Some((next, actions)) = decide(&stored.rollout.progress) else {
            return Ok(None);
        };
        let id = stored.rollout.id.clone();
        if rollouts::update_progress(&mut *conn, &id, &stored.progress_json, &next, now).await? {
            let mut r = stored.rollout;
            r.state = next.state;
            r.progress = next;
            r.updated_at = now.to_owned();
            return Ok(Some((r, actions)));
        }
        stored = rollouts::get(&mut *conn, &id)
            .await?
            .ok_or_else(|| ApiError::not_found("rollout", &id))?;
    }
    Err(ApiError::Unavailable(
        "the rollout kept changing under this request: retry".into(),
    ))
}

/// Pause, resume or abort: `decide` at now; 409 when the rollout's state does not allow
/// it. The write bumps the configuration version only when nodes go back.
async fn by_hand<F>(
    state: &AppState,
    id: &str,
    verb: &str,
    decide: F,
) -> Result<Json<RolloutStatus>, ApiError>
where
    F: Fn(&RolloutProgress, i64) -> Option<(RolloutProgress, Vec<Action>)>,
{
    for _ in 0..ATTEMPTS {
        let stored = {
            let mut conn = state.store.pool().acquire().await?;
            rollouts::get(&mut conn, id)
                .await?
                .ok_or_else(|| ApiError::not_found("rollout", id))?
        };
        let now_ms = crate::time::now_ms();
        let current = stored.rollout.progress.state;
        let Some((_, actions)) = decide(&stored.rollout.progress, now_ms) else {
            return Err(ApiError::conflict(
                "wrong_state",
                format!(
                    "rollout {id} {}: it cannot be {verb}",
                    state_phrase(current)
                ),
            ));
        };
        // The version is bumped only when nodes go back; when the progress moved
        // meanwhile and what to do changed with it, start over.
        let mut w = state.store.write(!actions.is_empty()).await?;
        let now = crate::time::rfc3339_from_ms(now_ms);
        let bumped = w.version.is_some();
        let changed = change(&mut w.tx, stored, &now, |p| {
            decide(p, now_ms).filter(|(_, a)| a.is_empty() != bumped)
        })
        .await?;
        let Some((r, actions)) = changed else {
            continue;
        };
        apply(&mut w.tx, &r, &actions, w.version.unwrap_or_default()).await?;
        let st = status(&mut w.tx, r, true).await?;
        state.published(w.commit().await?);
        tracing::info!(rollout = %id, state = ?st.rollout.state, rolled_back = actions.len(), "rollout {verb} by hand");
        return Ok(Json(st));
    }
    Err(ApiError::Unavailable(
        "the rollout kept changing under this request: retry".into(),
    ))
}

/// Where a rollout is, as the end of "rollout N ...".
fn state_phrase(s: RolloutState) -> &'static str {
    match s {
        RolloutState::Running => "is running",
        RolloutState::Paused => "is paused",
        RolloutState::Succeeded => "has succeeded",
        RolloutState::RolledBack => "was rolled back",
        RolloutState::Aborted => "was aborted",
        RolloutState::Superseded => "was superseded by a newer rollout of its model",
    }
}

async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    caller.require_operator()?;
    by_hand(&state, &id, "paused", |p, _| {
        rollout::pause(p).map(|p| (p, Vec::new()))
    })
    .await
}

async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    caller.require_operator()?;
    by_hand(&state, &id, "resumed", |p, now| {
        rollout::resume(p, now).map(|p| (p, Vec::new()))
    })
    .await
}

async fn abort(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    caller.require_operator()?;
    by_hand(&state, &id, "aborted", |p, _| {
        matches!(p.state, RolloutState::Running | RolloutState::Paused)
            .then(|| rollout::abort(p, "aborted by the operator: every touched node went back"))
    })
    .await
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<RolloutStatus>>, ApiError> {
    caller.require_operator()?;
    let mut conn = state.store.pool().acquire().await?;
    let mut out = Vec::new();
    for stored in rollouts::list(&mut conn, LIST_LIMIT).await? {
        out.push(status(&mut conn, stored.rollout, false).await?);
    }
    Ok(Json(out))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    caller.require_operator()?;
    let mut conn = state.store.pool().acquire().await?;
    let stored = rollouts::get(&mut conn, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("rollout", &id))?;
    Ok(Json(status(&mut conn, stored.rollout, true).await?))
}
