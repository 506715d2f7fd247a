//! Road inspection's tables: device credentials, tenants' inspection policies, node
//! outbox streams, frames, runs, defects with their evidence, work orders and their
//! history. Devices and crews themselves are resource documents (`devices`, `crews`).

use std::collections::HashMap;

use lingjing_inspect::WorkOrderState;
use lingjing_model::inspect::{Device, FrameRecord, InspectPolicy, PatrolDevice};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use super::list_docs;
use crate::error::StoreError;

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Sets (or replaces) a device's credential.
pub async fn set_device_token(
    conn: &mut AnyConnection,
    device: &str,
    sha256: &str,
    now: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM device_tokens WHERE device_id = $1")
        .bind(device)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO device_tokens (device_id, token_sha256, created_at) VALUES ($1, $2, $3)",
    )
    .bind(device)
    .bind(sha256)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Every device as edge AI nodes see it, with its credential's hash.
pub async fn patrol_devices(conn: &mut AnyConnection) -> Result<Vec<PatrolDevice>, StoreError> {
    let rows = sqlx::query("SELECT device_id, token_sha256 FROM device_tokens")
        .fetch_all(&mut *conn)
        .await?;
    let mut tokens = HashMap::new();
    for r in rows {
        tokens.insert(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?);
    }
    Ok(list_docs::<Device>(conn)
        .await?
        .into_iter()
        .map(|d| PatrolDevice {
            token_sha256: tokens.remove(&d.id),
            id: d.id,
            tenant: d.tenant,
            slot: d.slot,
            detects: d.detects,
        })
        .collect())
}

/// A tenant's inspection policy (the defaults when it set none).
pub async fn policy(conn: &mut AnyConnection, tenant: &str) -> Result<InspectPolicy, StoreError> {
    let row = sqlx::query("SELECT body FROM inspect_policies WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(r) => serde_json::from_str(&r.try_get::<String, _>(0)?)
            .map_err(|e| corrupt("inspection policy", e)),
        None => Ok(InspectPolicy::default()),
    }
}

pub async fn set_policy(
    conn: &mut AnyConnection,
    tenant: &str,
    policy: &InspectPolicy,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(policy).map_err(|e| corrupt("inspection policy", e))?;
    sqlx::query("DELETE FROM inspect_policies WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO inspect_policies (tenant_id, body) VALUES ($1, $2)")
        .bind(tenant)
        .bind(body)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the next value of counter `name` (`defect`, `work_order`).
pub async fn next_counter(conn: &mut AnyConnection, name: &str) -> Result<u64, StoreError> {
    let row = sqlx::query(
        "UPDATE inspect_counters SET value = value + 1 WHERE name = $1 RETURNING value",
    )
    .bind(name)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)? as u64)
}

/// Takes tenant `tenant`'s inspection lock until the transaction ends: its intake and
/// work-order actions run one at a time (other tenants' in parallel). Take several in
/// sorted order.
pub async fn lock_tenant(conn: &mut AnyConnection, tenant: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO inspect_locks (tenant_id, taken) VALUES ($1, 1) \
         ON CONFLICT (tenant_id) DO UPDATE SET taken = inspect_locks.taken + 1",
    )
    .bind(tenant)
    .execute(conn)
    .await?;
    Ok(())
}

/// The node that owns outbox `stream` and the last record kept from it.
pub async fn stream(
    conn: &mut AnyConnection,
    stream: &str,
) -> Result<Option<(String, u64)>, StoreError> {
    let row = sqlx::query("SELECT node_id, through FROM inspect_streams WHERE stream = $1")
        .bind(stream)
        .fetch_optional(conn)
        .await?;
    match row {
        Some(r) => Ok(Some((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64))),
        None => Ok(None),
    }
}

