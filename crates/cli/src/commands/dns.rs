//! `lingjing dns`: a GSLB DNS server fed by the control plane through the agent loop, and
//! `lingjing dns explain`, which shows how a client is answered and why.

use std::sync::Arc;

use anyhow::{Context, bail};
use lingjing_client::Agent;
use lingjing_dns::{ClientInfo, DnsConfig, DnsServer, Family};
use lingjing_model::snapshot::{DnsSnapshot, Role, Snapshot};

use super::resources::explain as explain_error;
use crate::args::{DnsArgs, DnsSub, Global};

pub async fn run(global: &Global, args: DnsArgs) -> anyhow::Result<()> {
    if let Some(DnsSub::Explain {
        name,
        client,
        subnet,
        aaaa,
    }) = args.explain
    {
        return explain(global, &name, client, subnet, aaaa).await;
    }
    let Some(node) = args.node.clone() else {
        bail!("give the DNS node's id with --node (see `lingjing node list`)");
    };
    let server = Arc::new(DnsServer::new());
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| global.data_dir.join(format!("dns-{node}")));
    let config =
        super::edge::agent_config(global, &args.join, &node, Role::Dns, &state_dir).await?;
    let _agent = start_agent(Agent::new(config)?, server.clone());
    let mut config = DnsConfig::on(args.listen[0]);
    config.listen = args.listen.clone();
    config.admin = Some(args.admin);
    config.query_log = args.query_log;
    args.abuse.apply(&mut config);
    let handle = lingjing_dns::start(&config, server).await?;
    eprintln!(
        "lingjing dns {node} serving on {:?} (UDP and TCP; Ctrl-C to stop)",
        handle.udp_addrs()
    );
    if let Some(admin) = handle.admin_addr() {
        eprintln!(
            "  admin http://{admin}/healthz  http://{admin}/metrics  http://{admin}/explain?name=SERVICE.ZONE&client=IP"
        );
    }
    super::shutdown_signal().await;
    eprintln!("shutting down");
    handle.shutdown().await;
    Ok(())
}

/// Runs the agent loop feeding `server`.
pub fn start_agent(agent: Agent, server: Arc<DnsServer>) -> lingjing_client::AgentHandle {
    agent
        .with_answer_counts(server.metrics().answer_totals.clone())
        .start(move |s: Arc<Snapshot<DnsSnapshot>>| server.apply(&s).map_err(|e| e.to_string()))
}

async fn explain(
    global: &Global,
    name: &str,
    client: std::net::IpAddr,
    subnet: Option<u8>,
    aaaa: bool,
) -> anyhow::Result<()> {
    let c = crate::context::client(global)?;
    let snapshot: Snapshot<DnsSnapshot> = c
        .get("/v1/snapshots/dns?after=0&timeout_ms=1000")
        .await
        .map_err(explain_error)?;
    let server = DnsServer::new();
    server
        .apply(&snapshot)
        .context("the control plane's DNS snapshot was refused")?;
    let mut qname = name.to_ascii_lowercase();
    if !qname.ends_with('.') {
        qname.push('.');
    }
    let info = ClientInfo {
        addr: client,
        ecs: subnet.map(|p| (client, p)),
    };
    let family = if aaaa { Family::V6 } else { Family::V4 };
    let Some(e) = server.explain(&qname, family, &info) else {
        bail!(
            "`{name}` is not a service name in zone {} (names are SERVICE.{})",
            snapshot.body.zone,
            snapshot.body.zone
        );
    };
    if global.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
        return Ok(());
    }
    println!("service   {}", e.service);
    println!("client    {} (classified by {})", e.client, e.classified_by);
    println!("line      {}", e.line.as_deref().unwrap_or("-"));
    println!("region    {}", e.region.as_deref().unwrap_or("-"));
    println!("rule      {}", e.rule_text);
    let answer: Vec<String> = e.answer.iter().map(ToString::to_string).collect();
    println!(
        "answer    {} (TTL {})",
        if answer.is_empty() {
            "-".into()
        } else {
            answer.join(", ")
        },
        e.ttl
    );
    if let Some(scope) = e.ecs_scope {
        println!("ecs scope /{scope}");
    }
    println!("snapshot  version {}", e.snapshot_version);
    println!("candidates:");
    for cand in &e.candidates {
        println!("  {}", serde_json::to_string(cand)?);
    }
    Ok(())
}
