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

/// The documents of `R` from `offset` on (at most `limit`), in id order, with how many
/// there are in all; only `tenant`'s when given (the `tenant_id` column of a
/// tenant-scoped kind), filtered in the database rather than after reading every row.
pub async fn page_docs<R: Resource>(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    offset: u64,
    limit: Option<u64>,
) -> Result<(Vec<R>, u64), StoreError> {
    let filter = if tenant.is_some() {
        " WHERE tenant_id = $1"
    } else {
        ""
    };
    // Both numbers are ours (parsed integers), not text from the caller. SQLite needs a
    // LIMIT before an OFFSET.
    let (limit, offset) = (
        limit.map(|n| n.min(i64::MAX as u64)),
        offset.min(i64::MAX as u64),
    );
    let window = match (limit, offset) {
        (None, 0) => String::new(),
        (limit, offset) => format!(
            " LIMIT {} OFFSET {offset}",
            limit.unwrap_or(i64::MAX as u64)
        ),
    };
    let sql = format!("SELECT body FROM {}{filter} ORDER BY id{window}", R::TABLE);
    let count_sql = format!("SELECT COUNT(*) FROM {}{filter}", R::TABLE);
    let (mut q, mut count) = (sqlx::query(&sql), sqlx::query(&count_sql));
    if let Some(t) = tenant {
        q = q.bind(t.to_owned());
        count = count.bind(t.to_owned());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let total: i64 = count.fetch_one(&mut *conn).await?.try_get(0)?;
    let items = rows
        .iter()
        .map(|r| decode(&r.try_get::<String, _>(0)?))
        .collect::<Result<Vec<R>, StoreError>>()?;
    Ok((items, u64::try_from(total).unwrap_or(0)))
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