pub async fn set_stream(
    conn: &mut AnyConnection,
    stream: &str,
    node: &str,
    through: u64,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM inspect_streams WHERE stream = $1")
        .bind(stream)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO inspect_streams (stream, node_id, through, updated_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(stream)
    .bind(node)
    .bind(through as i64)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps a frame (its place, time and detections; not its image); false when this
/// camera's frame is kept already (sent again, through this node or another).
pub async fn insert_frame(
    conn: &mut AnyConnection,
    stream: &str,
    node: &str,
    tenant: &str,
    r: &FrameRecord,
) -> Result<bool, StoreError> {
    let detections = serde_json::to_string(&r.detections).map_err(|e| corrupt("detections", e))?;
    let done = sqlx::query(
        "INSERT INTO inspect_frames (stream, seq, node_id, tenant_id, device_id, run_id, frame, taken_ms, lat, lon, detections) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (tenant_id, device_id, run_id, frame) DO NOTHING",
    )
    .bind(stream)
    .bind(r.seq as i64)
    .bind(node)
    .bind(tenant)
    .bind(r.device.clone())
    .bind(r.run.clone())
    .bind(r.frame.clone())
    .bind(r.taken_ms)
    .bind(r.lat)
    .bind(r.lon)
    .bind(detections)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// An inspection run (a patrol) as kept: what it covered so far.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Run {
    pub id: String,
    pub tenant: String,
    pub device: String,
    pub started_ms: i64,
    pub last_ms: i64,
    pub frames: u64,
    pub detections: u64,
    /// The length of the path covered, in metres.
    pub length_m: f64,
    pub last_lat: f64,
    pub last_lon: f64,
}

const RUN_COLUMNS: &str = "id, tenant_id, device_id, started_ms, last_ms, frames, detections, length_m, last_lat, last_lon";

fn run_of(r: &AnyRow) -> Result<Run, StoreError> {
    Ok(Run {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        device: r.try_get(2)?,
        started_ms: r.try_get(3)?,
        last_ms: r.try_get(4)?,
        frames: r.try_get::<i64, _>(5)? as u64,
        detections: r.try_get::<i64, _>(6)? as u64,
        length_m: r.try_get(7)?,
        last_lat: r.try_get(8)?,
        last_lon: r.try_get(9)?,
    })
}

/// Device `device`'s run `id`.
pub async fn run(
    conn: &mut AnyConnection,
    tenant: &str,
    device: &str,
    id: &str,
) -> Result<Option<Run>, StoreError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM inspect_runs WHERE tenant_id = $1 AND device_id = $2 AND id = $3"
    );
    let row = sqlx::query(&sql)
        .bind(tenant)
        .bind(device)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(run_of).transpose()
}

/// A tenant's runs named `id` (one per device that used the name).
pub async fn runs_named(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Vec<Run>, StoreError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM inspect_runs WHERE tenant_id = $1 AND id = $2 ORDER BY device_id LIMIT 100"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant)
        .bind(id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(run_of).collect()
}

/// Writes a run (updating the row kept, or inserting it).
pub async fn put_run(conn: &mut AnyConnection, run: &Run) -> Result<(), StoreError> {
    let updated = sqlx::query(
        "UPDATE inspect_runs SET started_ms = $4, last_ms = $5, frames = $6, detections = $7, \
         length_m = $8, last_lat = $9, last_lon = $10 WHERE tenant_id = $1 AND device_id = $2 AND id = $3",
    )
    .bind(run.tenant.clone())
    .bind(run.device.clone())
    .bind(run.id.clone())
    .bind(run.started_ms)
    .bind(run.last_ms)
    .bind(run.frames as i64)
    .bind(run.detections as i64)
    .bind(run.length_m)
    .bind(run.last_lat)
    .bind(run.last_lon)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() > 0 {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO inspect_runs ({RUN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    );
    sqlx::query(&sql)
        .bind(run.id.clone())
        .bind(run.tenant.clone())
        .bind(run.device.clone())
        .bind(run.started_ms)
        .bind(run.last_ms)
        .bind(run.frames as i64)
        .bind(run.detections as i64)
        .bind(run.length_m)
        .bind(run.last_lat)
        .bind(run.last_lon)
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs (a tenant's, or all), newest first, with how many there are in all.
pub async fn runs(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<Run>, u64), StoreError> {
    let total = sqlx::query("SELECT COUNT(*) FROM inspect_runs WHERE ($1 = '' OR tenant_id = $1)")
        .bind(tenant.unwrap_or(""))
        .fetch_one(&mut *conn)
        .await?
        .try_get::<i64, _>(0)? as u64;
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM inspect_runs WHERE ($1 = '' OR tenant_id = $1) \
         ORDER BY started_ms DESC, id, device_id LIMIT $2 OFFSET $3"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(conn)
        .await?;
    Ok((rows.iter().map(run_of).collect::<Result<_, _>>()?, total))
}

/// A run's path: its frames' positions in time order.
pub async fn run_path(
    conn: &mut AnyConnection,
    tenant: &str,
    device: &str,
    run: &str,
) -> Result<Vec<(f64, f64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT lat, lon FROM inspect_frames WHERE tenant_id = $1 AND device_id = $2 AND run_id = $3 \
         ORDER BY taken_ms, stream, seq",
    )
    .bind(tenant)
    .bind(device)
    .bind(run)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<f64, _>(0)?, r.try_get::<f64, _>(1)?)))
        .collect()
}

/// A defect: detections of one class at one place.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Defect {
    pub id: String,
    pub tenant: String,
    pub class: String,
    pub lat: f64,
    pub lon: f64,
    /// `open`, `dismissed` (its order was cancelled), `duplicate` or `repaired`.
    pub state: String,
    /// `patrol` (a model saw it) or `citizen` (an Open311 report).
    pub source: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub sightings: u64,
    pub best_score: f64,
    pub severity: u8,
    pub description: Option<String>,
}

