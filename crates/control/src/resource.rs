//! The resources of the REST API: how each model type is stored (table, reference
//! columns), what it refers to, what must hold before it is written or deleted, and the
//! view the API returns for it. Generic handlers in `api::crud` serve them all.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;

use lingjing_model::record::{APEX, RecordType};
use lingjing_model::snapshot::NodeStatus;
use lingjing_model::{DnsRecord, IpPool, Line, Node, Region, Service, Site, Tenant, Validate};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::{ApiError, StoreError};
use crate::store::{self, list_docs};

/// A reference from one resource to another, by id.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The referring field, e.g. `region` or `steering.sites[0]`.
    pub field: String,
    /// The kind referred to, e.g. `region`.
    pub kind: &'static str,
    /// Its table.
    pub table: &'static str,
    pub id: String,
}

/// What the API needs to build views.
#[derive(Debug, Clone)]
pub struct ViewContext {
    /// The platform DNS zone, e.g. `cdn.lingjing.test.`.
    pub zone: String,
    /// The operator's trust settings (allowed origin networks, reserved labels, ...).
    pub policy: crate::policy::TrustPolicy,
    /// Where this control plane's API listens: never a tenant's origin.
    pub control_endpoint: Option<std::net::SocketAddr>,
}

/// A resource kind of the REST API.
pub trait Resource:
    Serialize + DeserializeOwned + Validate + ToSchema + Clone + Send + Sync + Unpin + 'static
{
    /// Singular name, e.g. `site`.
    const KIND: &'static str;
    /// Path segment and table, e.g. `sites`.
    const PLURAL: &'static str;
    const TABLE: &'static str;
    /// Whether tenants (not only the operator) may manage their own resources of this kind.
    const TENANT_SCOPED: bool = false;

    /// What the API returns for one resource.
    type View: Serialize + ToSchema + Send + 'static;

    fn id(&self) -> &str;

    /// The owning tenant, for tenant-scoped kinds.
    fn tenant(&self) -> Option<&str> {
        None
    }

    /// Columns stored beside the JSON body (constrained by foreign keys).
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        Vec::new()
    }

    /// Other resources this one refers to; each must exist when it is written.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }

    /// Checks that need the database, inside the write transaction, after the row is
    /// written (e.g. cycles, hostname ownership).
    fn after_write(
        &self,
        _conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// Checks only a new resource must pass (quotas, reserved ids), inside the write
    /// transaction after `after_write`.
    fn after_create(
        &self,
        _conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// On replace, before validation: carry over write-only secrets the caller left out
    /// (reads never return them).
    fn keep_secrets(&mut self, _existing: &Self) {}

    /// Checks before a delete, inside the write transaction.
    fn before_delete(
        _conn: &mut AnyConnection,
        _id: &str,
    ) -> impl Future<Output = Result<(), ApiError>> + Send {
        async { Ok(()) }
    }

    /// Builds the views of `items`.
    fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        ctx: &ViewContext,
    ) -> impl Future<Output = Result<Vec<Self::View>, StoreError>> + Send;
}

fn reference<R: Resource>(field: impl Into<String>, id: &str) -> Reference {
    Reference {
        field: field.into(),
        kind: R::KIND,
        table: R::TABLE,
        id: id.to_owned(),
    }
}

/// Which resource, if any, refers to `kind` `id`: the answer to "can it be deleted?".
pub async fn referrer_of(
    conn: &mut AnyConnection,
    table: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    async fn scan<R: Resource>(
        conn: &mut AnyConnection,
        table: &str,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        for item in list_docs::<R>(conn).await? {
            if let Some(r) = item
                .references()
                .into_iter()
                .find(|r| r.table == table && r.id == id)
            {
                return Ok(Some(format!("{} `{}` ({})", R::KIND, item.id(), r.field)));
            }
        }
        Ok(None)
    }
    let found = match scan::<Region>(conn, table, id).await? {
        Some(f) => Some(f),
        None => match scan::<Site>(conn, table, id).await? {
            Some(f) => Some(f),
            None => match scan::<Node>(conn, table, id).await? {
                Some(f) => Some(f),
                None => match scan::<IpPool>(conn, table, id).await? {
                    Some(f) => Some(f),
                    None => scan::<Service>(conn, table, id).await?,
                },
            },
        },
    };
    if found.is_some() || table != "regions" {
        return Ok(found);
    }
    let row = sqlx::query("SELECT line_id, cidr FROM line_prefixes WHERE region_id = $1 LIMIT 1")
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => Some(format!(
            "line `{}` (prefix {})",
            r.try_get::<String, _>(0)?,
            r.try_get::<String, _>(1)?
        )),
        None => None,
    })
}

