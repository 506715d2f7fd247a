//! Edge AI in `up`: the demo's edge AI node (the inventory's `aiot` node) in process, on
//! `--aiot-listen`, and — once — the stand-in model pushed and rolled out to it: PaddleOCR's
//! text-direction classifier (the fixture of `crates/aiot/tests`, built into the binary),
//! version 1, so `curl` gets an inference a few seconds after `up` starts; and tenant
//! `demo`'s patrol camera and road crew, so a frame sent with `curl` becomes a defect and
//! a work order.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use lingjing_aiot::node::{NodeConfig, NodeHandle};
use lingjing_aiot::tract_backend::TractBackend;
use lingjing_client::Client;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args::{Global, UpArgs};

/// The demo model's slot (and model id).
pub const DEMO_MODEL: &str = "text-direction";
const MODEL: &[u8] = include_bytes!("../../../aiot/tests/fixtures/text-direction.onnx");
const UPRIGHT: &[u8] = include_bytes!("../../../aiot/tests/fixtures/text-upright.png");
const EXPECTED: &str = include_str!("../../../aiot/tests/fixtures/text-upright.expected.json");

/// The edge AI node `up` runs.
pub struct RunningAiot {
    pub node: String,
    pub handle: NodeHandle,
    /// The demo patrol camera's credential file.
    pub patrol_token: std::path::PathBuf,
}

/// Keeps `bytes` as an artefact; its digest.
async fn artifact(client: &Client, bytes: &'static [u8]) -> anyhow::Result<String> {
    let digest = hex::encode(Sha256::digest(bytes));
    if client
        .exists(&format!("/v1/artifacts/sha256/{digest}"))
        .await?
    {
        return Ok(digest);
    }
    let _: Value = client
        .put_stream(
            &format!("/v1/artifacts/sha256/{digest}"),
            bytes.len() as u64,
            reqwest::Body::from(bytes),
        )
        .await
        .context("cannot upload the demo model")?;
    Ok(digest)
}

/// Pushes version 1 of the demo model and rolls it out, unless it was done before.
async fn seed(client: &Client) -> anyhow::Result<()> {
    let registered = client
        .get::<Value>(&format!("/v1/models/{DEMO_MODEL}/versions/1"))
        .await
        .is_ok();
    if !registered {
        let model = artifact(client, MODEL).await?;
        let input = artifact(client, UPRIGHT).await?;
        let expected: Value = serde_json::from_str(EXPECTED)?;
        let version = json!({
            "model": DEMO_MODEL, "version": 1, "artifact": model,
            "input": {"shape": [1, 3, 48, 192], "color": "bgr", "resize": "pad_right",
                      "scale": 0.003921569, "mean": [0.5], "std": [0.5]},
            "output": {"kind": "classifier", "labels": ["0", "180"]},
            "self_test": {"input": input, "expected": expected["expected"], "tolerance": 0.001},
            "notes": "stand-in: PaddleOCR's text-direction classifier (rapidocr-onnxruntime 1.4.4, Apache-2.0)",
        });
        let _: Value = client
            .post(&format!("/v1/models/{DEMO_MODEL}/versions"), &version)
            .await
            .context("cannot register the demo model")?;
    }
    let rollouts: Value = client.get("/v1/rollouts").await?;
    if rollouts.as_array().is_some_and(Vec::is_empty) {
        let _: Value = client
            .post(
                "/v1/rollouts",
                &json!({"model": DEMO_MODEL, "version": 1, "canary": 1, "percents": [100],
                        "probation": {"min_inferences": 20, "min_seconds": 5,
                                      "max_error_percent": 5, "max_p95_ms": 2000}}),
            )
            .await
            .context("cannot roll the demo model out")?;
    }
    Ok(())
}

/// The demo patrol camera (tenant `demo`): the stand-in classifier's "180" (text upside
/// down) is its "pothole".
pub const DEMO_DEVICE: &str = "demo-van";

