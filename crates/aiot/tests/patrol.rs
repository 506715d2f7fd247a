//! Road inspection on a node (issue 17), through its HTTP API: a device's frame is run on
//! its slot (a stand-in engine, and the real text-direction classifier whose "180" label
//! marks a rotated frame) and kept in the outbox before the answer; a wrong credential
//! keeps nothing; a bad field is named; the forwarder gets every record to a control
//! plane that first fails, then loses an answer, in order and exactly once by
//! `(stream, seq)`, and the outbox ends empty.

use std::io::Cursor;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine as _;
use lingjing_aiot::backend::{Backend, Runner, Tensor};
use lingjing_aiot::disk::Disk;
use lingjing_aiot::node::{NodeConfig, NodeHandle};
use lingjing_aiot::tract_backend::TractBackend;
use lingjing_client::outbox::Outbox;
use lingjing_model::aiot::{AiotSnapshot, ModelVersion, Probation, SlotTarget};
use lingjing_model::inspect::{DetectRule, FrameAck, FrameBatch, FrameRecord, PatrolDevice};
use sha2::{Digest, Sha256};

/// Model bytes `ok N` answer the scores [N, 0] (labels `yes`, `no`).
struct Stand;

struct StandRunner(f32);

impl Backend for Stand {
    fn name(&self) -> &'static str {
        "stand-in"
    }
    fn load(&self, onnx: &[u8], _shape: &[usize]) -> Result<Arc<dyn Runner>, String> {
        let text = String::from_utf8_lossy(onnx);
        let n = text
            .strip_prefix("ok ")
            .and_then(|n| n.trim().parse().ok())
            .ok_or("not a stand-in model")?;
        Ok(Arc::new(StandRunner(n)))
    }
}

impl Runner for StandRunner {
    fn run(&self, _input: Tensor) -> Result<Tensor, String> {
        Tensor::new(vec![1, 2], vec![self.0, 0.0])
    }
}

const SLOT: &str = "m";
const TOKEN: &str = "ljd_first-camera";
const OTHER_TOKEN: &str = "ljd_second-camera";
const NODE_CREDENTIAL: &str = "ljn_node-credential";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Keeps `bytes` on the node as an artefact; its digest.
fn keep(disk: &Disk, bytes: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    let part = disk.partial_path(&digest);
    std::fs::write(&part, bytes).expect("write");
    disk.commit_artifact(&digest, &part).expect("commit");
    digest
}

fn stand_version(disk: &Disk) -> ModelVersion {
    serde_json::from_value(serde_json::json!({
        "model": SLOT, "version": 1, "artifact": keep(disk, b"ok 0.9"),
        "input": {"shape": [1, 3, 2, 2]},
        "output": {"kind": "classifier", "labels": ["yes", "no"], "softmax": false},
    }))
    .expect("a version")
}

fn device(id: &str, slot: &str, token: &str, rules: &[(&str, &str, f32)]) -> PatrolDevice {
    PatrolDevice {
        id: id.into(),
        tenant: "city".into(),
        slot: slot.into(),
        detects: rules
            .iter()
            .map(|(label, class, min_score)| DetectRule {
                label: (*label).into(),
                class: (*class).into(),
                min_score: *min_score,
            })
            .collect(),
        token_sha256: Some(sha256_hex(token)),
    }
}

fn snapshot(version: &ModelVersion, devices: Vec<PatrolDevice>) -> AiotSnapshot {
    AiotSnapshot {
        targets: vec![SlotTarget {
            node: "ai-1".into(),
            slot: version.model.clone(),
            version: version.version,
            revision: 1,
            // Stays on probation (serving) for the whole test.
            probation: Probation {
                min_inferences: 1000,
                min_seconds: 3600,
                max_error_percent: 100,
                max_p95_ms: 600_000,
            },
        }],
        versions: vec![version.clone()],
        devices,
        ..Default::default()
    }
}

async fn start(
    dir: &Path,
    backend: Arc<dyn Backend>,
    control: Option<String>,
) -> (NodeHandle, Disk) {
    let data_dir = dir.join("models");
    let disk = Disk::open(&data_dir).expect("disk");
    let node = lingjing_aiot::node::start(
        NodeConfig {
            node: "ai-1".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir,
            workers_per_slot: 1,
            credential: NODE_CREDENTIAL.into(),
            ca: None,
            pause_at: None,
            control,
            mqtt: None,
            telemetry_token: None,
        },
        backend,
        None,
    )
    .await
    .expect("node starts");
    (node, disk)
}

