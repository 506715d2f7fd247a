//! Large objects in slices, end to end: a range request for a cold object fetches only the
//! slice-aligned ranges it needs (exact `Range` headers checked on a scripted origin), the
//! slices are reused by later requests, multi-range and 416 work on sliced objects, a
//! client that goes away (or an upstream cut short) never leaves a partial slice, a
//! validator change between slices never produces a spliced body, purges reach slices, and
//! a whole GET of an object too large to store whole is stored as slices.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use lingjing_model::{Purge, PurgeKind, PurgeMode};
use tokio::sync::Semaphore;

const SLICE: u64 = 64 * 1024;
const MEMORY: u64 = 256 * 1024 * 1024;

/// A slice key's marker (see `lingjing_edge::slice`).
const MARK: char = lingjing_edge::slice::SLICE_SEPARATOR;

/// The bytes `start..end` of version `v` of the scripted object (version 0 is the demo
/// origin's `/large.bin`).
fn content(v: u32, start: u64, end: u64) -> Vec<u8> {
    large_bytes(start, end)
        .into_iter()
        .map(|b| b ^ (v as u8))
        .collect()
}

/// A scripted origin for `/obj` of `size` bytes: single ranges (206/416), ETag `"v<n>"`
/// of the current version, every `Range` header it receives logged, and one-shot gates
/// that hold a range's answer after its first 1000 bytes (then fail it or finish it).
struct Script {
    size: u64,
    version: AtomicU32,
    ranges: Mutex<Vec<String>>,
    gates: Mutex<HashMap<String, (Arc<Semaphore>, bool)>>,
}

impl Script {
    fn ranges(&self) -> Vec<String> {
        self.ranges.lock().expect("lock").clone()
    }

    /// Holds the answer to `range` after 1000 bytes until the returned semaphore gets a
    /// permit; then the body fails (`fail`) or completes.
    fn gate(&self, range: &str, fail: bool) -> Arc<Semaphore> {
        let sem = Arc::new(Semaphore::new(0));
        self.gates
            .lock()
            .expect("lock")
            .insert(range.to_owned(), (sem.clone(), fail));
        sem
    }
}

async fn scripted(size: u64) -> (Arc<Script>, TestOrigin) {
    let script = Arc::new(Script {
        size,
        version: AtomicU32::new(0),
        ranges: Mutex::new(Vec::new()),
        gates: Mutex::new(HashMap::new()),
    });
    let s = script.clone();
    let origin = TestOrigin::start(move |parts| {
        let s = s.clone();
        async move {
            let range = req_header(&parts, "range").to_owned();
            s.ranges.lock().expect("lock").push(range.clone());
            let v = s.version.load(Ordering::SeqCst);
            let etag = format!("\"v{v}\"");
            let common = [
                ("etag", etag.as_str()),
                ("cache-control", "public, max-age=3600"),
                ("content-type", "application/octet-stream"),
            ];
            let span = range.strip_prefix("bytes=").and_then(|r| {
                let (a, b) = r.split_once('-')?;
                Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            });
            let Some((a, b)) = span else {
                return respond(200, &common, content(v, 0, s.size));
            };
            if a >= s.size {
                let cr = format!("bytes */{}", s.size);
                return respond(416, &[("content-range", cr.as_str())], Body::empty());
            }
            let b = b.min(s.size - 1);
            let data = content(v, a, b + 1);
            let cr = format!("bytes {a}-{b}/{}", s.size);
            let len = data.len().to_string();
            let mut headers = common.to_vec();
            headers.push(("content-range", cr.as_str()));
            headers.push(("content-length", len.as_str()));
            let gate = s.gates.lock().expect("lock").remove(&range);
            let body = match gate {
                None => Body::from(data),
                Some((sem, fail)) => {
                    let rest = Bytes::copy_from_slice(&data[1000..]);
                    let first = Bytes::copy_from_slice(&data[..1000]);
                    let tail = futures::stream::once(async move {
                        let _ = sem.acquire().await;
                        if fail {
                            Err(std::io::Error::other("origin cut the body"))
                        } else {
                            Ok(rest)
                        }
                    });
                    Body::from_stream(
                        futures::stream::iter([Ok::<Bytes, std::io::Error>(first)]).chain(tail),
                    )
                }
            };
            respond(206, &headers, body)
        }
    })
    .await;
    (script, origin)
}

