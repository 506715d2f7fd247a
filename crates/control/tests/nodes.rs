//! Node credentials: a one-time join token (operator only) is exchanged once for the
//! node's own credential, which reads only its own role's snapshot, reports only for its
//! own node, reaches no operator or tenant route, and stops working when revoked.

mod common;

use common::{Api, Body};
use reqwest::Method;
use serde_json::{Value, json};

async fn join_token(api: &Api, node: &str) -> String {
    let t = api
        .post(&format!("/v1/nodes/{node}/join-token"), json!({}))
        .await
        .ok(201);
    assert_eq!(t["node"], node);
    assert!(t["expires_at"].is_string(), "{t}");
    let token = t["join_token"].as_str().expect("join_token").to_owned();
    assert!(token.starts_with("ljj_"), "{token}");
    token
}

async fn exchange(api: &Api, node: &str, token: &str) -> common::Resp {
    api.anonymous()
        .post(
            &format!("/v1/nodes/{node}/credential"),
            json!({ "join_token": token }),
        )
        .await
}

async fn credential(api: &Api, node: &str) -> Api {
    let token = join_token(api, node).await;
    let c = exchange(api, node, &token).await.ok(201);
    let credential = c["credential"].as_str().expect("credential");
    assert!(credential.starts_with("ljn_"), "{c}");
    api.with_token(credential)
}

fn beat(role: &str) -> Value {
    json!({"role": role, "applied_version": 1})
}

fn beat_with_usage(seq: u64) -> Value {
    json!({"role": "edge", "applied_version": 1, "usage_seq": seq,
           "usage": [{"service": "shop", "requests": 1000, "bytes_out": 1_000_000}]})
}

#[tokio::test]
async fn a_join_token_works_once_for_its_own_node() {
    let (mut plane, api) = common::start_seeded().await;

    let token = join_token(&api, "wx-1-a").await;
    // Issued for wx-1-a: not usable for another node (and not used up by trying).
    let other = exchange(&api, "wx-1-b", &token)
        .await
        .err(401, "unauthorized");
    assert!(
        other.message().contains("issued for node `wx-1-a`"),
        "{other:?}"
    );
    exchange(&api, "wx-1-a", &token).await.ok(201);
    let again = exchange(&api, "wx-1-a", &token)
        .await
        .err(401, "unauthorized");
    assert!(again.message().contains("already used"), "{again:?}");
    assert!(
        again.message().contains("lingjing node join-token"),
        "{again:?}"
    );
    exchange(&api, "wx-1-a", "ljj_00")
        .await
        .err(401, "unauthorized");

    // A join token is no credential.
    let fresh = join_token(&api, "wx-1-b").await;
    let r = api
        .with_token(&fresh)
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .err(401, "unauthorized");
    assert!(r.message().contains("join token"), "{r:?}");

    // Only the operator issues them; bad lifetimes and unknown nodes are refused.
    let key = common::tenant_key(&api, "demo").await;
    api.with_token(&key)
        .post("/v1/nodes/wx-1-a/join-token", json!({}))
        .await
        .err(403, "forbidden");
    api.post("/v1/nodes/wx-1-a/join-token?ttl_s=0", json!({}))
        .await
        .err_field(422, "invalid", "ttl_s");
    api.post("/v1/nodes/nope/join-token", json!({}))
        .await
        .err(404, "not_found");
    plane.shutdown().await;
}

#[tokio::test]
async fn a_node_credential_reaches_only_its_own_node_and_role() {
    let (mut plane, api) = common::start_seeded().await;
    api.create("nodes", common::node("dns-1", "nj-1", &["dns"]))
        .await;

    let edge = credential(&api, "wx-1-a").await;
    let dns = credential(&api, "dns-1").await;

    // Its own role's snapshot, for itself.
    edge.get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .ok(200);
    edge.get("/v1/snapshots/edge?node=wx-1-a&after=0&timeout_ms=10")
        .await
        .ok(200);
    dns.get("/v1/snapshots/dns?after=0&timeout_ms=10")
        .await
        .ok(200);
    // Not the other role's, nor as another node.
    let r = edge
        .get("/v1/snapshots/dns?after=0&timeout_ms=10")
        .await
        .err(403, "forbidden");
    assert!(r.message().contains("wx-1-a"), "{r:?}");
    dns.get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .err(403, "forbidden");
    edge.get("/v1/snapshots/edge?node=wx-1-b&after=0&timeout_ms=10")
        .await
        .err(403, "forbidden");

    // Heartbeats, usage and acknowledgements only for itself, in its own role.
    edge.post("/v1/nodes/wx-1-a/heartbeat", beat("edge"))
        .await
        .ok(204);
    edge.post("/v1/nodes/wx-1-a/heartbeat", beat_with_usage(1))
        .await
        .ok(204);
    let r = edge
        .post("/v1/nodes/wx-1-b/heartbeat", beat("edge"))
        .await
        .err(403, "forbidden");
    assert!(r.message().contains("only for its own node"), "{r:?}");
    edge.post("/v1/nodes/wx-1-b/heartbeat", beat_with_usage(2))
        .await
        .err(403, "forbidden");
    edge.post("/v1/nodes/wx-1-a/heartbeat", beat("dns"))
        .await
        .err(403, "forbidden");
    dns.post("/v1/nodes/wx-1-a/heartbeat", beat("edge"))
        .await
        .err(403, "forbidden");
    // The refused usage was not counted: only wx-1-a's own report is.
    let usage = api.get("/v1/services/shop/usage").await.ok(200);
    assert_eq!(usage["requests"], 1000, "{usage}");

    // No operator or tenant route.
    for (method, path, body) in [
        (Method::GET, "/v1/sites", Body::None),
        (Method::GET, "/v1/nodes", Body::None),
        (Method::GET, "/v1/tenants", Body::None),
        (Method::GET, "/v1/services", Body::None),
        (
            Method::POST,
            "/v1/purges",
            Body::Json(json!({"kind": "url", "targets": ["http://www.demo.example/"]})),
        ),
        (Method::POST, "/v1/nodes/wx-1-a/join-token", Body::None),
        (Method::POST, "/v1/nodes/wx-1-b/revoke", Body::None),
        (
            Method::PUT,
            "/v1/nodes/wx-1-a",
            Body::Json(common::node("wx-1-a", "wx-1", &["edge", "dns"])),
        ),
    ] {
        let r = edge.send(method, path, body).await.err(403, "forbidden");
        assert!(r.message().contains("node `wx-1-a`"), "{r:?}");
    }

    // A tenant key reaches no data-plane route.
    let key = common::tenant_key(&api, "demo").await;
    api.with_token(&key)
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .err(403, "forbidden");
    api.with_token(&key)
        .post("/v1/nodes/wx-1-a/heartbeat", beat("edge"))
        .await
        .err(403, "forbidden");

    // The operator still reaches them all.
    api.get("/v1/snapshots/dns?node=wx-1-a&after=0&timeout_ms=10")
        .await
        .ok(200);
    api.post("/v1/nodes/wx-1-b/heartbeat", beat("edge"))
        .await
        .ok(204);
    plane.shutdown().await;
}