const DEFECT_COLUMNS: &str = "id, tenant_id, class, lat, lon, state, source, first_seen_ms, last_seen_ms, sightings, best_score, severity, description";

fn defect_of(r: &AnyRow) -> Result<Defect, StoreError> {
    Ok(Defect {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        class: r.try_get(2)?,
        lat: r.try_get(3)?,
        lon: r.try_get(4)?,
        state: r.try_get(5)?,
        source: r.try_get(6)?,
        first_seen_ms: r.try_get(7)?,
        last_seen_ms: r.try_get(8)?,
        sightings: r.try_get::<i64, _>(9)? as u64,
        best_score: r.try_get(10)?,
        severity: r.try_get::<i64, _>(11)?.clamp(0, 255) as u8,
        description: r.try_get(12)?,
    })
}

/// A tenant's defects of `class` in states `states` inside a box.
pub async fn defects_in(
    conn: &mut AnyConnection,
    tenant: &str,
    class: &str,
    bbox: lingjing_inspect::BBox,
    states: &[&str],
) -> Result<Vec<Defect>, StoreError> {
    let sql = format!(
        "SELECT {DEFECT_COLUMNS} FROM defects WHERE tenant_id = $1 AND class = $2 \
         AND lat >= $3 AND lat <= $4 AND lon >= $5 AND lon <= $6 ORDER BY id"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant)
        .bind(class)
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
        .fetch_all(conn)
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let d = defect_of(r)?;
        if states.contains(&d.state.as_str()) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Writes a defect (replacing the row kept).
pub async fn put_defect(conn: &mut AnyConnection, d: &Defect) -> Result<(), StoreError> {
    let updated = sqlx::query(
        "UPDATE defects SET lat = $2, lon = $3, state = $4, last_seen_ms = $5, sightings = $6, \
         best_score = $7, severity = $8, description = $9 WHERE id = $1",
    )
    .bind(d.id.clone())
    .bind(d.lat)
    .bind(d.lon)
    .bind(d.state.clone())
    .bind(d.last_seen_ms)
    .bind(d.sightings as i64)
    .bind(d.best_score)
    .bind(i64::from(d.severity))
    .bind(d.description.clone())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        let sql = format!(
            "INSERT INTO defects ({DEFECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        sqlx::query(&sql)
            .bind(d.id.clone())
            .bind(d.tenant.clone())
            .bind(d.class.clone())
            .bind(d.lat)
            .bind(d.lon)
            .bind(d.state.clone())
            .bind(d.source.clone())
            .bind(d.first_seen_ms)
            .bind(d.last_seen_ms)
            .bind(d.sightings as i64)
            .bind(d.best_score)
            .bind(i64::from(d.severity))
            .bind(d.description.clone())
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub async fn defect(conn: &mut AnyConnection, id: &str) -> Result<Option<Defect>, StoreError> {
    let sql = format!("SELECT {DEFECT_COLUMNS} FROM defects WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(defect_of).transpose()
}

/// Which defects a list reads.
#[derive(Debug, Default, Clone)]
pub struct DefectFilter {
    pub tenant: Option<String>,
    pub state: Option<String>,
    pub class: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Defects, newest first seen first, with how many match in all.
pub async fn defects(
    conn: &mut AnyConnection,
    f: &DefectFilter,
) -> Result<(Vec<Defect>, u64), StoreError> {
    let filter =
        "($1 = '' OR tenant_id = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR class = $3)";
    let binds = [
        f.tenant.clone().unwrap_or_default(),
        f.state.clone().unwrap_or_default(),
        f.class.clone().unwrap_or_default(),
    ];
    let count_sql = format!("SELECT COUNT(*) FROM defects WHERE {filter}");
    let mut q = sqlx::query(&count_sql);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let total = q.fetch_one(&mut *conn).await?.try_get::<i64, _>(0)? as u64;
    let sql = format!(
        "SELECT {DEFECT_COLUMNS} FROM defects WHERE {filter} ORDER BY first_seen_ms DESC, id LIMIT $4 OFFSET $5"
    );
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let rows = q.bind(f.limit).bind(f.offset).fetch_all(conn).await?;
    Ok((rows.iter().map(defect_of).collect::<Result<_, _>>()?, total))
}

/// A frame kept as a defect's evidence (its image is read on its own).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Evidence {
    pub stream: String,
    pub seq: u64,
    pub score: f64,
    pub taken_ms: i64,
    pub device: String,
    pub frame: String,
    /// It has an image (in this database, or in the tenant's evidence bucket).
    pub has_image: bool,
    /// `bucket/key` when its image was moved into the tenant's evidence bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// A defect's evidence, best score first.
pub async fn evidence(conn: &mut AnyConnection, defect: &str) -> Result<Vec<Evidence>, StoreError> {
    let rows = sqlx::query(
        "SELECT stream, seq, score, taken_ms, device_id, frame, \
         (image IS NOT NULL OR object_key IS NOT NULL), object_key FROM defect_evidence \
         WHERE defect_id = $1 ORDER BY score DESC, taken_ms, stream, seq",
    )
    .bind(defect)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Evidence {
                stream: r.try_get(0)?,
                seq: r.try_get::<i64, _>(1)? as u64,
                score: r.try_get(2)?,
                taken_ms: r.try_get(3)?,
                device: r.try_get(4)?,
                frame: r.try_get(5)?,
                has_image: r
                    .try_get::<bool, _>(6)
                    .or_else(|_| r.try_get::<i64, _>(6).map(|v| v != 0))?,
                object: r.try_get(7)?,
            })
        })
        .collect()
}

pub async fn insert_evidence(
    conn: &mut AnyConnection,
    defect: &str,
    e: &Evidence,
    image: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO defect_evidence (defect_id, stream, seq, score, taken_ms, device_id, frame, image) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(defect)
    .bind(e.stream.clone())
    .bind(e.seq as i64)
    .bind(e.score)
    .bind(e.taken_ms)
    .bind(e.device.clone())
    .bind(e.frame.clone())
    .bind(image)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete_evidence(
    conn: &mut AnyConnection,
    defect: &str,
    stream: &str,
    seq: u64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM defect_evidence WHERE defect_id = $1 AND stream = $2 AND seq = $3")
        .bind(defect)
        .bind(stream)
        .bind(seq as i64)
        .execute(conn)
        .await?;
    Ok(())
}

/// Where a defect's evidence image is.
#[derive(Debug, Clone, PartialEq)]
pub enum EvidenceImage {
    /// In this database.
    Blob(Vec<u8>),
    /// In the tenant's evidence bucket: `bucket/key`.
    Object(String),
}

/// The image of a defect's evidence frame `(stream, seq)`.
pub async fn evidence_image(
    conn: &mut AnyConnection,
    defect: &str,
    stream: &str,
    seq: u64,
) -> Result<Option<EvidenceImage>, StoreError> {
    let row = sqlx::query(
        "SELECT image, object_key FROM defect_evidence WHERE defect_id = $1 AND stream = $2 AND seq = $3",
    )
    .bind(defect)
    .bind(stream)
    .bind(seq as i64)
    .fetch_optional(conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    if let Some(image) = r.try_get::<Option<Vec<u8>>, _>(0)? {
        return Ok(Some(EvidenceImage::Blob(image)));
    }
    Ok(r.try_get::<Option<String>, _>(1)?
        .map(EvidenceImage::Object))
}

/// Every tenant whose inspection policy names an evidence bucket, with the bucket.
pub async fn evidence_buckets(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query("SELECT tenant_id, body FROM inspect_policies ORDER BY tenant_id")
        .fetch_all(conn)
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let policy: InspectPolicy = serde_json::from_str(&r.try_get::<String, _>(1)?)
            .map_err(|e| corrupt("inspection policy", e))?;
        if let Some(bucket) = policy.evidence_bucket {
            out.push((r.try_get(0)?, bucket));
        }
    }
    Ok(out)
}

/// An evidence image still in this database.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldImage {
    pub defect: String,
    pub stream: String,
    pub seq: u64,
    pub image: Vec<u8>,
}

/// Up to `limit` of tenant `tenant`'s evidence images still in this database, oldest
/// frames first.
pub async fn held_images(
    conn: &mut AnyConnection,
    tenant: &str,
    limit: i64,
) -> Result<Vec<HeldImage>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.defect_id, e.stream, e.seq, e.image FROM defect_evidence e \
         JOIN defects d ON d.id = e.defect_id \
         WHERE d.tenant_id = $1 AND e.image IS NOT NULL \
         ORDER BY e.taken_ms, e.defect_id, e.stream, e.seq LIMIT $2",
    )
    .bind(tenant)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HeldImage {
                defect: r.try_get(0)?,
                stream: r.try_get(1)?,
                seq: r.try_get::<i64, _>(2)? as u64,
                image: r.try_get(3)?,
            })
        })
        .collect()
}

