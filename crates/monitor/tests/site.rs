//! The monitor as a node runs it, with real HTTP: telemetry over `POST
//! /v1/telemetry/{device}`, webhooks to a real receiver that fails twice first, and a
//! restart of the monitor in the middle of a `for` window.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use lingjing_alerts::Severity;
use lingjing_model::monitor::{MonitorConfig, Receiver, Sensor, SensorKind, SiteMonitor};
use lingjing_monitor::metrics::Metrics;
use lingjing_monitor::notify::signature;
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef-secret";
const TOKEN: &str = "telemetry-token-0123456789";

#[derive(Clone, Default)]
struct Hook {
    /// Requests answered 500 before any is taken.
    fail_first: Arc<Mutex<u32>>,
    taken: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<Mutex<u32>>,
}

async fn hook(State(h): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    {
        let mut f = h.fail_first.lock().expect("test");
        if *f > 0 {
            *f -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let sig = headers
        .get("x-lingjing-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sig != signature(SECRET, &body) {
        *h.bad_signatures.lock().expect("test") += 1;
        return StatusCode::UNAUTHORIZED;
    }
    h.taken
        .lock()
        .expect("test")
        .push(serde_json::from_slice(&body).expect("test"));
    StatusCode::OK
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test");
    let addr = listener.local_addr().expect("test");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("test") });
    format!("http://{addr}")
}

fn config(hook_url: &str) -> MonitorConfig {
    MonitorConfig {
        monitors: vec![SiteMonitor {
            site: "wuxi-1".into(),
            node: "ai-1".into(),
        }],
        sensors: vec![Sensor {
            id: "inlet-a1".into(),
            site: "wuxi-1".into(),
            room: "hall-1".into(),
            cabinet: None,
            rack_unit: None,
            kind: SensorKind::Temperature,
            device: "env-1".into(),
            interval_s: 3600,
            contract_watts: None,
            tenant: None,
            rules: None,
        }],
        receivers: vec![Receiver {
            id: "ops".into(),
            url: Some(format!("{hook_url}/hook")),
            email: None,
            secret: SECRET.into(),
            sites: vec![],
            tenants: vec![],
            min_severity: Severity::Warning,
        }],
        escalate_after_s: 900,
        ..MonitorConfig::default()
    }
}

struct Node {
    url: String,
    monitor: Arc<lingjing_monitor::Monitor>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start(dir: &std::path::Path, config: &MonitorConfig) -> Node {
    let (monitor, tasks) =
        lingjing_monitor::start("ai-1", dir, Arc::new(Metrics::default()), None).expect("start");
    monitor.set_config(config);
    let url = serve(lingjing_monitor::http::routes(monitor.clone(), Some(TOKEN))).await;
    Node {
        url,
        monitor,
        tasks,
    }
}

impl Node {
    fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn send(node: &Node, at_ms: i64, value: f64) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/telemetry/env-1", node.url))
        .bearer_auth(TOKEN)
        .json(&json!({"seq": 1, "at_ms": at_ms, "values": {"inlet-a1": value}}))
        .send()
        .await
        .expect("test");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn wait_for(h: &Hook, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let got = h.taken.lock().expect("test").clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{n} notifications expected, got {:?}",
        h.taken.lock().expect("test")
    );
}

fn now_ms() -> i64 {
    lingjing_monitor::site::now_ms()
}

#[tokio::test]
async fn an_alert_is_notified_once_per_transition_through_a_failing_receiver_and_a_restart() {
    let dir = tempfile::tempdir().expect("test");
    let h = Hook {
        fail_first: Arc::new(Mutex::new(2)),
        ..Hook::default()
    };
    let hook_url = serve(
        Router::new()
            .route("/hook", post(hook))
            .with_state(h.clone()),
    )
    .await;
    let cfg = config(&hook_url);
    let node = start(dir.path(), &cfg).await;

    // Refused: no token, wrong token, a device of no sensor, a body that is not JSON.
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/v1/telemetry/env-1", node.url))
        .json(&json!({"values": {"inlet-a1": 20.0}}))
        .send()
        .await
        .expect("test");
    assert_eq!(r.status(), 401);
    let r = c
        .post(format!("{}/v1/telemetry/env-1", node.url))
        .bearer_auth("not-the-token")
        .json(&json!({"values": {"inlet-a1": 20.0}}))
        .send()
        .await
        .expect("test");
    assert_eq!(r.status(), 401);
    let r = c
        .post(format!("{}/v1/telemetry/ghost", node.url))
        .bearer_auth(TOKEN)
        .json(&json!({"values": {"inlet-a1": 20.0}}))
        .send()
        .await
        .expect("test");
    assert_eq!(r.status(), 404);
    let r = c
        .post(format!("{}/v1/telemetry/env-1", node.url))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .expect("test");
    assert_eq!(r.status(), 400);
    // A reading dated more than a day ahead of the node's clock.
    let r = c
        .post(format!("{}/v1/telemetry/env-1", node.url))
        .bearer_auth(TOKEN)
        .json(&json!({"at_ms": now_ms() + 2 * 86_400_000, "values": {"inlet-a1": 20.0}}))
        .send()
        .await
        .expect("test");
    assert_eq!(r.status(), 400);

    // 28 °C: inlet-hot pending (its `for` is 60 s). Readings are dated a little in the
    // past so that the window ends 3 s from now.
    let t0 = now_ms() - 57_000;
    let (status, took) = send(&node, t0, 26.5).await;
    assert_eq!(status, 200, "{took}");
    assert_eq!(took["kept"], 1);
    let (_, took) = send(&node, t0 + 1000, 28.0).await;
    assert_eq!(
        took["alerts"],
        json!(["inlet-hot/inlet-a1@".to_owned() + &(t0 + 1000).to_string() + ":pending"])
    );

    // The node stops mid-window and starts again from its directory.
    node.monitor.flush().await;
    node.stop();
    let node = start(dir.path(), &cfg).await;

    // The window ends while it runs: one firing, sent through the receiver's two
    // failures (retried after 1 s and 2 s).
    let got = wait_for(&h, 1).await;
    assert_eq!(got[0]["state"], "firing");
    assert_eq!(got[0]["key"], "inlet-hot/inlet-a1");
    assert_eq!(got[0]["since_ms"], t0 + 1000 + 60_000);
    assert_eq!(got[0]["node"], "ai-1");

    // 26 °C clears it: one resolved.
    let (_, took) = send(&node, now_ms(), 26.0).await;
    assert_eq!(took["alerts"].as_array().map(Vec::len), Some(1), "{took}");
    let got = wait_for(&h, 2).await;
    assert_eq!(got[1]["state"], "resolved");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.taken.lock().expect("test").len(),
        2,
        "one notification per transition"
    );
    assert_eq!(*h.bad_signatures.lock().expect("test"), 0);

