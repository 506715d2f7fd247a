//! Patrol cameras' metadata over MQTT (issue 17): the node subscribes (QoS 1) to its
//! site broker's `lj/v1/{tenant}/{device}/patrol` (positions) and
//! `lj/v1/{tenant}/{device}/status` (presence) topics. Frames still come over HTTP
//! (`POST /v1/patrol/frames`, see `patrol`). The same connection takes the site's
//! sensors' `lj/v1/{site}/{device}/telemetry` and the status of devices that are not
//! patrol cameras, and hands them to the monitor (`lingjing_monitor::mqtt`).
//!
//! Trust: the broker authenticates each device and its ACLs confine a device to its own
//! topics (for mosquitto, e.g. `pattern write lj/v1/+/%u/#` with the device id as its
//! username). The node takes the device id from the topic's fourth segment
//! (`lj/v1/{tenant}/{device}/...`) and the message only if the latest `aiot` snapshot lists
//! that device, in that tenant.
//!
//! Positions: `{"seq": u64, "run": "...", "lat": f64, "lon": f64, "heading": f32
//! (optional), "taken_ms": i64 (optional, ms since the epoch, default now)}`, at most
//! [`MAX_PAYLOAD_BYTES`]. One becomes a [`FrameRecord`] of kind `position` (frame
//! `mqtt-{seq}`, no detections, no image) appended to the patrol outbox, which forwards
//! it to the control plane like a frame's record; the control plane adds it to the run's
//! path. QoS 1 may deliver a message twice: the control plane keeps one per (device, run,
//! frame). A message is acknowledged to the broker once handled (appended or dropped), so
//! a node that stops mid-way gets it again. Malformed messages, unknown devices, records
//! that fail [`FrameRecord::check`] and positions a full outbox cannot keep are dropped and
//! counted (`lingjing_aiot_mqtt_messages_total{outcome}`); nobody is told.
//!
//! Status: the payload `online` or `offline` (devices publish `online` retained and set a
//! last will `offline`, retained). The node keeps each device's last status, when it
//! learned it and how many positions it took: `GET /v1/patrol/devices`.
//!
//! The session is kept (clean session off, the client id fixed per node), so QoS 1
//! messages published while the node was away are delivered when it is back; after an
//! error it reconnects after [`FIRST_BACKOFF`], doubling to [`MAX_BACKOFF`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lingjing_model::inspect::{FrameRecord, PatrolDevice, RecordKind};
use rumqttc::{
    AsyncClient, Event, MqttOptions, Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::metrics::{Metrics, MqttLabels};
use crate::patrol::{MAX_CLOCK_AHEAD_MS, Patrol, now_ms};
use lingjing_client::outbox::is_full;
use lingjing_monitor::Monitor;

/// Positions' topics (QoS 1).
pub const POSITION_TOPICS: &str = "lj/v1/+/+/patrol";
/// Status topics (QoS 1, retained).
pub const STATUS_TOPICS: &str = "lj/v1/+/+/status";
/// Largest payload taken (a larger one is malformed).
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Largest packet read from the broker: a larger one breaks the connection (and, being
/// unacknowledged, comes again), so the broker should cap messages (mosquitto:
/// `message_size_limit`).
pub const MAX_PACKET_BYTES: usize = 256 * 1024;
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The first wait after a connection error; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest status payload kept.
const MAX_STATUS_CHARS: usize = 32;

/// How the node reaches its broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// `mqtt://HOST[:PORT]` (port 1883 by default). No TLS: the site's LAN.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Fixed per node, so the broker keeps its session: [`MqttConfig::default_client_id`].
    pub client_id: String,
}

impl MqttConfig {
    /// `lingjing-aiot-{node}`.
    pub fn default_client_id(node: &str) -> String {
        format!("lingjing-aiot-{node}")
    }

    /// The broker's host and port from [`MqttConfig::url`].
    pub fn broker(&self) -> Result<(String, u16), String> {
        let url = self.url.trim();
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mqtt") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("mqtts") => {
                return Err(format!(
                    "MQTT URL {url}: TLS (mqtts://) is not supported yet: use mqtt:// on the site's network"
                ));
            }
            _ => {
                return Err(format!(
                    "MQTT URL {url}: expected mqtt://HOST[:PORT], e.g. mqtt://127.0.0.1:1883"
                ));
            }
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '@', '?', '#']) {
            return Err(format!(
                "MQTT URL {url}: expected mqtt://HOST[:PORT] (credentials go in --mqtt-username and --mqtt-password-file)"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("MQTT URL {url}: unclosed `[`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            None => 1883,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("MQTT URL {url}: `{p}` is not a port"))?,
        };
        if host.is_empty() {
            return Err(format!("MQTT URL {url}: no host"));
        }
        Ok((host.to_owned(), port))
    }

    /// Whether the URL and credentials make a connection's options (what is wrong if not).
    pub fn check(&self) -> Result<(), String> {
        self.options().map(|_| ())
    }

    fn options(&self) -> Result<MqttOptions, String> {
        let (host, port) = self.broker()?;
        if self.client_id.trim().is_empty() {
            return Err("the MQTT client id is empty".into());
        }
        let mut options = MqttOptions::new(self.client_id.clone(), host, port);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(MAX_PACKET_BYTES, 16 * 1024);
        match (&self.username, &self.password) {
            (Some(u), p) => {
                options.set_credentials(u.clone(), p.clone().unwrap_or_default());
            }
            (None, Some(_)) => {
                return Err("an MQTT password needs a username".into());
            }
            (None, None) => {}
        }
        Ok(options)
    }
}

/// What the node knows of one device's presence.
#[derive(Debug, Clone, Default)]
struct Seen {
    status: Option<String>,
    since_ms: Option<i64>,
    positions: u64,
    last_position_ms: Option<i64>,
}

/// Devices' last status and positions taken, in memory (kept only for devices the
/// snapshot lists).
#[derive(Default)]
pub struct Presence {
    seen: Mutex<HashMap<String, Seen>>,
}

/// One device in `GET /v1/patrol/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceStatus {
    pub device: String,
    pub tenant: String,
    /// Its last status message (`online`, `offline`); none: none heard since the node
    /// started.
    pub status: Option<String>,
    /// When the node learned that status (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Positions taken from it over MQTT since the node started.
    pub positions: u64,
    /// When the last of them was taken (the node's clock).
    pub last_position_ms: Option<i64>,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn status(&self, device: &str, status: String, at_ms: i64) {
        let mut seen = self.lock();
        let s = seen.entry(device.to_owned()).or_default();
        if s.status.as_deref() != Some(status.as_str()) {
            s.since_ms = Some(at_ms);
            s.status = Some(status);
        }
    }

    fn position(&self, device: &str, at_ms: i64) {
        let mut seen = self.lock();
        let s = seen.entry(device.to_owned()).or_default();
        s.positions += 1;
        s.last_position_ms = Some(at_ms);
    }

    /// Every device the patrol side lists, with what is known of it.
    pub fn list(&self, patrol: &Patrol) -> Vec<DeviceStatus> {
        let seen = self.lock();
        patrol
            .listed_devices()
            .iter()
            .map(|d| {
                let s = seen.get(&d.id).cloned().unwrap_or_default();
                DeviceStatus {
                    device: d.id.clone(),
                    tenant: d.tenant.clone(),
                    status: s.status,
                    since_ms: s.since_ms,
                    positions: s.positions,
                    last_position_ms: s.last_position_ms,
                }
            })
            .collect()
    }
}

