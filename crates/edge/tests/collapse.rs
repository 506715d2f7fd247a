//! Request collapsing end to end: concurrent misses for one URL share one upstream fetch
//! (1000 clients, one origin request), whether they join the fetch in flight or arrive
//! after it has been stored; a response that may not be stored is never handed to another
//! client; a client that goes away does not abort the fetch; variants (`Vary`) are not
//! mixed up by collapsing.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use tokio::sync::Semaphore;

/// Edge node `edge-a` serving [`HOST`] (service `svc-a`) from the origin at `origin`.
async fn edge_for(origin: SocketAddr) -> TestEdge {
    let snap = snapshot_for("svc-a", origin);
    TestEdge::start("edge-a", &snap).await
}

/// A client of `edge` that keeps up to `clients` idle connections, so that that many
/// concurrent requests each have their own.
fn pooled_client(edge: &TestEdge, clients: usize) -> reqwest::Client {
    edge.client_builder(&[HOST])
        .pool_max_idle_per_host(clients)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_misses_cost_the_origin_one_request() {
    const CLIENTS: usize = 1000;
    let origin = demo_origin(1024).await;
    let edge = edge_for(origin.addr()).await;
    let client = pooled_client(&edge, CLIENTS);
    let url = edge.url(HOST, "/slow?ms=300");
    let answers = futures::future::join_all((0..CLIENTS).map(|_| get(&client, &url))).await;

    // However the requests were spread in time (joined the fetch in flight, or came after
    // it was stored), every client gets the whole answer and the origin saw one request.
    let mut misses = 0;
    for got in &answers {
        assert_eq!(got.status, 200, "{}", got.text());
        assert_eq!(got.text(), "slow answer after 300 ms\n");
        match got.x_cache() {
            "MISS" => misses += 1,
            "HIT" => {}
            other => panic!("unexpected X-Cache {other}"),
        }
    }
    assert!(misses >= 1, "the first request is a miss");
    assert_eq!(
        origin.requests("/slow"),
        1,
        "{CLIENTS} concurrent requests must cost the origin exactly one"
    );
    let collapsed = answers
        .iter()
        .filter(|g| g.header("cache-status").contains("collapsed"))
        .count();
    // A miss either joined the fetch in flight (`collapsed`) or led a fill of its own: a
    // fill that starts just as the first one ends takes the stored answer instead of
    // fetching (`run_fill`), so such leaders cost the origin nothing (checked above).
    assert!(
        collapsed < misses,
        "only misses can be collapsed: {collapsed} of {misses}"
    );
    assert!(
        collapsed > 0 || misses == 1,
        "{misses} misses and none joined the fetch in flight"
    );
}

/// Many short fetches with clients arriving all around the moment each one completes: a
/// client that missed the cache just before the fetch stored its response, and looks for
/// a fetch in flight just after it ended, must not start a second fetch. (Probabilistic:
/// it catches the race in most runs; a correct edge never fails it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_arriving_as_a_fetch_completes_do_not_refetch() {
    const ROUNDS: usize = 500;
    const CLIENTS: usize = 20;
    let origin =
        TestOrigin::start(|_| async { respond(200, &[("cache-control", "max-age=600")], "quick") })
            .await;
    let edge = edge_for(origin.addr()).await;
    let client = pooled_client(&edge, CLIENTS);
    let mut refetched = Vec::new();
    for round in 0..ROUNDS {
        let path = format!("/r/{round}");
        let url = edge.url(HOST, &path);
        let answers = futures::future::join_all((0..CLIENTS).map(|_| get(&client, &url))).await;
        assert!(
            answers
                .iter()
                .all(|g| g.status == 200 && g.text() == "quick")
        );
        let fetched = origin.requests(&path);
        if fetched != 1 {
            refetched.push((path, fetched));
        }
    }
    assert!(
        refetched.is_empty(),
        "URLs fetched more than once: {refetched:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_response_that_may_not_be_stored_is_never_shared() {
    const CLIENTS: usize = 10;
    let served = Arc::new(AtomicU64::new(0));
    let s = served.clone();
    let origin = TestOrigin::start(move |_| {
        let n = s.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            // Slow enough that the other clients find this fetch in flight.
            tokio::time::sleep(Duration::from_millis(300)).await;
            respond(
                200,
                &[("cache-control", "private")],
                format!("for client {n}"),
            )
        }
    })
    .await;
    let edge = edge_for(origin.addr()).await;
    let client = pooled_client(&edge, CLIENTS);
    let url = edge.url(HOST, "/mine");
    let answers = futures::future::join_all((0..CLIENTS).map(|_| get(&client, &url))).await;
    let mut bodies: Vec<String> = answers.iter().map(Got::text).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(
        bodies.len(),
        CLIENTS,
        "a private answer went to two clients"
    );
    assert_eq!(origin.requests("/mine"), CLIENTS as u64);
}

