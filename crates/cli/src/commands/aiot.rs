//! `lingjing aiot`: one edge AI node fed by the control plane (the `aiot` snapshot: what
//! each slot should run), serving inference on its committed versions — also when it
//! starts while the control plane is unreachable.

use std::sync::Arc;

use anyhow::{Context, bail};
use lingjing_aiot::mqtt::MqttConfig;
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

/// The broker settings of `args` (none without `--mqtt`).
fn mqtt_config(node: &str, args: &AiotArgs) -> anyhow::Result<Option<MqttConfig>> {
    let Some(url) = &args.mqtt else {
        if args.mqtt_username.is_some() || args.mqtt_password_file.is_some() {
            bail!("--mqtt-username and --mqtt-password-file need --mqtt mqtt://HOST:PORT");
        }
        return Ok(None);
    };
    let password = match &args.mqtt_password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the MQTT password file {}", path.display())
            })?;
            Some(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        None => None,
    };
    let config = MqttConfig {
        url: url.clone(),
        username: args.mqtt_username.clone(),
        password,
        client_id: args
            .mqtt_client_id
            .clone()
            .unwrap_or_else(|| MqttConfig::default_client_id(node)),
    };
    config.check().map_err(anyhow::Error::msg)?;
    Ok(Some(config))
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
    let mqtt = mqtt_config(&node, &args)?;
    let telemetry_token = match &args.telemetry_token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the telemetry token file {}", path.display())
            })?;
            let token = text.trim().to_owned();
            if token.len() < 16 {
                bail!(
                    "the telemetry token in {} is shorter than 16 characters: make a longer one (e.g. `openssl rand -hex 24`)",
                    path.display()
                );
            }
            Some(token)
        }
        None => None,
    };
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
        mqtt: mqtt.clone(),
        telemetry_token,
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
    if let Some(m) = &mqtt {
        eprintln!(
            "patrol cameras' positions and status from {} (lj/v1/TENANT/DEVICE/patrol and /status) as client {}",
            m.url, m.client_id
        );
    }
    super::shutdown_signal().await;
    eprintln!("shutting down");
    handle.stop();
    Ok(())
}