async fn sliced_edge(origin: std::net::SocketAddr, slice: u64) -> (TestEdge, reqwest::Client) {
    let snap = snapshot_for("svc-a", origin);
    let edge = TestEdge::start_sliced("edge-a", &snap, slice, MEMORY).await;
    let client = edge.client(&[HOST]);
    (edge, client)
}

fn assert_range(got: &Got, v: u32, start: u64, end_incl: u64, total: u64) {
    assert_partial(
        got,
        start,
        end_incl,
        total,
        &content(v, start, end_incl + 1),
    );
}

fn assert_range_demo(got: &Got, start: u64, end_incl: u64) {
    assert_range(got, 0, start, end_incl, 1_000_000);
}

/// The slices the edge has stored: (key, status, headers, body).
fn stored_slices(edge: &TestEdge) -> Vec<(String, http::HeaderMap, Bytes)> {
    let store = &edge.handle.edge.store;
    let mut out = Vec::new();
    for k in store.keys() {
        if !k.contains(MARK) {
            continue;
        }
        if let Some(e) = store.get(&k) {
            for v in &e.variants {
                assert_eq!(v.status.as_u16(), 206, "{k}");
                out.push((k.to_string(), v.headers.clone(), v.body.clone()));
            }
        }
    }
    out
}

/// Every stored slice is complete and holds exactly the bytes of its version.
fn assert_slices_complete(edge: &TestEdge) -> usize {
    let slices = stored_slices(edge);
    for (k, h, body) in &slices {
        let cr = h
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .expect("slice content-range");
        let (span, _) = cr
            .strip_prefix("bytes ")
            .and_then(|r| r.split_once('/'))
            .expect("range");
        let (a, b) = span.split_once('-').expect("span");
        let (a, b): (u64, u64) = (a.parse().expect("a"), b.parse().expect("b"));
        assert_eq!(body.len() as u64, b - a + 1, "{k}: complete");
        assert_eq!(a % SLICE, 0, "{k}: aligned");
        let etag = h.get("etag").and_then(|v| v.to_str().ok()).unwrap_or("");
        let v: u32 = etag
            .trim_matches('"')
            .strip_prefix('v')
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(
            body.as_ref() == content(v, a, b + 1).as_slice(),
            "{k}: bytes"
        );
    }
    slices.len()
}

async fn idle(edge: &TestEdge) {
    let e = edge.handle.edge.clone();
    wait_until("no fill in flight", move || e.inflight.is_empty()).await;
}

#[tokio::test]
async fn a_cold_range_fetches_only_its_slices_and_reuses_them() {
    let origin = demo_origin(1_000_000).await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/large.bin");
    // Slices 1, 2 and 3 (65536..=262143).
    let got = get_with(&client, &url, &[("range", "bytes=100000-200000")]).await;
    assert_eq!(got.x_cache(), "MISS");
    assert_range(&got, 0, 100_000, 200_000, 1_000_000);
    assert_eq!(got.header("etag"), "\"large-1000000-g1\"");
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert_eq!(got.header("cache-control"), "public, max-age=3600");
    assert_eq!(origin.requests("/large.bin"), 3);
    // Overlapping, within cached slices: a hit, no upstream request.
    let got = get_with(&client, &url, &[("range", "bytes=150000-250000")]).await;
    assert_eq!(got.x_cache(), "HIT");
    assert!(got.header("age").parse::<u64>().is_ok());
    assert_range(&got, 0, 150_000, 250_000, 1_000_000);
    assert_eq!(origin.requests("/large.bin"), 3);
    // Reaching into slice 4: only that one is fetched.
    let got = get_with(&client, &url, &[("range", "bytes=200000-270000")]).await;
    assert_eq!(got.x_cache(), "MISS");
    assert_range(&got, 0, 200_000, 270_000, 1_000_000);
    assert_eq!(origin.requests("/large.bin"), 4);
    idle(&edge).await;
    assert_eq!(assert_slices_complete(&edge), 4);
}

