//! IDC monitoring on a site's node (issue 18): the node named the site's monitor in the
//! snapshot takes its sensors' telemetry (over MQTT through the node's broker
//! connection, `lj/v1/{site}/{device}/telemetry` and `/status`, or over HTTP), evaluates
//! the site's alert rules there (so alerts fire with the site cut off from the control
//! plane), keeps the rules' state across restarts, notifies receivers by signed
//! webhooks, and forwards readings and alert transitions to the control plane through a
//! durable outbox.
//!
//! - [`engine`]: the site's rule engine, pure.
//! - [`site`]: the running monitor: inputs made durable in order (outbox, notices,
//!   state), the ticker.
//! - [`notify`]: webhooks, signed, retried, sent once per transition.
//! - [`http`]: `POST /v1/telemetry/{device}`, `GET /v1/monitor/alerts`.
//! - [`mqtt`]: MQTT payloads and topics of the monitor.
//! - [`metrics`]: its Prometheus metrics.

pub mod engine;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod notify;
pub mod site;

use std::path::Path;
use std::sync::Arc;

pub use site::Monitor;

/// Where monitoring records go on the control plane.
pub const RECORDS_PATH: &str = "/v1/monitor/records";

/// Starts a node's monitor in `dir`: the ticker, the notifier and (with `client`) the
/// forwarder of its outbox. Returns it and its tasks.
pub fn start(
    node: &str,
    dir: &Path,
    metrics: Arc<metrics::Metrics>,
    client: Option<lingjing_client::Client>,
) -> std::io::Result<(Arc<Monitor>, Vec<tokio::task::JoinHandle<()>>)> {
    let monitor = Monitor::open(node, dir, metrics)?;
    let mut tasks = vec![
        site::spawn_ticker(monitor.clone()),
        notify::spawn(monitor.clone(), dir.to_owned()),
    ];
    if let Some(client) = client {
        let m = monitor.clone();
        tasks.push(
            lingjing_client::forward::Forwarder {
                outbox: monitor.outbox().clone(),
                client,
                node: node.to_owned(),
                path: RECORDS_PATH,
                what: "monitoring records",
                wake: monitor.forward_wake().clone(),
                batch_records: lingjing_model::monitor::MAX_BATCH_RECORDS,
                batch_bytes: 4 << 20,
                on_sent: Box::new(move |_, depth| {
                    m.metrics().outbox_depth.set(depth as i64);
                }),
            }
            .spawn(),
        );
    }
    Ok((monitor, tasks))
}