/// Waits until the node serves `slot`.
async fn serving(node: &NodeHandle, slot: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node
        .runtime
        .reports()
        .iter()
        .any(|r| r.slot == slot && r.serving.is_some())
    {
        assert!(
            Instant::now() < deadline,
            "slot {slot} does not serve: {:?}",
            node.runtime.reports()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A node serving the stand-in model, with a device that sees `yes` from 0.5 (TOKEN)
/// and one that needs 0.95 (OTHER_TOKEN), and one whose slot is not on the node.
async fn stand_node(dir: &Path, control: Option<String>) -> NodeHandle {
    let (node, disk) = start(dir, Arc::new(Stand), control).await;
    let version = stand_version(&disk);
    node.apply(&snapshot(
        &version,
        vec![
            device("cam-1", SLOT, TOKEN, &[("yes", "d40", 0.5)]),
            device("cam-2", SLOT, OTHER_TOKEN, &[("yes", "d40", 0.95)]),
            device("cam-3", "elsewhere", "ljd_third-camera", &[]),
        ],
    ));
    serving(&node, SLOT).await;
    node
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encodes");
    out
}

/// A PNG of noise (it does not compress): over the evidence limit at 640 x 480.
fn noise(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let image = image::RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [a, b, c, _] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encodes");
    assert!(out.len() > lingjing_model::inspect::MAX_EVIDENCE_BYTES);
    out
}

/// `POST /v1/patrol/frames?{query}` with `token`; the status and the JSON answer.
async fn post_frame(
    addr: SocketAddr,
    token: Option<&str>,
    query: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/v1/patrol/frames?{query}"))
        .header("content-type", "image/png")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("sends");
    let status = res.status().as_u16();
    let json = res.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

async fn metrics(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

fn outbox_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("models/outbox")
}

const QUERY: &str =
    "run=run-1&frame=f-0001&lat=31.2304&lon=121.4737&heading=90.5&taken_ms=1700000000000";

#[tokio::test]
async fn a_devices_frame_is_run_and_kept_before_the_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = stand_node(dir.path(), None).await;
    let frame = png(64, 48);

    let (status, answer) = post_frame(node.addr(), Some(TOKEN), QUERY, frame.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["seq"], 1);
    assert_eq!(answer["model"], SLOT);
    assert_eq!(answer["version"], 1);
    let detections = answer["detections"].as_array().expect("detections");
    assert_eq!(detections.len(), 1, "{answer}");
    assert_eq!(detections[0]["class"], "d40");
    assert_eq!(detections[0]["label"], "yes");
    assert_eq!(
        detections[0]["bbox"],
        serde_json::json!([0.0, 0.0, 64.0, 48.0])
    );

    // A frame without detections is kept too (its position counts), without its image.
    let (status, answer) = post_frame(
        node.addr(),
        Some(OTHER_TOKEN),
        "run=run-2&frame=f-1&lat=31.3&lon=121.5",
        frame.clone(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["seq"], 2);
    assert_eq!(answer["detections"], serde_json::json!([]));

    // A frame with detections over the evidence limit is kept without its image.
    let (status, answer) = post_frame(node.addr(), Some(TOKEN), QUERY, noise(640, 480)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (
            &answer["seq"],
            answer["detections"].as_array().map(Vec::len)
        ),
        (&3.into(), Some(1))
    );

    let text = metrics(node.addr()).await;
    for line in [
        "lingjing_aiot_patrol_frames_total{outcome=\"kept\"} 3",
        "lingjing_aiot_patrol_detections_total{class=\"d40\"} 2",
        "lingjing_aiot_patrol_evidence_skipped_total 1",
        "lingjing_aiot_outbox_depth 3",
        "lingjing_aiot_inferences_total{slot=\"m\",version=\"1\",outcome=\"ok\"} 3",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    node.stop();

    // On disk, as the node answered.
    let outbox = Outbox::<FrameRecord>::open(&outbox_dir(dir.path())).expect("outbox");
    let records = outbox.pending(10, 1 << 20).expect("pending");
    assert_eq!(records.len(), 3);
    assert!(records[2].image.is_none() && records[2].detections.len() == 1);
    let first: &FrameRecord = &records[0];
    assert_eq!(
        (
            first.seq,
            first.device.as_str(),
            first.run.as_str(),
            first.frame.as_str()
        ),
        (1, "cam-1", "run-1", "f-0001")
    );
    assert_eq!(
        (first.lat, first.lon, first.heading),
        (31.2304, 121.4737, Some(90.5))
    );
    assert_eq!(first.taken_ms, 1_700_000_000_000);
    assert_eq!((first.model.as_str(), first.version), (SLOT, 1));
    assert_eq!(first.detections.len(), 1);
    assert_eq!(
        first.image.as_deref(),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(&frame)
                .as_str()
        )
    );
    let second = &records[1];
    assert_eq!((second.seq, second.device.as_str()), (2, "cam-2"));
    assert!(second.detections.is_empty() && second.image.is_none());
    // No taken_ms: the node's clock.
    assert!(second.taken_ms > 1_700_000_000_000);
}

#[tokio::test]
async fn a_wrong_or_missing_credential_is_401_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = stand_node(dir.path(), None).await;
    for token in [Some("ljd_not-a-device"), None, Some("")] {
        let (status, answer) = post_frame(node.addr(), token, QUERY, png(8, 8)).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["error"]["code"], "unauthorized");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("/v1/devices/{id}/token")),
            "{answer}"
        );
    }
    // A device whose credential the snapshot no longer lists is refused too.
    node.patrol.set_devices(&[]);
    let (status, _) = post_frame(node.addr(), Some(TOKEN), QUERY, png(8, 8)).await;
    assert_eq!(status, 401);
    assert_eq!(node.patrol.outbox().map(|o| o.depth()), Some(0));
    let text = metrics(node.addr()).await;
    assert!(
        text.contains("lingjing_aiot_patrol_frames_total{outcome=\"unauthorised\"} 4"),
        "{text}"
    );
    assert!(
        !text.contains("lingjing_aiot_inferences_total{"),
        "nothing was run: {text}"
    );
    node.stop();
}

