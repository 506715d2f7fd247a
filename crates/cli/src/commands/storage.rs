//! `lingjing storage`: one storage node, serving its blocks to the S3 gateways;
//! `lingjing storage status`; and `lingjing s3`: an S3 gateway over storage nodes.
//!
//! Both run fed by the control plane (a node credential, the `storage` or `s3` snapshot:
//! the cluster token, the storage nodes and, for gateways, the tenants' S3 keys), or
//! standalone from files (`--token-file`, `--storage-node`, `--keys-file`). `up` starts
//! its storage nodes and gateway with [`start_managed_node`] and [`start_managed_gateway`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use lingjing_client::{Agent, AgentHandle};
use lingjing_model::snapshot::{
    Role, ScrubAsked, Snapshot, StorageNodeStatus, StoragePolicy, StorageReport,
    StorageReportSource, StorageSnapshot,
};
use lingjing_storage::gateway::{
    ClusterUpdate, GatewayConfig, GatewayHandle, GcSchedule, RepairSchedule, S3Key,
};
use lingjing_storage::node::{NodeConfig, NodeHandle};
use lingjing_storage::placement::NodeRef;
use lingjing_storage::{Erasure, Redundancy};
use tokio::sync::watch;

use crate::args::{Global, S3Args, StorageArgs, StorageSub};
use crate::output::human_bytes;

/// The cluster token in `path` (one line, not empty).
fn cluster_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cluster token from {}", path.display()))?
        .trim()
        .to_owned();
    if token.is_empty() {
        bail!(
            "{} is empty: put the cluster token the gateways and storage nodes share in it",
            path.display()
        );
    }
    Ok(token)
}

pub async fn run(global: &Global, args: StorageArgs) -> anyhow::Result<()> {
    match args.command {
        Some(StorageSub::Status { meta_url }) => return status(global, meta_url).await,
        Some(StorageSub::Scrub) => return scrub(global).await,
        Some(StorageSub::Usage { tenant, from, to }) => {
            return usage(global, tenant, from, to).await;
        }
        Some(StorageSub::Layout { command }) => {
            return super::storage_layout::run(global, command).await;
        }
        None => {}
    }
    let Some(node) = args.node.clone() else {
        bail!(
            "give this storage node's inventory id with --node ID (or run `lingjing storage status`)"
        );
    };
    let node_dir = global.data_dir.join(format!("storage-{node}"));
    let data_dir = args
        .blocks_dir
        .clone()
        .unwrap_or_else(|| node_dir.join("blocks"));
    if !data_dir.exists() {
        // Tenants' data: only this user may read it.
        lingjing_client::fs::ensure_private_dir(&data_dir).with_context(|| {
            format!("cannot create the blocks directory {}", data_dir.display())
        })?;
    }
    let config = NodeConfig {
        node_id: node.clone(),
        listen: args.listen,
        data_dir: data_dir.clone(),
        token: String::new(),
        max_block_bytes: args.max_block_mb * 1024 * 1024,
        scrub: args.scrub(),
        reserve_bytes: args.reserve_mb << 20,
    };
    let (handle, agent) = match &args.token_file {
        Some(file) => {
            let config = NodeConfig {
                token: cluster_token(file)?,
                ..config
            };
            (lingjing_storage::start(config).await?, None)
        }
        None => {
            let state_dir = args.state_dir.clone().unwrap_or(node_dir);
            let agent =
                super::edge::agent_config(global, &args.join, &node, Role::Storage, &state_dir)
                    .await?;
            let managed = start_managed_node(Agent::new(agent)?, config).await?;
            (managed.handle, Some(managed.agent))
        }
    };
    eprintln!(
        "lingjing storage {node} serving blocks in {} on http://{} (Ctrl-C to stop)",
        data_dir.display(),
        handle.addr()
    );
    super::shutdown_signal().await;
    eprintln!("shutting down");
    if let Some(agent) = agent {
        agent.stop();
    }
    handle.shutdown().await;
    Ok(())
}

