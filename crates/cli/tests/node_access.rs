//! Node credentials over the real binaries: `lingjing node join-token` issues a one-time
//! token, `lingjing edge --join-token` exchanges it at first start and keeps the
//! credential (0600, in a 0700 state directory), the credential reaches only its own
//! node's data-plane routes, a used token is refused, `lingjing node revoke` ends the
//! credential at once; a data plane refuses plain HTTP to a control plane off this host
//! unless `--insecure`, and a node with neither credential nor token says what to do.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Access, BIN, eventually, seed, start_control, start_edge};
use lingjing_client::Client;
use lingjing_demo::demo_topology;
use lingjing_model::snapshot::{Heartbeat, Role};
use serde_json::Value;

const TOKEN: &str = "node-access-test-operator-token-0123456789";

/// Runs `lingjing ARGS` to its end (bounded by the command itself: each fails fast).
fn run(args: &[&str], state_dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env_remove("LINGJING_TOKEN")
        .env_remove("LINGJING_ENDPOINT")
        .env_remove("LINGJING_CA")
        .env_remove("LINGJING_JOIN_TOKEN")
        .output()
        .expect("run lingjing")
}

#[test]
fn a_data_plane_refuses_plain_http_off_this_host_without_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    for role in ["edge", "dns"] {
        let out = run(
            &[
                role,
                "--node",
                "n1",
                "--endpoint",
                "http://192.0.2.1:7700",
                "--join-token",
                "ljj_0000",
            ],
            dir.path(),
        );
        assert!(!out.status.success(), "{role} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("plain HTTP")
                && stderr.contains("192.0.2.1")
                && stderr.contains("--insecure"),
            "{role}: {stderr}"
        );
    }
    // Without a kept credential or a join token, the node says how to get one.
    let out = run(
        &["edge", "--node", "n1", "--endpoint", "http://127.0.0.1:9"],
        &dir.path().join("fresh"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--join-token") && stderr.contains("lingjing node join-token n1"),
        "{stderr}"
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_with_a_one_time_token_and_is_revoked_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("operator.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let db = format!("sqlite://{}", dir.path().join("control.db").display());
    let (_control, url) = start_control(&db, &token_file, "127.0.0.1:0");
    let api = Client::new(&url, TOKEN).expect("client");
    // The inventory is what matters here: no services (so no origin).
    let mut topology = demo_topology("192.0.2.80:80".parse().expect("addr"));
    topology.services.clear();
    seed(&api, &topology).await;

    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--endpoint", &url, "--token", TOKEN])
            .output()
            .expect("run lingjing");
        assert!(
            out.status.success(),
            "lingjing {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let join = cli(&["node", "join-token", "wuxi-1-e1"]);
    assert!(join.starts_with("ljj_"), "{join}");

    let state = dir.path().join("wuxi");
    let access = Access {
        join_token: Some(&join),
        ..Default::default()
    };
    let edge = start_edge(
        "wuxi-1-e1",
        "127.0.0.1".parse().expect("ip"),
        &url,
        access,
        &state,
        false,
    );
    let credential_file = state.join("wuxi-1-e1.credential");
    let credential = std::fs::read_to_string(&credential_file).expect("the kept credential");
    let credential = credential.trim();
    assert!(credential.starts_with("ljn_"));
    #[cfg(unix)]
    {
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&credential_file), 0o600);
    }
    // The node follows the control plane with it: its snapshot arrives.
    eventually(
        "the edge keeps its snapshot",
        Duration::from_secs(20),
        || {
            state
                .join("wuxi-1-e1-edge.snapshot.json")
                .is_file()
                .then_some(())
        },
    );
    #[cfg(unix)]
    assert_eq!(mode(&state.join("wuxi-1-e1-edge.snapshot.json")), 0o600);

    // The token worked once.
    let reused = Client::new(&url, "")
        .expect("client")
        .exchange_join_token("wuxi-1-e1", &join)
        .await
        .expect_err("a used join token");
    assert_eq!(reused.status(), Some(401), "{reused}");

    // The credential is the node's own: no operator route, no other node.
    let node = Client::new(&url, credential).expect("client");
    let sites = node
        .get::<Value>("/v1/sites")
        .await
        .expect_err("operator route");
    assert_eq!(sites.status(), Some(403), "{sites}");
    let beat = Heartbeat {
        role: Role::Edge,
        applied_version: 0,
        agent: None,
        usage: Vec::new(),
        usage_seq: 0,
    };
    let other = node
        .heartbeat("suqian-1-e1", &beat)
        .await
        .expect_err("another node's heartbeat");
    assert_eq!(other.status(), Some(403), "{other}");
    node.heartbeat("wuxi-1-e1", &beat).await.expect("its own");

    let revoked = cli(&["node", "revoke", "wuxi-1-e1"]);
    assert!(revoked.contains("credential(s) revoked"), "{revoked}");
    let after = node
        .heartbeat("wuxi-1-e1", &beat)
        .await
        .expect_err("a revoked credential");
    assert_eq!(after.status(), Some(401), "{after}");
    drop(edge);
}
