//! The data planes' side of the API: long-polled snapshots per role, and heartbeats that
//! register a node and acknowledge the snapshot version it has applied.
//!
//! A node's credential reaches only its own node: the snapshot of a role the node has in
//! the inventory, and heartbeats (with usage and acknowledgements) for its own id. The
//! operator token reaches all of them.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lingjing_model::snapshot::{Heartbeat, Role};
use lingjing_model::{Node, NodeRole, Validate};
use serde::Deserialize;

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::DataPlaneCaller;
use crate::error::ApiError;
use crate::store::{
    HeartbeatRecord, get_doc, publish_load, record_heartbeat, record_load, record_usage,
};

/// Default and largest long-poll wait.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// The header carrying a snapshot's version.
pub const VERSION_HEADER: &str = "x-lingjing-version";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/snapshots/{role}", get(snapshot))
        .route("/v1/nodes/{id}/heartbeat", post(heartbeat))
}

#[derive(Debug, Deserialize)]
pub struct SnapshotParams {
    /// The polling node's id.
    node: Option<String>,
    /// The version the poller has; the answer waits for a newer one.
    #[serde(default)]
    after: u64,
    /// How long to wait, in milliseconds (default 30 s, at most 120 s).
    timeout_ms: Option<u64>,
}

fn parse_role(role: &str) -> Result<Role, ApiError> {
    role.parse().map_err(ApiError::NotFound)
}

/// Whether a node with `roles` runs the data plane of `role`.
pub fn node_has_role(roles: &[NodeRole], role: Role) -> bool {
    roles.iter().any(|r| match role {
        Role::Edge => matches!(r, NodeRole::Edge | NodeRole::Parent),
        Role::Dns => matches!(r, NodeRole::Dns),
        Role::Storage => matches!(r, NodeRole::Storage),
        Role::S3 => matches!(r, NodeRole::S3),
        Role::Aiot => matches!(r, NodeRole::Aiot),
    })
}

/// Refuses a node credential asking for a role its node does not have.
fn require_role(node: &Node, role: Role) -> Result<(), ApiError> {
    if node_has_role(&node.roles, role) {
        return Ok(());
    }
    let roles: Vec<String> = node.roles.iter().map(ToString::to_string).collect();
    Err(ApiError::Forbidden(format!(
        "node `{}` has the roles [{}]: its credential may not read or report for the {role} role",
        node.id,
        roles.join(", ")
    )))
}

async fn snapshot(
    State(state): State<AppState>,
    caller: DataPlaneCaller,
    Path(role): Path<String>,
    ApiQuery(params): ApiQuery<SnapshotParams>,
) -> Result<Response, ApiError> {
    let role = parse_role(&role)?;
    let node = match (&caller, &params.node) {
        (DataPlaneCaller::Node(me), asked) => {
            if let Some(asked) = asked {
                caller.require_node(asked)?;
            }
            Some(me)
        }
        (DataPlaneCaller::Operator, asked) => asked.as_ref(),
    };
    if let Some(node) = node {
        let mut conn = state.store.pool().acquire().await?;
        let doc = get_doc::<Node>(&mut conn, node)
            .await?
            .ok_or_else(|| ApiError::not_found("node", node))?;
        if matches!(caller, DataPlaneCaller::Node(_)) {
            require_role(&doc, role)?;
        }
    }
    let wait = params
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_WAIT)
        .min(MAX_WAIT);
    let newest = state.hub.wait_newer(params.after, wait).await;
    if newest <= params.after {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        res.headers_mut()
            .insert(VERSION_HEADER, HeaderValue::from(newest));
        return Ok(res);
    }
    let (version, body) = state.hub.snapshot(&state.store, role).await?;
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res.headers_mut()
        .insert(VERSION_HEADER, HeaderValue::from(version));
    Ok(res)
}

/// Most per-bucket entries in one heartbeat (traffic and samples each).
const MAX_BUCKET_ENTRIES: usize = 10_000;