#[tokio::test]
async fn the_origin_gets_exactly_the_slice_aligned_ranges() {
    let (script, origin) = scripted(300_000).await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/obj");
    let got = get_with(&client, &url, &[("range", "bytes=70000-140000")]).await;
    assert_range(&got, 0, 70_000, 140_000, 300_000);
    assert_eq!(
        script.ranges(),
        ["bytes=65536-131071", "bytes=131072-196607"]
    );
    // A suffix range: slice 0 tells the length, then the last slice.
    let got = get_with(&client, &url, &[("range", "bytes=-1000")]).await;
    assert_range(&got, 0, 299_000, 299_999, 300_000);
    assert_eq!(
        script.ranges()[2..],
        ["bytes=0-65535", "bytes=262144-327679"]
    );
    // Everything needed is cached now.
    let got = get_with(&client, &url, &[("range", "bytes=0-140000")]).await;
    assert_eq!(got.x_cache(), "HIT");
    assert_range(&got, 0, 0, 140_000, 300_000);
    assert_eq!(script.ranges().len(), 4);
    idle(&edge).await;
    assert_eq!(assert_slices_complete(&edge), 4);
}

#[tokio::test]
async fn multiple_ranges_and_416_on_a_sliced_object() {
    let origin = demo_origin(1_000_000).await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/large.bin");
    let got = get_with(
        &client,
        &url,
        &[("range", "bytes=0-9,500000-500009,-5,65530-65545")],
    )
    .await;
    assert_eq!(got.x_cache(), "MISS");
    assert_multipart(
        &got,
        &[
            (0, 9),
            (500_000, 500_009),
            (999_995, 999_999),
            (65_530, 65_545),
        ],
        1_000_000,
    );
    // Slices 0, 7, 15 and 1.
    assert_eq!(origin.requests("/large.bin"), 4);
    let got = get_with(&client, &url, &[("range", "bytes=0-9,65530-65545")]).await;
    assert_eq!(got.x_cache(), "HIT");
    assert_multipart(&got, &[(0, 9), (65_530, 65_545)], 1_000_000);
    // Past the end, inside the last slice (known length) and beyond it (the origin's 416).
    for range in ["bytes=1000000-", "bytes=2000000-2000010"] {
        let got = get_with(&client, &url, &[("range", range)]).await;
        assert_eq!(got.status, 416, "{range}");
        assert_eq!(got.header("content-range"), "bytes */1000000", "{range}");
    }
    // The first range past the end, another one within: 206 for that one.
    let got = get_with(&client, &url, &[("range", "bytes=3000000-,5-9")]).await;
    assert_range_demo(&got, 5, 9);
    // A conditional request that matches: 304.
    let got = get_with(
        &client,
        &url,
        &[
            ("range", "bytes=0-9"),
            ("if-none-match", "\"large-1000000-g1\""),
        ],
    )
    .await;
    assert_eq!(got.status, 304);
    // If-Range that does not match: the whole object, streamed from slices.
    let got = get_with(
        &client,
        &url,
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), "1000000");
    assert!(got.body == large_bytes(0, 1_000_000));
    idle(&edge).await;
    assert_eq!(assert_slices_complete(&edge), 16);
}

