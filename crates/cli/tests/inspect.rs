//! Road inspection end to end with real processes (issue 17): `lingjing control` and a
//! `lingjing aiot` node running the stand-in classifier of the EdgeAIoT tests (it tells
//! upright from upside-down text: a frame whose text is upside down is the synthetic
//! "pothole" marker). A patrol drives a straight 200 m route, a frame every 2 m, with the
//! marker at two spots:
//!
//! - the control plane is killed half way through the first run; the node keeps taking
//!   frames into its outbox, and after the restart every frame and every detection has
//!   arrived exactly once: two defects of five sightings each, two work orders,
//!   dispatched to the crew whose area holds them;
//! - both orders are started and fixed; a second run over the route, with the marker
//!   gone from one spot and still at the other, closes the first order and reopens the
//!   second (sent back to its crew), each with who and why in its history;
//! - Open311 shows the two requests (closed, open) in JSON and XML with the spec's
//!   fields, and a citizen's report enters the same flow;
//! - another tenant's key sees none of it.

mod common;

use std::time::{Duration, Instant};

use common::aiot::*;
use lingjing_client::Client;
use serde_json::{Value, json};

const NODE: &str = "road-1";
const START: (f64, f64) = (31.2300, 121.4700);
/// Frames per run, 2 m apart.
const FRAMES: usize = 100;
/// Frames that show the marker: spot A (40–48 m) and spot B (140–148 m).
const SPOT_A: std::ops::Range<usize> = 20..25;
const SPOT_B: std::ops::Range<usize> = 70..75;

/// The point `metres` east of the start.
fn along(metres: f64) -> (f64, f64) {
    let lat = START.0;
    let dlon = metres / (111_320.0 * lat.to_radians().cos());
    (lat, START.1 + dlon)
}

fn upright() -> Vec<u8> {
    std::fs::read(fixture("text-upright.png")).expect("image")
}

/// The marker: the text line upside down.
fn marker() -> Vec<u8> {
    let img = image::load_from_memory(&upright())
        .expect("png")
        .rotate180();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode");
    out.into_inner()
}

struct Patrol {
    node: String,
    token: String,
    http: reqwest::Client,
}

