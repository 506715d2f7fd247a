//! A storage node over HTTP on loopback, as a gateway uses it: blocks written, read,
//! checked and deleted; every refusal (no or wrong token, bytes that do not match the id,
//! a bad id, an oversize block) changes nothing; a block that rotted on disk is reported
//! corrupt, counted and never served.

use std::time::Duration;

use lingjing_storage::node::{NodeConfig, NodeHandle};
use lingjing_storage::{BlockId, StoreStatus};

const TOKEN: &str = "cluster-secret-for-tests";

async fn node(dir: &std::path::Path) -> NodeHandle {
    lingjing_storage::start(NodeConfig {
        node_id: "store-1".into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_owned(),
        token: TOKEN.into(),
        max_block_bytes: 1 << 20,
        scrub: lingjing_storage::scrub::ScrubSchedule::on_request(),
        reserve_bytes: 0,
    })
    .await
    .expect("node starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn url(node: &NodeHandle, path: &str) -> String {
    format!("http://{}{path}", node.addr())
}

async fn status(node: &NodeHandle) -> StoreStatus {
    client()
        .get(url(node, "/v1/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("status json")
}

#[tokio::test]
async fn a_block_is_written_read_and_deleted_with_the_cluster_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let c = client();
    let data = vec![7u8; 300_000];
    let id = BlockId::of(&data);
    let path = format!("/v1/blocks/{id}");

    let put = c
        .put(url(&node, &path))
        .bearer_auth(TOKEN)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let again = c
        .put(url(&node, &path))
        .bearer_auth(TOKEN)
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(again.status(), 200, "already held");

    let head = c
        .head(url(&node, &path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "300000");
    let got = c
        .get(url(&node, &path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.expect("body").as_ref(), &data[..]);
    let s = status(&node).await;
    assert_eq!((s.blocks, s.used_bytes), (1, 300_000));
    assert!(s.free_bytes > 0 && s.total_bytes >= s.free_bytes);

    let del = c
        .delete(url(&node, &path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 204);
    let gone = c
        .get(url(&node, &path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404);
    assert_eq!(status(&node).await.blocks, 0);

    let metrics = c
        .get(url(&node, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("lingjing_storage_blocks_written_total 1"),
        "{metrics}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn requests_without_the_cluster_token_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let c = client();
    let data = b"tenant bytes".to_vec();
    let path = format!("/v1/blocks/{}", BlockId::of(&data));

    let none = c
        .put(url(&node, &path))
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let wrong = c
        .put(url(&node, &path))
        .bearer_auth("cluster-secret-for-testz")
        .body(data.clone())
        .send()
        .await
        .expect("put");
    assert_eq!(wrong.status(), 401);
    let short = c
        .get(url(&node, &path))
        .bearer_auth("cluster")
        .send()
        .await
        .expect("get");
    assert_eq!(short.status(), 401);
    for path in ["/v1/status", &path] {
        assert_eq!(
            c.get(url(&node, path)).send().await.expect("get").status(),
            401,
            "{path}"
        );
    }
    assert_eq!(status(&node).await.blocks, 0);
    // Liveness and metrics need no token.
    assert_eq!(
        c.get(url(&node, "/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    node.shutdown().await;
}

#[tokio::test]
async fn bad_writes_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let c = client();

    // Bytes that do not hash to the id: 400, nothing stored.
    let id = BlockId::of(b"what the gateway meant to send");
    let res = c
        .put(url(&node, &format!("/v1/blocks/{id}")))
        .bearer_auth(TOKEN)
        .body("tampered")
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 400);
    assert!(res.text().await.expect("text").contains("hash to"));
    // Not an id (upper case, short, a path).
    for bad in ["ABCDEF", "..%2F..%2Fetc%2Fpasswd", &"a".repeat(63)] {
        let res = c
            .get(url(&node, &format!("/v1/blocks/{bad}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 400, "{bad}");
    }
    // Over the block limit: 413.
    let big = vec![1u8; (1 << 20) + 1];
    let res = c
        .put(url(&node, &format!("/v1/blocks/{}", BlockId::of(&big))))
        .bearer_auth(TOKEN)
        .body(big)
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 413);
    assert_eq!(status(&node).await.blocks, 0);
    node.shutdown().await;
}

#[tokio::test]
async fn a_block_that_rotted_on_disk_is_reported_corrupt_and_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let c = client();
    let data = vec![9u8; 65_536];
    let id = BlockId::of(&data);
    let path = format!("/v1/blocks/{id}");
    assert_eq!(
        c.put(url(&node, &path))
            .bearer_auth(TOKEN)
            .body(data.clone())
            .send()
            .await
            .expect("put")
            .status(),
        201
    );

    // Rot: one bit flipped in the block's file.
    let hex = id.to_string();
    let file = dir
        .path()
        .join("blocks")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex);
    let mut bytes = std::fs::read(&file).expect("block file");
    bytes[1000] ^= 0x10;
    std::fs::write(&file, bytes.clone()).expect("rot");

    // A gateway's unchecked read gets the bytes as they are (it hashes them itself) and
    // moves nothing; its checked read then quarantines the copy.
    let raw = c
        .get(url(&node, &format!("{path}?check=false")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(raw.status(), 200);
    assert_eq!(raw.bytes().await.expect("bytes"), bytes);
    let bad = c
        .get(url(&node, &format!("{path}?check=maybe")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status(), 400, "a malformed query is refused");

    let res = c
        .get(url(&node, &path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 500);
    assert!(res.text().await.expect("text").contains("quarantined"));
    assert_eq!(
        c.get(url(&node, &path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get")
            .status(),
        404
    );
    let s = status(&node).await;
    assert_eq!((s.blocks, s.quarantined), (0, 1));
    let metrics = c
        .get(url(&node, "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("lingjing_storage_checksum_failures_total 1"),
        "{metrics}"
    );
    // A good replica written back is served again.
    assert_eq!(
        c.put(url(&node, &path))
            .bearer_auth(TOKEN)
            .body(data.clone())
            .send()
            .await
            .expect("put")
            .status(),
        201
    );
    let got = c
        .get(url(&node, &path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body").as_ref(), &data[..]);
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_without_a_cluster_token_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = lingjing_storage::start(NodeConfig {
        node_id: "store-1".into(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_owned(),
        token: " ".into(),
        max_block_bytes: 1 << 20,
        scrub: lingjing_storage::scrub::ScrubSchedule::on_request(),
        reserve_bytes: 0,
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("cluster token"), "{err}");
}

#[tokio::test]
async fn a_scrub_pass_finds_rot_nobody_read_and_lists_page_through_every_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let c = client();
    let mut ids = Vec::new();
    for i in 0..3u8 {
        let data = vec![i; 10_000];
        let id = BlockId::of(&data);
        let put = c
            .put(url(&node, &format!("/v1/blocks/{id}")))
            .bearer_auth(TOKEN)
            .body(data)
            .send()
            .await
            .expect("put");
        assert_eq!(put.status(), 201);
        ids.push(id);
    }
    let hex = ids[1].to_string();
    let file = dir
        .path()
        .join("blocks")
        .join(&hex[0..2])
        .join(&hex[2..4])
        .join(&hex);
    let mut bytes = std::fs::read(&file).expect("block file");
    bytes[5] ^= 1;
    std::fs::write(&file, bytes).expect("rot");

    // The listing pages through all three in id order.
    let listed: serde_json::Value = c
        .get(url(&node, "/v1/blocks?limit=2"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let first: Vec<&str> = listed["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(first.len(), 2);
    let rest: serde_json::Value = c
        .get(url(
            &node,
            &format!("/v1/blocks?limit=2&after={}", first[1]),
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(rest["blocks"].as_array().expect("blocks").len(), 1);
    let bad = c
        .get(url(&node, "/v1/blocks?limit=0"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("list");
    assert_eq!(bad.status(), 400);

    let scrub = c
        .post(url(&node, "/v1/scrub"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("scrub");
    assert_eq!(scrub.status(), 202);
    // Wait for the pass to end (it has three small blocks to read).
    let state = loop {
        let s: serde_json::Value = c
            .get(url(&node, "/v1/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if s["scrub"]["passes"].as_u64() == Some(1) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(state["scrub"]["checked"], 3, "{state}");
    assert_eq!(state["scrub"]["corrupt"], 1, "{state}");
    assert_eq!(state["quarantined"], 1, "{state}");
    assert_eq!(state["blocks"], 2, "{state}");
    let gone = c
        .get(url(&node, &format!("/v1/blocks/{}", ids[1])))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(gone.status(), 404, "quarantined, never served");
}

#[tokio::test]
async fn listing_collection_and_scrub_refuse_bad_input_and_callers_without_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = node(dir.path()).await;
    let c = client();
    let data = vec![3u8; 1000];
    let id = BlockId::of(&data);
    let put = c
        .put(url(&node, &format!("/v1/blocks/{id}")))
        .bearer_auth(TOKEN)
        .body(data)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    for bad in [
        "/v1/blocks?after=../../etc/passwd",
        "/v1/blocks?after=ZZ",
        "/v1/blocks?limit=10001",
        "/v1/blocks?limit=-1",
    ] {
        let res = c
            .get(url(&node, bad))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("list");
        assert_eq!(res.status(), 400, "{bad}");
    }
    for bad in ["older_than_ms=yesterday", "older_than_ms=-5"] {
        let res = c
            .delete(url(&node, &format!("/v1/blocks/{id}?{bad}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("delete");
        assert_eq!(res.status(), 400, "{bad}");
    }
    // A cutoff in the past keeps a block just written (409), and nothing changed.
    let kept = c
        .delete(url(&node, &format!("/v1/blocks/{id}?older_than_ms=1")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(kept.status(), 409);
    for (method, path) in [
        (reqwest::Method::GET, "/v1/blocks".to_owned()),
        (reqwest::Method::POST, "/v1/scrub".to_owned()),
        (
            reqwest::Method::DELETE,
            format!("/v1/blocks/{id}?older_than_ms=99999999999999"),
        ),
    ] {
        for token in [None, Some("not-the-cluster-token")] {
            let mut req = c.request(method.clone(), url(&node, &path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let res = req.send().await.expect("request");
            assert_eq!(res.status(), 401, "{method} {path} with {token:?}");
        }
    }
    assert_eq!(status(&node).await.blocks, 1, "nothing was deleted");
}