#[tokio::test]
async fn revoking_ends_the_credential_and_unused_join_tokens_at_once() {
    let (mut plane, api) = common::start_seeded().await;
    let edge = credential(&api, "wx-1-a").await;
    let other = credential(&api, "wx-1-b").await;
    let pending = join_token(&api, "wx-1-a").await;

    let r = api.post("/v1/nodes/wx-1-a/revoke", json!({})).await.ok(200);
    assert_eq!(
        r,
        json!({"node": "wx-1-a", "credential": true, "credentials": 1, "join_tokens": 1})
    );
    let refused = edge
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .err(401, "unauthorized");
    assert!(refused.message().contains("revoked"), "{refused:?}");
    edge.post("/v1/nodes/wx-1-a/heartbeat", beat("edge"))
        .await
        .err(401, "unauthorized");
    exchange(&api, "wx-1-a", &pending)
        .await
        .err(401, "unauthorized");
    // Another node's credential is untouched.
    other
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .ok(200);

    // A new join token gives the node a new credential.
    let again = credential(&api, "wx-1-a").await;
    again
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .ok(200);
    // A second join (say, the node reinstalled) adds a credential without ending the
    // first; a revocation ends both.
    let newer = credential(&api, "wx-1-a").await;
    for c in [&again, &newer] {
        c.get("/v1/snapshots/edge?after=0&timeout_ms=10")
            .await
            .ok(200);
    }
    let r = api.post("/v1/nodes/wx-1-a/revoke", json!({})).await.ok(200);
    assert_eq!(r["credentials"], 2, "{r}");
    for c in [&again, &newer] {
        c.get("/v1/snapshots/edge?after=0&timeout_ms=10")
            .await
            .err(401, "unauthorized");
    }
    api.post("/v1/nodes/nope/revoke", json!({}))
        .await
        .err(404, "not_found");
    plane.shutdown().await;
}

/// The data plane's side (`lingjing_client::agent::node_credential`): the join token is
/// exchanged once and the credential kept (0600); later starts use the kept one, also
/// when started again with the used token; a new token after a revocation replaces it.
#[tokio::test]
async fn a_node_keeps_its_credential_and_replaces_it_after_a_revocation() {
    use lingjing_client::agent::{credential_path, node_credential};
    let (mut plane, api) = common::start_seeded().await;
    let url = api.base().to_owned();
    let state = plane.dir.path().join("wx-1-a-state");

    let none = node_credential(&url, None, false, "wx-1-a", &state, None)
        .await
        .expect_err("no credential, no token");
    assert!(
        none.to_string().contains("lingjing node join-token wx-1-a"),
        "{none}"
    );

    let token = join_token(&api, "wx-1-a").await;
    let first = node_credential(&url, None, false, "wx-1-a", &state, Some(&token))
        .await
        .expect("exchanged");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        assert_eq!(mode(&credential_path(&state, "wx-1-a")), 0o600);
        assert_eq!(mode(&state), 0o700);
    }
    let kept = node_credential(&url, None, false, "wx-1-a", &state, None)
        .await
        .expect("kept");
    assert_eq!(kept, first);
    let again = node_credential(&url, None, false, "wx-1-a", &state, Some(&token))
        .await
        .expect("the used token falls back to the kept credential");
    assert_eq!(again, first);
    api.with_token(&first)
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .ok(200);

    api.post("/v1/nodes/wx-1-a/revoke", json!({})).await.ok(200);
    let token = join_token(&api, "wx-1-a").await;
    let second = node_credential(&url, None, false, "wx-1-a", &state, Some(&token))
        .await
        .expect("exchanged again");
    assert_ne!(second, first);
    assert_eq!(
        std::fs::read_to_string(credential_path(&state, "wx-1-a"))
            .expect("kept")
            .trim(),
        second
    );
    api.with_token(&second)
        .get("/v1/snapshots/edge?after=0&timeout_ms=10")
        .await
        .ok(200);
    plane.shutdown().await;
}
