//! Snapshot building and distribution: per data-plane role, the control plane builds one
//! immutable snapshot per configuration version (from one consistent read), serialises it
//! once, and wakes every long-polling agent when a newer version commits.
//!
//! Layering: the builder reads the database only through `crate::store` (and the rules of
//! `crate::hostnames` and `crate::origins` that decide what data planes may see, which
//! read it the same way), with the platform settings of `crate::context`. It never uses
//! the API (`crate::api`) or the resource handlers (`crate::resource`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lingjing_model::snapshot::{
    ArtifactRelay, DnsSnapshot, EdgeSnapshot, NodeInfo, Role, Snapshot, StoragePolicy,
    StorageSnapshot,
};
use lingjing_model::{IpPool, Line, Node, NodeRole, Region, Service, Site};
use sqlx::AnyConnection;
use tokio::sync::watch;

use crate::context::ViewContext;
use crate::error::StoreError;
use crate::store::ipam::node_addresses;
use crate::store::lines::all_prefixes;
use crate::store::purges::recent_purges;
use crate::store::{Store, config_version, list_docs};

/// A serialised snapshot, shared (without copying) by every poller of that version.
pub type Body = axum::body::Bytes;

/// Tells waiters about new configuration versions and caches built snapshots.
pub struct Hub {
    version: watch::Sender<u64>,
    cache: Mutex<HashMap<Role, (u64, Body)>>,
    /// One build at a time per role: the pollers a new version wakes (a thousand nodes)
    /// wait for that build instead of each making its own.
    building: HashMap<Role, tokio::sync::Mutex<()>>,
    ctx: Arc<ViewContext>,
}

impl Hub {
    pub fn new(version: u64, ctx: Arc<ViewContext>) -> Arc<Hub> {
        Arc::new(Hub {
            version: watch::Sender::new(version),
            cache: Mutex::new(HashMap::new()),
            building: Role::ALL
                .iter()
                .map(|r| (*r, tokio::sync::Mutex::new(())))
                .collect(),
            ctx,
        })
    }

    /// Announces that `version` has committed (versions that are not newer are ignored).
    pub fn publish(&self, version: u64) {
        self.version.send_if_modified(|v| {
            if version > *v {
                *v = version;
                true
            } else {
                false
            }
        });
    }

    pub fn current(&self) -> u64 {
        *self.version.borrow()
    }

    /// Waits until a version newer than `after` exists, or `timeout` passes; returns the
    /// newest version seen.
    pub async fn wait_newer(&self, after: u64, timeout: Duration) -> u64 {
        let mut rx = self.version.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            rx.wait_for(|v| *v > after).await.map(|v| *v)
        })
        .await;
        match waited {
            Ok(Ok(v)) => v,
            _ => *rx.borrow(),
        }
    }

    /// The serialised snapshot for `role` at the newest version, built once per version.
    pub async fn snapshot(&self, store: &Store, role: Role) -> Result<(u64, Body), StoreError> {
        let cached = |current: u64| {
            self.cache.lock().ok().and_then(|cache| {
                cache
                    .get(&role)
                    .filter(|(v, _)| *v >= current)
                    .map(|(v, body)| (*v, body.clone()))
            })
        };
        if let Some(hit) = cached(self.current()) {
            return Ok(hit);
        }
        let _building = match self.building.get(&role) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        // Built by the poller this one waited for.
        if let Some(hit) = cached(self.current()) {
            return Ok(hit);
        }
        let mut tx = store.read().await?;
        let bytes = match role {
            Role::Edge => encode(build_edge(&mut tx, &self.ctx).await?)?,
            Role::Dns => encode(build_dns(&mut tx, &self.ctx.zone).await?)?,
            Role::Storage | Role::S3 => {
                encode(build_storage(&mut tx, role, self.ctx.storage).await?)?
            }
            Role::Aiot => encode(build_aiot(&mut tx, &self.ctx).await?)?,
        };
        tx.commit().await?;
        let (version, json) = bytes;
        let body = Body::from(json);
        if let Ok(mut cache) = self.cache.lock() {
            let newer = cache.get(&role).is_none_or(|(v, _)| *v < version);
            if newer {
                cache.insert(role, (version, body.clone()));
            }
        }
        // A writer from another control-plane replica may have committed: let waiters know.
        self.publish(version);
        Ok((version, body))
    }
}