#[tokio::test]
async fn a_client_going_away_or_a_cut_upstream_leaves_no_partial_slice() {
    let (script, origin) = scripted(300_000).await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/obj");
    // Slice 1's answer stops after 1000 bytes, then fails; the client leaves meanwhile.
    let gate = script.gate("bytes=65536-131071", true);
    let mut res = client
        .get(&url)
        .header("range", "bytes=0-131071")
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 206);
    let mut got = 0usize;
    while got < 65_536 + 1000 {
        let chunk = res.chunk().await.expect("chunk").expect("more body");
        got += chunk.len();
    }
    drop(res);
    gate.add_permits(1);
    idle(&edge).await;
    // Slice 0 is stored whole; slice 1 is not stored at all.
    assert_eq!(assert_slices_complete(&edge), 1);
    let got = get_with(&client, &url, &[("range", "bytes=0-131071")]).await;
    assert_range(&got, 0, 0, 131_071, 300_000);
    assert_eq!(
        script.ranges(),
        ["bytes=0-65535", "bytes=65536-131071", "bytes=65536-131071"]
    );
    // Slice 2's answer is held; the client leaves; the fill finishes and stores it whole.
    let gate = script.gate("bytes=131072-196607", false);
    let mut res = client
        .get(&url)
        .header("range", "bytes=131072-196607")
        .send()
        .await
        .expect("answered");
    let chunk = res.chunk().await.expect("chunk").expect("some body");
    assert!(!chunk.is_empty());
    drop(res);
    gate.add_permits(1);
    idle(&edge).await;
    assert_eq!(assert_slices_complete(&edge), 3);
    let got = get_with(&client, &url, &[("range", "bytes=131072-196607")]).await;
    assert_eq!(got.x_cache(), "HIT");
    assert_range(&got, 0, 131_072, 196_607, 300_000);
    assert_eq!(script.ranges().len(), 4);
}

#[tokio::test]
async fn a_validator_change_between_slices_is_never_spliced() {
    let (script, origin) = scripted(300_000).await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/obj");
    let got = get_with(&client, &url, &[("range", "bytes=0-100")]).await;
    assert_range(&got, 0, 0, 100, 300_000);
    // The object changes: slice 0 (cached) is v0, slice 1 would be v1.
    script.version.store(1, Ordering::SeqCst);
    let res = client
        .get(&url)
        .header("range", "bytes=0-131071")
        .send()
        .await
        .expect("answered");
    let body = res.bytes().await;
    // The answer is cut off, never completed with bytes of the other version.
    let Err(_) = body else {
        panic!("a spliced body was served whole");
    };
    idle(&edge).await;
    // The old version's slices are gone.
    for (k, h, _) in stored_slices(&edge) {
        assert_eq!(h.get("etag").expect("etag"), "\"v1\"", "{k}");
    }
    assert_slices_complete(&edge);
    // The next request gets the new version, consistently.
    let got = get_with(&client, &url, &[("range", "bytes=0-131071")]).await;
    assert_range(&got, 1, 0, 131_071, 300_000);
    assert_eq!(got.header("etag"), "\"v1\"");
}

#[tokio::test]
async fn url_and_prefix_purges_remove_slices() {
    let origin = demo_origin(1_000_000).await;
    let svc = service("svc-a", HOST, vec![common::origin(origin.addr())]);
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/large.bin");
    let got = get_with(&client, &url, &[("range", "bytes=0-200000")]).await;
    assert_range(&got, 0, 0, 200_000, 1_000_000);
    idle(&edge).await;
    assert_eq!(stored_slices(&edge).len(), 4);
    let purge = |version: u64, kind: PurgeKind, target: &str| Purge {
        id: version,
        service: "svc-a".to_owned(),
        kind,
        targets: vec![target.to_owned()],
        mode: PurgeMode::Hard,
        version,
        created_at: "2025-01-01T00:00:00Z".to_owned(),
    };
    let mut snap = snapshot(2, vec![svc.clone()]);
    snap.body.purges = vec![purge(
        2,
        PurgeKind::Url,
        &format!("http://{HOST}/large.bin"),
    )];
    edge.apply(&snap);
    assert!(stored_slices(&edge).is_empty());
    let got = get_with(&client, &url, &[("range", "bytes=0-10")]).await;
    assert_eq!(got.x_cache(), "MISS");
    assert_eq!(origin.requests("/large.bin"), 5);
    idle(&edge).await;
    assert_eq!(stored_slices(&edge).len(), 1);
    let mut snap = snapshot(3, vec![svc]);
    snap.body.purges = vec![purge(3, PurgeKind::Prefix, &format!("http://{HOST}/lar"))];
    edge.apply(&snap);
    assert!(stored_slices(&edge).is_empty());
}

