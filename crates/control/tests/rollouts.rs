//! Fleet rollouts of a model version, end to end through the API and the driver: the
//! canary first, later groups only after it committed, a failed canary rolled back before
//! any other node saw the version, offline nodes pending (never failed), pause, resume,
//! abort, supersede, bad requests refused naming the field and changing nothing, tenants
//! and nodes refused; a restart (the SQLite file reopened) resumes exactly where the last
//! committed step left off, and two replicas never both step one rollout. On SQLite and
//! PostgreSQL.

mod common;

use std::collections::BTreeMap;

use common::{Api, Body, node};
use lingjing_control::ControlHandle;
use lingjing_control::rollout_driver::{Stepped, step_rollouts};
use lingjing_control::time::now_ms;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MODEL: &str = "text-direction";

/// The edge AI nodes, in the order a rollout interleaves them (sites by id, a site's
/// nodes by id): canary `ai-nj-1`; then `ai-wx-1`, `ai-nj-2` (50% of 5 is 3); then the rest.
const NODES: [(&str, &str); 5] = [
    ("ai-nj-1", "nj-1"),
    ("ai-nj-2", "nj-1"),
    ("ai-wx-1", "wx-1"),
    ("ai-wx-2", "wx-1"),
    ("ai-wx-3", "wx-1"),
];

struct Fleet {
    api: Api,
    /// Each edge AI node's own credential.
    nodes: BTreeMap<String, Api>,
}

async fn keep(api: &Api, bytes: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    let r = api
        .send(
            Method::PUT,
            &format!("/v1/artifacts/sha256/{digest}"),
            Body::Raw(Some("application/octet-stream"), bytes.to_vec()),
        )
        .await;
    assert!(matches!(r.status, 200 | 201), "{:?}", r.body);
    digest
}

fn model_version(number: u32, artifact: &str) -> Value {
    json!({
        "model": MODEL, "version": number, "artifact": artifact,
        "input": {"shape": [1, 3, 48, 192], "color": "bgr", "resize": "pad_right",
                  "scale": 0.003921569, "mean": [0.5], "std": [0.5]},
        "output": {"kind": "classifier", "labels": ["0", "180"]},
    })
}

/// Five edge AI nodes at two sites (on top of the seeded topology) and versions 1 and 2.
async fn fleet(api: &Api) -> Fleet {
    for (id, site) in NODES {
        api.create("nodes", node(id, site, &["aiot"])).await;
    }
    let onnx = keep(api, b"stand-in for an ONNX file").await;
    for v in [1, 2] {
        api.post(
            &format!("/v1/models/{MODEL}/versions"),
            model_version(v, &onnx),
        )
        .await
        .ok(201);
    }
    let mut nodes = BTreeMap::new();
    for (id, _) in NODES {
        nodes.insert(id.to_owned(), common::node_credential(api, id).await);
    }
    Fleet {
        api: api.clone(),
        nodes,
    }
}

impl Fleet {
    /// `node` heartbeats, reporting its slot at `stage` for `revision` and `version`
    /// (`None`: no slot yet).
    async fn beat(&self, node: &str, slot: Option<(u64, u32, &str)>) {
        let aiot = match slot {
            Some((revision, version, stage)) => {
                let mut s = json!({
                    "slot": MODEL, "revision": revision, "version": version, "stage": stage,
                });
                if stage == "failed" {
                    s["reason"] = json!("self-test: output off by 0.4");
                }
                if stage == "probation" {
                    s["probation"] =
                        json!({"inferences": 12, "errors": 0, "p95_ms": 40, "elapsed_ms": 5000});
                }
                vec![s]
            }
            None => Vec::new(),
        };
        self.nodes[node]
            .post(
                &format!("/v1/nodes/{node}/heartbeat"),
                json!({ "role": "aiot", "applied_version": 0, "aiot": aiot }),
            )
            .await
            .ok(204);
    }

    /// `node` reports `stage` for the target the snapshot gives it now.
    async fn report(&self, node: &str, stage: &str) {
        let (version, revision) = target(&self.api, node)
            .await
            .unwrap_or_else(|| panic!("{node} has no target"));
        self.beat(node, Some((revision, version, stage))).await;
    }

