//! Road inspection in the control plane: the intake of frames from edge AI nodes
//! (idempotent per outbox stream and sequence number), detections merged into defects,
//! defects opening work orders dispatched to crews, and the loop closed (or reopened) by
//! later frames over the spot. Every step of one batch runs in one transaction, so a
//! batch is taken whole or not at all; the decisions are the pure functions of
//! `lingjing-inspect`, the SQL is `store::inspect`'s.

use std::collections::HashMap;

use base64::Engine as _;
use lingjing_inspect::{Action, Pass, Verdict, WorkOrderState, haversine_m};
use lingjing_model::inspect::{
    Crew, Device, FrameAck, FrameBatch, FrameRecord, InspectPolicy, RecordKind, RejectedRecord,
};
use sqlx::AnyConnection;

use crate::error::ApiError;
use crate::store::inspect::{self as db, Defect, Evidence, OrderEvent, Run, WorkOrder};
use crate::store::{DocWindow, Store, get_doc, page_docs};

/// Most evidence frames a defect keeps (the best scores).
pub const MAX_EVIDENCE: usize = 3;

/// How long the frames of runs are kept (the paths runs covered; defects keep their
/// evidence, runs their totals).
pub const FRAME_RETENTION_DAYS: i64 = 90;

/// A frame within this many times the seen distance of a defect, but beyond it, is a
/// vehicle that has passed the spot (or is yet to reach it).
pub const PASSED_FACTOR: f64 = 4.0;

/// Half the angle a forward patrol camera sees (degrees either side of the heading).
pub const CAMERA_HALF_ANGLE_DEG: f64 = 60.0;
/// A defect this close to the vehicle is in view whatever the heading.
pub const UNDER_VEHICLE_M: f64 = 3.0;

/// Who did something automatically.
pub const SYSTEM: &str = "system";

/// Checks the shape of a batch from a node's outbox (frames or monitoring records):
/// its stream id, at most `max` records, in increasing order of seq.
pub fn check_batch(
    stream: &str,
    seqs: impl Iterator<Item = u64>,
    max: usize,
) -> Result<(), ApiError> {
    if stream.is_empty()
        || stream.len() > 64
        || !stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(ApiError::invalid(
            "stream",
            "1 to 64 letters, digits or `-`",
        ));
    }
    let mut last = 0;
    for (i, seq) in seqs.enumerate() {
        if i >= max {
            return Err(ApiError::invalid(
                "records",
                format!("at most {max} a batch"),
            ));
        }
        if seq <= last {
            return Err(ApiError::invalid(
                format!("records[{i}].seq"),
                "records go in increasing order of seq, from 1",
            ));
        }
        last = seq;
    }
    Ok(())
}

/// The last record kept from outbox `stream` (0: none yet), which must be `node`'s.
pub async fn kept_through(
    conn: &mut AnyConnection,
    stream: &str,
    node: &str,
) -> Result<u64, ApiError> {
    match db::stream(conn, stream).await? {
        Some((owner, _)) if owner != node => Err(ApiError::Forbidden(format!(
            "outbox stream `{stream}` is node `{owner}`'s"
        ))),
        Some((_, through)) => Ok(through),
        None => Ok(0),
    }
}

