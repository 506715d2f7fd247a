//! Prometheus metrics of an edge AI node (`/metrics`): inferences per slot, version and
//! outcome, their latency, requests turned away by a full queue, and slots per stage;
//! patrol frames by outcome, their detections by class, and the outbox's depth and
//! records forwarded; MQTT messages by outcome and whether the broker is connected.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub slot: String,
    pub version: String,
    /// `ok`, `bad_input` or `error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub slot: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlotLabels {
    pub slot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    /// `kept`, `refused` or `unauthorised`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MqttLabels {
    /// `position`, `status`, `malformed`, `unknown_device`, `refused`, `outbox_full` or
    /// `outbox_failed`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    pub class: String,
}

type HistogramMaker = fn() -> Histogram;

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// The node's metrics and the registry that serves them.
pub struct Metrics {
    pub registry: Registry,
    pub inferences: Family<OutcomeLabels, Counter>,
    pub seconds: Family<VersionLabels, Histogram, HistogramMaker>,
    pub rejected: Family<SlotLabels, Counter>,
    pub rollbacks: Family<SlotLabels, Counter>,
    pub patrol_frames: Family<FrameLabels, Counter>,
    pub patrol_detections: Family<ClassLabels, Counter>,
    /// Frames with detections kept without their image (over the evidence limit).
    pub patrol_evidence_skipped: Counter,
    pub outbox_depth: Gauge,
    pub outbox_sent: Counter,
    pub mqtt_messages: Family<MqttLabels, Counter>,
    /// 1 while connected to the MQTT broker and subscribed, else 0.
    pub mqtt_connected: Gauge,
    /// IDC monitoring's (`lingjing_aiot_monitor_*`).
    pub monitor: std::sync::Arc<lingjing_monitor::metrics::Metrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("lingjing_aiot");
        let inferences = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "inferences",
            "Inference requests by slot, model version and outcome",
            inferences.clone(),
        );
        let seconds = Family::<VersionLabels, Histogram, HistogramMaker>::new_with_constructor(
            latency_buckets,
        );
        registry.register(
            "inference_seconds",
            "Time to run one inference (decode, model, output), by slot and version",
            seconds.clone(),
        );
        let rejected = Family::<SlotLabels, Counter>::default();
        registry.register(
            "rejected",
            "Inference requests turned away because the slot's queue was full",
            rejected.clone(),
        );
        let rollbacks = Family::<SlotLabels, Counter>::default();
        registry.register(
            "rollbacks",
            "Versions that failed a step or probation on this node (the slot kept its committed version)",
            rollbacks.clone(),
        );
        let patrol_frames = Family::<FrameLabels, Counter>::default();
        registry.register(
            "patrol_frames",
            "Patrol frames by outcome: kept (in the outbox), refused, unauthorised",
            patrol_frames.clone(),
        );
        let patrol_detections = Family::<ClassLabels, Counter>::default();
        registry.register(
            "patrol_detections",
            "Detections in kept patrol frames, by defect class",
            patrol_detections.clone(),
        );
        let patrol_evidence_skipped = Counter::default();
        registry.register(
            "patrol_evidence_skipped",
            "Patrol frames with detections kept without their image (larger than the evidence limit)",
            patrol_evidence_skipped.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Patrol frames kept in the outbox the control plane has not acknowledged yet",
            outbox_depth.clone(),
        );
        let outbox_sent = Counter::default();
        registry.register(
            "outbox_sent",
            "Patrol frames the control plane acknowledged",
            outbox_sent.clone(),
        );
        let mqtt_messages = Family::<MqttLabels, Counter>::default();
        registry.register(
            "mqtt_messages",
            "MQTT messages of patrol cameras by outcome: position (kept in the outbox), status, telemetry (a sensor's, to the monitor), malformed, unknown_device, refused (a bad field), outbox_full, outbox_failed",
            mqtt_messages.clone(),
        );
        let mqtt_connected = Gauge::default();
        registry.register(
            "mqtt_connected",
            "1 while the node is connected to its MQTT broker and subscribed, else 0",
            mqtt_connected.clone(),
        );
        let monitor = std::sync::Arc::new(lingjing_monitor::metrics::Metrics::default());
        monitor.register(&mut registry);
        Metrics {
            registry,
            mqtt_messages,
            mqtt_connected,
            monitor,
            patrol_frames,
            patrol_detections,
            patrol_evidence_skipped,
            outbox_depth,
            outbox_sent,
            inferences,
            seconds,
            rejected,
            rollbacks,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