/// `GET /v1/patrol/devices`: the devices the node knows, with their MQTT status.
pub fn routes(patrol: Arc<Patrol>, presence: Arc<Presence>) -> Router {
    Router::new()
        .route("/v1/patrol/devices", get(devices))
        .with_state((patrol, presence))
}

async fn devices(State((patrol, presence)): State<(Arc<Patrol>, Arc<Presence>)>) -> Response {
    axum::Json(presence.list(&patrol)).into_response()
}

/// A position message's payload.
#[derive(Debug, Deserialize)]
struct PositionMessage {
    seq: u64,
    run: String,
    lat: f64,
    lon: f64,
    #[serde(default)]
    heading: Option<f32>,
    #[serde(default)]
    taken_ms: Option<i64>,
}

/// What became of a message (the metric's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Position,
    Status,
    /// A sensor's telemetry taken by the monitor.
    Telemetry,
    Malformed,
    UnknownDevice,
    Refused,
    OutboxFull,
    OutboxFailed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Position => "position",
            Outcome::Status => "status",
            Outcome::Telemetry => "telemetry",
            Outcome::Malformed => "malformed",
            Outcome::UnknownDevice => "unknown_device",
            Outcome::Refused => "refused",
            Outcome::OutboxFull => "outbox_full",
            Outcome::OutboxFailed => "outbox_failed",
        }
    }
}