#[tokio::test]
async fn a_client_that_goes_away_does_not_abort_the_fetch() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = TestOrigin::start(move |_| {
        let gate = g.clone();
        async move {
            let _permit = gate.acquire().await.expect("gate");
            respond(200, &[("cache-control", "max-age=60")], "x".repeat(100_000))
        }
    })
    .await;
    let edge = edge_for(origin.addr()).await;
    let url = edge.url(HOST, "/big");
    let first = {
        let client = edge.client(&[HOST]);
        let url = url.clone();
        tokio::spawn(async move { client.get(&url).send().await })
    };
    wait_until("the fetch reaches the origin", || {
        origin.requests("/big") == 1
    })
    .await;
    first.abort();
    let _ = first.await;
    gate.add_permits(100);

    let client = edge.client(&[HOST]);
    let got = get(&client, &url).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), 100_000);
    assert!(
        matches!(got.x_cache(), "HIT" | "MISS"),
        "x-cache {}",
        got.x_cache()
    );
    assert_eq!(
        got.x_cache() == "MISS",
        got.header("cache-status").contains("collapsed")
    );
    assert_eq!(get(&client, &url).await.x_cache(), "HIT");
    assert_eq!(
        origin.requests("/big"),
        1,
        "the abandoned fetch was completed and stored"
    );
}

/// A request for another variant (`Vary: Accept-Encoding`) that arrives while the fetch
/// for the first one is in flight must not be given the first one's response.
#[tokio::test]
async fn collapsing_does_not_mix_up_variants() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    let origin = TestOrigin::start(move |parts| {
        let gate = g.clone();
        async move {
            let ae = req_header(&parts, "accept-encoding").to_owned();
            if ae == "gzip" {
                let _permit = gate.acquire().await.expect("gate");
            }
            respond(
                200,
                &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
                format!("ae={ae}"),
            )
        }
    })
    .await;
    let edge = edge_for(origin.addr()).await;
    let client = edge.client(&[HOST]);
    let url = edge.url(HOST, "/v");
    let gzip = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { get_with(&client, &url, &[("accept-encoding", "gzip")]).await })
    };
    wait_until("the gzip fetch reaches the origin", || {
        origin.requests("/v") == 1
    })
    .await;
    let br = {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { get_with(&client, &url, &[("accept-encoding", "br")]).await })
    };
    // A correct edge fetches the br variant itself (a second origin request); a collapsing
    // one waits on the gzip fetch, which is released after a while either way. The wait
    // can only hide the bug, never fail a correct edge.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while origin.requests("/v") < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.add_permits(100);
    let gzip = gzip.await.expect("gzip task");
    let br = br.await.expect("br task");
    assert_eq!(gzip.text(), "ae=gzip");
    assert_eq!(br.text(), "ae=br", "the br client got another variant");
}

#[tokio::test]
async fn a_large_private_body_streams_to_its_one_client_intact() {
    // 8 MiB, not shareable: handed to the client over a bounded channel, not buffered.
    let body: String = (0..8 * 1024 * 1024)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let expected = body.clone();
    let origin = TestOrigin::start(move |_| {
        let body = body.clone();
        async move { respond(200, &[("cache-control", "private")], body) }
    })
    .await;
    let edge = edge_for(origin.addr()).await;
    let client = edge.client(&[HOST]);
    let url = edge.url(HOST, "/download");
    let got = get(&client, &url).await;
    assert_eq!(got.text(), expected);
    let again = get(&client, &url).await;
    assert_eq!(again.text().len(), expected.len());
    assert_eq!(
        origin.requests("/download"),
        2,
        "a private response is never stored"
    );
}