#[tokio::test]
async fn bad_fields_are_400_naming_them_and_keep_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = stand_node(dir.path(), None).await;
    for (query, field) in [
        ("run=run-1&frame=f&lat=95&lon=121", "lat"),
        ("run=run-1&frame=f&lat=north&lon=121", "lat"),
        ("run=run-1&frame=f&lon=121", "lat"),
        ("run=run-1&frame=f&lat=31&lon=181", "lon"),
        ("run=Run%201&frame=f&lat=31&lon=121", "run"),
        ("run=run-1&frame=&lat=31&lon=121", "frame"),
        ("run=run-1&frame=f&lat=31&lon=121&heading=400", "heading"),
        ("run=run-1&frame=f&lat=31&lon=121&taken_ms=-5", "taken_ms"),
        ("run=run-1&frame=f&lat=31&lon=121&latitude=31", "latitude"),
        ("run=run-1&frame=f&lat=31&lat=32&lon=121", "lat"),
    ] {
        let (status, answer) = post_frame(node.addr(), Some(TOKEN), query, png(8, 8)).await;
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{query}: {answer}");
    }
    let (status, answer) = post_frame(node.addr(), Some(TOKEN), QUERY, Vec::new()).await;
    assert_eq!((status, &answer["error"]["field"]), (400, &"body".into()));
    // Not an image: the model's input is refused (422), nothing kept.
    let (status, answer) = post_frame(node.addr(), Some(TOKEN), QUERY, b"text".to_vec()).await;
    assert_eq!(status, 422, "{answer}");
    // The device's slot is not on this node: try again later or elsewhere.
    let (status, answer) =
        post_frame(node.addr(), Some("ljd_third-camera"), QUERY, png(8, 8)).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "not_serving");
    assert_eq!(node.patrol.outbox().map(|o| o.depth()), Some(0));
    node.stop();
}

/// The text-direction classifier as slot `text-direction`: a frame upside down is a
/// detection over the whole frame; an upright one is kept without any.
#[tokio::test]
async fn the_real_classifier_marks_a_rotated_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, disk) = start(dir.path(), Arc::new(TractBackend), None).await;
    let version: ModelVersion = serde_json::from_value(serde_json::json!({
        "model": "text-direction", "version": 1,
        "artifact": keep(&disk, &fixture("text-direction.onnx")),
        "input": {"shape": [1, 3, 48, 192], "color": "bgr", "resize": "pad_right",
                  "scale": 1.0 / 255.0, "mean": [0.5], "std": [0.5]},
        "output": {"kind": "classifier", "labels": ["0", "180"], "softmax": false},
    }))
    .expect("a version");
    node.apply(&snapshot(
        &version,
        vec![device(
            "cam-1",
            "text-direction",
            TOKEN,
            &[("180", "upside-down", 0.9)],
        )],
    ));
    serving(&node, "text-direction").await;
    let upright = fixture("text-upright.png");
    let rotated = {
        let image = image::load_from_memory(&upright)
            .expect("decodes")
            .rotate180();
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encodes");
        out
    };
    let (status, answer) = post_frame(node.addr(), Some(TOKEN), QUERY, upright).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["detections"], serde_json::json!([]));
    let (status, answer) = post_frame(node.addr(), Some(TOKEN), QUERY, rotated).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["seq"], 2);
    assert_eq!(answer["detections"][0]["class"], "upside-down");
    assert_eq!(
        answer["detections"][0]["bbox"],
        serde_json::json!([0.0, 0.0, 180.0, 48.0])
    );
    let records = node
        .patrol
        .outbox()
        .expect("outbox")
        .pending(10, 1 << 20)
        .expect("pending");
    assert_eq!(records.len(), 2);
    assert!(records[0].image.is_none() && records[1].image.is_some());
    node.stop();
}