/// Which kind of topic a message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicKind {
    Patrol,
    Status,
    Telemetry,
}

/// `lj/v1/{tenant}/{device}/{patrol|status}`: the kind, the tenant and the device.
fn parse_topic(topic: &str) -> Option<(TopicKind, &str, &str)> {
    let mut parts = topic.split('/');
    let (Some("lj"), Some("v1"), Some(tenant), Some(device), Some(kind), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if tenant.is_empty() || device.is_empty() {
        return None;
    }
    let kind = match kind {
        "patrol" => TopicKind::Patrol,
        "status" => TopicKind::Status,
        "telemetry" => TopicKind::Telemetry,
        _ => return None,
    };
    Some((kind, tenant, device))
}

/// Handles one message: a position appended to the outbox, a status kept, or a drop.
pub(crate) async fn handle(
    patrol: &Patrol,
    presence: &Presence,
    monitor: Option<&Monitor>,
    topic: &str,
    payload: &[u8],
) -> Outcome {
    let Some((kind, tenant, id)) = parse_topic(topic) else {
        tracing::debug!(
            topic,
            "an MQTT message on a topic of another shape: dropped"
        );
        return Outcome::Malformed;
    };
    // The site's sensors (IDC monitoring): `lj/v1/{site}/{device}/...`.
    if let Some(monitor) = monitor {
        match kind {
            TopicKind::Telemetry => {
                return monitor_outcome(
                    lingjing_monitor::mqtt::telemetry(monitor, tenant, id, payload).await,
                );
            }
            TopicKind::Status if patrol.device_by_id(id).is_none() => {
                let text = std::str::from_utf8(payload).unwrap_or("").trim();
                let online = match text.to_ascii_lowercase().as_str() {
                    "online" => true,
                    "offline" => false,
                    _ => return Outcome::Malformed,
                };
                return match lingjing_monitor::mqtt::status(monitor, tenant, id, online).await {
                    lingjing_monitor::mqtt::Outcome::Taken => Outcome::Status,
                    other => monitor_outcome(other),
                };
            }
            _ => {}
        }
    } else if kind == TopicKind::Telemetry {
        return Outcome::UnknownDevice;
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        tracing::debug!(
            topic,
            bytes = payload.len(),
            "an MQTT message over {MAX_PAYLOAD_BYTES} bytes: dropped"
        );
        return Outcome::Malformed;
    }
    let device = match patrol.device_by_id(id) {
        Some(d) if d.tenant == tenant => d,
        _ => {
            tracing::debug!(
                topic,
                "an MQTT message of a device this node's snapshot does not list: dropped"
            );
            return Outcome::UnknownDevice;
        }
    };
    match kind {
        TopicKind::Status => {
            let text = std::str::from_utf8(payload).unwrap_or("").trim();
            let status = text.to_ascii_lowercase();
            if status != "online" && status != "offline" {
                tracing::debug!(
                    topic,
                    payload = %text.chars().take(MAX_STATUS_CHARS).collect::<String>(),
                    "a status that is neither `online` nor `offline`: dropped"
                );
                return Outcome::Malformed;
            }
            presence.status(&device.id, status, now_ms());
            Outcome::Status
        }
        TopicKind::Patrol => position(patrol, presence, &device, topic, payload).await,
        TopicKind::Telemetry => Outcome::UnknownDevice,
    }
}

fn monitor_outcome(o: lingjing_monitor::mqtt::Outcome) -> Outcome {
    match o {
        lingjing_monitor::mqtt::Outcome::Taken => Outcome::Telemetry,
        lingjing_monitor::mqtt::Outcome::NotOurs => Outcome::UnknownDevice,
        lingjing_monitor::mqtt::Outcome::Malformed => Outcome::Malformed,
        lingjing_monitor::mqtt::Outcome::Failed => Outcome::OutboxFailed,
    }
}

async fn position(
    patrol: &Patrol,
    presence: &Presence,
    device: &PatrolDevice,
    topic: &str,
    payload: &[u8],
) -> Outcome {
    let message: PositionMessage = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(topic, error = %e, "a position that is not the expected JSON: dropped");
            return Outcome::Malformed;
        }
    };
    let now = now_ms();
    let taken_ms = message.taken_ms.unwrap_or(now);
    if taken_ms <= 0 || taken_ms > now + MAX_CLOCK_AHEAD_MS {
        tracing::debug!(
            topic,
            taken_ms,
            "a position taken before 1970 or more than a day ahead of this node's clock: dropped"
        );
        return Outcome::Refused;
    }
    let record = FrameRecord {
        seq: 0,
        kind: RecordKind::Position,
        device: device.id.clone(),
        run: message.run,
        frame: format!("mqtt-{}", message.seq),
        taken_ms,
        lat: message.lat,
        lon: message.lon,
        heading: message.heading,
        model: device.slot.clone(),
        version: 0,
        detections: Vec::new(),
        tenant: Some(device.tenant.clone()),
        image: None,
    };
    // A record the control plane refuses would stop the outbox's stream: never kept.
    if let Err(e) = record.check("position") {
        tracing::debug!(topic, error = %e, "a position with a bad field: dropped");
        return Outcome::Refused;
    }
    let Some(outbox) = patrol.outbox().cloned() else {
        tracing::debug!(topic, "the outbox is not open: a position is dropped");
        return Outcome::OutboxFailed;
    };
    let appended = tokio::task::spawn_blocking({
        let outbox = outbox.clone();
        move || outbox.append(record)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r);
    match appended {
        Ok(_) => {
            patrol.appended().notify_one();
            patrol.metrics().outbox_depth.set(outbox.depth() as i64);
            presence.position(&device.id, now);
            Outcome::Position
        }
        Err(e) if is_full(&e) => {
            tracing::debug!(topic, error = %e, "the outbox is full: a position is dropped");
            Outcome::OutboxFull
        }
        Err(e) => {
            tracing::warn!(topic, error = %e, "cannot append a position to the outbox: dropped");
            Outcome::OutboxFailed
        }
    }
}