impl Resource for Region {
    const KIND: &'static str = "region";
    const PLURAL: &'static str = "regions";
    const TABLE: &'static str = "regions";
    type View = Region;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("parent_id", self.parent.clone())]
    }
    fn references(&self) -> Vec<Reference> {
        self.parent
            .iter()
            .map(|p| reference::<Region>("parent", p))
            .collect()
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let regions: BTreeMap<String, Region> = list_docs::<Region>(conn)
            .await?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mut seen = BTreeSet::new();
        let mut at = self.parent.clone();
        while let Some(id) = at {
            if id == self.id || !seen.insert(id.clone()) {
                return Err(ApiError::invalid(
                    "parent",
                    format!(
                        "`{}` would make the region tree a cycle",
                        self.parent.as_deref().unwrap_or("")
                    ),
                ));
            }
            let Some(region) = regions.get(&id) else {
                break;
            };
            if region.level >= self.level {
                return Err(ApiError::invalid(
                    "level",
                    format!(
                        "a {:?} region cannot be inside `{}`, a {:?} region",
                        self.level, region.id, region.level
                    )
                    .to_lowercase(),
                ));
            }
            at = region.parent.clone();
            // only the direct parent's level matters for ordering; keep walking for cycles
            seen.insert(region.id.clone());
        }
        // A new level must still be larger than the regions inside this one.
        if let Some(child) = regions
            .values()
            .find(|r| r.parent.as_deref() == Some(self.id.as_str()) && r.level <= self.level)
        {
            return Err(ApiError::invalid(
                "level",
                format!(
                    "`{}` inside it is a {:?} region: a {:?} region cannot contain it",
                    child.id, child.level, self.level
                )
                .to_lowercase(),
            ));
        }
        Ok(())
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items)
    }
}

/// A line with the number of prefixes it holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineView {
    #[serde(flatten)]
    pub line: Line,
    pub prefix_count: u64,
}

impl Resource for Line {
    const KIND: &'static str = "line";
    const PLURAL: &'static str = "lines";
    const TABLE: &'static str = "lines";
    type View = LineView;

    fn id(&self) -> &str {
        &self.id
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let rows = sqlx::query("SELECT line_id, COUNT(*) FROM line_prefixes GROUP BY line_id")
            .fetch_all(conn)
            .await?;
        let mut counts = BTreeMap::new();
        for r in rows {
            counts.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64);
        }
        Ok(items
            .into_iter()
            .map(|line| LineView {
                prefix_count: counts.get(&line.id).copied().unwrap_or(0),
                line,
            })
            .collect())
    }
}

impl Resource for Site {
    const KIND: &'static str = "site";
    const PLURAL: &'static str = "sites";
    const TABLE: &'static str = "sites";
    type View = Site;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("region_id", Some(self.region.clone())),
            ("parent_id", self.parent.clone()),
        ]
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs = vec![reference::<Region>("region", &self.region)];
        refs.extend(
            self.lines
                .iter()
                .enumerate()
                .map(|(i, l)| reference::<Line>(format!("lines[{i}]"), l)),
        );
        refs.extend(self.parent.iter().map(|p| reference::<Site>("parent", p)));
        refs
    }
    /// Caches fill from their parent site: the chain of parents must end.
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let parents: BTreeMap<String, Option<String>> = list_docs::<Site>(conn)
            .await?
            .into_iter()
            .map(|s| (s.id, s.parent))
            .collect();
        let mut seen = BTreeSet::new();
        let mut at = self.parent.clone();
        while let Some(id) = at {
            if id == self.id || !seen.insert(id.clone()) {
                return Err(ApiError::invalid(
                    "parent",
                    format!("`{id}` would make the chain of parent sites a loop"),
                ));
            }
            at = parents.get(&id).cloned().flatten();
        }
        Ok(())
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items)
    }
}

/// A node with its allocated addresses and its liveness.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    /// Addresses allocated to the node from IP pools.
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<IpAddr>,
    pub status: NodeStatus,
}

