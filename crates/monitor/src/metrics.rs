//! The monitor's Prometheus metrics, registered into the node's registry
//! (`lingjing_aiot_monitor_*`): readings kept and dropped, alert transitions by state,
//! notifications by outcome, sensors and rules watched, the outbox's depth.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

/// The monitor's metrics.
#[derive(Default)]
pub struct Metrics {
    /// Readings by outcome: `kept`, `dropped` (unknown sensor, another device's, not a
    /// number); messages `malformed` or of an `unknown_device`.
    pub messages: Family<OutcomeLabels, Counter>,
    pub alerts: Family<StateLabels, Counter>,
    /// `sent`, `retried`, `failed` (given up), `silenced`, `duplicate`.
    pub notifications: Family<OutcomeLabels, Counter>,
    pub sensors: Gauge,
    pub rules: Gauge,
    pub outbox_depth: Gauge,
}

impl Metrics {
    /// Adds them to `registry` under `monitor_`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("monitor");
        sub.register(
            "messages",
            "Telemetry readings and messages by outcome",
            self.messages.clone(),
        );
        sub.register("alerts", "Alert transitions by state", self.alerts.clone());
        sub.register(
            "notifications",
            "Webhook notifications by outcome",
            self.notifications.clone(),
        );
        sub.register("sensors", "Sensors this node watches", self.sensors.clone());
        sub.register(
            "rules",
            "Rules (series) this node evaluates",
            self.rules.clone(),
        );
        sub.register(
            "outbox_depth",
            "Monitoring records not yet taken by the control plane",
            self.outbox_depth.clone(),
        );
    }

    pub fn readings(&self, outcome: &str, n: usize) {
        if n > 0 {
            self.messages
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc_by(n as u64);
        }
    }

    pub fn alert(&self, state: &str) {
        self.alerts
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .inc();
    }

    pub fn notification(&self, outcome: &str) {
        self.notifications
            .get_or_create(&OutcomeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }
}
