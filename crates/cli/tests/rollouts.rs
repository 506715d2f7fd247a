//! `lingjing rollout` against a real `lingjing control` (its driver stepping every
//! second): a version rolled out to two edge AI nodes at two sites, the canary first, the
//! second node only after the canary committed and shown pending-offline while silent;
//! pause and resume; `show --watch` following it to the end; `list`; bad requests refused
//! naming the field; an abort sending the touched node back.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::start_control;
use lingjing_client::Client;
use lingjing_model::snapshot::Heartbeat;
use serde_json::{Value, json};

const TOKEN: &str = "rollouts-test-operator-token";
const BIN: &str = env!("CARGO_BIN_EXE_lingjing");
const MODEL: &str = "text-direction";

const SPEC: &str = r#"
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
"#;

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Waits until `check` gives something (every 100 ms, at most 20 s).
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `node` heartbeats as an edge AI node, reporting its slot (revision, version, stage).
async fn beat(node: &Client, id: &str, slot: Option<(u64, u32, &str)>) {
    let aiot: Vec<Value> = slot
        .map(|(revision, version, stage)| {
            json!({"slot": MODEL, "revision": revision, "version": version, "stage": stage})
        })
        .into_iter()
        .collect();
    let beat: Heartbeat =
        serde_json::from_value(json!({"role": "aiot", "aiot": aiot})).expect("heartbeat");
    node.heartbeat(id, &beat).await.expect("heartbeat");
}