/// Takes a node's batch of frames: each record after the stream's last kept one is
/// kept once (a batch sent again after a lost answer is skipped), its detections merged
/// into defects, and orders being verified counted down or reopened.
pub async fn take_batch(
    store: &Store,
    node: &str,
    batch: &FrameBatch,
    now_ms: i64,
) -> Result<FrameAck, ApiError> {
    if batch.node != node {
        return Err(ApiError::Forbidden(format!(
            "this node credential belongs to node `{node}`: it may send only its own frames, not `{}`'s",
            batch.node
        )));
    }
    check_batch(
        &batch.stream,
        batch.records.iter().map(|r| r.seq),
        lingjing_model::inspect::MAX_BATCH_FRAMES,
    )?;
    let mut tx = store.write(false).await?;
    let conn = &mut *tx.tx;
    // The devices' tenants' locks, in order (no two batches wait on each other).
    let mut cache = Cache::default();
    let mut tenants = std::collections::BTreeSet::new();
    for r in &batch.records {
        if let Some(d) = cache.device(conn, &r.device).await? {
            tenants.insert(d.tenant);
        }
    }
    for t in &tenants {
        db::lock_tenant(conn, t).await?;
    }
    let mut through = kept_through(conn, &batch.stream, node).await?;
    let mut accepted = 0;
    let mut rejected = Vec::new();
    let kept_before = through;
    for (i, r) in batch
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.seq > kept_before)
    {
        through = r.seq;
        // A record that cannot be taken is refused on its own (and said so): it never
        // blocks the stream behind it.
        if let Err(e) = r.check(&format!("records[{i}]")) {
            tracing::warn!(node, seq = r.seq, "a patrol frame refused: {e}");
            rejected.push(RejectedRecord {
                seq: r.seq,
                field: e.field,
                message: e.message,
            });
            continue;
        }
        let Some(device) = cache.device(conn, &r.device).await? else {
            tracing::warn!(node, device = %r.device, seq = r.seq, "a frame of a device that is not registered (deleted since?) was dropped");
            continue;
        };
        if r.tenant.as_ref().is_some_and(|t| *t != device.tenant) {
            tracing::warn!(node, device = %r.device, seq = r.seq, "a frame taken for another tenant's device of this id (deleted and made again since) was dropped");
            continue;
        }
        let policy = cache.policy(conn, &device.tenant).await?;
        if take_frame(conn, node, &batch.stream, &device, &policy, r, now_ms).await? {
            accepted += 1;
        }
    }
    if !batch.records.is_empty() {
        db::set_stream(conn, &batch.stream, node, through, now_ms).await?;
    }
    tx.commit().await?;
    Ok(FrameAck {
        through,
        accepted,
        rejected,
    })
}

#[derive(Default)]
struct Cache {
    devices: HashMap<String, Option<Device>>,
    policies: HashMap<String, InspectPolicy>,
}

impl Cache {
    async fn device(
        &mut self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<Option<Device>, ApiError> {
        if !self.devices.contains_key(id) {
            let d = get_doc::<Device>(conn, id).await?;
            self.devices.insert(id.to_owned(), d);
        }
        Ok(self.devices.get(id).cloned().flatten())
    }

    async fn policy(
        &mut self,
        conn: &mut AnyConnection,
        tenant: &str,
    ) -> Result<InspectPolicy, ApiError> {
        if !self.policies.contains_key(tenant) {
            let p = db::policy(conn, tenant).await?;
            self.policies.insert(tenant.to_owned(), p);
        }
        Ok(self.policies[tenant].clone())
    }
}

/// One new frame: kept, counted in its run, checked against orders being verified, and
/// its detections merged into defects.
async fn take_frame(
    conn: &mut AnyConnection,
    node: &str,
    stream: &str,
    device: &Device,
    policy: &InspectPolicy,
    r: &FrameRecord,
    now_ms: i64,
) -> Result<bool, ApiError> {
    let tenant = device.tenant.as_str();
    if !db::insert_frame(conn, stream, node, tenant, r).await? {
        // This camera's frame came already (sent again, or through another node).
        return Ok(false);
    }
    let at = (r.lat, r.lon);
    let frame = r.kind == RecordKind::Frame;
    let run = match db::run(conn, tenant, &r.device, &r.run).await? {
        Some(mut run) => {
            run.length_m += haversine_m((run.last_lat, run.last_lon), at);
            run.frames += u64::from(frame);
            run.detections += r.detections.len() as u64;
            run.started_ms = run.started_ms.min(r.taken_ms);
            run.last_ms = run.last_ms.max(r.taken_ms);
            run.last_lat = r.lat;
            run.last_lon = r.lon;
            run
        }
        None => Run {
            id: r.run.clone(),
            tenant: tenant.to_owned(),
            device: r.device.clone(),
            started_ms: r.taken_ms,
            last_ms: r.taken_ms,
            frames: u64::from(frame),
            detections: r.detections.len() as u64,
            length_m: 0.0,
            last_lat: r.lat,
            last_lon: r.lon,
        },
    };
    db::put_run(conn, &run).await?;
    if !frame {
        // A position only: the path goes on; no model looked, nothing found or cleared.
        return Ok(true);
    }
    let reopened = verify(conn, tenant, policy, r, now_ms).await?;
    // The best detection of each class in the frame is one sighting.
    let mut best: Vec<(String, f32)> = Vec::new();
    for d in &r.detections {
        let class = lingjing_inspect::classes::canonical_code(&d.class);
        match best.iter_mut().find(|(c, _)| *c == class) {
            Some((_, s)) if *s >= d.score => {}
            Some((_, s)) => *s = d.score,
            None => best.push((class, d.score)),
        }
    }
    for (class, score) in best {
        let sighting = Sighting {
            tenant,
            class: &class,
            at,
            score,
            taken_ms: r.taken_ms,
            source: "patrol",
            what: format!("seen by device `{}` (run `{}`)", r.device, r.run),
            description: None,
        };
        let image = r.image.as_deref().and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| {
                    tracing::warn!(
                        node,
                        seq = r.seq,
                        "an evidence image is not base64 ({e}); kept without it"
                    )
                })
                .ok()
        });
        let evidence = Evidence {
            stream: stream.to_owned(),
            seq: r.seq,
            score: f64::from(score),
            taken_ms: r.taken_ms,
            device: r.device.clone(),
            frame: r.frame.clone(),
            has_image: image.is_some(),
            object: None,
        };
        // A class that just reopened an order is a sighting of that order's defect.
        let defect = match reopened
            .iter()
            .find(|d| lingjing_inspect::classes::same_class(&d.class, &class))
        {
            Some(d) => {
                let mut d = d.clone();
                note_sighting(&mut d, &sighting);
                db::put_defect(conn, &d).await?;
                d
            }
            None => sight(conn, policy, &sighting, now_ms).await?,
        };
        keep_evidence(conn, &defect, evidence, image).await?;
    }
    Ok(true)
}

