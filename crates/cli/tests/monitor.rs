//! IDC monitoring end to end with real processes (issue 18): `lingjing control` and a
//! `lingjing aiot` node, the site's monitor. The operator adds sensors and a webhook
//! receiver with `lingjing sensor|receiver add`; a device sends readings over HTTP with
//! the site's telemetry token:
//!
//! - smoke raises an alert at once: the receiver gets it (signed), the control plane
//!   lists it;
//! - the control plane is killed (SIGKILL): the node goes on evaluating and notifying
//!   (the smoke clears, water is detected), and once the control plane is back every
//!   transition reaches it, each once;
//! - `lingjing alert list` and `alert ack`, `lingjing sensor readings`; a wrong token is
//!   refused.

mod common;

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::aiot::*;
use serde_json::{Value, json};

const NODE: &str = "env-node";
const SECRET: &str = "0123456789abcdef-monitor";
const TELEMETRY_TOKEN: &str = "telemetry-token-for-the-e2e-test";

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `lingjing ARGS --json` against the plane: the JSON it prints.
fn cli(url: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lingjing"))
        .arg("--json")
        .args(args)
        .args(["--endpoint", url])
        .env("LINGJING_TOKEN", TOKEN)
        .env_remove("LINGJING_CA")
        .output()
        .expect("run lingjing");
    assert!(out.status.success(), "{args:?}: {}", said(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", said(&out)))
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

type Got = Arc<Mutex<Vec<(String, Value)>>>;

/// A webhook receiver keeping (signature, body) of what it is sent.
async fn receiver() -> (String, Got) {
    use axum::routing::post;
    let got: Got = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let sig = headers
                        .get("x-lingjing-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    assert_eq!(sig, lingjing_monitor::notify::signature(SECRET, &body));
                    keep.lock().expect("lock").push((sig, v));
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, got)
}

fn states(got: &Got) -> Vec<(String, String)> {
    got.lock()
        .expect("lock")
        .iter()
        .map(|(_, v)| {
            (
                v["key"].as_str().unwrap_or("").to_owned(),
                v["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn send(node: &str, token: &str, at_ms: i64, values: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{node}/v1/telemetry/env-1"))
        .bearer_auth(token)
        .json(&json!({"seq": 1, "at_ms": at_ms, "values": values}))
        .send()
        .await
        .expect("telemetry")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_site_node_alerts_through_a_control_plane_outage_and_reports_each_transition_once() {
    let mut plane = Plane::start(&[NODE]).await;
    let url = plane.url.clone();
    let (hook, got) = receiver().await;
    let secret_file = plane.dir.path().join("hook.secret");
    std::fs::write(&secret_file, SECRET).expect("secret");
    let token_file = plane.dir.path().join("telemetry.token");
    std::fs::write(&token_file, TELEMETRY_TOKEN).expect("token");

    for (id, kind) in [("smoke-1", "smoke"), ("water-1", "water")] {
        let s = cli(
            &url,
            &[
                "sensor",
                "add",
                id,
                "--site",
                "site-a",
                "--room",
                "hall-1",
                "--kind",
                kind,
                "--device",
                "env-1",
                "--interval-s",
                "3600",
            ],
        );
        assert_eq!(s["kind"], kind);
    }
    let r = cli(
        &url,
        &[
            "receiver",
            "add",
            "ops",
            "--url",
            &hook,
            "--secret-file",
            secret_file.to_str().expect("utf-8"),
        ],
    );
    assert!(
        r.get("secret").is_none(),
        "the secret is never printed: {r}"
    );
    assert_eq!(
        cli(&url, &["sensor", "list"]).as_array().map(Vec::len),
        Some(2)
    );

    let node = plane
        .node_with(
            NODE,
            None,
            &[
                "--telemetry-token-file",
                token_file.to_str().expect("utf-8"),
            ],
        )
        .await;
    let base = node.base.clone();
    assert_eq!(
        send(&base, "wrong-token", now_ms(), json!({"smoke-1": 1})).await,
        401
    );
    // Until its snapshot names it the site's monitor, the node answers 503. (Readings
    // are dated a little in the past, so that `sensor readings` up to now holds them.)
    let t0 = now_ms() - 10_000;
    until("the node watches the site", async || {
        (send(
            &base,
            TELEMETRY_TOKEN,
            t0,
            json!({"smoke-1": 0, "water-1": 0}),
        )
        .await
            == 200)
            .then_some(())
    })
    .await;

    // Smoke: firing at once, notified (signed) and reported.
    assert_eq!(
        send(&base, TELEMETRY_TOKEN, t0 + 1000, json!({"smoke-1": 1})).await,
        200
    );
    until("the smoke notified", async || {
        (states(&got).len() == 1).then_some(())
    })
    .await;
    assert_eq!(states(&got)[0], ("smoke/smoke-1".into(), "firing".into()));
    let api = plane.api.clone();
    until("the control plane lists the smoke", async || {
        let a: Value = api.get("/v1/alerts").await.ok()?;
        (a.as_array()?.len() == 1 && a[0]["key"] == "smoke/smoke-1").then_some(())
    })
    .await;

    // The control plane dies; the site goes on: the smoke clears, water comes.
    plane.control.kill9();
    assert_eq!(
        send(&base, TELEMETRY_TOKEN, t0 + 2000, json!({"smoke-1": 0})).await,
        200
    );
    assert_eq!(
        send(&base, TELEMETRY_TOKEN, t0 + 3000, json!({"water-1": 1})).await,
        200
    );
    until("notified without the control plane", async || {
        (states(&got).len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        states(&got)[1..],
        [
            ("smoke/smoke-1".to_owned(), "resolved".to_owned()),
            ("water/water-1".to_owned(), "firing".to_owned()),
        ]
    );

    // Back: every transition arrives, once.
    plane.restart_control();
    let all = until("the transitions forwarded", async || {
        let a: Value = api.get("/v1/alerts?state=all").await.ok()?;
        let water = a.as_array()?.iter().any(|x| x["key"] == "water/water-1");
        let smoke_resolved = a
            .as_array()?
            .iter()
            .any(|x| x["key"] == "smoke/smoke-1" && x["state"] == "resolved");
        (water && smoke_resolved).then_some(a)
    })
    .await;
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");

    // The CLI: the firing list, an acknowledgement, the series.
    let firing = cli(&url, &["alert", "list"]);
    assert_eq!(firing.as_array().map(Vec::len), Some(1), "{firing}");
    assert_eq!(firing[0]["key"], "water/water-1");
    cli(
        &url,
        &["alert", "ack", "water/water-1", "--by", "night shift"],
    );
    let firing = cli(&url, &["alert", "list", "--state", "firing"]);
    assert_eq!(firing[0]["acked_by"], "night shift");
    let series = cli(&url, &["sensor", "readings", "smoke-1", "--step", "1"]);
    let values: Vec<f64> = series["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["last"].as_f64().expect("value"))
        .collect();
    assert_eq!(values, [0.0, 1.0, 0.0]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(states(&got).len(), 3, "one notification per transition");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The node is killed (SIGKILL) in the middle of a `for` window and started again on
/// its directory: the alert fires once, at the end of the window, neither lost nor
/// repeated, at the receiver and in the control plane.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_window_fires_the_alert_once_after_its_restart() {
    let plane = Plane::start(&[NODE]).await;
    let url = plane.url.clone();
    let (hook, got) = receiver().await;
    let dir = plane.dir.path();
    std::fs::write(dir.join("hook.secret"), SECRET).expect("secret");
    std::fs::write(dir.join("telemetry.token"), TELEMETRY_TOKEN).expect("token");
    // Its own rule: above 30 for 5 s.
    let sensor = json!({"id": "inlet-9", "site": "site-a", "room": "hall-1",
        "kind": "temperature", "device": "env-1", "interval_s": 3600,
        "rules": [{"id": "hot", "severity": "critical", "for_s": 5,
                   "condition": {"kind": "above", "value": 30.0, "clear": 29.0}}]});
    std::fs::write(dir.join("sensor.json"), sensor.to_string()).expect("sensor");
    cli(
        &url,
        &[
            "sensor",
            "add",
            "-f",
            dir.join("sensor.json").to_str().expect("utf-8"),
        ],
    );
    cli(
        &url,
        &[
            "receiver",
            "add",
            "ops",
            "--url",
            &hook,
            "--secret-file",
            dir.join("hook.secret").to_str().expect("utf-8"),
        ],
    );
    let token_file = dir.join("telemetry.token");
    let args = [
        "--telemetry-token-file",
        token_file.to_str().expect("utf-8"),
    ];
    let mut node = plane.node_with(NODE, None, &args).await;
    let base = node.base.clone();
    until("the node watches the site", async || {
        (send(
            &base,
            TELEMETRY_TOKEN,
            now_ms() - 1000,
            json!({"inlet-9": 25.0}),
        )
        .await
            == 200)
            .then_some(())
    })
    .await;
    let hot_at = now_ms();
    assert_eq!(
        send(&base, TELEMETRY_TOKEN, hot_at, json!({"inlet-9": 31.0})).await,
        200
    );
    node.proc.kill9();

    let node = plane.node_with(NODE, None, &args).await;
    until("the firing notified", async || {
        (!states(&got).is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent: Vec<Value> = got
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(sent.len(), 1, "once: {sent:?}");
    assert_eq!(sent[0]["key"], "hot/inlet-9");
    assert_eq!(sent[0]["state"], "firing");
    assert_eq!(
        sent[0]["since_ms"],
        hot_at + 5000,
        "at the end of the window"
    );
    let api = plane.api.clone();
    let alerts = until("the control plane has it", async || {
        let a: Value = api.get("/v1/alerts?state=all").await.ok()?;
        (a.as_array()?.iter().any(|x| x["state"] == "firing")).then_some(a)
    })
    .await;
    assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{alerts}");
    assert_eq!(alerts[0]["since_ms"], hot_at + 5000);
    drop(node);
}