#[tokio::test]
async fn a_whole_get_too_large_to_store_is_stored_as_slices() {
    const SIZE: u64 = lingjing_edge::proxy::MAX_OBJECT_BYTES + 100_000;
    const MIB: u64 = 1024 * 1024;
    let origin = demo_origin(SIZE).await;
    let (edge, client) = sliced_edge(origin.addr(), MIB).await;
    let url = edge.url(HOST, "/large.bin");
    let got = get(&client, &url).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len() as u64, SIZE);
    assert!(got.body[..1000] == large_bytes(0, 1000)[..]);
    assert_eq!(origin.requests("/large.bin"), 1);
    idle(&edge).await;
    // Ranges anywhere, the short last slice included, are hits.
    for (s, e) in [
        (0, 99),
        (3 * MIB - 10, 3 * MIB + 10),
        (SIZE - 500, SIZE - 1),
    ] {
        let got = get_with(&client, &url, &[("range", &format!("bytes={s}-{e}"))]).await;
        assert_eq!(got.x_cache(), "HIT", "{s}-{e}");
        assert_range(&got, 0, s, e, SIZE);
    }
    assert_eq!(origin.requests("/large.bin"), 1);
}

#[tokio::test]
async fn slices_past_the_store_buffer_budget_are_served_but_not_stored() {
    const BUDGET: u64 = SLICE / 2;
    let origin = demo_origin(1_000_000).await;
    let edge = TestEdge::start_configured("edge-a", |c| {
        c.slice_bytes = SLICE;
        c.memory_bytes = MEMORY;
        c.cache_limits.store_buffer_bytes = BUDGET;
    })
    .await;
    edge.apply(&snapshot_for("svc-a", origin.addr()));
    let client = edge.client(&[HOST]);
    let url = edge.url(HOST, "/large.bin");
    // No slice fits the budget: each is served from its fetch, none is stored.
    for round in 1..=2 {
        let got = get_with(&client, &url, &[("range", "bytes=100000-200000")]).await;
        assert_eq!(got.x_cache(), "MISS", "round {round}");
        assert_range_demo(&got, 100_000, 200_000);
        assert_eq!(origin.requests("/large.bin"), 3 * round);
        idle(&edge).await;
    }
    assert!(stored_slices(&edge).is_empty());
    let budget = &edge.handle.edge.store_buffers;
    assert!(budget.peak() <= BUDGET, "{}", budget.peak());
    assert_eq!(budget.used(), 0);
    assert!(budget.refused() >= 6, "{}", budget.refused());
}

/// An origin for `/obj` of `size` bytes, ETag `"v1"`, answering with `cache_control`: a
/// matching `If-None-Match` gets 304, a range 206, no range 200; every request logged as
/// (Range, If-None-Match).
async fn revalidating(
    size: u64,
    cache_control: &'static str,
) -> (Arc<Mutex<Vec<(String, String)>>>, TestOrigin) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let origin = TestOrigin::start(move |parts| {
        let seen = seen.clone();
        async move {
            let range = req_header(&parts, "range").to_owned();
            let inm = req_header(&parts, "if-none-match").to_owned();
            seen.lock().expect("log").push((range.clone(), inm.clone()));
            let base = [("etag", "\"v1\""), ("cache-control", cache_control)];
            if inm == "\"v1\"" {
                return respond(304, &base, Body::empty());
            }
            let span = range.strip_prefix("bytes=").and_then(|r| {
                let (a, b) = r.split_once('-')?;
                Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            });
            let Some((a, b)) = span else {
                return respond(200, &base, content(1, 0, size));
            };
            let b = b.min(size - 1);
            let cr = format!("bytes {a}-{b}/{size}");
            let mut headers = base.to_vec();
            headers.push(("content-range", cr.as_str()));
            respond(206, &headers, content(1, a, b + 1))
        }
    })
    .await;
    (log, origin)
}