/// How long a node or gateway waits for its first snapshot before giving up.
const FIRST_SNAPSHOT_WAIT: Duration = Duration::from_secs(120);

/// Waits for the first snapshot the agent hands over.
async fn first_snapshot(
    rx: &mut watch::Receiver<Option<Arc<Snapshot<StorageSnapshot>>>>,
    what: &str,
) -> anyhow::Result<Arc<Snapshot<StorageSnapshot>>> {
    let waited = tokio::time::timeout(FIRST_SNAPSHOT_WAIT, rx.wait_for(Option::is_some)).await;
    match waited {
        Ok(Ok(s)) => s.clone().context("no snapshot"),
        _ => bail!(
            "{what} got no snapshot from the control plane within {}s: is it in the inventory with its role, and is the control plane up?",
            FIRST_SNAPSHOT_WAIT.as_secs()
        ),
    }
}

/// A storage node fed by the control plane, and its agent.
pub struct ManagedNode {
    pub handle: NodeHandle,
    pub agent: AgentHandle,
}

/// A storage node's disk and scrubs as its heartbeats report them (nothing before the
/// node runs).
struct DiskReport(Arc<OnceLock<lingjing_storage::node::StatusView>>);

impl StorageReportSource for DiskReport {
    fn report(&self) -> StorageReport {
        self.0.get().map_or_else(StorageReport::default, |view| {
            let s = view.status();
            StorageReport {
                used_bytes: s.store.used_bytes,
                free_bytes: s.store.free_bytes,
                blocks: s.store.blocks,
                last_scrub_ms: s.scrub.finished_ms,
                scrub_running: s.scrub.running,
                corrupt_found: s.scrub.corrupt_total,
            }
        })
    }
}

/// Starts a storage node whose cluster token comes from the control plane's `storage`
/// snapshot (it starts once the first one is in), and that reports its disk with its
/// heartbeats. `config.token` is ignored.
pub async fn start_managed_node(agent: Agent, config: NodeConfig) -> anyhow::Result<ManagedNode> {
    let store = Arc::new(OnceLock::new());
    let (tx, mut rx) = watch::channel(None);
    let agent = agent
        .with_storage_report(Arc::new(DiskReport(store.clone())))
        .start(move |s: Arc<Snapshot<StorageSnapshot>>| {
            if s.body.cluster_token.trim().is_empty() {
                return Err("the snapshot has no cluster token".to_owned());
            }
            tx.send_replace(Some(s));
            Ok(())
        });
    let first = first_snapshot(&mut rx, &format!("storage node {}", config.node_id)).await?;
    let handle = lingjing_storage::start(NodeConfig {
        token: first.body.cluster_token.clone(),
        ..config
    })
    .await?;
    let _ = store.set(handle.status_view());
    let tokens = handle.token_setter();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let latest = rx.borrow_and_update().clone();
            if let Some(s) = latest {
                tokens.set(&s.body.cluster_token);
            }
        }
    });
    Ok(ManagedNode { handle, agent })
}

/// An S3 gateway's per-bucket usage as its heartbeats report it (nothing before the
/// gateway runs).
struct BucketReport(Arc<OnceLock<Arc<lingjing_storage::usage::UsageLedger>>>);

impl lingjing_model::snapshot::BucketUsageSource for BucketReport {
    fn take(
        &self,
    ) -> (
        Vec<lingjing_model::snapshot::BucketTraffic>,
        Vec<lingjing_model::snapshot::BucketStored>,
    ) {
        self.0.get().map_or_else(Default::default, |l| l.take())
    }
}

/// An S3 gateway fed by the control plane, and its agent.
pub struct ManagedGateway {
    pub handle: GatewayHandle,
    pub agent: AgentHandle,
}

