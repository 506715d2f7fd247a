//! Large cached bodies are kept in sealed memfds and sent with `sendfile`
//! (`lingjing_edge::sendfile`): hits, ranges of them and HTTP/2 hits of such a body arrive
//! byte-exact, and a small body is left on the heap.

mod common;

use common::*;

/// 300 KiB of bytes that differ at every offset, so a shifted or stale page shows.
fn big_body() -> Vec<u8> {
    (0..300 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[tokio::test]
async fn large_hits_are_sent_from_a_memfd_byte_exact() {
    let origin = TestOrigin::start(|parts| async move {
        let body = match parts.uri.path() {
            "/big" => big_body(),
            _ => b"small".to_vec(),
        };
        respond(200, &[("cache-control", "max-age=60")], body)
    })
    .await;
    let edge = TestEdge::start("edge-1", &snapshot_for("svc", origin.addr())).await;
    let client = edge.client(&[HOST]);
    let expected = big_body();

    let before = lingjing_edge::sendfile::live();
    let miss = get(&client, &edge.url(HOST, "/big")).await;
    assert_eq!((miss.status, miss.x_cache()), (200, "MISS"));
    assert!(miss.body == expected, "the miss's body differs");
    assert!(
        lingjing_edge::sendfile::live() > before,
        "the stored body was not placed in a memfd"
    );

    for round in 0..3 {
        let hit = get(&client, &edge.url(HOST, "/big")).await;
        assert_eq!((hit.status, hit.x_cache()), (200, "HIT"), "round {round}");
        assert!(hit.body == expected, "hit {round}: the body differs");
    }

    let ranged = get_with(
        &client,
        &edge.url(HOST, "/big"),
        &[("range", "bytes=1000-250000")],
    )
    .await;
    assert_partial(
        &ranged,
        1000,
        250_000,
        expected.len() as u64,
        &expected[1000..=250_000],
    );

    let h2 = edge
        .client_builder(&[HOST])
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let hit = get(&h2, &edge.url(HOST, "/big")).await;
    assert_eq!((hit.status, hit.x_cache()), (200, "HIT"));
    assert!(hit.body == expected, "the h2c hit's body differs");

    let small = get(&client, &edge.url(HOST, "/small")).await;
    assert_eq!(small.text(), "small");
    let small = get(&client, &edge.url(HOST, "/small")).await;
    assert_eq!((small.x_cache(), small.text().as_str()), ("HIT", "small"));

    assert_eq!(origin.requests("/big"), 1, "every later request was a hit");
    edge.shutdown().await;
}
