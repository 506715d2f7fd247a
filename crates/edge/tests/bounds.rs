//! The edge's trust and resource bounds (issue 9, items 2 and 9), end to end on loopback:
//! purges touch only the issuing service's entries (even for a hostname another service
//! also matches) and use per-host and per-tag indexes that follow the disk tier across a
//! restart; http and https are cached apart (by a parent tier too); a memory entry weighs
//! its key; URLs over the limit are not cached; overlapping ranges are coalesced and
//! capped; a shared fill holds a bounded amount; `Set-Cookie` is never replayed to another
//! client; usage counts the body bytes actually sent. Each test also shows the legitimate
//! path still working.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use bytes::Bytes;
use common::*;
use http::HeaderMap;
use lingjing_edge::cache::disk::{DiskOptions, DiskStore};
use lingjing_edge::cache::key::{self, Scheme};
use lingjing_edge::cache::policy::Freshness;
use lingjing_edge::cache::store::{CachedResponse, Entry, MemoryStore, Storage};
use lingjing_model::{Purge, PurgeKind, PurgeMode};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

fn purge(id: u64, service: &str, kind: PurgeKind, mode: PurgeMode, target: &str) -> Purge {
    Purge {
        id,
        service: service.to_owned(),
        kind,
        targets: vec![target.to_owned()],
        mode,
        version: id,
        created_at: "2025-01-01T00:00:00Z".to_owned(),
    }
}

