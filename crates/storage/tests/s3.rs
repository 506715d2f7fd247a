//! The S3 gateway over three real storage nodes on loopback, driven by the real AWS SDK
//! for Python (`tests/clients/boto3_basic.py`): buckets, objects across several blocks,
//! ranges, conditionals, listings, presigned URLs, multipart, tenancy and forged
//! signatures; bucket versioning (`tests/clients/boto3_versioning.py`): versions read by
//! id, delete markers, permanent deletes, ListObjectVersions, suspended buckets; canned
//! bucket ACLs, unsigned reads of public-read buckets (boto3 with `botocore.UNSIGNED` and
//! plain HTTP), object and bucket tags, and CORS configurations, preflights and response
//! headers (`tests/clients/boto3_access.py`); Content-MD5 and the flexible checksums
//! (CRC32, CRC32C, CRC64NVME, SHA1, SHA256) verified on PUT and UploadPart and returned by
//! GET/HEAD with `ChecksumMode=ENABLED`, wrong ones refused 400 BadDigest with nothing
//! stored (`tests/clients/boto3_checksums.py`); and aws-chunked uploads built by hand on
//! botocore's signer (`tests/clients/aws_chunked.py`): signed chunks, unsigned chunks with
//! a trailing checksum, signed chunks with a signed trailer; a tampered chunk or trailer, a
//! wrong trailing checksum and a lying decoded length refused; and the read-only
//! credentials of bucket origins (`tests/clients/boto3_origin_key.py`): GetObject and
//! HeadObject in their bucket only, and nothing of a bucket another tenant owns.
//!
//! boto3 must be installed (`.ci/run` installs it and sets `LINGJING_TEST_BOTO3=1`, which
//! makes its absence a failure); elsewhere the test says it was skipped.

mod common;

