//! Road inspection on the node (issue 17): `POST /v1/patrol/frames` takes a patrol
//! camera's frame, runs the device's slot on it (as `/v1/infer/{slot}` does: same queue,
//! same metrics), turns the model's labels or boxes into detections with the device's
//! rules, and keeps the frame's record in the [`Outbox`] before answering; the forwarder
//! sends the outbox's records to the control plane (`POST /v1/inspect/frames`) and
//! acknowledges them there only once the control plane has taken them.
//!
//! Devices are known from the `aiot` snapshot (`PatrolDevice`: the SHA-256 of each
//! device's credential), so a node checks them with the control plane unreachable.
//! Every frame is kept, with or without detections (the control plane needs every
//! position of a run to know which road was seen); its image only when the model saw
//! something and it is at most [`MAX_EVIDENCE_BYTES`].
//!
//! The contract: `Authorization: Bearer <device token>`; query `run`, `frame` (1 to 128
//! characters), `lat`, `lon`, optional `heading` (0 to 360) and `taken_ms` (ms since the
//! epoch; default now); the body the JPEG or PNG frame. 200 `{"seq", "model", "version",
//! "detections"}` once the record is durable; 401 unknown or missing credential; 400 a
//! bad field (named in `error.field`); 503 the device's slot is not serving here (or the
//! outbox cannot be written); 507 the outbox is full.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use base64::Engine as _;
use lingjing_client::Client;
use lingjing_model::inspect::{
    DetectRule, Detection, FrameRecord, MAX_BATCH_FRAMES, MAX_EVIDENCE_BYTES, MAX_FRAME_DETECTIONS,
    PatrolDevice,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::decode::Decoded;
use crate::metrics::{ClassLabels, FrameLabels, Metrics};
use crate::runtime::{InferFailure, Owned, Runtime};
use crate::server::{error, field_error, infer_failure, media_type, retry_after};
use lingjing_client::forward::Forwarder;
use lingjing_client::outbox::{Outbox, is_full};

/// Most records in one batch to the control plane.
pub const FORWARD_BATCH_RECORDS: usize = MAX_BATCH_FRAMES;
/// About the most bytes of records in one batch (one record always goes).
pub const FORWARD_BATCH_BYTES: usize = 4 << 20;
/// How far ahead of the node's clock a frame's `taken_ms` may be.
pub(crate) const MAX_CLOCK_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// The patrol side of a node: the devices it knows, the runtime that runs their slots,
/// and the outbox their frames go to.
pub struct Patrol {
    runtime: Arc<Runtime>,
    /// The outbox, or why it could not be opened (frames are then refused with 503).
    outbox: Result<Arc<Outbox>, String>,
    /// Devices by the SHA-256 (hex) of their credential.
    devices: RwLock<HashMap<String, Arc<PatrolDevice>>>,
    /// Every device the latest snapshot lists, by id (MQTT messages name their device by
    /// its topic: the broker authenticated it).
    by_id: RwLock<HashMap<String, Arc<PatrolDevice>>>,
    appended: Arc<Notify>,
}

/// The answer to a kept frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameAnswer {
    /// The record's number in this node's outbox.
    pub seq: u64,
    pub model: String,
    pub version: u32,
    pub detections: Vec<Detection>,
}

/// The device a request's credential belongs to (set by the authentication layer).
#[derive(Clone)]
struct Caller(Arc<PatrolDevice>);

impl Patrol {
    pub fn new(runtime: Arc<Runtime>, outbox: Arc<Outbox>) -> Arc<Patrol> {
        Patrol::build(runtime, Ok(outbox))
    }

    /// A patrol side whose outbox could not be opened (`why`): frames are refused.
    pub fn without_outbox(runtime: Arc<Runtime>, why: String) -> Arc<Patrol> {
        Patrol::build(runtime, Err(why))
    }

