//! The operator's costs per site and its incident records (a site's uplinks down), kept
//! as documents with lookup columns.

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::StoreError;

/// One cost of a site, as the operator records it (`/v1/costs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteCost {
    pub id: String,
    pub site: String,
    /// `idc` or `edge`; absent: shared, split by the site's revenue.
    #[serde(default)]
    pub segment: Option<lingjing_billing::Segment>,
    pub description: String,
    /// The line (carrier) a bandwidth contract is with: priced by that line's traffic
    /// at the site (absent: all of the site's traffic).
    #[serde(default)]
    pub line: Option<String>,
    /// A flat monthly amount, or a bandwidth contract priced by the site's 95th
    /// percentile (`{"kind": "percentile95", "direction": "max", "price_per_mbps":
    /// "25", "commit_mbps": "100"}`).
    pub basis: lingjing_billing::CostBasis,
}

/// A recorded outage of a site's uplinks (what colocation tenants there lost).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Incident {
    pub id: String,
    pub site: String,
    /// Start and end (exclusive), RFC 3339.
    pub start: String,
    pub end: String,
    /// What happened.
    pub what: String,
}

fn json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse<T: for<'de> Deserialize<'de>>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub async fn put_cost(conn: &mut AnyConnection, cost: &SiteCost) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO site_costs (id, site_id, doc) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET site_id = excluded.site_id, doc = excluded.doc",
    )
    .bind(cost.id.clone())
    .bind(cost.site.clone())
    .bind(json(cost)?)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn costs(conn: &mut AnyConnection) -> Result<Vec<SiteCost>, StoreError> {
    sqlx::query("SELECT doc FROM site_costs ORDER BY site_id, id")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| parse(&r.try_get::<String, _>(0)?))
        .collect()
}

/// What [`delete`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    Cost,
    Incident,
}

impl Record {
    /// Its name in messages.
    pub fn kind(self) -> &'static str {
        match self {
            Record::Cost => "cost",
            Record::Incident => "incident",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Record::Cost => "site_costs",
            Record::Incident => "incidents",
        }
    }
}

/// Deletes `what` `id`; false when there was none.
pub async fn delete(conn: &mut AnyConnection, what: Record, id: &str) -> Result<bool, StoreError> {
    Ok(
        sqlx::query(&format!("DELETE FROM {} WHERE id = $1", what.table()))
            .bind(id.to_owned())
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1,
    )
}

/// Records `incident` (`[start_ms, end_ms)`); false when its id is taken.
pub async fn put_incident(
    conn: &mut AnyConnection,
    incident: &Incident,
    start_ms: i64,
    end_ms: i64,
) -> Result<bool, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO incidents (id, site_id, start_ms, end_ms, doc) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(incident.id.clone())
    .bind(incident.site.clone())
    .bind(start_ms)
    .bind(end_ms)
    .bind(json(incident)?)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1)
}

/// Incidents overlapping `[from_ms, to_ms)`: (incident, start_ms, end_ms), by start.
pub async fn incidents(
    conn: &mut AnyConnection,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(Incident, i64, i64)>, StoreError> {
    sqlx::query(
        "SELECT doc, start_ms, end_ms FROM incidents WHERE start_ms < $2 AND end_ms > $1 ORDER BY start_ms, id",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| Ok((parse(&r.try_get::<String, _>(0)?)?, r.try_get(1)?, r.try_get(2)?)))
    .collect()
}

/// One cross-connect's traffic in one 5-minute interval, as a collector measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossConnectSample {
    /// The interval's start, ms since the Unix epoch (a multiple of 300,000).
    pub start_ms: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Keeps `samples` of cross-connect `xc` of `cabinet` (held by `tenant`); a sample of an
/// interval already kept replaces its counts (a collector's correction) and stays with
/// the tenant that held the cross-connect when it was first taken.
pub async fn put_colo_samples(
    conn: &mut AnyConnection,
    cabinet: &str,
    xc: &str,
    tenant: &str,
    samples: &[CrossConnectSample],
) -> Result<(), StoreError> {
    for s in samples {
        sqlx::query(
            "INSERT INTO colo_samples (cabinet_id, cross_connect_id, tenant_id, start_ms, bytes_in, bytes_out) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (cabinet_id, cross_connect_id, start_ms) \
             DO UPDATE SET bytes_in = excluded.bytes_in, bytes_out = excluded.bytes_out",
        )
        .bind(cabinet.to_owned())
        .bind(xc.to_owned())
        .bind(tenant.to_owned())
        .bind(s.start_ms)
        .bind(i64::try_from(s.bytes_in).unwrap_or(i64::MAX))
        .bind(i64::try_from(s.bytes_out).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// `tenant`'s cross-connect traffic in `[from_ms, to_ms)`, summed per interval:
/// (start, bytes in, bytes out).
pub async fn colo_traffic(
    conn: &mut AnyConnection,
    tenant: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, u64, u64)>, StoreError> {
    sqlx::query(
        "SELECT start_ms, CAST(SUM(bytes_in) AS BIGINT), CAST(SUM(bytes_out) AS BIGINT) FROM colo_samples \
         WHERE tenant_id = $1 AND start_ms >= $2 AND start_ms < $3 GROUP BY start_ms ORDER BY start_ms",
    )
    .bind(tenant.to_owned())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        let n = |i: usize| -> Result<u64, StoreError> {
            Ok(u64::try_from(r.try_get::<i64, _>(i)?).unwrap_or(0))
        };
        Ok((r.try_get(0)?, n(1)?, n(2)?))
    })
    .collect()
}
