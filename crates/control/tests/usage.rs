//! Usage reports ride on heartbeats: summed per service, counted once per sequence number
//! (a resent report is not double-counted), readable per service by its tenant only; and
//! they set each node's load share, which the DNS snapshot carries for capacity steering.
//! Metering (5-minute totals, counted once) and billing (plans, runs, invoices, credit
//! notes) from those samples, on SQLite and PostgreSQL.

mod common;

use serde_json::json;

#[tokio::test]
async fn usage_is_summed_counted_once_and_scoped_to_the_tenant() {
    let (mut plane, api) = common::start_seeded().await;
    let beat = |seq: u64, requests: u64, bytes: u64| {
        json!({"role": "edge", "applied_version": 1, "usage_seq": seq,
               "usage": [{"service": "shop", "requests": requests, "bytes_out": bytes}]})
    };
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(10, 5, 500))
        .await
        .ok(204);
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(10, 5, 500))
        .await
        .ok(204);
    api.post("/v1/nodes/wx-1-b/heartbeat", beat(10, 2, 20))
        .await
        .ok(204);
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(11, 1, 1))
        .await
        .ok(204);
    // A late copy of an older report is not counted either.
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(10, 5, 500))
        .await
        .ok(204);
    let usage = api.get("/v1/services/shop/usage").await.ok(200);
    assert_eq!(usage["requests"], 8, "{usage}");
    assert_eq!(usage["bytes_out"], 521);
    assert!(!usage["minutes"].as_array().expect("minutes").is_empty());

    let empty = api
        .get("/v1/services/shop/usage?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z")
        .await
        .ok(200);
    assert_eq!(empty["requests"], 0);
    api.get("/v1/services/shop/usage?from=yesterday")
        .await
        .err(400, "bad_request");
    api.get("/v1/services/nope/usage")
        .await
        .err(404, "not_found");

    api.create("tenants", common::tenant("other")).await;
    let other = api.with_token(&common::tenant_key(&api, "other").await);
    other
        .get("/v1/services/shop/usage")
        .await
        .err(404, "not_found");
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    assert_eq!(
        demo.get("/v1/services/shop/usage").await.ok(200)["requests"],
        8
    );
    plane.shutdown().await;
}

/// The load share of a node, from the DNS snapshot.
async fn load_in_dns_snapshot(api: &common::Api, node: &str) -> serde_json::Value {
    let dns = api
        .get("/v1/snapshots/dns?after=0&timeout_ms=0")
        .await
        .ok(200);
    dns["body"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"]["id"] == node)
        .expect("node in snapshot")["load_percent"]
        .clone()
}

#[tokio::test]
async fn usage_reports_set_the_nodes_load_share_in_the_dns_snapshot() {
    let (mut plane, api) = common::start_seeded().await;
    let mut node = api.get("/v1/nodes/wx-1-a").await.ok(200);
    for k in ["addresses", "status"] {
        node.as_object_mut().expect("object").remove(k);
    }
    node["capacity_mbps"] = json!(1);
    api.put("/v1/nodes/wx-1-a", node).await.ok(200);
    let beat = |seq: u64, bytes: u64| {
        json!({"role": "edge", "applied_version": 1, "usage_seq": seq,
               "usage": [{"service": "shop", "requests": 1, "bytes_out": bytes}]})
    };
    // The first report starts the clock; traffic is measured over windows of at least
    // 5 s: 100 MB in a window of well under 80 s is far above 1 Mbit/s.
    let window = std::time::Duration::from_millis(5_100);
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(1, 10))
        .await
        .ok(204);
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 0);
    tokio::time::sleep(window).await;
    let before = api.version().await;
    api.post("/v1/nodes/wx-1-a/heartbeat", beat(2, 100_000_000))
        .await
        .ok(204);
    assert!(
        api.version().await > before,
        "a new load share is a new version"
    );
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 255);
    let view = api.get("/v1/nodes/wx-1-a").await.ok(200);
    assert_eq!(view["status"]["load_percent"], 255, "{view}");
    assert!(view["status"]["load_mbps"].as_u64().expect("mbps") > 1);

    // Edge heartbeats without a report: nothing served. Within the window nothing is
    // measured (no noisy shares from heartbeats milliseconds apart); after it, 0.
    let idle = json!({"role": "edge", "applied_version": 1});
    api.post("/v1/nodes/wx-1-a/heartbeat", idle.clone())
        .await
        .ok(204);
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 255);
    tokio::time::sleep(window).await;
    api.post("/v1/nodes/wx-1-a/heartbeat", idle).await.ok(204);
    assert_eq!(load_in_dns_snapshot(&api, "wx-1-a").await, 0);
    plane.shutdown().await;
}

