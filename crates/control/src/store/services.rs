//! Questions about the `services` table beyond its documents (see `docs`): whether an id
//! is taken and how many services a tenant has.

use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// Whether a service with this id exists.
pub async fn service_exists(conn: &mut AnyConnection, id: &str) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT id FROM services WHERE id = $1")
        .bind(id.to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// How many services `tenant` has.
pub async fn service_count(conn: &mut AnyConnection, tenant: &str) -> Result<i64, StoreError> {
    Ok(
        sqlx::query("SELECT COUNT(*) FROM services WHERE tenant_id = $1")
            .bind(tenant.to_owned())
            .fetch_one(conn)
            .await?
            .try_get(0)?,
    )
}
