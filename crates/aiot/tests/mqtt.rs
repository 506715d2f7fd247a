//! Patrol cameras' positions and status over MQTT (issue 17), against a real mosquitto
//! the test starts on a free loopback port: a listed device's positions (QoS 1) land in
//! the outbox as `position` records in order; a malformed payload and an unknown device
//! are counted and dropped; a retained `online` and then the last will `offline` show in
//! `GET /v1/patrol/devices`; a position published while the node is away reaches it when
//! it is back (its session is kept).
//!
//! Without mosquitto (`/usr/sbin/mosquitto` or on the PATH) the test says so and passes,
//! unless `LINGJING_TEST_MQTT=1` (CI), where it fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lingjing_aiot::backend::{Backend, Runner};
use lingjing_aiot::mqtt::{DeviceStatus, MqttConfig};
use lingjing_aiot::node::{NodeConfig, NodeHandle};
use lingjing_model::aiot::AiotSnapshot;
use lingjing_model::inspect::{PatrolDevice, RecordKind};
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};

/// No models: positions never run one.
struct NoModels;

impl Backend for NoModels {
    fn name(&self) -> &'static str {
        "none"
    }
    fn load(&self, _onnx: &[u8], _shape: &[usize]) -> Result<Arc<dyn Runner>, String> {
        Err("no models in this test".into())
    }
}

/// A mosquitto of this test's own; killed on drop.
struct Broker {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn mosquitto() -> Option<PathBuf> {
    let fixed = Path::new("/usr/sbin/mosquitto");
    if fixed.is_file() {
        return Some(fixed.to_owned());
    }
    let found = Command::new("which")
        .arg("mosquitto")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if found.is_none() {
        let why =
            "mosquitto is not installed (apt-get install mosquitto): the MQTT test is skipped";
        assert!(
            std::env::var("LINGJING_TEST_MQTT").as_deref() != Ok("1"),
            "LINGJING_TEST_MQTT=1 but {why}"
        );
        eprintln!("{why}");
    }
    found
}

/// Starts mosquitto on a free loopback port and waits until it takes connections.
fn start_broker(bin: &Path) -> Broker {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("addr").port()
    };
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .expect("conf");
    let log = dir.path().join("mosquitto.log");
    let out = std::fs::File::create(&log).expect("log");
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::from(out.try_clone().expect("log")))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let mut broker = Broker {
        child,
        port,
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return broker;
        }
        if let Ok(Some(status)) = broker.child.try_wait() {
            panic!("mosquitto exited ({status}): {}", broker.log());
        }
        assert!(
            Instant::now() < deadline,
            "mosquitto does not listen on {port}: {}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn start_node(dir: &Path, broker: &Broker) -> NodeHandle {
    let node = lingjing_aiot::node::start(
        NodeConfig {
            node: "ai-1".into(),
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.to_owned(),
            workers_per_slot: 1,
            credential: "ljn_node-credential".into(),
            ca: None,
            pause_at: None,
            control: None,
            mqtt: Some(MqttConfig {
                url: broker.url(),
                username: None,
                password: None,
                client_id: MqttConfig::default_client_id("ai-1"),
            }),
            telemetry_token: None,
        },
        Arc::new(NoModels),
        None,
    )
    .await
    .expect("node starts");
    node.apply(&AiotSnapshot {
        devices: vec![PatrolDevice {
            id: "van-1".into(),
            tenant: "city".into(),
            slot: "road-distress".into(),
            detects: Vec::new(),
            token_sha256: None,
        }],
        ..Default::default()
    });
    wait_for(&node, "the node subscribed", |m, _| {
        metric(m, "lingjing_aiot_mqtt_connected") == 1.0
    })
    .await;
    node
}