/// Metering: the edges' 5-minute totals are kept as the largest reported per node,
/// counter run and interval (a repeat or a late, smaller copy changes nothing; a restarted
/// node's new run adds), read grouped and stepped, scoped to the tenant, checked on
/// intake; samples of a service deleted since still count for its tenant; the retention
/// removes old samples (PostgreSQL: the months' partitions are made ahead).
#[tokio::test]
async fn metering_counts_each_interval_once_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    let store = plane.handle.as_ref().expect("running").store().clone();
    metering(&api, &store).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn metering_counts_each_interval_once_postgres() {
    lingjing_control::testing::with_scratch_postgres("metering", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        let store = handle.store().clone();
        metering(&api, &store).await;
        // This month's partition and the next two exist (made at start and by `maintain`).
        let mut w = store.write(false).await.expect("write");
        lingjing_control::store::meter::maintain(&mut w.tx, store.backend(), now_ms(), 0)
            .await
            .expect("maintain");
        w.commit().await.expect("commit");
        let mut conn = store.pool().acquire().await.expect("conn");
        let partitions: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent \
             WHERE p.relname = 'meter_samples'",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("partitions");
        assert!(partitions >= 3, "default + months: {partitions}");
        drop(conn);
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn metering(api: &common::Api, store: &std::sync::Arc<lingjing_control::Store>) {
    let now = now_ms() as u64;
    let t = now - now % 300_000 - 600_000;
    let sample = |service: &str, start: u64, requests: u64| {
        json!({"start_ms": start, "usage": {"service": service, "requests": requests,
            "bytes_out": requests * 100, "hit_requests": requests / 2,
            "hit_bytes_out": requests * 50, "miss_requests": 1, "miss_bytes_out": 10,
            "bytes_in": requests * 40}})
    };
    let beat = |epoch: u64, samples: Vec<serde_json::Value>| json!({"role": "edge", "meter": {"epoch": epoch, "samples": samples}});
    let post = |node: &'static str, body: serde_json::Value| {
        let api = api.clone();
        async move {
            api.post(&format!("/v1/nodes/{node}/heartbeat"), body)
                .await
                .ok(204);
        }
    };
    post("wx-1-a", beat(1, vec![sample("shop", t, 10)])).await;
    // The same report again: nothing more.
    post("wx-1-a", beat(1, vec![sample("shop", t, 10)])).await;
    // The interval's total grew; then a late copy of the smaller one arrives.
    post("wx-1-a", beat(1, vec![sample("shop", t, 12)])).await;
    post("wx-1-a", beat(1, vec![sample("shop", t, 10)])).await;
    // The node restarted: its new run's counts of the same interval add.
    post("wx-1-a", beat(2, vec![sample("shop", t, 5)])).await;
    post("wx-1-b", beat(9, vec![sample("shop", t + 300_000, 1)])).await;
    // A service deleted after it served still bills its tenant.
    api.create(
        "services",
        common::service("gone", "demo", &["gone.demo.example"]),
    )
    .await;
    post("wx-1-b", beat(9, vec![sample("gone", t, 2)])).await;
    api.delete("/v1/services/gone").await.ok(204);
    post("wx-1-b", beat(9, vec![sample("gone", t, 3)])).await;
    // Unknown services and samples from the future are skipped, not refused.
    post(
        "wx-1-b",
        beat(
            9,
            vec![sample("nope", t, 7), sample("shop", t + 3_600_000, 7)],
        ),
    )
    .await;

    let from = crate_rfc3339(t as i64 - 3_600_000);
    let to = crate_rfc3339(t as i64 + 3_600_000);
    let range = format!("from={from}&to={to}");
    let report = api.get(&format!("/v1/usage?{range}&step=5m")).await.ok(200);
    let shop = series(&report, "shop");
    assert_eq!(shop["total"]["requests"], 18, "{report}");
    assert_eq!(shop["total"]["bytes_out"], 1800, "{report}");
    assert_eq!(shop["total"]["hit_requests"], 8, "{report}"); // 6 + 2 + 0
    assert_eq!(shop["total"]["miss_requests"], 3, "{report}");
    assert_eq!(shop["total"]["bytes_in"], 720, "{report}");
    let points = shop["points"].as_array().expect("points");
    assert_eq!(points.len(), 2, "{report}");
    assert_eq!(points[0]["requests"], 17, "{report}");
    assert_eq!(points[0]["start"], crate_rfc3339(t as i64), "{report}");
    assert_eq!(series(&report, "gone")["total"]["requests"], 3, "{report}");
    assert_eq!(report["total"]["requests"], 21, "{report}");
    for (group, key, requests) in [
        ("node", "wx-1-a", 17),
        ("node", "wx-1-b", 4),
        ("site", "wx-1", 21),
        ("tenant", "demo", 21),
    ] {
        let r = api
            .get(&format!("/v1/usage?{range}&group={group}&step=1d"))
            .await
            .ok(200);
        assert_eq!(
            series(&r, key)["total"]["requests"],
            requests,
            "{group}: {r}"
        );
    }
    let by_month = api
        .get(&format!("/v1/usage?{range}&step=month&service=shop"))
        .await
        .ok(200);
    assert_eq!(by_month["total"]["requests"], 18, "{by_month}");
    assert_eq!(by_month["series"].as_array().map(Vec::len), Some(1));

    // Tenants read their own.
    let demo = api.with_token(&common::tenant_key(api, "demo").await);
    assert_eq!(
        demo.get(&format!("/v1/usage?{range}")).await.ok(200)["total"]["requests"],
        21
    );
    api.create("tenants", common::tenant("rival")).await;
    let rival = api.with_token(&common::tenant_key(api, "rival").await);
    assert_eq!(
        rival.get(&format!("/v1/usage?{range}")).await.ok(200)["series"],
        json!([])
    );
    rival
        .get(&format!("/v1/usage?{range}&tenant=demo"))
        .await
        .err(403, "forbidden");
    api.get(&format!("/v1/usage?{range}&group=planet"))
        .await
        .err(400, "bad_request");
    api.get("/v1/usage?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z&step=5m")
        .await
        .err(400, "bad_request");

    // Refused on intake, changing nothing.
    for (body, field) in [
        (
            beat(1, vec![sample("shop", t + 1, 1)]),
            "meter.samples[0].start_ms",
        ),
        (
            beat(
                1,
                vec![
                    json!({"start_ms": t, "usage": {"service": "shop", "requests": 1,
                "bytes_out": 0, "hit_requests": 1, "miss_requests": 1}}),
                ],
            ),
            "meter.samples[0].usage",
        ),
        (beat(1 << 63, vec![sample("shop", t, 1)]), "meter.epoch"),
        (
            beat(1, vec![sample("Not An Id", t, 1)]),
            "meter.samples[0].usage.service",
        ),
    ] {
        api.post("/v1/nodes/wx-1-a/heartbeat", body)
            .await
            .err_field(422, "invalid", field);
    }
    // A heartbeat refused for another part writes none of its metering either.
    let mut bad = beat(1, vec![sample("shop", t, 1000)]);
    bad["storage"] = json!({"used_bytes": 1, "free_bytes": 1, "blocks": 1});
    api.post("/v1/nodes/wx-1-a/heartbeat", bad)
        .await
        .err_field(422, "invalid", "storage");
    api.create("nodes", common::node("dns-9", "nj-1", &["dns"]))
        .await;
    api.post(
        "/v1/nodes/dns-9/heartbeat",
        json!({"role": "dns", "meter": {"epoch": 1, "samples": [sample("shop", t, 1)]}}),
    )
    .await
    .err_field(422, "invalid", "meter");
    let again = api.get(&format!("/v1/usage?{range}&step=5m")).await.ok(200);
    assert_eq!(again["total"]["requests"], 21, "{again}");

    // The retention: samples before the cutoff go.
    let mut w = store.write(false).await.expect("write");
    let (deleted, _) = lingjing_control::store::meter::maintain(
        &mut w.tx,
        store.backend(),
        now_ms(),
        t as i64 + 300_000,
    )
    .await
    .expect("maintain");
    w.commit().await.expect("commit");
    assert_eq!(deleted, 3, "wx-1-a's two runs and wx-1-b's gone at t");
    let after = api.get(&format!("/v1/usage?{range}&step=5m")).await.ok(200);
    assert_eq!(after["total"]["requests"], 1, "{after}");

    // Per line: the node's address the clients reached is in pool wx-1-telecom (line
    // telecom); one in no pool is on no known line ("").
    let at = |address: &str, requests: u64| {
        let mut s = sample("shop", t + 300_000, requests);
        s["usage"]["address"] = json!(address);
        s
    };
    post(
        "wx-1-a",
        beat(7, vec![at("10.1.0.3", 4), at("192.0.2.9", 2)]),
    )
    .await;
    let lines = api
        .get(&format!("/v1/usage?{range}&group=line&step=1d"))
        .await
        .ok(200);
    assert_eq!(series(&lines, "telecom")["total"]["requests"], 4, "{lines}");
    assert_eq!(series(&lines, "")["total"]["requests"], 3, "{lines}");
    let telecom = api
        .get(&format!("/v1/usage?{range}&line=telecom"))
        .await
        .ok(200);
    assert_eq!(telecom["total"]["requests"], 4, "{telecom}");
}

fn series<'a>(report: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    report["series"]
        .as_array()
        .expect("series")
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no series {key}: {report}"))
}