/// An origin answering every path with its path, cacheable for 10 minutes, tagged `t`.
async fn tagged_origin() -> TestOrigin {
    TestOrigin::start(|parts| async move {
        respond(
            200,
            &[("cache-control", "max-age=600"), ("surrogate-key", "t")],
            parts.uri.path().to_owned(),
        )
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Purges (item 1, 3)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_purge_touches_only_the_issuing_services_entries() {
    let origin = tagged_origin().await;
    // `demo` owns www.demo.example; `evil` holds the wildcard over it (the edge routes the
    // exact name first, so www is demo's).
    let demo = service(
        "demo",
        "www.demo.example",
        vec![common::origin(origin.addr())],
    );
    let mut evil = service(
        "evil",
        "*.demo.example",
        vec![common::origin(origin.addr())],
    );
    evil.tenant = "evil".to_owned();
    let edge = TestEdge::start("edge-purge", &snapshot(1, vec![demo.clone(), evil.clone()])).await;
    let client = edge.client(&["www.demo.example", "x.demo.example"]);
    let www_a = edge.url("www.demo.example", "/a");
    let www_b = edge.url("www.demo.example", "/b");
    let x_a = edge.url("x.demo.example", "/a");
    for url in [&www_a, &www_b, &x_a] {
        assert_eq!(get(&client, url).await.x_cache(), "MISS");
        assert_eq!(get(&client, url).await.x_cache(), "HIT");
    }

    // `evil` purges demo's hostname every way it can: prefix (hard), URL (soft), tag.
    let mut snap = snapshot(4, vec![demo.clone(), evil.clone()]);
    snap.body.purges = vec![
        purge(
            2,
            "evil",
            PurgeKind::Prefix,
            PurgeMode::Hard,
            "http://www.demo.example/",
        ),
        purge(
            3,
            "evil",
            PurgeKind::Url,
            PurgeMode::Soft,
            "https://www.demo.example/b",
        ),
        purge(4, "evil", PurgeKind::Tag, PurgeMode::Hard, "t"),
    ];
    edge.apply(&snap);
    for url in [&www_a, &www_b] {
        let got = get(&client, url).await;
        assert_eq!(
            got.x_cache(),
            "HIT",
            "{url}: another service's purge reached it"
        );
    }
    // The tag purge did reach evil's own entry.
    assert_eq!(get(&client, &x_a).await.x_cache(), "MISS");

    // demo's own purges work, for both schemes whatever the target's scheme.
    let mut snap = snapshot(6, vec![demo.clone(), evil.clone()]);
    snap.body.purges = vec![
        purge(
            5,
            "demo",
            PurgeKind::Prefix,
            PurgeMode::Hard,
            "https://www.demo.example/a",
        ),
        purge(6, "demo", PurgeKind::Tag, PurgeMode::Soft, "t"),
    ];
    edge.apply(&snap);
    assert_eq!(get(&client, &www_a).await.x_cache(), "MISS");
    // Soft: kept, but stale, so revalidated (no validator here: fetched again).
    assert_ne!(get(&client, &www_b).await.x_cache(), "HIT");
    assert_eq!(get(&client, &x_a).await.x_cache(), "HIT");
    edge.shutdown().await;
}

fn entry(tags: &[&str], body_len: usize) -> Arc<Entry> {
    let now = std::time::SystemTime::now();
    Arc::new(Entry::single(CachedResponse {
        status: http::StatusCode::OK,
        headers: HeaderMap::new(),
        body: Bytes::from(vec![7u8; body_len]),
        freshness: Freshness {
            lifetime: std::time::Duration::from_secs(600),
            initial_age: std::time::Duration::ZERO,
            stored_at: now,
            stale_while_revalidate: std::time::Duration::ZERO,
            stale_if_error: std::time::Duration::ZERO,
            must_revalidate: false,
        },
        variant: String::new(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        stored_at: now,
    }))
}

fn k(service: &str, host: &str, path: &str) -> String {
    key::cache_key(
        &key::namespace(service, Scheme::Http),
        host,
        path,
        None,
        &HeaderMap::new(),
    )
}

fn sorted(mut keys: Vec<Arc<String>>) -> Vec<String> {
    let mut out: Vec<String> = keys.drain(..).map(|k| k.to_string()).collect();
    out.sort();
    out
}

#[test]
fn disk_purge_indexes_are_rebuilt_at_start_and_follow_removals_and_evictions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a1 = k("a", "h.example", "/1");
    let a2 = k("a", "h.example", "/2");
    let b1 = k("b", "h.example", "/1");
    let host_a = key::host_bucket("a", "h.example");
    let tag_a = key::tag_bucket("a", "t");
    {
        let store = DiskStore::open(dir.path(), DiskOptions::new(64 << 20)).expect("open");
        store.put(a1.clone(), entry(&["t"], 10));
        store.put(a2.clone(), entry(&[], 10));
        store.put(b1.clone(), entry(&["t"], 10));
        // Queued puts are found too.
        assert_eq!(
            sorted(store.host_keys(&host_a)),
            vec![a1.clone(), a2.clone()]
        );
        store.flush();
        assert_eq!(
            sorted(store.host_keys(&host_a)),
            vec![a1.clone(), a2.clone()]
        );
        assert_eq!(sorted(store.tag_keys(&tag_a)), vec![a1.clone()]);
    }
    // A restart rebuilds the indexes from the files.
    let store = DiskStore::open(dir.path(), DiskOptions::new(64 << 20)).expect("reopen");
    assert_eq!(store.indexed_keys(), 3);
    assert_eq!(
        sorted(store.host_keys(&host_a)),
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(sorted(store.tag_keys(&tag_a)), vec![a1.clone()]);
    assert_eq!(
        sorted(store.tag_keys(&key::tag_bucket("b", "t"))),
        vec![b1.clone()]
    );
    store.remove(&a1);
    assert_eq!(sorted(store.host_keys(&host_a)), vec![a2.clone()]);
    assert!(store.tag_keys(&tag_a).is_empty());
    drop(store);

    // Evictions leave no index entry behind: one per stored key.
    let store = DiskStore::open(dir.path(), DiskOptions::new(256 << 10)).expect("small");
    for i in 0..200 {
        store.put(k("a", "h.example", &format!("/e{i}")), entry(&["t"], 8_000));
    }
    store.flush();
    let (_, entries) = store.usage();
    assert!(entries < 200, "the small tier evicted");
    assert_eq!(store.indexed_keys() as u64, entries);
    let stored: std::collections::HashSet<String> =
        store.keys().iter().map(|k| k.to_string()).collect();
    let tagged = store.tag_keys(&tag_a);
    assert!(!tagged.is_empty());
    assert!(tagged.iter().all(|k| stored.contains(k.as_str())));
}

#[test]
fn memory_purge_index_follows_puts_replacements_and_evictions() {
    let store = MemoryStore::new(1 << 20);
    let a = k("a", "h.example", "/x");
    store.put(a.clone(), entry(&["old"], 10));
    store.put(a.clone(), entry(&["new"], 10));
    assert!(store.tag_keys(&key::tag_bucket("a", "old")).is_empty());
    assert_eq!(store.tag_keys(&key::tag_bucket("a", "new")).len(), 1);
    for i in 0..400 {
        store.put(k("a", "h.example", &format!("/e{i}")), entry(&["t"], 8_000));
    }
    let (_, entries) = store.usage();
    assert!(entries < 400, "the memory tier evicted");
    assert_eq!(store.indexed_keys() as u64, entries);
    store.remove(&a);
    let (_, entries) = store.usage();
    assert_eq!(store.indexed_keys() as u64, entries);
}

// ---------------------------------------------------------------------------------------
// Memory weight (item 4) and URL length (item 5)
// ---------------------------------------------------------------------------------------

#[test]
fn long_keys_count_in_the_memory_tiers_weight() {
    const CAPACITY: u64 = 1 << 20;
    const QUERY: usize = 50_000;
    let store = MemoryStore::new(CAPACITY);
    let long = "q".repeat(QUERY);
    for i in 0..200 {
        store.put(
            k("a", "h.example", &format!("/p?{long}{i}")),
            entry(&["t"], 100),
        );
    }
    let (weighted, entries) = store.usage();
    assert!(weighted <= CAPACITY, "{weighted} bytes accounted");
    // Every entry holds its 50 KB key: no more of them than the capacity pays for.
    assert!(
        entries * QUERY as u64 <= CAPACITY,
        "{entries} entries of 50 KB keys held in {CAPACITY} bytes"
    );
    assert!(entries > 0);
    // A usual entry is stored and served.
    let store = MemoryStore::new(CAPACITY);
    let key = k("a", "h.example", "/index.html");
    store.put(key.clone(), entry(&[], 1000));
    assert!(store.get(&key).is_some());
}

#[tokio::test]
async fn urls_over_the_limit_are_not_cached() {
    let origin = tagged_origin().await;
    let edge =
        TestEdge::start_configured("edge-url", |c| c.cache_limits.max_url_bytes = 1000).await;
    edge.apply(&snapshot_for("svc", origin.addr()));
    let client = edge.client(&[HOST]);
    // Exactly at the limit: cached.
    let at = format!("/at?{}", "a".repeat(1000 - "/at?".len()));
    assert_eq!(get(&client, &edge.url(HOST, &at)).await.x_cache(), "MISS");
    assert_eq!(get(&client, &edge.url(HOST, &at)).await.x_cache(), "HIT");
    assert_eq!(origin.requests("/at"), 1);
    // One byte over: passed through every time, and still answered.
    let over = format!("/over?{}", "a".repeat(1001 - "/over?".len()));
    for _ in 0..2 {
        let got = get(&client, &edge.url(HOST, &over)).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "/over");
        assert_eq!(got.x_cache(), "PASS");
    }
    assert_eq!(origin.requests("/over"), 2);
    edge.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Ranges (item 6)
// ---------------------------------------------------------------------------------------

const OBJECT: u64 = 10_000;

#[tokio::test]
async fn overlapping_ranges_never_send_more_than_the_object() {
    let origin = demo_origin(OBJECT).await;
    let snap = snapshot_for("svc", origin.addr());
    let edge = TestEdge::start("edge-ranges", &snap).await;
    let client = edge.client(&[HOST]);
    let sixteen = format!("bytes={}", vec!["0-"; 16].join(","));

    // Cold: served from slices.
    let cold = get_with(
        &client,
        &edge.url(HOST, "/large.bin?cold"),
        &[("range", &sixteen)],
    )
    .await;
    assert_eq!(cold.status, 206);
    assert_eq!(
        cold.body.len() as u64,
        OBJECT,
        "16 copies of the object were sent"
    );
    assert_eq!(
        cold.header("content-range"),
        format!("bytes 0-{}/{OBJECT}", OBJECT - 1)
    );

    // Warm: from the stored object.
    let url = edge.url(HOST, "/large.bin");
    let whole = get(&client, &url).await;
    assert_eq!(whole.body.len() as u64, OBJECT);
    let got = get_with(&client, &url, &[("range", &sixteen)]).await;
    assert_eq!(got.x_cache(), "HIT");
    assert_eq!(got.status, 206);
    assert_eq!(got.body, whole.body);

    // Overlapping and disjoint: coalesced into two parts, bounded by object + overhead.
    let got = get_with(&client, &url, &[("range", "bytes=0-99,50-199,-100,9000-")]).await;
    assert_eq!(parse_multipart(&got).len(), 2);
    assert!((got.body.len() as u64) < 200 + 1000 + 2 * 200);
    // HEAD: the same length. (That it builds no body is checked on the responders
    // themselves, `proxy::head_tests`: hyper never sends a HEAD body, so a client cannot
    // tell.)
    let head = fetch(
        client
            .head(&url)
            .header("range", "bytes=0-99,50-199,-100,9000-"),
    )
    .await;
    assert_eq!(head.status, 206);
    assert_eq!(head.header("content-length"), got.body.len().to_string());

    // Seventeen disjoint ranges: the whole object, once.
    let many: Vec<String> = (0..17).map(|i| format!("{0}-{0}", i * 100)).collect();
    let got = get_with(
        &client,
        &url,
        &[("range", &format!("bytes={}", many.join(",")))],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, whole.body);
    // Sixteen are honoured.
    let got = get_with(
        &client,
        &url,
        &[("range", &format!("bytes={}", many[..16].join(",")))],
    )
    .await;
    assert_eq!(parse_multipart(&got).len(), 16);
    edge.shutdown().await;
}

#[tokio::test]
async fn head_of_several_ranges_on_a_miss_announces_the_multipart_length() {
    // That it builds no body is checked on the responder, `proxy::head_tests` (hyper never
    // sends a HEAD body, so a client cannot tell).
    let origin = demo_origin(OBJECT).await;
    let snap = snapshot_for("svc", origin.addr());
    let edge = TestEdge::start("edge-head", &snap).await;
    let client = edge.client(&[HOST]);
    let url = edge.url(HOST, "/large.bin");
    let head = fetch(client.head(&url).header("range", "bytes=0-1,5-6")).await;
    assert_eq!(head.status, 206);
    assert!(
        head.header("content-type")
            .starts_with("multipart/byteranges")
    );
    let get = get_with(&client, &url, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(parse_multipart(&get).len(), 2);
    assert_eq!(head.header("content-length"), get.body.len().to_string());
    edge.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Shared fills (item 7)
// ---------------------------------------------------------------------------------------

const CHUNK: usize = 8 * 1024;
const CHUNKS: usize = 64;

fn pattern(i: usize) -> Vec<u8> {
    (0..CHUNK).map(|j| ((i * 31 + j) % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_fill_buffers_at_most_its_limit_and_every_client_gets_the_whole_body() {
    const LIMIT: u64 = 64 * 1024;
    // The first fetch waits at `start` before its head and at `middle` halfway.
    let start = Arc::new(Semaphore::new(0));
    let middle = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let (s, m, c) = (start.clone(), middle.clone(), calls.clone());
    let origin = TestOrigin::start(move |_| {
        let (s, m) = (s.clone(), m.clone());
        let first = c.fetch_add(1, Ordering::SeqCst) == 0;
        async move {
            if first {
                s.acquire().await.expect("gate").forget();
            }
            let chunks = futures::stream::unfold(0usize, move |i| {
                let m = m.clone();
                async move {
                    if i == CHUNKS {
                        return None;
                    }
                    if first && i == CHUNKS / 2 {
                        m.acquire().await.expect("gate").forget();
                    }
                    Some((Ok::<_, std::io::Error>(Bytes::from(pattern(i))), i + 1))
                }
            });
            // No Content-Length: chunked.
            respond(
                200,
                &[("cache-control", "max-age=600")],
                Body::from_stream(chunks),
            )
        }
    })
    .await;
    let edge = TestEdge::start_configured("edge-fill", |c| {
        c.cache_limits.fill_buffer_bytes = LIMIT;
    })
    .await;
    edge.apply(&snapshot_for("svc", origin.addr()));
    let node = edge.handle.edge.clone();
    let client = edge.client(&[HOST]);
    let url = edge.url(HOST, "/stream");
    let expected: Vec<u8> = (0..CHUNKS).flat_map(pattern).collect();

    // A leads, B joins before the head.
    let (a, b) = a_leads_b_joins(&edge, &client, &url).await;
    start.add_permits(1);
    // Half the body (256 KiB) goes through a 64 KiB buffer: it seals.
    wait_until("the fill sealed", || node.metrics.fill.sealed.get() >= 1).await;
    // C comes too late for the buffer: it fetches on its own.
    let c = get(&client, &url).await;
    assert_eq!(c.body.as_ref(), expected.as_slice(), "C's body");
    middle.add_permits(1);
    let a = a.await.expect("A");
    let b = b.await.expect("B");
    assert_eq!(a.body.as_ref(), expected.as_slice(), "A's body");
    assert_eq!(b.body.as_ref(), expected.as_slice(), "B's body");
    assert_eq!(a.x_cache(), "MISS");
    assert!(b.header("cache-status").contains("collapsed"));
    assert_eq!(origin.requests("/stream"), 2);
    let peak = node.metrics.fill.peak.get();
    assert!(
        peak as u64 <= LIMIT,
        "a fill held {peak} bytes, over its {LIMIT}"
    );
    // The whole body was still stored (it is below the object size limit).
    let d = get(&client, &url).await;
    assert_eq!(d.x_cache(), "HIT");
    assert_eq!(d.body.as_ref(), expected.as_slice());
    wait_until("fills done and freed", || {
        node.inflight.is_empty() && node.metrics.fill.buffered.get() == 0
    })
    .await;
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_buffers_share_one_node_wide_budget_and_a_fill_past_it_is_served_not_stored() {
    const OBJECT: usize = 256 * 1024;
    const BUDGET: u64 = 300 * 1024;
    let body_of = |path: &str| -> Vec<u8> {
        let seed = path.len() + usize::from(path.as_bytes()[1]);
        (0..OBJECT).map(|j| ((j * 7 + seed) % 251) as u8).collect()
    };
    // `/a` sends half its body, then waits at `gate`; `/b` sends all of it at once.
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = TestOrigin::start(move |parts| {
        let gate = g.clone();
        let body = body_of(parts.uri.path());
        let slow = parts.uri.path() == "/a";
        async move {
            let halves = vec![
                Bytes::copy_from_slice(&body[..OBJECT / 2]),
                Bytes::copy_from_slice(&body[OBJECT / 2..]),
            ];
            let chunks =
                futures::stream::unfold((halves.into_iter(), 0usize), move |(mut halves, i)| {
                    let gate = gate.clone();
                    async move {
                        if slow && i == 1 {
                            gate.acquire().await.expect("gate").forget();
                        }
                        let half = halves.next()?;
                        Some((Ok::<_, std::io::Error>(half), (halves, i + 1)))
                    }
                });
            respond(
                200,
                &[
                    ("cache-control", "max-age=600"),
                    ("content-length", &OBJECT.to_string()),
                ],
                Body::from_stream(chunks),
            )
        }
    })
    .await;
    let edge = TestEdge::start_configured("edge-store-budget", |c| {
        c.cache_limits.store_buffer_bytes = BUDGET;
    })
    .await;
    edge.apply(&snapshot_for("svc", origin.addr()));
    let node = edge.handle.edge.clone();
    assert_eq!(node.store_buffers.limit(), BUDGET);
    let client = edge.client(&[HOST]);

    // A client asks for `/a` and does not read: its fill keeps half the body to store it.
    let a = client
        .get(edge.url(HOST, "/a"))
        .send()
        .await
        .expect("/a answered");
    assert_eq!(a.status(), 200);
    wait_until("/a's fill buffered half its body", || {
        node.store_buffers.used() >= (OBJECT / 2) as u64
    })
    .await;

    // `/b` meanwhile: the budget has no room for its copy. It is served in full anyway.
    let b = get(&client, &edge.url(HOST, "/b")).await;
    assert_eq!((b.status, b.x_cache()), (200, "MISS"));
    assert_eq!(b.body.as_ref(), body_of("/b").as_slice());
    assert_eq!(node.store_buffers.refused(), 1);

    // `/a` completes, and is stored (its reservation fitted all along).
    gate.add_permits(1);
    let a = a.bytes().await.expect("/a's body");
    assert_eq!(a.as_ref(), body_of("/a").as_slice());
    wait_until("the fills ended", || node.inflight.is_empty()).await;
    assert_eq!(node.store_buffers.used(), 0, "every reservation released");
    assert_eq!(get(&client, &edge.url(HOST, "/a")).await.x_cache(), "HIT");

    // `/b` was not stored: fetched again, and with the budget to spare now, stored.
    let b = get(&client, &edge.url(HOST, "/b")).await;
    assert_eq!(b.x_cache(), "MISS");
    assert_eq!(b.body.as_ref(), body_of("/b").as_slice());
    wait_until("the fill ended", || node.inflight.is_empty()).await;
    let b = get(&client, &edge.url(HOST, "/b")).await;
    assert_eq!(b.x_cache(), "HIT");
    assert_eq!(b.body.as_ref(), body_of("/b").as_slice());
    assert_eq!((origin.requests("/a"), origin.requests("/b")), (1, 2));

    // What was accounted never exceeded the budget, and `/metrics` says so.
    assert!(
        node.store_buffers.peak() <= BUDGET,
        "{}",
        node.store_buffers.peak()
    );
    assert_eq!(node.store_buffers.refused(), 1);
    let metrics = edge.metrics().await;
    let value = |name: &str| -> u64 {
        metric_value(&metrics, name).unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    assert_eq!(value("lingjing_edge_store_buffer_refused_total"), 1);
    assert_eq!(value("lingjing_edge_store_buffer_bytes "), 0);
    assert!(value("lingjing_edge_store_buffer_peak_bytes") <= BUDGET);
    edge.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Set-Cookie (item 8)
// ---------------------------------------------------------------------------------------

/// An origin that sets `id=N` (N: the request's number) on a cacheable response, after
/// waiting at `gate` on its first request.
async fn cookie_origin(gate: Arc<Semaphore>) -> TestOrigin {
    let n = Arc::new(AtomicU64::new(0));
    TestOrigin::start(move |_| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = gate.clone();
        async move {
            if i == 1 {
                gate.acquire().await.expect("gate").forget();
            }
            respond(
                200,
                &[
                    ("cache-control", "max-age=600"),
                    ("set-cookie", &format!("id={i}; Path=/")),
                ],
                "personal?",
            )
        }
    })
    .await
}

/// Starts `GET url` by A, and once A leads the fetch, by B, which joins it; returns the
/// two requests in flight.
async fn a_leads_b_joins(
    edge: &TestEdge,
    client: &reqwest::Client,
    url: &str,
) -> (JoinHandle<Got>, JoinHandle<Got>) {
    let node = edge.handle.edge.clone();
    let spawn_get = || {
        let (client, url) = (client.clone(), url.to_owned());
        tokio::spawn(async move { get(&client, &url).await })
    };
    let a = spawn_get();
    wait_until("A joined", || node.inflight.readers() == 1).await;
    let b = spawn_get();
    wait_until("B joined", || node.inflight.readers() == 2).await;
    (a, b)
}

/// A leads and B joins the same fetch, which `gate` then lets go; returns both answers.
async fn two_collapsed(edge: &TestEdge, gate: &Semaphore, url: &str) -> (Got, Got) {
    let (a, b) = a_leads_b_joins(edge, &edge.client(&[HOST]), url).await;
    gate.add_permits(1);
    (a.await.expect("A"), b.await.expect("B"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responses_with_set_cookie_are_not_shared_without_a_rule() {
    let gate = Arc::new(Semaphore::new(0));
    let origin = cookie_origin(gate.clone()).await;
    let edge = TestEdge::start("edge-cookie", &snapshot_for("svc", origin.addr())).await;
    let url = edge.url(HOST, "/me");
    let (a, b) = two_collapsed(&edge, &gate, &url).await;
    assert_eq!(a.all("set-cookie"), vec!["id=1; Path=/"]);
    // B did not get A's response: it fetched its own.
    assert_eq!(b.all("set-cookie"), vec!["id=2; Path=/"]);
    let c = get(&edge.client(&[HOST]), &url).await;
    assert_eq!(c.x_cache(), "MISS");
    assert_eq!(c.all("set-cookie"), vec!["id=3; Path=/"]);
    assert_eq!(origin.requests("/me"), 3);
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rule_stores_set_cookie_responses_without_the_cookie() {
    let gate = Arc::new(Semaphore::new(0));
    let origin = cookie_origin(gate.clone()).await;
    let mut svc = service("svc", HOST, vec![common::origin(origin.addr())]);
    let mut r = rule("/*");
    r.cache_set_cookie = true;
    svc.cache_rules = vec![r];
    let edge = TestEdge::start("edge-cookie-rule", &snapshot(1, vec![svc])).await;
    let url = edge.url(HOST, "/me");
    let (a, b) = two_collapsed(&edge, &gate, &url).await;
    // The first client gets its cookie; the one that joined its fetch does not.
    assert_eq!(a.all("set-cookie"), vec!["id=1; Path=/"]);
    assert!(b.header("cache-status").contains("collapsed"));
    assert!(b.all("set-cookie").is_empty(), "{:?}", b.all("set-cookie"));
    let c = get(&edge.client(&[HOST]), &url).await;
    assert_eq!(c.x_cache(), "HIT");
    assert!(c.all("set-cookie").is_empty());
    assert_eq!(c.text(), "personal?");
    assert_eq!(origin.requests("/me"), 1);
    edge.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Scheme in the key (item 2)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn http_and_https_are_cached_apart() {
    let origin = proto_origin().await;
    let (svc, ca_pem) = tls_service(&origin);
    let edge = TestEdge::start_configured("edge-scheme", |c| {
        c.https = vec!["127.0.0.1:0".parse().expect("addr")];
    })
    .await;
    edge.apply(&snapshot(1, vec![svc]));
    let https_addr = edge.handle.https_addrs()[0];
    let plain = edge.client(&[HOST]);
    let secure = https_client(&ca_pem, https_addr);
    let http_url = edge.url(HOST, "/p");
    let https_url = format!("https://{HOST}:{}/p", https_addr.port());
    let got = get(&plain, &http_url).await;
    assert_eq!((got.x_cache(), got.text().as_str()), ("MISS", "http"));
    let got = get(&secure, &https_url).await;
    assert_eq!((got.x_cache(), got.text().as_str()), ("MISS", "https"));
    let got = get(&plain, &http_url).await;
    assert_eq!((got.x_cache(), got.text().as_str()), ("HIT", "http"));
    let got = get(&secure, &https_url).await;
    assert_eq!((got.x_cache(), got.text().as_str()), ("HIT", "https"));
    assert_eq!(origin.requests("/p"), 2);
    edge.shutdown().await;
}

#[tokio::test]
async fn a_parent_keeps_its_childrens_http_and_https_apart() {
    let origin = proto_origin().await;
    let (svc, ca_pem) = tls_service(&origin);
    // Both listen for HTTPS: the child to its clients, the parent to the child (a service
    // with a certificate is filled over TLS).
    let parent = TestEdge::start_configured("parent-1", |c| c.https = vec![c.http[0]]).await;
    let child = TestEdge::start_configured("child-1", |c| c.https = vec![c.http[0]]).await;
    let mut snap = snapshot(1, vec![svc]);
    two_tiers(&mut snap, child.port(), parent.port());
    snap.body.nodes[1].node.ports.https = parent.handle.https_addrs()[0].port();
    parent.apply(&snap);
    child.apply(&snap);
    let https_addr = child.handle.https_addrs()[0];
    let secure = https_client(&ca_pem, https_addr);
    let plain = child.client(&[HOST]);
    let https_url = format!("https://{HOST}:{}/p", https_addr.port());
    let got = get(&plain, &child.url(HOST, "/p")).await;
    assert_eq!(got.text(), "http");
    assert!(got.all("via").join(",").contains("lingjing-parent-1"));
    let got = get(&secure, &https_url).await;
    assert_eq!(
        got.text(),
        "https",
        "the parent served its http copy to https"
    );
    assert_eq!(origin.requests("/p"), 2);
    // A second child request of each scheme is a hit.
    assert_eq!(get(&secure, &https_url).await.text(), "https");
    assert_eq!(get(&plain, &child.url(HOST, "/p")).await.text(), "http");
    assert_eq!(origin.requests("/p"), 2);
    child.shutdown().await;
    parent.shutdown().await;
}

/// An origin that answers with the `X-Forwarded-Proto` it got, cacheable.
async fn proto_origin() -> TestOrigin {
    TestOrigin::start(|parts| async move {
        let proto = req_header(&parts, "x-forwarded-proto").to_owned();
        respond(200, &[("cache-control", "max-age=600")], proto)
    })
    .await
}

/// The service `svc` for [`HOST`] on `origin`, with a certificate from a fresh test CA;
/// and that CA's PEM.
fn tls_service(origin: &TestOrigin) -> (lingjing_model::Service, String) {
    let ca = common::pki::Ca::new("bounds test CA");
    let mut svc = service("svc", HOST, vec![common::origin(origin.addr())]);
    svc.tls = Some(ca.leaf(&[HOST]).0);
    (svc, ca.pem())
}

/// An HTTPS client trusting only `ca_pem`, resolving [`HOST`] to `addr`.
fn https_client(ca_pem: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("ca"))
        .resolve(HOST, addr)
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client")
}

// ---------------------------------------------------------------------------------------
// Usage (item 9)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn usage_counts_the_body_bytes_sent_chunked_or_cut_short() {
    let origin = TestOrigin::start(|parts| async move {
        if parts.uri.path() == "/chunked" {
            let chunks = futures::stream::iter(
                (0..10).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'c'; 1000]))),
            );
            return respond(
                200,
                &[("cache-control", "no-store")],
                Body::from_stream(chunks),
            );
        }
        // Announces 10 MB, sends 100 KB, then never more.
        let first =
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(vec![b'p'; 100_000]))]);
        let body = Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()));
        respond(
            200,
            &[
                ("cache-control", "no-store"),
                ("content-length", "10000000"),
            ],
            body,
        )
    })
    .await;
    let edge = TestEdge::start("edge-usage", &snapshot_for("svc", origin.addr())).await;
    let usage = edge.handle.edge.usage.counters("svc");
    let client = edge.client(&[HOST]);
    let got = get(&client, &edge.url(HOST, "/chunked")).await;
    assert_eq!(got.body.len(), 10_000);
    let counted = usage.counted("svc");
    assert_eq!((counted.requests, counted.bytes_out), (1, 10_000));
    // A miss (fetched for the cache, then not stored: no-store), its body counted in as
    // it came from the origin.
    assert_eq!((counted.hit_requests, counted.miss_requests), (0, 1));
    assert_eq!(counted.bytes_in, 10_000);

    // A download cut short counts what was sent, not its Content-Length.
    let mut res = client
        .get(edge.url(HOST, "/cut"))
        .send()
        .await
        .expect("answered");
    let mut received = 0;
    while received < 100_000 {
        let chunk = res.chunk().await.expect("chunk").expect("more data");
        received += chunk.len();
    }
    drop(res);
    let counted = usage.counted("svc");
    assert_eq!((counted.requests, counted.bytes_out), (2, 110_000));
    // (HEAD builds no body to count: checked on the responders, `proxy::head_tests`.)
    edge.shutdown().await;
}