/// Marks an evidence image as moved to `object` (`bucket/key`) in one write: false when
/// the row is gone or no longer holds its image (nothing changed).
pub async fn image_moved(
    conn: &mut AnyConnection,
    defect: &str,
    stream: &str,
    seq: u64,
    object: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE defect_evidence SET image = NULL, object_key = $4 \
         WHERE defect_id = $1 AND stream = $2 AND seq = $3 AND image IS NOT NULL",
    )
    .bind(defect)
    .bind(stream)
    .bind(seq as i64)
    .bind(object)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A work order as kept.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WorkOrder {
    pub id: String,
    pub tenant: String,
    pub defect: String,
    #[schema(value_type = String)]
    pub state: WorkOrderState,
    pub crew: Option<String>,
    pub due_ms: Option<i64>,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub fixed_ms: Option<i64>,
    pub closed_ms: Option<i64>,
    /// When it entered `verifying`: only frames taken since count.
    pub verifying_since_ms: Option<i64>,
    /// Frames over the spot since then that did not see the defect.
    pub clear_frames: u32,
    pub note: Option<String>,
    pub photo: Option<String>,
}

const ORDER_COLUMNS: &str = "id, tenant_id, defect_id, state, crew_id, due_ms, opened_ms, updated_ms, fixed_ms, closed_ms, verifying_since_ms, clear_frames, note, photo";