/// Orders being verified near this frame: over the spot, a frame that sees the class again
/// reopens the order and one that does not counts as clear; beyond it (a vehicle that has
/// passed), enough clear frames close it, unless this frame sees the class (ahead or
/// behind). Returns the defects whose orders it reopened.
async fn verify(
    conn: &mut AnyConnection,
    tenant: &str,
    policy: &InspectPolicy,
    r: &FrameRecord,
    now_ms: i64,
) -> Result<Vec<Defect>, ApiError> {
    let at = (r.lat, r.lon);
    let beyond = policy.seen_metres * PASSED_FACTOR;
    let near = lingjing_inspect::geo::bbox_around(at, beyond);
    let mut reopened = Vec::new();
    for (mut order, defect) in db::orders_in(conn, tenant, WorkOrderState::Verifying, near).await? {
        let distance = haversine_m(at, (defect.lat, defect.lon));
        if distance > beyond
            || order
                .verifying_since_ms
                .is_some_and(|since| r.taken_ms < since)
        {
            continue;
        }
        let seen = r
            .detections
            .iter()
            .any(|d| lingjing_inspect::classes::same_class(&d.class, &defect.class));
        // Over the spot: near it, and (with a heading) the camera facing it; a spot
        // behind the camera is one the vehicle has passed.
        let facing = lingjing_inspect::geo::looks_at(
            at,
            r.heading,
            (defect.lat, defect.lon),
            CAMERA_HALF_ANGLE_DEG,
            UNDER_VEHICLE_M,
        );
        let pass = if distance <= policy.seen_metres && facing {
            Pass::Over { seen }
        } else if seen {
            // Seen from further off: not over the spot, but no proof of a repair either.
            continue;
        } else {
            Pass::Beyond
        };
        match lingjing_inspect::verify_frame(order.clear_frames, pass, policy.verify_frames) {
            Verdict::Pending { clear_frames } if clear_frames == order.clear_frames => {}
            Verdict::Pending { clear_frames } => {
                order.clear_frames = clear_frames;
                order.updated_ms = now_ms;
                db::put_order(conn, &order).await?;
            }
            Verdict::Close => {
                let detail = format!(
                    "{} frames over the spot since the fix saw no {} (closed as device `{}` left it, run `{}`)",
                    order.clear_frames,
                    lingjing_inspect::classes::class_name(&defect.class),
                    r.device,
                    r.run
                );
                apply(
                    conn,
                    &mut order,
                    &Action::Close,
                    SYSTEM,
                    Some(detail),
                    now_ms,
                )
                .await?;
            }
            Verdict::Reopen => {
                reopen(
                    conn,
                    &mut order,
                    format!(
                        "still seen after the fix by device `{}` (run `{}`, frame `{}`)",
                        r.device, r.run, r.frame
                    ),
                    now_ms,
                )
                .await?;
                if let Some(d) = db::defect(conn, &defect.id).await? {
                    reopened.push(d);
                }
            }
        }
    }
    Ok(reopened)
}