/// Per-bucket usage comes only from S3 gateways, names real-looking buckets and tenants,
/// counts traffic only under a report sequence number, and is bounded.
fn check_bucket_usage(beat: &Heartbeat) -> Result<(), ApiError> {
    use lingjing_model::validate::ValidationError;
    if beat.bucket_traffic.is_empty() && beat.bucket_stored.is_empty() {
        return Ok(());
    }
    let invalid = |field: &str, why: String| ApiError::Invalid(ValidationError::new(field, why));
    if beat.role != Role::S3 {
        return Err(invalid(
            "bucket_traffic",
            "only an S3 gateway's heartbeat (role `s3`) carries bucket usage".into(),
        ));
    }
    if !beat.bucket_traffic.is_empty() && beat.usage_seq == 0 {
        return Err(invalid(
            "usage_seq",
            "bucket traffic needs a report sequence number (it is counted once per number)".into(),
        ));
    }
    for (field, len) in [
        ("bucket_traffic", beat.bucket_traffic.len()),
        ("bucket_stored", beat.bucket_stored.len()),
    ] {
        if len > MAX_BUCKET_ENTRIES {
            return Err(invalid(
                field,
                format!("at most {MAX_BUCKET_ENTRIES} entries per heartbeat"),
            ));
        }
    }
    let names = beat
        .bucket_traffic
        .iter()
        .map(|t| (&t.bucket, &t.tenant))
        .chain(beat.bucket_stored.iter().map(|s| (&s.bucket, &s.tenant)));
    for (bucket, tenant) in names {
        lingjing_model::service::check_bucket_name("bucket", bucket)?;
        lingjing_model::ident::check_id("tenant", tenant)?;
    }
    Ok(())
}

/// Defence reports come only from edge nodes, each valid, at most
/// [`lingjing_model::defence::MAX_REPORTS`] per heartbeat.
fn check_defence_reports(beat: &Heartbeat) -> Result<(), ApiError> {
    if beat.defence.is_empty() {
        return Ok(());
    }
    if beat.role != Role::Edge {
        return Err(ApiError::invalid(
            "defence",
            "only an edge node's heartbeat (role `edge`) carries defence reports",
        ));
    }
    if beat.defence.len() > lingjing_model::defence::MAX_REPORTS {
        return Err(ApiError::invalid(
            "defence",
            format!(
                "at most {} reports per heartbeat",
                lingjing_model::defence::MAX_REPORTS
            ),
        ));
    }
    for (i, r) in beat.defence.iter().enumerate() {
        r.validate()
            .map_err(|e| ApiError::Invalid(e.within(format!("defence[{i}]"))))?;
    }
    Ok(())
}

/// Baseline samples come only from edge nodes: at most
/// [`lingjing_model::defence::MAX_BASELINE_SAMPLES`], whole minutes (those in the future
/// or older than the longest learning window, from a clock that is off, are skipped).
/// The largest count one metering sample may hold: sums over a fleet and a month stay
/// far below 2^63.
const MAX_METER_COUNT: u64 = 1 << 50;

/// A metering report: an edge's, at most [`MAX_METER_SAMPLES`] samples on 5-minute
/// boundaries, each with counts of at most [`MAX_METER_COUNT`] and parts no larger than
/// their whole.
fn check_meter(beat: &Heartbeat) -> Result<(), ApiError> {
    use lingjing_model::snapshot::{MAX_METER_SAMPLES, METER_INTERVAL_MS};
    let Some(report) = &beat.meter else {
        return Ok(());
    };
    if beat.role != Role::Edge {
        return Err(ApiError::invalid(
            "meter",
            "only an edge node's heartbeat (role `edge`) carries metering",
        ));
    }
    if i64::try_from(report.epoch).is_err() {
        return Err(ApiError::invalid("meter.epoch", "must be below 2^63"));
    }
    if report.samples.len() > MAX_METER_SAMPLES {
        return Err(ApiError::invalid(
            "meter.samples",
            format!("at most {MAX_METER_SAMPLES} samples per heartbeat"),
        ));
    }
    for (i, s) in report.samples.iter().enumerate() {
        let field = format!("meter.samples[{i}]");
        lingjing_model::ident::check_id(&format!("{field}.usage.service"), &s.usage.service)
            .map_err(ApiError::Invalid)?;
        if s.start_ms % METER_INTERVAL_MS != 0 || i64::try_from(s.start_ms).is_err() {
            return Err(ApiError::invalid(
                format!("{field}.start_ms"),
                "the start of a 5-minute interval (a multiple of 300000 ms)",
            ));
        }
        let u = &s.usage;
        let fits = [
            u.requests,
            u.bytes_out,
            u.bytes_in,
            u.hit_requests,
            u.hit_bytes_out,
            u.miss_requests,
            u.miss_bytes_out,
        ]
        .iter()
        .all(|n| *n <= MAX_METER_COUNT);
        let parts = u
            .hit_requests
            .checked_add(u.miss_requests)
            .is_some_and(|n| n <= u.requests)
            && u.hit_bytes_out
                .checked_add(u.miss_bytes_out)
                .is_some_and(|n| n <= u.bytes_out);
        if !fits || !parts {
            return Err(ApiError::invalid(
                format!("{field}.usage"),
                "counts of at most 2^50 (a petabyte in 5 minutes), hits and misses no more than the whole",
            ));
        }
    }
    Ok(())
}