/// What a gateway takes from a `s3` snapshot: the storage nodes with an address (at
/// `ports.http`), those unhealthy or drained to try last, the token and the keys.
pub fn cluster_update(body: &StorageSnapshot) -> Result<ClusterUpdate, String> {
    let mut nodes = Vec::new();
    let mut down = HashSet::new();
    for n in &body.nodes {
        let Some(ip) = n.addresses.first() else {
            continue;
        };
        if !n.healthy || n.node.drained {
            down.insert(n.node.id.clone());
        }
        nodes.push(NodeRef {
            id: n.node.id.clone(),
            site: n.node.site.clone(),
            addr: std::net::SocketAddr::new(*ip, n.node.ports.http),
            weight: body.layout.capacity(&n.node.id),
        });
    }
    if nodes.is_empty() {
        return Err("the snapshot has no storage node with an address".to_owned());
    }
    if body.cluster_token.trim().is_empty() {
        return Err("the snapshot has no cluster token".to_owned());
    }
    Ok(ClusterUpdate {
        nodes,
        down,
        redundancy: redundancy(&body.policy),
        cluster_token: body.cluster_token.clone(),
        keys: body
            .s3_keys
            .iter()
            .map(|k| S3Key {
                access_key: k.access_key.clone(),
                secret: k.secret.clone(),
                tenant: k.tenant.clone(),
                read_only_bucket: k.read_only_bucket.clone(),
            })
            .collect(),
    })
}

/// The gateway's form of the control plane's storage policy.
fn redundancy(policy: &StoragePolicy) -> Redundancy {
    Redundancy {
        replicas: usize::try_from(policy.replicas).unwrap_or(3),
        erasure: policy.erasure.map(|code| Erasure {
            code,
            min_bytes: policy.erasure_min_bytes,
        }),
    }
}

/// Starts an S3 gateway whose storage nodes, cluster token and access keys come from the
/// control plane's `s3` snapshot (it starts once the first usable one is in; later ones
/// apply to the requests after them). `config`'s nodes, keys, token and redundancy are
/// ignored.
pub async fn start_managed_gateway(
    agent: Agent,
    config: GatewayConfig,
    also: &[std::net::SocketAddr],
) -> anyhow::Result<ManagedGateway> {
    let (tx, mut rx) = watch::channel(None);
    let ledger = Arc::new(OnceLock::new());
    let agent = agent.with_bucket_usage(Arc::new(BucketReport(ledger.clone())));
    let agent = agent.start(move |s: Arc<Snapshot<StorageSnapshot>>| {
        cluster_update(&s.body)?;
        tx.send_replace(Some(s));
        Ok(())
    });
    let first = first_snapshot(&mut rx, "the S3 gateway").await?;
    let update = cluster_update(&first.body).map_err(anyhow::Error::msg)?;
    let handle = lingjing_storage::gateway::start_on(
        GatewayConfig {
            nodes: update.nodes,
            redundancy: update.redundancy,
            cluster_token: update.cluster_token,
            keys: update.keys,
            ..config
        },
        also,
    )
    .await?;
    let _ = ledger.set(handle.usage());
    let updater = handle.updater();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let latest = rx.borrow_and_update().clone();
            if let Some(s) = latest
                && let Err(e) = cluster_update(&s.body).and_then(|u| updater.update(u))
            {
                tracing::warn!(version = s.version, error = %e, "S3 snapshot not applied");
            }
        }
    });
    Ok(ManagedGateway { handle, agent })
}

/// `lingjing storage status`: the storage nodes as the control plane sees them, and the
/// census of the S3 metadata (when there is a database to read).
/// `lingjing storage scrub`: every storage node asked (through the control plane, which
/// holds the cluster token) to start a scrub pass now.
async fn scrub(global: &Global) -> anyhow::Result<()> {
    let c = crate::context::client(global)?;
    let asked: Vec<ScrubAsked> = c
        .post("/v1/storage/scrub", &serde_json::json!({}))
        .await
        .map_err(super::resources::explain)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&asked)?);
        return Ok(());
    }
    for a in &asked {
        match (&a.error, a.started) {
            (Some(e), _) => println!("{}: not asked: {e}", a.node),
            (None, true) => println!("{}: scrub started", a.node),
            (None, false) => println!("{}: a scrub is already running", a.node),
        }
    }
    if asked.iter().any(|a| a.error.is_some()) {
        bail!("some storage nodes could not be asked to scrub (above)");
    }
    Ok(())
}