/// A defect seen (by a model, or reported by a citizen).
pub struct Sighting<'a> {
    pub tenant: &'a str,
    pub class: &'a str,
    pub at: (f64, f64),
    pub score: f32,
    pub taken_ms: i64,
    /// `patrol` or `citizen`.
    pub source: &'static str,
    /// How it was seen, for the order's history.
    pub what: String,
    pub description: Option<String>,
}

/// Merges a sighting into the nearest defect of its class within the tenant's merge
/// distance, or makes a new defect; opens (and dispatches) its work order when its
/// severity reaches the tenant's threshold; reopens an order fixed since the sighting's
/// frame was taken. Returns the defect.
pub async fn sight(
    conn: &mut AnyConnection,
    policy: &InspectPolicy,
    s: &Sighting<'_>,
    now_ms: i64,
) -> Result<Defect, ApiError> {
    let near = lingjing_inspect::geo::bbox_around(s.at, policy.merge_metres);
    let mut candidates = Vec::new();
    for d in db::defects_in(
        conn,
        s.tenant,
        s.class,
        near,
        &["open", "dismissed", "duplicate", "repaired"],
    )
    .await?
    {
        // A repaired defect takes sightings from before its order closed (a frame late out
        // of an outbox); one after is a new defect.
        if d.state == "repaired" {
            let closed = db::order_of_defect(conn, &d.id)
                .await?
                .and_then(|o| o.closed_ms);
            if closed.is_none_or(|c| s.taken_ms >= c) {
                continue;
            }
        }
        candidates.push(d);
    }
    let known: Vec<lingjing_inspect::dedup::Known> = candidates
        .iter()
        .map(|d| lingjing_inspect::dedup::Known {
            id: d.id.clone(),
            class: d.class.clone(),
            at: (d.lat, d.lon),
        })
        .collect();
    let found =
        lingjing_inspect::dedup::nearest_same_class(s.class, s.at, policy.merge_metres, &known)
            .map(|(k, _)| k.id.clone());
    let defect = match found.and_then(|id| candidates.into_iter().find(|d| d.id == id)) {
        Some(mut d) => {
            note_sighting(&mut d, s);
            db::put_defect(conn, &d).await?;
            match db::order_of_defect(conn, &d.id).await? {
                // Seen since the fix: the repair did not hold (also after a close, for a
                // frame taken before it).
                Some(mut order)
                    if matches!(
                        order.state,
                        WorkOrderState::Fixed | WorkOrderState::Verifying | WorkOrderState::Closed
                    ) && order.fixed_ms.is_some_and(|f| s.taken_ms >= f) =>
                {
                    reopen(conn, &mut order, format!("seen again: {}", s.what), now_ms).await?;
                }
                Some(_) => {}
                None if d.state == "open" && d.severity >= policy.open_severity => {
                    open_order(conn, &d, &s.what, now_ms).await?;
                }
                None => {}
            }
            d
        }
        None => {
            let n = db::next_counter(conn, "defect").await?;
            let d = Defect {
                id: format!("D-{n}"),
                tenant: s.tenant.to_owned(),
                class: s.class.to_owned(),
                lat: s.at.0,
                lon: s.at.1,
                state: "open".into(),
                source: s.source.into(),
                first_seen_ms: s.taken_ms,
                last_seen_ms: s.taken_ms,
                sightings: 1,
                best_score: f64::from(s.score),
                severity: lingjing_inspect::classes::severity(s.class, s.score),
                description: s.description.clone(),
            };
            db::put_defect(conn, &d).await?;
            if d.severity >= policy.open_severity {
                open_order(conn, &d, &s.what, now_ms).await?;
            }
            d
        }
    };
    Ok(defect)
}