fn encode<T: serde::Serialize>(s: Snapshot<T>) -> Result<(u64, Vec<u8>), StoreError> {
    let v = s.version;
    serde_json::to_vec(&s)
        .map(|b| (v, b))
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) async fn node_infos(conn: &mut AnyConnection) -> Result<Vec<NodeInfo>, StoreError> {
    let mut addresses = node_addresses(&mut *conn).await?;
    let down = crate::store::health::unhealthy_nodes(&mut *conn).await?;
    let load = crate::store::load_percents(&mut *conn).await?;
    Ok(list_docs::<Node>(conn)
        .await?
        .into_iter()
        .map(|node| NodeInfo {
            addresses: addresses.remove(&node.id).unwrap_or_default(),
            healthy: !down.contains(&node.id),
            load_percent: load
                .get(&node.id)
                .map_or(0, |(_, p)| u8::try_from(*p).unwrap_or(u8::MAX)),
            node,
        })
        .collect())
}

/// Most purges carried in an edge snapshot; a node that missed older ones drops its cache.
pub const MAX_SNAPSHOT_PURGES: i64 = 10_000;

/// Builds the edge snapshot from one consistent read.
pub async fn build_edge(
    conn: &mut AnyConnection,
    ctx: &ViewContext,
) -> Result<Snapshot<EdgeSnapshot>, StoreError> {
    let version = config_version(conn).await?;
    let mut purges = recent_purges(&mut *conn, MAX_SNAPSHOT_PURGES + 1).await?;
    let purges_complete_after = if purges.len() as i64 > MAX_SNAPSHOT_PURGES {
        purges.pop().map(|p| p.version).unwrap_or(0)
    } else {
        0
    };
    purges.reverse();
    let services = list_docs::<Service>(conn).await?;
    let services = crate::hostnames::only_verified(conn, services).await?;
    let nodes = node_infos(conn).await?;
    let bucket_origins = match crate::store::storage::cluster_token(&mut *conn).await? {
        Some(token) => crate::bucket_origins::edge_origins(&token, &services),
        None => Vec::new(),
    };
    let s3_gateways = if bucket_origins.is_empty() {
        Vec::new()
    } else {
        s3_gateways(&nodes)
    };
    let services_for_rules: Vec<(String, String)> = services
        .iter()
        .map(|s| (s.id.clone(), s.tenant.clone()))
        .collect();
    let artifact_relay = ctx.relay.as_ref().map(|(upstream, ca)| ArtifactRelay {
        hostname: relay_host(&ctx.zone),
        upstream: upstream.clone(),
        upstream_ca: ca.clone(),
        clients: nodes
            .iter()
            .flat_map(|n| n.addresses.iter().copied())
            .collect(),
    });
    let body = EdgeSnapshot {
        artifact_relay,
        services,
        sites: list_docs::<Site>(conn).await?,
        nodes,
        purges,
        purges_complete_after,
        origin_policy: crate::origins::policy(conn, ctx).await?,
        bucket_origins,
        s3_gateways,
        defence_rules: edge_rules(conn, &services_for_rules).await?,
        defence_learned: crate::store::defence::learned(conn)
            .await?
            .into_iter()
            .filter(|l| services_for_rules.iter().any(|(s, _)| *s == l.service))
            .collect(),
    };
    Ok(Snapshot {
        version,
        role: Role::Edge,
        generated_at: crate::time::now_rfc3339(),
        body,
    })
}

/// The defence rules in force, for services that exist and still belong to the tenant
/// that made the rule (and the operator's rules for every service).
async fn edge_rules(
    conn: &mut AnyConnection,
    services: &[(String, String)],
) -> Result<Vec<lingjing_model::defence::DefenceRule>, StoreError> {
    let rules = crate::store::defence::live_rules(conn, crate::time::now_ms(), None).await?;
    Ok(rules
        .into_iter()
        .filter(|r| match &r.spec.service {
            None => true,
            Some(id) => services
                .iter()
                .any(|(s, t)| s == id && r.tenant.as_deref() == Some(t.as_str())),
        })
        .collect())
}