/// A device's client: its event loop runs in a task (aborted: the connection drops
/// without DISCONNECT, so the broker publishes its will).
struct Device {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

fn device(broker: &Broker, id: &str, will: Option<LastWill>) -> Device {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(30));
    if let Some(w) = will {
        options.set_last_will(w);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                eprintln!("test device: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    Device { client, task }
}

async fn publish(device: &Device, topic: &str, retain: bool, payload: impl Into<Vec<u8>>) {
    device
        .client
        .publish(topic, QoS::AtLeastOnce, retain, payload.into())
        .await
        .expect("publish");
}

fn position(seq: u64, lat: f64) -> String {
    serde_json::json!({
        "seq": seq, "run": "run-1", "lat": lat, "lon": 121.4737, "heading": 90.0,
        "taken_ms": 1_700_000_000_000_i64 + seq as i64,
    })
    .to_string()
}

/// A sample's value in the exposition text (0 when absent).
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn outcome(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        &format!("lingjing_aiot_mqtt_messages_total{{outcome=\"{outcome}\"}}"),
    )
}

async fn devices(addr: SocketAddr) -> Vec<DeviceStatus> {
    reqwest::get(format!("http://{addr}/v1/patrol/devices"))
        .await
        .expect("devices")
        .error_for_status()
        .expect("200")
        .json()
        .await
        .expect("json")
}

/// Waits (20 s at most) until `ok(metrics, devices)`.
async fn wait_for(
    node: &NodeHandle,
    what: &str,
    ok: impl Fn(&str, &[DeviceStatus]) -> bool,
) -> (String, Vec<DeviceStatus>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = reqwest::get(format!("http://{}/metrics", node.addr()))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let d = devices(node.addr()).await;
        if ok(&m, &d) {
            return (m, d);
        }
        assert!(
            Instant::now() < deadline,
            "waited 20 s for {what}: devices {d:?}\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn positions_and_status_come_over_mqtt() {
    let Some(bin) = mosquitto() else {
        return;
    };
    let broker = start_broker(&bin);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(&dir.path().join("first"), &broker).await;
    let (_, listed) = wait_for(&node, "the device listed", |_, d| d.len() == 1).await;
    assert_eq!(listed[0].device, "van-1");
    assert_eq!(listed[0].status, None);

    let van = device(
        &broker,
        "van-1",
        Some(LastWill::new(
            "lj/v1/city/van-1/status",
            "offline",
            QoS::AtLeastOnce,
            true,
        )),
    );
    publish(&van, "lj/v1/city/van-1/status", true, "online").await;
    let lats = [31.2301, 31.2302, 31.2303];
    for (i, lat) in lats.iter().enumerate() {
        let seq = i as u64 + 1;
        publish(&van, "lj/v1/city/van-1/patrol", false, position(seq, *lat)).await;
    }
    publish(&van, "lj/v1/city/van-1/patrol", false, "{not json").await;
    // A device the snapshot does not list, and a listed one under another tenant.
    let other = device(&broker, "van-9", None);
    publish(&other, "lj/v1/city/van-9/patrol", false, position(1, 31.0)).await;
    publish(&other, "lj/v1/town/van-1/patrol", false, position(1, 31.0)).await;

    let (m, d) = wait_for(&node, "every message handled", |m, d| {
        outcome(m, "position") == 3.0
            && outcome(m, "malformed") == 1.0
            && outcome(m, "unknown_device") == 2.0
            && d.first().and_then(|d| d.status.as_deref()) == Some("online")
    })
    .await;
    assert_eq!(outcome(&m, "refused"), 0.0, "{m}");
    assert_eq!(outcome(&m, "status"), 1.0, "{m}");
    assert_eq!(d[0].positions, 3);
    assert_eq!(d[0].tenant, "city");
    let online_since = d[0].since_ms.expect("since");

    let outbox = node.patrol.outbox().expect("outbox").clone();
    let records = outbox.pending(100, 1 << 20).expect("pending");
    assert_eq!(records.len(), 3, "{records:?}");
    for (i, r) in records.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(r.seq, n);
        assert_eq!(r.kind, RecordKind::Position);
        assert_eq!(r.device, "van-1");
        assert_eq!(r.run, "run-1");
        assert_eq!(r.frame, format!("mqtt-{n}"));
        assert_eq!(r.lat, lats[i]);
        assert_eq!(r.heading, Some(90.0));
        assert_eq!(r.taken_ms, 1_700_000_000_000 + n as i64);
        assert_eq!(r.model, "road-distress");
        assert_eq!(r.tenant.as_deref(), Some("city"));
        assert!(r.detections.is_empty() && r.image.is_none());
        r.check("record").expect("the control plane would take it");
    }
    // Serialised with its kind (the control plane adds it to the run's path only).
    assert_eq!(
        serde_json::to_value(&records[0]).expect("json")["kind"],
        "position"
    );

    // The van drops off without DISCONNECT: its will says offline.
    van.task.abort();
    let (_, d) = wait_for(&node, "the last will", |_, d| {
        d.first().and_then(|d| d.status.as_deref()) == Some("offline")
    })
    .await;
    assert!(d[0].since_ms.expect("since") >= online_since);

    // The node goes away; a position published meanwhile (QoS 1) reaches it when it is
    // back with the same client id: its session was kept.
    node.stop();
    let van = device(&broker, "van-1", None);
    publish(&van, "lj/v1/city/van-1/patrol", false, position(4, 31.2304)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let node = start_node(&dir.path().join("second"), &broker).await;
    wait_for(&node, "the position published while away", |m, _| {
        outcome(m, "position") == 1.0
    })
    .await;
    let records = node
        .patrol
        .outbox()
        .expect("outbox")
        .pending(100, 1 << 20)
        .expect("pending");
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].frame, "mqtt-4");
    // The retained `offline` is there for the new session too.
    wait_for(&node, "the retained status", |_, d| {
        d.first().and_then(|d| d.status.as_deref()) == Some("offline")
    })
    .await;
    van.task.abort();
    other.task.abort();
    node.stop();
    drop(broker);
}

