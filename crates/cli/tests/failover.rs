//! Failover, end to end with real processes: `lingjing control` (with its health prober),
//! `lingjing dns` and four `lingjing edge` nodes (three edges and the regional parent) on
//! their own loopback addresses, serving the demo topology from the demo origin. A Wuxi
//! telecom client (EDNS Client Subnet) resolves the service to the Wuxi node and fetches
//! through it; then that edge is killed with SIGKILL, and within 5 s DNS stops answering
//! with it, and the client's next resolution and fetch go through another node. When the
//! node comes back, DNS hands it out again after three passed probes, and the SLA report
//! counts its outage: from its first failed check to its first passed one, so the
//! recorded downtime matches the real one within about a probe interval.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{Access, join_token, start_dns, start_edge};
use common::{EdgeProc, eventually, get, now_ms, record_ports, resolve};
use lingjing_client::Client;
use lingjing_control::time::rfc3339_from_ms;
use serde_json::Value;

const NAME: &str = "demo.cdn.lingjing.test.";
const HOST: &str = "www.demo.example";
/// A telecom client in Wuxi (the demo splits 198.51.100.0/24 per city; Wuxi is the first /26).
const WUXI_TELECOM: &str = "198.51.100.1/32";
const WUXI_NODE: &str = "wuxi-1-e1";
const TOKEN: &str = "failover-test-operator-token-0123456789";

