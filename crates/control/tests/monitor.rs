//! IDC monitoring in the control plane, on SQLite and PostgreSQL: sensors, receivers and
//! silences are the operator's (a tenant key is refused, bad fields are named, a
//! receiver's secret is never read back); the `aiot` snapshot names each site's monitor
//! node and gives power sensors their cabinet's contract; records from a site's node are
//! taken once (a batch sent again, a transition sent twice), and every trust boundary:
//! a node speaks only for its own site and stream and must be an edge AI node, readings
//! of sensors of another site are dropped; rollups and the series query; alerts listed
//! and acknowledged (firing only; a new firing drops the acknowledgement).

mod common;

use common::Api;
use serde_json::{Value, json};

const T0: i64 = 1_800_000_000_000;

fn readings(seq: u64, site: &str, at_ms: i64, values: &[(&str, f64)]) -> Value {
    let values: Vec<Value> = values
        .iter()
        .map(|(s, v)| json!({"sensor": s, "value": v}))
        .collect();
    json!({"seq": seq, "site": site,
           "event": {"kind": "readings", "at_ms": at_ms, "values": values}})
}

fn alert(seq: u64, site: &str, state: &str, since_ms: i64, at_ms: i64) -> Value {
    json!({"seq": seq, "site": site, "event": {"kind": "alert",
        "key": "inlet-hot/inlet-a1", "rule": "inlet-hot", "sensor": "inlet-a1", "site": site,
        "severity": "warning", "state": state, "since_ms": since_ms, "at_ms": at_ms,
        "value": 28.0, "labels": {"room": "hall-1"}}})
}

fn batch(node: &str, stream: &str, records: Vec<Value>) -> Value {
    json!({"node": node, "stream": stream, "records": records})
}

