//! The monitor's MQTT messages, as the node's broker connection hands them over
//! (`lingjing_aiot::mqtt` subscribes): `lj/v1/{site}/{device}/telemetry` carries a
//! [`Telemetry`] JSON (at most [`MAX_PAYLOAD_BYTES`]); `lj/v1/{site}/{device}/status`
//! `online` (retained) or `offline` (the device's last will). The broker authenticates
//! devices and confines each to its own topics; the node takes a message only for the
//! site it watches and a device of its sensors. Malformed messages and unknown devices
//! are counted and dropped.

use lingjing_model::monitor::Telemetry;

use crate::site::{Monitor, Refused, now_ms};

/// Telemetry topics (QoS 1).
pub const TELEMETRY_TOPICS: &str = "lj/v1/+/+/telemetry";
/// Largest payload taken.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Taken,
    /// Not ours: no site watched, another site, or a device of no sensor.
    NotOurs,
    Malformed,
    /// Could not be kept (outbox full or failing): dropped.
    Failed,
}

/// Takes a telemetry payload of `device` at `site`.
pub async fn telemetry(monitor: &Monitor, site: &str, device: &str, payload: &[u8]) -> Outcome {
    if payload.len() > MAX_PAYLOAD_BYTES {
        monitor.metrics().readings("malformed", 1);
        return Outcome::Malformed;
    }
    let msg: Telemetry = match serde_json::from_slice(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(site, device, error = %e, "a telemetry message that is not the expected JSON: dropped");
            monitor.metrics().readings("malformed", 1);
            return Outcome::Malformed;
        }
    };
    if msg.values.len() > lingjing_model::monitor::MAX_VALUES {
        monitor.metrics().readings("malformed", 1);
        return Outcome::Malformed;
    }
    outcome(
        monitor,
        monitor
            .telemetry(Some(site), device, &msg, now_ms())
            .await
            .map(|_| ()),
    )
}

/// Takes a status payload (`online` / `offline`) of `device` at `site`.
pub async fn status(monitor: &Monitor, site: &str, device: &str, online: bool) -> Outcome {
    outcome(
        monitor,
        monitor
            .status(site, device, online, now_ms())
            .await
            .map(|_| ()),
    )
}

fn outcome(monitor: &Monitor, r: Result<(), Refused>) -> Outcome {
    match r {
        Ok(()) => Outcome::Taken,
        Err(Refused::Invalid(why)) => {
            tracing::debug!(problem = %why, "a telemetry message refused: dropped");
            monitor.metrics().readings("malformed", 1);
            Outcome::Malformed
        }
        Err(Refused::NoSite | Refused::UnknownDevice) => {
            monitor.metrics().readings("unknown_device", 1);
            Outcome::NotOurs
        }
        Err(e) => {
            tracing::warn!(error = ?e, "a monitoring message could not be kept: dropped");
            Outcome::Failed
        }
    }
}
