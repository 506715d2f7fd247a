//! `lingjing up`: the whole platform on one machine: the control plane on SQLite in the
//! data directory, the demo origin, and the demo topology seeded once.

use std::path::Path;

use anyhow::Context;
use lingjing_client::Client;
use lingjing_control::{ControlConfig, Store};
use lingjing_demo::{OriginConfig, demo_topology};

use crate::args::{Global, UpArgs};
use crate::context::TOKEN_FILE;

/// Reads the operator token from the data dir, creating one on first start.
fn operator_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = lingjing_control::auth::random_hex(24);
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    writeln!(f, "{text}")?;
    f.sync_all()
}

pub async fn run(global: &Global, args: UpArgs) -> anyhow::Result<()> {
    let data_dir = &global.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let token = operator_token(data_dir)?;
    let db = data_dir.join("lingjing.db");
    let store = Store::open_sqlite_file(&db)
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
    let control = lingjing_control::serve(
        ControlConfig {
            listen: args.listen,
            operator_token: token.clone(),
            zone: args.zone.clone(),
            health: Some(args.health.config()),
        },
        store,
    )
    .await?;
    let origin = lingjing_demo::serve(OriginConfig {
        listen: args.origin_listen,
        ..OriginConfig::default()
    })
    .await
    .with_context(|| {
        format!(
            "cannot start the demo origin on {} (pick another with --origin-listen)",
            args.origin_listen
        )
    })?;

    let client = Client::new(&control.url(), &token)?;
    let created = crate::seed::seed(&client, &demo_topology(origin.addr()))
        .await
        .context("seeding the demo topology failed")?;
    if created > 0 {
        tracing::info!(created, "demo topology seeded");
    }

    let edges = start_edges(global, &args, &client, &control.url(), &token).await?;
    let dns = start_dns(global, &args, &client, &control.url(), &token).await?;

    let api = control.url();
    println!(
        "\nLingjing is up.\n\
         \n  control plane   {api}   (OpenAPI: {api}/v1/openapi.json)\
         \n  demo origin     http://{origin}/\
         \n  GSLB DNS        {dns_addr} (UDP and TCP), zone {zone}\
         \n  DNS admin       http://{dns_admin}/metrics   http://{dns_admin}/healthz\
         {edge_lines}\
         \n  data directory  {dir}\
         \n  operator token  {token}   (also in {dir}/{TOKEN_FILE})\
         \n\nTry:\
         \n  lingjing site list            (cargo run --release -- site list)\
         \n  curl -H \"Authorization: Bearer $(cat {dir}/{TOKEN_FILE})\" {api}/v1/sites\
         \n  curl -i http://{origin}/\
         {try_edge}\
         \n  dig @{dns_ip} -p {dns_port} demo.{zone} A +subnet=198.51.100.1/32   (a Wuxi telecom client)\
         \n  lingjing dns explain demo.{zone} --client 203.0.113.70 --subnet 32\
         \n  curl 'http://{dns_admin}/explain?name=demo.{zone}&client=203.0.113.70&subnet=32'\
         \n\nCtrl-C stops everything.",
        origin = origin.addr(),
        dir = data_dir.display(),
        dns_addr = dns.handle.udp_addrs()[0],
        dns_admin = dns
            .handle
            .admin_addr()
            .map_or_else(|| "-".to_owned(), |a| a.to_string()),
        dns_ip = dns.handle.udp_addrs()[0].ip(),
        dns_port = dns.handle.udp_addrs()[0].port(),
        zone = args.zone,
        try_edge = edges
            .iter()
            .find(|e| e.edge_role)
            .map(|e| {
                let a = e.handle.http_addrs()[0];
                format!(
                    "\n  curl -si --resolve www.demo.example:{p}:{ip} http://www.demo.example:{p}/   (twice: MISS, then HIT)",
                    p = a.port(),
                    ip = a.ip()
                )
            })
            .unwrap_or_default(),
        edge_lines = edges
            .iter()
            .map(|e| {
                let https = e.handle.https_addrs().iter().map(|a| format!("  https://{a}")).collect::<String>();
                format!("\n  edge {:<14} http://{}  admin http://{}{https}", e.handle.edge.node_id, e.handle.http_addrs()[0], e.handle.admin_addr())
            })
            .collect::<String>(),
    );

    crate::commands::shutdown_signal().await;
    eprintln!("shutting down");
    for e in edges {
        e.agent.stop();
        e.handle.shutdown().await;
    }
    dns.agent.stop();
    dns.handle.shutdown().await;
    origin.shutdown().await.ok();
    control.shutdown().await?;
    Ok(())
}

