//! Buckets and objects in the console, against a real S3 gateway and storage node: a
//! tenant creates a bucket (a bad name refused beside the field), uploads into a folder,
//! lists, downloads (always as an attachment) and deletes; another tenant reaches none
//! of it by URL; the operator has no buckets page; an upload without the session's token
//! writes nothing.

mod common;

use common::Browser;
use lingjing_storage::Redundancy;
use lingjing_storage::gateway::{self, GatewayConfig, S3Key};
use lingjing_storage::node::NodeConfig;
use lingjing_storage::placement::NodeRef;
use reqwest::{Method, StatusCode};
use serde_json::json;

const TOKEN: &str = "console-bucket-test-token";

/// The tenant's console key, as the gateway takes it.
async fn console_key(url: &str, tenant: &str) -> S3Key {
    let k = common::operator(
        url,
        Method::POST,
        &format!("/v1/tenants/{tenant}/s3-keys/console"),
        None,
    )
    .await;
    S3Key {
        access_key: k["access_key"].as_str().expect("key").to_owned(),
        secret: k["secret"].as_str().expect("secret").to_owned(),
        tenant: tenant.to_owned(),
        read_only_bucket: None,
    }
}

async fn upload(
    b: &Browser,
    bucket: &str,
    csrf: &str,
    prefix: &str,
    name: &str,
    body: &'static [u8],
) -> common::Page {
    let form = reqwest::multipart::Form::new()
        .text("csrf", csrf.to_owned())
        .text("prefix", prefix.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(body)
                .file_name(name.to_owned())
                .mime_str("text/html")
                .expect("mime"),
        );
    let resp = b
        .http
        .post(format!("{}/buckets/{bucket}/upload", b.base))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    common::Page {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.expect("body"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_uploads_lists_downloads_and_deletes_its_own_objects() {
    let plane = common::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let node = lingjing_storage::start(NodeConfig {
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
            addr: node.addr(),
            weight: 1,
        }],
        redundancy: Redundancy::replicated(1),
        cluster_token: TOKEN.into(),
        block_bytes: 64 * 1024,
        gc: None,
        repair: None,
        keys: vec![
            console_key(&plane.url, "alpha").await,
            console_key(&plane.url, "beta").await,
        ],
    })
    .await
    .expect("gateway");
    // The gateway in the inventory, so the API names it.
    for (kind, body) in [
        (
            "nodes",
            json!({"id": "nj-1-g", "site": "nj-1", "roles": ["s3"],
                   "ports": {"http": gw.addr().port(), "https": 8443, "admin": 9090}}),
        ),
        (
            "pools",
            json!({"id": "nj-1-lo", "site": "nj-1", "line": "telecom", "cidr": "127.0.0.0/29"}),
        ),
        (
            "pools/nj-1-lo/allocations",
            json!({"node": "nj-1-g", "address": "127.0.0.1"}),
        ),
    ] {
        common::operator(&plane.url, Method::POST, &format!("/v1/{kind}"), Some(body)).await;
    }

    let alpha = Browser::new(&plane.url);
    let page = alpha.sign_in(&plane.alpha_key).await;
    let csrf = page.csrf();
    let buckets = alpha.get("/buckets").await;
    assert_eq!(buckets.status, StatusCode::OK, "{}", buckets.body);
    assert!(buckets.body.contains("No buckets yet"), "{}", buckets.body);

    let bad = alpha
        .post(
            "/buckets",
            &[("csrf", &csrf), ("name", "Not_A_Bucket")],
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"name-error\""), "{}", bad.body);
    let made = alpha
        .post(
            "/buckets",
            &[("csrf", &csrf), ("name", "alpha-photos")],
            None,
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    assert_eq!(made.location(), "/buckets/alpha-photos");
    assert!(alpha.get("/buckets").await.body.contains("alpha-photos"));
    let empty = alpha.get("/buckets/alpha-photos").await;
    assert!(
        empty.body.contains("This bucket is empty"),
        "{}",
        empty.body
    );

    // No token: nothing is written.
    let forged = upload(&alpha, "alpha-photos", "0000", "2026/", "x.html", b"no").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let put = upload(
        &alpha,
        "alpha-photos",
        &csrf,
        "2026/",
        "a b.html",
        b"<script>alert(1)</script>",
    )
    .await;
    assert_eq!(put.status, StatusCode::SEE_OTHER, "{}", put.body);
    let top = alpha.get("/buckets/alpha-photos").await;
    assert!(
        top.body.contains("prefix=2026/\">2026/</a>"),
        "a folder: {}",
        top.body
    );
    assert!(!top.body.contains("x.html"));
    let folder = alpha.get("/buckets/alpha-photos?prefix=2026%2F").await;
    assert!(folder.body.contains("a b.html"), "{}", folder.body);

    // A download is a download, never a page of the console.
    let got = alpha
        .get("/buckets/alpha-photos/download?key=2026%2Fa%20b.html")
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, "<script>alert(1)</script>");
    let h = |name: &str| {
        got.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        h("content-disposition").starts_with("attachment;"),
        "{:?}",
        got.headers
    );
    assert_eq!(h("content-type"), "application/octet-stream");
    assert!(h("content-security-policy").contains("sandbox"));

    // Beta reaches none of it, by URL or form.
    let beta = Browser::new(&plane.url);
    let beta_csrf = beta.sign_in(&plane.beta_key).await.csrf();
    let theirs = beta.get("/buckets").await;
    assert!(!theirs.body.contains("alpha-photos"), "{}", theirs.body);
    for path in [
        "/buckets/alpha-photos",
        "/buckets/alpha-photos/download?key=2026%2Fa%20b.html",
    ] {
        let r = beta.get(path).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
        assert!(!r.body.contains("alert(1)"));
    }
    let tried = beta
        .post(
            "/buckets/alpha-photos/delete",
            &[("csrf", &beta_csrf), ("key", "2026/a b.html")],
            None,
        )
        .await;
    assert_eq!(tried.status, StatusCode::FORBIDDEN);
    let overwrite = upload(&beta, "alpha-photos", &beta_csrf, "2026/", "a b.html", b"x").await;
    assert_eq!(overwrite.status, StatusCode::FORBIDDEN);
    assert_eq!(
        alpha
            .get("/buckets/alpha-photos/download?key=2026%2Fa%20b.html")
            .await
            .body,
        "<script>alert(1)</script>",
        "still alpha's"
    );

    // The operator has no buckets page.
    let operator = Browser::new(&plane.url);
    operator.sign_in(common::OPERATOR_TOKEN).await;
    assert_eq!(operator.get("/buckets").await.status, StatusCode::FORBIDDEN);

    let gone = alpha
        .post(
            "/buckets/alpha-photos/delete",
            &[
                ("csrf", &csrf),
                ("key", "2026/a b.html"),
                ("prefix", "2026/"),
            ],
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
    let after = alpha.get("/buckets/alpha-photos?prefix=2026%2F").await;
    assert!(!after.body.contains("a b.html"), "{}", after.body);
    gw.shutdown().await;
    plane.handle.shutdown().await.expect("shutdown");
}
