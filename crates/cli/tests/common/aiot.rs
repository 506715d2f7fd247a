//! The edge AI test bench shared by the EdgeAIoT and road-inspection tests: a control
//! plane with `aiot` nodes over two sites, the stand-in classifier pushed with `lingjing
//! model push` and rolled out, and `lingjing aiot` nodes to ask.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lingjing_client::Client;
use serde_json::{Value, json};

use super::{BIN, Proc, join_token, start_control, start_control_with};

pub const TOKEN: &str = "aiot-test-operator-token";
pub const MODEL: &str = "text-direction";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../aiot/tests/fixtures")
        .join(name)
}

/// The classifier's spec; `expected` is the self-test's expected output.
pub fn spec(expected: &[f64]) -> String {
    format!(
        r#"
[input]
shape = [1, 3, 48, 192]
color = "bgr"
resize = "pad_right"
scale = 0.003921569
mean = [0.5]
std = [0.5]

[output]
kind = "classifier"
labels = ["0", "180"]

[self_test]
expected = {expected:?}
tolerance = 0.001
"#
    )
}

/// What onnxruntime gives for the upright text line (computed by the fixture script).
pub fn upright_expected() -> Vec<f64> {
    let v: Value = serde_json::from_slice(
        &std::fs::read(fixture("text-upright.expected.json")).expect("expected output"),
    )
    .expect("json");
    v["expected"]
        .as_array()
        .expect("expected")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// A control plane with `sites` sites and the `aiot` nodes `nodes` (spread over them).
pub struct Plane {
    pub dir: tempfile::TempDir,
    pub control: Proc,
    pub url: String,
    pub api: Client,
}

impl Plane {
    pub async fn start(nodes: &[&str]) -> Plane {
        Plane::start_with(nodes, &[]).await
    }

    /// [`Plane::start`] with extra arguments of `lingjing control`.
    pub async fn start_with(nodes: &[&str], extra: &[&str]) -> Plane {
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("operator.token");
        std::fs::write(&token_file, TOKEN).expect("token file");
        let (control, url) =
            start_control_with(&Plane::db(dir.path()), &token_file, "127.0.0.1:0", extra);
        let api = Client::new(&url, TOKEN).expect("client");
        let _: Value = api
            .post(
                "/v1/regions",
                &json!({"id": "cn", "name": "China", "level": "country"}),
            )
            .await
            .expect("region");
        for site in ["site-a", "site-b"] {
            let _: Value = api
                .post(
                    "/v1/sites",
                    &json!({"id": site, "name": site, "region": "cn"}),
                )
                .await
                .expect("site");
        }
        for (i, node) in nodes.iter().enumerate() {
            let site = if i % 2 == 0 { "site-a" } else { "site-b" };
            let _: Value = api
                .post(
                    "/v1/nodes",
                    &json!({"id": node, "site": site, "roles": ["aiot"]}),
                )
                .await
                .expect("node");
        }
        Plane {
            dir,
            control,
            url,
            api,
        }
    }

    pub fn db(dir: &Path) -> String {
        format!("sqlite://{}", dir.join("control.db").display())
    }

    /// Starts the control plane again on the same database and address.
    pub fn restart_control(&mut self) {
        let token_file = self.dir.path().join("operator.token");
        let listen = self.url.trim_start_matches("http://").to_owned();
        let (control, url) = start_control(&Plane::db(self.dir.path()), &token_file, &listen);
        assert_eq!(url, self.url);
        self.control = control;
    }

    /// `lingjing model push` of `onnx` as `version` with `expected` self-test output for
    /// the upright text line (`fresh_input`: a copy with other bytes, so the node has a
    /// new artefact to download).
    pub fn push(&self, version: u32, onnx: &Path, expected: &[f64], fresh_input: bool) {
        let input = if fresh_input {
            let mut png = std::fs::read(fixture("text-upright.png")).expect("image");
            // Bytes after IEND: decoders ignore them; the digest changes.
            png.extend_from_slice(format!("version {version}").as_bytes());
            let path = self.dir.path().join(format!("input-{version}.png"));
            std::fs::write(&path, png).expect("input");
            path
        } else {
            fixture("text-upright.png")
        };
        let spec_file = self.dir.path().join(format!("spec-{version}.toml"));
        std::fs::write(&spec_file, spec(expected)).expect("spec");
        let out = Command::new(BIN)
            .args(["model", "push"])
            .arg(onnx)
            .args([
                "--model",
                MODEL,
                "--version",
                &version.to_string(),
                "--spec",
            ])
            .arg(&spec_file)
            .arg("--self-test-input")
            .arg(&input)
            .args(["--endpoint", &self.url])
            .env("LINGJING_TOKEN", TOKEN)
            .output()
            .expect("run lingjing model push");
        assert!(
            out.status.success(),
            "model push v{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Rolls `version` out: a canary, then everyone; commits after 1 s of probation.
    pub async fn roll_out(&self, version: u32, probation_seconds: u32) -> String {
        let r: Value = self
            .api
            .post(
                "/v1/rollouts",
                &json!({
                    "model": MODEL, "version": version, "canary": 1, "percents": [100],
                    "error_threshold": 1,
                    "probation": {"min_inferences": 1000, "min_seconds": probation_seconds,
                                  "max_error_percent": 5, "max_p95_ms": 60000},
                }),
            )
            .await
            .expect("create rollout");
        r["id"].as_str().expect("rollout id").to_owned()
    }

    pub async fn rollout(&self, id: &str) -> Value {
        self.api
            .get(&format!("/v1/rollouts/{id}"))
            .await
            .expect("rollout")
    }

    /// Waits until rollout `id` is in `state`.
    pub async fn wait_rollout(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.rollout(id).await;
            let now = r["progress"]["state"]
                .as_str()
                .or_else(|| r["state"].as_str())
                .unwrap_or("")
                .to_owned();
            if now == state {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "rollout {id} not {state} within 120 s: {r:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The `aiot` snapshot's targets: (node, version, revision).
    pub async fn targets(&self) -> Vec<(String, u64, u64)> {
        let s: Value = self
            .api
            .get("/v1/snapshots/aiot")
            .await
            .expect("aiot snapshot");
        s["body"]["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| {
                (
                    t["node"].as_str().expect("node").to_owned(),
                    t["version"].as_u64().expect("version"),
                    t["revision"].as_u64().expect("revision"),
                )
            })
            .collect()
    }

    /// Starts `lingjing aiot` for `node` (joining on first start), optionally pausing
    /// when a new version reaches `pause_at`.
    pub async fn node(&self, node: &str, pause_at: Option<&str>) -> AiotNode {
        self.node_with(node, pause_at, &[]).await
    }

    /// [`Plane::node`] with extra arguments of `lingjing aiot`.
    pub async fn node_with(&self, node: &str, pause_at: Option<&str>, extra: &[&str]) -> AiotNode {
        let state = self.dir.path().join(format!("aiot-{node}"));
        let mut args: Vec<String> = [
            "aiot",
            "--node",
            node,
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--endpoint",
            &self.url,
            "--workers",
            "1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if !state.join(format!("{node}.credential")).exists() {
            args.push("--join-token".into());
            args.push(join_token(&self.api, node).await);
        }
        let mut cmd_args = args.clone();
        if let Some(stage) = pause_at {
            cmd_args.push("--pause-at".into());
            cmd_args.push(stage.into());
        }
        cmd_args.extend(extra.iter().map(|a| (*a).to_owned()));
        let mut proc = Proc::spawn(&format!("lingjing aiot {node}"), &cmd_args);
        let addr = proc.wait_for("its address", |l| {
            l.split("serving inference on http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .map(str::to_owned)
        });
        AiotNode {
            proc,
            base: format!("http://{addr}"),
        }
    }
}

pub struct AiotNode {
    pub proc: Proc,
    pub base: String,
}

impl AiotNode {
    /// Posts the upright text line to the slot: (status, body).
    pub async fn infer(&self) -> (u16, Value) {
        let body = std::fs::read(fixture("text-upright.png")).expect("image");
        let r = reqwest::Client::new()
            .post(format!("{}/v1/infer/{MODEL}", self.base))
            .header("content-type", "image/png")
            .body(body)
            .send()
            .await
            .expect("infer");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The version that answers an inference (it must say the text is upright).
    pub async fn serving(&self) -> u64 {
        let (status, body) = self.infer().await;
        assert_eq!(status, 200, "{body:#}\n{}", self.proc.tail());
        assert_eq!(body["labels"][0]["label"], "0", "{body:#}");
        body["version"].as_u64().expect("version")
    }

    pub async fn slot(&self) -> Value {
        let slots: Value = reqwest::get(format!("{}/v1/slots", self.base))
            .await
            .expect("slots")
            .json()
            .await
            .expect("json");
        slots
            .as_array()
            .expect("slots")
            .iter()
            .find(|s| s["slot"] == MODEL)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Waits until the slot reports `stage` for `version`.
    pub async fn wait_stage(&self, version: u64, stage: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let s = self.slot().await;
            if s["version"] == version && s["stage"] == stage {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "slot not at v{version} {stage} within 120 s: {s:#}\n{}",
                self.proc.tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `curl` posts the upright text line to the node at `base`: `version` answers that it is
/// upright.
pub fn curl_infers(base: &str, version: u64) {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "-H", "content-type: image/png"])
        .arg("--data-binary")
        .arg(format!("@{}", fixture("text-upright.png").display()))
        .arg(format!("{base}/v1/infer/{MODEL}"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let body: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(body["version"], version, "{body:#}");
    assert_eq!(body["labels"][0]["label"], "0", "{body:#}");
    assert!(body["labels"][0]["score"].as_f64().expect("score") > 0.9);
}

/// Plane with nodes, v1 pushed and committed on every one.
pub async fn with_v1(nodes: &[&str]) -> (Plane, Vec<AiotNode>) {
    let plane = Plane::start(nodes).await;
    plane.push(
        1,
        &fixture("text-direction.onnx"),
        &upright_expected(),
        false,
    );
    let mut running = Vec::new();
    for n in nodes {
        running.push(plane.node(n, None).await);
    }
    let id = plane.roll_out(1, 1).await;
    plane.wait_rollout(&id, "succeeded").await;
    for n in &running {
        n.wait_stage(1, "committed").await;
    }
    (plane, running)
}
