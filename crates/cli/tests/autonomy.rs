//! Offline autonomy of the data planes, with real processes: an edge node and a GSLB DNS
//! server fed by `lingjing up`'s control plane (the edge caches a page, DNS answers a Wuxi
//! telecom client); then the whole control side (control plane and origin) is killed with
//! SIGKILL, and the edge keeps serving the page and DNS keeps answering — also after each
//! of them is restarted, from the snapshot (and disk cache) it kept. Then the control plane
//! comes back on the same database and address, an operator drains a node and changes the
//! service's steering, and both reach the DNS server and the edge without restarting them.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use common::{
    Access, EdgeProc, Proc, Response, eventually, get, join_token, resolve, start_dns, start_edge,
};
use lingjing_client::Client;
use serde_json::Value;

const NAME: &str = "demo.cdn.lingjing.test.";
const HOST: &str = "www.demo.example";
/// A telecom client in Wuxi (the demo splits 198.51.100.0/24 per city; Wuxi is the first /26).
const WUXI_TELECOM: &str = "198.51.100.1/32";

/// `lingjing up` on `data`, its control plane on `listen` and its demo origin on
/// `origin`; returns it, the control plane's URL and the origin's address.
fn start_up(data: &Path, listen: &str, origin: &str) -> (Proc, String, String) {
    let mut up = Proc::spawn(
        "lingjing up",
        [
            "up".as_ref(),
            "--listen".as_ref(),
            listen.as_ref(),
            "--origin-listen".as_ref(),
            origin.as_ref(),
            "--dns-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--dns-admin".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--edge-http-port".as_ref(),
            "0".as_ref(),
            "--edge-https-port".as_ref(),
            "0".as_ref(),
            "--edge-admin-port".as_ref(),
            "0".as_ref(),
            "--s3-listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--s3-admin".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--storage-port".as_ref(),
            "0".as_ref(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ],
    );
    let url = up.wait_for("the control plane URL", |l| {
        let rest = l.trim().strip_prefix("control plane")?;
        rest.split_whitespace().next().map(str::to_owned)
    });
    let origin = up.wait_for("the origin's address", |l| {
        let rest = l.trim().strip_prefix("demo origin")?;
        let url = rest.split_whitespace().next()?;
        Some(
            url.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
        )
    });
    up.wait_for("that it is up", |l| {
        l.contains("Ctrl-C stops everything").then_some(())
    });
    (up, url, origin)
}

/// The edge process, trusting `up`'s CA; with a join token on its first start, later
/// with the credential it kept.
fn standalone_edge(data: &Path, endpoint: &str, join_token: Option<&str>) -> EdgeProc {
    let ca = data.join("ca.pem");
    let access = Access {
        ca: Some(&ca),
        join_token,
    };
    start_edge(
        "wuxi-1-e1",
        IpAddr::from([127, 0, 0, 1]),
        endpoint,
        access,
        &data.join("standalone-edge"),
        true,
    )
}

fn standalone_dns(data: &Path, endpoint: &str, join_token: Option<&str>) -> (Proc, SocketAddr) {
    let ca = data.join("ca.pem");
    let access = Access {
        ca: Some(&ca),
        join_token,
    };
    start_dns(
        "nanjing-1-dns1",
        endpoint,
        access,
        &data.join("standalone-dns"),
    )
}

/// Asserts that DNS answers the Wuxi telecom client with `expected`; when it does not,
/// says what a few more queries get (one odd answer, or all of them).
fn answers(dns: SocketAddr, expected: &[IpAddr], what: &str) {
    let got = resolve(dns, NAME, WUXI_TELECOM);
    if got.as_deref() != Ok(expected) {
        let more: Vec<_> = (0..5).map(|_| resolve(dns, NAME, WUXI_TELECOM)).collect();
        panic!("{what}: answered {got:?} instead of {expected:?}; then {more:?}");
    }
}

fn fetch(edge: &EdgeProc) -> Response {
    get(edge.http, HOST, "/").unwrap_or_else(|e| panic!("fetch from {}: {e}", edge.http))
}

/// The snapshot version the edge has applied, from its metrics.
fn edge_version(edge: &EdgeProc) -> Option<u64> {
    let metrics = get(edge.admin, "localhost", "/metrics").ok()?;
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|l| l.strip_prefix("lingjing_edge_snapshot_version "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_planes_keep_serving_without_the_control_plane_and_catch_up_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut up, endpoint, origin) = start_up(&data, "127.0.0.1:0", "127.0.0.1:0");
    let token = std::fs::read_to_string(data.join("operator.token")).expect("token");
    let token = token.trim();
    let operator = Client::with_ca(&endpoint, token, Some(&data.join("ca.pem"))).expect("client");
    let edge_join = join_token(&operator, "wuxi-1-e1").await;
    let dns_join = join_token(&operator, "nanjing-1-dns1").await;
    let mut edge = standalone_edge(&data, &endpoint, Some(&edge_join));
    let (mut dns_proc, dns) = standalone_dns(&data, &endpoint, Some(&dns_join));

    // The edge gets its snapshot from the control plane; then it caches the page.
    let first = eventually("the page through the edge", Duration::from_secs(20), || {
        get(edge.http, HOST, "/").ok().filter(|r| r.status == 200)
    });
    let hit = fetch(&edge);
    assert!(hit.head.contains("x-cache: hit"), "{}", hit.head);
    // DNS gets its snapshot: the Wuxi telecom client is answered with the Wuxi node.
    let wuxi: IpAddr = "127.0.1.1".parse().expect("ip");
    eventually(
        "DNS answers the Wuxi telecom client with the Wuxi node",
        Duration::from_secs(20),
        || (resolve(dns, NAME, WUXI_TELECOM).ok()? == vec![wuxi]).then_some(()),
    );

    // The control plane and the origin die.
    up.kill9();
    let still = fetch(&edge);
    assert!(
        still.head.contains("x-cache: hit"),
        "without the control plane: {}",
        still.head
    );
    answers(dns, &[wuxi], "DNS without the control plane");

    // The edge restarts with nothing but its state directory (snapshot, disk cache and
    // credential).
    edge.proc.terminate();
    drop(edge);
    let edge = standalone_edge(&data, &endpoint, None);
    let after = fetch(&edge);
    assert_eq!(after.status, 200, "after restart: {}", after.head);
    assert!(
        after.head.contains("x-cache: hit"),
        "served from the disk cache: {}",
        after.head
    );
    assert_eq!(after.body, first.body);

    // So does DNS: it answers from the snapshot it kept as soon as it listens.
    dns_proc.terminate();
    drop(dns_proc);
    let (_dns_proc, dns) = standalone_dns(&data, &endpoint, None);
    answers(dns, &[wuxi], "DNS restarted without the control plane");
    let offline_version = edge_version(&edge).expect("the edge's snapshot version");

    // The control plane comes back on the same database and address; the data planes
    // reconnect by themselves. An operator drains the Wuxi node and asks for two answers.
    let listen = endpoint.trim_start_matches("https://").to_owned();
    // The origin too, as `up` on its default addresses does: the service's origin (which
    // only the operator's allowance admits) is where it was.
    let (_up, again, _) = start_up(&data, &listen, &origin);
    assert_eq!(again, endpoint);
    let out = std::process::Command::new(common::BIN)
        .args([
            "node",
            "drain",
            "wuxi-1-e1",
            "--endpoint",
            &endpoint,
            "--token",
            token,
        ])
        .arg("--ca")
        .arg(data.join("ca.pem"))
        .output()
        .expect("lingjing node drain");
    assert!(
        out.status.success(),
        "node drain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let api = operator;
    let mut service: Value = api.get("/v1/services/demo").await.expect("service");
    // Read-only fields of the view.
    let fields = service.as_object_mut().expect("object");
    fields.remove("cname");
    fields.remove("hostname_status");
    service["steering"]["answer_count"] = 2.into();
    let _: Value = api
        .put("/v1/services/demo", &service)
        .await
        .expect("update the service");
    let snapshot: Value = api
        .get("/v1/snapshots/edge?after=0&timeout_ms=1000")
        .await
        .expect("edge snapshot");
    let version = snapshot["version"].as_u64().expect("version");
    assert!(version > offline_version);

    // DNS: two answers (the policy), neither of them the drained node.
    let mut answer = eventually(
        "DNS answers with two undrained nodes",
        Duration::from_secs(30),
        || {
            resolve(dns, NAME, WUXI_TELECOM)
                .ok()
                .filter(|a| a.len() == 2 && !a.contains(&wuxi))
        },
    );
    answer.sort();
    let expected: Vec<IpAddr> = ["127.0.1.9", "127.0.1.17"]
        .iter()
        .map(|a| a.parse().expect("ip"))
        .collect();
    assert_eq!(answer, expected, "Suqian and Taizhou");
    // The edge applies the new snapshot too.
    eventually(
        "the edge applies the snapshot with the change",
        Duration::from_secs(30),
        || edge_version(&edge).filter(|v| *v >= version),
    );
    let served = fetch(&edge);
    assert_eq!(served.status, 200, "{}", served.head);
}