    fn build(runtime: Arc<Runtime>, outbox: Result<Arc<Outbox>, String>) -> Arc<Patrol> {
        if let Ok(o) = &outbox {
            runtime.metrics().outbox_depth.set(o.depth() as i64);
        }
        Arc::new(Patrol {
            runtime,
            outbox,
            devices: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
            appended: Arc::new(Notify::new()),
        })
    }

    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref().ok()
    }

    /// Notified after each record appended (the forwarder waits on it).
    pub fn appended(&self) -> &Arc<Notify> {
        &self.appended
    }

    /// Takes the devices a new snapshot lists (those without a credential are left out;
    /// two with the same credential hash are both left out: it cannot say which).
    pub fn set_devices(&self, devices: &[PatrolDevice]) {
        let mut by_hash: HashMap<String, Arc<PatrolDevice>> = HashMap::new();
        let mut shared = Vec::new();
        for d in devices {
            let Some(hash) = d
                .token_sha256
                .as_ref()
                .map(|h| h.trim().to_ascii_lowercase())
            else {
                continue;
            };
            if by_hash.insert(hash.clone(), Arc::new(d.clone())).is_some() {
                tracing::warn!(device = %d.id, "two devices have the same credential: both are refused until one gets a new one");
                shared.push(hash);
            }
        }
        for h in shared {
            by_hash.remove(&h);
        }
        let by_id = devices
            .iter()
            .map(|d| (d.id.clone(), Arc::new(d.clone())))
            .collect();
        *self.devices.write().unwrap_or_else(|p| p.into_inner()) = by_hash;
        *self.by_id.write().unwrap_or_else(|p| p.into_inner()) = by_id;
    }

    /// The device `id` if the latest snapshot lists it (with or without a credential).
    pub fn device_by_id(&self, id: &str) -> Option<Arc<PatrolDevice>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every device the latest snapshot lists, by id.
    pub fn listed_devices(&self) -> Vec<Arc<PatrolDevice>> {
        let mut out: Vec<_> = self
            .by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// How many devices this node takes frames from.
    pub fn device_count(&self) -> usize {
        self.devices.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn device(&self, token: &str) -> Option<Arc<PatrolDevice>> {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        self.devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .cloned()
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        self.runtime.metrics()
    }

    /// One frame of `device`: checked, run, kept; the answer, or the error response.
    async fn take(
        &self,
        device: &PatrolDevice,
        uri: &Uri,
        headers: &HeaderMap,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<FrameAnswer, Response> {
        let outbox = match &self.outbox {
            Ok(o) => o.clone(),
            Err(why) => {
                return Err(retry_after(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "outbox_unavailable",
                        format!("this node cannot keep frames ({why}): send them to another node"),
                    ),
                    "60",
                ));
            }
        };
        let query = FrameQuery::parse(uri).map_err(Invalid::response)?;
        let mut record = FrameRecord {
            seq: 0,
            kind: Default::default(),
            device: device.id.clone(),
            run: query.run,
            frame: query.frame,
            taken_ms: query.taken_ms,
            lat: query.lat,
            lon: query.lon,
            heading: query.heading,
            model: device.slot.clone(),
            version: 0,
            detections: Vec::new(),
            tenant: Some(device.tenant.clone()),
            image: None,
        };
        record.check("frame").map_err(|e| {
            let field = e.field.strip_prefix("frame.").unwrap_or(&e.field);
            field_error(StatusCode::BAD_REQUEST, "invalid", field, e.message.clone())
        })?;
        match media_type(headers).as_str() {
            "image/jpeg" | "image/png" | "application/octet-stream" | "" => {}
            other => {
                return Err(error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!(
                        "Content-Type {other} is not taken: send the frame as image/jpeg or image/png"
                    ),
                ));
            }
        }
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "the frame is over {} MiB: send a smaller image",
                        crate::server::MAX_BODY_BYTES >> 20
                    ),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("could not read the frame: {e}"),
                )
            }
        })?;
        if body.is_empty() {
            return Err(field_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "body",
                "the body is empty: send the frame (a JPEG or PNG image)",
            ));
        }

        let slot = device.slot.as_str();
        let inference = self
            .runtime
            .infer(slot, Owned::Image(body.clone()))
            .await
            .map_err(|f| match f {
                InferFailure::UnknownSlot => retry_after(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_serving",
                        format!(
                            "this node does not run slot `{slot}` (device `{}`'s model) yet: try again later or send the frame to another node",
                            device.id
                        ),
                    ),
                    "5",
                ),
                other => infer_failure(slot, other),
            })?;
        record.model = inference.model.clone();
        record.version = inference.version;
        record.detections = detections(
            &inference.result,
            &device.detects,
            inference.frame_size.unwrap_or((0, 0)),
        );
        if !record.detections.is_empty() {
            if body.len() <= MAX_EVIDENCE_BYTES {
                record.image = Some(base64::engine::general_purpose::STANDARD.encode(&body));
            } else {
                self.metrics().patrol_evidence_skipped.inc();
            }
        }
        // A record the control plane refuses would stop the outbox's stream: never kept.
        record.check("record").map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad_record",
                format!(
                    "device `{}`'s rules make a record the control plane would refuse ({e}): fix the device's `detects`",
                    device.id
                ),
            )
        })?;

        let kept = record.clone();
        let appended = tokio::task::spawn_blocking(move || outbox.append(kept)).await;
        let seq = match appended {
            Ok(Ok(seq)) => seq,
            Ok(Err(e)) if is_full(&e) => {
                return Err(retry_after(
                    error(
                        StatusCode::INSUFFICIENT_STORAGE,
                        "outbox_full",
                        e.to_string(),
                    ),
                    "60",
                ));
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot append a frame to the outbox");
                return Err(retry_after(
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "outbox_failed",
                        format!(
                            "this node could not keep the frame ({e}): send it again, or to another node"
                        ),
                    ),
                    "5",
                ));
            }
            Err(e) => {
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "outbox_failed",
                    format!("the outbox write stopped ({e}): send the frame again"),
                ));
            }
        };
        self.appended.notify_one();
        if let Some(o) = self.outbox() {
            self.metrics().outbox_depth.set(o.depth() as i64);
        }
        for d in &record.detections {
            self.metrics()
                .patrol_detections
                .get_or_create(&ClassLabels {
                    class: d.class.clone(),
                })
                .inc();
        }
        Ok(FrameAnswer {
            seq,
            model: record.model,
            version: record.version,
            detections: record.detections,
        })
    }
}