/// Addresses allocated to each node, by node id.
pub async fn node_addresses(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<String, Vec<IpAddr>>, StoreError> {
    let rows = sqlx::query("SELECT node_id, address FROM ip_allocations ORDER BY pool_id, address")
        .fetch_all(conn)
        .await?;
    let mut out: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for r in rows {
        let node: String = r.try_get(0)?;
        let addr: String = r.try_get(1)?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("allocation address `{addr}`")))?;
        out.entry(node).or_default().push(addr);
    }
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}

impl Resource for Node {
    const KIND: &'static str = "node";
    const PLURAL: &'static str = "nodes";
    const TABLE: &'static str = "nodes";
    type View = NodeView;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("site_id", Some(self.site.clone()))]
    }
    fn references(&self) -> Vec<Reference> {
        vec![reference::<Site>("site", &self.site)]
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let elsewhere = sqlx::query(
            "SELECT a.address, p.id FROM ip_allocations a JOIN ip_pools p ON p.id = a.pool_id \
             WHERE a.node_id = $1 AND p.site_id <> $2 LIMIT 1",
        )
        .bind(self.id.clone())
        .bind(self.site.clone())
        .fetch_optional(conn)
        .await?;
        if let Some(r) = elsewhere {
            return Err(ApiError::Conflict {
                code: "in_use",
                message: format!(
                    "node `{}` holds {} from pool `{}` of its old site; release it before moving the node (lingjing pool release)",
                    self.id,
                    r.try_get::<String, _>(0)?,
                    r.try_get::<String, _>(1)?
                ),
                field: Some("site".into()),
            });
        }
        Ok(())
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let mut addresses = node_addresses(conn).await?;
        let mut statuses = store::node_statuses(conn).await?;
        Ok(items
            .into_iter()
            .map(|node| NodeView {
                addresses: addresses.remove(&node.id).unwrap_or_default(),
                status: statuses.remove(&node.id).unwrap_or_default(),
                node,
            })
            .collect())
    }
}

/// A pool with how much of it is used.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PoolView {
    #[serde(flatten)]
    pub pool: IpPool,
    pub allocated: u64,
    pub capacity: u64,
}

impl Resource for IpPool {
    const KIND: &'static str = "pool";
    const PLURAL: &'static str = "pools";
    const TABLE: &'static str = "ip_pools";
    type View = PoolView;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("site_id", Some(self.site.clone())),
            ("line_id", self.line.clone()),
        ]
    }
    fn references(&self) -> Vec<Reference> {
        let mut refs = vec![reference::<Site>("site", &self.site)];
        refs.extend(self.line.iter().map(|l| reference::<Line>("line", l)));
        refs
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        // An address in two pools could be handed to two nodes.
        for other in list_docs::<IpPool>(&mut *conn).await? {
            let overlap = other.cidr.contains(&self.cidr.network())
                || self.cidr.contains(&other.cidr.network());
            if other.id != self.id && overlap {
                return Err(ApiError::Conflict {
                    code: "pool_overlap",
                    message: format!(
                        "{} overlaps pool `{}` ({}): pools must not share addresses",
                        self.cidr, other.id, other.cidr
                    ),
                    field: Some("cidr".into()),
                });
            }
        }
        let moved = sqlx::query(
            "SELECT a.address, n.id FROM ip_allocations a JOIN nodes n ON n.id = a.node_id \
             WHERE a.pool_id = $1 AND n.site_id <> $2 LIMIT 1",
        )
        .bind(self.id.clone())
        .bind(self.site.clone())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = moved {
            return Err(ApiError::Conflict {
                code: "in_use",
                message: format!(
                    "{} of pool `{}` is allocated to node `{}`, which is not at site `{}`; release it first",
                    r.try_get::<String, _>(0)?,
                    self.id,
                    r.try_get::<String, _>(1)?,
                    self.site
                ),
                field: Some("site".into()),
            });
        }
        let rows = sqlx::query("SELECT address FROM ip_allocations WHERE pool_id = $1")
            .bind(self.id.clone())
            .fetch_all(conn)
            .await?;
        for r in rows {
            let addr: String = r.try_get(0)?;
            let ok = addr
                .parse()
                .is_ok_and(|a| lingjing_model::ipam::is_assignable(self, a));
            if !ok {
                return Err(ApiError::conflict(
                    "in_use",
                    format!(
                        "{addr} is allocated from pool `{}` and would fall outside it; release it first",
                        self.id
                    ),
                ));
            }
        }
        Ok(())
    }
    async fn before_delete(conn: &mut AnyConnection, id: &str) -> Result<(), ApiError> {
        let row = sqlx::query("SELECT COUNT(*) FROM ip_allocations WHERE pool_id = $1")
            .bind(id)
            .fetch_one(conn)
            .await?;
        let n: i64 = row.try_get(0)?;
        if n > 0 {
            return Err(ApiError::conflict(
                "in_use",
                format!(
                    "pool `{id}` still has {n} allocated addresses; release them first (lingjing pool release)"
                ),
            ));
        }
        Ok(())
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let rows = sqlx::query("SELECT pool_id, COUNT(*) FROM ip_allocations GROUP BY pool_id")
            .fetch_all(conn)
            .await?;
        let mut counts = BTreeMap::new();
        for r in rows {
            counts.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64);
        }
        Ok(items
            .into_iter()
            .map(|pool| PoolView {
                allocated: counts.get(&pool.id).copied().unwrap_or(0),
                capacity: lingjing_model::ipam::capacity(&pool),
                pool,
            })
            .collect())
    }
}

