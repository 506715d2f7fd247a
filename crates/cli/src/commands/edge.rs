//! `lingjing edge`: one edge node, following the control plane through the agent loop, or
//! standalone from a snapshot file.

use std::sync::Arc;

use anyhow::Context;
use lingjing_client::{Agent, AgentConfig};
use lingjing_edge::{Edge, EdgeConfig};
use lingjing_model::snapshot::{EdgeSnapshot, Role, Snapshot};

use crate::args::{EdgeArgs, Global, JoinArgs};

pub async fn run(global: &Global, args: EdgeArgs) -> anyhow::Result<()> {
    // No transparent huge pages for this process: mimalloc asks for them on its arenas, and
    // while the memory cache fills, each first touch of a 2 MiB page zeroes all of it in
    // the request that touched it (measured on the miss path: p99 9.6-9.9 ms with THP,
    // 6.3-7.5 ms without, requests/s the same or better).
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        tracing::debug!(error = %e, "transparent huge pages stay on");
    }
    let mut config = EdgeConfig::new(&args.node, args.listen[0], args.admin);
    config.http = args.listen.clone();
    config.https = args.listen_https.clone();
    config.memory_bytes = args.memory_cache_mb * 1024 * 1024;
    if let Some(dir) = &args.disk_cache_dir
        && !dir.exists()
    {
        // Tenants' content: only this user may read it.
        lingjing_client::fs::ensure_private_dir(dir)
            .with_context(|| format!("cannot create the disk cache directory {}", dir.display()))?;
    }
    config.disk_dir = args.disk_cache_dir.clone();
    config.disk_bytes = args.disk_cache_mb * 1024 * 1024;
    config.access_log = !args.no_access_log;
    lingjing_edge::sendfile::set_enabled(!args.no_sendfile);
    config.threads = args.threads.unwrap_or_else(lingjing_edge::cores::available);
    args.limits.apply(&mut config);
    args.defence.apply(&mut config);
    // With a control plane, the node's credential: the artefact relay fetches with it.
    let agent = match &args.standalone {
        Some(_) => None,
        None => {
            let state_dir = args
                .state_dir
                .clone()
                .unwrap_or_else(|| global.data_dir.join(format!("edge-{}", args.node)));
            let agent =
                agent_config(global, &args.join, &args.node, Role::Edge, &state_dir).await?;
            config.platform_credential = Some(agent.token.clone());
            Some(agent)
        }
    };
    let edge = Edge::new(&config);
    let _agent = match agent {
        Some(agent) => Some(start_agent(Agent::new(agent)?, edge.clone())),
        None => {
            if let Some(path) = &args.standalone {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the snapshot file {}", path.display()))?;
                let snapshot: Snapshot<EdgeSnapshot> = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not an edge snapshot", path.display()))?;
                edge.apply(&snapshot).map_err(anyhow::Error::msg)?;
            }
            None
        }
    };
    let handle = lingjing_edge::start(&config, edge).await?;
    eprintln!(
        "lingjing edge {} serving on {:?}, https {:?}, admin http://{} (Ctrl-C to stop)",
        args.node,
        handle.http_addrs(),
        handle.https_addrs(),
        handle.admin_addr()
    );
    super::shutdown_signal().await;
    eprintln!("shutting down");
    handle.shutdown().await;
    Ok(())
}

/// The agent configuration of a data plane started from the command line: the node's own
/// credential (kept in `state_dir`, or exchanged for `--join-token`), never the operator
/// token; the control plane's CA; plain HTTP off this host refused unless `--insecure`.
pub async fn agent_config(
    global: &Global,
    join: &JoinArgs,
    node: &str,
    role: Role,
    state_dir: &std::path::Path,
) -> anyhow::Result<AgentConfig> {
    let endpoint = crate::context::endpoint(global);
    let ca = crate::context::ca(global);
    let credential = lingjing_client::agent::node_credential(
        &endpoint,
        ca.as_deref(),
        join.insecure,
        node,
        state_dir,
        join.join_token.as_deref(),
    )
    .await
    .with_context(|| format!("node `{node}` cannot authenticate to the control plane"))?;
    let mut config = AgentConfig::new(&endpoint, &credential, node, role, state_dir);
    config.ca = ca;
    config.insecure = join.insecure;
    Ok(config)
}

/// Runs the agent loop feeding `edge`.
pub fn start_agent(agent: Agent, edge: Arc<Edge>) -> lingjing_client::AgentHandle {
    agent
        .with_usage(edge.usage.clone())
        .with_defence(edge.defence.clone(), edge.defence.wake.clone())
        .with_answer_counts(edge.metrics.answer_totals.clone())
        .start(move |s: Arc<Snapshot<EdgeSnapshot>>| edge.apply(&s))
}
