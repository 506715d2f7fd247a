//! Tenants: a tenant key may read its own record.

use lingjing_model::Tenant;
use sqlx::AnyConnection;

use super::{Resource, ViewContext};
use crate::error::StoreError;

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