async fn status(global: &Global, meta_url: Option<String>) -> anyhow::Result<()> {
    let c = crate::context::client(global)?;
    let nodes: Vec<StorageNodeStatus> = c
        .get("/v1/storage/status")
        .await
        .map_err(super::resources::explain)?;
    let meta_url = meta_url.or_else(|| {
        let up = global.data_dir.join("s3").join("meta.db");
        up.exists().then(|| format!("sqlite://{}", up.display()))
    });
    let census = match &meta_url {
        Some(url) => {
            let meta = lingjing_storage::meta::Meta::open(url)
                .await
                .with_context(|| format!("cannot open the S3 metadata database {url}"))?;
            let healthy: HashSet<String> = nodes
                .iter()
                .filter(|n| n.node.healthy && !n.node.node.drained)
                .map(|n| n.node.node.id.clone())
                .collect();
            let wanted = (lingjing_control::snapshot::DEFAULT_REPLICAS as usize).min(nodes.len());
            Some(
                lingjing_storage::census::census(&meta, &healthy, wanted)
                    .await
                    .context("cannot count the objects and blocks")?,
            )
        }
        None => None,
    };
    if global.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "nodes": nodes, "census": census }))?
        );
        return Ok(());
    }
    if nodes.is_empty() {
        println!("no storage nodes (add a node with the `storage` role)");
        return Ok(());
    }
    println!(
        "{:<16} {:<12} {:<22} {:<8} {:>10} {:>10} {:>9} {:>12} {:>7}  REPORTED",
        "NODE", "SITE", "ADDRESS", "HEALTH", "USED", "FREE", "BLOCKS", "SCRUBBED", "CORRUPT"
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (mut used, mut free, mut blocks) = (0u64, 0u64, 0u64);
    for n in &nodes {
        let addr = n.node.addresses.first().map_or_else(
            || "-".to_owned(),
            |ip| std::net::SocketAddr::new(*ip, n.node.node.ports.http).to_string(),
        );
        let health = if n.node.node.drained {
            "drained"
        } else if n.node.healthy {
            "up"
        } else {
            "down"
        };
        let r = n.report.unwrap_or_default();
        used += r.used_bytes;
        free += r.free_bytes;
        blocks += r.blocks;
        let scrubbed = match (r.scrub_running, r.last_scrub_ms) {
            (true, _) => "running".to_owned(),
            (false, Some(at)) => ago(now_ms.saturating_sub(at) / 1000),
            (false, None) => "never".to_owned(),
        };
        println!(
            "{:<16} {:<12} {:<22} {:<8} {:>10} {:>10} {:>9} {:>12} {:>7}  {}",
            n.node.node.id,
            n.node.node.site,
            addr,
            health,
            human_bytes(r.used_bytes),
            human_bytes(r.free_bytes),
            r.blocks,
            scrubbed,
            r.corrupt_found,
            n.reported_at.as_deref().unwrap_or("never")
        );
    }
    let sites: HashSet<&str> = nodes.iter().map(|n| n.node.node.site.as_str()).collect();
    println!(
        "{} node(s) in {} site(s); {} used, {} free, {blocks} block copies",
        nodes.len(),
        sites.len(),
        human_bytes(used),
        human_bytes(free)
    );
    match census {
        Some(c) => {
            println!(
                "{} bucket(s), {} object(s), {} noncurrent version(s), {} of data; {} distinct blocks ({} erasure-coded), {} under-replicated, {} at risk (one node from unreadable), {} unavailable",
                c.buckets,
                c.objects,
                c.noncurrent_versions,
                human_bytes(c.bytes),
                c.blocks,
                c.coded_blocks,
                c.under_replicated,
                c.at_risk,
                c.unavailable
            );
            println!(
                "Repair backlog: {} block(s) short of pieces on healthy nodes; data at risk: {} block(s) with fewer than k+1 healthy pieces (k = 1 for copies)",
                c.under_replicated,
                c.at_risk + c.unavailable
            );
        }
        None => {
            println!("(no S3 metadata database here: give --meta-url to count objects and blocks)")
        }
    }
    Ok(())
}

