//! Road inspection in the control plane, on SQLite and PostgreSQL: frames from an edge AI
//! node's outbox are taken once (a batch sent again, or overlapping, counts nothing
//! twice), detections of one class within a few metres are one defect with one work
//! order dispatched to the crew whose area holds it, the work-order state machine refuses
//! what it must (closing is the system's), a fixed order closes after frames over the spot
//! that see nothing; and every trust boundary: tenants see only their own, a node sends
//! only its own stream and must be an edge AI node, a tenant key cannot send frames, a bad
//! record changes nothing; Open311 in JSON and XML.

mod common;

use common::{Api, Body};
use reqwest::Method;
use serde_json::{Value, json};

const AT: (f64, f64) = (31.5700, 120.3000);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The point `metres` north of `AT`.
fn north(metres: f64) -> (f64, f64) {
    (AT.0 + metres / 111_195.0, AT.1)
}

fn record(seq: u64, device: &str, metres: f64, pothole: bool) -> Value {
    let (lat, lon) = north(metres);
    let detections = if pothole {
        json!([{"class": "D40", "label": "pothole", "score": 0.8, "bbox": [0, 0, 10, 10]}])
    } else {
        json!([])
    };
    json!({
        "seq": seq, "device": device, "run": "run-1", "frame": format!("f{seq}"),
        "taken_ms": now_ms(), "lat": lat, "lon": lon, "model": "road", "version": 1,
        "detections": detections,
    })
}

fn batch(node: &str, stream: &str, records: Vec<Value>) -> Value {
    json!({"node": node, "stream": stream, "records": records})
}