/// The node's view in rollout `id`.
async fn node_of(api: &Client, id: &str, node: &str) -> Value {
    let st: Value = api.get(&format!("/v1/rollouts/{id}")).await.expect("show");
    st["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == node)
        .cloned()
        .unwrap_or_else(|| panic!("{node} is not in {st}"))
}

/// The revision rollout `id` gave `node`, once it gave one.
async fn given(api: &Client, id: &str, node: &str) -> u64 {
    until(
        &format!("rollout {id} gives {node} the version"),
        || async { node_of(api, id, node).await["target_revision"].as_u64() },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_rolls_a_version_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("operator.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let db = format!("sqlite://{}", dir.path().join("control.db").display());
    let (_control, url) = start_control(&db, &token_file, "127.0.0.1:0");
    let cli = |args: &[&str]| -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--endpoint", &url])
            .env("LINGJING_TOKEN", TOKEN)
            .output()
            .expect("run lingjing")
    };
    let api = Client::new(&url, TOKEN).expect("client");

    // Two edge AI nodes at two sites, and version 1 pushed.
    let _: Value = api
        .post(
            "/v1/regions",
            &json!({"id": "cn", "name": "China", "level": "country"}),
        )
        .await
        .expect("region");
    for (site, node) in [("s-a", "ai-a"), ("s-b", "ai-b")] {
        let _: Value = api
            .post(
                "/v1/sites",
                &json!({"id": site, "name": site, "region": "cn"}),
            )
            .await
            .expect("site");
        let _: Value = api
            .post(
                "/v1/nodes",
                &json!({"id": node, "site": site, "roles": ["aiot"]}),
            )
            .await
            .expect("node");
    }
    let onnx = dir.path().join("model.onnx");
    std::fs::write(&onnx, b"stand-in for an ONNX file").expect("model file");
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).expect("spec");
    let pushed = cli(&[
        "model",
        "push",
        onnx.to_str().expect("utf-8"),
        "--model",
        MODEL,
        "--version",
        "1",
        "--spec",
        spec.to_str().expect("utf-8"),
    ]);
    assert!(pushed.status.success(), "{}", said(&pushed));
    let mut nodes = Vec::new();
    for node in ["ai-a", "ai-b"] {
        let join = common::join_token(&api, node).await;
        let credential = Client::new(&url, "")
            .expect("client")
            .exchange_join_token(node, &join)
            .await
            .expect("credential");
        nodes.push(Client::new(&url, &credential).expect("node client"));
    }
    let (a, b) = (&nodes[0], &nodes[1]);

    // Refused, naming the field.
    let bad = cli(&["rollout", "create", MODEL, "9"]);
    assert!(!bad.status.success());
    assert!(said(&bad).contains("version"), "{}", said(&bad));
    let bad = cli(&["rollout", "create", MODEL, "1", "--percents", "50,10"]);
    assert!(!bad.status.success());
    assert!(said(&bad).contains("percents[1]"), "{}", said(&bad));
    let bad = cli(&["rollout", "create", MODEL, "1", "--deadline", "10x"]);
    assert!(!bad.status.success());
    assert!(said(&bad).contains("unit"), "{}", said(&bad));

    beat(a, "ai-a", None).await;
    let made = cli(&[
        "rollout",
        "create",
        MODEL,
        "1",
        "--percents",
        "100",
        "--deadline",
        "10m",
        "--offline-after",
        "5s",
        "--probation-inferences",
        "5",
    ]);
    let out = said(&made);
    assert!(made.status.success(), "{out}");
    assert!(
        out.contains("rollout 1 made: text-direction version 1 to 2 nodes in 2 groups (1, 1)"),
        "{out}"
    );

    // The canary first; the other node waits.
    let rev_a = given(&api, "1", "ai-a").await;
    beat(a, "ai-a", Some((rev_a, 1, "probation"))).await;
    let shown = said(&cli(&["rollout", "show", "1"]));
    assert!(shown.contains("group 1 of 2"), "{shown}");
    assert!(shown.contains("in-progress"), "{shown}");
    assert!(shown.contains("not-started"), "{shown}");
    assert!(shown.contains("v1 probation"), "{shown}");
    assert!(shown.contains("] 0/1"), "{shown}");
    assert!(shown.contains("5 inferences or 60 s"), "{shown}");

    // Committed: the second group, whose node is silent (pending offline).
    beat(a, "ai-a", Some((rev_a, 1, "committed"))).await;
    let rev_b = given(&api, "1", "ai-b").await;
    assert!(rev_b > rev_a);
    let shown = said(&cli(&["rollout", "show", "1"]));
    assert!(shown.contains("group 2 of 2"), "{shown}");
    assert!(shown.contains("pending-offline"), "{shown}");
    assert!(shown.contains("] 1/1"), "{shown}");

    let paused = cli(&["rollout", "pause", "1"]);
    assert!(
        said(&paused).contains("rollout 1 paused"),
        "{}",
        said(&paused)
    );
    let again = cli(&["rollout", "pause", "1"]);
    assert!(!again.status.success());
    assert!(
        said(&again).contains("cannot be paused"),
        "{}",
        said(&again)
    );
    let resumed = cli(&["rollout", "resume", "1"]);
    assert!(
        said(&resumed).contains("rollout 1 running"),
        "{}",
        said(&resumed)
    );

    // Followed to the end while the second node comes up and commits.
    let watch = Command::new(BIN)
        .args(["rollout", "show", "1", "--watch", "--endpoint", &url])
        .env("LINGJING_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    beat(b, "ai-b", Some((rev_b, 1, "committed"))).await;
    let watched = tokio::task::spawn_blocking(move || watch.wait_with_output())
        .await
        .expect("join")
        .expect("watch output");
    let out = said(&watched);
    assert!(watched.status.success(), "{out}");
    assert!(out.contains("succeeded"), "{out}");
    for node in ["ai-a", "ai-b"] {
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with(node) && l.contains("committed")),
            "{node}: {out}"
        );
    }

    let listed = said(&cli(&["rollout", "list"]));
    assert!(
        listed.contains("succeeded") && listed.contains("2/2"),
        "{listed}"
    );

    // A second rollout at one site, aborted once it touched its node.
    let made = cli(&["rollout", "create", MODEL, "1", "--sites", "s-b"]);
    assert!(made.status.success(), "{}", said(&made));
    let rev = given(&api, "2", "ai-b").await;
    assert!(rev > rev_b);
    let aborted = said(&cli(&["rollout", "abort", "2"]));
    assert!(aborted.contains("rollout 2 aborted"), "{aborted}");
    assert!(aborted.contains("1 node(s) sent back"), "{aborted}");
    let back = node_of(&api, "2", "ai-b").await;
    assert_eq!(back["state"], "rolled_back");
    assert_eq!(back["target_version"], 1, "what it had before rollout 2");
    assert!(back["target_revision"].as_u64() > Some(rev));
}