fn order_of(r: &AnyRow) -> Result<WorkOrder, StoreError> {
    let state: String = r.try_get(3)?;
    Ok(WorkOrder {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        defect: r.try_get(2)?,
        state: state.parse().map_err(|e| corrupt("work order state", e))?,
        crew: r.try_get(4)?,
        due_ms: r.try_get(5)?,
        opened_ms: r.try_get(6)?,
        updated_ms: r.try_get(7)?,
        fixed_ms: r.try_get(8)?,
        closed_ms: r.try_get(9)?,
        verifying_since_ms: r.try_get(10)?,
        clear_frames: r.try_get::<i64, _>(11)?.clamp(0, i64::from(u32::MAX)) as u32,
        note: r.try_get(12)?,
        photo: r.try_get(13)?,
    })
}

/// Writes a work order (updating the row kept: a delete would take its history along).
pub async fn put_order(conn: &mut AnyConnection, o: &WorkOrder) -> Result<(), StoreError> {
    let updated = sqlx::query(
        "UPDATE work_orders SET state = $2, crew_id = $3, due_ms = $4, updated_ms = $5, fixed_ms = $6, \
         closed_ms = $7, verifying_since_ms = $8, clear_frames = $9, note = $10, photo = $11 WHERE id = $1",
    )
    .bind(o.id.clone())
    .bind(o.state.as_str())
    .bind(o.crew.clone())
    .bind(o.due_ms)
    .bind(o.updated_ms)
    .bind(o.fixed_ms)
    .bind(o.closed_ms)
    .bind(o.verifying_since_ms)
    .bind(i64::from(o.clear_frames))
    .bind(o.note.clone())
    .bind(o.photo.clone())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() > 0 {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO work_orders ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    );
    sqlx::query(&sql)
        .bind(o.id.clone())
        .bind(o.tenant.clone())
        .bind(o.defect.clone())
        .bind(o.state.as_str())
        .bind(o.crew.clone())
        .bind(o.due_ms)
        .bind(o.opened_ms)
        .bind(o.updated_ms)
        .bind(o.fixed_ms)
        .bind(o.closed_ms)
        .bind(o.verifying_since_ms)
        .bind(i64::from(o.clear_frames))
        .bind(o.note.clone())
        .bind(o.photo.clone())
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn order(conn: &mut AnyConnection, id: &str) -> Result<Option<WorkOrder>, StoreError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM work_orders WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(order_of).transpose()
}

