//! Services: owned by a tenant (tenant keys manage their own), within its quota, with
//! hostnames whose ownership and domain control `crate::hostnames` checks, and origins
//! `crate::origins` checks; viewed with their CNAME target and hostname states, never
//! their TLS private key.

use lingjing_model::{Line, Service, Site, Tenant};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::{ApiError, StoreError};

/// Refuses a service beyond its tenant's `quotas.services` (the row is already written,
/// so the count includes it; the transaction is rolled back).
async fn check_service_quota(conn: &mut AnyConnection, tenant: &str) -> Result<(), ApiError> {
    let quota = crate::store::get_doc::<Tenant>(&mut *conn, tenant)
        .await?
        .map(|t| t.quotas.services)
        .unwrap_or_default();
    let count = crate::store::services::service_count(conn, tenant).await?;
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
    const SEARCH: Option<&'static str> = Some(
        "id IN (SELECT service_id FROM service_hostnames WHERE LOWER(hostname) LIKE {q} ESCAPE '\\')",
    );
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
        let record =
            crate::store::records::record_named(&mut *conn, &self.id.to_ascii_lowercase()).await?;
        if let Some(record) = record {
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