/// Counts one more sighting of a defect: its place moves to the mean of its sightings.
fn note_sighting(d: &mut Defect, s: &Sighting<'_>) {
    let (lat, lon) = lingjing_inspect::dedup::merged_position((d.lat, d.lon), d.sightings, s.at);
    d.lat = lat;
    d.lon = lon;
    d.sightings += 1;
    d.last_seen_ms = d.last_seen_ms.max(s.taken_ms);
    d.best_score = d.best_score.max(f64::from(s.score));
    d.severity = d.severity.max(lingjing_inspect::classes::severity(
        s.class,
        d.best_score as f32,
    ));
    if d.description.is_none() {
        d.description = s.description.clone();
    }
}

/// Keeps a frame as a defect's evidence when it is among its best three.
async fn keep_evidence(
    conn: &mut AnyConnection,
    defect: &Defect,
    e: Evidence,
    image: Option<Vec<u8>>,
) -> Result<(), ApiError> {
    let kept = db::evidence(conn, &defect.id).await?;
    if kept.iter().any(|k| k.stream == e.stream && k.seq == e.seq) {
        return Ok(());
    }
    if kept.len() >= MAX_EVIDENCE {
        let worst = kept.last().expect("at least three kept");
        if worst.score >= e.score {
            return Ok(());
        }
        db::delete_evidence(conn, &defect.id, &worst.stream, worst.seq).await?;
    }
    db::insert_evidence(conn, &defect.id, &e, image).await?;
    Ok(())
}

/// Opens a work order for a defect and dispatches it to the crew whose area holds it and
/// has the most room, if any.
pub async fn open_order(
    conn: &mut AnyConnection,
    defect: &Defect,
    what: &str,
    now_ms: i64,
) -> Result<WorkOrder, ApiError> {
    let n = db::next_counter(conn, "work_order").await?;
    let mut order = WorkOrder {
        id: format!("WO-{n}"),
        tenant: defect.tenant.clone(),
        defect: defect.id.clone(),
        state: WorkOrderState::Open,
        crew: None,
        due_ms: Some(lingjing_inspect::classes::due_ms(
            &defect.class,
            defect.severity,
            now_ms,
        )),
        opened_ms: now_ms,
        updated_ms: now_ms,
        fixed_ms: None,
        closed_ms: None,
        verifying_since_ms: None,
        clear_frames: 0,
        note: None,
        photo: None,
    };
    db::put_order(conn, &order).await?;
    db::add_event(
        conn,
        &order.id,
        &OrderEvent {
            seq: 0,
            at_ms: now_ms,
            who: SYSTEM.into(),
            action: "open".into(),
            from: None,
            to: WorkOrderState::Open.as_str().into(),
            detail: Some(format!(
                "{} `{}` (severity {}) {what}",
                lingjing_inspect::classes::class_name(&defect.class),
                defect.id,
                defect.severity
            )),
        },
    )
    .await?;
    auto_dispatch(conn, &mut order, defect, None, now_ms).await?;
    Ok(order)
}

/// Dispatches an open or reopened order: to `prefer` (its earlier crew) when it still
/// exists and has room, else to the best crew for the place; left as it is when none.
async fn auto_dispatch(
    conn: &mut AnyConnection,
    order: &mut WorkOrder,
    defect: &Defect,
    prefer: Option<&str>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let crews = crews_of(conn, &order.tenant).await?;
    let loads = db::crew_loads(conn, &order.tenant).await?;
    let crew = prefer
        .and_then(|p| crews.iter().find(|c| c.id == p))
        .filter(|c| loads.get(&c.id).copied().unwrap_or(0) < c.capacity)
        .or_else(|| {
            let with_loads: Vec<lingjing_inspect::dispatch::CrewLoad<'_>> = crews
                .iter()
                .map(|c| lingjing_inspect::dispatch::CrewLoad {
                    crew: c,
                    active: loads.get(&c.id).copied().unwrap_or(0),
                })
                .collect();
            lingjing_inspect::dispatch::choose_crew((defect.lat, defect.lon), &with_loads)
        });
    if let Some(crew) = crew {
        let action = Action::Dispatch {
            crew: crew.id.clone(),
        };
        apply(conn, order, &action, SYSTEM, None, now_ms).await?;
    }
    Ok(())
}