/// A webhook receiver: keeps what it is sent.
async fn receiver() -> (String, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
    use axum::routing::post;
    let got: Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                if let Ok(v) = serde_json::from_slice(&body) {
                    keep.lock().expect("lock").push(v);
                }
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

/// `mosquitto_pub` (QoS 1) of `payload` on `topic`.
fn mosquitto_pub(broker: &Broker, topic: &str, payload: &str) {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
        .args(["-t", topic, "-m", payload])
        .output()
        .expect("mosquitto_pub (apt-get install mosquitto-clients)");
    assert!(
        out.status.success(),
        "mosquitto_pub: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn monitor_outcome(text: &str, outcome: &str) -> f64 {
    metric(
        text,
        &format!("lingjing_aiot_monitor_messages_total{{outcome=\"{outcome}\"}}"),
    )
}

#[tokio::test]
async fn sensors_over_mqtt_raise_and_clear_alerts_once_and_a_last_will_raises_offline() {
    use lingjing_model::monitor::{MonitorConfig, Receiver, Sensor, SensorKind, SiteMonitor};
    let Some(bin) = mosquitto() else {
        return;
    };
    let broker = start_broker(&bin);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = start_node(dir.path(), &broker).await;
    let (hook, got) = receiver().await;
    let sensor = |id: &str, kind| Sensor {
        id: id.into(),
        site: "wuxi-1".into(),
        room: "hall-1".into(),
        cabinet: None,
        rack_unit: None,
        kind,
        device: "env-1".into(),
        interval_s: 3600,
        contract_watts: None,
        tenant: None,
        rules: None,
    };
    node.apply(&AiotSnapshot {
        monitor: MonitorConfig {
            monitors: vec![SiteMonitor {
                site: "wuxi-1".into(),
                node: "ai-1".into(),
            }],
            sensors: vec![
                sensor("smoke-1", SensorKind::Smoke),
                sensor("inlet-1", SensorKind::Temperature),
            ],
            receivers: vec![Receiver {
                id: "ops".into(),
                url: Some(hook),
                email: None,
                secret: "0123456789abcdef".into(),
                sites: vec![],
                tenants: vec![],
                min_severity: lingjing_alerts::Severity::Warning,
            }],
            escalate_after_s: 900,
            ..MonitorConfig::default()
        },
        ..Default::default()
    });

    // The device comes online (retained), with a last will.
    let env = device(
        &broker,
        "env-1",
        Some(LastWill::new(
            "lj/v1/wuxi-1/env-1/status",
            "offline",
            QoS::AtLeastOnce,
            true,
        )),
    );
    publish(&env, "lj/v1/wuxi-1/env-1/status", true, "online").await;
    // Smoke, then clear; hostile messages between: not JSON, a device of no sensor,
    // another site's topic, a sensor the device does not report, a value not a number.
    let t = "lj/v1/wuxi-1/env-1/telemetry";
    mosquitto_pub(
        &broker,
        t,
        r#"{"seq": 1, "values": {"smoke-1": 0, "inlet-1": 22.5}}"#,
    );
    mosquitto_pub(&broker, t, r#"{"seq": 2, "values": {"smoke-1": 1}}"#);
    mosquitto_pub(&broker, t, "{not json");
    mosquitto_pub(
        &broker,
        "lj/v1/wuxi-1/env-9/telemetry",
        r#"{"values": {"smoke-1": 1}}"#,
    );
    mosquitto_pub(
        &broker,
        "lj/v1/suqian-1/env-1/telemetry",
        r#"{"values": {"smoke-1": 1}}"#,
    );
    mosquitto_pub(&broker, t, r#"{"seq": 3, "values": {"nobody": 1}}"#);
    mosquitto_pub(&broker, t, r#"{"seq": 4, "values": {"smoke-1": "fire"}}"#);
    mosquitto_pub(&broker, t, r#"{"seq": 5, "values": {"smoke-1": 0}}"#);
    let (m, _) = wait_for(&node, "the telemetry handled", |m, _| {
        outcome(m, "telemetry") == 4.0
            && outcome(m, "malformed") == 2.0
            && outcome(m, "unknown_device") == 2.0
    })
    .await;
    assert_eq!(monitor_outcome(&m, "kept"), 4.0, "{m}");
    assert_eq!(monitor_outcome(&m, "dropped"), 1.0, "{m}");

    // The device drops off without DISCONNECT: its will raises device-offline.
    env.task.abort();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let states: Vec<(String, String)> = got
            .lock()
            .expect("lock")
            .iter()
            .map(|v| {
                (
                    v["key"].as_str().unwrap_or("").to_owned(),
                    v["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        if states.len() >= 3 {
            assert_eq!(
                states,
                [
                    ("smoke/smoke-1".to_owned(), "firing".to_owned()),
                    ("smoke/smoke-1".to_owned(), "resolved".to_owned()),
                    ("device-offline/env-1".to_owned(), "firing".to_owned()),
                ]
            );
            break;
        }
        assert!(Instant::now() < deadline, "notifications: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().expect("lock").len(), 3, "one per transition");
    node.stop();
    drop(broker);
}