async fn inspection(api: &Api) {
    api.create(
        "nodes",
        json!({"id": "ai-1", "site": "wx-1", "roles": ["aiot"]}),
    )
    .await;
    api.create(
        "nodes",
        json!({"id": "ai-2", "site": "wx-1", "roles": ["aiot"]}),
    )
    .await;
    for t in ["city", "other"] {
        api.create("tenants", common::tenant(t)).await;
    }
    let key = common::tenant_key(api, "city").await;
    let okey = common::tenant_key(api, "other").await;
    let city = api.with_token(&key);
    let other = api.with_token(&okey);
    let node = common::node_credential(api, "ai-1").await;
    let node2 = common::node_credential(api, "ai-2").await;
    let edge = common::node_credential(api, "wx-1-a").await;

    // Devices and crews are the tenant's own.
    let device = json!({"id": "van-1", "tenant": "city", "slot": "road",
                        "detects": [{"label": "pothole", "class": "D40"}]});
    other
        .post("/v1/devices", device.clone())
        .await
        .err(403, "forbidden");
    let made = city.post("/v1/devices", device).await.ok(201);
    assert_eq!(made["has_token"], false);
    other
        .post("/v1/devices/van-1/token", json!({}))
        .await
        .err(404, "not_found");
    let token = city
        .post("/v1/devices/van-1/token", json!({}))
        .await
        .ok(200);
    assert!(token["token"].as_str().expect("token").starts_with("ljd_"));
    let snap = node.get("/v1/snapshots/aiot").await.ok(200);
    let devices = snap["body"]["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["token_sha256"].as_str().map(str::len), Some(64));
    let _ = city
        .post(
            "/v1/crews",
            json!({"id": "bad", "tenant": "city", "name": "Bad",
                   "areas": [{"south": 32.0, "west": 120.0, "north": 31.0, "east": 121.0}]}),
        )
        .await
        .err_field(422, "invalid", "areas[0]");
    city.post(
        "/v1/crews",
        json!({"id": "north", "tenant": "city", "name": "North crew",
               "areas": [{"south": 31.0, "west": 120.0, "north": 32.0, "east": 121.0}]}),
    )
    .await
    .ok(201);
    other
        .post(
            "/v1/crews",
            json!({"id": "elsewhere", "tenant": "other", "name": "Other crew",
                   "areas": [{"south": 31.0, "west": 120.0, "north": 32.0, "east": 121.0}]}),
        )
        .await
        .ok(201);

    // Frames: three sightings within 4 m are one pothole.
    let first: Vec<Value> = (1..=6)
        .map(|s| record(s, "van-1", s as f64 * 1.5, (2..=4).contains(&s)))
        .collect();
    let ack = node
        .post("/v1/inspect/frames", batch("ai-1", "s-1", first.clone()))
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 6, "accepted": 6}));
    // Sent again (the answer was lost): nothing twice.
    let ack = node
        .post("/v1/inspect/frames", batch("ai-1", "s-1", first.clone()))
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 6, "accepted": 0}));
    // Overlapping: only the new ones.
    let more: Vec<Value> = (5..=8)
        .map(|s| record(s, "van-1", 30.0 + s as f64, false))
        .collect();
    let ack = node
        .post("/v1/inspect/frames", batch("ai-1", "s-1", more))
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 8, "accepted": 2}));
    let defects = city.get("/v1/defects").await.ok(200);
    let defects = defects.as_array().expect("defects");
    assert_eq!(defects.len(), 1, "{defects:#?}");
    assert_eq!(defects[0]["sightings"], 3);
    assert_eq!(defects[0]["severity"], 3);
    let defect = defects[0]["id"].as_str().expect("id").to_owned();
    let orders = city.get("/v1/work-orders").await.ok(200);
    let orders = orders.as_array().expect("orders");
    assert_eq!(orders.len(), 1, "{orders:#?}");
    assert_eq!(orders[0]["state"], "dispatched");
    assert_eq!(orders[0]["crew"], "north");
    let wo = orders[0]["id"].as_str().expect("id").to_owned();

    // Trust boundaries of the intake.
    node2
        .post(
            "/v1/inspect/frames",
            batch("ai-2", "s-1", vec![record(9, "van-1", 0.0, true)]),
        )
        .await
        .err(403, "forbidden");
    node2
        .post(
            "/v1/inspect/frames",
            batch("ai-1", "s-2", vec![record(1, "van-1", 0.0, true)]),
        )
        .await
        .err(403, "forbidden");
    edge.post(
        "/v1/inspect/frames",
        batch("wx-1-a", "s-9", vec![record(1, "van-1", 0.0, true)]),
    )
    .await
    .err(403, "forbidden");
    city.post(
        "/v1/inspect/frames",
        batch("ai-1", "s-1", vec![record(9, "van-1", 0.0, true)]),
    )
    .await
    .err(403, "forbidden");
    node.post(
        "/v1/inspect/frames",
        batch(
            "ai-1",
            "s-1",
            vec![
                record(10, "van-1", 0.0, true),
                record(9, "van-1", 0.0, true),
            ],
        ),
    )
    .await
    .err_field(422, "invalid", "records[1].seq");
    let still = city.get(&format!("/v1/defects/{defect}")).await.ok(200);
    assert_eq!(still["sightings"], 3, "a refused batch changed nothing");
    // A device deleted since (or never known): its frames are dropped, the stream moves on.
    let ack = node
        .post(
            "/v1/inspect/frames",
            batch("ai-1", "s-1", vec![record(9, "ghost", 0.0, true)]),
        )
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 9, "accepted": 0}));
    // A record the control plane cannot take is refused on its own, named, and never
    // blocks the stream; one taken for another tenant's device of that id is dropped.
    let mut bad = record(10, "van-1", 0.0, true);
    bad["lat"] = json!(200.0);
    let mut theirs = record(11, "van-1", 0.0, true);
    theirs["tenant"] = json!("other");
    let ack = node
        .post(
            "/v1/inspect/frames",
            batch("ai-1", "s-1", vec![bad, theirs]),
        )
        .await
        .ok(200);
    assert_eq!(ack["through"], 11, "{ack}");
    assert_eq!(ack["accepted"], 0, "{ack}");
    assert_eq!(ack["rejected"][0]["seq"], 10, "{ack}");
    assert_eq!(ack["rejected"][0]["field"], "records[0].lat", "{ack}");
    // The camera sent frame f2 again, to another node: counted once.
    let mut again = record(2, "van-1", 3.0, true);
    again["seq"] = json!(1);
    let ack = node2
        .post("/v1/inspect/frames", batch("ai-2", "s-3", vec![again]))
        .await
        .ok(200);
    assert_eq!(ack, json!({"through": 1, "accepted": 0}));
    let still = city.get(&format!("/v1/defects/{defect}")).await.ok(200);
    assert_eq!(still["sightings"], 3, "nothing counted twice");
    // Positions (a camera's GPS over MQTT) extend a run's path; no model looked at them.
    let position = |seq: u64, metres: f64| {
        let mut p = record(seq, "van-1", metres, false);
        p["kind"] = json!("position");
        p["run"] = json!("run-2");
        p["frame"] = json!(format!("mqtt-{seq}"));
        p
    };
    let mut bogus = position(3, 120.0);
    bogus["detections"] =
        json!([{"class": "D40", "label": "pothole", "score": 0.9, "bbox": [0, 0, 1, 1]}]);
    let ack = node
        .post(
            "/v1/inspect/frames",
            batch(
                "ai-1",
                "s-4",
                vec![position(1, 100.0), position(2, 110.0), bogus],
            ),
        )
        .await
        .ok(200);
    assert_eq!(ack["accepted"], 2, "{ack}");
    assert_eq!(ack["rejected"][0]["field"], "records[2].kind", "{ack}");
    let run2 = city.get("/v1/inspect/runs/run-2").await.ok(200);
    assert_eq!(run2["frames"], 0, "{run2:#}");
    assert!(
        (run2["length_m"].as_f64().expect("length") - 10.0).abs() < 0.5,
        "{run2:#}"
    );
    assert_eq!(run2["path"].as_array().map(Vec::len), Some(2));

    // The other tenant sees none of it.
    other
        .get(&format!("/v1/defects/{defect}"))
        .await
        .err(404, "not_found");
    other
        .get(&format!("/v1/work-orders/{wo}"))
        .await
        .err(404, "not_found");
    assert_eq!(other.get("/v1/work-orders").await.ok(200), json!([]));
    other
        .get("/v1/defects?tenant=city")
        .await
        .err(403, "forbidden");

    // The state machine.
    let act = |body: Value| {
        let city = city.clone();
        let wo = wo.clone();
        async move {
            city.post(&format!("/v1/work-orders/{wo}/actions"), body)
                .await
        }
    };
    act(json!({"action": "close"}))
        .await
        .err_field(422, "invalid", "action");
    act(json!({"action": "dispatch", "crew": "elsewhere"}))
        .await
        .err_field(422, "invalid", "crew");
    act(json!({"action": "fix", "note": ""}))
        .await
        .err_field(422, "invalid", "note");
    act(json!({"action": "duplicate", "of": wo.clone()}))
        .await
        .err_field(422, "invalid", "of");
    let started = act(json!({"action": "start", "by": "Wang Fang"}))
        .await
        .ok(200);
    assert_eq!(started["state"], "in_progress");
    act(json!({"action": "start"}))
        .await
        .err(409, "invalid_transition");
    let fixed =
        act(json!({"action": "fix", "note": "filled", "photo": "https://example.test/p.jpg"}))
            .await
            .ok(200);
    assert_eq!(fixed["state"], "verifying");
    // Frames over the spot since: two with nothing keep it verifying, the third closes it;
    // one far away does not count.
    let clear: Vec<Value> = vec![
        record(12, "van-1", 3.0, false),
        record(13, "van-1", 500.0, false),
        record(14, "van-1", 4.0, false),
    ];
    node.post("/v1/inspect/frames", batch("ai-1", "s-1", clear))
        .await
        .ok(200);
    let o = city.get(&format!("/v1/work-orders/{wo}")).await.ok(200);
    assert_eq!(o["state"], "verifying");
    assert_eq!(o["clear_frames"], 2);
    node.post(
        "/v1/inspect/frames",
        batch("ai-1", "s-1", vec![record(15, "van-1", 2.0, false)]),
    )
    .await
    .ok(200);
    // Three clear frames over the spot, but the van is still on it: not yet.
    let o = city.get(&format!("/v1/work-orders/{wo}")).await.ok(200);
    assert_eq!(o["state"], "verifying");
    assert_eq!(o["clear_frames"], 3);
    // It has passed the spot: closed.
    node.post(
        "/v1/inspect/frames",
        batch("ai-1", "s-1", vec![record(16, "van-1", 40.0, false)]),
    )
    .await
    .ok(200);
    let o = city.get(&format!("/v1/work-orders/{wo}")).await.ok(200);
    assert_eq!(o["state"], "closed", "{o:#}");
    let history: Vec<(&str, &str)> = o["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| {
            (
                e["to"].as_str().expect("to"),
                e["who"].as_str().expect("who"),
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            ("open", "system"),
            ("dispatched", "system"),
            ("in_progress", "tenant:city (Wang Fang)"),
            ("fixed", "tenant:city"),
            ("verifying", "system"),
            ("closed", "system"),
        ]
    );
    assert_eq!(o["defect_detail"]["state"], "repaired");
    // A pothole there again is a new defect.
    node.post(
        "/v1/inspect/frames",
        batch("ai-1", "s-1", vec![record(17, "van-1", 3.0, true)]),
    )
    .await
    .ok(200);
    let defects = city.get("/v1/defects").await.ok(200);
    assert_eq!(defects.as_array().map(Vec::len), Some(2));

    // The run and the report.
    let run = city.get("/v1/inspect/runs/run-1").await.ok(200);
    assert_eq!(run["frames"], 14, "{run:#}");
    let report = city.get("/v1/inspect/report").await.ok(200);
    assert_eq!(report["found"], 2, "{report:#}");
    assert_eq!(report["closed"], 1, "{report:#}");

    // With a heading, only frames that face the spot count over it: a forward camera
    // that has passed it (the spot behind) is "beyond", whatever the distance.
    let wo2 = city.get("/v1/work-orders?state=dispatched").await.ok(200)[0]["id"]
        .as_str()
        .expect("second order")
        .to_owned();
    let fixed = city
        .post(
            &format!("/v1/work-orders/{wo2}/actions"),
            json!({"action": "fix", "note": "filled again"}),
        )
        .await
        .ok(200);
    assert_eq!(fixed["state"], "verifying");
    let heading_north = |seq: u64, metres: f64| {
        let mut r = record(seq, "van-1", metres, false);
        r["heading"] = json!(0.0);
        r
    };
    // 7 m past the spot, heading away: not over it, and nothing clear yet.
    node.post(
        "/v1/inspect/frames",
        batch("ai-1", "s-1", vec![heading_north(18, 10.0)]),
    )
    .await
    .ok(200);
    let o = city.get(&format!("/v1/work-orders/{wo2}")).await.ok(200);
    assert_eq!(
        (o["state"].as_str(), o["clear_frames"].as_u64()),
        (Some("verifying"), Some(0))
    );
    // A later run drives north over it: three frames facing it, then one past it.
    let pass: Vec<Value> = [(19, -6.0), (20, -3.0), (21, -1.0), (22, 9.0)]
        .into_iter()
        .map(|(seq, m)| heading_north(seq, m))
        .collect();
    node.post("/v1/inspect/frames", batch("ai-1", "s-1", pass))
        .await
        .ok(200);
    let o = city.get(&format!("/v1/work-orders/{wo2}")).await.ok(200);
    assert_eq!(o["state"], "closed", "{o:#}");

    // Open311.
    let list = api
        .anonymous()
        .get(&format!("/open311/v2/requests.json?api_key={key}"))
        .await
        .ok(200);
    let list = list.as_array().expect("list");
    assert_eq!(list.len(), 2);
    for r in list {
        for field in lingjing_inspect::open311::REQUEST_FIELDS {
            assert!(r.get(*field).is_some(), "{field} missing: {r:#}");
        }
    }
    let closed = api
        .anonymous()
        .get(&format!(
            "/open311/v2/requests/{wo}.json?api_key={key}&status=closed"
        ))
        .await
        .ok(200);
    assert_eq!(closed[0]["status"], "closed");
    let xml = api
        .anonymous()
        .send(
            Method::GET,
            &format!("/open311/v2/requests.xml?api_key={key}&status=closed"),
            Body::None,
        )
        .await;
    assert_eq!(xml.status, 200);
    let text = xml.body.as_str().expect("xml text").to_owned();
    assert!(
        text.contains(&format!("<service_request_id>{wo}</service_request_id>")),
        "{text}"
    );
    assert!(text.contains("<status>closed</status>"), "{text}");
    // Open311's errors are the spec's lists, not the API's error body.
    let http = reqwest::Client::new();
    let theirs = http
        .get(format!(
            "{}/open311/v2/requests/{wo}.json?api_key={okey}",
            api.base()
        ))
        .send()
        .await
        .expect("open311");
    assert_eq!(theirs.status(), 404);
    let nokey = http
        .get(format!("{}/open311/v2/requests.json", api.base()))
        .send()
        .await
        .expect("open311");
    assert_eq!(nokey.status(), 401);
    let body: Value = nokey.json().await.expect("json");
    assert!(body[0]["description"].is_string(), "{body}");
    let bad = http
        .post(format!("{}/open311/v2/requests.xml", api.base()))
        .form(&[
            ("api_key", key.as_str()),
            ("service_code", "D99"),
            ("lat", "31.5"),
            ("long", "120.3"),
        ])
        .send()
        .await
        .expect("open311");
    assert_eq!(bad.status(), 400);
    let text = bad.text().await.expect("xml");
    assert!(text.contains("<errors><error><code>400</code>"), "{text}");
    let services = api
        .anonymous()
        .get("/open311/v2/services.json")
        .await
        .ok(200);
    let codes: Vec<&str> = services
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["service_code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes, ["D00", "D10", "D20", "D40"]);
}

#[tokio::test]
async fn road_inspection_sqlite() {
    let (mut plane, api) = common::start_seeded().await;
    inspection(&api).await;
    plane.shutdown().await;
}

#[tokio::test]
async fn road_inspection_postgres() {
    lingjing_control::testing::with_scratch_postgres("inspect", |url| async move {
        let store = lingjing_control::Store::open(&url).await.expect("store");
        let (handle, api) = common::serve_store(store).await;
        common::seed_topology(&api).await;
        inspection(&api).await;
        handle.shutdown().await.expect("shutdown");
    })
    .await;
}
