//! Road inspection's evidence images in the tenant's bucket, against a real S3 gateway and
//! storage node: with `evidence_bucket` in its policy, a tenant's evidence image moves
//! out of the database into that bucket (one mover pass), where the tenant's S3 key reads
//! it, and the evidence API serves the same bytes as before; a bad bucket name is refused
//! beside the field; a policy naming another tenant's bucket moves nothing (the gateway
//! refuses, the image stays and is still served); with no gateway up the API says 502.

mod common;

use base64::Engine;
use common::Api;
use lingjing_control::store::inspect::{self as db, EvidenceImage};
use lingjing_model::sigv4;
use lingjing_storage::Redundancy;
use lingjing_storage::gateway::{self, GatewayConfig, S3Key};
use lingjing_storage::node::NodeConfig;
use lingjing_storage::placement::NodeRef;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "evidence-test-cluster-token";
/// A 1x1 PNG.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .expect("png")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn record(seq: u64, device: &str) -> Value {
    json!({
        "seq": seq, "device": device, "run": "run-1", "frame": format!("f{seq}"),
        "taken_ms": now_ms(), "lat": 31.57, "lon": 120.3, "model": "road", "version": 1,
        "detections": [{"class": "D40", "label": "pothole", "score": 0.8, "bbox": [0, 0, 10, 10]}],
        "image": PNG_B64,
    })
}

/// The tenant's console key, as the gateway takes it.
async fn console_key(api: &Api, tenant: &str) -> S3Key {
    let k = api
        .post(&format!("/v1/tenants/{tenant}/s3-keys/console"), json!({}))
        .await
        .ok(200);
    S3Key {
        access_key: k["access_key"].as_str().expect("key").to_owned(),
        secret: k["secret"].as_str().expect("secret").to_owned(),
        tenant: tenant.to_owned(),
        read_only_bucket: None,
    }
}