/// The S3 API addresses of the healthy, undrained `s3` nodes.
pub(crate) fn s3_gateways(nodes: &[NodeInfo]) -> Vec<std::net::SocketAddr> {
    nodes
        .iter()
        .filter(|n| n.node.roles.contains(&NodeRole::S3) && n.healthy && !n.node.drained)
        .flat_map(|n| {
            n.addresses
                .iter()
                .map(|a| std::net::SocketAddr::new(*a, n.node.ports.http))
        })
        .collect()
}

/// Builds the DNS snapshot from one consistent read. TLS keys are left out.
pub async fn build_dns(
    conn: &mut AnyConnection,
    zone: &str,
) -> Result<Snapshot<DnsSnapshot>, StoreError> {
    let version = config_version(conn).await?;
    let services = list_docs::<Service>(conn).await?;
    let mut services = crate::hostnames::only_verified(conn, services).await?;
    for s in &mut services {
        s.tls = None;
    }
    let body = DnsSnapshot {
        zone: zone.to_owned(),
        regions: list_docs::<Region>(conn).await?,
        lines: list_docs::<Line>(conn).await?,
        prefixes: all_prefixes(conn).await?,
        sites: list_docs::<Site>(conn).await?,
        pools: list_docs::<IpPool>(conn).await?,
        nodes: node_infos(conn).await?,
        services,
        records: list_docs::<lingjing_model::DnsRecord>(conn).await?,
    };
    Ok(Snapshot {
        version,
        role: Role::Dns,
        generated_at: crate::time::now_rfc3339(),
        body,
    })
}

/// Copies kept of each block unless the operator says otherwise (the gateways keep fewer
/// when the cluster has fewer nodes).
pub const DEFAULT_REPLICAS: u32 = 3;

/// The Host of the edges' artefact relay: `artifacts.` under the platform zone (which no
/// tenant may hold).
pub fn relay_host(zone: &str) -> String {
    format!("artifacts.{}", zone.trim_end_matches('.'))
}

/// Builds the edge AI snapshot: every node's slot targets and the versions they name.
/// Nodes fetch artefacts from the control plane itself (their agent's endpoint) after
/// any source listed here.
pub async fn build_aiot(
    conn: &mut AnyConnection,
    ctx: &ViewContext,
) -> Result<Snapshot<lingjing_model::aiot::AiotSnapshot>, StoreError> {
    let version = config_version(conn).await?;
    // Each edge AI node fetches through its site's healthy edges first.
    let mut relays = Vec::new();
    if ctx.relay.is_some() {
        let nodes = node_infos(&mut *conn).await?;
        for ai in nodes
            .iter()
            .filter(|n| n.node.roles.contains(&NodeRole::Aiot))
        {
            let edges: Vec<String> = nodes
                .iter()
                .filter(|e| {
                    e.node.site == ai.node.site
                        && e.node.roles.contains(&NodeRole::Edge)
                        && e.healthy
                        && !e.node.drained
                })
                .filter_map(|e| {
                    let ip = e.addresses.first()?;
                    Some(format!(
                        "http://{}",
                        std::net::SocketAddr::new(*ip, e.node.ports.http)
                    ))
                })
                .collect();
            if !edges.is_empty() {
                relays.push(lingjing_model::aiot::NodeRelays {
                    node: ai.node.id.clone(),
                    edges,
                    source: ai.addresses.first().copied(),
                });
            }
        }
    }
    let targets = crate::store::aiot::targets(&mut *conn).await?;
    let mut wanted: Vec<(String, u32)> = targets
        .iter()
        .filter(|t| t.version > 0)
        .map(|t| (t.slot.clone(), t.version))
        .collect();
    wanted.sort();
    wanted.dedup();
    let mut versions = Vec::with_capacity(wanted.len());
    for (model, v) in wanted {
        match crate::store::models::get(&mut *conn, &model, v).await? {
            Some(record) => versions.push(record.version),
            None => {
                return Err(StoreError::Corrupt(format!(
                    "an edge AI target names {model} version {v}, which is not registered"
                )));
            }
        }
    }
    let devices = crate::store::inspect::patrol_devices(&mut *conn).await?;
    let monitor = monitor_config(&mut *conn).await?;
    Ok(Snapshot {
        version,
        role: Role::Aiot,
        generated_at: crate::time::now_rfc3339(),
        body: lingjing_model::aiot::AiotSnapshot {
            targets,
            versions,
            artifact_sources: Vec::new(),
            relay_host: ctx.relay.as_ref().map(|_| relay_host(&ctx.zone)),
            relays,
            devices,
            monitor,
        },
    })
}