fn logged(log: &Mutex<Vec<(String, String)>>) -> Vec<(String, String)> {
    log.lock().expect("log").clone()
}

#[tokio::test]
async fn a_stale_slice_is_revalidated_with_a_conditional_range_request() {
    let (log, origin) = revalidating(200_000, "max-age=0").await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/obj");
    let got = get_with(&client, &url, &[("range", "bytes=10-99")]).await;
    assert_range(&got, 1, 10, 99, 200_000);
    idle(&edge).await;
    // Stale at once (max-age=0): the next request revalidates the slice, and the 304
    // freshens it without its bytes crossing the network again.
    let got = get_with(&client, &url, &[("range", "bytes=100-199")]).await;
    assert_range(&got, 1, 100, 199, 200_000);
    idle(&edge).await;
    assert_eq!(
        logged(&log),
        vec![
            ("bytes=0-65535".to_owned(), String::new()),
            ("bytes=0-65535".to_owned(), "\"v1\"".to_owned()),
        ]
    );
    assert_eq!(
        assert_slices_complete(&edge),
        1,
        "the slice is still stored"
    );
}

#[tokio::test]
async fn a_slice_within_stale_while_revalidate_is_served_and_refreshed_in_the_background() {
    let (log, origin) = revalidating(200_000, "max-age=0, stale-while-revalidate=600").await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/obj");
    let got = get_with(&client, &url, &[("range", "bytes=0-9")]).await;
    assert_eq!(got.x_cache(), "MISS");
    idle(&edge).await;
    let got = get_with(&client, &url, &[("range", "bytes=20-29")]).await;
    assert_range(&got, 1, 20, 29, 200_000);
    assert_eq!(got.x_cache(), "HIT", "served from the stale slice");
    let log2 = log.clone();
    wait_until("the background revalidation", move || {
        logged(&log2).len() == 2
    })
    .await;
    assert_eq!(
        logged(&log)[1],
        ("bytes=0-65535".to_owned(), "\"v1\"".to_owned())
    );
    idle(&edge).await;
    assert_eq!(assert_slices_complete(&edge), 1);
}

#[tokio::test]
async fn a_plain_get_of_an_object_held_as_slices_is_assembled_from_them() {
    let (script, origin) = scripted(300_000).await;
    let (edge, client) = sliced_edge(origin.addr(), SLICE).await;
    let url = edge.url(HOST, "/obj");
    let got = get_with(&client, &url, &[("range", "bytes=0-99")]).await;
    assert_range(&got, 0, 0, 99, 300_000);
    idle(&edge).await;
    // No Range: the whole object, from slice 0 (stored) and slices 1-4 fetched as slices;
    // the origin never sees a whole-object request.
    let got = get(&client, &url).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-length"), "300000");
    assert!(
        got.body == content(0, 0, 300_000),
        "the whole object, in order"
    );
    idle(&edge).await;
    assert_eq!(
        script.ranges(),
        vec![
            "bytes=0-65535",
            "bytes=65536-131071",
            "bytes=131072-196607",
            "bytes=196608-262143",
            "bytes=262144-327679",
        ]
    );
    // Every slice is now stored: the next plain GET is a hit.
    let got = get(&client, &url).await;
    assert_eq!((got.status, got.x_cache()), (200, "HIT"));
    assert!(got.body == content(0, 0, 300_000));
    assert_eq!(script.ranges().len(), 5);
}