/// The newest work order of a defect.
pub async fn order_of_defect(
    conn: &mut AnyConnection,
    defect: &str,
) -> Result<Option<WorkOrder>, StoreError> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM work_orders WHERE defect_id = $1 ORDER BY opened_ms DESC, id DESC LIMIT 1"
    );
    let row = sqlx::query(&sql).bind(defect).fetch_optional(conn).await?;
    row.as_ref().map(order_of).transpose()
}

/// A tenant's orders in `state` whose defect lies in a box, with their defect.
pub async fn orders_in(
    conn: &mut AnyConnection,
    tenant: &str,
    state: WorkOrderState,
    bbox: lingjing_inspect::BBox,
) -> Result<Vec<(WorkOrder, Defect)>, StoreError> {
    let cols: Vec<String> = ORDER_COLUMNS
        .split(", ")
        .map(|c| format!("o.{c}"))
        .chain(DEFECT_COLUMNS.split(", ").map(|c| format!("d.{c}")))
        .collect();
    let sql = format!(
        "SELECT {} FROM work_orders o JOIN defects d ON d.id = o.defect_id \
         WHERE o.tenant_id = $1 AND o.state = $2 AND d.lat >= $3 AND d.lat <= $4 AND d.lon >= $5 AND d.lon <= $6 \
         ORDER BY o.id",
        cols.join(", ")
    );
    let rows = sqlx::query(&sql)
        .bind(tenant)
        .bind(state.as_str())
        .bind(bbox.south)
        .bind(bbox.north)
        .bind(bbox.west)
        .bind(bbox.east)
        .fetch_all(conn)
        .await?;
    let n = ORDER_COLUMNS.split(", ").count();
    rows.iter()
        .map(|r| {
            let o = order_of(r)?;
            let d = defect_of_at(r, n)?;
            Ok((o, d))
        })
        .collect()
}

fn defect_of_at(r: &AnyRow, at: usize) -> Result<Defect, StoreError> {
    Ok(Defect {
        id: r.try_get(at)?,
        tenant: r.try_get(at + 1)?,
        class: r.try_get(at + 2)?,
        lat: r.try_get(at + 3)?,
        lon: r.try_get(at + 4)?,
        state: r.try_get(at + 5)?,
        source: r.try_get(at + 6)?,
        first_seen_ms: r.try_get(at + 7)?,
        last_seen_ms: r.try_get(at + 8)?,
        sightings: r.try_get::<i64, _>(at + 9)? as u64,
        best_score: r.try_get(at + 10)?,
        severity: r.try_get::<i64, _>(at + 11)?.clamp(0, 255) as u8,
        description: r.try_get(at + 12)?,
    })
}

