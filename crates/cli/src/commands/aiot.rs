//! `lingjing aiot`: one edge AI node fed by the control plane (the `aiot` snapshot: what
//! each slot should run), serving inference on its committed versions — also when it
//! starts while the control plane is unreachable.

use std::sync::Arc;

use anyhow::{Context, bail};
use lingjing_aiot::node::NodeConfig;
use lingjing_aiot::tract_backend::TractBackend;
use lingjing_client::Agent;
use lingjing_model::aiot::SlotStage;
use lingjing_model::snapshot::Role;

use crate::args::{AiotArgs, Global};

fn pause_stage(name: &str) -> anyhow::Result<SlotStage> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).with_context(|| {
        format!("unknown stage `{name}`: fetching, verifying, loading, staged or probation")
    })
}

pub async fn run(global: &Global, args: AiotArgs) -> anyhow::Result<()> {
    let node = args.node.clone();
    let node_dir = global.data_dir.join(format!("aiot-{node}"));
    let state_dir = args.state_dir.clone().unwrap_or_else(|| node_dir.clone());
    let models_dir = args
        .models_dir
        .clone()
        .unwrap_or_else(|| state_dir.join("models"));
    let pause_at = args.pause_at.as_deref().map(pause_stage).transpose()?;
    let agent =
        super::edge::agent_config(global, &args.join, &node, Role::Aiot, &state_dir).await?;
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |w| w as usize,
    );
    let config = NodeConfig {
        node: node.clone(),
        listen: args.listen,
        data_dir: models_dir.clone(),
        workers_per_slot: workers,
        credential: agent.token.clone(),
        ca: agent.ca.clone(),
        pause_at,
        control: Some(agent.endpoint.clone()),
    };
    let agent = Agent::new(agent)?;
    let handle = match lingjing_aiot::node::start(config, Arc::new(TractBackend), Some(agent)).await
    {
        Ok(h) => h,
        Err(e) => bail!("edge AI node {node} cannot start: {e}"),
    };
    eprintln!(
        "lingjing aiot {node} serving inference on http://{}/v1/infer/SLOT (models in {}; Ctrl-C to stop)",
        handle.addr(),
        models_dir.display()
    );
    super::shutdown_signal().await;
    eprintln!("shutting down");
    handle.stop();
    Ok(())
}