/// Starts the MQTT side: connects to `config`'s broker, subscribes and handles messages
/// until aborted. A `config` that [`MqttConfig::check`] refuses logs why and does nothing.
pub fn spawn(
    config: &MqttConfig,
    patrol: Arc<Patrol>,
    presence: Arc<Presence>,
    monitor: Option<Arc<Monitor>>,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    let options = config.options();
    let url = config.url.clone();
    tokio::spawn(async move {
        match options {
            Ok(options) => run(options, url, patrol, presence, monitor, metrics).await,
            Err(e) => tracing::error!(error = %e, "patrol cameras' MQTT is off"),
        }
    })
}

/// What the MQTT side last reported, so that a lasting problem is logged once.
#[derive(Default)]
struct Problem(Option<String>);

impl Problem {
    fn warn(&mut self, url: &str, message: String) {
        if self.0.as_deref() != Some(message.as_str()) {
            tracing::warn!(broker = %url, problem = %message, "patrol cameras' MQTT broker unreachable; retrying");
            self.0 = Some(message);
        }
    }

    fn solved(&mut self, url: &str) {
        if self.0.take().is_some() {
            tracing::info!(broker = %url, "connected to the MQTT broker again");
        } else {
            tracing::info!(broker = %url, "connected to the MQTT broker: taking patrol cameras' positions and status");
        }
    }
}