/// How many active orders (dispatched, in progress) each crew of a tenant holds.
pub async fn crew_loads(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<HashMap<String, u32>, StoreError> {
    let rows = sqlx::query(
        "SELECT crew_id, COUNT(*) FROM work_orders WHERE tenant_id = $1 AND crew_id IS NOT NULL \
         AND state IN ('dispatched', 'in_progress') GROUP BY crew_id",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0)?,
                r.try_get::<i64, _>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
            ))
        })
        .collect()
}

/// Which work orders a list reads.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub tenant: Option<String>,
    pub state: Option<String>,
    pub crew: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Work orders, oldest opened first (a queue), with how many match in all.
pub async fn orders(
    conn: &mut AnyConnection,
    f: &OrderFilter,
) -> Result<(Vec<WorkOrder>, u64), StoreError> {
    let filter =
        "($1 = '' OR tenant_id = $1) AND ($2 = '' OR state = $2) AND ($3 = '' OR crew_id = $3)";
    let binds = [
        f.tenant.clone().unwrap_or_default(),
        f.state.clone().unwrap_or_default(),
        f.crew.clone().unwrap_or_default(),
    ];
    let count_sql = format!("SELECT COUNT(*) FROM work_orders WHERE {filter}");
    let mut q = sqlx::query(&count_sql);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let total = q.fetch_one(&mut *conn).await?.try_get::<i64, _>(0)? as u64;
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM work_orders WHERE {filter} ORDER BY opened_ms, id LIMIT $4 OFFSET $5"
    );
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let rows = q.bind(f.limit).bind(f.offset).fetch_all(conn).await?;
    Ok((rows.iter().map(order_of).collect::<Result<_, _>>()?, total))
}

/// One transition of a work order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderEvent {
    pub seq: u64,
    pub at_ms: i64,
    /// `system`, `operator`, or `tenant:ID` (and the person named, when one was).
    pub who: String,
    pub action: String,
    pub from: Option<String>,
    pub to: String,
    pub detail: Option<String>,
}

pub async fn add_event(
    conn: &mut AnyConnection,
    order: &str,
    e: &OrderEvent,
) -> Result<u64, StoreError> {
    let row =
        sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM work_order_events WHERE work_order_id = $1")
            .bind(order)
            .fetch_one(&mut *conn)
            .await?;
    let seq = row.try_get::<i64, _>(0)? + 1;
    sqlx::query(
        "INSERT INTO work_order_events (work_order_id, seq, at_ms, who, action, from_state, to_state, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(order)
    .bind(seq)
    .bind(e.at_ms)
    .bind(e.who.clone())
    .bind(e.action.clone())
    .bind(e.from.clone())
    .bind(e.to.clone())
    .bind(e.detail.clone())
    .execute(conn)
    .await?;
    Ok(seq as u64)
}

pub async fn events(conn: &mut AnyConnection, order: &str) -> Result<Vec<OrderEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, at_ms, who, action, from_state, to_state, detail FROM work_order_events \
         WHERE work_order_id = $1 ORDER BY seq",
    )
    .bind(order)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(OrderEvent {
                seq: r.try_get::<i64, _>(0)? as u64,
                at_ms: r.try_get(1)?,
                who: r.try_get(2)?,
                action: r.try_get(3)?,
                from: r.try_get(4)?,
                to: r.try_get(5)?,
                detail: r.try_get(6)?,
            })
        })
        .collect()
}

/// Classes and first sightings of a tenant's defects first seen in `[from, to)`.
pub async fn found_between(
    conn: &mut AnyConnection,
    tenant: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT class, first_seen_ms FROM defects WHERE tenant_id = $1 AND first_seen_ms >= $2 AND first_seen_ms < $3",
    )
    .bind(tenant)
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// What the weekly report needs of each of a tenant's orders.
pub async fn order_facts(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<Vec<lingjing_inspect::report::OrderFacts>, StoreError> {
    let rows = sqlx::query(
        "SELECT d.class, o.state, o.opened_ms, o.fixed_ms, o.closed_ms, o.due_ms FROM work_orders o \
         JOIN defects d ON d.id = o.defect_id WHERE o.tenant_id = $1",
    )
    .bind(tenant)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let state: String = r.try_get(1)?;
            Ok(lingjing_inspect::report::OrderFacts {
                class: r.try_get(0)?,
                state: state.parse().map_err(|e| corrupt("work order state", e))?,
                opened_ms: r.try_get(2)?,
                fixed_ms: r.try_get(3)?,
                closed_ms: r.try_get(4)?,
                due_ms: r.try_get(5)?,
            })
        })
        .collect()
}

