//! The edge proxy end to end, one real edge node per test in front of the demo origin or a
//! scripted origin: routing by Host (unknown hosts are never proxied), forwarding headers,
//! RFC 9111 caching (storability, `Vary`, revalidation with 304, stale-while-revalidate,
//! stale-if-error, must-revalidate), byte ranges and HEAD, conditional requests, unsafe
//! methods invalidating, tenants' cache rules, h2c, request head limits and the admin port.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use lingjing_model::Service;
use tokio::sync::Semaphore;

/// A demo origin and an edge serving it as service `svc-a` for [`HOST`].
async fn demo_edge(large_size: u64) -> (lingjing_demo::OriginHandle, TestEdge, reqwest::Client) {
    let origin = demo_origin(large_size).await;
    let snap = snapshot_for("svc-a", origin.addr());
    let edge = TestEdge::start("edge-a", &snap).await;
    let client = edge.client(&[HOST]);
    (origin, edge, client)
}

/// An edge serving `svc` (already pointing at its origins) for [`HOST`].
async fn edge_for(svc: Service) -> (TestEdge, reqwest::Client) {
    let edge = TestEdge::start("edge-a", &snapshot(1, vec![svc])).await;
    let client = edge.client(&[HOST]);
    (edge, client)
}

/// An edge in front of a scripted origin, as service `svc-a` for [`HOST`].
async fn scripted_edge(origin: &TestOrigin) -> (TestEdge, reqwest::Client) {
    edge_for(service("svc-a", HOST, vec![common::origin(origin.addr())])).await
}

// ---------------------------------------------------------------------------------------
// Routing and forwarding
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_hosts_get_404_and_are_never_proxied() {
    let (origin, edge, _) = demo_edge(1024).await;
    let client = edge.client(&["other.example", "test.example", "x.www.test.example"]);
    for host in ["other.example", "test.example", "x.www.test.example"] {
        let got = get(&client, &edge.url(host, "/")).await;
        assert_eq!(got.status, 404, "{host}");
        assert!(got.text().contains("unknown host"), "{}", got.text());
    }
    // No Host at all (HTTP/1.0 allows that).
    let answer = raw(edge.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 404);
    assert_eq!(origin.total_requests(), 0, "nothing may reach the origin");
}

#[tokio::test]
async fn host_with_port_and_upper_case_is_routed() {
    let (origin, edge, _) = demo_edge(1024).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client");
    let url = format!("http://{}/", edge.addr);
    let got = fetch(client.get(&url).header("host", "WWW.Test.Example:8080")).await;
    assert_eq!((got.status, got.x_cache()), (200, "MISS"), "{}", got.text());
    // One object whatever the spelling of the host.
    for host in [
        "www.test.example",
        "www.test.example.",
        "Www.Test.Example.:80",
    ] {
        let got = fetch(client.get(&url).header("host", host)).await;
        assert_eq!((got.status, got.x_cache()), (200, "HIT"), "{host}");
    }
    assert_eq!(origin.requests("/"), 1);
}

#[tokio::test]
async fn forwarding_headers_reach_the_origin_and_hop_by_hop_ones_do_not() {
    let origin =
        TestOrigin::start(|_| async { respond(200, &[("cache-control", "no-store")], "ok") }).await;
    let (edge, client) = scripted_edge(&origin).await;

    let got = get(&client, &edge.url(HOST, "/echo")).await;
    assert_eq!(got.status, 200);
    let seen = origin.last_headers("/echo").expect("origin reached");
    let h = |n: &str| {
        seen.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        h("via").contains("1.1 lingjing-edge-a"),
        "via: {}",
        h("via")
    );
    assert_eq!(h("x-forwarded-for"), "127.0.0.1");
    assert_eq!(h("x-forwarded-proto"), "http");
    assert_eq!(
        h("host"),
        HOST,
        "the client's host (without the port) goes to the origin"
    );
    // The response names the edge too.
    assert!(got.all("via").iter().any(|v| v.contains("lingjing-edge-a")));

    // A client's X-Forwarded-For is extended.
    get_with(
        &client,
        &edge.url(HOST, "/echo"),
        &[("x-forwarded-for", "203.0.113.9")],
    )
    .await;
    let seen = origin.last_headers("/echo").expect("origin reached");
    assert_eq!(
        seen.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        Some("203.0.113.9, 127.0.0.1")
    );

    // Hop-by-hop fields, and those named by Connection, stay on the first hop.
    let answer = raw(
        edge.addr,
        format!(
            "GET /hop HTTP/1.1\r\nHost: {HOST}\r\nConnection: close, x-secret\r\nX-Secret: 1\r\n\
             Keep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 200);
    let seen = origin.last_headers("/hop").expect("origin reached");
    assert!(seen.get("x-secret").is_none(), "{seen:?}");
    assert!(seen.get("keep-alive").is_none(), "{seen:?}");
    assert_eq!(
        seen.get("x-kept").and_then(|v| v.to_str().ok()),
        Some("yes")
    );
}

// ---------------------------------------------------------------------------------------
// Storing and serving
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_cacheable_page_is_a_miss_then_a_hit() {
    let (origin, edge, client) = demo_edge(1024).await;
    let url = edge.url(HOST, "/");
    let first = get(&client, &url).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.x_cache(), "MISS");
    let status = first.all("cache-status").join(" | ");
    assert!(
        status.contains("lingjing-edge-a; fwd=uri-miss; fwd-status=200; stored"),
        "{status}"
    );

    let second = get(&client, &url).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.x_cache(), "HIT");
    assert_eq!(second.body, first.body);
    let age: u64 = second.header("age").parse().expect("Age on a hit");
    assert!(age < 60, "age {age}");
    let status = second.all("cache-status").join(" | ");
    assert!(status.contains("lingjing-edge-a; hit; ttl="), "{status}");
    assert_eq!(second.header("etag"), first.header("etag"));
    assert_eq!(second.header("x-origin"), "lingjing-demo");
    assert_eq!(origin.requests("/"), 1, "the hit must not reach the origin");
}

