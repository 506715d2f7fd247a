//! Object storage in `lingjing up`: a storage node for every inventory node with the
//! `storage` role (each on its own loopback address, blocks in DATA_DIR/storage-NODE),
//! the S3 gateway as the first node with the `s3` role (metadata in DATA_DIR/s3/meta.db),
//! a demo S3 key for tenant `demo` (kept 0600 in DATA_DIR/s3-demo-key and reused while
//! the control plane still knows it), the demo bucket and, in it, the demo site that the
//! service `site` is served from. The gateway listens on `--s3-listen` for clients and on
//! its node's own address for the edges. All of them are fed by the
//! control plane like remote ones, with node credentials of their own.

use std::path::Path;

use anyhow::Context;
use lingjing_client::{Agent, Client};
use lingjing_model::NodeRole;
use lingjing_model::snapshot::Role;
use lingjing_storage::gateway::GatewayConfig;
use lingjing_storage::gateway::metrics::{AdminHandle, serve_admin};
use lingjing_storage::node::NodeConfig;
use serde_json::Value;

use super::storage::{ManagedGateway, ManagedNode, start_managed_gateway, start_managed_node};
use crate::args::{Global, UpArgs};

/// The file holding the demo S3 key: `ACCESS_KEY SECRET`.
pub const DEMO_KEY_FILE: &str = "s3-demo-key";
/// The tenant the demo key and bucket belong to.
const DEMO_TENANT: &str = "demo";

/// Object storage as `up` runs it.
pub struct RunningStorage {
    pub nodes: Vec<(ManagedNode, String)>,
    pub gateway: Option<ManagedGateway>,
    /// The gateway's `/metrics` and `/healthz`.
    pub admin: Option<AdminHandle>,
    /// The demo key (access key, secret), when the demo tenant exists.
    pub demo_key: Option<(String, String)>,
}

impl RunningStorage {
    pub async fn shutdown(self) {
        if let Some(a) = self.admin {
            a.shutdown().await;
        }
        if let Some(g) = self.gateway {
            g.agent.stop();
            g.handle.shutdown().await;
        }
        for (n, _) in self.nodes {
            n.agent.stop();
            n.handle.shutdown().await;
        }
    }
}