async fn run(
    options: MqttOptions,
    url: String,
    patrol: Arc<Patrol>,
    presence: Arc<Presence>,
    monitor: Option<Arc<Monitor>>,
    metrics: Arc<Metrics>,
) {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut backoff = FIRST_BACKOFF;
    let mut problem = Problem::default();
    metrics.mqtt_connected.set(0);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // Subscribed again on every connection: a broker that lost the session
                // (restarted without persistence) forgot the subscriptions.
                let filters = [
                    POSITION_TOPICS,
                    STATUS_TOPICS,
                    lingjing_monitor::mqtt::TELEMETRY_TOPICS,
                ]
                .map(|t| SubscribeFilter::new(t.to_owned(), QoS::AtLeastOnce));
                if let Err(e) = client.try_subscribe_many(filters) {
                    problem.warn(&url, format!("cannot subscribe: {e}"));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    // Logged every time: the broker's ACLs need someone to look.
                    tracing::error!(broker = %url, "the MQTT broker refused the node's subscription to {POSITION_TOPICS} or {STATUS_TOPICS}: let the node's user read them");
                    problem.0 = Some("subscription refused".into());
                    metrics.mqtt_connected.set(0);
                } else {
                    metrics.mqtt_connected.set(1);
                    problem.solved(&url);
                    backoff = FIRST_BACKOFF;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                take(
                    &client,
                    &patrol,
                    &presence,
                    monitor.as_deref(),
                    &metrics,
                    &publish,
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_connected.set(0);
                problem.warn(&url, e.to_string());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn take(
    client: &AsyncClient,
    patrol: &Patrol,
    presence: &Presence,
    monitor: Option<&Monitor>,
    metrics: &Metrics,
    publish: &Publish,
) {
    let outcome = handle(patrol, presence, monitor, &publish.topic, &publish.payload).await;
    metrics
        .mqtt_messages
        .get_or_create(&MqttLabels {
            outcome: outcome.as_str().into(),
        })
        .inc();
    // Acknowledged once handled, whatever became of it: a message never acknowledged
    // would hold one of the broker's in-flight places for this node until it reconnects.
    if let Err(e) = client.try_ack(publish) {
        tracing::debug!(error = %e, "cannot acknowledge an MQTT message (it may come again)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            username: None,
            password: None,
            client_id: MqttConfig::default_client_id("ai-1"),
        }
    }

    #[test]
    fn broker_urls_are_read() {
        assert_eq!(
            config("mqtt://127.0.0.1:1883").broker().unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            config("MQTT://broker.site/").broker().unwrap(),
            ("broker.site".into(), 1883)
        );
        assert_eq!(
            config("mqtt://[::1]:11883").broker().unwrap(),
            ("::1".into(), 11883)
        );
        for bad in [
            "127.0.0.1:1883",
            "mqtts://h:8883",
            "http://h",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u:p@h",
            "mqtt://h/topic",
        ] {
            assert!(config(bad).broker().is_err(), "{bad}");
        }
        assert_eq!(config("mqtt://h").client_id, "lingjing-aiot-ai-1");
    }

    #[test]
    fn topics_name_tenant_and_device() {
        assert_eq!(
            parse_topic("lj/v1/city/van-1/patrol"),
            Some((TopicKind::Patrol, "city", "van-1"))
        );
        assert_eq!(
            parse_topic("lj/v1/city/van-1/status"),
            Some((TopicKind::Status, "city", "van-1"))
        );
        for bad in [
            "lj/v1/city/van-1",
            "lj/v1/city/van-1/patrol/x",
            "lj/v2/city/van-1/patrol",
            "lj/v1//van-1/patrol",
            "lj/v1/city/van-1/other",
        ] {
            assert_eq!(parse_topic(bad), None, "{bad}");
        }
    }

    #[test]
    fn position_payloads_take_optional_fields() {
        let m: PositionMessage =
            serde_json::from_str(r#"{"seq": 7, "run": "r1", "lat": 31.2, "lon": 121.5}"#).unwrap();
        assert_eq!((m.seq, m.heading, m.taken_ms), (7, None, None));
        assert!(
            serde_json::from_str::<PositionMessage>(
                r#"{"seq": -1, "run": "r1", "lat": 1, "lon": 2}"#
            )
            .is_err()
        );
    }
}
