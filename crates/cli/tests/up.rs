//! End-to-end test of the binary: `lingjing up` on a fresh data directory seeds the demo
//! topology, operator commands read it back, its GSLB DNS answers a client of a demo line
//! with that line's node (and another once that node is drained, and the operator's static
//! records), SIGTERM stops it cleanly, and a second `up` on the same directory reuses it
//! without duplicating anything. The control API is HTTPS from `up`'s own CA: the CLI
//! finds endpoint, CA and token in the data directory, and refuses the server without the
//! CA; the secrets in the data directory are readable by their owner only, and the data
//! planes hold their own credentials, never the operator token.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_lingjing");

/// A running `up`: the child, the control plane URL, the edge node URLs by node id and
/// the DNS server's address.
struct Up {
    child: Running,
    url: String,
    edges: Vec<(String, String)>,
    dns: SocketAddr,
    /// The S3 gateway's URL and the demo key (access key, secret).
    s3: String,
    s3_key: (String, String),
    /// The gateway's `/metrics` URL.
    s3_admin: String,
    /// The console's sign-in link.
    sign_in: String,
    /// The edge AI node's base URL.
    aiot: String,
}

/// The `up` process, killed if the test fails before it is terminated.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `lingjing up` on free ports.
fn start_up(data_dir: &Path) -> Up {
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--origin-listen",
            "127.0.0.1:0",
            "--dns-listen",
            "127.0.0.1:0",
            "--dns-admin",
            "127.0.0.1:0",
            "--edge-http-port",
            "0",
            "--edge-https-port",
            "0",
            "--edge-admin-port",
            "0",
            "--s3-listen",
            "127.0.0.1:0",
            "--s3-admin",
            "127.0.0.1:0",
            "--storage-port",
            "0",
            "--aiot-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lingjing up");
    let stdout = child.stdout.take().expect("stdout");
    let mut url = None;
    let mut dns = None;
    let mut edges = Vec::new();
    let mut s3 = None;
    let mut s3_key = None;
    let mut s3_admin = None;
    let mut sign_in = None;
    let mut aiot = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read stdout");
        if let Some(rest) = line.trim().strip_prefix("control plane") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("sign in") {
            sign_in = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("GSLB DNS") {
            dns = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        }
        if let Some(rest) = line.trim().strip_prefix("edge ") {
            let mut words = rest.split_whitespace();
            if let (Some(node), Some(http)) = (words.next(), words.next()) {
                edges.push((node.to_owned(), http.to_owned()));
            }
        }
        if let Some(rest) = line.trim().strip_prefix("S3 demo key") {
            let mut words = rest.split_whitespace();
            if let (Some(a), Some(s)) = (words.next(), words.next()) {
                s3_key = Some((a.to_owned(), s.to_owned()));
            }
        } else if let Some(rest) = line.trim().strip_prefix("S3 admin") {
            s3_admin = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some(rest) = line.trim().strip_prefix("S3 ") {
            s3 = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.trim().strip_prefix("AI inference") {
            aiot = rest
                .split_whitespace()
                .next()
                .map(|u| u.trim_end_matches("/v1/slots").to_owned());
        }
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    Up {
        child: Running(Some(child)),
        s3: s3.expect("up printed the S3 endpoint"),
        s3_key: s3_key.expect("up printed the demo S3 key"),
        s3_admin: s3_admin.expect("up printed the S3 admin URL"),
        url: url.expect("up printed the control plane URL"),
        sign_in: sign_in.expect("up printed the console's sign-in link"),
        edges,
        dns: dns.expect("up printed the DNS address"),
        aiot: aiot.expect("up printed the edge AI node's address"),
    }
}

/// Runs `lingjing ARGS` with nothing but `--data-dir` (endpoint, CA and token come from it).
fn lingjing_in(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("LINGJING_TOKEN")
        .env_remove("LINGJING_ENDPOINT")
        .env_remove("LINGJING_CA")
        .output()
        .expect("run lingjing")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The data directory, the database and every secret in it are readable by their owner
/// only; each data plane has its own credential, and no file but `operator.token` holds
/// the operator token.
#[cfg(unix)]
fn secrets_are_private(data: &Path) {
    assert_eq!(mode(data), 0o700, "{}", data.display());
    for f in [
        "lingjing.db",
        "lingjing.db-wal",
        "lingjing.db-shm",
        "operator.token",
        "ca-key.pem",
        "control-key.pem",
        "s3-demo-key",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    let token = std::fs::read_to_string(data.join("operator.token")).expect("token file");
    let token = token.trim().as_bytes();
    let mut credentials = 0;
    let mut snapshots = 0;
    for entry in std::fs::read_dir(data).expect("data dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let node_dir = ["edge-", "dns-", "storage-", "s3-", "aiot-"]
            .iter()
            .any(|p| name.starts_with(p))
            && entry.path().is_dir();
        if !node_dir && name != "s3" {
            continue;
        }
        assert_eq!(mode(&entry.path()), 0o700, "{name}");
        for f in files_under(&entry.path()) {
            let fname = f.file_name().expect("name").to_string_lossy().into_owned();
            if fname.ends_with(".credential") {
                credentials += 1;
                assert_eq!(mode(&f), 0o600, "{}", f.display());
            }
            if fname.ends_with(".snapshot.json") {
                snapshots += 1;
                assert_eq!(mode(&f), 0o600, "{}", f.display());
            }
            // A temp file of the cache may be renamed away meanwhile.
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            assert!(
                !bytes.windows(token.len()).any(|w| w == token),
                "{} holds the operator token",
                f.display()
            );
        }
        if name.starts_with("edge-") {
            assert_eq!(mode(&entry.path().join("cache")), 0o700, "{name}/cache");
        }
        if name.starts_with("storage-") {
            assert_eq!(mode(&entry.path().join("blocks")), 0o700, "{name}/blocks");
        }
        if name.starts_with("aiot-") {
            assert_eq!(mode(&entry.path().join("models")), 0o700, "{name}/models");
        }
    }
    assert_eq!(
        credentials, 10,
        "four edge nodes, the DNS node, three storage nodes, the S3 gateway and the edge AI node"
    );
    assert_eq!(snapshots, 10);
}

fn lingjing(data_dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--endpoint")
        .arg(endpoint)
        .env_remove("LINGJING_TOKEN")
        .output()
        .expect("run lingjing");
    assert!(
        out.status.success(),
        "lingjing {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn terminate(mut running: Running) {
    let mut child = running.0.take().expect("running");
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    for _ in 0..200 {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "lingjing up exited with {status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("lingjing up did not stop on SIGTERM");
}

#[test]
fn up_seeds_once_and_serves_operator_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    let Up {
        child,
        url,
        edges,
        dns,
        s3,
        s3_key,
        s3_admin,
        sign_in,
        aiot,
    } = start_up(&data);
    edge_ai_serves_the_demo_model(&aiot);
    a_patrol_frame_becomes_a_work_order(&data, &aiot);
    demo_smoke_becomes_an_alert(&data, &aiot);
    object_storage_runs_on_three_sites(&data, &s3, &s3_key);
    let metrics = Command::new("curl")
        .args(["-s", &s3_admin])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("lingjing_s3_requests_total"),
        "{s3_admin}: {metrics}"
    );
    assert_eq!(edges.len(), 4, "three edge nodes and one parent: {edges:?}");
    let wuxi = &edges
        .iter()
        .find(|(n, _)| n == "wuxi-1-e1")
        .expect("wuxi edge")
        .1;
    let page = |n: u32| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-D",
                "-",
                "-H",
                "Host: www.demo.example",
            ])
            .arg(format!("{wuxi}/?n={n}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    let first = page(1);
    assert!(first.contains("x-cache: miss"), "{first}");
    let second = page(1);
    assert!(second.contains("x-cache: hit"), "{second}");
    let purged = lingjing(
        &data,
        &url,
        &["purge", "url", "http://www.demo.example/?n=1"],
    );
    assert!(purged.contains("applied on all 4 nodes"), "{purged}");
    let third = page(1);
    assert!(third.contains("x-cache: miss"), "after purge: {third}");
    site_is_served_from_the_demo_bucket(&data, &url, wuxi, &s3, &s3_key);

    // The edge reports its traffic with its heartbeats (every 2 s).
    let token = std::fs::read_to_string(data.join("operator.token")).expect("token file");
    let mut reported = 0;
    for _ in 0..100 {
        let out = Command::new("curl")
            .arg("--cacert")
            .arg(data.join("ca.pem"))
            .args(["-s", "-H"])
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg(format!("{url}/v1/services/demo/usage"))
            .output()
            .expect("curl");
        let usage: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        reported = usage["requests"].as_u64().unwrap_or(0);
        if reported >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(reported >= 3, "usage reported: {reported} requests");
    // The console's sign-in link opens the form with the token filled in, over TLS (so
    // its cookie is Secure).
    let console = Command::new("curl")
        .arg("--cacert")
        .arg(data.join("ca.pem"))
        .args(["-s", "-i", &sign_in])
        .output()
        .expect("curl");
    let console = String::from_utf8_lossy(&console.stdout);
    assert!(
        console
            .lines()
            .next()
            .is_some_and(|l| l.trim_end().ends_with(" 200")),
        "{console}"
    );
    assert!(
        console.contains("<title>Sign in · Lingjing</title>"),
        "{console}"
    );
    assert!(
        console.contains(&format!("value=\"{}\"", token.trim())),
        "{console}"
    );
    assert!(
        console
            .to_ascii_lowercase()
            .contains("set-cookie: lj_sign_in=")
            && console.contains("; Secure"),
        "{console}"
    );
    // The same traffic is metered per 5-minute interval, and tenant demo (on the seeded
    // plan) gets this month's draft invoice from it.
    let metered = lingjing(
        &data,
        &url,
        &["usage", "--group", "tenant", "--step", "5m", "--json"],
    );
    let metered: serde_json::Value = serde_json::from_str(&metered).expect("usage json");
    assert!(
        metered["total"]["requests"].as_u64() >= Some(3),
        "{metered}"
    );
    let bill = lingjing(&data, &url, &["bill", "run"]);
    assert!(
        bill.contains("DRAFT-") && bill.contains("CDN commit") && bill.contains("drafts"),
        "{bill}"
    );
    let segments = lingjing(&data, &url, &["report", "segments"]);
    assert!(
        segments.contains("edge") && segments.contains("idc"),
        "{segments}"
    );
    let sites = lingjing(&data, &url, &["site", "list"]);
    for site in ["wuxi-1", "suqian-1", "taizhou-1", "nanjing-1"] {
        assert!(sites.contains(site), "{site} missing from:\n{sites}");
    }
    let nodes: serde_json::Value =
        serde_json::from_str(&lingjing(&data, &url, &["node", "list", "--json"])).expect("json");
    let nodes = nodes.as_array().expect("array");
    assert_eq!(nodes.len(), 10);
    assert!(
        nodes
            .iter()
            .all(|n| n["addresses"].as_array().is_some_and(|a| a.len() == 1))
    );
    let services = lingjing(&data, &url, &["service", "list"]);
    assert!(services.contains("www.demo.example") && services.contains("demo.cdn.lingjing.test."));
    let token = std::fs::read_to_string(data.join("operator.token")).expect("token file");
    assert!(token.trim().len() >= 32);

    // HTTPS from up's CA: the CLI finds endpoint, CA and token in the data directory...
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let listed = lingjing_in(&data, &["site", "list"]);
    assert!(
        listed.status.success(),
        "site list from the data directory: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("wuxi-1"));
    // ...and without the CA, refuses the server with a clear message.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("dir");
    let refused = Command::new(BIN)
        .args(["site", "list", "--endpoint", &url, "--token", token.trim()])
        .arg("--data-dir")
        .arg(&elsewhere)
        .env_remove("LINGJING_CA")
        .output()
        .expect("run lingjing");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("not trusted") && stderr.contains("--ca"),
        "{stderr}"
    );
    let with_ca = Command::new(BIN)
        .args(["site", "list", "--endpoint", &url, "--token", token.trim()])
        .arg("--data-dir")
        .arg(&elsewhere)
        .arg("--ca")
        .arg(data.join("ca.pem"))
        .output()
        .expect("run lingjing");
    assert!(
        with_ca.status.success(),
        "{}",
        String::from_utf8_lossy(&with_ca.stderr)
    );
    #[cfg(unix)]
    secrets_are_private(&data);
    let credential = |node: &str| {
        std::fs::read_to_string(
            data.join(format!("edge-{node}"))
                .join(format!("{node}.credential")),
        )
        .expect("credential")
    };
    let wuxi_credential = credential("wuxi-1-e1");
    let suqian_credential = credential("suqian-1-e1");

    dns_follows_lines_drains_and_static_records(&data, &url, dns);
    // A revoked node gets a new credential from the next `up`.
    let revoked = lingjing(&data, &url, &["node", "revoke", "suqian-1-e1"]);
    assert!(revoked.contains("credential(s) revoked"), "{revoked}");
    terminate(child);

    // Looser modes (say, from an older version or a careless copy) are tightened at start.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let loose = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        loose(&data, 0o755);
        loose(&data.join("lingjing.db"), 0o644);
        loose(&data.join("operator.token"), 0o644);
        loose(&data.join("edge-wuxi-1-e1/wuxi-1-e1.credential"), 0o644);
        loose(
            &data.join("edge-wuxi-1-e1/wuxi-1-e1-edge.snapshot.json"),
            0o644,
        );
    }

    let Up {
        child,
        url,
        s3: again_s3,
        s3_key: again_key,
        ..
    } = start_up(&data);
    #[cfg(unix)]
    secrets_are_private(&data);
    // The nodes kept their credentials (the revoked one joined again) and use them: a purge is
    // acknowledged by all of them.
    assert_eq!(credential("wuxi-1-e1"), wuxi_credential);
    assert_ne!(credential("suqian-1-e1"), suqian_credential);
    let purged = lingjing(
        &data,
        &url,
        &["purge", "url", "http://www.demo.example/?n=2"],
    );
    assert!(purged.contains("applied on all 4 nodes"), "{purged}");
    let again: serde_json::Value =
        serde_json::from_str(&lingjing(&data, &url, &["node", "list", "--json"])).expect("json");
    assert_eq!(
        again.as_array().map(Vec::len),
        Some(10),
        "second up duplicated nodes"
    );
    assert!(
        again
            .as_array()
            .into_iter()
            .flatten()
            .all(|n| n["addresses"].as_array().is_some_and(|a| a.len() == 1)),
        "second up allocated more addresses"
    );
    let pools = lingjing(&data, &url, &["pool", "allocations", "nanjing-1-lo"]);
    assert_eq!(pools.lines().count(), 4, "{pools}");
    // The demo key was kept, and the object written before the restart reads back.
    assert_eq!(again_key, s3_key, "second up made a new demo key");
    if common::boto3_available() {
        let (access, secret) = &again_key;
        let read = boto3(
            &again_s3,
            access,
            secret,
            "assert s3.get_object(Bucket='demo', Key='kept')['Body'].read() == DATA",
        );
        assert!(
            read.status.success(),
            "{}",
            String::from_utf8_lossy(&read.stderr)
        );
    }
    terminate(child);
}

/// `curl -si` through the edge at `edge` with `Host: host` (and `extra` arguments): the
/// status, the lower-cased head and the body.
fn through_edge(edge: &str, host: &str, path: &str, extra: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-i", "-H", &format!("Host: {host}")])
        .args(extra)
        .arg(format!("{edge}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// `curl` of the control API as the operator: `method path [json]`, the answer's status.
fn operator_api(data: &Path, url: &str, method: &str, path: &str, json: &str) -> String {
    let token = std::fs::read_to_string(data.join("operator.token")).expect("token file");
    let out = Command::new("curl")
        .arg("--cacert")
        .arg(data.join("ca.pem"))
        .args(["-s", "-w", "\n%{http_code}", "-X", method, "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .args(["-H", "Content-Type: application/json", "--data", json])
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The demo service `site` is served from the demo bucket through the edge: the demo
/// pages `up` put there, cached (MISS, then HIT); an object a tenant puts with the AWS SDK
/// is on the CDN at once, a change shows after `lingjing purge`; only GET and HEAD; and a
/// service of another tenant naming the demo bucket (private) gets nothing from it.
fn site_is_served_from_the_demo_bucket(
    data: &Path,
    url: &str,
    edge: &str,
    s3: &str,
    (access, secret): &(String, String),
) {
    let site = "site.demo.example";
    let (status, head, body) = common::eventually(
        "the edge serves the demo site from the bucket",
        Duration::from_secs(20),
        || {
            let got = through_edge(edge, site, "/", &[]);
            (got.0 == 200).then_some(got)
        },
    );
    assert_eq!(status, 200);
    assert!(body.contains("Served from a bucket"), "{body}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("etag: "), "{head}");
    let (_, again, _) = through_edge(edge, site, "/", &[]);
    assert!(again.contains("x-cache: hit"), "{again}");
    let (status, _, css) = through_edge(edge, site, "/style.css", &[]);
    assert_eq!(status, 200);
    assert!(css.contains("font-family"), "{css}");
    let (status, head, _) = through_edge(edge, site, "/", &["-X", "POST", "--data", "x"]);
    assert_eq!(status, 405, "{head}");
    assert!(head.contains("allow: get, head"), "{head}");
    let (status, _, _) = through_edge(edge, site, "/missing.txt", &[]);
    assert_eq!(status, 404);
    if common::boto3_available() {
        let put = |text: &str| {
            let out = boto3(
                s3,
                access,
                secret,
                &format!(
                    "s3.put_object(Bucket='demo', Key='news/today.txt', Body=b'{text}', \
                     ContentType='text/plain', CacheControl='max-age=600')"
                ),
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        put("first edition");
        let (status, head, body) = through_edge(edge, site, "/news/today.txt", &[]);
        assert_eq!((status, body.as_str()), (200, "first edition"), "{head}");
        put("second edition");
        let (_, head, body) = through_edge(edge, site, "/news/today.txt", &[]);
        assert_eq!(body, "first edition", "cached for max-age: {head}");
        let purged = lingjing(
            data,
            url,
            &["purge", "url", "http://site.demo.example/news/today.txt"],
        );
        assert!(purged.contains("applied on all"), "{purged}");
        let (_, head, body) = through_edge(edge, site, "/news/today.txt", &[]);
        assert_eq!(body, "second edition", "after purge: {head}");
        // `no-cache`: every request is revalidated with the gateway (ETag, 304).
        let out = boto3(
            s3,
            access,
            secret,
            "s3.put_object(Bucket='demo', Key='live.txt', Body=b'live', CacheControl='no-cache')",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, first, _) = through_edge(edge, site, "/live.txt", &[]);
        assert!(first.contains("x-cache: miss"), "{first}");
        let (_, second, body) = through_edge(edge, site, "/live.txt", &[]);
        assert!(
            second.contains("x-cache: revalidated") && body == "live",
            "{second}"
        );
    }
    // Tenant `rival` points a service of its own at the demo bucket.
    for (path, json) in [
        ("/v1/tenants", r#"{"id":"rival","name":"Rival"}"#.to_owned()),
        (
            "/v1/services",
            r#"{"id":"rival-site","tenant":"rival","hostnames":["rival-site.example"],"origins":[{"address":"bucket:demo"}]}"#
                .to_owned(),
        ),
        ("/v1/services/rival-site/verify", r#"{"approve":true}"#.to_owned()),
    ] {
        let out = operator_api(data, url, "POST", path, &json);
        assert!(out.ends_with("200") || out.ends_with("201"), "{path}: {out}");
    }
    let (status, head, body) = common::eventually(
        "the edge serves rival's service",
        Duration::from_secs(20),
        || {
            let got = through_edge(edge, "rival-site.example", "/", &[]);
            (got.0 != 404 && got.0 != 421 && got.0 != 0).then_some(got)
        },
    );
    assert_eq!(status, 403, "{head}{body}");
    assert!(!body.contains("Served from a bucket"), "{body}");
}

/// Runs `code` in Python with `s3`, a boto3 client of `endpoint` with this key, and
/// `DATA`, 2.5 MB of bytes (three 1 MiB blocks).
fn boto3(endpoint: &str, access: &str, secret: &str, code: &str) -> std::process::Output {
    let script = format!(
        "import boto3\nfrom botocore.config import Config\n\
         s3 = boto3.client('s3', endpoint_url='{endpoint}', aws_access_key_id='{access}', \
         aws_secret_access_key='{secret}', region_name='us-east-1', \
         config=Config(retries={{'max_attempts': 1}}))\n\
         DATA = bytes(range(256)) * 10000\n{code}\n"
    );
    Command::new("python3")
        .args(["-c", &script])
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("python3")
}

/// `up`'s object storage: three storage nodes in three sites report to the control plane
/// (`lingjing storage status`); the gateway refuses unsigned requests; with boto3, the
/// demo key writes and reads the demo bucket, and is refused once revoked (a new one is
/// made for the next `up`).
/// The stand-in model `up` rolls out at its first start answers an inference (once its
/// probation of a few seconds is over it is committed; it serves from the start of it).
fn edge_ai_serves_the_demo_model(base: &str) {
    let image = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../aiot/tests/fixtures/text-upright.png"
    );
    let url = format!("{base}/v1/infer/text-direction");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let out = Command::new("curl")
            .args(["-s", "-H", "content-type: image/png", "--data-binary"])
            .arg(format!("@{image}"))
            .arg(&url)
            .output()
            .expect("curl");
        let body = String::from_utf8_lossy(&out.stdout);
        if body.contains(r#""version":1"#) {
            assert!(body.contains(r#"{"label":"0""#), "{body}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no inference from {url} within 120 s: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `up`'s demo patrol camera: a frame of the upside-down text line (the demo's "pothole")
/// posted with `curl` and the credential `up` keeps becomes a defect and a work order of
/// tenant `demo`, dispatched to its crew (`lingjing inspect orders`).
fn a_patrol_frame_becomes_a_work_order(data: &Path, base: &str) {
    let token = std::fs::read_to_string(data.join("demo-van.token")).expect("demo-van.token");
    let image = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../aiot/tests/fixtures/text-upside-down.png"
    );
    let url = format!("{base}/v1/patrol/frames?run=up-test&frame=1&lat=31.4912&lon=120.3119");
    let body = common::eventually(
        "the node takes the demo van's frame",
        Duration::from_secs(60),
        || {
            let out = Command::new("curl")
                .args(["-s", "-H", "content-type: image/png", "-H"])
                .arg(format!("Authorization: Bearer {}", token.trim()))
                .arg("--data-binary")
                .arg(format!("@{image}"))
                .arg(&url)
                .output()
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            body.contains(r#""seq":"#).then_some(body)
        },
    );
    assert!(body.contains(r#""class":"D40""#), "{body}");
    let orders = common::eventually("the frame's work order", Duration::from_secs(60), || {
        let out = lingjing_in(data, &["inspect", "orders", "--tenant", "demo"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("dispatched").then_some(text)
    });
    assert!(orders.contains("demo-roads"), "{orders}");
}

/// `up`'s demo sensors: smoke posted with `curl` and the telemetry token `up` keeps
/// becomes a firing alert the control plane lists (`lingjing alert list`).
fn demo_smoke_becomes_an_alert(data: &Path, base: &str) {
    let token = std::fs::read_to_string(data.join("telemetry.token")).expect("telemetry.token");
    let url = format!("{base}/v1/telemetry/wuxi-1-env-1");
    let body = common::eventually(
        "the node takes the demo smoke",
        Duration::from_secs(60),
        || {
            let out = Command::new("curl")
                .args(["-s", "-H"])
                .arg(format!("Authorization: Bearer {}", token.trim()))
                .args(["-d", r#"{"values": {"wuxi-1-smoke-1": 1}}"#])
                .arg(&url)
                .output()
                .expect("curl");
            let body = String::from_utf8_lossy(&out.stdout).into_owned();
            body.contains(r#""kept":1"#).then_some(body)
        },
    );
    assert!(body.contains("smoke/wuxi-1-smoke-1@"), "{body}");
    let alerts = common::eventually("the smoke alert listed", Duration::from_secs(60), || {
        let out = lingjing_in(data, &["alert", "list"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("smoke/wuxi-1-smoke-1").then_some(text)
    });
    assert!(
        alerts.contains("critical") && alerts.contains("firing"),
        "{alerts}"
    );
}

fn object_storage_runs_on_three_sites(data: &Path, s3: &str, key: &(String, String)) {
    assert!(s3.starts_with("http://127.0.0.1:"), "{s3}");
    let status = common::eventually(
        "every storage node reports its disk",
        Duration::from_secs(20),
        || {
            let out = lingjing_in(data, &["storage", "status"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // The last column is when the node last reported.
            let reported = text
                .lines()
                .filter(|l| l.contains("-s1 "))
                .all(|l| !l.trim_end().ends_with("never"));
            (out.status.success() && reported).then_some(text)
        },
    );
    assert!(status.contains("3 node(s) in 3 site(s)"), "{status}");
    for node in ["wuxi-1-s1", "suqian-1-s1", "taizhou-1-s1"] {
        assert!(status.contains(node), "{node}: {status}");
    }
    let anonymous = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .arg(format!("{s3}/demo"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&anonymous.stdout);
    assert!(
        text.ends_with("403") && text.contains("AccessDenied"),
        "{text}"
    );
    let key_file = std::fs::read_to_string(data.join("s3-demo-key")).expect("key file");
    assert_eq!(key_file.trim(), format!("{} {}", key.0, key.1));
    if !common::boto3_available() {
        return;
    }
    let (access, secret) = key;
    let wrote = boto3(
        s3,
        access,
        secret,
        "s3.put_object(Bucket='demo', Key='kept', Body=DATA)\n\
         assert s3.get_object(Bucket='demo', Key='kept')['Body'].read() == DATA\n\
         assert [b['Name'] for b in s3.list_buckets()['Buckets']] == ['demo']",
    );
    assert!(
        wrote.status.success(),
        "{}",
        String::from_utf8_lossy(&wrote.stderr)
    );
    // The census reads up's metadata: the object, its three blocks, all fully replicated.
    let status = lingjing_in(data, &["storage", "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        // `kept` and the demo site's two pages.
        status.contains("1 bucket(s), 3 object(s)")
            // DATA's first two 1 MiB blocks are equal bytes: stored once.
            && status.contains("4 distinct blocks (0 erasure-coded), 0 under-replicated, 0 at risk"),
        "{status}"
    );
    // Every storage node is asked to scrub, through the control plane (the operator
    // never holds the cluster token).
    let scrub = lingjing_in(data, &["storage", "scrub", "--json"]);
    assert!(
        scrub.status.success(),
        "{}",
        String::from_utf8_lossy(&scrub.stderr)
    );
    let asked: Vec<serde_json::Value> = serde_json::from_slice(&scrub.stdout).expect("json");
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(asked.iter().all(|a| a["error"].is_null()), "{asked:?}");
    // The nodes report their finished scrubs with their heartbeats; nothing to repair.
    let status = common::eventually(
        "every node reports a finished scrub",
        Duration::from_secs(20),
        || {
            let out = lingjing_in(data, &["storage", "status"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let nodes: Vec<&str> = text.lines().filter(|l| l.contains("-s1 ")).collect();
            (nodes.len() == 3 && nodes.iter().all(|l| l.contains(" ago "))).then_some(text)
        },
    );
    assert!(
        status.contains("Repair backlog: 0 block(s)")
            && status.contains("data at risk: 0 block(s)"),
        "{status}"
    );
    // The cluster layout: version 0 (equal shares) until one is applied.
    let show = lingjing_in(data, &["storage", "layout", "show"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("Layout version 0"), "{text}");
    for node in ["wuxi-1-s1", "suqian-1-s1", "taizhou-1-s1"] {
        assert!(text.contains(node), "{node}: {text}");
    }
    let apply = |extra: &[&str]| {
        let mut args = vec![
            "storage",
            "layout",
            "apply",
            "--version",
            "1",
            "--capacity",
            "wuxi-1-s1=500",
            "--capacity",
            "suqian-1-s1=500",
            "--capacity",
            "taizhou-1-s1=1000",
        ];
        args.extend_from_slice(extra);
        let out = lingjing_in(data, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(apply(&["--dry-run"]).contains("Would apply layout version 1"));
    assert!(apply(&[]).contains("Applied layout version 1"));
    let show = lingjing_in(data, &["storage", "layout", "show"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(text.contains("Layout version 1, applied"), "{text}");
    assert!(
        text.contains("1000 GiB") && text.contains("50.0%"),
        "{text}"
    );
    let stale = lingjing_in(
        data,
        &[
            "storage",
            "layout",
            "apply",
            "--version",
            "1",
            "--remove",
            "wuxi-1-s1",
        ],
    );
    assert!(!stale.status.success());
    assert!(
        String::from_utf8_lossy(&stale.stderr).contains("version 2"),
        "{}",
        String::from_utf8_lossy(&stale.stderr)
    );
    // The gateway reports the demo bucket's usage: its traffic (the writes and reads
    // above) and a sample of what it holds, with its tenant.
    let usage = common::eventually(
        "the gateway reports the demo bucket's usage",
        Duration::from_secs(40),
        || {
            let out = lingjing_in(data, &["storage", "usage", "--json"]);
            let all: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let demo = all
                .as_array()?
                .iter()
                .find(|b| b["bucket"] == "demo")?
                .clone();
            (demo["requests"].as_u64()? >= 2 && demo["samples"].as_u64()? >= 1).then_some(demo)
        },
    );
    assert_eq!(usage["tenant"], "demo", "{usage}");
    assert!(usage["bytes_in"].as_u64() > Some(2_000_000), "{usage}");
    let table = lingjing_in(data, &["storage", "usage"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("BUCKET") && table.contains("demo"),
        "{table}"
    );
    // A second key, revoked: refused within a few snapshot rounds.
    let made = lingjing_in(data, &["tenant", "s3-key-create", "demo", "--json"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: serde_json::Value = serde_json::from_slice(&made.stdout).expect("json");
    let (a2, s2) = (
        made["access_key"].as_str().expect("access_key"),
        made["secret"].as_str().expect("secret"),
    );
    common::eventually("the new key is accepted", Duration::from_secs(20), || {
        boto3(s3, a2, s2, "s3.head_bucket(Bucket='demo')")
            .status
            .success()
            .then_some(())
    });
    let revoked = lingjing_in(data, &["tenant", "s3-key-revoke", "demo", a2]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    common::eventually(
        "the revoked key is refused",
        Duration::from_secs(20),
        || {
            let out = boto3(s3, a2, s2, "s3.head_bucket(Bucket='demo')");
            (!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("403"))
                .then_some(())
        },
    );
}

/// `dig @DNS demo.cdn.lingjing.test A +subnet=...` for clients of each demo line: a node of
/// that line; after `node drain` of the answered node, another one within seconds (and it
/// back after `undrain`); a static record added with `lingjing record add` is served.
fn dns_follows_lines_drains_and_static_records(data: &Path, url: &str, dns: SocketAddr) {
    const DEMO: &str = "demo.cdn.lingjing.test.";
    let wuxi: IpAddr = "127.0.1.1".parse().expect("addr");
    let answer = |ecs: &str| {
        common::eventually(
            &format!("DNS answers {DEMO} for {ecs}"),
            Duration::from_secs(10),
            || {
                common::resolve(dns, DEMO, ecs)
                    .ok()
                    .filter(|a| !a.is_empty())
            },
        )
    };
    // Telecom and unicom Wuxi clients get the Wuxi node; a unicom Suqian client the Suqian one.
    assert_eq!(answer("198.51.100.1/32"), vec![wuxi]);
    assert_eq!(answer("203.0.113.0/26"), vec![wuxi]);
    assert_eq!(
        answer("203.0.113.70/32"),
        vec!["127.0.1.9".parse::<IpAddr>().expect("addr")]
    );

    lingjing(data, url, &["node", "drain", "wuxi-1-e1"]);
    let moved = common::eventually(
        "the drained node leaves the answers",
        Duration::from_secs(10),
        || {
            common::resolve(dns, DEMO, "198.51.100.1/32")
                .ok()
                .filter(|a| !a.is_empty() && !a.contains(&wuxi))
        },
    );
    assert!(
        moved.iter().all(|a| a.to_string().starts_with("127.0.1.")),
        "{moved:?}"
    );
    lingjing(data, url, &["node", "undrain", "wuxi-1-e1"]);
    common::eventually(
        "the node is handed out again",
        Duration::from_secs(10),
        || (common::resolve(dns, DEMO, "198.51.100.1/32").ok()? == vec![wuxi]).then_some(()),
    );

    lingjing(
        data,
        url,
        &[
            "record",
            "add",
            "api",
            "--name",
            "api",
            "--type",
            "A",
            "--value",
            "192.0.2.10",
        ],
    );
    let api: IpAddr = "192.0.2.10".parse().expect("addr");
    common::eventually(
        "the static record is served",
        Duration::from_secs(10),
        || {
            (common::resolve(dns, "api.cdn.lingjing.test.", "198.51.100.1/32").ok()? == vec![api])
                .then_some(())
        },
    );
}
