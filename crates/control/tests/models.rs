//! Edge AI model versions: registered once an artefact is kept, never changed or
//! replaced, checked field by field, read by the operator and nodes, not tenants; on
//! SQLite and PostgreSQL.

mod common;

use common::{Api, Body};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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

fn version(number: u32, artifact: &str) -> Value {
    json!({
        "model": "text-direction", "version": number, "artifact": artifact,
        "input": {"shape": [1, 3, 48, 192], "color": "bgr", "resize": "pad_right",
                  "scale": 0.003921569, "mean": [0.5], "std": [0.5]},
        "output": {"kind": "classifier", "labels": ["0", "180"]},
    })
}

async fn models(api: &Api) {
    let onnx = keep(api, b"stand-in for an ONNX file").await;
    let unknown = hex::encode(Sha256::digest(b"never uploaded"));
    let path = "/v1/models/text-direction/versions";

    // An artefact that is not kept, a bad field, a path that disagrees: refused.
    api.post(path, version(1, &unknown))
        .await
        .err_field(422, "invalid", "artifact");
    let mut bad = version(1, &onnx);
    bad["input"]["std"] = json!([0.0]);
    api.post(path, bad)
        .await
        .err_field(422, "invalid", "input.std");
    api.post("/v1/models/other/versions", version(1, &onnx))
        .await
        .err_field(422, "invalid", "model");
    let mut test = version(1, &onnx);
    test["self_test"] = json!({"input": unknown, "expected": [0.9, 0.1], "tolerance": 0.01});
    api.post(path, test)
        .await
        .err_field(422, "invalid", "self_test.input");

    let first = api.post(path, version(1, &onnx)).await.ok(201);
    assert_eq!(first["version"], 1);
    assert!(first["created_at"].is_string());
    // Never changed: the same number again is refused, whatever it says.
    let mut changed = version(1, &onnx);
    changed["output"]["labels"] = json!(["up", "down"]);
    api.post(path, changed).await.err(409, "already_exists");
    let image = keep(api, b"a self-test image").await;
    let mut second = version(2, &onnx);
    second["self_test"] = json!({"input": image, "expected": [0.99, 0.01], "tolerance": 0.001});
    api.post(path, second).await.ok(201);

    let listed = api.get(path).await.ok(200);
    assert_eq!(listed[0]["version"], 2, "newest first: {listed}");
    assert_eq!(listed[1]["output"]["labels"], json!(["0", "180"]));
    let summary = api.get("/v1/models").await.ok(200);
    assert_eq!(summary[0]["model"], "text-direction");
    assert_eq!(
        (
            summary[0]["versions"].as_u64(),
            summary[0]["latest"].as_u64()
        ),
        (Some(2), Some(2))
    );
    api.get("/v1/models/text-direction/versions/1")
        .await
        .ok(200);
    api.get("/v1/models/text-direction/versions/9")
        .await
        .err(404, "not_found");
    api.get("/v1/models/nope/versions")
        .await
        .err(404, "not_found");

    // Nodes read them; tenants neither read nor register.
    let node = common::node_credential(api, "wx-1-a").await;
    node.get(path).await.ok(200);
    node.post(path, version(3, &onnx))
        .await
        .err(403, "forbidden");
    let tenant = api.with_token(&common::tenant_key(api, "demo").await);
    let r = tenant.send(Method::GET, path, Body::None).await;
    assert!(matches!(r.status, 401 | 403), "{}", r.status);
    tenant
        .post(path, version(3, &onnx))
        .await
        .err(403, "forbidden");
}

#[tokio::test]
async fn model_versions_are_registered_once_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    models(&api).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn model_versions_are_registered_once_postgres() {
    lingjing_control::testing::with_scratch_postgres("models", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        models(&api).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}
