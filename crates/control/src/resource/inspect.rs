//! Road inspection's resources, both a tenant's own: patrol cameras (`devices`; their
//! credential is issued on its own, `POST /v1/devices/{id}/token`) and road crews
//! (`crews`, with the areas they work in).

use lingjing_model::Tenant;
use lingjing_model::inspect::{Crew, Device};
use serde::Serialize;
use sqlx::AnyConnection;
use utoipa::ToSchema;

use super::{Reference, Resource, ViewContext, reference};
use crate::error::StoreError;

/// A device as the API shows it: whether it has a credential yet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    /// False until `POST /v1/devices/{id}/token`: nodes refuse its frames until then.
    pub has_token: bool,
}

impl Resource for Device {
    const KIND: &'static str = "device";
    const PLURAL: &'static str = "devices";
    const TABLE: &'static str = "devices";
    const TENANT_SCOPED: bool = true;
    type View = DeviceView;

    fn id(&self) -> &str {
        &self.id
    }
    fn tenant(&self) -> Option<&str> {
        Some(&self.tenant)
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("tenant_id", Some(self.tenant.clone()))]
    }
    fn references(&self) -> Vec<Reference> {
        vec![reference::<Tenant>("tenant", &self.tenant)]
    }
    async fn views(
        conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        let with_tokens: std::collections::HashSet<String> =
            crate::store::inspect::patrol_devices(conn)
                .await?
                .into_iter()
                .filter(|d| d.token_sha256.is_some())
                .map(|d| d.id)
                .collect();
        Ok(items
            .into_iter()
            .map(|device| DeviceView {
                has_token: with_tokens.contains(&device.id),
                device,
            })
            .collect())
    }
}

impl Resource for Crew {
    const KIND: &'static str = "crew";
    const PLURAL: &'static str = "crews";
    const TABLE: &'static str = "crews";
    const TENANT_SCOPED: bool = true;
    type View = Crew;

    fn id(&self) -> &str {
        &self.id
    }
    fn tenant(&self) -> Option<&str> {
        Some(&self.tenant)
    }
    fn columns(&self) -> Vec<(&'static str, Option<String>)> {
        vec![("tenant_id", Some(self.tenant.clone()))]
    }
    fn references(&self) -> Vec<Reference> {
        vec![reference::<Tenant>("tenant", &self.tenant)]
    }
    async fn views(
        _conn: &mut AnyConnection,
        items: Vec<Self>,
        _ctx: &ViewContext,
    ) -> Result<Vec<Self::View>, StoreError> {
        Ok(items)
    }
}
