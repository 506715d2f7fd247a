//! Content-addressed artefacts: streamed in and kept only when the body's SHA-256 is the
//! name, never overwritten, size-limited (before a byte is read), nothing left by an
//! upload cut off or abandoned, read back whole (several chunks) by the operator
//! and nodes with immutable caching, refused to tenants; on SQLite and PostgreSQL.

mod common;

use common::{Api, Body, OPERATOR_TOKEN};
use reqwest::Method;
use sha2::{Digest, Sha256};

fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn put(api: &Api, name: &str, bytes: Vec<u8>) -> common::Resp {
    api.send(
        Method::PUT,
        &format!("/v1/artifacts/sha256/{name}"),
        Body::Raw(Some("application/octet-stream"), bytes),
    )
    .await
}

async fn artifacts(api: &Api) {
    // 2.5 MiB of varied bytes: three chunks in the database.
    let model: Vec<u8> = (0..(5u32 << 19)).map(|i| (i * 7 % 251) as u8).collect();
    let name = digest(&model);

    // A body that is not what the name says: refused, nothing kept.
    let wrong = put(api, &name, b"not the model".to_vec()).await;
    assert_eq!(wrong.status, 422, "{:?}", wrong.body);
    assert!(
        wrong.body.to_string().contains("nothing was kept"),
        "{:?}",
        wrong.body
    );
    assert_eq!(
        api.get("/v1/artifacts").await.ok(200),
        serde_json::json!([])
    );
    let missing = api
        .send(
            Method::GET,
            &format!("/v1/artifacts/sha256/{name}"),
            Body::None,
        )
        .await;
    assert_eq!(missing.status, 404);

    let kept = put(api, &name, model.clone()).await;
    assert_eq!(kept.status, 201, "{:?}", kept.body);
    assert_eq!(kept.body["size"], model.len());
    // Never overwritten: the same name again is answered from what is kept.
    let again = put(api, &name, b"something else entirely".to_vec()).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["created_at"], kept.body["created_at"]);

    // Read back whole, immutable.
    let resp = reqwest::Client::new()
        .get(format!("{}/v1/artifacts/sha256/{name}", api.base()))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(
        h["cache-control"].to_str().ok(),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        h["etag"].to_str().ok(),
        Some(format!("\"sha256:{name}\"").as_str())
    );
    assert_eq!(
        h["content-length"].to_str().ok(),
        Some(model.len().to_string().as_str())
    );
    let bytes = resp.bytes().await.expect("bytes");
    assert_eq!(digest(&bytes), name, "the same bytes");

    // A node reads it; a tenant does not, nor writes.
    let node = common::node_credential(api, "wx-1-a").await;
    let by_node = node
        .send(
            Method::GET,
            &format!("/v1/artifacts/sha256/{name}"),
            Body::None,
        )
        .await;
    assert_eq!(by_node.status, 200);
    let tenant = api.with_token(&common::tenant_key(api, "demo").await);
    let by_tenant = tenant
        .send(
            Method::GET,
            &format!("/v1/artifacts/sha256/{name}"),
            Body::None,
        )
        .await;
    assert!(
        matches!(by_tenant.status, 401 | 403),
        "{}",
        by_tenant.status
    );
    let other = b"a tenant's upload".to_vec();
    assert_eq!(put(&tenant, &digest(&other), other).await.status, 403);
    assert_eq!(
        put(&node, &digest(b"x"), b"x".to_vec()).await.status,
        403,
        "a node does not write"
    );

    // Names are digests; sizes are bounded before a byte is read.
    assert_eq!(put(api, "../../etc/passwd", vec![1]).await.status, 404);
    assert_eq!(put(api, "ABC", vec![1]).await.status, 422);
    let listed = api.get("/v1/artifacts").await.ok(200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["digest"], name.as_str());
}

/// `request` sent on a fresh connection to the plane at `base`, the connection then
/// closed for writing; the status line of the answer (empty when none came).
async fn raw(base: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    s.shutdown().await.expect("shutdown");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

async fn rows(store: &lingjing_control::Store, table: &str) -> i64 {
    let mut conn = store.pool().acquire().await.expect("conn");
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut *conn)
        .await
        .expect("count")
}

/// A declared size over the limit is refused before the body is read; an upload cut
/// off half way leaves nothing behind; an upload abandoned long ago is swept.
#[tokio::test]
async fn oversized_cut_off_and_abandoned_uploads_leave_nothing() {
    let (mut plane, api) = common::start_seeded().await;
    let store = plane.handle.as_ref().expect("running").store().clone();
    let name = digest(b"whatever");
    let head = |length: u64| {
        format!(
            "PUT /v1/artifacts/sha256/{name} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OPERATOR_TOKEN}\r\nContent-Length: {length}\r\n\r\n"
        )
    };
    let status = raw(api.base(), head(2 << 30).as_bytes()).await;
    assert!(status.contains(" 413 "), "{status}");
    // 1.5 MiB of a declared 3 MiB, then the connection closes.
    let mut cut = head(3 << 20).into_bytes();
    cut.extend(vec![7u8; 3 << 19]);
    raw(api.base(), &cut).await;
    // The server notices the end of the body when the connection closes.
    for _ in 0..100 {
        if rows(&store, "artifact_uploads").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rows(&store, "artifact_uploads").await, 0);
    assert_eq!(rows(&store, "artifact_chunks").await, 0);
    assert_eq!(rows(&store, "artifacts").await, 0);

    // An upload whose uploader vanished (a crash) is swept by age.
    let mut conn = store.pool().acquire().await.expect("conn");
    use lingjing_control::store::artifacts;
    artifacts::begin(&mut conn, "upload-old", &name, 0)
        .await
        .expect("begin");
    artifacts::put_chunk(&mut conn, "upload-old", 0, vec![1, 2, 3])
        .await
        .expect("chunk");
    artifacts::begin(&mut conn, "upload-new", &name, 2_000)
        .await
        .expect("begin");
    assert_eq!(artifacts::sweep(&mut conn, 1_000).await.expect("sweep"), 1);
    drop(conn);
    assert_eq!(rows(&store, "artifact_chunks").await, 0);
    assert_eq!(rows(&store, "artifact_uploads").await, 1);
    plane.shutdown().await;
}

#[tokio::test]
async fn artifacts_are_kept_whole_once_and_read_back_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    artifacts(&api).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn artifacts_are_kept_whole_once_and_read_back_postgres() {
    lingjing_control::testing::with_scratch_postgres("artifacts", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        artifacts(&api).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}
