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

/// Which documents of a kind a list reads, and in what order.
#[derive(Debug, Default, Clone, Copy)]
pub struct DocWindow<'a> {
    /// Only this tenant's (the `tenant_id` column of a tenant-scoped kind).
    pub tenant: Option<&'a str>,
    /// Only those whose id, tenant or the kind's searched text ([`Resource::SEARCH`])
    /// contains this, ignoring ASCII case.
    pub q: Option<&'a str>,
    /// By tenant, then id (a tenant-scoped kind); by id otherwise.
    pub by_tenant: bool,
    pub desc: bool,
    pub offset: u64,
    pub limit: Option<u64>,
}

/// `text` as a `LIKE ... ESCAPE '\'` pattern matching it anywhere, lower-cased.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The documents of `R` in `window` (sorted, filtered and cut in the database rather than
/// after reading every row), with how many match in all.
pub async fn page_docs<R: Resource>(
    conn: &mut AnyConnection,
    window: DocWindow<'_>,
) -> Result<(Vec<R>, u64), StoreError> {
    let mut conditions = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    if let Some(t) = window.tenant {
        binds.push(t.to_owned());
        conditions.push(format!("tenant_id = ${}", binds.len()));
    }
    if let Some(q) = window.q.filter(|q| !q.is_empty()) {
        binds.push(contains_pattern(q));
        let p = format!("${}", binds.len());
        let mut any = vec![format!("LOWER(id) LIKE {p} ESCAPE '\\'")];
        if R::TENANT_SCOPED {
            any.push(format!("LOWER(tenant_id) LIKE {p} ESCAPE '\\'"));
        }
        if let Some(search) = R::SEARCH {
            any.push(search.replace("{q}", &p));
        }
        conditions.push(format!("({})", any.join(" OR ")));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let dir = if window.desc { " DESC" } else { "" };
    let order = if window.by_tenant && R::TENANT_SCOPED {
        format!(" ORDER BY tenant_id{dir}, id{dir}")
    } else {
        format!(" ORDER BY id{dir}")
    };
    // Both numbers are ours (parsed integers), not text from the caller. SQLite needs a
    // LIMIT before an OFFSET.
    let (limit, offset) = (
        window.limit.map(|n| n.min(i64::MAX as u64)),
        window.offset.min(i64::MAX as u64),
    );
    let cut = match (limit, offset) {
        (None, 0) => String::new(),
        (limit, offset) => format!(
            " LIMIT {} OFFSET {offset}",
            limit.unwrap_or(i64::MAX as u64)
        ),
    };
    let sql = format!("SELECT body FROM {}{filter}{order}{cut}", R::TABLE);
    let count_sql = format!("SELECT COUNT(*) FROM {}{filter}", R::TABLE);
    let (mut q, mut count) = (sqlx::query(&sql), sqlx::query(&count_sql));
    for b in &binds {
        q = q.bind(b.clone());
        count = count.bind(b.clone());
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