    async fn show(&self, id: &str) -> Value {
        self.api.get(&format!("/v1/rollouts/{id}")).await.ok(200)
    }
}

/// `node`'s target for the model in the `aiot` snapshot: version and revision.
async fn target(api: &Api, node: &str) -> Option<(u32, u64)> {
    let snap = api
        .get("/v1/snapshots/aiot?after=0&timeout_ms=0")
        .await
        .ok(200);
    let targets = snap["body"]["targets"].as_array().expect("targets");
    targets
        .iter()
        .find(|t| t["node"] == node && t["slot"] == MODEL)
        .map(|t| {
            (
                t["version"].as_u64().expect("version") as u32,
                t["revision"].as_u64().expect("revision"),
            )
        })
}

async fn step(handle: &ControlHandle, at: i64) -> Vec<Stepped> {
    step_rollouts(handle.store(), handle.hub(), at)
        .await
        .expect("step")
}

/// The nodes given the version by `steps`.
fn assigned(steps: &[Stepped]) -> Vec<String> {
    steps.iter().flat_map(|s| s.assigned.clone()).collect()
}

fn group_sizes(st: &Value) -> Vec<u64> {
    st["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["total"].as_u64().expect("total"))
        .collect()
}

fn node_view<'a>(st: &'a Value, node: &str) -> &'a Value {
    st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} is not in {st}"))
}

fn new_rollout(version: u32) -> Value {
    json!({ "model": MODEL, "version": version })
}

