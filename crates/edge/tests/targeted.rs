//! Targeted cache control (RFC 9213) and the `Age` field (RFC 9111 §5.1) end to end, one
//! real edge node (or a child and its parent) in front of a scripted origin on loopback:
//! `Lingjing-Cache-Control` and `CDN-Cache-Control` decide the edge's caching instead of
//! `Cache-Control`, in the service's configured order, and do not reach clients unless the
//! service forwards them; an `Age` list or bad value does not make a fresh response stale.

mod common;

use common::*;
use lingjing_model::Service;

/// The origin's answer for each test path: `Cache-Control` plus targeted fields.
fn scripted_headers(path: &str) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![("content-type", "text/plain")];
    match path {
        "/cdn" => h.extend([
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ]),
        "/lingjing-wins" => h.extend([
            ("cache-control", "max-age=60"),
            ("lingjing-cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ]),
        "/invalid-targeted" => h.extend([
            ("cache-control", "no-store"),
            ("lingjing-cache-control", "max-age=\"60"),
        ]),
        "/age-list" => h.extend([("cache-control", "max-age=60"), ("age", "0, old")]),
        // Only the first member counts: not 900 seconds old.
        "/age-list-old" => h.extend([("cache-control", "max-age=60"), ("age", "5, 900")]),
        "/age-bad" => h.extend([("cache-control", "max-age=60"), ("age", "old")]),
        _ => {}
    }
    h
}

async fn scripted_origin() -> TestOrigin {
    TestOrigin::start(|parts| async move {
        let path = parts.uri.path().to_owned();
        respond(200, &scripted_headers(&path), format!("body of {path}"))
    })
    .await
}

async fn edge_for(svc: Service) -> (TestEdge, reqwest::Client) {
    let edge = TestEdge::start("edge-a", &snapshot(1, vec![svc])).await;
    let client = edge.client(&[HOST]);
    (edge, client)
}

/// Two GETs of `path`: their `X-Cache` values and the second answer.
async fn twice(edge: &TestEdge, client: &reqwest::Client, path: &str) -> (String, String, Got) {
    let first = get(client, &edge.url(HOST, path)).await;
    assert_eq!(first.status, 200, "{path}");
    let second = get(client, &edge.url(HOST, path)).await;
    assert_eq!(second.status, 200, "{path}");
    assert_eq!(second.text(), format!("body of {path}"));
    (
        first.x_cache().to_owned(),
        second.x_cache().to_owned(),
        second,
    )
}

#[tokio::test]
async fn cdn_cache_control_decides_and_stays_at_the_edge() {
    let origin = scripted_origin().await;
    let (edge, client) =
        edge_for(service("svc-a", HOST, vec![common::origin(origin.addr())])).await;

    // `Cache-Control: no-store` for clients, `CDN-Cache-Control: max-age=60` for the edge.
    let (first, second, got) = twice(&edge, &client, "/cdn").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(origin.requests("/cdn"), 1);
    assert_eq!(
        got.header("cache-control"),
        "no-store",
        "passed on unchanged"
    );
    assert!(got.all("cdn-cache-control").is_empty(), "not forwarded");
    assert!(got.all("lingjing-cache-control").is_empty());

    // Lingjing-Cache-Control comes first: its no-store beats CDN-Cache-Control's max-age.
    let (first, second, got) = twice(&edge, &client, "/lingjing-wins").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "MISS"));
    assert_eq!(origin.requests("/lingjing-wins"), 2);
    assert!(got.all("lingjing-cache-control").is_empty());
    assert!(got.all("cdn-cache-control").is_empty());

    // An invalid targeted field is ignored: Cache-Control's no-store applies.
    let (first, second, _) = twice(&edge, &client, "/invalid-targeted").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "MISS"));
    assert_eq!(origin.requests("/invalid-targeted"), 2);
}

#[tokio::test]
async fn an_empty_chain_obeys_only_cache_control() {
    let origin = scripted_origin().await;
    let mut svc = service("svc-a", HOST, vec![common::origin(origin.addr())]);
    svc.targeted_cache_control = Vec::new();
    let (edge, client) = edge_for(svc).await;
    let (first, second, got) = twice(&edge, &client, "/cdn").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "MISS"));
    assert_eq!(origin.requests("/cdn"), 2);
    // Not a field this edge obeys, so not one it removes either.
    assert_eq!(got.header("cdn-cache-control"), "max-age=60");
}

#[tokio::test]
async fn a_custom_chain_and_forwarding() {
    let origin = scripted_origin().await;
    let mut svc = service("svc-a", HOST, vec![common::origin(origin.addr())]);
    // Only CDN-Cache-Control: Lingjing-Cache-Control's no-store no longer counts.
    svc.targeted_cache_control = vec!["cdn-cache-control".to_owned()];
    svc.forward_targeted_cache_control = true;
    let (edge, client) = edge_for(svc).await;
    let (first, second, got) = twice(&edge, &client, "/lingjing-wins").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(got.header("cdn-cache-control"), "max-age=60", "forwarded");
    assert_eq!(got.header("lingjing-cache-control"), "no-store");
}

#[tokio::test]
async fn an_age_list_does_not_make_a_fresh_response_stale() {
    let origin = scripted_origin().await;
    let (edge, client) =
        edge_for(service("svc-a", HOST, vec![common::origin(origin.addr())])).await;
    let (first, second, got) = twice(&edge, &client, "/age-list").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(origin.requests("/age-list"), 1);
    let age: u64 = got
        .header("age")
        .parse()
        .expect("one Age value from the edge");
    assert!(age < 60, "{age}");
}

#[tokio::test]
async fn a_child_edge_gets_the_targeted_fields_from_its_parent() {
    let origin = scripted_origin().await;
    let parent = TestEdge::start_empty("parent-1").await;
    let mut snap = snapshot_for("svc-a", origin.addr());
    two_tiers(&mut snap, 1, parent.port());
    parent.apply(&snap);
    let child = TestEdge::start("child-1", &snap).await;
    let client = child.client(&[HOST]);
    let (first, second, got) = twice(&child, &client, "/cdn").await;
    // The child cached it too: the parent passed CDN-Cache-Control on to it.
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(origin.requests("/cdn"), 1);
    assert!(got.all("cdn-cache-control").is_empty(), "not to the client");
}