#[tokio::test]
async fn responses_that_may_not_be_stored_are_fetched_each_time() {
    let origin = TestOrigin::start(|parts| async move {
        let cc = match parts.uri.path() {
            "/no-store" => "no-store, max-age=60",
            "/private" => "private, max-age=60",
            "/no-cache-no-validator" => "no-cache",
            "/zero" => "max-age=0",
            _ => "",
        };
        let mut headers = vec![("content-type", "text/plain")];
        if !cc.is_empty() {
            headers.push(("cache-control", cc));
        }
        respond(200, &headers, format!("body of {}", parts.uri.path()))
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    // "/bare": no Cache-Control, no Expires, no validator.
    for path in [
        "/no-store",
        "/private",
        "/no-cache-no-validator",
        "/zero",
        "/bare",
    ] {
        for round in 0..2 {
            let got = get(&client, &edge.url(HOST, path)).await;
            assert_eq!(got.status, 200, "{path}");
            assert_eq!(got.text(), format!("body of {path}"));
            assert_eq!(got.x_cache(), "MISS", "{path} round {round}");
            assert!(!got.header("cache-status").contains("stored"), "{path}");
        }
        assert_eq!(origin.requests(path), 2, "{path} must not be cached");
    }
}

#[tokio::test]
async fn freshness_comes_from_s_maxage_expires_or_last_modified() {
    let origin = TestOrigin::start(|parts| async move {
        let now = std::time::SystemTime::now();
        let in_an_hour = httpdate::fmt_http_date(now + Duration::from_secs(3600));
        let date = httpdate::fmt_http_date(now);
        let last_year = httpdate::fmt_http_date(now - Duration::from_secs(365 * 86_400));
        let path = parts.uri.path().to_owned();
        let headers: Vec<(&str, String)> = match path.as_str() {
            "/s-maxage" => vec![("cache-control", "max-age=0, s-maxage=60".into())],
            "/expires" => vec![("expires", in_an_hour), ("date", date)],
            "/expired" => vec![("expires", "0".into())],
            "/heuristic" => vec![("last-modified", last_year), ("date", date)],
            "/age" => vec![
                ("cache-control", "max-age=600".into()),
                ("age", "100".into()),
            ],
            "/not-found" => vec![("cache-control", "max-age=60".into())],
            _ => vec![],
        };
        let status = match path.as_str() {
            "/not-found" => 404,
            "/error" => 500,
            _ => 200,
        };
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        respond(status, &headers, format!("body of {path}"))
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    for (path, cached) in [
        ("/s-maxage", true),
        ("/expires", true),
        ("/expired", false),
        ("/heuristic", true),
        ("/age", true),
        ("/not-found", true),
        ("/error", false),
    ] {
        let first = get(&client, &edge.url(HOST, path)).await;
        assert_eq!(first.x_cache(), "MISS", "{path}");
        let second = get(&client, &edge.url(HOST, path)).await;
        assert_eq!(second.status, first.status, "{path}");
        assert_eq!(second.text(), format!("body of {path}"));
        let want = if cached { "HIT" } else { "MISS" };
        assert_eq!(second.x_cache(), want, "{path}");
        assert_eq!(origin.requests(path), if cached { 1 } else { 2 }, "{path}");
    }
    // The origin's Age counts: it was stored 100 s old already.
    let got = get(&client, &edge.url(HOST, "/age")).await;
    let age: u64 = got.header("age").parse().expect("age");
    assert!((100..600).contains(&age), "age {age}");
}

#[tokio::test]
async fn authorization_needs_an_explicit_permission_to_share() {
    let origin = TestOrigin::start(|parts| async move {
        let cc = if parts.uri.path() == "/public" {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        respond(200, &[("cache-control", cc)], "secret-ish")
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let auth = [("authorization", "Bearer abc")];
    for _ in 0..2 {
        let got = get_with(&client, &edge.url(HOST, "/plain"), &auth).await;
        assert_eq!(got.x_cache(), "MISS");
    }
    assert_eq!(origin.requests("/plain"), 2);
    let public = edge.url(HOST, "/public");
    assert_eq!(get_with(&client, &public, &auth).await.x_cache(), "MISS");
    assert_eq!(get_with(&client, &public, &auth).await.x_cache(), "HIT");
}

#[tokio::test]
async fn client_cache_control_is_honoured() {
    let (origin, edge, client) = demo_edge(1024).await;
    let url = edge.url(HOST, "/");
    let got = get_with(&client, &url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!(got.status, 504, "not cached yet");
    assert_eq!(origin.requests("/"), 0);
    assert_eq!(get(&client, &url).await.x_cache(), "MISS");
    let got = get_with(&client, &url, &[("cache-control", "only-if-cached")]).await;
    assert_eq!((got.status, got.x_cache()), (200, "HIT"));
    // A reload revalidates with the origin (which answers 304).
    let got = get_with(&client, &url, &[("cache-control", "no-cache")]).await;
    assert_eq!((got.status, got.x_cache()), (200, "REVALIDATED"));
    let got = get_with(&client, &url, &[("pragma", "no-cache")]).await;
    assert_eq!(got.x_cache(), "REVALIDATED");
    assert_eq!(origin.requests("/"), 3);
    assert_eq!(get(&client, &url).await.x_cache(), "HIT");
    // A request with no-store is answered but leaves nothing behind.
    let other = edge.url(HOST, "/assets/app.css");
    let got = get_with(&client, &other, &[("cache-control", "no-store")]).await;
    assert_eq!(got.status, 200);
    assert_eq!(get(&client, &other).await.x_cache(), "MISS");
}

#[tokio::test]
async fn vary_keeps_variants_apart_and_vary_star_is_not_stored() {
    let origin = TestOrigin::start(|parts| async move {
        let ae = req_header(&parts, "accept-encoding").to_owned();
        let vary = if parts.uri.path() == "/star" {
            "*"
        } else {
            "Accept-Encoding"
        };
        respond(
            200,
            &[("cache-control", "public, max-age=60"), ("vary", vary)],
            format!("ae={ae}"),
        )
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/page");
    let expect = [
        ("gzip", "MISS"),
        ("br", "MISS"),
        ("gzip", "HIT"),
        ("br", "HIT"),
    ];
    for (ae, x_cache) in expect {
        let got = get_with(&client, &url, &[("accept-encoding", ae)]).await;
        assert_eq!(got.text(), format!("ae={ae}"));
        assert_eq!(got.x_cache(), x_cache, "accept-encoding {ae}");
    }
    // No Accept-Encoding at all is a third variant.
    let got = get(&client, &url).await;
    assert_eq!((got.text().as_str(), got.x_cache()), ("ae=", "MISS"));
    assert_eq!(origin.requests("/page"), 3);

    let star = edge.url(HOST, "/star");
    for _ in 0..2 {
        let got = get_with(&client, &star, &[("accept-encoding", "gzip")]).await;
        assert_eq!(got.x_cache(), "MISS");
    }
    assert_eq!(origin.requests("/star"), 2, "Vary: * must not be stored");
}

// ---------------------------------------------------------------------------------------
// Revalidation and serving stale
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn revalidation_with_304_keeps_the_body_and_takes_the_new_headers() {
    let round = Arc::new(AtomicU32::new(0));
    let r = round.clone();
    let origin = TestOrigin::start(move |parts| {
        let n = r.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let meta = format!("round-{n}");
            let base = [
                ("cache-control", "no-cache"),
                ("etag", "\"v1\""),
                ("x-meta", meta.as_str()),
            ];
            if req_header(&parts, "if-none-match") == "\"v1\"" {
                respond(304, &base, "")
            } else {
                let mut h = base.to_vec();
                h.push(("content-type", "text/plain"));
                respond(200, &h, "the payload")
            }
        }
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/doc");

    let first = get(&client, &url).await;
    assert_eq!((first.status, first.x_cache()), (200, "MISS"));
    assert_eq!(first.header("x-meta"), "round-1");
    assert!(
        origin
            .last_headers("/doc")
            .expect("seen")
            .get("if-none-match")
            .is_none()
    );

    for n in 2..=3 {
        let got = get(&client, &url).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.x_cache(), "REVALIDATED");
        assert_eq!(got.text(), "the payload", "the stored body is served");
        assert_eq!(
            got.header("x-meta"),
            format!("round-{n}"),
            "headers of the 304"
        );
        assert_eq!(got.header("content-type"), "text/plain");
        assert_eq!(got.header("content-length"), "11");
        assert!(got.header("cache-status").contains("fwd-status=304"));
        let seen = origin.last_headers("/doc").expect("seen");
        assert_eq!(
            seen.get("if-none-match").and_then(|v| v.to_str().ok()),
            Some("\"v1\""),
            "revalidation carries the stored ETag"
        );
    }
    assert_eq!(origin.requests("/doc"), 3);

    // A client's own conditional is answered by the edge after revalidating.
    let got = get_with(&client, &url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(got.status, 304);
    assert!(got.body.is_empty());
}

/// A response with `status`, `Cache-Control: cache_control`, `ETag: etag` and `body`.
fn tagged(
    status: u16,
    cache_control: &str,
    etag: &str,
    body: &'static str,
) -> axum::http::Response<axum::body::Body> {
    respond(
        status,
        &[("cache-control", cache_control), ("etag", etag)],
        body,
    )
}

#[tokio::test]
async fn a_304_with_new_freshness_makes_the_stored_response_fresh_again() {
    let origin = TestOrigin::start(|parts| async move {
        if req_header(&parts, "if-none-match") == "\"v1\"" {
            tagged(304, "max-age=600", "\"v1\"", "")
        } else {
            tagged(200, "no-cache", "\"v1\"", "body v1")
        }
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/doc");
    assert_eq!(get(&client, &url).await.x_cache(), "MISS");
    assert_eq!(get(&client, &url).await.x_cache(), "REVALIDATED");
    let got = get(&client, &url).await;
    assert_eq!((got.x_cache(), got.text().as_str()), ("HIT", "body v1"));
    assert_eq!(got.header("cache-control"), "max-age=600");
    assert_eq!(origin.requests("/doc"), 2);
}

/// A 304 whose validator is not the stored one does not refer to the stored response
/// (RFC 9111 §4.3.4): the edge must fetch the representation without conditionals, not
/// answer the client's unconditional GET with the 304's empty body.
#[tokio::test]
async fn a_304_for_another_representation_is_not_served_as_the_body() {
    let plain_gets = Arc::new(AtomicU32::new(0));
    let p = plain_gets.clone();
    let origin = TestOrigin::start(move |parts| {
        let conditional = parts.headers.contains_key("if-none-match");
        let n = if conditional {
            0
        } else {
            p.fetch_add(1, Ordering::SeqCst)
        };
        async move {
            if conditional {
                // "Not modified", but it names another representation than the stored v1.
                tagged(304, "no-cache", "\"v2\"", "")
            } else if n == 0 {
                tagged(200, "no-cache", "\"v1\"", "body v1")
            } else {
                tagged(200, "no-cache", "\"v2\"", "body v2")
            }
        }
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/doc");
    assert_eq!(get(&client, &url).await.text(), "body v1");
    let got = get(&client, &url).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "body v2", "x-cache {}", got.x_cache());
}

#[tokio::test]
async fn stale_while_revalidate_serves_stale_at_once_and_refreshes_in_the_background() {
    // The refresh is held at the origin until the test lets it go: the stale answer can
    // only have been served without waiting for it.
    let gate = Arc::new(Semaphore::new(0));
    let version = Arc::new(AtomicU32::new(1));
    let (g, v) = (gate.clone(), version.clone());
    let origin = TestOrigin::start(move |parts| {
        let (gate, version) = (g.clone(), v.clone());
        async move {
            if parts.headers.contains_key("if-none-match") {
                let _permit = gate.acquire().await.expect("gate");
            }
            let n = version.load(Ordering::SeqCst);
            let etag = format!("\"v{n}\"");
            respond(
                200,
                &[
                    ("cache-control", "max-age=0, stale-while-revalidate=60"),
                    ("etag", etag.as_str()),
                ],
                format!("version {n}"),
            )
        }
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/swr");

    let first = get(&client, &url).await;
    assert_eq!(
        (first.x_cache(), first.text().as_str()),
        ("MISS", "version 1")
    );
    version.store(2, Ordering::SeqCst);

    let second = tokio::time::timeout(Duration::from_secs(20), get(&client, &url))
        .await
        .expect("the stale answer must not wait for the refresh");
    assert_eq!(second.status, 200);
    assert_eq!(second.x_cache(), "STALE");
    assert_eq!(second.text(), "version 1");
    assert!(
        second
            .header("cache-status")
            .contains("stale-while-revalidate")
    );
    // The background refresh reached the origin, with the stored validator.
    wait_until("the refresh reaches the origin", || {
        origin.requests("/swr") == 2
    })
    .await;
    let seen = origin.last_headers("/swr").expect("seen");
    assert_eq!(
        seen.get("if-none-match").and_then(|v| v.to_str().ok()),
        Some("\"v1\"")
    );
    gate.add_permits(1000);

    // Once the refresh is stored, clients get the new version (still served stale).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = get(&client, &url).await;
        assert_eq!(got.status, 200);
        if got.text() == "version 2" {
            assert_eq!(got.x_cache(), "STALE");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refresh was never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An origin whose `/page` answers `cache_control` with an ETag while `failing` is 0, and
/// 500 after.
async fn failing_origin(cache_control: &'static str, failing: Arc<AtomicU32>) -> TestOrigin {
    TestOrigin::start(move |parts| {
        let failing = failing.load(Ordering::SeqCst) != 0;
        async move {
            if failing {
                return respond(500, &[("content-type", "text/plain")], "origin broke");
            }
            if req_header(&parts, "if-none-match") == "\"v1\"" {
                return tagged(304, cache_control, "\"v1\"", "");
            }
            tagged(200, cache_control, "\"v1\"", "good copy")
        }
    })
    .await
}

#[tokio::test]
async fn stale_if_error_serves_the_stored_copy_when_the_origin_answers_500() {
    let failing = Arc::new(AtomicU32::new(0));
    let origin = failing_origin("max-age=0, stale-if-error=60", failing.clone()).await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/page");
    let first = get(&client, &url).await;
    assert_eq!((first.status, first.x_cache()), (200, "MISS"));
    // While the origin is fine, each use revalidates.
    let got = get(&client, &url).await;
    assert_eq!((got.status, got.x_cache()), (200, "REVALIDATED"));

    failing.store(1, Ordering::SeqCst);
    for round in 0..3 {
        let got = get(&client, &url).await;
        assert_eq!(got.status, 200, "round {round}: {}", got.text());
        assert_eq!(got.x_cache(), "STALE", "round {round}");
        assert_eq!(got.text(), "good copy");
        assert!(got.header("cache-status").contains("stale-if-error"));
    }
    assert_eq!(
        origin.requests("/page"),
        5,
        "every use still asks the origin"
    );
}

#[tokio::test]
async fn stale_if_error_serves_the_stored_copy_when_the_origin_is_unreachable() {
    let failing = Arc::new(AtomicU32::new(0));
    let mut origin = failing_origin("max-age=0, stale-if-error=60", failing).await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/page");
    assert_eq!(get(&client, &url).await.x_cache(), "MISS");
    origin.stop().await;
    for round in 0..2 {
        let got = get(&client, &url).await;
        assert_eq!(got.status, 200, "round {round}: {}", got.text());
        assert_eq!(got.x_cache(), "STALE");
        assert_eq!(got.text(), "good copy");
    }
}

#[tokio::test]
async fn must_revalidate_is_never_served_stale_on_error() {
    let failing = Arc::new(AtomicU32::new(0));
    let mut origin = failing_origin(
        "max-age=0, must-revalidate, stale-if-error=60",
        failing.clone(),
    )
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/page");
    assert_eq!(get(&client, &url).await.x_cache(), "MISS");
    assert_eq!(get(&client, &url).await.x_cache(), "REVALIDATED");

    failing.store(1, Ordering::SeqCst);
    let got = get(&client, &url).await;
    assert_eq!(got.status, 500, "the origin's error, not the stale copy");
    assert_ne!(got.x_cache(), "STALE");
    assert_ne!(got.text(), "good copy");

    origin.stop().await;
    let got = get(&client, &url).await;
    assert_eq!(got.status, 502);
    assert_eq!(got.x_cache(), "ERROR");
    assert_ne!(got.text(), "good copy");
}

// ---------------------------------------------------------------------------------------
// Ranges, HEAD and conditional requests
// ---------------------------------------------------------------------------------------

const LARGE: u64 = 300_000;

fn assert_range(got: &Got, start: u64, end_incl: u64) {
    assert_partial(
        got,
        start,
        end_incl,
        LARGE,
        &large_bytes(start, end_incl + 1),
    );
}

#[tokio::test]
async fn ranges_are_served_on_a_miss() {
    // A fresh edge per case, so each request is the one that fills the cache.
    let origin = demo_origin(LARGE).await;
    let snap = snapshot_for("svc-a", origin.addr());
    let cases: [(&str, Option<(u64, u64)>); 4] = [
        ("bytes=100-199", Some((100, 199))),
        ("bytes=65500-65599", Some((65_500, 65_599))),
        ("bytes=-500", Some((LARGE - 500, LARGE - 1))),
        ("bytes=299990-", Some((299_990, LARGE - 1))),
    ];
    for (range, want) in cases {
        let edge = TestEdge::start("edge-a", &snap).await;
        let client = edge.client(&[HOST]);
        let got = get_with(&client, &edge.url(HOST, "/large.bin"), &[("range", range)]).await;
        assert_eq!(got.x_cache(), "MISS", "{range}");
        let (s, e) = want.expect("range");
        assert_range(&got, s, e);
        // The whole object was stored by that partial request.
        let whole = get(&client, &edge.url(HOST, "/large.bin")).await;
        assert_eq!((whole.status, whole.x_cache()), (200, "HIT"), "{range}");
        assert!(whole.body == large_bytes(0, LARGE));
    }
    // Several ranges on a miss.
    let edge = TestEdge::start("edge-a", &snap).await;
    let client = edge.client(&[HOST]);
    let got = get_with(
        &client,
        &edge.url(HOST, "/large.bin"),
        &[("range", "bytes=0-9,70000-70009")],
    )
    .await;
    assert_eq!(got.x_cache(), "MISS");
    assert_multipart(&got, &[(0, 9), (70_000, 70_009)], LARGE);
    // Unsatisfiable on a miss.
    let edge = TestEdge::start("edge-a", &snap).await;
    let client = edge.client(&[HOST]);
    let got = get_with(
        &client,
        &edge.url(HOST, "/large.bin"),
        &[("range", "bytes=300000-")],
    )
    .await;
    assert_eq!(got.status, 416);
    assert_eq!(got.header("content-range"), format!("bytes */{LARGE}"));
    // The origin always sent the whole object: ranges are cut at the edge.
    assert_eq!(origin.requests("/large.bin"), 6);
}

#[tokio::test]
async fn ranges_are_served_on_a_hit() {
    let (origin, edge, client) = demo_edge(LARGE).await;
    let url = edge.url(HOST, "/large.bin");
    let whole = get(&client, &url).await;
    assert_eq!((whole.status, whole.x_cache()), (200, "MISS"));
    assert_eq!(whole.header("content-length"), LARGE.to_string());
    assert!(whole.body == large_bytes(0, LARGE));

    for (range, s, e) in [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=65530-65545", 65_530, 65_545),
        ("bytes=-500", LARGE - 500, LARGE - 1),
        ("bytes=-999999", 0, LARGE - 1),
        ("bytes=299990-", 299_990, LARGE - 1),
        ("bytes=299000-999999", 299_000, LARGE - 1),
    ] {
        let got = get_with(&client, &url, &[("range", range)]).await;
        assert_eq!(got.x_cache(), "HIT", "{range}");
        assert_eq!(got.header("accept-ranges"), "bytes");
        assert_range(&got, s, e);
    }
    let got = get_with(&client, &url, &[("range", "bytes=0-9,1000-1009,-5")]).await;
    assert_eq!(got.x_cache(), "HIT");
    assert_multipart(&got, &[(0, 9), (1000, 1009), (LARGE - 5, LARGE - 1)], LARGE);

    for range in ["bytes=300000-", "bytes=999999-1000000", "bytes=-0"] {
        let got = get_with(&client, &url, &[("range", range)]).await;
        assert_eq!(got.status, 416, "{range}");
        assert_eq!(got.header("content-range"), format!("bytes */{LARGE}"));
        assert!(got.body.is_empty());
    }
    // A malformed Range is ignored; an If-Range that does not match gets the whole body.
    let got = get_with(&client, &url, &[("range", "bytes=5-1")]).await;
    assert_eq!(got.status, 200);
    let got = get_with(
        &client,
        &url,
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len() as u64, LARGE);
    let etag = whole.header("etag");
    let got = get_with(&client, &url, &[("range", "bytes=0-9"), ("if-range", etag)]).await;
    assert_range(&got, 0, 9);
    assert_eq!(origin.requests("/large.bin"), 1);
}

/// Sends a raw HEAD and returns (status, content-length, bytes after the head).
async fn raw_head(edge: &TestEdge, path: &str) -> (u16, String, Vec<u8>) {
    let answer = raw(
        edge.addr,
        format!("HEAD {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    let end = find_bytes(&answer, b"\r\n\r\n").expect("a complete head");
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap_or("")
        .to_owned();
    (raw_status(&answer), length, answer[end + 4..].to_vec())
}

#[tokio::test]
async fn head_has_no_body_on_a_miss_and_on_a_hit() {
    let (origin, edge, client) = demo_edge(LARGE).await;
    let (status, length, rest) = raw_head(&edge, "/large.bin").await;
    assert_eq!((status, length.as_str()), (200, "300000"));
    assert!(
        rest.is_empty(),
        "HEAD answered with {} body bytes",
        rest.len()
    );
    // The HEAD miss filled the cache with a GET.
    let got = get(&client, &edge.url(HOST, "/large.bin")).await;
    assert_eq!(got.x_cache(), "HIT");
    let (status, length, rest) = raw_head(&edge, "/large.bin").await;
    assert_eq!((status, length.as_str()), (200, "300000"));
    assert!(
        rest.is_empty(),
        "HEAD answered with {} body bytes",
        rest.len()
    );
    assert_eq!(origin.requests("/large.bin"), 1);
}

#[tokio::test]
async fn conditional_requests_are_answered_from_the_cache() {
    let (origin, edge, client) = demo_edge(1024).await;
    let url = edge.url(HOST, "/");
    let first = get(&client, &url).await;
    let etag = first.header("etag").to_owned();
    let modified = first.header("last-modified").to_owned();
    assert!(!etag.is_empty() && !modified.is_empty());

    let got = get_with(&client, &url, &[("if-none-match", &etag)]).await;
    assert_eq!((got.status, got.x_cache()), (304, "HIT"));
    assert!(got.body.is_empty());
    assert_eq!(got.header("etag"), etag);
    let got = get_with(&client, &url, &[("if-none-match", "\"nope\", W/\"x\"")]).await;
    assert_eq!((got.status, got.x_cache()), (200, "HIT"));
    assert_eq!(got.body, first.body);
    let got = get_with(&client, &url, &[("if-modified-since", &modified)]).await;
    assert_eq!((got.status, got.x_cache()), (304, "HIT"));
    let got = get_with(
        &client,
        &url,
        &[("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        origin.requests("/"),
        1,
        "conditionals are answered by the edge"
    );
}

// ---------------------------------------------------------------------------------------
// Unsafe methods
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn unsafe_methods_pass_through_and_invalidate_the_url() {
    let origin = TestOrigin::start(|parts| async move {
        if parts.method == axum::http::Method::GET {
            respond(200, &[("cache-control", "max-age=60")], "document")
        } else if parts.uri.path() == "/fail" {
            respond(403, &[("location", "/doc?x=1")], "no")
        } else if parts.uri.path() == "/form" {
            respond(
                201,
                &[
                    ("location", "/other"),
                    ("content-location", "http://www.test.example/doc?x=1"),
                ],
                "created",
            )
        } else {
            respond(
                200,
                &[("cache-control", "no-store")],
                format!("did {}", parts.method),
            )
        }
    })
    .await;
    let (edge, client) = scripted_edge(&origin).await;
    let url = edge.url(HOST, "/doc?x=1");
    assert_eq!(get(&client, &url).await.x_cache(), "MISS");
    let mut origin_gets = 1;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        assert_eq!(get(&client, &url).await.x_cache(), "HIT");
        let got = fetch(client.request(method.clone(), &url).body("payload")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.x_cache(), "PASS", "{method}");
        assert_eq!(got.text(), format!("did {method}"));
        let next = get(&client, &url).await;
        assert_eq!(next.x_cache(), "MISS", "{method} must invalidate the URL");
        origin_gets += 1;
    }
    assert_eq!(origin.requests("/doc"), origin_gets + 3);
    // Another URL is left alone.
    let other = edge.url(HOST, "/other");
    get(&client, &other).await;
    fetch(client.post(&url)).await;
    assert_eq!(get(&client, &other).await.x_cache(), "HIT");
    // An unsafe request that failed invalidates nothing.
    assert_eq!(get(&client, &url).await.x_cache(), "MISS");
    let got = fetch(client.patch(edge.url(HOST, "/fail"))).await;
    assert_eq!(got.status, 403);
    assert_eq!(get(&client, &url).await.x_cache(), "HIT");
    // A success names other URLs of the same host in Location / Content-Location.
    let got = fetch(client.post(edge.url(HOST, "/form"))).await;
    assert_eq!((got.status, got.x_cache()), (201, "PASS"));
    assert_eq!(
        get(&client, &other).await.x_cache(),
        "MISS",
        "Location: /other"
    );
    assert_eq!(
        get(&client, &url).await.x_cache(),
        "MISS",
        "Content-Location"
    );
}

// ---------------------------------------------------------------------------------------
// Cache rules
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cache_rules_bypass_set_a_ttl_and_shape_the_key() {
    let origin = TestOrigin::start(|parts| async move {
        let body = format!("{}?{}", parts.uri.path(), parts.uri.query().unwrap_or(""));
        if parts.uri.path().starts_with("/ttl/") {
            // No Cache-Control, no validator: only the rule makes it cacheable.
            respond(200, &[], body)
        } else {
            respond(200, &[("cache-control", "max-age=60")], body)
        }
    })
    .await;
    let mut svc = service("svc-a", HOST, vec![common::origin(origin.addr())]);
    svc.cache_rules = vec![
        lingjing_model::CacheRule {
            bypass: true,
            ..rule("/bypass/*")
        },
        lingjing_model::CacheRule {
            ttl_secs: Some(60),
            ..rule("/ttl/*")
        },
        lingjing_model::CacheRule {
            ignore_query: true,
            ..rule("/iq/*")
        },
        lingjing_model::CacheRule {
            sort_query: true,
            ..rule("/sq/*")
        },
    ];
    let (edge, client) = edge_for(svc).await;
    let x = |path: &'static str| {
        let (client, url) = (client.clone(), edge.url(HOST, path));
        async move { get(&client, &url).await }
    };

    for _ in 0..3 {
        let got = x("/bypass/a").await;
        assert_eq!((got.status, got.x_cache()), (200, "PASS"));
        assert!(got.header("cache-status").contains("fwd=bypass"));
    }
    assert_eq!(origin.requests("/bypass/a"), 3);

    assert_eq!(x("/ttl/a").await.x_cache(), "MISS");
    let got = x("/ttl/a").await;
    assert_eq!(got.x_cache(), "HIT");
    assert_eq!(origin.requests("/ttl/a"), 1);

    assert_eq!(x("/iq/a?a=1").await.x_cache(), "MISS");
    let got = x("/iq/a?a=2").await;
    assert_eq!(got.x_cache(), "HIT", "ignore_query: one object");
    assert_eq!(got.text(), "/iq/a?a=1");
    assert_eq!(origin.requests("/iq/a"), 1);

    assert_eq!(x("/sq/a?a=1&b=2").await.x_cache(), "MISS");
    assert_eq!(
        x("/sq/a?b=2&a=1").await.x_cache(),
        "HIT",
        "sort_query: one object"
    );
    assert_eq!(x("/sq/a?b=3&a=1").await.x_cache(), "MISS");
    assert_eq!(origin.requests("/sq/a"), 2);

    // Without a rule the query is part of the key, as written.
    assert_eq!(x("/plain?a=1&b=2").await.x_cache(), "MISS");
    assert_eq!(x("/plain?b=2&a=1").await.x_cache(), "MISS");
    assert_eq!(x("/plain?a=1&b=2").await.x_cache(), "HIT");
    assert_eq!(origin.requests("/plain"), 2);
}

// ---------------------------------------------------------------------------------------
// Protocols and limits
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn h2c_with_prior_knowledge_is_routed_by_authority() {
    let (origin, edge, _) = demo_edge(1024).await;
    let client = edge
        .client_builder(&[HOST, "other.example"])
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let url = edge.url(HOST, "/");
    let first = get(&client, &url).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.x_cache(), "MISS");
    let res = client.get(&url).send().await.expect("h2 request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        res.headers().get("x-cache").and_then(|v| v.to_str().ok()),
        Some("HIT")
    );
    let got = get(&client, &edge.url("other.example", "/")).await;
    assert_eq!(got.status, 404);
    // Many streams at once on the one connection.
    let many = futures::future::join_all((0..50).map(|_| get(&client, &url))).await;
    assert!(many.iter().all(|g| g.status == 200 && g.body == first.body));
    assert_eq!(origin.requests("/"), 1);
}

#[tokio::test]
async fn oversized_request_heads_are_refused_and_the_server_stays_up() {
    let (origin, edge, client) = demo_edge(1024).await;
    let big = "a".repeat(100 * 1024);
    let answer = raw(
        edge.addr,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 431);
    let many = (0..2000)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(50)))
        .collect::<String>();
    let answer = raw(
        edge.addr,
        format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 431, "100 KiB of small headers");
    let answer = raw(
        edge.addr,
        format!("GET /{big} HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes(),
    )
    .await;
    let status = raw_status(&answer);
    assert!((400..500).contains(&status), "long URI: {status}");
    // Garbage is a 400, not a crash.
    let answer = raw(
        edge.addr,
        b"THIS IS NOT HTTP AT ALL, REALLY IT IS NOT\r\n\r\n",
    )
    .await;
    if !answer.is_empty() {
        assert_eq!(raw_status(&answer), 400);
    }
    assert_eq!(origin.total_requests(), 0);
    let got = get(&client, &edge.url(HOST, "/")).await;
    assert_eq!(got.status, 200, "the edge still serves");
}

// ---------------------------------------------------------------------------------------
// Admin port
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn healthz_and_metrics_on_the_admin_port() {
    let origin = demo_origin(1024).await;
    let edge = TestEdge::start_empty("edge-a").await;
    let admin = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client");
    let health = get(&admin, &edge.admin_url("/healthz")).await;
    assert_eq!(health.status, 503, "no snapshot yet");

    edge.apply(&snapshot(
        7,
        vec![service("svc-a", HOST, vec![common::origin(origin.addr())])],
    ));
    let health = get(&admin, &edge.admin_url("/healthz")).await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok 7\n"));

    let client = edge.client(&[HOST]);
    assert_eq!(get(&client, &edge.url(HOST, "/")).await.x_cache(), "MISS");
    assert_eq!(get(&client, &edge.url(HOST, "/")).await.x_cache(), "HIT");
    assert_eq!(get(&client, &edge.url(HOST, "/")).await.x_cache(), "HIT");

    let metrics = get(&admin, &edge.admin_url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    let line = |cache: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("lingjing_edge_requests_total{")
                    && l.contains("service=\"svc-a\"")
                    && l.contains(&format!("cache=\"{cache}\""))
            })
            .unwrap_or_else(|| panic!("no {cache} line in:\n{text}"))
            .to_owned()
    };
    assert!(line("HIT").ends_with(" 2"), "{}", line("HIT"));
    assert!(line("MISS").ends_with(" 1"), "{}", line("MISS"));
    assert!(text.contains("lingjing_edge_snapshot_version 7"), "{text}");
    assert!(text.contains("lingjing_edge_cache_objects 1"), "{text}");
    edge.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_listeners() {
    let (_origin, edge, client) = demo_edge(1024).await;
    assert_eq!(get(&client, &edge.url(HOST, "/")).await.status, 200);
    let addr = edge.addr;
    edge.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting"
    );
}
