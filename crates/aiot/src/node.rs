//! An edge AI node: its slots (`runtime`) started from what it keeps on disk, its HTTP
//! API, the agent that feeds it the `aiot` snapshot and reports its slots with every
//! heartbeat, and its patrol side (`patrol`): the frames' outbox in `{data_dir}/outbox`
//! and the forwarder that sends it to the control plane; with a broker (`mqtt`), the
//! patrol cameras' positions and status over MQTT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lingjing_client::{Agent, AgentHandle};
use lingjing_model::aiot::{AiotSnapshot, SlotStage};
use lingjing_model::snapshot::Snapshot;

use crate::backend::Backend;
use crate::disk::Disk;
use crate::metrics::Metrics;
use crate::mqtt::{MqttConfig, Presence};
use crate::patrol::Patrol;
use crate::runtime::{Reports, Runtime, RuntimeConfig};
use lingjing_client::outbox::Outbox;
use lingjing_monitor::Monitor;

/// How a node is set up.
pub struct NodeConfig {
    pub node: String,
    pub listen: SocketAddr,
    /// Where artefacts, slot states and the patrol frames' outbox (`outbox/`) are kept.
    pub data_dir: PathBuf,
    pub workers_per_slot: usize,
    /// The node's credential and CA file, to fetch artefacts.
    pub credential: String,
    pub ca: Option<PathBuf>,
    /// For crash tests: stop when an attempt reaches this stage.
    pub pause_at: Option<SlotStage>,
    /// The control plane's API (artefacts are fetched from it last; patrol frames are
    /// forwarded to it; none: they stay in the outbox).
    pub control: Option<String>,
    /// The site's MQTT broker for patrol cameras' positions and status, and sensors'
    /// telemetry (none: not used).
    pub mqtt: Option<MqttConfig>,
    /// The token devices send with HTTP telemetry (`POST /v1/telemetry/{device}`; none:
    /// refused).
    pub telemetry_token: Option<String>,
}

/// A running node.
pub struct NodeHandle {
    addr: SocketAddr,
    pub runtime: Arc<Runtime>,
    pub patrol: Arc<Patrol>,
    /// Patrol devices' MQTT status (`GET /v1/patrol/devices`).
    pub presence: Arc<Presence>,
    /// IDC monitoring of the site this node watches (none: its directory cannot be
    /// opened).
    pub monitor: Option<Arc<Monitor>>,
    agent: Option<AgentHandle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NodeHandle {
    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes a snapshot as the agent does (slots and patrol devices).
    pub fn apply(&self, snapshot: &AiotSnapshot) {
        apply(
            &self.runtime,
            &self.patrol,
            self.monitor.as_deref(),
            snapshot,
        );
    }

    pub fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop();
        }
        if let Some(m) = &self.monitor {
            let m = m.clone();
            tokio::spawn(async move { m.flush().await });
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a node on `backend`: its committed versions first (no network needed), then
/// its API, then (with `agent`) the snapshots that move its slots.
pub async fn start(
    config: NodeConfig,
    backend: Arc<dyn Backend>,
    agent: Option<Agent>,
) -> Result<NodeHandle, String> {
    let disk = Disk::open(&config.data_dir)?;
    let runtime = Runtime::open(
        RuntimeConfig {
            node: config.node.clone(),
            workers_per_slot: config.workers_per_slot,
            pause_at: config.pause_at,
            control: config.control.clone(),
        },
        disk,
        backend,
        Arc::new(Metrics::default()),
        &config.credential,
        config.ca.as_deref(),
    )
    .await;
    let outbox_dir = config.data_dir.join("outbox");
    let opened = tokio::task::spawn_blocking(move || Outbox::open(&outbox_dir))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    let patrol = match opened {
        Ok(outbox) => Patrol::new(runtime.clone(), Arc::new(outbox)),
        Err(e) => {
            // Inference goes on; patrol frames are refused (503) saying why.
            tracing::error!(error = %e, "cannot open the patrol frames' outbox: frames are refused until it can be");
            Patrol::without_outbox(runtime.clone(), e.to_string())
        }
    };
    let presence = Arc::new(Presence::default());
    // A bad broker URL stops the start (before anything listens), saying why.
    let mqtt = config.mqtt.as_ref().map(|m| m.check()).transpose()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let control_client = config.control.as_ref().and_then(|control| {
        lingjing_client::Client::with_ca(control, &config.credential, config.ca.as_deref())
            .map_err(|e| {
                tracing::error!(control = %control, error = %e, "cannot make a client of the control plane: patrol frames and monitoring records stay in their outboxes");
            })
            .ok()
    });
    let mut tasks = Vec::new();
    let monitor = match lingjing_monitor::start(
        &config.node,
        &config.data_dir.join("monitor"),
        runtime.metrics().monitor.clone(),
        control_client.clone(),
    ) {
        Ok((monitor, monitor_tasks)) => {
            tasks.extend(monitor_tasks);
            Some(monitor)
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot open the monitor's directory: this node watches no site's sensors");
            None
        }
    };
    let mut app = crate::server::router(runtime.clone(), Some(patrol.clone()))
        .merge(crate::mqtt::routes(patrol.clone(), presence.clone()));
    if let Some(m) = &monitor {
        app = app.merge(lingjing_monitor::http::routes(
            m.clone(),
            config.telemetry_token.as_deref(),
        ));
    }
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the edge AI API stopped");
        }
    });
    let ticker = runtime.spawn_ticker(Duration::from_millis(500));
    tasks.push(server);
    tasks.push(ticker);
    if let (Some(m), Some(())) = (&config.mqtt, mqtt) {
        tasks.push(crate::mqtt::spawn(
            m,
            patrol.clone(),
            presence.clone(),
            monitor.clone(),
            runtime.metrics().clone(),
        ));
    }
    match (&config.control, patrol.outbox()) {
        (Some(_), Some(outbox)) => {
            if let Some(client) = control_client {
                tasks.push(crate::patrol::spawn_forwarder(
                    outbox.clone(),
                    client,
                    config.node.clone(),
                    patrol.appended().clone(),
                    runtime.metrics().clone(),
                ));
            }
        }
        (None, Some(_)) => {
            tracing::info!("no control plane given: patrol frames stay in the outbox");
        }
        _ => {}
    }
    let agent = agent.map(|agent| {
        let runtime = runtime.clone();
        let patrol = patrol.clone();
        let monitor = monitor.clone();
        agent
            .with_slots(Arc::new(Reports(runtime.clone())), runtime.changed.clone())
            .start(move |snapshot: Arc<Snapshot<AiotSnapshot>>| {
                apply(&runtime, &patrol, monitor.as_deref(), &snapshot.body);
                Ok(())
            })
    });
    Ok(NodeHandle {
        addr,
        runtime,
        patrol,
        presence,
        monitor,
        agent,
        tasks,
    })
}

/// A snapshot to the slots and to the patrol side's devices.
fn apply(
    runtime: &Arc<Runtime>,
    patrol: &Patrol,
    monitor: Option<&Monitor>,
    snapshot: &AiotSnapshot,
) {
    runtime.apply(snapshot);
    if let Some(m) = monitor {
        m.set_config(&snapshot.monitor);
    }
    patrol.set_devices(&snapshot.devices);
}