fn crate_rfc3339(ms: i64) -> String {
    lingjing_control::time::rfc3339_from_ms(ms)
}

/// A plan with a 10 Mbps commit (1000), overage at 20 per Mbps of the 95th percentile of
/// out, 6% tax, and a 99.90% SLA (10% credit below it, 25% below 99.0%).
fn cdn_plan() -> serde_json::Value {
    json!({"id": "cdn-std", "name": "CDN standard", "currency": "CNY", "tax_rate": "0.06",
        "cdn": {"kind": "percentile95", "direction": "out", "commit_mbps": "10",
                "commit_fee": "1000", "overage_per_mbps": "20"},
        "sla": {"target_percent": "99.90", "schedule": [
            {"below_percent": "99.90", "credit_percent": "10"},
            {"below_percent": "99.0", "credit_percent": "25"}]}})
}

/// Billing a closed month from metered samples and recorded health: the 95th
/// percentile of a known month of samples, a two-hour outage that breaks 99.90% and
/// credits that tenant only, a rerun that changes nothing (even with more samples), credit
/// notes as the one correction, drafts for the running month, tenant scoping.
#[tokio::test]
async fn a_closed_month_is_billed_once_with_the_95th_percentile_and_sla_credits_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    let store = plane.handle.as_ref().expect("running").store().clone();
    billing(&api, &store).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn a_closed_month_is_billed_once_with_the_95th_percentile_and_sla_credits_postgres() {
    lingjing_control::testing::with_scratch_postgres("billing", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        let store = handle.store().clone();
        billing(&api, &store).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}

async fn billing(api: &common::Api, store: &std::sync::Arc<lingjing_control::Store>) {
    use lingjing_billing::Month;
    let now = now_ms();
    let this = Month::of_ms(now);
    // The month before last: closed (a month closes some hours after its end, so last
    // month may still be open on the 1st).
    let last = Month::of_ms(Month::of_ms(this.start_ms() - 1).start_ms() - 1);

    // Plans: checked, then tenants put on them.
    let mut bad = cdn_plan();
    bad["currency"] = json!("yuan");
    api.post("/v1/plans", bad)
        .await
        .err_field(422, "invalid", "currency");
    api.post("/v1/plans", cdn_plan()).await.ok(201);
    api.post("/v1/plans", cdn_plan())
        .await
        .err(409, "already_exists");
    api.put("/v1/tenants/demo/plan", json!({"plan": "nope"}))
        .await
        .err_field(422, "invalid", "plan");
    api.put("/v1/tenants/demo/plan", json!({"plan": "cdn-std"}))
        .await
        .ok(200);
    // Rival serves from its own site, which stays up.
    api.create("tenants", common::tenant("rival")).await;
    api.create(
        "sites",
        common::site("nj-2", "cn-js-nanjing", &["telecom"], None),
    )
    .await;
    api.create("nodes", common::node("nj-2-a", "nj-2", &["edge"]))
        .await;
    let mut rsvc = common::service("rsvc", "rival", &["www.rival.example"]);
    rsvc["steering"] = json!({"sites": ["nj-2"]});
    api.create("services", rsvc).await;
    let mut shop = common::service("shop", "demo", &["www.demo.example"]);
    shop["steering"] = json!({"sites": ["wx-1"]});
    api.put("/v1/services/shop", shop).await.ok(200);
    api.put("/v1/tenants/rival/plan", json!({"plan": "cdn-std"}))
        .await
        .ok(200);
    api.delete("/v1/plans/cdn-std").await.err(409, "in_use");

    // Last month, every interval: sample i sends (i+1) x 375,000 bytes, (i+1) x 0.01
    // Mbps, in order of time; reported by one node in five heartbeats.
    let intervals = last.intervals() as u64;
    let start = last.start_ms() as u64;
    let samples: Vec<serde_json::Value> = (0..intervals)
        .map(|i| {
            json!({"start_ms": start + i * 300_000, "usage": {"service": "shop",
                "requests": 1, "bytes_out": (i + 1) * 375_000}})
        })
        .collect();
    for chunk in samples.chunks(2_000) {
        api.post(
            "/v1/nodes/wx-1-a/heartbeat",
            json!({"role": "edge", "meter": {"epoch": 3, "samples": chunk}}),
        )
        .await
        .ok(204);
    }
    // Both of shop's nodes down for two hours, ten days into the month.
    {
        let down = last.start_ms() + 10 * 86_400_000;
        let mut w = store.write(true).await.expect("write");
        for node in ["wx-1-a", "wx-1-b"] {
            for (at, healthy) in [(down, false), (down + 7_200_000, true)] {
                lingjing_control::store::health::record_change(
                    &mut w.tx,
                    node,
                    healthy,
                    &crate_rfc3339(at),
                    at,
                    "test",
                )
                .await
                .expect("health");
            }
        }
        w.commit().await.expect("commit");
    }

    let run = api
        .post("/v1/billing/runs", json!({"month": last.to_string()}))
        .await
        .ok(200);
    assert_eq!(run["closed"], true, "{run}");
    let lines = run["invoices"].as_array().expect("invoices");
    assert_eq!(lines.len(), 2, "{run}");
    let demo_number = format!("INV-{}{:02}-demo", last.year, last.month);
    // By hand: the 95th drops the top 5% (432 of 8,640; 446 of 8,928) and bills the
    // next: (n - dropped) x 0.01 Mbps. Overage above 10 at 20; the 2-hour outage is
    // below 99.90% (e.g. 99.7222% of 30 days): 10% credit; 6% tax on the rest.
    let n = i64::from(last.intervals());
    let p95_cents = n - n * 5 / 100; // in 0.01 Mbps
    let overage = rust_decimal::Decimal::new((p95_cents - 1000) * 20, 2);
    let subtotal = rust_decimal::Decimal::from(1000) + overage;
    let credit = lingjing_billing::round_money(subtotal / rust_decimal::Decimal::from(10));
    let tax = lingjing_billing::round_money((subtotal - credit) * rust_decimal::Decimal::new(6, 2));
    let total = subtotal - credit + tax;
    let demo = lines.iter().find(|l| l["tenant"] == "demo").expect("demo");
    assert_eq!(demo["outcome"], "issued", "{run}");
    assert_eq!(demo["number"], demo_number.as_str());
    assert_eq!(demo["total"], total.to_string(), "{run}");
    let rival = lines
        .iter()
        .find(|l| l["tenant"] == "rival")
        .expect("rival");
    assert_eq!(
        rival["total"], "1060.00",
        "commit and tax, no credit: {run}"
    );

    let invoice = api
        .get(&format!("/v1/invoices/{demo_number}"))
        .await
        .ok(200);
    assert_eq!(invoice["kind"], "invoice");
    let body = &invoice["invoice"];
    let overage_line = body["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["unit"] == "Mbps")
        .expect("overage line");
    let basis = overage_line["basis"].as_str().expect("basis");
    assert!(
        basis.contains(&format!("of {n} five-minute samples"))
            && basis.contains(&format!("top {} dropped", n * 5 / 100)),
        "{basis}"
    );
    let credit_line = body["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["category"] == "credit")
        .expect("credit line");
    assert_eq!(credit_line["amount"], (-credit).to_string(), "{invoice}");
    assert!(
        body["uptime"][0]["percent"]
            .as_str()
            .is_some_and(|p| p.starts_with("99.7")),
        "{invoice}"
    );
    let rival_invoice = api
        .get(&format!(
            "/v1/invoices/INV-{}{:02}-rival",
            last.year, last.month
        ))
        .await
        .ok(200);
    assert!(
        !rival_invoice["invoice"]["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .any(|l| l["category"] == "credit"),
        "{rival_invoice}"
    );
    let csv = api
        .get(&format!("/v1/invoices/{demo_number}?format=csv"))
        .await
        .ok(200);
    assert!(
        csv.as_str().is_some_and(
            |c| c.starts_with("category,description,quantity,unit,unit_price,amount,basis")
        ),
        "{csv}"
    );
    let html = api
        .get(&format!("/v1/invoices/{demo_number}?format=html"))
        .await
        .ok(200);
    assert!(
        html.as_str()
            .is_some_and(|h| h.contains(&demo_number) && h.contains("<html")),
        "{html}"
    );

    // A rerun of the closed month changes nothing, even with late samples arriving.
    api.post(
        "/v1/nodes/wx-1-b/heartbeat",
        json!({"role": "edge", "meter": {"epoch": 1, "samples": [
            {"start_ms": start, "usage": {"service": "shop", "requests": 1, "bytes_out": 999_000_000_000u64}}]}}),
    )
    .await
    .ok(204);
    let again = api
        .post("/v1/billing/runs", json!({"month": last.to_string()}))
        .await
        .ok(200);
    for l in again["invoices"].as_array().expect("invoices") {
        assert_eq!(l["outcome"], "unchanged", "{again}");
    }
    assert_eq!(
        api.get(&format!("/v1/invoices/{demo_number}"))
            .await
            .ok(200),
        invoice
    );

    // The correction: a credit note, at most what is left.
    api.post(
        &format!("/v1/invoices/{demo_number}/credit-notes"),
        json!({"amount": "1000000", "reason": "too much"}),
    )
    .await
    .err_field(422, "invalid", "amount");
    let note = api
        .post(
            &format!("/v1/invoices/{demo_number}/credit-notes"),
            json!({"amount": "100", "reason": "goodwill"}),
        )
        .await
        .ok(201);
    assert_eq!(note["kind"], "credit_note");
    assert_eq!(note["invoice"]["total"], "-100.00", "{note}");
    assert_eq!(note["refers_to"], demo_number.as_str());

    // The running month: drafts, replaced by each run.
    for _ in 0..2 {
        let draft = api
            .post("/v1/billing/runs", json!({"month": this.to_string()}))
            .await
            .ok(200);
        assert_eq!(draft["closed"], false, "{draft}");
        assert!(
            draft["invoices"]
                .as_array()
                .expect("invoices")
                .iter()
                .all(|l| l["outcome"] == "drafted"),
            "{draft}"
        );
    }
    let drafts = api
        .get(&format!("/v1/invoices?month={this}&tenant=demo"))
        .await
        .ok(200);
    assert_eq!(drafts.as_array().map(Vec::len), Some(1), "{drafts}");
    let draft_number = drafts[0]["invoice"]["number"].as_str().expect("number");
    api.post(
        &format!("/v1/invoices/{draft_number}/credit-notes"),
        json!({"amount": "1", "reason": "no"}),
    )
    .await
    .err(409, "not_final");
    api.post(
        "/v1/billing/runs",
        json!({"month": this.next().to_string()}),
    )
    .await
    .err(400, "bad_request");
    api.post("/v1/billing/runs", json!({"month": "2026-13"}))
        .await
        .err_field(422, "invalid", "month");

    // Tenants: their own invoices and plan, no runs.
    let rival_api = api.with_token(&common::tenant_key(api, "rival").await);
    rival_api
        .get(&format!("/v1/invoices/{demo_number}"))
        .await
        .err(404, "not_found");
    let own = rival_api.get("/v1/invoices").await.ok(200);
    assert!(
        own.as_array()
            .expect("array")
            .iter()
            .all(|r| r["invoice"]["tenant"] == "rival"),
        "{own}"
    );
    rival_api
        .post("/v1/billing/runs", json!({"month": last.to_string()}))
        .await
        .err(403, "forbidden");
    assert_eq!(
        rival_api.get("/v1/tenants/rival/plan").await.ok(200)["plan"],
        "cdn-std"
    );
    rival_api
        .get("/v1/tenants/demo/plan")
        .await
        .err(403, "forbidden");
}

/// Colocation: cabinets (no unit held twice, power over the contract warned of) billed
/// per cabinet-month and kW-month, prorated by units; an incident at the site credits
/// its colocation tenant; the segment report puts that revenue and the site's costs
/// (flat, and a bandwidth contract at its commit) in the IDC segment.
#[tokio::test]
async fn colocation_is_billed_and_the_segment_report_adds_up() {
    use lingjing_billing::Month;
    let (mut plane, api) = common::start_seeded().await;
    let this = Month::of_ms(now_ms());
    let last = Month::of_ms(Month::of_ms(this.start_ms() - 1).start_ms() - 1);
    let day1 = format!("{last}-01");
    api.post(
        "/v1/plans",
        json!({"id": "colo", "name": "Colocation", "currency": "CNY", "tax_rate": "0",
            "colocation": {"per_cabinet_month": "3000", "per_kw_month": "200",
                "bandwidth": {"direction": "max", "commit_mbps": "100", "commit_fee": "500",
                              "overage_per_mbps": "10"}},
            "sla": {"target_percent": "99.90", "schedule": [
                {"below_percent": "99.90", "credit_percent": "10"}]}}),
    )
    .await
    .ok(201);
    api.create("tenants", common::tenant("idc1")).await;
    api.put("/v1/tenants/idc1/plan", json!({"plan": "colo"}))
        .await
        .ok(200);
    let cabinet = |id: &str, assignments: serde_json::Value| {
        json!({"id": id, "site": "wx-1", "room": "hall-1", "rack_units": 42,
            "contracted_watts": 5000, "assignments": assignments})
    };
    let mut a01 = cabinet("a01", json!([{"tenant": "idc1", "from": day1}]));
    a01["cross_connects"] =
        json!([{"id": "xc1", "tenant": "idc1", "carrier": "telecom", "commit_mbps": 100}]);
    api.create("cabinets", a01).await;
    // The collector's samples of the cross-connect: 150 Mbps out all month (5.625 GB
    // per 5 minutes), so its 95th percentile is 150 Mbps, 50 above the commit.
    let samples: Vec<serde_json::Value> = (0..i64::from(last.intervals()))
        .map(|i| {
            json!({"start_ms": last.start_ms() + i * 300_000, "bytes_in": 1000,
                   "bytes_out": 5_625_000_000u64})
        })
        .collect();
    api.post(
        "/v1/cabinets/a01/cross-connects/xc1/samples",
        json!({ "samples": samples }),
    )
    .await
    .ok(204);
    api.post(
        "/v1/cabinets/a01/cross-connects/xc1/samples",
        json!({"samples": [{"start_ms": 1, "bytes_in": 0, "bytes_out": 0}]}),
    )
    .await
    .err_field(422, "invalid", "samples[0].start_ms");
    api.post(
        "/v1/cabinets/a01/cross-connects/nope/samples",
        json!({"samples": []}),
    )
    .await
    .err(404, "not_found");
    let half = json!([{"tenant": "idc1", "units": [1, 21], "from": day1}]);
    api.create("cabinets", cabinet("a02", half.clone())).await;
    // A unit held twice on one day: refused, changing nothing.
    let mut twice = half.as_array().expect("array").clone();
    twice.push(json!({"tenant": "demo", "units": [10, 30], "from": day1}));
    api.put("/v1/cabinets/a02", cabinet("a02", json!(twice)))
        .await
        .err_field(422, "invalid", "assignments[1].units");
    // An unknown tenant: refused.
    api.put(
        "/v1/cabinets/a02",
        cabinet("a02", json!([{"tenant": "nobody", "from": day1}])),
    )
    .await
    .err_field(422, "invalid", "assignments[0].tenant");
    // Drawing more than the contract: kept, with a warning.
    let mut hot = cabinet("a02", half);
    hot["measured_watts"] = json!(6000);
    let view = api.put("/v1/cabinets/a02", hot).await.ok(200);
    assert!(
        view["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("draws 6000 W")),
        "{view}"
    );
    api.delete("/v1/tenants/idc1").await.err(409, "in_use");
    // Two hours of the site's uplinks down in the month.
    let down = last.start_ms() + 5 * 86_400_000;
    api.post(
        "/v1/incidents",
        json!({"id": "wx-1-fibre-cut", "site": "wx-1", "start": crate_rfc3339(down),
            "end": crate_rfc3339(down + 7_200_000), "what": "fibre cut"}),
    )
    .await
    .ok(201);
    api.post(
        "/v1/incidents",
        json!({"id": "bad", "site": "wx-1", "start": crate_rfc3339(down),
            "end": crate_rfc3339(down - 1), "what": "backwards"}),
    )
    .await
    .err_field(422, "invalid", "end");

    let run = api
        .post("/v1/billing/runs", json!({"month": last.to_string()}))
        .await
        .ok(200);
    let idc1 = run["invoices"]
        .as_array()
        .expect("invoices")
        .iter()
        .find(|l| l["tenant"] == "idc1")
        .expect("idc1")
        .clone();
    // a01: 1 cabinet-month x 3000 + 5 kW-months x 200; a02 (units 1-21 of 42): 0.5 x
    // 3000 + 2.5 x 200; bandwidth: the 500 commit + 50 Mbps x 10; 7000, less 10% for
    // the outage.
    assert_eq!(idc1["total"], "6300.00", "{run}");
    let invoice = api
        .get(&format!(
            "/v1/invoices/{}",
            idc1["number"].as_str().expect("number")
        ))
        .await
        .ok(200);
    let lines = invoice["invoice"]["lines"].as_array().expect("lines");
    assert!(
        lines
            .iter()
            .any(|l| l["unit"] == "cabinet-month" && l["quantity"] == "0.5"),
        "{invoice}"
    );
    assert_eq!(invoice["invoice"]["uptime"][0]["category"], "colocation");

    // Costs: a flat IDC cost and a shared bandwidth contract billed at its commit.
    api.put(
        "/v1/costs/wx-1-lease",
        json!({"id": "wx-1-lease", "site": "wx-1", "segment": "idc",
            "description": "Hall lease", "basis": {"kind": "flat", "monthly": "2000"}}),
    )
    .await
    .ok(200);
    api.put(
        "/v1/costs/wx-1-transit",
        json!({"id": "wx-1-transit", "site": "wx-1", "description": "Telecom transit",
            "basis": {"kind": "percentile95", "direction": "max", "price_per_mbps": "10",
                      "commit_mbps": "100"}}),
    )
    .await
    .ok(200);
    api.put(
        "/v1/costs/bad",
        json!({"id": "bad", "site": "nowhere", "description": "x",
            "basis": {"kind": "flat", "monthly": "1"}}),
    )
    .await
    .err_field(422, "invalid", "site");
    let report = api
        .get(&format!("/v1/reports/segments?month={last}"))
        .await
        .ok(200);
    let idc = &report["segments"][0];
    assert_eq!(idc["segment"], "idc", "{report}");
    assert_eq!(idc["revenue"], "6300.00", "{report}");
    assert_eq!(idc["cost"], "3000.00", "{report}");
    assert_eq!(idc["gross_margin"], "3300.00", "{report}");
    assert_eq!(report["sites"][0]["site"], "wx-1", "{report}");
    assert_eq!(report["total"]["revenue"], "6300.00", "{report}");
    let demo = api.with_token(&common::tenant_key(&api, "demo").await);
    demo.get("/v1/reports/segments").await.err(403, "forbidden");
    demo.get("/v1/cabinets").await.err(403, "forbidden");
    // A tenant changes none of the operator's books, nor another's cabinet or plan.
    demo.post("/v1/plans", cdn_plan())
        .await
        .err(403, "forbidden");
    demo.put("/v1/tenants/demo/plan", json!({"plan": "colo"}))
        .await
        .err(403, "forbidden");
    demo.put(
        "/v1/costs/x",
        json!({"id": "x", "site": "wx-1", "description": "x",
            "basis": {"kind": "flat", "monthly": "1"}}),
    )
    .await
    .err(403, "forbidden");
    demo.post(
        "/v1/incidents",
        json!({"id": "x", "site": "wx-1", "start": crate_rfc3339(down),
            "end": crate_rfc3339(down + 1), "what": "x"}),
    )
    .await
    .err(403, "forbidden");
    demo.post(
        "/v1/cabinets/a01/cross-connects/xc1/samples",
        json!({"samples": []}),
    )
    .await
    .err(403, "forbidden");
    demo.put("/v1/cabinets/a02", cabinet("a02", json!([])))
        .await
        .err(403, "forbidden");
    assert_eq!(demo.get("/v1/invoices").await.ok(200), json!([]));
    plane.shutdown().await;
}
