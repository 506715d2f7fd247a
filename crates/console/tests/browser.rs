//! The console in a real headless Chromium, driven through chromedriver (WebDriver) with
//! fantoccini: sign in as the operator and as a tenant, drain a node and see it on the
//! live overview, purge and watch the progress move, see the API's validation error
//! beside the field, see a tenant refused another tenant's page, see the chart render,
//! add a cache rule in the edit form. Each step saves a screenshot under
//! `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`, `chromium-driver`; or set
//! `LINGJING_CHROMEDRIVER` and `LINGJING_CHROMIUM`). Without them the test says it was
//! skipped, unless `LINGJING_TEST_BROWSER=1` (as in CI), where their absence fails it.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// Starts chromedriver, or says why the test cannot run.
async fn driver() -> Option<(Driver, PathBuf)> {
    let required = std::env::var("LINGJING_TEST_BROWSER").is_ok_and(|v| v == "1");
    let (Some(chromedriver), Some(chromium)) = (
        tool("LINGJING_CHROMEDRIVER", &["chromedriver"]),
        tool(
            "LINGJING_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        ),
    ) else {
        assert!(
            !required,
            "LINGJING_TEST_BROWSER=1 but chromium or chromedriver is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED: the console's browser test needs chromium and chromedriver (apt-get install chromium chromium-driver); .ci/run installs them"
        );
        return None;
    };
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return Some((driver, chromium));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not answer on {}", driver.url);
}

async fn browser(driver: &Driver, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1300"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Where screenshots go.
fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Waits (up to 20 s) until the element `css` holds `text`.
async fn wait_for_text(c: &Client, css: &str, text: &str) {
    for _ in 0..200 {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && e.text().await.is_ok_and(|t| t.contains(text))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = c.source().await.unwrap_or_default();
    panic!("`{css}` never showed {text:?}; the page: {source}");
}

async fn sign_in(c: &Client, url: &str, token: &str) {
    c.goto(&format!("{url}/sign-in"))
        .await
        .expect("sign-in page");
    let field = c.find(Locator::Id("token")).await.expect("token field");
    field.send_keys(token).await.expect("type the token");
    c.find(Locator::Css("form.card button[type=submit]"))
        .await
        .expect("sign-in button")
        .click()
        .await
        .expect("sign in");
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("form.who button"))
        .await
        .expect("sign-out button")
        .click()
        .await
        .expect("sign out");
}

/// Reports, as edge `node`, a day of traffic of `service` in 5-minute samples: a daily
/// curve between ~20 and ~180 Mbit/s, about 90% of requests served from cache.
async fn seed_traffic(url: &str, node: &str, service: &str) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let last = now_ms - now_ms % 300_000;
    let samples: Vec<serde_json::Value> = (0..288u64)
        .map(|i| {
            let start = last - (287 - i) * 300_000;
            let phase = i as f64 / 288.0 * std::f64::consts::TAU;
            let mbps = 100.0 + 80.0 * phase.sin() + 10.0 * (phase * 7.0).cos();
            let bytes = (mbps * 1e6 / 8.0 * 300.0) as u64;
            let requests = bytes / 60_000;
            let hits = requests * (88 + i % 7) / 100;
            json!({"start_ms": start, "usage": {"service": service, "requests": requests,
                "hit_requests": hits, "miss_requests": requests - hits,
                "bytes_out": bytes, "hit_bytes_out": bytes * 9 / 10,
                "miss_bytes_out": bytes / 10, "bytes_in": bytes / 10}})
        })
        .collect();
    common::operator(
        url,
        reqwest::Method::POST,
        &format!("/v1/nodes/{node}/heartbeat"),
        Some(json!({"role": "edge", "meter": {"epoch": 1, "samples": samples}})),
    )
    .await;
}

#[tokio::test]
async fn operator_and_tenant_in_a_real_browser() {
    let Some((driver, chromium)) = driver().await else {
        return;
    };
    let plane = common::start().await;
    let url = plane.url.clone();
    let c = browser(&driver, &chromium).await;

    // The operator signs in and lands on the fleet.
    sign_in(&c, &url, common::OPERATOR_TOKEN).await;
    wait_for_text(&c, "h1", "Fleet").await;
    assert_eq!(c.title().await.expect("title"), "Fleet · Lingjing");
    wait_for_text(&c, "tr[data-node='wx-1-a'] td:nth-child(4)", "no").await;
    screenshot(&c, "fleet").await;

    // Drains wx-1-a on its page, and the overview (refreshing by itself) shows it.
    c.goto(&format!("{url}/nodes/wx-1-a"))
        .await
        .expect("node page");
    c.find(Locator::Id("drain"))
        .await
        .expect("drain button")
        .click()
        .await
        .expect("drain");
    wait_for_text(&c, "#node-drained", "drained").await;
    screenshot(&c, "node").await;
    c.goto(&format!("{url}/fleet")).await.expect("fleet");
    wait_for_text(&c, "tr[data-node='wx-1-a'] td:nth-child(4)", "drained").await;
    // Undrained through the API meanwhile: the live table follows without a reload.
    let mut node = common::operator(&url, reqwest::Method::GET, "/v1/nodes/wx-1-a", None).await;
    let o = node.as_object_mut().expect("node");
    o.remove("addresses");
    o.remove("status");
    o.insert("drained".into(), json!(false));
    common::operator(&url, reqwest::Method::PUT, "/v1/nodes/wx-1-a", Some(node)).await;
    wait_for_text(&c, "tr[data-node='wx-1-a'] td:nth-child(4)", "no").await;

    // Purges, and watches the progress move as a node applies it.
    c.goto(&format!("{url}/purges")).await.expect("purges");
    c.find(Locator::Id("targets"))
        .await
        .expect("targets")
        .send_keys("http://www.alpha.example/index.html")
        .await
        .expect("type");
    c.find(Locator::Css("form.card button[type=submit]"))
        .await
        .expect("purge button")
        .click()
        .await
        .expect("purge");
    wait_for_text(&c, "#purge-summary", "0 of 3 edge nodes").await;
    let purges = common::operator(&url, reqwest::Method::GET, "/v1/purges", None).await;
    let version = purges[0]["version"].as_u64().expect("version");
    common::operator(
        &url,
        reqwest::Method::POST,
        "/v1/nodes/wx-1-a/heartbeat",
        Some(json!({"role": "edge", "applied_version": version})),
    )
    .await;
    wait_for_text(&c, "#purge-summary", "1 of 3 edge nodes").await;
    screenshot(&c, "purge").await;
    sign_out(&c).await;
    wait_for_text(&c, "h1", "Sign in").await;

    // A tenant: its services; a bad hostname is refused beside the field.
    sign_in(&c, &url, &plane.alpha_key).await;
    wait_for_text(&c, "h1", "Services").await;
    wait_for_text(&c, "#services", "a-site").await;
    c.goto(&format!("{url}/services/new"))
        .await
        .expect("new service");
    for (id, value) in [
        ("id", "shop"),
        ("hostnames", "not a hostname!"),
        ("origins", "127.0.0.1:7900"),
    ] {
        c.find(Locator::Id(id))
            .await
            .expect("field")
            .send_keys(value)
            .await
            .expect("type");
    }
    c.find(Locator::Css("form.card button[type=submit]"))
        .await
        .expect("create button")
        .click()
        .await
        .expect("create");
    wait_for_text(&c, "#hostnames-error", "hostnames").await;
    screenshot(&c, "service-error").await;

    // Another tenant's service by URL: not found, nothing of it shown.
    c.goto(&format!("{url}/services/b-site"))
        .await
        .expect("b-site");
    wait_for_text(&c, "h1", "Not found").await;
    let source = c.source().await.expect("source");
    assert!(!source.contains("www.beta.example"), "{source}");
    c.goto(&format!("{url}/fleet")).await.expect("fleet");
    wait_for_text(&c, "h1", "Not allowed").await;

    // Its service's traffic chart renders (uPlot draws into a canvas), from a day of
    // 5-minute samples as an edge reports them.
    seed_traffic(&url, "wx-1-a", "a-site").await;
    c.goto(&format!("{url}/services/a-site"))
        .await
        .expect("service");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#traffic-chart .uplot canvas"))
        .await
        .expect("the chart's canvas");
    screenshot(&c, "service").await;

    // A cache rule, typed into the edit form, is on the service's page once saved.
    c.find(Locator::LinkText("Edit hostnames, origins and cache rules"))
        .await
        .expect("edit link")
        .click()
        .await
        .expect("edit");
    for (name, value) in [("rule.0.path", "/assets/*"), ("rule.0.ttl", "600")] {
        c.find(Locator::Css(&format!("input[name='{name}']")))
            .await
            .expect("rule field")
            .send_keys(value)
            .await
            .expect("type");
    }
    c.find(Locator::Css("input[name='rule.0.ignore_query']"))
        .await
        .expect("checkbox")
        .click()
        .await
        .expect("tick");
    screenshot(&c, "cache-rules").await;
    c.find(Locator::Css("form.card button[type=submit]"))
        .await
        .expect("save button")
        .click()
        .await
        .expect("save");
    wait_for_text(&c, "#rules", "/assets/*").await;
    wait_for_text(&c, "#rules", "query ignored").await;

    c.close().await.expect("close the browser");
    plane.handle.shutdown().await.expect("shutdown");
}