/// Starts the storage nodes, the demo key and bucket, then the gateway.
pub async fn start(
    global: &Global,
    args: &UpArgs,
    client: &Client,
    ca: &Path,
) -> anyhow::Result<RunningStorage> {
    let inventory: Vec<Value> = client.get("/v1/nodes").await?;
    let mut nodes = Vec::new();
    let mut gateway_node = None;
    for n in inventory {
        let node = super::resources::node_spec(n.clone())?;
        if node.roles.contains(&NodeRole::S3) && gateway_node.is_none() {
            let ip = n["addresses"][0]
                .as_str()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok());
            gateway_node = Some((node.clone(), ip));
        }
        if !node.roles.contains(&NodeRole::Storage) {
            continue;
        }
        let Some(ip) = n["addresses"][0]
            .as_str()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        else {
            tracing::warn!(node = %node.id, "storage node has no address: not started");
            continue;
        };
        let listen = std::net::SocketAddr::new(ip, args.storage_port.unwrap_or(node.ports.http));
        let state_dir = global.data_dir.join(format!("storage-{}", node.id));
        let blocks = state_dir.join("blocks");
        lingjing_client::fs::ensure_private_dir(&blocks)
            .with_context(|| format!("cannot create {}", blocks.display()))?;
        let agent = super::up::node_agent(client, ca, &node.id, Role::Storage, &state_dir).await?;
        let managed = start_managed_node(
            Agent::new(agent)?,
            NodeConfig {
                node_id: node.id.clone(),
                listen,
                data_dir: blocks,
                token: String::new(),
                max_block_bytes: lingjing_storage::node::DEFAULT_MAX_BLOCK_BYTES,
                scrub: lingjing_storage::scrub::ScrubSchedule::default(),
                reserve_bytes: lingjing_storage::block::DEFAULT_RESERVE_BYTES,
            },
        )
        .await
        .with_context(|| {
            format!(
                "cannot start storage node {} on {listen} (is another `lingjing up` running? pick another port with --storage-port)",
                node.id
            )
        })?;
        // With a port override, tell the inventory where the node really listens: the
        // gateways and the health probes go by the inventory's ports.
        let port = managed.handle.addr().port();
        if node.ports.http != port || node.ports.admin != port {
            let mut updated = node.clone();
            updated.ports.http = port;
            updated.ports.admin = port;
            let _: Value = client
                .put(&format!("/v1/nodes/{}", node.id), &updated)
                .await
                .with_context(|| format!("cannot record the port of storage node {}", node.id))?;
        }
        nodes.push((managed, node.site.clone()));
    }
    let Some(gateway_node) = gateway_node.filter(|_| !nodes.is_empty()) else {
        return Ok(RunningStorage {
            nodes,
            gateway: None,
            admin: None,
            demo_key: None,
        });
    };
    let demo_key = demo_key(&global.data_dir, client).await?;
    let meta_dir = global.data_dir.join("s3");
    lingjing_client::fs::ensure_private_dir(&meta_dir)
        .with_context(|| format!("cannot create {}", meta_dir.display()))?;
    let meta_url = format!("sqlite://{}", meta_dir.join("meta.db").display());
    if demo_key.is_some() {
        demo_bucket(&meta_url).await?;
    }
    let (gateway_node, gateway_ip) = gateway_node;
    let state_dir = global.data_dir.join(format!("s3-{}", gateway_node.id));
    let agent = super::up::node_agent(client, ca, &gateway_node.id, Role::S3, &state_dir).await?;
    // Clients use --s3-listen; the edges (reading buckets that services are served from)
    // use the node's own address, as the inventory says.
    let at_node: Vec<std::net::SocketAddr> = gateway_ip
        .map(|ip| {
            std::net::SocketAddr::new(ip, args.storage_port.map_or(gateway_node.ports.http, |_| 0))
        })
        .into_iter()
        .collect();
    let gateway = start_managed_gateway(
        Agent::new(agent)?,
        GatewayConfig {
            listen: args.s3_listen,
            domain: "s3.lingjing.test".to_owned(),
            meta_url,
            nodes: Vec::new(),
            redundancy: lingjing_storage::Redundancy::replicated(3),
            cluster_token: String::new(),
            block_bytes: lingjing_storage::gateway::DEFAULT_BLOCK_BYTES,
            keys: Vec::new(),
            gc: Some(lingjing_storage::gateway::GcSchedule::default()),
            repair: Some(lingjing_storage::gateway::RepairSchedule::default()),
        },
        &at_node,
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the S3 gateway on {} (pick another address with --s3-listen)",
            args.s3_listen
        )
    })?;
    if let Some(port) = gateway
        .handle
        .also()
        .first()
        .map(std::net::SocketAddr::port)
        && port != gateway_node.ports.http
    {
        let mut updated = gateway_node.clone();
        updated.ports.http = port;
        let _: Value = client
            .put(&format!("/v1/nodes/{}", updated.id), &updated)
            .await
            .context("cannot record the port of the S3 gateway node")?;
    }
    if let Some(key) = &demo_key {
        demo_site(gateway.handle.addr(), key)
            .await
            .context("cannot put the demo site in the demo bucket")?;
    }
    let admin = serve_admin(args.s3_admin, gateway.handle.metrics())
        .await
        .context("pick another address for the S3 gateway's admin with --s3-admin")?;
    Ok(RunningStorage {
        nodes,
        gateway: Some(gateway),
        admin: Some(admin),
        demo_key,
    })
}

