//! The qualified `no-cache="field, ..."` and `private="field, ..."` response directives
//! (RFC 9111 §5.2.2.4, §5.2.2.7) end to end, one real edge node in front of a scripted
//! origin on loopback: the response is stored and reused without revalidation, the listed
//! fields left out of the stored copy (the client whose request fetched it still gets
//! them; one that joined that fetch does not), also when a targeted field
//! (`CDN-Cache-Control`) carries the list and when a 304 refreshes the stored response; an
//! unqualified `no-cache` still revalidates every use.

mod common;

use common::*;

/// The origin's answer for each test path. Conditional requests carrying the stored
/// `ETag` get a 304 with the same caching fields.
fn scripted_headers(path: &str) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![("content-type", "text/plain"), ("etag", "\"v1\"")];
    match path {
        "/cookie" => h.extend([
            ("cache-control", "max-age=60, no-cache=\"set-cookie\""),
            ("set-cookie", "session=abc"),
            ("x-other", "kept"),
        ]),
        "/fields" => h.extend([
            (
                "cache-control",
                "max-age=60, no-cache=\"X-Foo\", private=\" x-bar , Set-Cookie\"",
            ),
            ("set-cookie", "session=abc"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("x-other", "kept"),
        ]),
        "/targeted" => h.extend([
            ("cache-control", "no-cache"),
            ("cdn-cache-control", "max-age=60, no-cache=\"set-cookie\""),
            ("set-cookie", "session=abc"),
        ]),
        "/unqualified" => h.extend([
            ("cache-control", "max-age=60, no-cache"),
            ("set-cookie", "session=abc"),
        ]),
        "/unqualified-no-cookie" => h.extend([("cache-control", "max-age=60, no-cache")]),
        // Stale at once: the next use revalidates, and the 304 brings the field again.
        "/refreshed" => h.extend([
            ("cache-control", "max-age=0, no-cache=\"x-foo\""),
            ("x-foo", "1"),
        ]),
        // Stale at once; its 304 sets a cookie the origin lists.
        "/refreshed-cookie" => h.extend([("cache-control", "max-age=0, no-cache=\"set-cookie\"")]),
        _ => {}
    }
    h
}

async fn scripted_origin() -> TestOrigin {
    TestOrigin::start(|parts| async move {
        let path = parts.uri.path().to_owned();
        let mut headers = scripted_headers(&path);
        if req_header(&parts, "if-none-match") == "\"v1\"" {
            if path == "/refreshed" {
                headers = vec![
                    ("etag", "\"v1\""),
                    ("cache-control", "max-age=60, no-cache=\"x-foo\""),
                    ("x-foo", "2"),
                ];
            }
            if path == "/refreshed-cookie" {
                headers = vec![
                    ("etag", "\"v1\""),
                    ("cache-control", "max-age=60, no-cache=\"set-cookie\""),
                    ("set-cookie", "session=new"),
                ];
            }
            return respond(304, &headers, "");
        }
        respond(200, &headers, format!("body of {path}"))
    })
    .await
}

async fn edge_for(origin: &TestOrigin) -> (TestEdge, reqwest::Client) {
    let svc = service("svc-a", HOST, vec![common::origin(origin.addr())]);
    let edge = TestEdge::start("edge-a", &snapshot(1, vec![svc])).await;
    let client = edge.client(&[HOST]);
    (edge, client)
}

async fn get_ok(edge: &TestEdge, client: &reqwest::Client, path: &str) -> Got {
    let got = get(client, &edge.url(HOST, path)).await;
    assert_eq!(got.status, 200, "{path}");
    assert_eq!(got.text(), format!("body of {path}"), "{path}");
    got
}

#[tokio::test]
async fn a_listed_set_cookie_goes_to_the_first_client_only_and_the_rest_is_a_hit() {
    let origin = scripted_origin().await;
    let (edge, client) = edge_for(&origin).await;

    let first = get_ok(&edge, &client, "/cookie").await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.all("set-cookie"), ["session=abc"]);
    assert_eq!(first.header("x-other"), "kept");

    let second = get_ok(&edge, &client, "/cookie").await;
    assert_eq!(second.x_cache(), "HIT", "reused without revalidation");
    assert!(
        second.all("set-cookie").is_empty(),
        "the cookie is not stored"
    );
    assert_eq!(second.header("x-other"), "kept");
    assert_eq!(
        second.header("cache-control"),
        "max-age=60, no-cache=\"set-cookie\""
    );
    assert_eq!(origin.requests("/cookie"), 1);
}

#[tokio::test]
async fn listed_fields_of_no_cache_and_private_are_not_stored() {
    let origin = scripted_origin().await;
    let (edge, client) = edge_for(&origin).await;

    let first = get_ok(&edge, &client, "/fields").await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.header("x-foo"), "1");
    assert_eq!(first.header("x-bar"), "2");
    assert_eq!(first.all("set-cookie"), ["session=abc"]);

    let second = get_ok(&edge, &client, "/fields").await;
    assert_eq!(second.x_cache(), "HIT");
    assert!(second.all("x-foo").is_empty());
    assert!(second.all("x-bar").is_empty());
    assert!(second.all("set-cookie").is_empty());
    assert_eq!(second.header("x-other"), "kept");
    assert_eq!(origin.requests("/fields"), 1);
}