/// A signed path-style S3 request: status and body.
async fn s3(gw: std::net::SocketAddr, key: &S3Key, method: &str, path: &str) -> (u16, Vec<u8>) {
    let host = gw.to_string();
    let signed = sigv4::sign(
        &sigv4::Request {
            method,
            host: &host,
            path,
            query: &[],
            payload: sigv4::EMPTY_SHA256,
        },
        (&key.access_key, &key.secret),
        std::time::SystemTime::now(),
    );
    let mut req = reqwest::Client::new().request(
        Method::from_bytes(method.as_bytes()).expect("method"),
        format!("http://{host}{path}"),
    );
    for (name, value) in signed.fields() {
        req = req.header(name, value);
    }
    let resp = req.send().await.expect("gateway");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

/// The evidence image as the API serves it: status, content type, headers, bytes.
async fn image(api: &Api, token: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", api.base()))
        .bearer_auth(token)
        .send()
        .await
        .expect("evidence");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

/// The only defect of the tenant `api` holds the key of, and its evidence's path.
async fn defect_of(api: &Api) -> (String, Value, String) {
    let defects = api.get("/v1/defects").await.ok(200);
    let list = defects.as_array().expect("defects");
    assert_eq!(list.len(), 1, "{defects}");
    let id = list[0]["id"].as_str().expect("id").to_owned();
    let shown = api.get(&format!("/v1/defects/{id}")).await.ok(200);
    let e = &shown["evidence"][0];
    let path = format!(
        "/v1/defects/{id}/evidence/{}/{}",
        e["stream"].as_str().expect("stream"),
        e["seq"]
    );
    (id, e.clone(), path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_images_move_into_the_tenants_bucket_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    evidence(plane.handle.as_ref().expect("running"), &api).await;
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_images_move_into_the_tenants_bucket_postgres() {
    lingjing_control::testing::with_scratch_postgres("evidence", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        evidence(&handle, &api).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}

async fn evidence(handle: &lingjing_control::ControlHandle, api: &Api) {
    let api = api.clone();
    let (store, hub) = (handle.store().clone(), handle.hub().clone());

    api.create(
        "nodes",
        json!({"id": "ai-1", "site": "wx-1", "roles": ["aiot"]}),
    )
    .await;
    for t in ["city", "other"] {
        api.create("tenants", common::tenant(t)).await;
    }
    let city_token = common::tenant_key(&api, "city").await;
    let other_token = common::tenant_key(&api, "other").await;
    let city = api.with_token(&city_token);
    let other = api.with_token(&other_token);
    for (who, device) in [(&city, "van-1"), (&other, "van-9")] {
        who.post(
            "/v1/devices",
            json!({"id": device, "tenant": if device == "van-1" { "city" } else { "other" },
                   "slot": "road", "detects": [{"label": "pothole", "class": "D40"}]}),
        )
        .await
        .ok(201);
    }
    let node = common::node_credential(&api, "ai-1").await;

    // Object storage: one node, one gateway that knows both tenants' console keys.
    let city_key = console_key(&api, "city").await;
    let other_key = console_key(&api, "other").await;
    let data = tempfile::tempdir().expect("tempdir");
    let st = lingjing_storage::start(NodeConfig {
        node_id: "st-0".into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data.path().to_owned(),
        token: TOKEN.into(),
        max_block_bytes: 1 << 20,
        scrub: lingjing_storage::scrub::ScrubSchedule::on_request(),
        reserve_bytes: 0,
    })
    .await
    .expect("storage node");
    let meta = tempfile::tempdir().expect("tempdir");
    let gw = gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        domain: "s3.lingjing.test".into(),
        meta_url: format!("sqlite://{}", meta.path().join("meta.db").display()),
        nodes: vec![NodeRef {
            id: "st-0".into(),
            site: "nj-1".into(),
            addr: st.addr(),
            weight: 1,
        }],
        redundancy: Redundancy::replicated(1),
        cluster_token: TOKEN.into(),
        block_bytes: 64 * 1024,
        gc: None,
        repair: None,
        keys: vec![city_key.clone(), other_key.clone()],
    })
    .await
    .expect("gateway");
    let gw_addr = gw.addr();
    // The gateway in the inventory, so the control plane finds it up.
    api.create(
        "nodes",
        json!({"id": "nj-1-g", "site": "nj-1", "roles": ["s3"],
               "ports": {"http": gw_addr.port(), "https": 8443, "admin": 9090}}),
    )
    .await;
    api.create(
        "pools",
        json!({"id": "nj-1-lo", "site": "nj-1", "line": "telecom", "cidr": "127.0.0.0/29"}),
    )
    .await;
    api.allocate("nj-1-lo", json!({"node": "nj-1-g", "address": "127.0.0.1"}))
        .await;
    assert_eq!(s3(gw_addr, &city_key, "PUT", "/city-evidence").await.0, 200);
    assert_eq!(s3(gw_addr, &other_key, "PUT", "/other-bucket").await.0, 200);

    // The policy: a bad bucket name is refused beside the field.
    city.put(
        "/v1/tenants/city/inspect-policy",
        json!({"evidence_bucket": "Not_A_Bucket"}),
    )
    .await
    .err_field(422, "invalid", "evidence_bucket");
    let set = city
        .put(
            "/v1/tenants/city/inspect-policy",
            json!({"evidence_bucket": "city-evidence"}),
        )
        .await
        .ok(200);
    assert_eq!(set["evidence_bucket"], "city-evidence");
    // Another tenant's bucket cannot be known here: the gateway refuses it on upload.
    other
        .put(
            "/v1/tenants/other/inspect-policy",
            json!({"evidence_bucket": "city-evidence"}),
        )
        .await
        .ok(200);

    // A frame with a pothole and its image, from each tenant's van.
    for (stream, device) in [("s-1", "van-1"), ("s-2", "van-9")] {
        let ack = node
            .post(
                "/v1/inspect/frames",
                json!({"node": "ai-1", "stream": stream, "records": [record(1, device)]}),
            )
            .await
            .ok(200);
        assert_eq!(ack["accepted"], 1, "{ack}");
    }
    let (city_defect, before, city_path) = defect_of(&city).await;
    assert_eq!(before["has_image"], true);
    let (status, _, bytes) = image(&api, &city_token, &city_path).await;
    assert_eq!((status, bytes), (200, png()));

    let refused_before = lingjing_control::evidence::counters().refused;
    lingjing_control::evidence::pass(&store, &hub)
        .await
        .expect("mover pass");

    // City's image is in its bucket, not in the database.
    let object = format!("city-evidence/inspect/{city_defect}/s-1-1.png");
    let mut conn = store.pool().acquire().await.expect("conn");
    assert_eq!(
        db::evidence_image(&mut conn, &city_defect, "s-1", 1)
            .await
            .expect("read"),
        Some(EvidenceImage::Object(object.clone()))
    );
    let (_, after, _) = defect_of(&city).await;
    assert_eq!(after["has_image"], true);
    assert_eq!(after["object"], object.as_str());
    let (status, got) = s3(gw_addr, &city_key, "GET", &format!("/{object}")).await;
    assert_eq!((status, got), (200, png()));
    // Served from there, the same bytes with the same headers.
    let (status, headers, bytes) = image(&api, &city_token, &city_path).await;
    assert_eq!((status, bytes), (200, png()));
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-security-policy"], "sandbox");
    // Another tenant still reads none of it.
    let (status, _, _) = image(&api, &other_token, &city_path).await;
    assert_eq!(status, 404);

    // The other tenant named city's bucket: refused by the gateway, its image stays.
    let (other_defect, _, other_path) = defect_of(&other).await;
    assert!(matches!(
        db::evidence_image(&mut conn, &other_defect, "s-2", 1)
            .await
            .expect("read"),
        Some(EvidenceImage::Blob(_))
    ));
    drop(conn);
    assert!(lingjing_control::evidence::counters().refused > refused_before);
    let (status, _) = s3(
        gw_addr,
        &city_key,
        "GET",
        &format!("/city-evidence/inspect/{other_defect}/s-2-1.png"),
    )
    .await;
    assert_eq!(status, 404, "nothing of another tenant in city's bucket");
    let (status, _, bytes) = image(&api, &other_token, &other_path).await;
    assert_eq!((status, bytes), (200, png()));

    // No gateway up: a clear 502.
    gw.shutdown().await;
    let (status, _, body) = image(&api, &city_token, &city_path).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let body: Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("city-evidence"),
        "{body}"
    );

    st.shutdown().await;
}
