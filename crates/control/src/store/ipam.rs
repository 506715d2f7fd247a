//! IP address allocations (`ip_allocations`): which node holds which address of which
//! pool. The primary key (pool, address) backs the API's check that no address is handed
//! out twice.

use std::collections::BTreeMap;
use std::net::IpAddr;

use lingjing_model::Allocation;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// Addresses allocated to each node, by node id (each node's sorted).
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

/// The allocations of `pool`, ordered by address.
pub async fn allocations(
    conn: &mut AnyConnection,
    pool: &str,
) -> Result<Vec<Allocation>, StoreError> {
    let rows =
        sqlx::query("SELECT address, node_id, allocated_at FROM ip_allocations WHERE pool_id = $1")
            .bind(pool.to_owned())
            .fetch_all(conn)
            .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let address: String = r.try_get(0)?;
        out.push(Allocation {
            pool: pool.to_owned(),
            address: address
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("stored address `{address}`")))?,
            node: r.try_get(1)?,
            allocated_at: r.try_get(2)?,
        });
    }
    out.sort_by_key(|a| a.address);
    Ok(out)
}

/// Stores a new allocation (a taken address fails on the primary key).
pub async fn insert_allocation(
    conn: &mut AnyConnection,
    allocation: &Allocation,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ip_allocations (pool_id, address, node_id, allocated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(allocation.pool.clone())
    .bind(allocation.address.to_string())
    .bind(allocation.node.clone())
    .bind(allocation.allocated_at.clone())
    .execute(conn)
    .await?;
    Ok(())
}

/// Releases `address` of `pool`; false when it was not allocated.
pub async fn delete_allocation(
    conn: &mut AnyConnection,
    pool: &str,
    address: IpAddr,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM ip_allocations WHERE pool_id = $1 AND address = $2")
        .bind(pool.to_owned())
        .bind(address.to_string())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// How many addresses each pool has allocated, by pool id (pools with none are absent).
pub async fn allocation_counts(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let rows = sqlx::query("SELECT pool_id, COUNT(*) FROM ip_allocations GROUP BY pool_id")
        .fetch_all(conn)
        .await?;
    let mut counts = BTreeMap::new();
    for r in rows {
        counts.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)? as u64);
    }
    Ok(counts)
}

/// How many addresses `pool` has allocated.
pub async fn allocation_count(conn: &mut AnyConnection, pool: &str) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM ip_allocations WHERE pool_id = $1")
        .bind(pool.to_owned())
        .fetch_one(conn)
        .await?;
    Ok(row.try_get(0)?)
}

/// The addresses allocated from `pool`, as stored (unparsed).
pub async fn pool_addresses(
    conn: &mut AnyConnection,
    pool: &str,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query("SELECT address FROM ip_allocations WHERE pool_id = $1")
        .bind(pool.to_owned())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
        .collect()
}

/// An address `node` holds from a pool of a site other than `site`: (address, pool).
pub async fn node_allocation_elsewhere(
    conn: &mut AnyConnection,
    node: &str,
    site: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT a.address, p.id FROM ip_allocations a JOIN ip_pools p ON p.id = a.pool_id \
         WHERE a.node_id = $1 AND p.site_id <> $2 LIMIT 1",
    )
    .bind(node.to_owned())
    .bind(site.to_owned())
    .fetch_optional(conn)
    .await?;
    pair(row)
}

/// An address of `pool` held by a node not at `site`: (address, node).
pub async fn pool_allocation_elsewhere(
    conn: &mut AnyConnection,
    pool: &str,
    site: &str,
) -> Result<Option<(String, String)>, StoreError> {
    let row = sqlx::query(
        "SELECT a.address, n.id FROM ip_allocations a JOIN nodes n ON n.id = a.node_id \
         WHERE a.pool_id = $1 AND n.site_id <> $2 LIMIT 1",
    )
    .bind(pool.to_owned())
    .bind(site.to_owned())
    .fetch_optional(conn)
    .await?;
    pair(row)
}

fn pair(row: Option<sqlx::any::AnyRow>) -> Result<Option<(String, String)>, StoreError> {
    Ok(match row {
        Some(r) => Some((r.try_get(0)?, r.try_get(1)?)),
        None => None,
    })
}