#[tokio::test]
async fn a_targeted_field_can_list_the_fields() {
    let origin = scripted_origin().await;
    let (edge, client) = edge_for(&origin).await;

    // `CDN-Cache-Control` decides for the edge; `Cache-Control: no-cache` is for clients.
    let first = get_ok(&edge, &client, "/targeted").await;
    assert_eq!(first.x_cache(), "MISS");
    assert_eq!(first.all("set-cookie"), ["session=abc"]);
    let second = get_ok(&edge, &client, "/targeted").await;
    assert_eq!(second.x_cache(), "HIT");
    assert!(second.all("set-cookie").is_empty());
    assert_eq!(origin.requests("/targeted"), 1);
}

#[tokio::test]
async fn a_304_does_not_bring_a_listed_field_into_the_stored_response() {
    let origin = scripted_origin().await;
    let (edge, client) = edge_for(&origin).await;

    let first = get_ok(&edge, &client, "/refreshed").await;
    assert_eq!((first.x_cache(), first.header("x-foo")), ("MISS", "1"));
    let second = get_ok(&edge, &client, "/refreshed").await;
    assert_eq!(second.x_cache(), "REVALIDATED");
    assert_eq!(origin.requests("/refreshed"), 2);
    // Fresh for 60 s after the 304, without the field the 304 carried.
    let third = get_ok(&edge, &client, "/refreshed").await;
    assert_eq!(third.x_cache(), "HIT");
    assert!(third.all("x-foo").is_empty());
    assert_eq!(origin.requests("/refreshed"), 2);
}

#[tokio::test]
async fn a_304_that_sets_a_listed_cookie_refreshes_the_stored_response_without_it() {
    let origin = scripted_origin().await;
    let (edge, client) = edge_for(&origin).await;

    assert_eq!(
        get_ok(&edge, &client, "/refreshed-cookie").await.x_cache(),
        "MISS"
    );
    // The revalidating client gets the 304's cookie ...
    let second = get_ok(&edge, &client, "/refreshed-cookie").await;
    assert_eq!(second.x_cache(), "REVALIDATED");
    assert_eq!(second.all("set-cookie"), ["session=new"]);
    // ... and the refreshed response is stored without it (the origin listed it), so the
    // next client gets a hit and no cookie.
    let third = get_ok(&edge, &client, "/refreshed-cookie").await;
    assert_eq!(third.x_cache(), "HIT");
    assert!(third.all("set-cookie").is_empty());
    assert_eq!(origin.requests("/refreshed-cookie"), 2);
}

#[tokio::test]
async fn an_unqualified_no_cache_still_revalidates_every_use() {
    let origin = scripted_origin().await;
    let (edge, client) = edge_for(&origin).await;

    assert_eq!(
        get_ok(&edge, &client, "/unqualified-no-cookie")
            .await
            .x_cache(),
        "MISS"
    );
    for n in 2..=3 {
        let got = get_ok(&edge, &client, "/unqualified-no-cookie").await;
        assert_eq!(got.x_cache(), "REVALIDATED");
        assert_eq!(origin.requests("/unqualified-no-cookie"), n);
    }

    // With a cookie and no list naming it, it is not stored at all (no cache rule).
    for n in 1..=2 {
        let got = get_ok(&edge, &client, "/unqualified").await;
        assert_eq!(got.x_cache(), "MISS");
        assert_eq!(got.all("set-cookie"), ["session=abc"]);
        assert_eq!(origin.requests("/unqualified"), n);
    }
}

#[tokio::test]
async fn a_client_that_joins_the_fetch_does_not_get_the_listed_fields() {
    use std::sync::Arc;
    use tokio::sync::Semaphore;
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = TestOrigin::start(move |_| {
        let gate = g.clone();
        async move {
            let _permit = gate.acquire().await.expect("gate");
            respond(
                200,
                &[
                    (
                        "cache-control",
                        "max-age=60, no-cache=\"x-secret\", private=\"set-cookie\"",
                    ),
                    ("x-secret", "for the first client"),
                    ("set-cookie", "session=first"),
                ],
                "shared body",
            )
        }
    })
    .await;
    let edge = TestEdge::start("edge-1", &snapshot_for("svc", origin.addr())).await;
    let url = edge.url(HOST, "/joined");
    let spawn_get = || {
        let client = edge.client(&[HOST]);
        let url = url.clone();
        tokio::spawn(async move { get(&client, &url).await })
    };
    let first = spawn_get();
    wait_until("the fetch reaches the origin", || {
        origin.requests("/joined") == 1
    })
    .await;
    let second = spawn_get();
    let e = edge.handle.edge.clone();
    wait_until("the second client joins the fetch", move || {
        e.inflight.readers() == 2
    })
    .await;
    gate.add_permits(10);
    let (first, second) = (first.await.expect("first"), second.await.expect("second"));
    assert_eq!(first.header("x-secret"), "for the first client");
    assert_eq!(first.header("set-cookie"), "session=first");
    assert!(
        second.header("cache-status").contains("collapsed"),
        "{:?}",
        second.headers
    );
    assert_eq!(second.text(), "shared body");
    assert!(second.header("x-secret").is_empty(), "{:?}", second.headers);
    assert!(
        second.header("set-cookie").is_empty(),
        "{:?}",
        second.headers
    );
    assert_eq!(origin.requests("/joined"), 1);
}