/// Most slots a heartbeat may report.
const MAX_SLOTS: usize = 256;

/// Slot reports come only from edge AI nodes, name real slots, and are few and short.
fn check_slots(beat: &Heartbeat) -> Result<(), ApiError> {
    use lingjing_model::validate::ValidationError;
    if beat.aiot.is_empty() {
        return Ok(());
    }
    if beat.role != Role::Aiot {
        return Err(ApiError::Invalid(ValidationError::new(
            "aiot",
            "only an edge AI node's heartbeat (role `aiot`) reports slots",
        )));
    }
    if beat.aiot.len() > MAX_SLOTS {
        return Err(ApiError::Invalid(ValidationError::new(
            "aiot",
            format!("at most {MAX_SLOTS} slots"),
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, r) in beat.aiot.iter().enumerate() {
        lingjing_model::ident::check_id(&format!("aiot[{i}].slot"), &r.slot)
            .map_err(ApiError::Invalid)?;
        if !seen.insert(r.slot.as_str()) {
            return Err(ApiError::Invalid(ValidationError::new(
                format!("aiot[{i}].slot"),
                "reported twice",
            )));
        }
        if r.reason.as_ref().is_some_and(|m| m.len() > 4096) {
            return Err(ApiError::Invalid(ValidationError::new(
                format!("aiot[{i}].reason"),
                "at most 4096 bytes",
            )));
        }
    }
    Ok(())
}

fn check_baseline(beat: &Heartbeat) -> Result<(), ApiError> {
    use lingjing_model::defence::MAX_BASELINE_SAMPLES;
    if beat.defence_baseline.is_empty() {
        return Ok(());
    }
    if beat.role != Role::Edge {
        return Err(ApiError::invalid(
            "defence_baseline",
            "only an edge node's heartbeat (role `edge`) carries baseline samples",
        ));
    }
    if beat.defence_baseline.len() > MAX_BASELINE_SAMPLES {
        return Err(ApiError::invalid(
            "defence_baseline",
            format!("at most {MAX_BASELINE_SAMPLES} samples per heartbeat"),
        ));
    }
    for (i, s) in beat.defence_baseline.iter().enumerate() {
        let field = format!("defence_baseline[{i}]");
        lingjing_model::ident::check_id(&format!("{field}.service"), &s.service)
            .map_err(ApiError::Invalid)?;
        if s.minute_ms % 60_000 != 0 {
            return Err(ApiError::invalid(
                format!("{field}.minute_ms"),
                "the start of a minute (a multiple of 60000 ms)",
            ));
        }
    }
    Ok(())
}

async fn heartbeat(
    State(state): State<AppState>,
    caller: DataPlaneCaller,
    Path(id): Path<String>,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    caller.require_node(&id)?;
    let mut w = state.store.write(false).await?;
    let node = get_doc::<Node>(&mut w.tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("node", &id))?;
    if matches!(caller, DataPlaneCaller::Node(_)) {
        require_role(&node, beat.role)?;
    }
    // Every check before any write: a heartbeat refused changes nothing.
    check_bucket_usage(&beat)?;
    check_defence_reports(&beat)?;
    check_meter(&beat)?;
    check_baseline(&beat)?;
    check_slots(&beat)?;
    if let Some(c) = &beat.answers
        && (c.failed > c.answered || !matches!(beat.role, Role::Edge | Role::Dns))
    {
        return Err(ApiError::Invalid(
            lingjing_model::validate::ValidationError::new(
                "answers",
                "an edge's or DNS server's totals, with failed <= answered",
            ),
        ));
    }
    if beat.storage.is_some() && beat.role != Role::Storage {
        return Err(ApiError::Invalid(
            lingjing_model::validate::ValidationError::new(
                "storage",
                "only a storage node's heartbeat (role `storage`) carries a disk report",
            ),
        ));
    }
    let mut load = None;
    let now = crate::time::now_ms();
    if let Some(report) = &beat.meter {
        // Samples from the future (a clock ahead) or past the retention are skipped.
        let oldest = now - i64::from(state.views.meter_retention_days) * 86_400_000;
        let kept = lingjing_model::snapshot::MeterReport {
            epoch: report.epoch,
            samples: report
                .samples
                .iter()
                .filter(|s| {
                    let start = s.start_ms as i64;
                    start <= now + 300_000 && start >= oldest
                })
                .cloned()
                .collect(),
        };
        if kept.samples.len() < report.samples.len() {
            tracing::warn!(node = %id, skipped = report.samples.len() - kept.samples.len(), "metering samples outside the retention or in the future skipped (is the node's clock right?)");
        }
        let unknown = crate::store::meter::record(&mut w.tx, &id, &node.site, &kept).await?;
        if !unknown.is_empty() {
            tracing::warn!(node = %id, services = ?unknown, "metering samples of unknown services skipped");
        }
    }
    if beat.usage_seq > 0 {
        if record_usage(&mut w.tx, &id, beat.usage_seq, &beat.usage, now).await? {
            crate::store::bucket_usage::record_traffic(&mut w.tx, &id, &beat.bucket_traffic, now)
                .await?;
            let bytes = beat
                .usage
                .iter()
                .map(|u| u.bytes_out)
                .fold(0u64, u64::saturating_add);
            load = record_load(&mut w.tx, &id, bytes, now).await?;
        }
    } else if matches!(beat.role, Role::Edge) {
        // An edge heartbeat without a report: it served nothing since the last one.
        load = record_load(&mut w.tx, &id, 0, now).await?;
    }
    crate::store::bucket_usage::record_stored(&mut w.tx, &beat.bucket_stored).await?;
    if beat.role == Role::Aiot {
        crate::store::aiot::record_reports(&mut w.tx, &id, &beat.aiot, now).await?;
    }
    if let Some(c) = &beat.answers {
        crate::store::health::record_answers(&mut w.tx, &id, c, now).await?;
    }
    if let Some(report) = &beat.storage {
        crate::store::storage::record_report(&mut w.tx, &id, report, &crate::time::now_rfc3339())
            .await?;
    }
    let rules = crate::defence::record_reports(&mut w.tx, &id, &beat.defence, now).await?;
    let now_u = now.max(0) as u64;
    for sample in &beat.defence_baseline {
        let fresh = sample.minute_ms <= now_u + 120_000
            && sample.minute_ms + 31 * 24 * 3600 * 1000 >= now_u;
        if fresh
            && get_doc::<lingjing_model::Service>(&mut w.tx, &sample.service)
                .await?
                .is_some()
        {
            crate::store::defence::record_minute(&mut w.tx, sample).await?;
        }
    }
    record_heartbeat(
        &mut w.tx,
        &HeartbeatRecord {
            node: id.clone(),
            beat,
        },
    )
    .await?;
    w.commit().await?;
    if !rules.is_empty() {
        // An attack's sources refused fleet-wide: a new version every edge long-polls.
        let mut w = state.store.write(true).await?;
        for change in &rules {
            crate::store::defence::put_rule(&mut w.tx, &change.rule, Some(&change.event)).await?;
        }
        state.published(w.commit().await?);
        for change in &rules {
            tracing::warn!(rule = %change.rule.id, service = ?change.rule.spec.service, sources = change.rule.spec.matches.sources.len(), "defence: attack sources refused fleet-wide");
        }
    }
    if let Some(change) = load.filter(|l| l.publish) {
        // A new load share changes steering: publish it with a version of its own.
        let mut w = state.store.write(true).await?;
        publish_load(&mut w.tx, &id, &change).await?;
        if let Some(v) = w.commit().await? {
            state.hub.publish(v);
        }
    }
    Ok(StatusCode::NO_CONTENT)
}