impl Resource for Tenant {
    const KIND: &'static str = "tenant";
    const PLURAL: &'static str = "tenants";
    const TABLE: &'static str = "tenants";
    type View = Tenant;

    fn id(&self) -> &str {
        &self.id
    }
    fn tenant(&self) -> Option<&str> {
        Some(&self.id)
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items)
    }
}

/// Refuses a service beyond its tenant's `quotas.services` (the row is already written,
/// so the count includes it; the transaction is rolled back).
async fn check_service_quota(conn: &mut AnyConnection, tenant: &str) -> Result<(), ApiError> {
    let quota = crate::store::get_doc::<Tenant>(&mut *conn, tenant)
        .await?
        .map(|t| t.quotas.services)
        .unwrap_or_default();
    let count: i64 = sqlx::query("SELECT COUNT(*) FROM services WHERE tenant_id = $1")
        .bind(tenant.to_owned())
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    if count > i64::from(quota) {
        return Err(ApiError::QuotaExceeded(format!(
            "tenant `{tenant}` may have {quota} services (`quotas.services`, set by the operator): remove one or ask the operator to raise it"
        )));
    }
    Ok(())
}

/// A service with its CNAME target in the platform zone.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServiceView {
    #[serde(flatten)]
    pub service: Service,
    /// Point the tenant's hostnames here (a CNAME), e.g. `demo.cdn.lingjing.test.`.
    pub cname: String,
    /// Each hostname's domain-control state; only `verified` names are served.
    pub hostname_status: Vec<crate::hostnames::HostnameStatus>,
}

impl Resource for Service {
    const KIND: &'static str = "service";
    const PLURAL: &'static str = "services";
    const TABLE: &'static str = "services";
    const TENANT_SCOPED: bool = true;
    type View = ServiceView;