/// Removes frames taken before `before_ms` (runs keep their totals; defects their
/// evidence): how many.
pub async fn prune_frames(conn: &mut AnyConnection, before_ms: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM inspect_frames WHERE taken_ms < $1")
        .bind(before_ms)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// What Open311's `GET requests` asks for.
#[derive(Debug, Clone)]
pub struct Open311Filter {
    pub tenant: String,
    /// These orders only (then the dates are not looked at).
    pub ids: Option<Vec<String>>,
    pub start_ms: i64,
    pub end_ms: i64,
    /// `Some(true)`: orders not closed, duplicate or cancelled; `Some(false)`: those.
    pub open: Option<bool>,
    pub classes: Option<Vec<String>>,
    pub limit: i64,
}

/// A tenant's work orders with their defects as Open311 lists them: newest opened first.
pub async fn open311_orders(
    conn: &mut AnyConnection,
    f: &Open311Filter,
) -> Result<Vec<(WorkOrder, Defect)>, StoreError> {
    let mut binds: Vec<String> = vec![f.tenant.clone()];
    let mut conditions = vec!["o.tenant_id = $1".to_owned()];
    let list = |binds: &mut Vec<String>, items: &[String]| {
        let marks: Vec<String> = items
            .iter()
            .map(|i| {
                binds.push(i.clone());
                format!("${}", binds.len())
            })
            .collect();
        marks.join(", ")
    };
    match &f.ids {
        Some(ids) if !ids.is_empty() => {
            let marks = list(&mut binds, ids);
            conditions.push(format!("o.id IN ({marks})"));
        }
        _ => {
            conditions.push(format!(
                "o.opened_ms >= {} AND o.opened_ms <= {}",
                f.start_ms, f.end_ms
            ));
        }
    }
    match f.open {
        Some(true) => conditions.push("o.state NOT IN ('closed', 'duplicate', 'cancelled')".into()),
        Some(false) => conditions.push("o.state IN ('closed', 'duplicate', 'cancelled')".into()),
        None => {}
    }
    if let Some(classes) = f.classes.as_ref().filter(|c| !c.is_empty()) {
        let marks = list(&mut binds, classes);
        conditions.push(format!("d.class IN ({marks})"));
    }
    let cols: Vec<String> = ORDER_COLUMNS
        .split(", ")
        .map(|c| format!("o.{c}"))
        .chain(DEFECT_COLUMNS.split(", ").map(|c| format!("d.{c}")))
        .collect();
    let sql = format!(
        "SELECT {} FROM work_orders o JOIN defects d ON d.id = o.defect_id WHERE {} \
         ORDER BY o.opened_ms DESC, o.id DESC LIMIT {}",
        cols.join(", "),
        conditions.join(" AND "),
        f.limit.clamp(1, 10_000)
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(conn).await?;
    let n = ORDER_COLUMNS.split(", ").count();
    rows.iter()
        .map(|r| Ok((order_of(r)?, defect_of_at(r, n)?)))
        .collect()
}

/// The newest event of each of these orders.
pub async fn last_events(
    conn: &mut AnyConnection,
    orders: &[String],
) -> Result<HashMap<String, OrderEvent>, StoreError> {
    let mut out = HashMap::new();
    for chunk in orders.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT e.work_order_id, e.seq, e.at_ms, e.who, e.action, e.from_state, e.to_state, e.detail \
             FROM work_order_events e WHERE e.work_order_id IN ({}) AND e.seq = \
             (SELECT MAX(x.seq) FROM work_order_events x WHERE x.work_order_id = e.work_order_id)",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(
                r.try_get::<String, _>(0)?,
                OrderEvent {
                    seq: r.try_get::<i64, _>(1)? as u64,
                    at_ms: r.try_get(2)?,
                    who: r.try_get(3)?,
                    action: r.try_get(4)?,
                    from: r.try_get(5)?,
                    to: r.try_get(6)?,
                    detail: r.try_get(7)?,
                },
            );
        }
    }
    Ok(out)
}