/// The demo S3 key kept in the data directory if the control plane still knows it, else
/// a new one (kept there, 0600). None when there is no demo tenant.
async fn demo_key(data_dir: &Path, client: &Client) -> anyhow::Result<Option<(String, String)>> {
    let path = data_dir.join(DEMO_KEY_FILE);
    let known: Vec<Value> = match client
        .get(&format!("/v1/tenants/{DEMO_TENANT}/s3-keys"))
        .await
    {
        Ok(keys) => keys,
        Err(e) if e.status() == Some(404) => return Ok(None),
        Err(e) => return Err(e).context("cannot list the demo tenant's S3 keys"),
    };
    lingjing_client::fs::tighten_file(&path)
        .with_context(|| format!("cannot make {} private", path.display()))?;
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Some((access, secret)) = text.trim().split_once(' ')
        && known.iter().any(|k| k["access_key"] == access)
    {
        return Ok(Some((access.to_owned(), secret.trim().to_owned())));
    }
    let key: Value = client
        .post(
            &format!("/v1/tenants/{DEMO_TENANT}/s3-keys"),
            &serde_json::json!({}),
        )
        .await
        .context("cannot create the demo S3 key")?;
    let (Some(access), Some(secret)) = (key["access_key"].as_str(), key["secret"].as_str()) else {
        anyhow::bail!("the control plane answered an S3 key without access_key and secret");
    };
    lingjing_client::fs::write_private(&path, format!("{access} {secret}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some((access.to_owned(), secret.to_owned())))
}

/// Puts the demo site's files ([`lingjing_demo::site::FILES`]) in the demo bucket through
/// the S3 API at `s3`, unless its `index.html` is there already (a user's changes stay).
async fn demo_site(
    s3: std::net::SocketAddr,
    (access, secret): &(String, String),
) -> anyhow::Result<()> {
    use lingjing_edge::upstream::bucket::sigv4;
    let http = reqwest::Client::new();
    let host = s3.to_string();
    let send = |method: reqwest::Method, key: &str, body: Option<(&str, &'static [u8])>| {
        let path = format!("/{}/{key}", lingjing_demo::topology::DEMO_BUCKET);
        let payload = if body.is_some() {
            "UNSIGNED-PAYLOAD"
        } else {
            lingjing_edge::upstream::bucket::EMPTY_SHA256
        };
        let mut req = http.request(method.clone(), format!("http://{host}{path}"));
        for (name, value) in sigv4(
            (access, secret),
            &method,
            &host,
            &path,
            payload,
            std::time::SystemTime::now(),
        ) {
            if name != reqwest::header::HOST {
                req = req.header(name, value);
            }
        }
        if let Some((content_type, bytes)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header(reqwest::header::CACHE_CONTROL, "public, max-age=300")
                .body(bytes);
        }
        req.send()
    };
    let head = send(reqwest::Method::HEAD, "index.html", None).await?;
    if head.status().is_success() {
        return Ok(());
    }
    for (key, content_type, bytes) in lingjing_demo::site::FILES {
        let res = send(reqwest::Method::PUT, key, Some((content_type, bytes))).await?;
        if !res.status().is_success() {
            anyhow::bail!("PUT {key} answered {}", res.status());
        }
    }
    Ok(())
}

/// Creates the demo bucket for the demo tenant unless it exists.
async fn demo_bucket(meta_url: &str) -> anyhow::Result<()> {
    let meta = lingjing_storage::meta::Meta::open(meta_url)
        .await
        .with_context(|| format!("cannot open the S3 metadata database {meta_url}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let made = meta
        .create_bucket(lingjing_demo::topology::DEMO_BUCKET, DEMO_TENANT, now)
        .await
        .context("cannot create the demo bucket")?;
    if made == lingjing_storage::meta::Created::TakenByAnother {
        tracing::warn!(
            bucket = lingjing_demo::topology::DEMO_BUCKET,
            "the demo bucket belongs to another tenant"
        );
    }
    Ok(())
}