/// The nodes' health as the control plane shows it: id -> healthy (`None`: not probed yet).
async fn health(api: &Client) -> BTreeMap<String, (Option<bool>, String)> {
    let nodes: Vec<Value> = api.get("/v1/nodes").await.expect("list nodes");
    nodes
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                (
                    n["status"]["healthy"].as_bool(),
                    n["status"]["health_reason"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_fails_over_when_an_edge_dies_and_the_sla_report_counts_the_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The origin runs in the test; everything else is a `lingjing` process.
    let platform = common::DemoPlatform::start(dir.path(), TOKEN).await;
    let (url, api) = (platform.url.clone(), platform.api.clone());

    // One edge process per edge or parent node, on the node's address from IPAM, with its
    // real ports written into the inventory so the health probes reach it.
    let nodes: Vec<Value> = api.get("/v1/nodes").await.expect("nodes");
    let mut edges: Vec<EdgeProc> = Vec::new();
    for n in &nodes {
        let roles = n["roles"].as_array().expect("roles");
        if !roles.iter().any(|r| r == "edge" || r == "parent") {
            continue;
        }
        let id = n["id"].as_str().expect("id");
        let ip: IpAddr = n["addresses"][0]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{id} has an address: {n}"));
        let token = join_token(&api, id).await;
        let access = Access {
            join_token: Some(&token),
            ..Default::default()
        };
        let edge = start_edge(id, ip, &url, access, &dir.path().join(id), false);
        record_ports(&api, &edge).await.expect("record the ports");
        edges.push(edge);
    }
    assert_eq!(edges.len(), 4, "three edges and the parent");
    let token = join_token(&api, "nanjing-1-dns1").await;
    let access = Access {
        join_token: Some(&token),
        ..Default::default()
    };
    let (_dns, dns) = start_dns("nanjing-1-dns1", &url, access, &dir.path().join("dns"));

    // Every node passes its probes (on its real ports; a probe of the seeded default port
    // before that may have marked one down, which takes 3 passes to undo).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = health(&api).await;
        if edges.iter().all(|e| h[&e.node].0 == Some(true)) {
            break;
        }
        assert!(Instant::now() < deadline, "nodes not healthy: {h:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The SLA window starts with every node up.
    let from_ms = now_ms();

    let wuxi = edges
        .iter()
        .position(|e| e.node == WUXI_NODE)
        .expect("wuxi");
    let wuxi_ip = edges[wuxi].http.ip();
    eventually(
        "DNS answers the Wuxi telecom client with the Wuxi node",
        Duration::from_secs(20),
        || (resolve(dns, NAME, WUXI_TELECOM).ok()? == vec![wuxi_ip]).then_some(()),
    );
    let page = eventually(
        "the page through the Wuxi node",
        Duration::from_secs(20),
        || {
            get(edges[wuxi].http, HOST, "/")
                .ok()
                .filter(|r| r.status == 200)
        },
    );
    assert!(!page.body.is_empty());

    // The Wuxi edge dies.
    let killed = Instant::now();
    let killed_ms = now_ms();
    edges[wuxi].proc.kill9();

    // DNS stops handing it out: measured from the kill, within 5 s (2 failed probes one
    // second apart, then the snapshot pushed to DNS by long-poll).
    eventually(
        "DNS stops answering with the dead node",
        Duration::from_secs(30),
        || {
            resolve(dns, NAME, WUXI_TELECOM)
                .ok()
                .filter(|a| !a.is_empty() && !a.contains(&wuxi_ip))
        },
    );
    let failover = killed.elapsed();
    let seen_ms = now_ms();
    assert!(
        failover < Duration::from_secs(5),
        "DNS still answered with the dead node {failover:?} after the kill"
    );

    // The client's next resolutions and its fetch go through another node. Right after a
    // change, a UDP worker of the DNS server that was waiting for packets may answer from
    // the snapshot it had when it started waiting (at most one receive timeout old), so
    // this waits (with a generous deadline) until 10 resolutions in a row agree.
    let next = eventually(
        "10 resolutions in a row agree, without the dead node",
        Duration::from_secs(20),
        || {
            let all: Vec<Vec<IpAddr>> = (0..10)
                .map(|_| resolve(dns, NAME, WUXI_TELECOM).ok())
                .collect::<Option<_>>()?;
            let first = all[0].clone();
            (!first.is_empty() && !first.contains(&wuxi_ip) && all.iter().all(|a| *a == first))
                .then_some(first)
        },
    );
    let other = edges
        .iter()
        .find(|e| e.http.ip() == next[0])
        .unwrap_or_else(|| panic!("{next:?} is the address of a running edge"));
    assert_ne!(other.node, WUXI_NODE);
    let again = get(other.http, HOST, "/").expect("fetch through the other node");
    assert_eq!(again.status, 200, "{}", again.head);
    assert_eq!(again.body, page.body);

    let h = health(&api).await;
    assert_eq!(h[WUXI_NODE].0, Some(false), "{h:?}");
    assert!(h[WUXI_NODE].1.contains("failed"), "{h:?}");

    // The node comes back, 3 s after the kill (an outage long enough to measure): a new
    // process (on new ports, written into the inventory); after 3 passed probes it is up
    // again, and DNS hands it out again. It authenticates with the credential it kept.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(killed.elapsed())).await;
    let restart_ms = now_ms();
    edges[wuxi] = start_edge(
        WUXI_NODE,
        wuxi_ip,
        &url,
        Access::default(),
        &dir.path().join(WUXI_NODE),
        false,
    );
    record_ports(&api, &edges[wuxi])
        .await
        .expect("record the new ports");
    let ported_ms = now_ms();
    eventually(
        "DNS answers with the Wuxi node again",
        Duration::from_secs(30),
        || (resolve(dns, NAME, WUXI_TELECOM).ok()? == vec![wuxi_ip]).then_some(()),
    );
    let back_ms = now_ms();
    let back = get(edges[wuxi].http, HOST, "/").expect("fetch through the Wuxi node again");
    assert_eq!(back.status, 200, "{}", back.head);

    // The SLA report over the window counts the outage, which the prober records from the
    // start of the first failed check (of the 2 that mark a node down) to the start of the
    // first passed check (of the 3 that mark it up again). So the recorded outage is the
    // real one (from the kill until the new process listens) within about one probe
    // interval (1 s) at each end:
    // - it starts no earlier than the kill (less a check in flight then, `early`), no
    //   later than the first check after it (one interval, plus `late` for a late tick
    //   on a loaded machine), and before DNS dropped the node (stored, then published);
    // - it ends no earlier than the new process started, no later than the first check
    //   after its ports were recorded, and before DNS answered with the node again.
    // The report rounds the downtime to 0.001 minute (60 ms).
    let to_ms = now_ms();
    let report: Value = api
        .get(&format!(
            "/v1/sla?target=99.90&from={}&to={}",
            rfc3339_from_ms(from_ms),
            rfc3339_from_ms(to_ms)
        ))
        .await
        .expect("SLA report");
    let entry = |kind: &str, id: &str| -> Value {
        report["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .find(|e| e["kind"] == kind && e["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {id} in {report:#}"))
    };
    let down_ms =
        |e: &Value| (e["downtime_minutes"].as_f64().expect("minutes") * 60_000.0).round() as i64;
    let node = entry("node", WUXI_NODE);
    let down = down_ms(&node);
    let (early, late, rounding) = (500, 500, 60);
    let down_at_most = seen_ms.min(killed_ms + 1_000 + late);
    let up_at_most = back_ms.min(ported_ms + 1_000 + late);
    let least = restart_ms - down_at_most - rounding;
    let most = up_at_most - (killed_ms - early) + rounding;
    eprintln!(
        "DNS dropped the node {failover:?} after the kill; the edge was dead for {} ms, and out of DNS for {} ms; recorded downtime {down} ms (bounds {least}..={most})",
        restart_ms - killed_ms,
        back_ms - killed_ms
    );
    assert!(
        (least..=most).contains(&down),
        "recorded downtime {down} ms, expected {least}..={most} ms; {node:#}"
    );
    // Availability is the up share of the window (the minutes above are rounded: 60 ms).
    let window = (to_ms - from_ms) as f64;
    let availability = node["availability"].as_f64().expect("availability");
    assert!(
        (availability - 100.0 * (1.0 - down as f64 / window)).abs() <= 100.0 * 60.0 / window,
        "availability over a window of {window} ms: {node:#}"
    );
    assert_eq!(node["meets_target"], false, "{node:#}");
    assert!(
        report["below_target"]
            .as_array()
            .expect("below_target")
            .iter()
            .any(|e| e["id"] == WUXI_NODE),
        "{report:#}"
    );
    // Its site had no other node: the same outage. The service had others: none.
    assert_eq!(down_ms(&entry("site", "wuxi-1")), down, "{report:#}");
    assert_eq!(down_ms(&entry("service", "demo")), 0, "{report:#}");
    for e in edges.iter().filter(|e| e.node != WUXI_NODE) {
        assert_eq!(down_ms(&entry("node", &e.node)), 0, "{report:#}");
    }
}
