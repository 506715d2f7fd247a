//! Line prefix tables (`line_prefixes`): which CIDR belongs to which line (and, optionally,
//! region). Imports replace a line's prefixes wholesale, inserting in batches.

use std::collections::BTreeMap;

use lingjing_model::LinePrefix;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// Rows per `INSERT` when prefixes are stored (3 parameters each).
const BATCH: usize = 500;

/// All line prefixes, ordered by line and prefix.
pub async fn all_prefixes(conn: &mut AnyConnection) -> Result<Vec<LinePrefix>, StoreError> {
    let rows =
        sqlx::query("SELECT line_id, cidr, region_id FROM line_prefixes ORDER BY line_id, cidr")
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            let cidr: String = r.try_get(1)?;
            Ok(LinePrefix {
                line: r.try_get(0)?,
                cidr: cidr
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("line prefix `{cidr}`")))?,
                region: r.try_get(2)?,
            })
        })
        .collect()
}

/// How many prefixes each line holds, by line id (lines with none are absent).
pub async fn prefix_counts(conn: &mut AnyConnection) -> Result<BTreeMap<String, u64>, StoreError> {
    let rows = sqlx::query("SELECT line_id, COUNT(*) FROM line_prefixes GROUP BY line_id")
        .fetch_all(conn)
        .await?;
    let mut counts = BTreeMap::new();
    for r in rows {
        counts.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64);
    }
    Ok(counts)
}

/// A prefix assigned to `region`, if any: (line, cidr).
pub async fn prefix_in_region(
    conn: &mut AnyConnection,
    region: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query("SELECT line_id, cidr FROM line_prefixes WHERE region_id = $1 LIMIT 1")
        .bind(region)
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(r) => Some((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)),
        None => None,
    })
}

/// Deletes every prefix of `lines`, then inserts `prefixes` (already checked by the
/// caller), inside the caller's transaction.
pub async fn replace_prefixes(
    conn: &mut AnyConnection,
    lines: &[String],
    prefixes: &[LinePrefix],
) -> Result<(), StoreError> {
    for line in lines {
        sqlx::query("DELETE FROM line_prefixes WHERE line_id = $1")
            .bind(line.clone())
            .execute(&mut *conn)
            .await?;
    }
    for chunk in prefixes.chunks(BATCH) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO line_prefixes (line_id, cidr, region_id) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for p in chunk {
            q = q
                .bind(p.line.clone())
                .bind(p.cidr.to_string())
                .bind(p.region.clone());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