impl Patrol {
    /// Posts frame `i` of `run` (the marker or not): the node's status and answer.
    async fn frame(&self, run: &str, i: usize, image: &[u8]) -> (u16, Value) {
        let (lat, lon) = along(2.0 * i as f64);
        let r = self
            .http
            .post(format!(
                "{}/v1/patrol/frames?run={run}&frame={run}-{i}&lat={lat}&lon={lon}&heading=90",
                self.node
            ))
            .bearer_auth(&self.token)
            .header("content-type", "image/png")
            .body(image.to_vec())
            .send()
            .await
            .expect("post frame");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Drives frames `range` of `run`, the marker at `spots`.
    async fn drive(
        &self,
        run: &str,
        range: std::ops::Range<usize>,
        spots: &[std::ops::Range<usize>],
    ) {
        let (plain, mark) = (upright(), marker());
        for i in range {
            let on_spot = spots.iter().any(|s| s.contains(&i));
            let (status, body) = self
                .frame(run, i, if on_spot { &mark } else { &plain })
                .await;
            assert_eq!(status, 200, "frame {i} of {run}: {body:#}");
            assert_eq!(
                body["detections"].as_array().map(Vec::len),
                Some(usize::from(on_spot)),
                "frame {i} of {run}: {body:#}"
            );
        }
    }
}

async fn until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within 120 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn order(api: &Client, id: &str) -> Value {
    api.get(&format!("/v1/work-orders/{id}"))
        .await
        .expect("order")
}

async fn act(api: &Client, id: &str, body: Value) -> Value {
    api.post(&format!("/v1/work-orders/{id}/actions"), &body)
        .await
        .unwrap_or_else(|e| panic!("{body} on {id}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patrol_opens_one_order_per_defect_and_a_later_run_closes_or_reopens_it() {
    let (mut plane, nodes) = with_v1(&[NODE]).await;
    let api = plane.api.clone();
    for t in ["city", "other"] {
        let _: Value = api
            .post("/v1/tenants", &json!({"id": t, "name": t}))
            .await
            .expect("tenant");
    }
    let key: Value = api
        .post("/v1/tenants/city/keys", &json!({}))
        .await
        .expect("key");
    let city_key = key["secret"].as_str().expect("secret").to_owned();
    let city = Client::new(&plane.url, &city_key).expect("client");
    let key: Value = api
        .post("/v1/tenants/other/keys", &json!({}))
        .await
        .expect("key");
    let other = Client::new(&plane.url, key["secret"].as_str().expect("secret")).expect("client");

    // The city registers its van and a crew whose area holds the route.
    let _: Value = city
        .post(
            "/v1/devices",
            &json!({"id": "van-1", "tenant": "city", "slot": MODEL,
                    "detects": [{"label": "180", "class": "D40", "min_score": 0.6}]}),
        )
        .await
        .expect("device");
    let token: Value = city
        .post("/v1/devices/van-1/token", &json!({}))
        .await
        .expect("token");
    let _: Value = city
        .post(
            "/v1/crews",
            &json!({"id": "east", "tenant": "city", "name": "East road crew",
                    "areas": [{"south": 31.22, "west": 121.46, "north": 31.24, "east": 121.49}]}),
        )
        .await
        .expect("crew");
    // Another tenant's device may not claim the city's id, nor its frames.
    let refused = other
        .post::<_, Value>(
            "/v1/devices",
            &json!({"id": "spy", "tenant": "city", "slot": MODEL, "detects": []}),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");

    let patrol = Patrol {
        node: nodes[0].base.clone(),
        token: token["token"].as_str().expect("token").to_owned(),
        http: reqwest::Client::new(),
    };
    // The node learns the device with its next snapshot; a wrong token never works.
    let bad = Patrol {
        node: patrol.node.clone(),
        token: "ljd_not-a-token".into(),
        http: patrol.http.clone(),
    };
    assert_eq!(bad.frame("run-x", 0, &upright()).await.0, 401);
    until("the node knows the van", async || {
        let r = patrol
            .http
            .post(format!(
                "{}/v1/patrol/frames?run=probe&frame=p&lat=999&lon=0",
                patrol.node
            ))
            .bearer_auth(&patrol.token)
            .body(upright())
            .send()
            .await
            .ok()?;
        (r.status().as_u16() == 400).then_some(())
    })
    .await;

    // Run 1: half, then the control plane dies; the node keeps every frame.
    patrol
        .drive("run-1", 0..FRAMES / 2, &[SPOT_A, SPOT_B])
        .await;
    plane.control.kill9();
    patrol
        .drive("run-1", FRAMES / 2..FRAMES, &[SPOT_A, SPOT_B])
        .await;
    plane.restart_control();
    let run: Value = until("every frame of run-1", async || {
        let r: Value = city.get("/v1/inspect/runs/run-1").await.ok()?;
        (r["frames"] == FRAMES).then_some(r)
    })
    .await;
    assert_eq!(run["detections"], 10, "{run:#}");
    assert!(
        (run["length_m"].as_f64().expect("length") - 198.0).abs() < 2.0,
        "{run:#}"
    );
    assert!(run["path"].as_array().expect("path").len() >= FRAMES / 2);
    let defects: Vec<Value> = city.get("/v1/defects").await.expect("defects");
    assert_eq!(defects.len(), 2, "{defects:#?}");
    for d in &defects {
        assert_eq!(d["sightings"], 5, "{d:#}");
        assert_eq!(d["class"], "D40");
    }
    let orders: Vec<Value> = city.get("/v1/work-orders").await.expect("orders");
    assert_eq!(orders.len(), 2, "one order per defect: {orders:#?}");
    for o in &orders {
        assert_eq!(o["state"], "dispatched", "{o:#}");
        assert_eq!(o["crew"], "east");
    }
    // Which order is which spot: A lies west of B.
    let lon_of = |o: &Value| {
        defects
            .iter()
            .find(|d| d["id"] == o["defect"])
            .and_then(|d| d["lon"].as_f64())
            .expect("defect of order")
    };
    let (a, b) = if lon_of(&orders[0]) < lon_of(&orders[1]) {
        (&orders[0], &orders[1])
    } else {
        (&orders[1], &orders[0])
    };
    let (a, b) = (
        a["id"].as_str().expect("id").to_owned(),
        b["id"].as_str().expect("id").to_owned(),
    );
    let shown = order(&city, &a).await;
    let evidence = city
        .get::<Value>(&format!(
            "/v1/defects/{}",
            shown["defect"].as_str().expect("defect")
        ))
        .await
        .expect("defect");
    assert_eq!(
        evidence["evidence"].as_array().map(Vec::len),
        Some(3),
        "{evidence:#}"
    );
    assert!(
        evidence["evidence"][0]["has_image"]
            .as_bool()
            .expect("has_image")
    );
    // The other tenant sees nothing of it.
    assert!(
        other
            .get::<Value>(&format!("/v1/work-orders/{a}"))
            .await
            .is_err()
    );
    let theirs: Vec<Value> = other.get("/v1/defects").await.expect("defects");
    assert!(theirs.is_empty());

    // The crew fixes both; closing is the system's alone.
    for id in [&a, &b] {
        act(&city, id, json!({"action": "start", "by": "Li Wei"})).await;
        let fixed = act(
            &city,
            id,
            json!({"action": "fix", "note": "patched with cold mix"}),
        )
        .await;
        assert_eq!(fixed["state"], "verifying", "{fixed:#}");
    }
    let refused = city
        .post::<_, Value>(
            &format!("/v1/work-orders/{a}/actions"),
            &json!({"action": "close"}),
        )
        .await;
    assert!(refused.is_err());

    // Run 2: A is repaired, B is still there.
    patrol.drive("run-2", 0..FRAMES, &[SPOT_B]).await;
    let closed = until("order A closed", async || {
        let o = order(&city, &a).await;
        (o["state"] == "closed").then_some(o)
    })
    .await;
    let last = closed["history"]
        .as_array()
        .expect("history")
        .last()
        .cloned()
        .expect("event");
    assert_eq!(last["who"], "system", "{closed:#}");
    assert_eq!(last["action"], "close");
    let reopened = until("order B sent back", async || {
        let o = order(&city, &b).await;
        (o["state"] == "dispatched"
            && o["history"]
                .as_array()?
                .iter()
                .any(|e| e["action"] == "reopen"))
        .then_some(o)
    })
    .await;
    assert_eq!(reopened["crew"], "east", "{reopened:#}");
    let history: Vec<&str> = reopened["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["to"].as_str().expect("to"))
        .collect();
    assert_eq!(
        history,
        [
            "open",
            "dispatched",
            "in_progress",
            "fixed",
            "verifying",
            "reopened",
            "dispatched"
        ],
        "{reopened:#}"
    );
    assert!(
        reopened["history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|e| e["who"] == "tenant:city (Li Wei)"),
        "{reopened:#}"
    );
    // Still exactly two defects: B's sightings in run 2 merged into B.
    let defects: Vec<Value> = city.get("/v1/defects").await.expect("defects");
    assert_eq!(defects.len(), 2, "{defects:#?}");

    // Open311, as a city system reads it.
    let key = city_key.clone();
    let http = reqwest::Client::new();
    let list: Value = http
        .get(format!(
            "{}/open311/v2/requests.json?api_key={key}",
            plane.url
        ))
        .send()
        .await
        .expect("requests")
        .json()
        .await
        .expect("json");
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 2, "{list:#?}");
    for r in list {
        for field in lingjing_inspect::open311::REQUEST_FIELDS {
            assert!(r.get(field).is_some(), "{field} missing in {r:#}");
        }
        let want = if r["service_request_id"] == a.as_str() {
            "closed"
        } else {
            "open"
        };
        assert_eq!(r["status"], want, "{r:#}");
        assert_eq!(r["service_code"], "D40");
    }
    let xml = http
        .get(format!(
            "{}/open311/v2/requests/{b}.xml?api_key={key}",
            plane.url
        ))
        .send()
        .await
        .expect("request xml")
        .text()
        .await
        .expect("text");
    assert!(
        xml.contains("<service_requests>")
            && xml.contains(&format!("<service_request_id>{b}</service_request_id>")),
        "{xml}"
    );
    let services: Value = http
        .get(format!("{}/open311/v2/services.json", plane.url))
        .send()
        .await
        .expect("services")
        .json()
        .await
        .expect("json");
    assert!(
        services
            .as_array()
            .expect("services")
            .iter()
            .any(|s| s["service_code"] == "D40")
    );
    // A citizen reports a crack far from both spots: a new defect and order.
    let (lat, lon) = along(400.0);
    let made: Value = http
        .post(format!("{}/open311/v2/requests.json", plane.url))
        .form(&[
            ("api_key", key.as_str()),
            ("service_code", "D20"),
            ("lat", &lat.to_string()),
            ("long", &lon.to_string()),
            ("description", "cracked like a crocodile's back"),
        ])
        .send()
        .await
        .expect("post request")
        .json()
        .await
        .expect("json");
    let id = made[0]["service_request_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let o = order(&city, &id).await;
    assert_eq!(o["defect_detail"]["source"], "citizen", "{o:#}");
    let bad: Value = http
        .post(format!("{}/open311/v2/requests.json", plane.url))
        .form(&[("api_key", key.as_str()), ("service_code", "D20")])
        .send()
        .await
        .expect("post request")
        .json()
        .await
        .expect("json");
    assert!(
        bad[0]["description"]
            .as_str()
            .expect("error")
            .contains("lat"),
        "{bad:#}"
    );

    // The weekly report counts it all.
    let report: Value = city.get("/v1/inspect/report").await.expect("report");
    assert_eq!(report["found"], 3, "{report:#}");
    assert_eq!(report["fixed"], 2, "{report:#}");
    assert_eq!(report["closed"], 1, "{report:#}");
}
