//! An edge AI node: its slots (`runtime`) started from what it keeps on disk, its HTTP
//! API, and the agent that feeds it the `aiot` snapshot and reports its slots with every
//! heartbeat.

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
use crate::runtime::{Reports, Runtime, RuntimeConfig};

/// How a node is set up.
pub struct NodeConfig {
    pub node: String,
    pub listen: SocketAddr,
    /// Where artefacts and slot states are kept.
    pub data_dir: PathBuf,
    pub workers_per_slot: usize,
    /// The node's credential and CA file, to fetch artefacts.
    pub credential: String,
    pub ca: Option<PathBuf>,
    /// For crash tests: stop when an attempt reaches this stage.
    pub pause_at: Option<SlotStage>,
    /// The control plane's API (artefacts are fetched from it last).
    pub control: Option<String>,
}

/// A running node.
pub struct NodeHandle {
    addr: SocketAddr,
    pub runtime: Arc<Runtime>,
    agent: Option<AgentHandle>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl NodeHandle {
    /// Where its HTTP API listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        if let Some(agent) = self.agent.take() {
            agent.stop();
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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = crate::server::router(runtime.clone());
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the edge AI API stopped");
        }
    });
    let ticker = runtime.spawn_ticker(Duration::from_millis(500));
    let agent = agent.map(|agent| {
        let applier = runtime.clone();
        agent
            .with_slots(Arc::new(Reports(runtime.clone())), runtime.changed.clone())
            .start(move |snapshot: Arc<Snapshot<AiotSnapshot>>| {
                applier.apply(&snapshot.body);
                Ok(())
            })
    });
    Ok(NodeHandle {
        addr,
        runtime,
        agent,
        tasks: vec![server, ticker],
    })
}
