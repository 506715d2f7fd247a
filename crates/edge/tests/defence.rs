//! Traffic defence on one edge node, in process over real connections: a per-client limit
//! rule refuses past its rate only the requests it matches (method, path pattern, user
//! agent); a flood from one address is found by the once-a-second judge, refused with 429
//! and `Retry-After` (enforce) and reported with its busiest paths and user agents; in
//! monitor mode it is found and reported but nothing is refused, only counted. The
//! outcomes are awaited within generous bounds; no assertion depends on a duration.

mod common;

use common::*;
use lingjing_model::defence::{
    DefenceMode, DefenceRule, DefenceSettings, RuleAction, RuleMatch, RuleOrigin, RuleSpec,
};
use lingjing_model::snapshot::{DefenceSource, EdgeSnapshot, Snapshot};

async fn edge_with(
    defence: DefenceSettings,
    rules: Vec<DefenceRule>,
) -> (
    lingjing_demo::OriginHandle,
    TestEdge,
    Snapshot<EdgeSnapshot>,
) {
    let origin = demo_origin(1024).await;
    let edge = TestEdge::start_empty("edge-d").await;
    let mut snap = snapshot_for("svc-d", origin.addr());
    snap.body.services[0].defence = defence;
    snap.body.defence_rules = rules;
    edge.apply(&snap);
    (origin, edge, snap)
}

fn limit_rule() -> DefenceRule {
    DefenceRule {
        id: "rule-limit".into(),
        spec: RuleSpec {
            service: Some("svc-d".into()),
            action: RuleAction::Limit,
            matches: RuleMatch {
                methods: vec!["GET".into()],
                path: Some("/api/*".into()),
                user_agent: Some("bot".into()),
                ..RuleMatch::default()
            },
            rate: Some(1),
            mode: DefenceMode::Enforce,
            ttl_seconds: None,
            note: None,
        },
        tenant: Some("tenant-a".into()),
        origin: RuleOrigin::Manual,
        created_ms: 0,
        expires_ms: None,
    }
}

/// Statuses of `n` GETs of `path` with `user_agent`, back to back.
async fn statuses(edge: &TestEdge, path: &str, user_agent: &str, n: usize) -> Vec<u16> {
    let client = edge
        .client_builder(&[HOST])
        .user_agent(user_agent)
        .build()
        .expect("client");
    let mut out = Vec::new();
    for _ in 0..n {
        let r = client
            .get(edge.url(HOST, path))
            .send()
            .await
            .expect("answered");
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        out.push(r.status().as_u16());
    }
    out
}

#[tokio::test]
async fn a_limit_rule_refuses_past_its_rate_only_what_it_matches() {
    let lenient = DefenceSettings {
        source_rps: 1_000_000,
        ..DefenceSettings::default()
    };
    let (_origin, edge, _) = edge_with(lenient, vec![limit_rule()]).await;
    let bot = statuses(&edge, "/api/items", "EvilBot/1.0", 10).await;
    assert!(bot.contains(&429), "{bot:?}");
    assert!(bot.iter().all(|s| *s == 200 || *s == 429), "{bot:?}");
    // Not its path, not its user agent: never refused.
    let other_path = statuses(&edge, "/", "EvilBot/1.0", 10).await;
    assert!(other_path.iter().all(|s| *s == 200), "{other_path:?}");
    let browser = statuses(&edge, "/api/items", "Mozilla/5.0", 10).await;
    assert!(browser.iter().all(|s| *s == 200), "{browser:?}");
    let metrics = edge.metrics().await;
    assert!(
        metrics.contains(
            "lingjing_edge_defence_requests_refused_total{service=\"svc-d\",reason=\"rule_limit\"}"
        ),
        "{metrics}"
    );
    edge.shutdown().await;
}

/// Sends GETs from one client until the edge's defence has a report; the report and
/// every status seen.
async fn flood_until_reported(
    edge: &TestEdge,
) -> (lingjing_model::defence::DefenceReport, Vec<u16>) {
    let client = edge
        .client_builder(&[HOST])
        .user_agent("flood/1")
        .build()
        .expect("client");
    let defence = edge.handle.edge.defence.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        for _ in 0..20 {
            let r = client
                .get(edge.url(HOST, "/"))
                .send()
                .await
                .expect("answered");
            seen.push(r.status().as_u16());
        }
        if let Some(r) = defence.take().into_iter().find(|r| !r.blocked.is_empty()) {
            return (r, seen);
        }
        assert!(tokio::time::Instant::now() < deadline, "never reported");
    }
}

#[tokio::test]
async fn a_flood_from_one_address_is_refused_and_reported() {
    let strict = DefenceSettings {
        source_rps: 10,
        ..DefenceSettings::default()
    };
    let (_origin, edge, _) = edge_with(strict, Vec::new()).await;
    let (report, _) = flood_until_reported(&edge).await;
    assert_eq!(report.mode, DefenceMode::Enforce);
    assert_eq!(report.service, "svc-d");
    assert_eq!(report.blocked, vec!["127.0.0.1/32".parse().expect("net")]);
    assert_eq!(report.top_paths[0].key, "/");
    assert_eq!(report.top_agents[0].key, "flood/1");
    assert!(report.detected_ms >= report.started_ms);
    // Refused from now on, with a Retry-After, the connection closed after the answer.
    let client = edge.client(&[HOST]);
    let r = client
        .get(edge.url(HOST, "/"))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse::<u64>()
            .expect("secs")
            > 0
    );
    assert_eq!(r.headers()["connection"], "close");
    edge.shutdown().await;
}

#[tokio::test]
async fn in_monitor_mode_a_flood_is_reported_and_counted_but_not_refused() {
    let watching = DefenceSettings {
        source_rps: 10,
        mode: DefenceMode::Monitor,
        ..DefenceSettings::default()
    };
    let (_origin, edge, _) = edge_with(watching, Vec::new()).await;
    let (report, seen) = flood_until_reported(&edge).await;
    assert_eq!(report.mode, DefenceMode::Monitor);
    let after = statuses(&edge, "/", "flood/1", 20).await;
    assert!(
        seen.iter().chain(&after).all(|s| *s == 200),
        "{seen:?} {after:?}"
    );
    let metrics = edge.metrics().await;
    assert!(
        metrics.contains(
            "lingjing_edge_defence_requests_monitored_total{service=\"svc-d\",reason=\"detected\"}"
        ),
        "{metrics}"
    );
    let refused: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("lingjing_edge_defence_requests_refused_total{service=\"svc-d\""))
        .collect();
    assert!(refused.iter().all(|l| l.ends_with(" 0")), "{refused:?}");
    edge.shutdown().await;
}
