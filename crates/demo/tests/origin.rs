//! End-to-end tests of the demo origin over real HTTP (reqwest against 127.0.0.1:0).

#![allow(clippy::unwrap_used)] // tests may panic on unexpected failures

use lingjing_demo::{OriginConfig, OriginHandle, large_byte, serve};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};

const LARGE: u64 = 1024 * 1024 + 123;

async fn start() -> OriginHandle {
    start_with(LARGE).await
}

async fn start_with(large_size: u64) -> OriginHandle {
    let config = OriginConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        large_size,
    };
    serve(config).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}"))
        .to_str()
        .unwrap()
}

fn generated(start: u64, end_excl: u64) -> Vec<u8> {
    (start..end_excl).map(large_byte).collect()
}

#[tokio::test]
async fn index_has_cache_headers_and_revalidates() {
    let origin = start().await;
    let res = client().get(origin.url("/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(header(&h, "cache-control"), "public, max-age=60");
    assert_eq!(header(&h, "x-origin"), "lingjing-demo");
    assert!(header(&h, "content-type").starts_with("text/html"));
    let etag = header(&h, "etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10);
    let last_modified = header(&h, "last-modified").to_owned();
    let body = res.text().await.unwrap();
    assert!(body.contains("Lingjing demo"));
    assert!(body.contains("/assets/app.css") && body.contains("/assets/logo.svg"));

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".into(),
    ] {
        let res = client()
            .get(origin.url("/"))
            .header("if-none-match", &inm)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{inm}");
        assert_eq!(header(res.headers(), "etag"), etag);
        assert_eq!(header(res.headers(), "cache-control"), "public, max-age=60");
        assert_eq!(header(res.headers(), "x-origin"), "lingjing-demo");
        assert!(res.bytes().await.unwrap().is_empty());
    }

    let res = client()
        .get(origin.url("/"))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let res = client()
        .get(origin.url("/"))
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    let res = client()
        .get(origin.url("/"))
        .header("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // If-None-Match wins over If-Modified-Since.
    let res = client()
        .get(origin.url("/"))
        .header("if-none-match", "\"other\"")
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn assets_are_immutable_and_revalidate() {
    let origin = start().await;
    for (path, content_type) in [
        ("/assets/app.css", "text/css"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/logo.svg", "image/svg+xml"),
    ] {
        let res = client().get(origin.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let h = res.headers().clone();
        assert_eq!(
            header(&h, "cache-control"),
            "public, max-age=86400, immutable"
        );
        assert!(
            header(&h, "content-type").starts_with(content_type),
            "{path}"
        );
        let etag = header(&h, "etag").to_owned();
        assert!(!res.bytes().await.unwrap().is_empty());

        let res = client()
            .get(origin.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let res = client()
        .get(origin.url("/assets/nope.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn large_whole_body_matches_generator() {
    let origin = start().await;
    let res = client().get(origin.url("/large.bin")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(header(&h, "accept-ranges"), "bytes");
    assert_eq!(header(&h, "cache-control"), "public, max-age=3600");
    assert_eq!(header(&h, "content-length"), LARGE.to_string());
    assert_eq!(header(&h, "content-type"), "application/octet-stream");
    let etag = header(&h, "etag").to_owned();
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len() as u64, LARGE);
    assert!(body[..] == generated(0, LARGE)[..]);

    let res = client()
        .get(origin.url("/large.bin"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn large_head_has_length_and_no_body() {
    let origin = start().await;
    let res = client()
        .head(origin.url("/large.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res.headers(), "content-length"), LARGE.to_string());
    assert_eq!(header(res.headers(), "accept-ranges"), "bytes");
    assert!(res.bytes().await.unwrap().is_empty());
}

async fn get_range(origin: &OriginHandle, range: &str) -> reqwest::Response {
    client()
        .get(origin.url("/large.bin"))
        .header("range", range)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn large_ranges() {
    let origin = start().await;

    let res = get_range(&origin, "bytes=100-199").await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(res.headers(), "content-range"),
        format!("bytes 100-199/{LARGE}")
    );
    assert_eq!(header(res.headers(), "content-length"), "100");
    assert_eq!(res.bytes().await.unwrap()[..], generated(100, 200)[..]);

    // Crossing a 64 KiB chunk boundary, unaligned.
    let res = get_range(&origin, "bytes=65531-131075").await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap()[..], generated(65531, 131076)[..]);

    let res = get_range(&origin, "bytes=-10").await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(res.headers(), "content-range"),
        format!("bytes {}-{}/{LARGE}", LARGE - 10, LARGE - 1)
    );
    assert_eq!(
        res.bytes().await.unwrap()[..],
        generated(LARGE - 10, LARGE)[..]
    );

    let start = LARGE - 5;
    let res = get_range(&origin, &format!("bytes={start}-")).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap()[..], generated(start, LARGE)[..]);

    // Past the end: clamped.
    let res = get_range(&origin, &format!("bytes={start}-{}", LARGE + 1000)).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap().len(), 5);

    for bad in [
        format!("bytes={LARGE}-"),
        format!("bytes={}-{}", LARGE + 1, LARGE + 9),
    ] {
        let res = get_range(&origin, &bad).await;
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(
            header(res.headers(), "content-range"),
            format!("bytes */{LARGE}")
        );
    }

    // Several ranges: the whole body, 200 (documented).
    let res = get_range(&origin, "bytes=0-1, 10-11").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().len() as u64, LARGE);

    // An invalid Range is ignored.
    let res = get_range(&origin, "bytes=9-1").await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn large_if_range() {
    let origin = start().await;
    let etag = client()
        .head(origin.url("/large.bin"))
        .send()
        .await
        .unwrap()
        .headers()
        .get("etag")
        .unwrap()
        .clone();

    let res = client()
        .get(origin.url("/large.bin"))
        .header("range", "bytes=0-9")
        .header("if-range", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);

    let res = client()
        .get(origin.url("/large.bin"))
        .header("range", "bytes=0-9")
        .header("if-range", HeaderValue::from_static("\"stale\""))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn default_size_is_64_mib_and_streams_ranges() {
    let origin = start_with(OriginConfig::default().large_size).await;
    assert_eq!(origin.large_size(), 64 * 1024 * 1024);
    let res = get_range(&origin, "bytes=-10").await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    let len = 64 * 1024 * 1024u64;
    assert_eq!(
        header(res.headers(), "content-range"),
        format!("bytes {}-{}/{len}", len - 10, len - 1)
    );
    assert_eq!(res.bytes().await.unwrap()[..], generated(len - 10, len)[..]);
}

#[tokio::test]
async fn api_is_dynamic_and_no_store() {
    let origin = start().await;
    let mut last_hits = 0;
    for _ in 0..2 {
        let res = client().get(origin.url("/api/time")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(header(res.headers(), "cache-control"), "no-store");
        assert_eq!(header(res.headers(), "content-type"), "application/json");
        let json: serde_json::Value = res.json().await.unwrap();
        assert!(json["now_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let hits = json["hits"].as_u64().unwrap();
        assert_eq!(hits, last_hits + 1);
        last_hits = hits;
    }
    let res = client()
        .post(origin.url("/api/anything/else"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res.headers(), "cache-control"), "no-store");
}

#[tokio::test]
async fn slow_answers() {
    let origin = start().await;
    let res = client()
        .get(origin.url("/slow?ms=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(res.headers(), "cache-control"), "public, max-age=30");
    assert!(res.text().await.unwrap().contains("10 ms"));

    let res = client()
        .get(origin.url("/slow?ms=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tagged_pages_carry_surrogate_keys() {
    let origin = start().await;
    let res = client()
        .get(origin.url("/tagged/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers();
    assert_eq!(header(h, "surrogate-key"), "tag-news all");
    assert_eq!(header(h, "cache-tag"), "tag-news");
    assert_eq!(header(h, "cache-control"), "public, max-age=300");
    let etag = header(h, "etag").to_owned();

    let res = client()
        .get(origin.url("/tagged/news"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    let res = client()
        .get(origin.url("/tagged/a%20b"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_path_is_404() {
    let origin = start().await;
    let res = client()
        .get(origin.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(res.headers(), "x-origin"), "lingjing-demo");
    assert_eq!(res.text().await.unwrap(), "not found\n");
}

#[tokio::test]
async fn counters_count_per_path() {
    let origin = start().await;
    assert_eq!(origin.total_requests(), 0);
    assert_eq!(origin.requests("/"), 0);
    client().get(origin.url("/")).send().await.unwrap();
    assert_eq!(origin.requests("/"), 1);
    client().get(origin.url("/")).send().await.unwrap();
    client().get(origin.url("/slow?ms=1")).send().await.unwrap();
    client().get(origin.url("/missing")).send().await.unwrap();
    assert_eq!(origin.requests("/"), 2);
    assert_eq!(origin.requests("/slow"), 1);
    assert_eq!(origin.requests("/missing"), 1);
    assert_eq!(origin.requests("/assets/app.css"), 0);
    assert_eq!(origin.total_requests(), 4);
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let origin = start().await;
    let url = origin.url("/");
    client().get(&url).send().await.unwrap();
    origin.shutdown().await.unwrap();
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).send().await.is_err());
}
