//! Node credentials over the real binaries: `lingjing node join-token` issues a one-time
//! token, `lingjing edge --join-token` exchanges it at first start and keeps the
//! credential (0600, in a 0700 state directory), the credential reaches only its own
//! node's data-plane routes, a used token is refused, `lingjing node revoke` ends the
//! credential at once; a data plane refuses plain HTTP to a control plane off this host
//! unless `--insecure`, and a node with neither credential nor token says what to do;
//! `lingjing control --tls-cert/--tls-key` serves HTTPS that the CLI verifies with `--ca`
//! and refuses, with a clear message, without it.

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
        meter: None,
        storage: None,
        bucket_traffic: Vec::new(),
        bucket_stored: Vec::new(),
        defence: Vec::new(),
        defence_baseline: Vec::new(),
        aiot: Vec::new(),
        answers: None,
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

/// A CA and a server certificate for 127.0.0.1 in `dir`: (cert, key, ca).
fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    let paths = (
        dir.join("control.pem"),
        dir.join("control-key.pem"),
        dir.join("ca.pem"),
    );
    std::fs::write(&paths.0, cert.pem()).expect("cert");
    std::fs::write(&paths.1, key.serialize_pem()).expect("key");
    std::fs::write(&paths.2, ca_cert.pem()).expect("ca");
    paths
}

#[test]
fn control_serves_https_and_the_cli_verifies_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("operator.token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let (cert, key, ca) = certificates(dir.path());
    let db = format!("sqlite://{}", dir.path().join("control.db").display());
    let mut control = common::Proc::spawn(
        "lingjing control (TLS)",
        [
            "control".as_ref(),
            "--db".as_ref(),
            db.as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--token-file".as_ref(),
            token_file.as_os_str(),
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
    );
    let url = control.wait_for("its URL", |l| {
        l.split("lingjing control plane on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned)
    });
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let site_list = |ca: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["site", "list", "--endpoint", &url, "--token", TOKEN])
            .arg("--data-dir")
            .arg(dir.path().join("no-data-dir"))
            .env_remove("LINGJING_CA");
        if let Some(ca) = ca {
            cmd.arg("--ca").arg(ca);
        }
        cmd.output().expect("run lingjing")
    };
    let ok = site_list(Some(&ca));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = site_list(None);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not trusted") && stderr.contains("--ca"),
        "{stderr}"
    );
}