/// Bad requests name the field and change nothing; tenants and nodes are refused.
async fn refusals(f: &Fleet) {
    let api = &f.api;
    let before = api.version().await;
    let bad = |patch: Value| {
        let mut body = new_rollout(1);
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    for (body, field) in [
        (bad(json!({"version": 9})), "version"),
        (bad(json!({"version": 0})), "version"),
        (bad(json!({"model": "No Such/Model"})), "model"),
        (bad(json!({"model": "nope"})), "version"),
        (bad(json!({"percents": []})), "percents"),
        (bad(json!({"percents": [0, 50]})), "percents[0]"),
        (bad(json!({"percents": [50, 10]})), "percents[1]"),
        (bad(json!({"percents": [10, 101]})), "percents[1]"),
        (bad(json!({"sites": ["nowhere"]})), "sites[0]"),
        (bad(json!({"sites": ["wx-1", "wx-1"]})), "sites[1]"),
        (bad(json!({"regions": ["cn", "atlantis"]})), "regions[1]"),
        (bad(json!({"success_percent": 0})), "success_percent"),
        (bad(json!({"error_threshold": 0})), "error_threshold"),
        (bad(json!({"error_threshold": 6})), "error_threshold"),
        (bad(json!({"canary": 6})), "canary"),
        (bad(json!({"node_deadline_s": 0})), "node_deadline_s"),
        (bad(json!({"offline_after_s": 0})), "offline_after_s"),
        (
            bad(
                json!({"probation": {"min_inferences": 1, "min_seconds": 1, "max_error_percent": 101, "max_p95_ms": 10}}),
            ),
            "probation.max_error_percent",
        ),
    ] {
        api.post("/v1/rollouts", body)
            .await
            .err_field(422, "invalid", field);
    }
    // A site without edge AI nodes.
    api.create(
        "sites",
        common::site("nj-2", "cn-js-nanjing", &["telecom"], None),
    )
    .await;
    api.post("/v1/rollouts", bad(json!({"sites": ["nj-2"]})))
        .await
        .err_field(422, "invalid", "sites[0]");
    api.delete("/v1/sites/nj-2").await.ok(204);
    assert_eq!(api.get("/v1/rollouts").await.ok(200), json!([]));
    // The site's create and delete are the only versions made.
    assert_eq!(api.version().await, before + 2, "a refused rollout wrote");

    let tenant = api.with_token(&common::tenant_key(api, "demo").await);
    tenant
        .post("/v1/rollouts", new_rollout(1))
        .await
        .err(403, "forbidden");
    tenant.get("/v1/rollouts").await.err(403, "forbidden");
    tenant.get("/v1/rollouts/1").await.err(403, "forbidden");
    tenant
        .send(Method::POST, "/v1/rollouts/1/abort", Body::None)
        .await
        .err(403, "forbidden");
    let node = &f.nodes["ai-nj-1"];
    node.post("/v1/rollouts", new_rollout(1))
        .await
        .err(403, "forbidden");
    node.get("/v1/rollouts").await.err(403, "forbidden");
    assert_eq!(api.get("/v1/rollouts").await.ok(200), json!([]));
    api.get("/v1/rollouts/1").await.err(404, "not_found");
    api.send(Method::POST, "/v1/rollouts/1/pause", Body::None)
        .await
        .err(404, "not_found");
}

/// Version 1 reaches every node, group by group, only on committed nodes; an offline
/// node is pending, not failed.
async fn happy_path(f: &Fleet, handle: &ControlHandle) {
    let api = &f.api;
    let made = api.post("/v1/rollouts", new_rollout(1)).await.ok(201);
    assert_eq!(made["id"], "1");
    assert_eq!(made["state"], "running");
    assert_eq!(group_sizes(&made), [1, 2, 2]);
    assert_eq!(
        made["plan"]["groups"],
        json!([["ai-nj-1"], ["ai-wx-1", "ai-nj-2"], ["ai-wx-2", "ai-wx-3"]])
    );
    assert_eq!(made["previous"]["ai-wx-3"], 0);
    assert_eq!(made["plan"]["probation"]["min_inferences"], 100);
    assert_eq!(node_view(&made, "ai-nj-1")["state"], "not_started");
    assert_eq!(target(api, "ai-nj-1").await, None);

    // Every node but ai-wx-2 heartbeats (without the slot yet).
    for n in ["ai-nj-1", "ai-nj-2", "ai-wx-1", "ai-wx-3"] {
        f.beat(n, None).await;
    }
    let t0 = now_ms();
    let steps = step(handle, t0).await;
    assert_eq!(assigned(&steps), ["ai-nj-1"], "the canary first");
    let (v, rev) = target(api, "ai-nj-1").await.expect("canary target");
    assert_eq!((v, Some(rev)), (1, steps[0].version));
    assert_eq!(target(api, "ai-wx-1").await, None);
    let st = f.show("1").await;
    assert_eq!(node_view(&st, "ai-nj-1")["state"], "in_progress");
    assert_eq!(node_view(&st, "ai-nj-1")["target_revision"], rev);
    assert_eq!(node_view(&st, "ai-nj-1")["site"], "nj-1");

    // On probation is not committed: nothing more.
    f.report("ai-nj-1", "probation").await;
    assert!(assigned(&step(handle, t0 + 1_000).await).is_empty());
    let st = f.show("1").await;
    let canary = node_view(&st, "ai-nj-1");
    assert_eq!(canary["report"]["stage"], "probation");
    assert_eq!(canary["report"]["probation"]["inferences"], 12);
    assert_eq!(st["groups"][0]["committed"], 0);
    // A report of an older revision, or another version, is not this rollout's.
    f.beat("ai-nj-1", Some((rev - 1, 1, "committed"))).await;
    assert!(assigned(&step(handle, t0 + 1_500).await).is_empty());
    f.beat("ai-nj-1", Some((rev, 2, "committed"))).await;
    assert!(assigned(&step(handle, t0 + 1_600).await).is_empty());

    f.report("ai-nj-1", "committed").await;
    let steps = step(handle, t0 + 2_000).await;
    assert_eq!(assigned(&steps), ["ai-wx-1", "ai-nj-2"]);
    assert_eq!(steps[0].group, 1);
    // Stepped again with nothing new: nothing repeated.
    assert!(assigned(&step(handle, t0 + 3_000).await).is_empty());
    let st = f.show("1").await;
    assert_eq!(st["groups"][0]["committed"], 1);
    assert_eq!(st["groups"][1]["started"], true);
    assert_eq!(st["groups"][2]["started"], false);
    assert_eq!(target(api, "ai-wx-2").await, None);

    f.report("ai-nj-2", "committed").await;
    f.report("ai-wx-1", "committed").await;
    let steps = step(handle, t0 + 4_000).await;
    assert_eq!(assigned(&steps), ["ai-wx-2", "ai-wx-3"]);
    f.report("ai-wx-3", "committed").await;
    // ai-wx-2 never heartbeats: an hour later it is pending offline, not failed (and so
    // are the others' deadlines stopped: every heartbeat is an hour old by then).
    let later = t0 + 3_600_000;
    let steps = step(handle, later).await;
    assert_eq!(
        steps[0].state,
        lingjing_control::rollout::RolloutState::Running
    );
    let st = f.show("1").await;
    assert_eq!(st["state"], "running");
    assert_eq!(st["progress"]["failed"], json!({}));
    let silent = node_view(&st, "ai-wx-2");
    assert_eq!(silent["state"], "pending_offline");
    assert_eq!(silent["offline"], true);
    assert!(silent.get("last_heartbeat").is_none());
    assert_eq!(st["groups"][2]["pending_offline"], 1);
    assert_eq!(st["groups"][2]["committed"], 1);

    // It comes back and commits: done.
    f.report("ai-wx-2", "committed").await;
    let steps = step(handle, later + 1_000).await;
    assert_eq!(
        steps[0].state,
        lingjing_control::rollout::RolloutState::Succeeded
    );
    let st = f.show("1").await;
    assert_eq!(st["state"], "succeeded");
    for (n, _) in NODES {
        assert_eq!(node_view(&st, n)["state"], "committed", "{n}");
        assert_eq!(target(api, n).await.map(|t| t.0), Some(1), "{n}");
    }
    // Finished: not stepped any more.
    assert!(step(handle, later + 2_000).await.is_empty());
}

/// Version 2's canary fails: it goes back to version 1, and no other node ever sees 2.
async fn failed_canary(f: &Fleet, handle: &ControlHandle) {
    let api = &f.api;
    let before: BTreeMap<&str, Option<(u32, u64)>> = {
        let mut m = BTreeMap::new();
        for (n, _) in NODES {
            m.insert(n, target(api, n).await);
        }
        m
    };
    let made = api.post("/v1/rollouts", new_rollout(2)).await.ok(201);
    assert_eq!(made["id"], "2");
    assert_eq!(made["previous"]["ai-nj-1"], 1);
    for (n, _) in NODES {
        f.report(n, "committed").await;
    }
    let t0 = now_ms();
    assert_eq!(assigned(&step(handle, t0).await), ["ai-nj-1"]);
    let (v, rev) = target(api, "ai-nj-1").await.expect("target");
    assert_eq!(v, 2);
    f.report("ai-nj-1", "failed").await;
    let steps = step(handle, t0 + 1_000).await;
    assert_eq!(steps[0].rolled_back, ["ai-nj-1"]);
    assert!(steps[0].assigned.is_empty());
    let (v, back) = target(api, "ai-nj-1").await.expect("target");
    assert_eq!(v, 1, "back to the version before");
    assert!(back > rev, "a rollback is a new revision");
    for (n, t) in &before {
        if *n != "ai-nj-1" {
            assert_eq!(target(api, n).await, *t, "{n} never saw version 2");
        }
    }
    let st = f.show("2").await;
    assert_eq!(st["state"], "rolled_back");
    assert!(
        st["progress"]["reason"]
            .as_str()
            .expect("reason")
            .contains("rolled back")
    );
    let canary = node_view(&st, "ai-nj-1");
    assert_eq!(canary["state"], "failed");
    assert_eq!(canary["failure"], "self-test: output off by 0.4");
    assert_eq!(canary["target_version"], 1);
    assert_eq!(node_view(&st, "ai-wx-1")["state"], "not_started");
    assert_eq!(st["groups"][0]["failed"], 1);
    // Stopped: nothing to pause, resume or abort.
    for verb in ["pause", "resume", "abort"] {
        api.send(Method::POST, &format!("/v1/rollouts/2/{verb}"), Body::None)
            .await
            .err(409, "wrong_state");
    }
}

/// Pause and resume; a newer rollout supersedes (nothing rolled back); abort sends the
/// touched nodes back.
async fn by_hand(f: &Fleet, handle: &ControlHandle) {
    let api = &f.api;
    for (n, _) in NODES {
        f.report(n, "committed").await;
    }
    let made = api.post("/v1/rollouts", new_rollout(2)).await.ok(201);
    assert_eq!(made["id"], "3");
    let t0 = now_ms();
    assert_eq!(assigned(&step(handle, t0).await), ["ai-nj-1"]);
    let paused = api
        .send(Method::POST, "/v1/rollouts/3/pause", Body::None)
        .await
        .ok(200);
    assert_eq!(paused["state"], "paused");
    api.send(Method::POST, "/v1/rollouts/3/pause", Body::None)
        .await
        .err(409, "wrong_state");
    // Paused: the canary commits, nothing moves.
    f.report("ai-nj-1", "committed").await;
    assert!(step(handle, t0 + 1_000).await.is_empty());
    assert_eq!(target(api, "ai-wx-1").await.map(|t| t.0), Some(1));
    let resumed = api
        .send(Method::POST, "/v1/rollouts/3/resume", Body::None)
        .await
        .ok(200);
    assert_eq!(resumed["state"], "running");
    api.send(Method::POST, "/v1/rollouts/3/resume", Body::None)
        .await
        .err(409, "wrong_state");
    assert_eq!(
        assigned(&step(handle, t0 + 2_000).await),
        ["ai-wx-1", "ai-nj-2"]
    );

    // Rollout 4 of version 2 at wx-1 only supersedes 3: nothing rolled back.
    let four = api
        .post(
            "/v1/rollouts",
            json!({"model": MODEL, "version": 2, "sites": ["wx-1"], "percents": [100],
                   "probation": {"min_inferences": 5, "min_seconds": 10, "max_error_percent": 1, "max_p95_ms": 50}}),
        )
        .await
        .ok(201);
    assert_eq!(four["id"], "4");
    assert_eq!(group_sizes(&four), [1, 2]);
    assert_eq!(four["previous"]["ai-wx-1"], 2, "what rollout 3 gave it");
    assert_eq!(four["previous"]["ai-wx-2"], 1);
    let three = f.show("3").await;
    assert_eq!(three["state"], "superseded");
    assert!(
        three["progress"]["reason"]
            .as_str()
            .expect("reason")
            .contains("rollout 4")
    );
    assert_eq!(target(api, "ai-nj-2").await.map(|t| t.0), Some(2));
    assert_eq!(node_view(&three, "ai-nj-2")["state"], "in_progress");
    api.send(Method::POST, "/v1/rollouts/3/abort", Body::None)
        .await
        .err(409, "wrong_state");

    let steps = step(handle, t0 + 3_000).await;
    assert_eq!(steps.len(), 1, "only rollout 4 runs: {steps:?}");
    assert_eq!(assigned(&steps), ["ai-wx-1"]);
    // Rollout 3's node now runs what rollout 4 gave it.
    assert_eq!(
        node_view(&f.show("3").await, "ai-wx-1")["state"],
        "replaced"
    );
    let snap = api
        .get("/v1/snapshots/aiot?after=0&timeout_ms=0")
        .await
        .ok(200);
    let t = snap["body"]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["node"] == "ai-wx-1")
        .expect("ai-wx-1's target")
        .clone();
    assert_eq!(t["probation"]["min_inferences"], 5, "{t}");
    let (_, rev) = target(api, "ai-wx-1").await.expect("target");

    let aborted = api
        .send(Method::POST, "/v1/rollouts/4/abort", Body::None)
        .await
        .ok(200);
    assert_eq!(aborted["state"], "aborted");
    assert_eq!(node_view(&aborted, "ai-wx-1")["state"], "rolled_back");
    assert_eq!(node_view(&aborted, "ai-wx-2")["state"], "not_started");
    let (v, back) = target(api, "ai-wx-1").await.expect("target");
    assert_eq!(v, 2, "back to what it had before rollout 4");
    assert!(back > rev);
    assert_eq!(target(api, "ai-wx-2").await.map(|t| t.0), Some(1));
    api.send(Method::POST, "/v1/rollouts/4/abort", Body::None)
        .await
        .err(409, "wrong_state");
    assert!(step(handle, t0 + 4_000).await.is_empty());

    let list = api.get("/v1/rollouts").await.ok(200);
    let ids: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["4", "3", "2", "1"], "newest first");
    assert!(list[0].get("nodes").is_none(), "lists leave the nodes out");
    assert_eq!(list[3]["state"], "succeeded");
    assert_eq!(list[3]["groups"][2]["committed"], 2);
}

