//! The data-plane agent loop against a real control plane: it receives the first snapshot
//! and every later change, acknowledges what it applied through heartbeats, keeps the last
//! good snapshot on disk and serves it when the control plane is unreachable, and never
//! keeps a snapshot its data plane refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lingjing_client::agent::load_snapshot;
use lingjing_client::{Agent, AgentConfig, Client};
use lingjing_control::{ControlConfig, Store};
use lingjing_model::snapshot::{EdgeSnapshot, Role};
use serde_json::{Value, json};

const TOKEN: &str = "agent-test-operator-token";
const HANG: Duration = Duration::from_secs(20);

async fn control(dir: &std::path::Path) -> lingjing_control::ControlHandle {
    let store = Store::open_sqlite_file(&dir.join("db.sqlite"))
        .await
        .expect("store");
    lingjing_control::serve(
        ControlConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            operator_token: TOKEN.into(),
            zone: "cdn.lingjing.test.".into(),
            health: None,
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
    .expect("serve")
}

async fn inventory(c: &Client) {
    let _: Value = c
        .post(
            "/v1/regions",
            &json!({"id": "cn", "name": "China", "level": "country"}),
        )
        .await
        .expect("region");
    let _: Value = c
        .post(
            "/v1/sites",
            &json!({"id": "s1", "name": "S1", "region": "cn"}),
        )
        .await
        .expect("site");
    let _: Value = c
        .post(
            "/v1/nodes",
            &json!({"id": "n1", "site": "s1", "roles": ["edge"]}),
        )
        .await
        .expect("node");
    let _: Value = c
        .post("/v1/tenants", &json!({"id": "t", "name": "T"}))
        .await
        .expect("tenant");
}

fn service(id: &str) -> Value {
    json!({"id": id, "tenant": "t", "hostnames": [format!("{id}.example")],
           "origins": [{"address": "127.0.0.1:9"}]})
}

fn config(url: &str, dir: &std::path::Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(url, TOKEN, "n1", Role::Edge, dir);
    cfg.heartbeat_every = Duration::from_millis(200);
    cfg.poll_wait = Duration::from_secs(5);
    cfg
}

#[tokio::test]
async fn agent_follows_changes_acknowledges_and_survives_the_control_plane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = control(dir.path()).await;
    let c = Client::new(&cp.url(), TOKEN).expect("client");
    inventory(&c).await;
    let state = dir.path().join("agent");

    let seen: Arc<Mutex<Vec<(u64, usize)>>> = Arc::default();
    let log = seen.clone();
    let agent = Agent::new(config(&cp.url(), &state)).expect("agent").start(
        move |s: Arc<lingjing_model::Snapshot<EdgeSnapshot>>| {
            log.lock()
                .expect("lock")
                .push((s.version, s.body.services.len()));
            Ok(())
        },
    );
    let first = cp.store().version().await.expect("version");
    tokio::time::timeout(HANG, agent.wait_applied(first))
        .await
        .expect("first snapshot");

    let _: Value = c
        .post("/v1/services", &service("a"))
        .await
        .expect("service");
    // Served once its hostnames are verified (approved here, as the operator).
    let _: Value = c
        .post("/v1/services/a/verify", &json!({"approve": true}))
        .await
        .expect("approve");
    let second = cp.store().version().await.expect("version");
    assert!(second > first);
    tokio::time::timeout(HANG, agent.wait_applied(second))
        .await
        .expect("change reached the agent");
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.last(), Some(&(second, 1)));
        assert!(
            seen.windows(2).all(|w| w[0].0 < w[1].0),
            "versions must only increase: {seen:?}"
        );
    }

    // The heartbeat acknowledges the applied version.
    let acked = tokio::time::timeout(HANG, async {
        loop {
            let node: Value = c.get("/v1/nodes/n1").await.expect("node");
            if node["status"]["applied"]["edge"].as_u64() == Some(second) {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("ack");
    assert!(acked["status"]["last_heartbeat"].is_string());

    // The last good snapshot is on disk.
    let kept =
        load_snapshot::<EdgeSnapshot>(&config(&cp.url(), &state).snapshot_path()).expect("kept");
    assert_eq!(kept.version, second);
    agent.stop();
    let url = cp.url();
    cp.shutdown().await.expect("shutdown");

    // With the control plane gone, a restarted agent serves the kept snapshot at once.
    let served: Arc<Mutex<Option<u64>>> = Arc::default();
    let slot = served.clone();
    let offline = Agent::new(config(&url, &state)).expect("agent").start(
        move |s: Arc<lingjing_model::Snapshot<EdgeSnapshot>>| {
            *slot.lock().expect("lock") = Some(s.version);
            Ok(())
        },
    );
    assert_eq!(*served.lock().expect("lock"), Some(second));
    assert_eq!(offline.applied_version(), second);
    offline.stop();
}

#[tokio::test]
async fn a_refused_snapshot_is_neither_kept_nor_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cp = control(dir.path()).await;
    let c = Client::new(&cp.url(), TOKEN).expect("client");
    inventory(&c).await;
    let state = dir.path().join("agent");
    let calls = Arc::new(Mutex::new(0u32));
    let counter = calls.clone();
    let agent = Agent::new(config(&cp.url(), &state)).expect("agent").start(
        move |_: Arc<lingjing_model::Snapshot<EdgeSnapshot>>| {
            *counter.lock().expect("lock") += 1;
            Err("refused by test".to_owned())
        },
    );
    tokio::time::timeout(HANG, async {
        while *calls.lock().expect("lock") < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("apply was retried");
    assert_eq!(agent.applied_version(), 0);
    assert!(!config(&cp.url(), &state).snapshot_path().exists());
    agent.stop();
    cp.shutdown().await.expect("shutdown");
}