use common::{Cluster, TOKEN, boto3_available};
use lingjing_storage::Redundancy;
use lingjing_storage::gateway::{self, GatewayConfig, S3Key};
use lingjing_storage::meta::Meta;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_uses_the_gateway_unchanged() {
    if !boto3_available() {
        return;
    }
    let cluster =
        Cluster::start(&[("st-0", "site-0"), ("st-1", "site-1"), ("st-2", "site-2")]).await;
    let meta_dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        domain: "s3.lingjing.test".into(),
        meta_url: format!("sqlite://{}", meta_dir.path().join("meta.db").display()),
        nodes: cluster.refs.clone(),
        redundancy: Redundancy::replicated(3),
        cluster_token: TOKEN.into(),
        block_bytes: 64 * 1024,
        gc: None,
        repair: None,
        keys: vec![
            S3Key {
                access_key: "SHOPKEY".into(),
                secret: "shop-secret".into(),
                tenant: "shop".into(),
                read_only_bucket: None,
            },
            S3Key {
                access_key: "RIVALKEY".into(),
                secret: "rival-secret".into(),
                tenant: "rival".into(),
                read_only_bucket: None,
            },
            // Bucket-origin credentials (an edge's): shop's for its bucket `shop-site`,
            // and rival's naming that same bucket, which is not rival's.
            S3Key {
                access_key: "LJOSHOPSITE".into(),
                secret: "origin-secret".into(),
                tenant: "shop".into(),
                read_only_bucket: Some("shop-site".into()),
            },
            S3Key {
                access_key: "LJORIVALSITE".into(),
                secret: "rival-origin-secret".into(),
                tenant: "rival".into(),
                read_only_bucket: Some("shop-site".into()),
            },
        ],
    })
    .await
    .expect("gateway");
    let admin = gateway::metrics::serve_admin("127.0.0.1:0".parse().expect("addr"), gw.metrics())
        .await
        .expect("admin listener");
    for script in [
        "boto3_basic.py",
        "boto3_versioning.py",
        "boto3_access.py",
        "boto3_checksums.py",
        "aws_chunked.py",
        "boto3_origin_key.py",
    ] {
        common::run_client(script, &[], format!("http://{}", gw.addr())).await;
    }
    // The gateway counted what the clients did, by S3 operation and status.
    let metrics = reqwest::get(format!("http://{}/metrics", admin.addr()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    for counted in [
        r#"lingjing_s3_requests_total{op="PutObject",status="200"}"#,
        r#"lingjing_s3_requests_total{op="GetObject",status="206"}"#,
        r#"lingjing_s3_requests_total{op="CompleteMultipartUpload",status="200"}"#,
        r#"lingjing_s3_requests_total{op="GetObject",status="403"}"#,
        r#"lingjing_s3_response_head_seconds_count{op="ListObjectsV2"}"#,
    ] {
        assert!(metrics.contains(counted), "{counted} missing:\n{metrics}");
    }
    let total = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(
        total("lingjing_s3_bytes_in_total ") > 1_000_000,
        "{metrics}"
    );
    assert!(
        total("lingjing_s3_bytes_out_total ") > 1_000_000,
        "{metrics}"
    );
    admin.shutdown().await;
    gw.shutdown().await;
}

/// Unsigned requests, without any SDK (so this runs where boto3 is not installed): only
/// reads of a `public-read` bucket pass; everything else is 403 AccessDenied as S3 XML,
/// and CORS preflights are answered from the bucket's configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_requests_only_read_public_buckets() {
    let cluster = Cluster::start(&[("st-0", "site-0")]).await;
    let meta_dir = tempfile::tempdir().expect("tempdir");
    let meta_url = format!("sqlite://{}", meta_dir.path().join("meta.db").display());
    let gw = gateway::start(GatewayConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        domain: "s3.lingjing.test".into(),
        meta_url: meta_url.clone(),
        nodes: cluster.refs.clone(),
        redundancy: Redundancy::replicated(1),
        cluster_token: TOKEN.into(),
        block_bytes: 64 * 1024,
        gc: None,
        repair: None,
        keys: vec![S3Key {
            access_key: "SHOPKEY".into(),
            secret: "shop-secret".into(),
            tenant: "shop".into(),
            read_only_bucket: None,
        }],
    })
    .await
    .expect("gateway");
    // The buckets, made as the gateway would (the metadata database is shared).
    let meta = Meta::open(&meta_url).await.expect("meta");
    meta.create_bucket_with_acl("public-assets", "shop", 1, true)
        .await
        .expect("public bucket");
    meta.create_bucket("private-assets", "shop", 1)
        .await
        .expect("private bucket");
    meta.set_bucket_cors(
        "public-assets",
        Some(r#"[{"origins":["https://app.example"],"methods":["GET"],"headers":["range"],"max_age":60}]"#),
    )
    .await
    .expect("cors");
    let base = format!("http://{}", gw.addr());
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, headers: &[(&str, &str)]| {
        let mut req = http.request(method, format!("{base}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move {
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            (status, headers, res.text().await.expect("body"))
        }
    };
    use reqwest::Method;
    // Reads of the public bucket reach the handlers.
    let (status, _, body) = send(Method::GET, "/public-assets", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Name>public-assets</Name>"), "{body}");
    let (status, _, body) = send(Method::GET, "/public-assets?list-type=2", &[]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(Method::GET, "/public-assets/missing", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("<Code>NoSuchKey</Code>"), "{body}");
    let (status, _, _) = send(Method::HEAD, "/public-assets", &[]).await;
    assert_eq!(status, 200);
    let (status, _, body) = send(Method::GET, "/no-such-bucket/k", &[]).await;
    assert!(
        status == 404 && body.contains("NoSuchBucket"),
        "{status} {body}"
    );
    // Everything else is refused.
    for (method, path) in [
        (Method::GET, "/private-assets/k"),
        (Method::HEAD, "/private-assets/k"),
        (Method::GET, "/private-assets"),
        (Method::HEAD, "/private-assets"),
        (Method::GET, "/"),
        (Method::PUT, "/public-assets/k"),
        (Method::PUT, "/new-bucket"),
        (Method::DELETE, "/public-assets/k"),
        (Method::DELETE, "/public-assets"),
        (Method::POST, "/public-assets/k?uploads"),
        (Method::POST, "/public-assets?delete"),
        (Method::GET, "/public-assets/k?versionId=null"),
        (Method::GET, "/public-assets?versions"),
        (Method::GET, "/public-assets?uploads"),
        (Method::GET, "/public-assets?acl"),
        (Method::PUT, "/public-assets?acl"),
        (Method::GET, "/public-assets/k?tagging"),
        (Method::PUT, "/public-assets/k?tagging"),
        (Method::GET, "/public-assets?tagging"),
        (Method::GET, "/public-assets?cors"),
        (Method::PUT, "/public-assets?cors"),
        (Method::DELETE, "/public-assets?cors"),
        (Method::GET, "/public-assets?versioning"),
    ] {
        let (status, _, body) = send(method.clone(), path, &[]).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        if method != Method::HEAD {
            assert!(
                body.contains("<Code>AccessDenied</Code>"),
                "{method} {path}: {body}"
            );
        }
    }
    let acl = meta
        .bucket("public-assets")
        .await
        .expect("read")
        .expect("there");
    assert!(acl.public_read, "a refused PUT ?acl changed nothing");
    assert!(
        meta.bucket_cors("public-assets")
            .await
            .expect("read")
            .expect("there")
            .is_some()
    );
    // CORS: preflights, and the headers of an actual request.
    let origin = ("origin", "https://app.example");
    let (status, h, _) = send(
        Method::OPTIONS,
        "/public-assets/k",
        &[
            origin,
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "Range"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-methods"], "GET");
    assert_eq!(h["access-control-allow-headers"], "range");
    assert_eq!(h["access-control-max-age"], "60");
    for (headers, path, expected) in [
        (
            vec![origin, ("access-control-request-method", "PUT")],
            "/public-assets/k",
            403,
        ),
        (
            vec![
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            "/public-assets/k",
            403,
        ),
        (
            vec![
                origin,
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret"),
            ],
            "/public-assets/k",
            403,
        ),
        (
            vec![origin, ("access-control-request-method", "GET")],
            "/private-assets/k",
            403,
        ),
        (vec![origin], "/public-assets/k", 400),
    ] {
        let (status, h, body) = send(Method::OPTIONS, path, &headers).await;
        assert_eq!(status, expected, "{headers:?}: {body}");
        assert!(h.get("access-control-allow-origin").is_none());
        if expected == 403 {
            assert!(body.contains("<Code>AccessForbidden</Code>"), "{body}");
        }
    }
    let (status, h, _) = send(Method::GET, "/public-assets", &[origin]).await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert!(h["vary"].to_str().expect("vary").contains("Origin"));
    let (_, h, _) = send(
        Method::GET,
        "/public-assets",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(h.get("access-control-allow-origin").is_none());

    // A PUT refused before its body is read, with another request right behind it on the
    // same connection: the refusal closes the connection, so the unread body is never
    // taken for the start of a request.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(gw.addr())
        .await
        .expect("connect");
    raw.write_all(
        b"PUT /public-assets/x HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nhello\
          GET /public-assets/x HTTP/1.1\r\nHost: s\r\n\r\n",
    )
    .await
    .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        raw.read_to_end(&mut answer),
    )
    .await
    .expect("the connection is closed")
    .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 4"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert_eq!(
        answer.matches("http/1.1 ").count(),
        1,
        "one answer: {answer}"
    );
    gw.shutdown().await;
}