/// An edge node run by `up`.
struct RunningEdge {
    handle: lingjing_edge::EdgeHandle,
    /// An edge (not only a parent) cache.
    edge_role: bool,
    agent: lingjing_client::AgentHandle,
}

/// Starts an in-process edge node for every edge or parent node of the inventory, each on
/// its own allocated loopback address, fed by the control plane like a remote one.
async fn start_edges(
    global: &Global,
    args: &UpArgs,
    client: &Client,
    api: &str,
    token: &str,
) -> anyhow::Result<Vec<RunningEdge>> {
    let nodes: Vec<serde_json::Value> = client.get("/v1/nodes").await?;
    let mut running = Vec::new();
    for n in nodes {
        let node = super::resources::node_spec(n.clone())?;
        let serves_http = node.roles.iter().any(|r| {
            matches!(
                r,
                lingjing_model::NodeRole::Edge | lingjing_model::NodeRole::Parent
            )
        });
        let Some(ip) = n["addresses"][0]
            .as_str()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        else {
            continue;
        };
        if !serves_http {
            continue;
        }
        let http = std::net::SocketAddr::new(ip, args.edge_http_port.unwrap_or(node.ports.http));
        let admin = std::net::SocketAddr::new(ip, args.edge_admin_port.unwrap_or(node.ports.admin));
        let https = std::net::SocketAddr::new(ip, args.edge_https_port.unwrap_or(node.ports.https));
        let mut config = lingjing_edge::EdgeConfig::new(&node.id, http, admin);
        config.https = vec![https];
        config.memory_bytes = 64 * 1024 * 1024;
        config.disk_dir = Some(
            global
                .data_dir
                .join(format!("edge-{}", node.id))
                .join("cache"),
        );
        config.disk_bytes = 1024 * 1024 * 1024;
        let edge = lingjing_edge::Edge::new(&config);
        let state_dir = global.data_dir.join(format!("edge-{}", node.id));
        let agent = lingjing_client::Agent::new(lingjing_client::AgentConfig::new(
            api,
            token,
            &node.id,
            lingjing_model::snapshot::Role::Edge,
            &state_dir,
        ))?;
        let agent = super::edge::start_agent(agent, edge.clone());
        let handle = lingjing_edge::start(&config, edge).await.with_context(|| {
            format!(
                "cannot start edge node {} (is another `lingjing up` running?)",
                node.id
            )
        })?;
        // With port overrides (e.g. 0 in tests), tell the inventory where the node really
        // listens: health probes and parent-tier fetches go by the inventory's ports.
        let bound = lingjing_model::NodePorts {
            http: handle.http_addrs()[0].port(),
            https: handle
                .https_addrs()
                .first()
                .map_or(node.ports.https, |a| a.port()),
            admin: handle.admin_addr().port(),
        };
        if bound != node.ports {
            let mut updated = node.clone();
            updated.ports = bound;
            let _: serde_json::Value = client
                .put(&format!("/v1/nodes/{}", node.id), &updated)
                .await
                .with_context(|| format!("cannot record the ports of edge node {}", node.id))?;
        }
        running.push(RunningEdge {
            handle,
            agent,
            edge_role: node.roles.contains(&lingjing_model::NodeRole::Edge),
        });
    }
    Ok(running)
}

/// The GSLB DNS server run by `up`.
struct RunningDns {
    handle: lingjing_dns::DnsHandle,
    agent: lingjing_client::AgentHandle,
}

/// Starts the DNS server as the inventory's first DNS node, fed by the control plane.
async fn start_dns(
    global: &Global,
    args: &UpArgs,
    client: &Client,
    api: &str,
    token: &str,
) -> anyhow::Result<RunningDns> {
    let nodes: Vec<serde_json::Value> = client.get("/v1/nodes").await?;
    let node = nodes
        .iter()
        .find(|n| {
            n["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "dns"))
        })
        .and_then(|n| n["id"].as_str())
        .context("the inventory has no node with the `dns` role")?
        .to_owned();
    let server = std::sync::Arc::new(lingjing_dns::DnsServer::new());
    let agent = lingjing_client::Agent::new(lingjing_client::AgentConfig::new(
        api,
        token,
        &node,
        lingjing_model::snapshot::Role::Dns,
        &global.data_dir.join(format!("dns-{node}")),
    ))?;
    let agent = super::dns::start_agent(agent, server.clone());
    let mut config = lingjing_dns::DnsConfig::on(args.dns_listen);
    config.admin = Some(args.dns_admin);
    let handle = lingjing_dns::start(&config, server)
        .await
        .with_context(|| {
            format!(
                "cannot start the DNS server on {} with its admin on {} (pick others with --dns-listen and --dns-admin)",
                args.dns_listen, args.dns_admin
            )
        })?;
    Ok(RunningDns { handle, agent })
}