/// A tenant's crews (at most 10,000).
pub async fn crews_of(conn: &mut AnyConnection, tenant: &str) -> Result<Vec<Crew>, ApiError> {
    let (crews, _) = page_docs::<Crew>(
        conn,
        DocWindow {
            tenant: Some(tenant),
            limit: Some(10_000),
            ..Default::default()
        },
    )
    .await?;
    Ok(crews)
}

/// Reopens an order (the defect is still there) and sends it back to its crew.
async fn reopen(
    conn: &mut AnyConnection,
    order: &mut WorkOrder,
    reason: String,
    now_ms: i64,
) -> Result<(), ApiError> {
    let crew = order.crew.clone();
    apply(
        conn,
        order,
        &Action::Reopen { reason },
        SYSTEM,
        None,
        now_ms,
    )
    .await?;
    if let Some(defect) = db::defect(conn, &order.defect).await? {
        auto_dispatch(conn, order, &defect, crew.as_deref(), now_ms).await?;
    }
    Ok(())
}

/// Takes one action on an order (checked by the state machine), records who and when,
/// and follows what it implies: a fix goes straight to verifying; a close marks the
/// defect repaired, a cancel dismisses it, a duplicate marks it so.
pub async fn apply(
    conn: &mut AnyConnection,
    order: &mut WorkOrder,
    action: &Action,
    who: &str,
    detail: Option<String>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let from = order.state;
    let to = lingjing_inspect::next(from, action).map_err(|e| match e {
        lingjing_inspect::TransitionError::Invalid { field, message } => {
            ApiError::invalid(field, message)
        }
        e @ lingjing_inspect::TransitionError::NotAllowed { .. } => {
            ApiError::conflict("invalid_transition", e.to_string())
        }
    })?;
    let mut detail = detail;
    let mut defect_state = None;
    match action {
        Action::Dispatch { crew } => {
            order.crew = Some(crew.clone());
            detail.get_or_insert_with(|| format!("to crew `{crew}`"));
        }
        Action::Start => {}
        Action::Fix { note, photo } => {
            order.note = Some(note.clone());
            order.photo = photo.clone();
            order.fixed_ms = Some(now_ms);
            detail.get_or_insert_with(|| note.clone());
        }
        Action::Verify => {
            order.verifying_since_ms = Some(now_ms);
            order.clear_frames = 0;
        }
        Action::Close => {
            order.closed_ms = Some(now_ms);
            defect_state = Some("repaired");
        }
        Action::Reopen { reason } => {
            order.verifying_since_ms = None;
            order.clear_frames = 0;
            order.closed_ms = None;
            defect_state = Some("open");
            detail.get_or_insert_with(|| reason.clone());
        }
        Action::Cancel { reason } => {
            defect_state = Some("dismissed");
            detail.get_or_insert_with(|| reason.clone());
        }
        Action::Duplicate { of } => {
            defect_state = Some("duplicate");
            detail.get_or_insert_with(|| format!("of work order `{of}`"));
        }
    }
    order.state = to;
    order.updated_ms = now_ms;
    db::put_order(conn, order).await?;
    db::add_event(
        conn,
        &order.id,
        &OrderEvent {
            seq: 0,
            at_ms: now_ms,
            who: who.to_owned(),
            action: action.name().to_owned(),
            from: Some(from.as_str().to_owned()),
            to: to.as_str().to_owned(),
            detail,
        },
    )
    .await?;
    if let Some(state) = defect_state
        && let Some(mut defect) = db::defect(conn, &order.defect).await?
    {
        defect.state = state.to_owned();
        db::put_defect(conn, &defect).await?;
    }
    if to == WorkOrderState::Fixed {
        Box::pin(apply(conn, order, &Action::Verify, SYSTEM, None, now_ms)).await?;
    }
    Ok(())
}