/// A control plane stand-in: the first batch answers 503, the second is kept but its
/// answer is lost (500); it keeps each stream's records past what it has, as the real
/// one does.
#[derive(Default)]
struct Control {
    calls: usize,
    through: std::collections::HashMap<String, u64>,
    kept: Vec<(String, u64)>,
    /// Records received, resent ones included.
    received: usize,
    bad_credential: bool,
}

async fn control_plane(state: Arc<Mutex<Control>>) -> String {
    let app = axum::Router::new()
        .route(
            "/v1/inspect/frames",
            axum::routing::post(
                |axum::extract::State(state): axum::extract::State<Arc<Mutex<Control>>>,
                 headers: axum::http::HeaderMap,
                 Json(batch): Json<FrameBatch>| async move {
                    let mut c = state.lock().expect("lock");
                    c.calls += 1;
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some(&format!("Bearer {NODE_CREDENTIAL}"))
                        || batch.node != "ai-1"
                    {
                        c.bad_credential = true;
                    }
                    let error = |status: StatusCode| {
                        let body =
                            serde_json::json!({"error": {"code": "down", "message": "down"}});
                        (status, Json(body)).into_response()
                    };
                    if c.calls == 1 {
                        return error(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    c.received += batch.records.len();
                    let mut through = c.through.get(&batch.stream).copied().unwrap_or(0);
                    let mut accepted = 0;
                    let known = through;
                    for r in batch.records.iter().filter(|r| r.seq > known) {
                        through = r.seq;
                        c.kept.push((batch.stream.clone(), r.seq));
                        accepted += 1;
                    }
                    c.through.insert(batch.stream.clone(), through);
                    if c.calls == 2 {
                        return error(StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    Json(FrameAck {
                        through,
                        accepted,
                        rejected: Vec::new(),
                    })
                    .into_response()
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn until_empty(node: &NodeHandle) {
    let outbox = node.patrol.outbox().expect("outbox").clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while outbox.depth() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} records still in the outbox",
            outbox.depth()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_forwarder_gets_every_record_through_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 1,200 frames kept before the node starts (three batches), with small segments.
    const EARLY: u64 = 1200;
    let stream = {
        let outbox = Outbox::open_with(
            &outbox_dir(dir.path()),
            lingjing_client::outbox::OutboxConfig {
                segment_bytes: 64 * 1024,
                ..Default::default()
            },
        )
        .expect("outbox");
        for i in 0..EARLY {
            let record = FrameRecord {
                seq: 0,
                kind: Default::default(),
                device: "cam-1".into(),
                run: "run-1".into(),
                frame: format!("early-{i}"),
                taken_ms: 1_700_000_000_000 + i as i64,
                lat: 31.0,
                lon: 121.0,
                heading: None,
                model: SLOT.into(),
                version: 1,
                detections: Vec::new(),
                tenant: None,
                image: None,
            };
            assert_eq!(outbox.append(record).expect("append"), i + 1);
        }
        outbox.stream().to_owned()
    };
    let state = Arc::new(Mutex::new(Control::default()));
    let control = control_plane(state.clone()).await;
    let node = stand_node(dir.path(), Some(control)).await;
    assert_eq!(
        node.patrol.outbox().map(|o| o.stream().to_owned()),
        Some(stream.clone())
    );
    until_empty(&node).await;

    // Frames that come now wake the idle forwarder at once.
    let started = Instant::now();
    for i in 0..2 {
        let (status, answer) = post_frame(
            node.addr(),
            Some(TOKEN),
            &format!("run=run-1&frame=late-{i}&lat=31.2&lon=121.4"),
            png(16, 16),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    until_empty(&node).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the forwarder was not woken: {:?}",
        started.elapsed()
    );

    {
        let c = state.lock().expect("lock");
        assert!(
            !c.bad_credential,
            "the node's credential and id go with each batch"
        );
        let expected: Vec<(String, u64)> = (1..=EARLY + 2).map(|s| (stream.clone(), s)).collect();
        assert_eq!(c.kept, expected, "every record, in order, once");
        // The batch whose answer was lost went again.
        assert!(c.received > c.kept.len());
    }
    let text = metrics(node.addr()).await;
    assert!(text.contains("lingjing_aiot_outbox_depth 0"), "{text}");
    assert!(
        text.contains(&format!("lingjing_aiot_outbox_sent_total {}", EARLY + 2)),
        "{text}"
    );
    node.stop();

    // Nothing left on disk but the stream's id and what was acknowledged.
    let mut left: Vec<String> = std::fs::read_dir(outbox_dir(dir.path()))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, vec!["acked".to_owned(), "stream".to_owned()]);
    let outbox = Outbox::<FrameRecord>::open(&outbox_dir(dir.path())).expect("reopen");
    assert_eq!((outbox.depth(), outbox.acked()), (0, EARLY + 2));
}
