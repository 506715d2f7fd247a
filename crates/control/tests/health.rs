//! Active health checks: a node whose `/healthz` answers is marked healthy, one that stops
//! answering is marked down after `fall` failed probes (with the time and reason stored),
//! the DNS snapshot reflects it, and it comes back after `rise` passing probes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lingjing_control::health::HealthConfig;
use lingjing_control::{ControlConfig, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `/healthz` that answers 200 while `up` is true, else 503.
async fn healthz(up: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let up = up.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let status = if up.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            });
        }
    });
    port
}

async fn wait_for(api: &common::Api, healthy: bool) -> Value {
    for _ in 0..400 {
        let node = api.get("/v1/nodes/wx-1-a").await.ok(200);
        if node["status"]["healthy"] == json!(healthy) {
            return node;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node never became healthy={healthy}");
}

#[tokio::test]
async fn probes_mark_nodes_down_and_up_and_dns_follows() {
    let up = Arc::new(AtomicBool::new(true));
    let port = healthz(up.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite_file(&dir.path().join("db"))
        .await
        .expect("store");
    let handle = lingjing_control::serve(
        ControlConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            operator_token: common::OPERATOR_TOKEN.into(),
            zone: "cdn.lingjing.test.".into(),
            health: Some(HealthConfig {
                interval: Duration::from_millis(50),
                timeout: Duration::from_millis(500),
                fall: 2,
                rise: 2,
                heartbeat_timeout: Duration::from_millis(400),
            }),
            storage: Default::default(),
            meter_retention_days: lingjing_control::server::DEFAULT_METER_RETENTION_DAYS,
            policy: lingjing_control::TrustPolicy {
                allow_origins: vec!["127.0.0.0/8".into(), "::1/128".into()],
                ..Default::default()
            },
        },
        store,
    )
    .await
    .expect("serve");
    let api = common::Api::new(&handle.url(), Some(common::OPERATOR_TOKEN));
    common::seed_topology(&api).await;
    // wx-1-a answers on 127.0.0.1:<port>.
    let mut node = api.get("/v1/nodes/wx-1-a").await.ok(200);
    for k in ["addresses", "status"] {
        node.as_object_mut().expect("object").remove(k);
    }
    node["ports"]["admin"] = json!(port);
    api.put("/v1/nodes/wx-1-a", node).await.ok(200);
    api.create("pools", common::pool("lo", "wx-1", None, "127.0.0.0/30"))
        .await;
    api.allocate("lo", json!({"node": "wx-1-a", "address": "127.0.0.1"}))
        .await;

    let healthy = wait_for(&api, true).await;
    assert!(healthy["status"]["health_since"].is_string());

    up.store(false, Ordering::SeqCst);
    let down = wait_for(&api, false).await;
    let reason = down["status"]["health_reason"].as_str().expect("reason");
    assert!(
        reason.contains("2 failed checks") && reason.contains("503"),
        "{reason}"
    );
    let dns = api.get("/v1/snapshots/dns?after=0").await.ok(200);
    let info = dns["body"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"]["id"] == "wx-1-a")
        .expect("node in snapshot")
        .clone();
    assert_eq!(info["healthy"], false);

    up.store(true, Ordering::SeqCst);
    wait_for(&api, true).await;

    // Heartbeats count too: once its agent has registered, a node whose agent falls silent
    // is down although its /healthz answers, and up again when the agent is back.
    let beat = json!({"role": "edge", "applied_version": 1});
    api.post("/v1/nodes/wx-1-a/heartbeat", beat.clone())
        .await
        .ok(204);
    let silent = wait_for(&api, false).await;
    let reason = silent["status"]["health_reason"].as_str().expect("reason");
    assert!(reason.contains("no heartbeat"), "{reason}");
    let beating = tokio::spawn({
        let api = common::Api::new(&handle.url(), Some(common::OPERATOR_TOKEN));
        async move {
            loop {
                api.post("/v1/nodes/wx-1-a/heartbeat", beat.clone())
                    .await
                    .ok(204);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    wait_for(&api, true).await;
    beating.abort();

    // The outage shows in the SLA report: wx-1-a below 100%, its site not (wx-1-b was up).
    let from = lingjing_control::time::rfc3339_from_ms(lingjing_control::time::now_ms() - 60_000);
    let report = api
        .get(&format!("/v1/sla?target=100&from={from}"))
        .await
        .ok(200);
    let below = report["below_target"].as_array().expect("below");
    let node = below
        .iter()
        .find(|e| e["id"] == "wx-1-a")
        .expect("wx-1-a below target");
    assert_eq!(node["kind"], "node");
    assert!(
        node["availability"].as_f64().expect("availability") < 100.0,
        "{node}"
    );
    assert!(below.iter().all(|e| e["kind"] == "node"), "{below:?}");
    api.get("/v1/sla?target=101").await.err(400, "bad_request");

    // The node's history lists each change, latest first: up (heartbeats back), down (no
    // heartbeat), up, down (503), up.
    let history = api.get("/v1/nodes/wx-1-a/health").await.ok(200);
    let states: Vec<bool> = history
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["healthy"].as_bool().expect("healthy"))
        .collect();
    assert_eq!(states, [true, false, true, false, true], "{history}");
    assert!(
        history[1]["reason"]
            .as_str()
            .expect("reason")
            .contains("no heartbeat")
    );
    let latest = api.get("/v1/nodes/wx-1-a/health?limit=1").await.ok(200);
    assert_eq!(latest.as_array().map(Vec::len), Some(1));
    api.get("/v1/nodes/wx-1-a/health?limit=0")
        .await
        .err(422, "invalid");
    api.get("/v1/nodes/nope/health").await.err(404, "not_found");
    handle.shutdown().await.expect("shutdown");
}