    fn id(&self) -> &str {
        &self.id
    }
    fn tenant(&self) -> Option<&str> {
        Some(&self.tenant)
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("tenant_id", Some(self.tenant.clone()))]
    }
    async fn after_create(
        &self,
        conn: &mut AnyConnection,
        ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        crate::hostnames::check_service_id(&self.id, ctx)?;
        let record = sqlx::query("SELECT id FROM dns_records WHERE name = $1")
            .bind(self.id.to_ascii_lowercase())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(r) = record {
            let record: String = r.try_get(0)?;
            return Err(ApiError::Conflict {
                code: "name_taken",
                message: format!(
                    "the DNS name `{}` is held by static record `{record}`; remove it or choose another service id",
                    self.id
                ),
                field: Some("id".into()),
            });
        }
        check_service_quota(conn, &self.tenant).await
    }
    fn keep_secrets(&mut self, existing: &Self) {
        if let (Some(new), Some(old)) = (&mut self.tls, &existing.tls)
            && new.key_pem.is_empty()
            && new.cert_pem == old.cert_pem
        {
            new.key_pem = old.key_pem.clone();
        }
    }
    fn references(&self) -> Vec<Reference> {
        let s = &self.steering;
        let mut refs = vec![reference::<Tenant>("tenant", &self.tenant)];
        refs.extend(
            s.sites
                .iter()
                .enumerate()
                .map(|(i, x)| reference::<Site>(format!("steering.sites[{i}]"), x)),
        );
        refs.extend(
            s.fallback_sites
                .iter()
                .enumerate()
                .map(|(i, x)| reference::<Site>(format!("steering.fallback_sites[{i}]"), x)),
        );
        refs.extend(
            s.fallback_lines
                .iter()
                .enumerate()
                .map(|(i, x)| reference::<Line>(format!("steering.fallback_lines[{i}]"), x)),
        );
        refs.extend(
            s.site_weights
                .keys()
                .map(|x| reference::<Site>(format!("steering.site_weights.{x}"), x)),
        );
        refs
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        for (i, host) in self.hostnames.iter().enumerate() {
            crate::hostnames::check_name(&format!("hostnames[{i}]"), host, ctx)?;
        }
        crate::origins::check_service(conn, self, ctx).await?;
        crate::hostnames::check_ownership(conn, self, ctx).await?;
        crate::hostnames::sync(conn, self).await?;
        Ok(())
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let mut states = crate::hostnames::statuses(conn, &items).await?;
        Ok(items
            .into_iter()
            .map(|mut service| {
                // Private keys are write-only: never returned.
                if let Some(tls) = &mut service.tls {
                    tls.key_pem = String::new();
                }
                ServiceView {
                    cname: format!("{}.{}", service.id, ctx.zone),
                    hostname_status: states.remove(&service.id).unwrap_or_default(),
                    service,
                }
            })
            .collect())
    }
}

/// The owner name a record is stored under: its labels, lowercase, or `@`.
fn record_owner(r: &DnsRecord) -> String {
    let labels = r.owner_labels();
    if labels.is_empty() {
        APEX.to_owned()
    } else {
        labels.join(".")
    }
}

/// A static record with its full name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DnsRecordView {
    #[serde(flatten)]
    pub record: DnsRecord,
    /// The absolute name it answers for, e.g. `api.cdn.lingjing.test.`.
    pub fqdn: String,
}

impl Resource for DnsRecord {
    const KIND: &'static str = "record";
    const PLURAL: &'static str = "dns-records";
    const TABLE: &'static str = "dns_records";
    type View = DnsRecordView;

    fn id(&self) -> &str {
        &self.id
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("name", Some(record_owner(self))),
            ("rtype", Some(self.rtype.as_str().to_owned())),
        ]
    }
    async fn after_write(
        &self,
        conn: &mut AnyConnection,
        _ctx: &ViewContext,
    ) -> Result<(), ApiError> {
        let owner = record_owner(self);
        let service = sqlx::query("SELECT id FROM services WHERE id = $1")
            .bind(owner.clone())
            .fetch_optional(&mut *conn)
            .await?;
        if service.is_some() {
            return Err(ApiError::Conflict {
                code: "name_taken",
                message: format!(
                    "`{owner}` is the DNS name of service `{owner}`, steered by the GSLB; choose another name"
                ),
                field: Some("name".into()),
            });
        }
        let others = sqlx::query("SELECT id, rtype FROM dns_records WHERE name = $1 AND id <> $2")
            .bind(owner.clone())
            .bind(self.id.clone())
            .fetch_all(&mut *conn)
            .await?;
        for r in others {
            let id: String = r.try_get(0)?;
            let rtype: String = r.try_get(1)?;
            let message = if rtype == self.rtype.as_str() {
                format!("record `{id}` already holds `{owner}` {rtype}; add the values there")
            } else if rtype == RecordType::Cname.as_str() || self.rtype == RecordType::Cname {
                format!(
                    "`{owner}` has record `{id}` ({rtype}); a CNAME cannot share its name with other records (RFC 1034 §3.6.2)"
                )
            } else {
                continue;
            };
            return Err(ApiError::Conflict {
                code: "name_taken",
                message,
                field: Some("name".into()),
            });
        }
        Ok(())
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items
            .into_iter()
            .map(|record| {
                let owner = record_owner(&record);
                let fqdn = if owner == APEX {
                    ctx.zone.clone()
                } else {
                    format!("{owner}.{}", ctx.zone)
                };
                DnsRecordView { record, fqdn }
            })
            .collect())
    }
}
