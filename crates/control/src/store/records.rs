//! Questions about the `dns_records` table beyond its documents (see `docs`): which static
//! records hold a name.

use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// A static record stored under the owner name `name`, if any: its id.
pub async fn record_named(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT id FROM dns_records WHERE name = $1")
        .bind(name.to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// The static records under the owner name `name` other than `except`: (id, type).
pub async fn other_records_named(
    conn: &mut AnyConnection,
    name: &str,
    except: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let rows = sqlx::query("SELECT id, rtype FROM dns_records WHERE name = $1 AND id <> $2")
        .bind(name.to_owned())
        .bind(except.to_owned())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
