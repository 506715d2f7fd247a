//! `lingjing up`: the whole platform on one machine: the control plane on SQLite in the
//! data directory, the demo origin, and the demo topology seeded once.
//!
//! The data directory is 0700 and its secrets 0600 (database, operator token, CA and
//! server keys, node credentials, snapshots). The control API serves HTTPS with a
//! certificate from a local CA (`pki.rs`); the edge and DNS nodes `up` runs trust that CA
//! and authenticate with their own node credentials, got with join tokens `up` issues on
//! their first start: they never hold the operator token.

use std::path::{Path, PathBuf};

use anyhow::Context;
use lingjing_client::Client;
use lingjing_control::{ControlConfig, Store};
use lingjing_demo::{OriginConfig, demo_topology};

use crate::args::{Global, UpArgs};
use crate::context::{ENDPOINT_FILE, TOKEN_FILE};

/// Reads the operator token from the data dir, creating one on first start.
fn operator_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    lingjing_client::fs::tighten_file(&path)
        .with_context(|| format!("cannot make {} private", path.display()))?;
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = lingjing_control::auth::random_hex(24);
    lingjing_client::fs::write_private(&path, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

pub async fn run(global: &Global, args: UpArgs) -> anyhow::Result<()> {
    let data_dir = &global.data_dir;
    lingjing_client::fs::ensure_private_dir(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let token = operator_token(data_dir)?;
    let tls = crate::pki::ensure(data_dir, args.listen)
        .context("cannot make the control API's TLS certificate")?;
    let db = data_dir.join("lingjing.db");
    let store = Store::open_sqlite_file(&db)
        .await
        .with_context(|| format!("cannot open {}", db.display()))?;
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

    let control = lingjing_control::serve_with(
        ControlConfig {
            listen: args.listen,
            operator_token: token.clone(),
            zone: args.zone.clone(),
            health: Some(args.health.config()),
            // The demo origin is the one loopback endpoint tenants' origins may use.
            storage: args.storage.policy(),
            meter_retention_days: lingjing_control::server::DEFAULT_METER_RETENTION_DAYS,
            policy: args.trust.policy(&[origin.addr().to_string()])?,
        },
        lingjing_control::server::HttpOptions {
            tls: Some(tls.server.clone()),
            mount: Some(super::console()),
            // The edges carry edge AI models to the AI node (trusting up's own CA).
            relay: Some(lingjing_control::server::RelaySettings {
                upstream: None,
                ca_pem: std::fs::read_to_string(&tls.ca).ok(),
            }),
            ..Default::default()
        },
        store,
    )
    .await?;
    let api = local_url(&control);
    // Operator commands run from this directory find the endpoint (and the CA, token).
    let endpoint_file = data_dir.join(ENDPOINT_FILE);
    std::fs::write(&endpoint_file, format!("{api}\n"))
        .with_context(|| format!("cannot write {}", endpoint_file.display()))?;
    let client = Client::with_ca(&api, &token, Some(&tls.ca))?;
    let created = crate::seed::seed(&client, &demo_topology(origin.addr()))
        .await
        .context("seeding the demo topology failed")?;
    if created > 0 {
        tracing::info!(created, "demo topology seeded");
    }
    if crate::seed::seed_billing(&client)
        .await
        .context("seeding the demo price plan failed")?
    {
        tracing::info!("demo billing seeded: plans, a colocation tenant with cabinets, site costs");
    }
    if crate::seed::seed_monitor(&client)
        .await
        .context("seeding the demo sensors failed")?
    {
        tracing::info!("demo sensors seeded at wuxi-1");
    }

    let edges = start_edges(global, &args, &client, &tls.ca).await?;
    let dns = start_dns(global, &args, &client, &tls.ca).await?;
    let storage = super::up_storage::start(global, &args, &client, &tls.ca).await?;
    let aiot = super::up_aiot::start(global, &args, &client, &tls.ca).await?;

    println!(
        "\nLingjing is up.\n\
         \n  control plane   {api}   (OpenAPI: {api}/v1/openapi.json)\
         \n  TLS CA          {ca}   (clients verify the control plane with it)\
         \n  web console     {api}/   (the browser warns until it trusts the CA above)\
         \n  sign in         {api}/sign-in?token={token}\
         \n  demo origin     http://{origin}/\
         \n  GSLB DNS        {dns_addr} (UDP and TCP), zone {zone}\
         \n  DNS admin       http://{dns_admin}/metrics   http://{dns_admin}/healthz\
         {edge_lines}\
         {storage_lines}\
         {aiot_lines}\
         \n  data directory  {dir}\
         \n  operator token  {token}   (also in {dir}/{TOKEN_FILE})\
         \n\nTry:\
         \n  lingjing site list            (cargo run --release -- site list)\
         \n  curl --cacert {ca} -H \"Authorization: Bearer $(cat {dir}/{TOKEN_FILE})\" {api}/v1/sites\
         \n  curl -i http://{origin}/\
         {try_edge}\
         \n  dig @{dns_ip} -p {dns_port} demo.{zone} A +subnet=198.51.100.1/32   (a Wuxi telecom client)\
         \n  lingjing dns explain demo.{zone} --client 203.0.113.70 --subnet 32\
         \n  curl 'http://{dns_admin}/explain?name=demo.{zone}&client=203.0.113.70&subnet=32'\
         {try_s3}\
         {try_aiot}\
         \n  lingjing usage --group service --step 5m --steps\
         \n  lingjing bill run            (this month's draft invoices: demo's CDN, colo-demo's cabinets)\
         \n  lingjing report segments     (revenue, cost and margin per segment and site)\
         \n\nCtrl-C stops everything.",
        origin = origin.addr(),
        ca = tls.ca.display(),
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
                let mut out = format!(
                    "\n  curl -si --resolve www.demo.example:{p}:{ip} http://www.demo.example:{p}/   (twice: MISS, then HIT)",
                    p = a.port(),
                    ip = a.ip()
                );
                if storage.gateway.is_some() {
                    out += &format!(
                        "\n  curl -si --resolve {site}:{p}:{ip} http://{site}:{p}/   (the demo site, served from the demo bucket)",
                        site = lingjing_demo::site::SITE_HOSTNAME,
                        p = a.port(),
                        ip = a.ip()
                    );
                }
                out
            })
            .unwrap_or_default(),
        storage_lines = storage_lines(&storage, &global.data_dir),
        try_s3 = try_s3(&storage),
        aiot_lines = aiot.as_ref().map_or_else(String::new, |a| format!(
            "\n  AI inference    http://{}/v1/slots   (node {}: model {}, rolled out at first start)",
            a.handle.addr(),
            a.node,
            super::up_aiot::DEMO_MODEL
        )),
        try_aiot = aiot.as_ref().map_or_else(String::new, |a| format!(
            "\n  curl -H 'content-type: image/png' --data-binary @crates/aiot/tests/fixtures/text-upright.png http://{}/v1/infer/{}\
             \n  lingjing rollout list         (lingjing model list; lingjing rollout show 1)\
             \n  road patrol: an upside-down text line is the demo's \"pothole\"\
             \n  curl -H \"Authorization: Bearer $(cat {token})\" -H 'content-type: image/png' --data-binary @crates/aiot/tests/fixtures/text-upside-down.png 'http://{}/v1/patrol/frames?run=demo&frame=1&lat=31.4912&lon=120.3119'\
             \n  lingjing inspect defects --tenant demo; lingjing inspect orders --tenant demo",
            a.handle.addr(),
            super::up_aiot::DEMO_MODEL,
            a.handle.addr(),
            token = a.patrol_token.display(),
        )),
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
    storage.shutdown().await;
    if let Some(a) = aiot {
        a.handle.stop();
    }
    dns.agent.stop();
    dns.handle.shutdown().await;
    origin.shutdown().await.ok();
    control.shutdown().await?;
    Ok(())
}

/// The lines of the start banner about object storage.
fn storage_lines(storage: &super::up_storage::RunningStorage, dir: &Path) -> String {
    let mut out = String::new();
    if let Some(g) = &storage.gateway {
        out += &format!(
            "\n  S3              http://{}   (virtual hosts BUCKET.s3.lingjing.test)",
            g.handle.addr()
        );
    }
    if let Some(a) = &storage.admin {
        out += &format!("\n  S3 admin        http://{}/metrics", a.addr());
    }
    for (n, site) in &storage.nodes {
        out += &format!(
            "\n  storage {:<14} http://{}  site {site}",
            n.handle.node_id(),
            n.handle.addr()
        );
    }
    if let Some((access, secret)) = &storage.demo_key {
        out += &format!(
            "\n  S3 demo key     {access} {secret}   (tenant demo, bucket demo; also in {}/{})",
            dir.display(),
            super::up_storage::DEMO_KEY_FILE
        );
    }
    out
}

/// The banner's S3 examples.
fn try_s3(storage: &super::up_storage::RunningStorage) -> String {
    let (Some(g), Some((access, secret))) = (&storage.gateway, &storage.demo_key) else {
        return String::new();
    };
    let s3 = format!("aws --endpoint-url http://{}", g.handle.addr());
    format!(
        "\n  export AWS_ACCESS_KEY_ID={access} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION=us-east-1\
         \n  {s3} s3 cp README.md s3://demo/\
         \n  {s3} s3 ls s3://demo/\
         \n  curl \"$({s3} s3 presign s3://demo/README.md)\"\
         \n  lingjing storage status"
    )
}

/// The control API's URL as this host reaches it (loopback for a wildcard listen address).
fn local_url(control: &lingjing_control::ControlHandle) -> String {
    let mut addr = control.addr();
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let scheme = if control.url().starts_with("https") {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{addr}")
}

/// The agent configuration of a node `up` runs: its own credential, kept in its state
/// directory, or got on its first start with a join token `up` issues for it.
pub(super) async fn node_agent(
    client: &Client,
    ca: &Path,
    node: &str,
    role: lingjing_model::snapshot::Role,
    state_dir: &Path,
) -> anyhow::Result<lingjing_client::AgentConfig> {
    let path = lingjing_client::agent::credential_path(state_dir, node);
    let kept = match std::fs::read_to_string(&path) {
        // A kept credential the control plane no longer knows (revoked, or a new
        // database) is replaced: `up` is the operator of its own nodes.
        Ok(credential) => {
            let probe = Client::with_ca(client.endpoint(), credential.trim(), Some(ca))?;
            let refused = probe
                .poll_snapshot::<serde_json::Value>(
                    role,
                    node,
                    u64::MAX >> 1,
                    std::time::Duration::from_millis(1),
                )
                .await
                .err()
                .is_some_and(|e| e.status() == Some(401));
            if refused {
                tracing::warn!(node, "the kept node credential was refused; joining again");
            }
            !refused
        }
        Err(_) => false,
    };
    let join_token = if kept {
        None
    } else {
        let t: serde_json::Value = client
            .post(
                &format!("/v1/nodes/{node}/join-token"),
                &serde_json::json!({}),
            )
            .await
            .with_context(|| format!("cannot issue a join token for node {node}"))?;
        t["join_token"].as_str().map(str::to_owned)
    };
    let credential = lingjing_client::agent::node_credential(
        client.endpoint(),
        Some(ca),
        false,
        node,
        state_dir,
        join_token.as_deref(),
    )
    .await
    .with_context(|| format!("node {node} cannot get its credential"))?;
    let mut config =
        lingjing_client::AgentConfig::new(client.endpoint(), &credential, node, role, state_dir);
    config.ca = Some(PathBuf::from(ca));
    Ok(config)
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
    ca: &Path,
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
        let state_dir = global.data_dir.join(format!("edge-{}", node.id));
        let cache_dir = state_dir.join("cache");
        lingjing_client::fs::ensure_private_dir(&cache_dir)
            .with_context(|| format!("cannot create {}", cache_dir.display()))?;
        config.disk_dir = Some(cache_dir);
        config.disk_bytes = 1024 * 1024 * 1024;
        let agent_config = node_agent(
            client,
            ca,
            &node.id,
            lingjing_model::snapshot::Role::Edge,
            &state_dir,
        )
        .await?;
        // The artefact relay fetches from the control plane with the node's credential.
        config.platform_credential = Some(agent_config.token.clone());
        let edge = lingjing_edge::Edge::new(&config);
        let agent = lingjing_client::Agent::new(agent_config)?;
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
    ca: &Path,
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
    let agent = lingjing_client::Agent::new(
        node_agent(
            client,
            ca,
            &node,
            lingjing_model::snapshot::Role::Dns,
            &global.data_dir.join(format!("dns-{node}")),
        )
        .await?,
    )?;
    let agent = super::dns::start_agent(agent, server.clone());
    let mut config = lingjing_dns::DnsConfig::on(args.dns_listen);
    config.admin = Some(args.dns_admin);
    args.dns_abuse.apply(&mut config);
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
