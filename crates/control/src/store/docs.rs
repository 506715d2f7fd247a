//! Resources stored as JSON documents: generic insert, update, get, list and delete over
//! any [`Resource`], with its reference columns written beside the body.

use sqlx::{AnyConnection, Row};

use crate::error::StoreError;
use crate::resource::Resource;
use crate::time::now_rfc3339;

fn decode<R: Resource>(body: &str) -> Result<R, StoreError> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Corrupt(format!("{} document: {e}", R::KIND)))
}

fn encode<R: Resource>(item: &R) -> Result<String, StoreError> {
    serde_json::to_string(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub async fn get_doc<R: Resource>(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Option<R>, StoreError> {
    let sql = format!("SELECT body FROM {} WHERE id = $1", R::TABLE);
    let row = sqlx::query(&sql).bind(id).fetch_optional(conn).await?;
    match row {
        Some(r) => Ok(Some(decode(&r.try_get::<String, _>(0)?)?)),
        None => Ok(None),
    }
}

/// All documents of a kind, ordered by id.
pub async fn list_docs<R: Resource>(conn: &mut AnyConnection) -> Result<Vec<R>, StoreError> {
    let sql = format!("SELECT body FROM {} ORDER BY id", R::TABLE);
    let rows = sqlx::query(&sql).fetch_all(conn).await?;
    rows.iter()
        .map(|r| decode(&r.try_get::<String, _>(0)?))
        .collect()
}

pub async fn insert_doc<R: Resource>(conn: &mut AnyConnection, item: &R) -> Result<(), StoreError> {
    let columns = item.columns();
    let mut names = vec!["id", "body", "created_at", "updated_at"];
    names.extend(columns.iter().map(|(c, _)| *c));
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        R::TABLE,
        names.join(", "),
        placeholders.join(", ")
    );
    let now = now_rfc3339();
    let mut q = sqlx::query(&sql)
        .bind(item.id().to_owned())
        .bind(encode(item)?)
        .bind(now.clone())
        .bind(now);
    for (_, value) in columns {
        q = q.bind(value);
    }
    q.execute(conn).await?;
    Ok(())
}

/// Replaces a document; false when there was none with that id.
pub async fn update_doc<R: Resource>(
    conn: &mut AnyConnection,
    item: &R,
) -> Result<bool, StoreError> {
    let columns = item.columns();
    let mut sets = vec!["body = $1".to_owned(), "updated_at = $2".to_owned()];
    for (i, (c, _)) in columns.iter().enumerate() {
        sets.push(format!("{c} = ${}", i + 3));
    }
    let sql = format!(
        "UPDATE {} SET {} WHERE id = ${}",
        R::TABLE,
        sets.join(", "),
        columns.len() + 3
    );
    let mut q = sqlx::query(&sql).bind(encode(item)?).bind(now_rfc3339());
    for (_, value) in columns {
        q = q.bind(value);
    }
    let done = q.bind(item.id().to_owned()).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a document; false when there was none with that id.
pub async fn delete_doc<R: Resource>(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<bool, StoreError> {
    let sql = format!("DELETE FROM {} WHERE id = $1", R::TABLE);
    let done = sqlx::query(&sql).bind(id).execute(conn).await?;
    Ok(done.rows_affected() > 0)
}

/// Whether `table` has a row with this id (a reference check, by table name).
pub async fn row_exists(
    conn: &mut AnyConnection,
    table: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let sql = format!("SELECT 1 FROM {table} WHERE id = $1");
    let found = sqlx::query(&sql)
        .bind(id.to_owned())
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}