    // Every reading and transition waits in the outbox for the control plane.
    let records = node.monitor.outbox().pending(100, 1 << 20).expect("test");
    let kinds: Vec<String> = records
        .iter()
        .map(|r| {
            serde_json::to_value(&r.event).expect("test")["kind"]
                .as_str()
                .expect("test")
                .to_owned()
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "readings").count(), 3);
    let states: BTreeMap<String, usize> = records
        .iter()
        .filter_map(|r| match &r.event {
            lingjing_model::monitor::MonitorEvent::Alert(a) => Some(a.state.as_str().to_owned()),
            _ => None,
        })
        .fold(BTreeMap::new(), |mut m, s| {
            *m.entry(s).or_default() += 1;
            m
        });
    assert_eq!(
        states,
        BTreeMap::from([
            ("firing".to_owned(), 1),
            ("pending".to_owned(), 1),
            ("resolved".to_owned(), 1)
        ])
    );
    node.stop();
}

/// A fake SMTP relay: answers every session; the first `fail` sessions get `451` (try
/// later) to MAIL; keeps the DATA of each message taken.
async fn smtp_relay(fail: u32) -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mail: Arc<Mutex<Vec<String>>> = Arc::default();
    let keep = mail.clone();
    tokio::spawn(async move {
        let mut left = fail;
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let refuse = left > 0;
            left = left.saturating_sub(1);
            let keep = keep.clone();
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 fake ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            keep.lock().expect("lock").push(std::mem::take(d));
                            data = None;
                            let _ = w.write_all(b"250 2.0.0 queued\r\n").await;
                        } else {
                            d.push_str(&line);
                            d.push('\n');
                        }
                        continue;
                    }
                    let u = line.to_ascii_uppercase();
                    let reply: &[u8] = if u.starts_with("EHLO") {
                        b"250-fake\r\n250 8BITMIME\r\n"
                    } else if u.starts_with("MAIL") && refuse {
                        b"451 4.3.0 try again later\r\n"
                    } else if u.starts_with("DATA") {
                        data = Some(String::new());
                        b"354 go ahead\r\n"
                    } else if u.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mail)
}

#[tokio::test]
async fn an_alert_is_emailed_once_per_transition_through_a_relay_that_defers_twice() {
    let dir = tempfile::tempdir().expect("test");
    let (port, mail) = smtp_relay(2).await;
    let mut cfg = config("http://127.0.0.1:1");
    cfg.sensors[0].kind = SensorKind::Smoke;
    cfg.receivers = vec![Receiver {
        id: "night-shift".into(),
        url: None,
        email: Some(lingjing_model::monitor::EmailRoute {
            relay: format!("smtp://127.0.0.1:{port}"),
            from: "Lingjing <alerts@example.org>".into(),
            to: vec![
                "ops@example.org".into(),
                "Oncall <oncall@example.org>".into(),
            ],
            starttls: false,
            username: None,
            password: String::new(),
        }),
        secret: String::new(),
        sites: vec![],
        tenants: vec![],
        min_severity: Severity::Critical,
    }];
    let node = start(dir.path(), &cfg).await;
    let t0 = now_ms();
    send(&node, t0, 0.0).await;
    let (status, took) = send(&node, t0 + 1000, 1.0).await;
    assert_eq!(status, 200, "{took}");
    let (_, took) = send(&node, t0 + 2000, 0.0).await;
    assert_eq!(took["alerts"].as_array().map(Vec::len), Some(1), "{took}");
    let mut got = Vec::new();
    for _ in 0..300 {
        got = mail.lock().expect("test").clone();
        if got.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].contains("Subject: [CRITICAL] smoke/inlet-a1 firing at wuxi-1"),
        "{}",
        got[0]
    );
    assert!(
        got[1].contains("Subject: [CRITICAL] smoke/inlet-a1 resolved at wuxi-1"),
        "{}",
        got[1]
    );
    assert!(got[0].contains("oncall@example.org") && got[0].contains("ops@example.org"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        mail.lock().expect("test").len(),
        2,
        "one message per transition"
    );
    node.stop();
}