/// The query of `POST /v1/patrol/frames`, parsed.
struct FrameQuery {
    run: String,
    frame: String,
    lat: f64,
    lon: f64,
    heading: Option<f32>,
    taken_ms: i64,
}

const QUERY_FIELDS: &str = "run, frame, lat, lon, heading, taken_ms";

/// A request's field that is not right (400).
struct Invalid {
    field: Option<String>,
    message: String,
}

impl Invalid {
    fn response(self) -> Response {
        match self.field {
            Some(f) => field_error(StatusCode::BAD_REQUEST, "invalid", &f, self.message),
            None => error(StatusCode::BAD_REQUEST, "invalid", self.message),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl FrameQuery {
    fn parse(uri: &Uri) -> Result<FrameQuery, Invalid> {
        let bad = |field: &str, message: String| Invalid {
            field: Some(field.to_owned()),
            message,
        };
        let Query(pairs) =
            Query::<Vec<(String, String)>>::try_from_uri(uri).map_err(|e| Invalid {
                field: None,
                message: format!("the query string is not readable ({e}): give {QUERY_FIELDS}"),
            })?;
        let mut fields: HashMap<&str, &str> = HashMap::new();
        for (k, v) in &pairs {
            if !QUERY_FIELDS.split(", ").any(|f| f == k) {
                return Err(bad(
                    k,
                    format!("unknown query parameter `{k}`: the parameters are {QUERY_FIELDS}"),
                ));
            }
            if fields.insert(k.as_str(), v.as_str()).is_some() {
                return Err(bad(k, format!("`{k}` is given more than once")));
            }
        }
        let required = |name: &str, what: &str| {
            fields
                .get(name)
                .copied()
                .ok_or_else(|| bad(name, format!("`{name}` is missing: {what}")))
        };
        let number = |name: &str, what: &str| -> Result<f64, Invalid> {
            let text = required(name, what)?;
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(name, format!("`{text}` is not a number: {what}")))
        };
        let run = required(
            "run",
            "the inspection run's id (lowercase letters, digits, `-`)",
        )?;
        let frame = required(
            "frame",
            "the device's reference of the frame, 1 to 128 characters",
        )?;
        let lat = number("lat", "the latitude in degrees, -90 to 90")?;
        if !(-90.0..=90.0).contains(&lat) {
            return Err(bad("lat", "latitude must be -90 to 90".into()));
        }
        let lon = number("lon", "the longitude in degrees, -180 to 180")?;
        if !(-180.0..=180.0).contains(&lon) {
            return Err(bad("lon", "longitude must be -180 to 180".into()));
        }
        let heading = match fields.get("heading") {
            None => None,
            Some(text) => Some(
                text.trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|h| h.is_finite())
                    .ok_or_else(|| {
                        bad(
                            "heading",
                            format!("`{text}` is not a number: degrees, 0 to 360"),
                        )
                    })?,
            ),
        };
        let now = now_ms();
        let taken_ms = match fields.get("taken_ms") {
            None => now,
            Some(text) => {
                let t = text.trim().parse::<i64>().map_err(|_| {
                    bad(
                        "taken_ms",
                        format!("`{text}` is not a whole number: milliseconds since the epoch"),
                    )
                })?;
                if t <= 0 {
                    return Err(bad(
                        "taken_ms",
                        "milliseconds since the epoch, above 0".into(),
                    ));
                }
                if t > now + MAX_CLOCK_AHEAD_MS {
                    return Err(bad(
                        "taken_ms",
                        "more than a day ahead of this node's clock: set the device's clock".into(),
                    ));
                }
                t
            }
        };
        Ok(FrameQuery {
            run: run.to_owned(),
            frame: frame.to_owned(),
            lat,
            lon,
            heading,
            taken_ms,
        })
    }
}

/// The detections `result` holds under `rules`: each label (classifier, the box the whole
/// `frame` of width x height) or box (detector) whose label a rule names, scored at least
/// the rule's `min_score`, as the rule's class (every rule that matches gives one). Best
/// scores first, at most [`MAX_FRAME_DETECTIONS`]; scores outside 0..=1 (a classifier's
/// raw outputs) are clamped into it.
pub fn detections(result: &Decoded, rules: &[DetectRule], frame: (u32, u32)) -> Vec<Detection> {
    let whole = [0.0, 0.0, frame.0 as f32, frame.1 as f32];
    let found: Vec<(&str, f32, [f32; 4])> = match result {
        Decoded::Classifier { labels } => labels
            .iter()
            .map(|l| (l.label.as_str(), l.score, whole))
            .collect(),
        Decoded::Detector { boxes } => boxes
            .iter()
            .map(|b| (b.class.as_str(), b.score, [b.x0, b.y0, b.x1, b.y1]))
            .collect(),
    };
    let mut out = Vec::new();
    for (label, score, bbox) in found {
        if !score.is_finite() {
            continue;
        }
        let score = score.clamp(0.0, 1.0);
        for rule in rules
            .iter()
            .filter(|r| r.label == label && score >= r.min_score)
        {
            out.push(Detection {
                class: rule.class.clone(),
                label: label.to_owned(),
                score,
                bbox,
            });
        }
    }
    // Stable: equal scores keep the model's order.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(MAX_FRAME_DETECTIONS);
    out
}

/// `POST /v1/patrol/frames`: authenticated, then admitted against `admission` (the
/// node's requests in hand).
pub fn routes(patrol: Arc<Patrol>, admission: Arc<Semaphore>) -> Router {
    Router::new()
        .route(
            "/v1/patrol/frames",
            post(frames)
                .layer(axum::middleware::from_fn_with_state(
                    admission,
                    crate::server::admit,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    patrol.clone(),
                    authenticate,
                )),
        )
        .with_state(patrol)
}

/// The bearer token of `headers`, if there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Finds the device the request's credential belongs to, before its body is read.
async fn authenticate(
    State(patrol): State<Arc<Patrol>>,
    mut request: Request,
    next: Next,
) -> Response {
    let found = bearer(request.headers()).map(|t| patrol.device(t));
    let message = match found {
        Some(Some(device)) => {
            request.extensions_mut().insert(Caller(device));
            return next.run(request).await;
        }
        Some(None) => {
            "this credential is not a registered device's: issue one with POST /v1/devices/{id}/token (a node learns it with the control plane's next snapshot)"
        }
        None => {
            "send the device's credential as `Authorization: Bearer <token>` (POST /v1/devices/{id}/token issues one)"
        }
    };
    patrol
        .metrics()
        .patrol_frames
        .get_or_create(&FrameLabels {
            outcome: "unauthorised".into(),
        })
        .inc();
    let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn frames(
    State(patrol): State<Arc<Patrol>>,
    Extension(Caller(device)): Extension<Caller>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let answer = patrol.take(&device, &uri, &headers, body).await;
    let outcome = if answer.is_ok() { "kept" } else { "refused" };
    patrol
        .metrics()
        .patrol_frames
        .get_or_create(&FrameLabels {
            outcome: outcome.into(),
        })
        .inc();
    match answer {
        Ok(a) => axum::Json(a).into_response(),
        Err(response) => response,
    }
}

/// Sends the outbox's records to the control plane (`POST /v1/inspect/frames`) until
/// aborted: see [`Forwarder`].
pub fn spawn_forwarder(
    outbox: Arc<Outbox>,
    client: Client,
    node: String,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    Forwarder {
        outbox,
        client,
        node,
        path: "/v1/inspect/frames",
        what: "patrol frames",
        wake,
        batch_records: FORWARD_BATCH_RECORDS,
        batch_bytes: FORWARD_BATCH_BYTES,
        on_sent: Box::new(move |sent, depth| {
            metrics.outbox_sent.inc_by(sent);
            metrics.outbox_depth.set(depth as i64);
        }),
    }
    .spawn()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DetectedBox, LabelScore};

    fn rule(label: &str, class: &str, min_score: f32) -> DetectRule {
        DetectRule {
            label: label.into(),
            class: class.into(),
            min_score,
        }
    }

    #[test]
    fn a_classifier_label_over_its_rule_is_the_whole_frame() {
        let result = Decoded::Classifier {
            labels: vec![
                LabelScore {
                    label: "pothole".into(),
                    score: 0.8,
                },
                LabelScore {
                    label: "crack".into(),
                    score: 0.15,
                },
            ],
        };
        let rules = [rule("pothole", "d40", 0.5), rule("crack", "d00", 0.2)];
        let found = detections(&result, &rules, (640, 480));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].class, "d40");
        assert_eq!(found[0].label, "pothole");
        assert_eq!(found[0].bbox, [0.0, 0.0, 640.0, 480.0]);
        // Raw scores over 1 are clamped.
        let raw = Decoded::Classifier {
            labels: vec![LabelScore {
                label: "pothole".into(),
                score: 7.5,
            }],
        };
        assert_eq!(detections(&raw, &rules, (1, 1))[0].score, 1.0);
    }

    #[test]
    fn detector_boxes_keep_the_best_scores_up_to_the_limit() {
        let boxes = (0..MAX_FRAME_DETECTIONS + 10)
            .map(|i| DetectedBox {
                class: if i % 2 == 0 { "D40" } else { "other" }.into(),
                score: 0.3 + (i as f32) * 0.001,
                x0: i as f32,
                y0: 1.0,
                x1: i as f32 + 5.0,
                y1: 6.0,
            })
            .collect();
        let result = Decoded::Detector { boxes };
        // Two rules on one label: a detection each.
        let rules = [rule("D40", "d40", 0.0), rule("D40", "pothole", 0.0)];
        let found = detections(&result, &rules, (100, 100));
        assert_eq!(found.len(), MAX_FRAME_DETECTIONS);
        assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(found.iter().all(|d| d.label == "D40"));
        let best = MAX_FRAME_DETECTIONS + 8;
        assert_eq!(found[0].bbox, [best as f32, 1.0, best as f32 + 5.0, 6.0]);
        // Under the rule's score: none.
        let strict = [rule("D40", "d40", 0.9)];
        assert!(detections(&result, &strict, (100, 100)).is_empty());
    }

    #[test]
    fn bearer_tokens_are_read_from_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  ljd_x "),
        );
        assert_eq!(bearer(&h), Some("ljd_x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }
}
