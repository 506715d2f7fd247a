//! Edge AI end to end with real processes (issue 16): `lingjing control`, `lingjing aiot`
//! nodes, versions pushed with `lingjing model push` and rolled out through the API.
//!
//! - a rollout to three nodes commits on every one, and each answers `curl` with an
//!   inference made by the new version;
//! - three bad versions (an artefact whose bytes no longer match its digest, a model with
//!   an operator the backend cannot run, a failed self-test) are stopped at the canary
//!   with error threshold 1: the other nodes never get them, all keep serving;
//! - a node killed (`kill -9`) after the download and before activation, and again while
//!   the new version is on probation, comes back on its committed version;
//! - a node restarted while the control plane is down serves its committed version;
//! - a control plane killed after the canary committed resumes the rollout exactly.
//!
//! The model is a stand-in: PaddleOCR's text-direction classifier (see
//! crates/aiot/tests/fixtures/README.md); no road-distress model ships in any package.

mod common;

use std::time::{Duration, Instant};

use common::aiot::*;
use common::{Access, join_token, record_ports, start_edge};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_commits_on_three_nodes_and_each_serves_inference() {
    let (plane, nodes) = with_v1(&["ai-1", "ai-2", "ai-3"]).await;
    for n in &nodes {
        curl_infers(&n.base, 1);
    }
    // The canary went first: its target is an earlier revision than the others'.
    let targets = plane.targets().await;
    assert_eq!(targets.len(), 3, "{targets:?}");
    let canary = targets.iter().map(|t| t.2).min().expect("revisions");
    assert_eq!(
        targets.iter().filter(|t| t.2 == canary).count(),
        1,
        "{targets:?}"
    );
    // Metrics count the inferences by version.
    let metrics = reqwest::get(format!("{}/metrics", nodes[0].base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            r#"lingjing_aiot_inferences_total{slot="text-direction",version="1",outcome="ok"}"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_versions_stop_at_the_canary() {
    let (plane, nodes) = with_v1(&["bad-1", "bad-2", "bad-3"]).await;
    let before = plane.targets().await;
    // v2: its self-test input's stored bytes no longer match the digest (rot, or a bad
    // cache on the way).
    plane.push(
        2,
        &fixture("text-direction.onnx"),
        &upright_expected(),
        true,
    );
    let digest = {
        let v: Value = plane
            .api
            .get(&format!("/v1/models/{MODEL}/versions/2"))
            .await
            .expect("version 2");
        v["self_test"]["input"].as_str().expect("input").to_owned()
    };
    let db = format!("sqlite://{}", plane.dir.path().join("control.db").display());
    corrupt_artifact(&db, &digest).await;
    // v3: an operator tract cannot run; v4: a self-test that cannot pass.
    plane.push(
        3,
        &fixture("unsupported-op.onnx"),
        &upright_expected(),
        false,
    );
    plane.push(4, &fixture("text-direction.onnx"), &[0.0, 1.0], false);
    for (version, why) in [
        (2, "digest"),
        (3, "unsupported ONNX operators"),
        (4, "self-test"),
    ] {
        let id = plane.roll_out(version, 1).await;
        let r = plane.wait_rollout(&id, "rolled_back").await;
        let text = r.to_string();
        assert!(
            text.contains(why),
            "v{version} failed for another reason: {r:#}"
        );
        // Only the canary ever had the version; all are back on (or stayed on) v1.
        let targets = plane.targets().await;
        for (node, v, _) in &targets {
            assert_eq!(*v, 1, "{node} still targets v{v}: {targets:?}");
        }
        let touched: Vec<_> = targets
            .iter()
            .filter(|t| !before.contains(t))
            .map(|t| t.0.clone())
            .collect();
        assert!(
            touched.len() <= 1,
            "more than the canary touched: {targets:?}"
        );
        for n in &nodes {
            assert_eq!(n.serving().await, 1);
        }
    }
}

/// Rewrites the first stored chunk of artefact `digest` in the control plane's database.
async fn corrupt_artifact(db: &str, digest: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(db).await.expect("open db");
    let done = sqlx::query(
        "UPDATE artifact_chunks SET data = zeroblob(length(data)) WHERE owner = $1 AND seq = 0",
    )
    .bind(digest)
    .execute(&mut conn)
    .await
    .expect("corrupt");
    assert_eq!(done.rows_affected(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_killed_mid_update_comes_back_on_its_committed_version() {
    let (plane, mut nodes) = with_v1(&["crash-1"]).await;
    plane.push(
        2,
        &fixture("text-direction.onnx"),
        &upright_expected(),
        true,
    );
    let mut node = nodes.remove(0);

    // Killed after the download, before activation.
    node.proc.kill9();
    let node = plane.node("crash-1", Some("staged")).await;
    let id = plane.roll_out(2, 3600).await;
    node.wait_stage(2, "staged").await;
    assert_eq!(node.serving().await, 1, "staged is not serving");
    let mut node = node;
    node.proc.kill9();
    // Restarted (held before it may go further): its committed version serves, and no
    // partial file was left behind.
    let mut node = plane.node("crash-1", Some("fetching")).await;
    assert_eq!(node.serving().await, 1);
    let models = plane.dir.path().join("aiot-crash-1/models/artifacts");
    for entry in std::fs::read_dir(&models).expect("artifacts dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".part"), "partial download left: {name}");
    }

    // Killed while v2 is on probation (which lasts an hour here).
    node.proc.kill9();
    let mut node = plane.node("crash-1", None).await;
    node.wait_stage(2, "probation").await;
    assert_eq!(
        node.serving().await,
        2,
        "on probation, the new version serves"
    );
    node.proc.kill9();
    let node = plane.node("crash-1", None).await;
    let slot = node.wait_stage(2, "failed").await;
    assert!(
        slot["reason"].as_str().unwrap_or("").contains("probation"),
        "{slot:#}"
    );
    assert_eq!(node.serving().await, 1);
    // The node's failure stops the rollout (threshold 1): v1 again, as a new revision.
    plane.wait_rollout(&id, "rolled_back").await;
    let targets = plane.targets().await;
    assert_eq!(targets[0].1, 1, "{targets:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_rebooted_while_the_control_plane_is_down_keeps_serving() {
    let (mut plane, mut nodes) = with_v1(&["alone-1"]).await;
    plane.control.kill9();
    let mut node = nodes.remove(0);
    node.proc.kill9();
    let node = plane.node("alone-1", None).await;
    assert_eq!(node.serving().await, 1);
    let slot = node.slot().await;
    assert_eq!(slot["committed"], 1, "{slot:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_killed_after_the_canary_commits_resumes_exactly() {
    let (mut plane, nodes) = with_v1(&["resume-1", "resume-2", "resume-3"]).await;
    plane.push(
        2,
        &fixture("text-direction.onnx"),
        &upright_expected(),
        true,
    );
    let id = plane.roll_out(2, 1).await;
    // The canary commits v2.
    let canary = {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut found = None;
            for n in &nodes {
                let s = n.slot().await;
                if s["version"] == 2 && s["stage"] == "committed" {
                    found = Some(n.base.clone());
                }
            }
            if let Some(f) = found {
                break f;
            }
            assert!(Instant::now() < deadline, "no canary committed v2");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let canary_target = plane
        .targets()
        .await
        .into_iter()
        .find(|t| t.1 == 2)
        .expect("the canary's target");
    plane.control.kill9();
    plane.restart_control();
    let r = plane.wait_rollout(&id, "succeeded").await;
    let targets = plane.targets().await;
    // The canary was not given v2 again (same revision); the others once each.
    assert!(
        targets.contains(&canary_target),
        "{targets:?} / {canary_target:?}"
    );
    assert!(targets.iter().all(|t| t.1 == 2), "{targets:?}");
    for n in &nodes {
        n.wait_stage(2, "committed").await;
        assert_eq!(n.serving().await, 2, "{canary} {r:#}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_through_the_edge_cdn_fetches_each_artefact_once() {
    // Three edge AI nodes and an edge at site-a, each on its own loopback address.
    let ai = ["cdn-ai-1", "cdn-ai-2", "cdn-ai-3"];
    let plane = Plane::start_with(&[], &["--artifact-relay"]).await;
    let nodes = ai
        .iter()
        .map(|n| (*n, "aiot"))
        .chain([("cdn-edge", "edge")]);
    for (node, role) in nodes.clone() {
        let _: Value = plane
            .api
            .post(
                "/v1/nodes",
                &json!({"id": node, "site": "site-a", "roles": [role]}),
            )
            .await
            .expect("node");
    }
    let _: Value = plane
        .api
        .post(
            "/v1/pools",
            &json!({"id": "site-a-lo", "site": "site-a", "cidr": "127.0.2.0/29"}),
        )
        .await
        .expect("pool");
    let mut edge_ip = None;
    for (node, role) in nodes {
        let a: Value = plane
            .api
            .post("/v1/pools/site-a-lo/allocations", &json!({ "node": node }))
            .await
            .expect("allocate an address");
        if role == "edge" {
            edge_ip = a["address"].as_str().and_then(|s| s.parse().ok());
        }
    }
    let edge_ip = edge_ip.expect("the edge's address");
    let token = join_token(&plane.api, "cdn-edge").await;
    let edge = start_edge(
        "cdn-edge",
        edge_ip,
        &plane.url,
        Access {
            ca: None,
            join_token: Some(&token),
        },
        &plane.dir.path().join("edge"),
        false,
    );
    record_ports(&plane.api, &edge).await.expect("edge ports");
    // The edge is healthy (probed and heartbeating): the nodes' snapshot lists it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s: Value = plane
            .api
            .get("/v1/snapshots/aiot")
            .await
            .expect("aiot snapshot");
        if s["body"]["relays"].as_array().is_some_and(|r| r.len() == 3) {
            break;
        }
        assert!(Instant::now() < deadline, "no relays in {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    plane.push(
        1,
        &fixture("text-direction.onnx"),
        &upright_expected(),
        false,
    );
    let mut running = Vec::new();
    for n in ai {
        running.push(plane.node(n, None).await);
    }
    let id = plane.roll_out(1, 1).await;
    plane.wait_rollout(&id, "succeeded").await;
    for n in &running {
        n.wait_stage(1, "committed").await;
        curl_infers(&n.base, 1);
    }
    // The canary's fetches filled the edge (the model and its self-test image); the two
    // other nodes were served from its cache.
    let metrics = reqwest::get(format!("http://{}/metrics", edge.admin))
        .await
        .expect("edge metrics")
        .text()
        .await
        .expect("text");
    let count = |cache: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.contains("service=\"lingjing.artifacts\"")
                    && l.contains(&format!("cache=\"{cache}\""))
            })
            .filter(|l| l.starts_with("lingjing_edge_requests"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!((count("MISS"), count("HIT")), (2, 4), "{metrics}");
}