async fn scenarios(handle: &ControlHandle, api: &Api) {
    handle.stop_rollout_driver();
    let f = fleet(api).await;
    refusals(&f).await;
    happy_path(&f, handle).await;
    failed_canary(&f, handle).await;
    by_hand(&f, handle).await;
}

#[tokio::test]
async fn rollouts_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    let handle = plane.handle.as_ref().expect("running");
    scenarios(handle, &api).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn rollouts_postgres() {
    lingjing_control::testing::with_scratch_postgres("rollouts", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        scenarios(&handle, &api).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}

/// The control plane stops (as if killed) after a step committed and starts again on the
/// same SQLite file: the next steps neither repeat nor skip a group. Two replicas over one
/// database stepping at once give a group the version once.
#[tokio::test]
async fn a_restart_resumes_exactly() {
    let (mut plane, api) = common::start_seeded().await;
    plane
        .handle
        .as_ref()
        .expect("running")
        .stop_rollout_driver();
    let f = fleet(&api).await;
    api.post("/v1/rollouts", new_rollout(1)).await.ok(201);
    for (n, _) in NODES {
        f.beat(n, None).await;
    }

    // A second replica over the same file; both step at once: the canary once.
    let db = plane.db.clone();
    let (other, _) = common::serve_store(
        lingjing_control::Store::open_sqlite_file(&db)
            .await
            .expect("second store"),
    )
    .await;
    other.stop_rollout_driver();
    let t0 = now_ms();
    let (a, b) = tokio::join!(
        step(plane.handle.as_ref().expect("running"), t0),
        step(&other, t0)
    );
    let mut both = assigned(&a);
    both.extend(assigned(&b));
    assert_eq!(both, ["ai-nj-1"], "one replica stepped: {a:?} {b:?}");
    other.shutdown().await.expect("shutdown");

    f.report("ai-nj-1", "committed").await;
    let steps = step(plane.handle.as_ref().expect("running"), t0 + 1_000).await;
    assert_eq!(assigned(&steps), ["ai-wx-1", "ai-nj-2"]);
    let mut targets = BTreeMap::new();
    for (n, _) in NODES {
        targets.insert(n, target(&api, n).await);
    }
    let progress = f.show("1").await["progress"].clone();

    plane.shutdown().await;
    let (handle, api) = common::serve_store(
        lingjing_control::Store::open_sqlite_file(&db)
            .await
            .expect("reopen"),
    )
    .await;
    handle.stop_rollout_driver();
    let st = api.get("/v1/rollouts/1").await.ok(200);
    assert_eq!(st["progress"], progress, "the progress as committed");
    for (n, _) in NODES {
        assert_eq!(
            target(&api, n).await,
            targets[n],
            "{n}'s target as committed"
        );
    }
    // The same reports again: no group repeated, none skipped.
    let steps = step(&handle, t0 + 2_000).await;
    assert!(assigned(&steps).is_empty(), "{steps:?}");
    assert_eq!(steps[0].group, 1);
    // The restarted control plane listens elsewhere: the nodes' credentials again.
    let mut nodes = BTreeMap::new();
    for (id, _) in NODES {
        nodes.insert(id.to_owned(), common::node_credential(&api, id).await);
    }
    let f = Fleet {
        api: api.clone(),
        nodes,
    };
    f.report("ai-nj-2", "committed").await;
    f.report("ai-wx-1", "committed").await;
    let steps = step(&handle, t0 + 3_000).await;
    assert_eq!(assigned(&steps), ["ai-wx-2", "ai-wx-3"]);
    handle.shutdown().await.expect("shutdown");
}