/// Registers the demo tenant's patrol camera and road crew once, and keeps the camera's
/// credential in `{data_dir}/demo-van.token` (0600; a new one if the file is gone).
async fn seed_patrol(client: &Client, data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let token_file = data_dir.join(format!("{DEMO_DEVICE}.token"));
    if client
        .get::<Value>(&format!("/v1/devices/{DEMO_DEVICE}"))
        .await
        .is_err()
    {
        let _: Value = client
            .post(
                "/v1/devices",
                &json!({"id": DEMO_DEVICE, "tenant": "demo", "name": "Demo patrol van",
                        "slot": DEMO_MODEL,
                        "detects": [{"label": "180", "class": "D40", "min_score": 0.6}]}),
            )
            .await
            .context("cannot register the demo patrol camera")?;
        let _: Value = client
            .post(
                "/v1/crews",
                &json!({"id": "demo-roads", "tenant": "demo", "name": "Demo road crew",
                        "areas": [{"south": -90.0, "west": -180.0, "north": 90.0, "east": 180.0}]}),
            )
            .await
            .context("cannot register the demo road crew")?;
    }
    if !token_file.exists() {
        let t: Value = client
            .post(&format!("/v1/devices/{DEMO_DEVICE}/token"), &json!({}))
            .await
            .context("cannot issue the demo camera's credential")?;
        let token = t["token"].as_str().context("no token in the answer")?;
        lingjing_client::fs::write_private(&token_file, token.as_bytes())
            .with_context(|| format!("cannot write {}", token_file.display()))?;
    }
    Ok(token_file)
}

/// The token of HTTP telemetry to the edge AI node, kept in
/// `{data_dir}/telemetry.token` (0600; made once).
fn telemetry_token(data_dir: &Path) -> anyhow::Result<String> {
    let file = data_dir.join("telemetry.token");
    match std::fs::read_to_string(&file) {
        Ok(t) if t.trim().len() >= 16 => Ok(t.trim().to_owned()),
        _ => {
            let token = lingjing_control::auth::random_hex(24);
            lingjing_client::fs::write_private(&file, token.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
            Ok(token)
        }
    }
}

/// Starts the inventory's edge AI node (none: nothing to run) and seeds its model.
pub async fn start(
    global: &Global,
    args: &UpArgs,
    client: &Client,
    ca: &Path,
) -> anyhow::Result<Option<RunningAiot>> {
    let nodes: Vec<Value> = client.get("/v1/nodes").await?;
    let Some(node) = nodes
        .iter()
        .find(|n| {
            n["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "aiot"))
        })
        .and_then(|n| n["id"].as_str())
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    seed(client).await?;
    let patrol_token = seed_patrol(client, &global.data_dir).await?;
    let state_dir = global.data_dir.join(format!("aiot-{node}"));
    let agent = super::up::node_agent(
        client,
        ca,
        &node,
        lingjing_model::snapshot::Role::Aiot,
        &state_dir,
    )
    .await?;
    let config = NodeConfig {
        node: node.clone(),
        listen: args.aiot_listen,
        data_dir: state_dir.join("models"),
        workers_per_slot: 2,
        credential: agent.token.clone(),
        ca: agent.ca.clone(),
        pause_at: None,
        control: Some(agent.endpoint.clone()),
        mqtt: None,
        telemetry_token: Some(telemetry_token(&global.data_dir)?),
    };
    let handle = lingjing_aiot::node::start(
        config,
        Arc::new(TractBackend),
        Some(lingjing_client::Agent::new(agent)?),
    )
    .await
    .map_err(anyhow::Error::msg)
    .with_context(|| {
        format!(
            "cannot start the edge AI node on {} (pick another with --aiot-listen)",
            args.aiot_listen
        )
    })?;
    Ok(Some(RunningAiot {
        node,
        handle,
        patrol_token,
    }))
}