/// `secs` seconds as a short age, e.g. `42s ago`, `5m ago`, `3h ago`, `2d ago`.
fn ago(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86_400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// `lingjing storage usage`: per bucket, from `GET /v1/storage/usage`.
async fn usage(
    global: &Global,
    tenant: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> anyhow::Result<()> {
    let c = crate::context::client(global)?;
    let mut query = Vec::new();
    for (name, value) in [("tenant", tenant), ("from", from), ("to", to)] {
        if let Some(v) = value {
            query.push(format!("{name}={}", percent_encode(&v)));
        }
    }
    let path = if query.is_empty() {
        "/v1/storage/usage".to_owned()
    } else {
        format!("/v1/storage/usage?{}", query.join("&"))
    };
    let buckets: Vec<lingjing_model::snapshot::BucketUsage> =
        c.get(&path).await.map_err(super::resources::explain)?;
    if global.json {
        println!("{}", serde_json::to_string_pretty(&buckets)?);
        return Ok(());
    }
    if buckets.is_empty() {
        println!("no bucket usage reported in the window");
        return Ok(());
    }
    println!(
        "{:<24} {:<12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "BUCKET", "TENANT", "REQUESTS", "IN", "OUT", "STORED", "MEAN", "RAW", "PARITY"
    );
    for b in &buckets {
        let s = b.stored.as_ref();
        println!(
            "{:<24} {:<12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            b.bucket,
            b.tenant,
            b.requests,
            human_bytes(b.bytes_in),
            human_bytes(b.bytes_out),
            s.map_or_else(|| "-".to_owned(), |s| human_bytes(s.stored_bytes)),
            human_bytes(b.mean_stored_bytes),
            s.map_or_else(|| "-".to_owned(), |s| human_bytes(s.raw_bytes)),
            s.map_or_else(|| "-".to_owned(), |s| human_bytes(s.parity_bytes)),
        );
    }
    Ok(())
}

/// `v` with the characters a query value cannot hold percent-encoded.
fn percent_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A storage node given as `ID@SITE=ADDR`.
fn node_ref(spec: &str) -> anyhow::Result<NodeRef> {
    let parsed = spec.split_once('=').and_then(|(name, addr)| {
        let (id, site) = name.split_once('@')?;
        Some((id, site, addr.parse().ok()?))
    });
    match parsed {
        Some((id, site, addr)) if !id.is_empty() && !site.is_empty() => Ok(NodeRef {
            id: id.to_owned(),
            site: site.to_owned(),
            addr,
            weight: 1,
        }),
        _ => bail!(
            "--node {spec:?}: give a storage node as ID@SITE=ADDR, e.g. st-1@wuxi=127.0.0.1:7810"
        ),
    }
}

/// The access keys in `path`: `ACCESS_KEY SECRET TENANT` per line (`#` comments).
fn s3_keys(path: &Path) -> anyhow::Result<Vec<S3Key>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the access keys from {}", path.display()))?;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [access_key, secret, tenant] = fields[..] else {
            bail!(
                "{}:{}: expected ACCESS_KEY SECRET TENANT",
                path.display(),
                n + 1
            );
        };
        keys.push(S3Key {
            access_key: access_key.to_owned(),
            secret: secret.to_owned(),
            tenant: tenant.to_owned(),
            read_only_bucket: None,
        });
    }
    if keys.is_empty() {
        bail!(
            "{} has no access keys: add a line ACCESS_KEY SECRET TENANT",
            path.display()
        );
    }
    Ok(keys)
}