/// IDC monitoring's part of the `aiot` snapshot: each site's first edge AI node (by id)
/// watches it; power sensors get their cabinet's contract; silences not over; the
/// acknowledgements of alerts firing.
async fn monitor_config(
    conn: &mut AnyConnection,
) -> Result<lingjing_model::monitor::MonitorConfig, StoreError> {
    use lingjing_model::monitor::{
        MonitorConfig, Receiver, Sensor, SensorKind, Silence, SiteMonitor,
    };
    let mut monitors: Vec<SiteMonitor> = Vec::new();
    let mut nodes = list_docs::<lingjing_model::Node>(&mut *conn).await?;
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    for n in nodes.iter().filter(|n| n.roles.contains(&NodeRole::Aiot)) {
        if !monitors.iter().any(|m| m.site == n.site) {
            monitors.push(SiteMonitor {
                site: n.site.clone(),
                node: n.id.clone(),
            });
        }
    }
    let cabinets = list_docs::<lingjing_model::colocation::Cabinet>(&mut *conn).await?;
    let mut sensors = list_docs::<Sensor>(&mut *conn).await?;
    for s in sensors.iter_mut().filter(|s| s.kind == SensorKind::Power) {
        if s.contract_watts.is_none() {
            s.contract_watts = s
                .cabinet
                .as_ref()
                .and_then(|c| cabinets.iter().find(|x| &x.id == c))
                .map(|c| c.contracted_watts);
        }
    }
    let now = crate::time::now_ms();
    let silences = list_docs::<Silence>(&mut *conn)
        .await?
        .into_iter()
        .filter(|s| s.ends_ms > now)
        .collect();
    Ok(MonitorConfig {
        monitors,
        sensors,
        receivers: list_docs::<Receiver>(&mut *conn).await?,
        silences,
        acks: crate::store::monitor::acks(&mut *conn).await?,
        escalate_after_s: 900,
    })
}

/// Builds the storage (`role` Storage) or S3 gateway (`role` S3) snapshot from one
/// consistent read: only the gateways' snapshot carries the tenants' S3 keys.
pub async fn build_storage(
    conn: &mut AnyConnection,
    role: Role,
    policy: StoragePolicy,
) -> Result<Snapshot<StorageSnapshot>, StoreError> {
    let version = config_version(conn).await?;
    let cluster_token = crate::store::storage::cluster_token(&mut *conn)
        .await?
        .ok_or_else(|| {
            StoreError::Corrupt("no storage cluster token: restart the control plane".into())
        })?;
    let nodes = node_infos(&mut *conn)
        .await?
        .into_iter()
        .filter(|n| n.node.roles.contains(&NodeRole::Storage))
        .collect();
    let layout = crate::store::storage::layout(&mut *conn).await?;
    let s3_keys = if role == Role::S3 {
        let mut keys = crate::store::storage::all_s3_credentials(&mut *conn).await?;
        let services = list_docs::<Service>(conn).await?;
        keys.extend(crate::bucket_origins::gateway_credentials(
            &cluster_token,
            &services,
        ));
        keys
    } else {
        Vec::new()
    };
    Ok(Snapshot {
        version,
        role,
        generated_at: crate::time::now_rfc3339(),
        body: StorageSnapshot {
            cluster_token,
            policy,
            nodes,
            s3_keys,
            layout,
        },
    })
}