async fn monitoring(api: &Api) {
    api.create(
        "nodes",
        json!({"id": "ai-2", "site": "wx-1", "roles": ["aiot"]}),
    )
    .await;
    api.create(
        "nodes",
        json!({"id": "ai-1", "site": "wx-1", "roles": ["aiot"]}),
    )
    .await;
    api.create(
        "nodes",
        json!({"id": "ai-nj", "site": "nj-1", "roles": ["aiot"]}),
    )
    .await;
    api.create(
        "cabinets",
        json!({"id": "c1", "site": "wx-1", "room": "hall-1", "contracted_watts": 5000}),
    )
    .await;
    let key = common::tenant_key(api, "demo").await;
    let tenant = api.with_token(&key);
    let node = common::node_credential(api, "ai-1").await;
    let node2 = common::node_credential(api, "ai-2").await;
    let nj = common::node_credential(api, "ai-nj").await;
    let edge = common::node_credential(api, "wx-1-a").await;

    // The operator's resources; a tenant reaches none of them.
    let sensor = json!({"id": "inlet-a1", "site": "wx-1", "room": "hall-1",
                        "kind": "temperature", "device": "env-1", "interval_s": 30});
    tenant
        .post("/v1/sensors", sensor.clone())
        .await
        .err(403, "forbidden");
    api.post("/v1/sensors", sensor).await.ok(201);
    api.post(
        "/v1/sensors",
        json!({"id": "pdu-c1", "site": "wx-1", "room": "hall-1", "cabinet": "c1",
               "kind": "power", "device": "pdu-1"}),
    )
    .await
    .ok(201);
    api.post(
        "/v1/sensors",
        json!({"id": "inlet-nj", "site": "nj-1", "room": "hall-1",
               "kind": "temperature", "device": "env-9"}),
    )
    .await
    .ok(201);
    for (body, field) in [
        (
            json!({"id": "x", "site": "wx-1", "room": "hall-1", "kind": "temperature",
                   "device": "env-1", "interval_s": 0}),
            "interval_s",
        ),
        (
            json!({"id": "x", "site": "nowhere", "room": "hall-1", "kind": "smoke",
                   "device": "env-1"}),
            "site",
        ),
        (
            json!({"id": "x", "site": "wx-1", "room": "hall-1", "kind": "temperature",
                   "device": "env-1", "rules": [{"id": "hot", "severity": "warning",
                   "condition": {"kind": "above", "value": 27, "clear": 30}}]}),
            "rules[0]",
        ),
        (
            json!({"id": "x", "site": "wx-1", "room": "../etc", "kind": "smoke",
                   "device": "env-1"}),
            "room",
        ),
    ] {
        let r = api.post("/v1/sensors", body).await;
        assert_eq!(r.field(), Some(field), "{}", r.message());
    }
    let _ = api
        .post(
            "/v1/sensors",
            json!({"id": "x", "site": "wx-1", "room": "hall-1",
                                    "kind": "laser", "device": "env-1"}),
        )
        .await
        .err(422, "invalid");
    tenant.get("/v1/sensors").await.err(403, "forbidden");

    let receiver = json!({"id": "ops", "url": "https://hooks.example/alerts",
                          "secret": "a-secret-of-16-chars-or-more"});
    tenant
        .post("/v1/receivers", receiver.clone())
        .await
        .err(403, "forbidden");
    let made = api.post("/v1/receivers", receiver).await.ok(201);
    assert!(
        made.get("secret").is_none(),
        "the secret is write-only: {made}"
    );
    let _ = api
        .post(
            "/v1/receivers",
            json!({"id": "bad", "url": "file:///etc/passwd",
                                      "secret": "a-secret-of-16-chars-or-more"}),
        )
        .await
        .err_field(422, "invalid", "url");
    let _ = api
        .post(
            "/v1/receivers",
            json!({"id": "bad", "url": "https://x", "secret": "short"}),
        )
        .await
        .err_field(422, "invalid", "secret");
    // Both a webhook and email, or credentials to a relay without STARTTLS: refused.
    let email = json!({"relay": "smtp://10.0.0.5:25", "from": "Lingjing <alerts@example.org>",
                       "to": ["ops@example.org"]});
    let _ = api
        .post(
            "/v1/receivers",
            json!({"id": "both", "url": "https://x.example",
                                      "secret": "a-secret-of-16-chars-or-more", "email": email}),
        )
        .await
        .err_field(422, "invalid", "url");
    let mut clear = email.clone();
    clear["username"] = json!("ops");
    clear["password"] = json!("hunter2");
    let _ = api
        .post("/v1/receivers", json!({"id": "clear", "email": clear}))
        .await
        .err_field(422, "invalid", "email.username");
    let mut tls = clear.clone();
    tls["starttls"] = json!(true);
    let made = api
        .post(
            "/v1/receivers",
            json!({"id": "mail", "email": tls, "min_severity": "critical"}),
        )
        .await
        .ok(201);
    assert!(
        made["email"].get("password").is_none(),
        "write-only: {made}"
    );
    let mut no_password = tls.clone();
    no_password.as_object_mut().map(|o| o.remove("password"));
    api.put(
        "/v1/receivers/mail",
        json!({"id": "mail", "email": no_password}),
    )
    .await
    .ok(200);
    // A replace without the secret keeps it.
    api.put(
        "/v1/receivers/ops",
        json!({"id": "ops", "url": "https://hooks.example/v2", "min_severity": "critical"}),
    )
    .await
    .ok(200);
    let _ = api
        .post(
            "/v1/silences",
            json!({"id": "all", "matchers": [], "starts_ms": T0,
                                     "ends_ms": T0 + 1, "by": "ops"}),
        )
        .await
        .err_field(422, "invalid", "matchers");
    api.post(
        "/v1/silences",
        json!({"id": "works", "matchers": [{"label": "room", "value": "hall-1"}],
               "starts_ms": 0, "ends_ms": i64::MAX / 2, "by": "ops"}),
    )
    .await
    .ok(201);

    // The snapshot: one monitor per site (the first aiot node by id), the contract of
    // the power sensor's cabinet, the receiver with its secret (nodes sign with it).
    let snap = node.get("/v1/snapshots/aiot").await.ok(200);
    let m = &snap["body"]["monitor"];
    assert_eq!(
        m["monitors"],
        json!([{"site": "wx-1", "node": "ai-1"}, {"site": "nj-1", "node": "ai-nj"}])
    );
    let pdu = m["sensors"]
        .as_array()
        .expect("sensors")
        .iter()
        .find(|s| s["id"] == "pdu-c1")
        .expect("pdu");
    assert_eq!(pdu["contract_watts"], 5000);
    let receivers = m["receivers"].as_array().expect("receivers");
    let ops = receivers.iter().find(|r| r["id"] == "ops").expect("ops");
    assert_eq!(ops["secret"], "a-secret-of-16-chars-or-more");
    assert_eq!(ops["url"], "https://hooks.example/v2");
    let mail = receivers.iter().find(|r| r["id"] == "mail").expect("mail");
    assert_eq!(
        mail["email"]["password"], "hunter2",
        "kept through the replace"
    );
    assert_eq!(m["silences"][0]["id"], "works");

    // Records: readings of wx-1 (and one of nj-1's sensor, dropped), a transition.
    let first = vec![
        readings(1, "wx-1", T0, &[("inlet-a1", 26.0), ("inlet-nj", 99.0)]),
        readings(2, "wx-1", T0 + 20_000, &[("inlet-a1", 28.0)]),
        alert(3, "wx-1", "pending", T0 + 20_000, T0 + 20_000),
        readings(4, "wx-1", T0 + 70_000, &[("inlet-a1", 29.0)]),
        alert(5, "wx-1", "firing", T0 + 80_000, T0 + 80_000),
    ];
    let ack = node
        .post("/v1/monitor/records", batch("ai-1", "aa01", first.clone()))
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 5, "accepted": 5}));
    // Sent again: nothing twice. The same transition in a new record (the node computed
    // it again after a crash): kept once.
    let ack = node
        .post("/v1/monitor/records", batch("ai-1", "aa01", first))
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 5, "accepted": 0}));
    let ack = node
        .post(
            "/v1/monitor/records",
            batch(
                "ai-1",
                "aa01",
                vec![alert(6, "wx-1", "firing", T0 + 80_000, T0 + 80_000)],
            ),
        )
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 6, "accepted": 0}));

    // Trust: another site's records are named and passed; another node's stream, a node
    // that is not an edge AI node, a tenant key, another node's name: refused.
    let ack = node
        .post(
            "/v1/monitor/records",
            batch(
                "ai-1",
                "aa01",
                vec![readings(7, "nj-1", T0, &[("inlet-nj", 1.0)])],
            ),
        )
        .await
        .ok(200);
    assert_eq!(ack["through"], 7);
    assert_eq!(ack["rejected"][0]["field"], "records[0].site");
    node2
        .post(
            "/v1/monitor/records",
            batch("ai-2", "aa01", vec![readings(8, "wx-1", T0, &[])]),
        )
        .await
        .err(403, "forbidden");
    edge.post(
        "/v1/monitor/records",
        batch("wx-1-a", "bb01", vec![readings(1, "wx-1", T0, &[])]),
    )
    .await
    .err(403, "forbidden");
    tenant
        .post(
            "/v1/monitor/records",
            batch("ai-1", "cc01", vec![readings(1, "wx-1", T0, &[])]),
        )
        .await
        .err(403, "forbidden");
    nj.post(
        "/v1/monitor/records",
        batch("ai-1", "dd01", vec![readings(1, "wx-1", T0, &[])]),
    )
    .await
    .err(403, "forbidden");
    // Malformed: out of order, a bad stream, not a number.
    let _ = node
        .post(
            "/v1/monitor/records",
            batch(
                "ai-1",
                "ee01",
                vec![readings(2, "wx-1", T0, &[]), readings(1, "wx-1", T0, &[])],
            ),
        )
        .await
        .err_field(422, "invalid", "records[1].seq");
    let _ = node
        .post(
            "/v1/monitor/records",
            batch("ai-1", "../x", vec![readings(1, "wx-1", T0, &[])]),
        )
        .await
        .err_field(422, "invalid", "stream");
    let r = node
        .post(
            "/v1/monitor/records",
            json!({"node": "ai-1", "stream": "ff01", "records": [{"seq": 1, "site": "wx-1",
                   "event": {"kind": "readings", "at_ms": T0,
                             "values": [{"sensor": "inlet-a1", "value": "hot"}]}}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.message());

    // The series: raw and per minute; nj-1's sensor got nothing from ai-1.
    let raw = api
        .get(&format!(
            "/v1/sensors/inlet-a1/readings?from={T0}&to={}&step=1",
            T0 + 120_000
        ))
        .await
        .ok(200);
    assert_eq!(raw["unit"], "°C");
    let values: Vec<f64> = raw["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["last"].as_f64().expect("value"))
        .collect();
    assert_eq!(values, [26.0, 28.0, 29.0]);
    let per_minute = api
        .get(&format!(
            "/v1/sensors/inlet-a1/readings?from={T0}&to={}&step=60",
            T0 + 120_000
        ))
        .await
        .ok(200);
    let p = &per_minute["points"];
    assert_eq!(p.as_array().map(Vec::len), Some(2), "{p}");
    assert_eq!(
        (
            &p[0]["min"],
            &p[0]["max"],
            &p[0]["mean"],
            &p[0]["last"],
            &p[0]["count"]
        ),
        (
            &json!(26.0),
            &json!(28.0),
            &json!(27.0),
            &json!(28.0),
            &json!(2)
        )
    );
    let nj_points = api
        .get(&format!(
            "/v1/sensors/inlet-nj/readings?from={T0}&to={}&step=1",
            T0 + 1
        ))
        .await
        .ok(200);
    assert_eq!(nj_points["points"], json!([]));
    for bad in ["step=0", "step=90", "from=5&to=1"] {
        let _ = api
            .get(&format!("/v1/sensors/inlet-a1/readings?{bad}"))
            .await
            .err(422, "invalid");
    }
    api.get("/v1/sensors/nobody/readings")
        .await
        .err(404, "not_found");
    tenant
        .get("/v1/sensors/inlet-a1/readings")
        .await
        .err(403, "forbidden");

    // Alerts: firing, acknowledged, listed; a tenant sees none.
    let alerts = api.get("/v1/alerts").await.ok(200);
    assert_eq!(alerts.as_array().map(Vec::len), Some(1), "{alerts}");
    assert_eq!(alerts[0]["state"], "firing");
    tenant.get("/v1/alerts").await.err(403, "forbidden");
    tenant
        .post(
            "/v1/alerts/ack",
            json!({"key": "inlet-hot/inlet-a1", "by": "me"}),
        )
        .await
        .err(403, "forbidden");
    let _ = api
        .get("/v1/alerts?state=exploded")
        .await
        .err(422, "invalid");
    let v = api.version().await;
    api.post(
        "/v1/alerts/ack",
        json!({"key": "inlet-hot/inlet-a1", "by": "night shift"}),
    )
    .await
    .ok(200);
    assert!(api.version().await > v, "nodes learn the acknowledgement");
    let snap = node.get("/v1/snapshots/aiot").await.ok(200);
    assert_eq!(
        snap["body"]["monitor"]["acks"],
        json!([{"key": "inlet-hot/inlet-a1", "firing_since_ms": T0 + 80_000,
                "by": "night shift", "at_ms": snap["body"]["monitor"]["acks"][0]["at_ms"]}])
    );
    // Resolved, then firing again: the new firing is not acknowledged.
    node.post(
        "/v1/monitor/records",
        batch(
            "ai-1",
            "aa01",
            vec![
                alert(8, "wx-1", "resolved", T0 + 80_000, T0 + 90_000),
                alert(9, "wx-1", "firing", T0 + 100_000, T0 + 100_000),
            ],
        ),
    )
    .await
    .ok(200);
    let alerts = api.get("/v1/alerts?state=firing&site=wx-1").await.ok(200);
    assert_eq!(alerts[0]["since_ms"], T0 + 100_000);
    assert!(alerts[0].get("acked_by").is_none(), "{alerts}");
    api.post("/v1/alerts/ack", json!({"key": "no/such", "by": "ops"}))
        .await
        .err(409, "not_firing");
    let none = api.get("/v1/alerts?site=nj-1").await.ok(200);
    assert_eq!(none, json!([]));
    // A late transition (older than the row) does not move it back.
    node.post(
        "/v1/monitor/records",
        batch(
            "ai-1",
            "aa01",
            vec![alert(10, "wx-1", "cancelled", T0 + 10_000, T0 + 10_000)],
        ),
    )
    .await
    .ok(200);
    let all = api.get("/v1/alerts?state=all").await.ok(200);
    assert_eq!(all[0]["state"], "firing");

    // A cabinet with sensors cannot be deleted from under them.
    let r = api.delete("/v1/cabinets/c1").await.err(409, "in_use");
    assert!(r.message().contains("sensor `pdu-c1`"), "{}", r.message());
}

#[tokio::test]
async fn monitoring_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    monitoring(&api).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn monitoring_postgres() {
    lingjing_control::testing::with_scratch_postgres("monitor", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        monitoring(&api).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}

/// A webhook receiver keeping the bodies it is sent.
async fn receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let got: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock()
                    .expect("lock")
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (url, got)
}

async fn set_health(store: &lingjing_control::Store, node: &str, healthy: bool, at_ms: i64) {
    let mut w = store.write(true).await.expect("write");
    lingjing_control::store::health::record_change(
        &mut w.tx,
        node,
        healthy,
        "2027-01-15T08:00:00Z",
        at_ms,
        "test",
    )
    .await
    .expect("health");
    w.commit().await.expect("commit");
}

/// The platform watches itself: a node going down is an alert in the same list as the
/// sensors', notified once, not raised again by a restarted watcher, resolved when the
/// node is back.
#[tokio::test]
async fn the_platform_s_own_health_is_an_alert_notified_once() {
    use lingjing_control::platform_alerts::{Watch, notify, pass};
    let (mut plane, api) = common::start_seeded().await;
    let handle = plane.handle.as_ref().expect("handle");
    handle.stop_platform_alerts();
    let store = handle.store().clone();
    let (hook, got) = receiver().await;
    api.post(
        "/v1/receivers",
        json!({"id": "ops", "url": hook, "secret": "a-secret-of-16-chars-or-more",
               "min_severity": "critical"}),
    )
    .await
    .ok(201);
    let client = lingjing_monitor::notify::http_client().expect("client");
    let metrics = lingjing_monitor::metrics::Metrics::default();

    let mut watch = Watch::default();
    set_health(&store, "wx-1-a", true, T0).await;
    assert!(pass(&store, &mut watch, T0).await.expect("pass").is_empty());
    set_health(&store, "wx-1-a", false, T0 + 5000).await;
    let events = pass(&store, &mut watch, T0 + 6000).await.expect("pass");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (
            events[0].key.as_str(),
            events[0].state.as_str(),
            events[0].since_ms
        ),
        ("node-down/wx-1-a", "firing", T0 + 5000)
    );
    assert!(
        pass(&store, &mut watch, T0 + 7000)
            .await
            .expect("pass")
            .is_empty()
    );
    // A watcher started again (a restart, another replica) does not raise it again.
    let mut again = Watch::default();
    assert!(
        pass(&store, &mut again, T0 + 8000)
            .await
            .expect("pass")
            .is_empty()
    );

    let alerts = api.get("/v1/alerts").await.ok(200);
    assert_eq!(alerts[0]["key"], "node-down/wx-1-a");
    assert_eq!(alerts[0]["site"], "wx-1");
    assert_eq!(notify(&store, &client, &metrics).await.expect("notify"), 1);
    assert_eq!(notify(&store, &client, &metrics).await.expect("notify"), 0);

    set_health(&store, "wx-1-a", true, T0 + 60_000).await;
    let events = pass(&store, &mut again, T0 + 61_000).await.expect("pass");
    assert_eq!(events[0].state.as_str(), "resolved");
    assert_eq!(notify(&store, &client, &metrics).await.expect("notify"), 1);
    let bodies = got.lock().expect("lock").clone();
    let states: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap_or(""),
                b["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("node-down/wx-1-a", "firing"),
            ("node-down/wx-1-a", "resolved")
        ]
    );
    assert_eq!(bodies[0]["node"], "control");

    // An edge's error rate between two heartbeats: 10% failed fires, 0.5% resolves.
    let edge = common::node_credential(&api, "wx-1-b").await;
    let beat = |answered: u64, failed: u64| json!({"role": "edge", "answers": {"run": 7, "answered": answered, "failed": failed}});
    let mut at = T0 + 100_000;
    for (answered, failed, expect) in [
        (1000, 0, None),
        (2000, 100, Some("firing")),
        (2050, 105, None),
        (3050, 110, Some("resolved")),
    ] {
        edge.post("/v1/nodes/wx-1-b/heartbeat", beat(answered, failed))
            .await
            .ok(204);
        at += 10_000;
        let events = pass(&store, &mut again, at).await.expect("pass");
        let states: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.key.as_str(), e.state.as_str()))
            .collect();
        match expect {
            Some(s) => assert_eq!(states, [("edge-errors/wx-1-b", s)], "{answered}"),
            None => assert!(states.is_empty(), "{answered}: {states:?}"),
        }
    }
    // Bad totals, or totals from a node that answers nothing: refused, nothing kept.
    let r = edge.post("/v1/nodes/wx-1-b/heartbeat", beat(10, 11)).await;
    assert_eq!(r.field(), Some("answers"), "{}", r.message());
    plane.shutdown().await;
}