pub async fn gateway(global: &Global, args: S3Args) -> anyhow::Result<()> {
    let meta_url = match &args.meta_url {
        Some(url) => url.clone(),
        None => {
            let dir = global.data_dir.join("s3");
            lingjing_client::fs::ensure_private_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            format!("sqlite://{}", dir.join("meta.db").display())
        }
    };
    let config = GatewayConfig {
        listen: args.listen,
        domain: args.domain.clone(),
        meta_url,
        nodes: Vec::new(),
        redundancy: Redundancy {
            replicas: usize::try_from(args.replicas).unwrap_or(3),
            erasure: args.erasure.map(|code| Erasure {
                code,
                min_bytes: args.erasure_min_kib * 1024,
            }),
        },
        cluster_token: String::new(),
        block_bytes: usize::try_from(args.block_kb * 1024).unwrap_or(1 << 20),
        keys: Vec::new(),
        gc: (args.gc_interval_min > 0).then(|| GcSchedule {
            interval: Duration::from_secs(args.gc_interval_min * 60),
            grace: Duration::from_secs(args.gc_grace_hours * 3600),
        }),
        repair: (args.repair_interval_min > 0).then(|| RepairSchedule {
            interval: Duration::from_secs(args.repair_interval_min * 60),
            bytes_per_sec: args.repair_mib_per_s << 20,
            gone_after: Duration::from_secs(args.repair_gone_after_min * 60),
        }),
    };
    let (handle, agent) = match (&args.node, &args.token_file, &args.keys_file) {
        (_, Some(token_file), Some(keys_file)) if !args.storage_nodes.is_empty() => {
            let nodes = args
                .storage_nodes
                .iter()
                .map(|s| node_ref(s))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let config = GatewayConfig {
                nodes,
                cluster_token: cluster_token(token_file)?,
                keys: s3_keys(keys_file)?,
                ..config
            };
            (lingjing_storage::gateway::start(config).await?, None)
        }
        (Some(node), _, _) => {
            let state_dir = args
                .state_dir
                .clone()
                .unwrap_or_else(|| global.data_dir.join(format!("s3-{node}")));
            let agent =
                super::edge::agent_config(global, &args.join, node, Role::S3, &state_dir).await?;
            let managed = start_managed_gateway(Agent::new(agent)?, config, &[]).await?;
            (managed.handle, Some(managed.agent))
        }
        _ => bail!(
            "give the gateway's inventory id with --node ID (fed by the control plane), or run it standalone with --storage-node ID@SITE=ADDR --token-file F --keys-file F"
        ),
    };
    let admin = lingjing_storage::gateway::metrics::serve_admin(args.admin, handle.metrics())
        .await
        .context("pick another admin address with --admin")?;
    eprintln!(
        "lingjing s3 serving http://{} (virtual hosts *.{}), metrics on http://{}/metrics (Ctrl-C to stop)",
        handle.addr(),
        args.domain,
        admin.addr()
    );
    super::shutdown_signal().await;
    eprintln!("shutting down");
    if let Some(agent) = agent {
        agent.stop();
    }
    admin.shutdown().await;
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_nodes_are_given_as_id_at_site_equals_address() {
        let n = node_ref("st-1@wuxi=127.0.0.1:7811").expect("parses");
        assert_eq!((n.id.as_str(), n.site.as_str()), ("st-1", "wuxi"));
        assert_eq!(n.addr.port(), 7811);
        for bad in [
            "st-1=127.0.0.1:7811",
            "@wuxi=127.0.0.1:1",
            "st-1@=127.0.0.1:1",
            "st-1@wuxi=nowhere",
            "st-1@wuxi",
        ] {
            let err = node_ref(bad).expect_err(bad).to_string();
            assert!(err.contains("ID@SITE=ADDR"), "{err}");
        }
    }

    #[test]
    fn key_files_hold_access_key_secret_and_tenant_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "# demo\nAK1 secret-1 shop\n\nAK2 secret-2 rival\n").expect("write");
        let keys = s3_keys(&path).expect("parses");
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[1].access_key.as_str(), keys[1].tenant.as_str()),
            ("AK2", "rival")
        );
        std::fs::write(&path, "AK1 secret-1\n").expect("write");
        assert!(
            s3_keys(&path)
                .expect_err("short line")
                .to_string()
                .contains(":1: expected")
        );
        std::fs::write(&path, "# nothing\n").expect("write");
        assert!(s3_keys(&path).is_err());
    }
}
