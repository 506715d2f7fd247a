//! Metering samples: intake of the edges' 5-minute totals (the largest total per node,
//! counter run, service and interval is kept, so repeats and late reports count once),
//! reads grouped by service, node, site or tenant in steps, the month's per-interval
//! sums billing rates, and retention (PostgreSQL: one partition per month, made ahead
//! and dropped whole once past the retention).

use std::collections::{BTreeMap, HashMap};

use lingjing_model::metering::{UsageCounts, UsageGroup};
use lingjing_model::snapshot::{MeterReport, MeterSample};
use lingjing_model::{IpPool, Service};
use sqlx::{AnyConnection, Row};

use super::Backend;
use crate::error::StoreError;

const COUNTS: [&str; 7] = [
    "requests",
    "hit_requests",
    "miss_requests",
    "bytes_out",
    "hit_bytes_out",
    "miss_bytes_out",
    "bytes_in",
];

fn db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn back(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The tenant a service's samples are billed to: the service's, or (a service deleted
/// since) the one its earlier samples recorded.
async fn tenant_of(conn: &mut AnyConnection, service: &str) -> Result<Option<String>, StoreError> {
    if let Some(s) = super::get_doc::<Service>(conn, service).await? {
        return Ok(Some(s.tenant));
    }
    let row = sqlx::query("SELECT tenant_id FROM meter_samples WHERE service_id = $1 LIMIT 1")
        .bind(service.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// The line of the pool `address` is from (a pool of `site` first), or `''`.
fn line_of(pools: &[IpPool], site: &str, address: std::net::IpAddr) -> String {
    let mut holding: Vec<&IpPool> = pools.iter().filter(|p| p.cidr.contains(&address)).collect();
    holding.sort_by_key(|p| (p.site != site, std::cmp::Reverse(p.cidr.prefix_len())));
    holding
        .first()
        .and_then(|p| p.line.clone())
        .unwrap_or_default()
}

/// Keeps node `node`'s (of site `site`) `report`: per sample, the larger of what is stored
/// and what is reported, field by field. Samples of services no one knows are skipped
/// (returned, for a warning).
pub async fn record(
    conn: &mut AnyConnection,
    node: &str,
    site: &str,
    report: &MeterReport,
) -> Result<Vec<String>, StoreError> {
    let mut tenants: HashMap<&str, Option<String>> = HashMap::new();
    let mut unknown = Vec::new();
    let larger = COUNTS
        .iter()
        .map(|c| {
            format!(
                "{c} = CASE WHEN excluded.{c} > meter_samples.{c} THEN excluded.{c} ELSE meter_samples.{c} END"
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO meter_samples (start_ms, node_id, epoch, service_id, tenant_id, site_id, address, line_id, {}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (start_ms, node_id, epoch, service_id, address) DO UPDATE SET {larger}",
        COUNTS.join(", ")
    );
    let mut lines: HashMap<Option<std::net::IpAddr>, String> = HashMap::new();
    let mut pools: Option<Vec<IpPool>> = None;
    for MeterSample { start_ms, usage } in &report.samples {
        let service = usage.service.as_str();
        if !tenants.contains_key(service) {
            let t = tenant_of(conn, service).await?;
            tenants.insert(service, t);
        }
        let Some(Some(tenant)) = tenants.get(service) else {
            if !unknown.iter().any(|u| u == service) {
                unknown.push(service.to_owned());
            }
            continue;
        };
        let line = match (lines.get(&usage.address), usage.address) {
            (Some(known), _) => known.clone(),
            (None, None) => String::new(),
            (None, Some(a)) => {
                if pools.is_none() {
                    pools = Some(super::list_docs::<IpPool>(conn).await?);
                }
                let line = line_of(pools.as_deref().unwrap_or_default(), site, a);
                lines.insert(usage.address, line.clone());
                line
            }
        };
        sqlx::query(&sql)
            .bind(db(*start_ms))
            .bind(node.to_owned())
            .bind(db(report.epoch))
            .bind(service.to_owned())
            .bind(tenant.clone())
            .bind(site.to_owned())
            .bind(usage.address.map(|a| a.to_string()).unwrap_or_default())
            .bind(line)
            .bind(db(usage.requests))
            .bind(db(usage.hit_requests))
            .bind(db(usage.miss_requests))
            .bind(db(usage.bytes_out))
            .bind(db(usage.hit_bytes_out))
            .bind(db(usage.miss_bytes_out))
            .bind(db(usage.bytes_in))
            .execute(&mut *conn)
            .await?;
    }
    Ok(unknown)
}

/// Which samples a read takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant: Option<String>,
    pub service: Option<String>,
    pub node: Option<String>,
    pub site: Option<String>,
    pub line: Option<String>,
}

/// Traffic in `[from_ms, to_ms)` matching `filter`, per `group` key and step of `step_ms`
/// (steps aligned to the Unix epoch, so hours and days are UTC ones): key -> step start
/// -> counts; at most `max_points` (key, step) points are read.
pub async fn series(
    conn: &mut AnyConnection,
    group: UsageGroup,
    step_ms: i64,
    from_ms: i64,
    to_ms: i64,
    filter: &Filter,
    max_points: usize,
) -> Result<BTreeMap<String, BTreeMap<i64, UsageCounts>>, StoreError> {
    let mut conditions = vec!["start_ms >= $1".to_owned(), "start_ms < $2".to_owned()];
    let mut binds: Vec<String> = Vec::new();
    for (column, value) in [
        ("tenant_id", &filter.tenant),
        ("service_id", &filter.service),
        ("node_id", &filter.node),
        ("site_id", &filter.site),
        ("line_id", &filter.line),
    ] {
        if let Some(v) = value {
            binds.push(v.clone());
            conditions.push(format!("{column} = ${}", binds.len() + 3));
        }
    }
    let sums = COUNTS
        .iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key = group.column();
    let sql = format!(
        "SELECT {key} AS k, (start_ms / $3) * $3 AS step, {sums} FROM meter_samples \
         WHERE {} GROUP BY k, step ORDER BY k, step LIMIT {}",
        conditions.join(" AND "),
        max_points
    );
    let mut q = sqlx::query(&sql)
        .bind(from_ms)
        .bind(to_ms)
        .bind(step_ms.max(1));
    for b in binds {
        q = q.bind(b);
    }
    let mut out: BTreeMap<String, BTreeMap<i64, UsageCounts>> = BTreeMap::new();
    for r in q.fetch_all(conn).await? {
        let counts = UsageCounts {
            requests: back(r.try_get("requests")?),
            hit_requests: back(r.try_get("hit_requests")?),
            miss_requests: back(r.try_get("miss_requests")?),
            bytes_out: back(r.try_get("bytes_out")?),
            hit_bytes_out: back(r.try_get("hit_bytes_out")?),
            miss_bytes_out: back(r.try_get("miss_bytes_out")?),
            bytes_in: back(r.try_get("bytes_in")?),
        };
        out.entry(r.try_get("k")?)
            .or_default()
            .insert(r.try_get("step")?, counts);
    }
    Ok(out)
}

/// The first day (ms) of each month from `from_ms`'s to `to_ms`'s, and the month after.
fn month_starts(from_ms: i64, to_ms: i64) -> Vec<(i64, String)> {
    use time::{Date, Month, OffsetDateTime, Time};
    let month_of = |ms: i64| {
        OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .map(|t| (t.year(), t.month()))
            .unwrap_or((1970, Month::January))
    };
    let (mut year, mut month) = month_of(from_ms);
    let (last_year, last_month) = month_of(to_ms);
    let mut out = Vec::new();
    loop {
        if let Ok(d) = Date::from_calendar_date(year, month, 1) {
            let ms = d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000;
            out.push((ms, format!("{year:04}_{:02}", month as u8)));
        }
        if (year, month) > (last_year, last_month) {
            break;
        }
        if month == Month::December {
            year += 1;
        }
        month = month.next();
    }
    out
}

/// Retention and partitions, in the caller's transaction (each partition is made in a
/// savepoint of it): on PostgreSQL, makes the partitions of the months from now
/// to two ahead (a partition whose range already has rows in the default one is left
/// to it) and drops those wholly older than `cutoff_ms`; on both, deletes the remaining
/// samples older than `cutoff_ms`. Returns the rows deleted and partitions dropped.
pub async fn maintain(
    conn: &mut AnyConnection,
    backend: Backend,
    now_ms: i64,
    cutoff_ms: i64,
) -> Result<(u64, u64), StoreError> {
    let mut dropped = 0;
    if backend == Backend::Postgres {
        let ahead = month_starts(now_ms, now_ms + 62 * 86_400_000);
        for pair in ahead.windows(2) {
            let ((from, name), (to, _)) = (&pair[0], &pair[1]);
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS meter_samples_{name} PARTITION OF meter_samples FOR VALUES FROM ({from}) TO ({to})"
            );
            // In a savepoint: a failure (rows of that month in the default partition
            // already, or another replica making it now) must not abort the rest.
            sqlx::query("SAVEPOINT meter_partition")
                .execute(&mut *conn)
                .await?;
            match sqlx::query(&sql).execute(&mut *conn).await {
                Ok(_) => {
                    sqlx::query("RELEASE SAVEPOINT meter_partition")
                        .execute(&mut *conn)
                        .await?;
                }
                Err(e) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT meter_partition")
                        .execute(&mut *conn)
                        .await?;
                    tracing::warn!(partition = %name, error = %e, "metering: a month's partition could not be made; its rows stay in the default partition");
                }
            }
        }
        let rows = sqlx::query(
            "SELECT CAST(c.relname AS TEXT) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'meter_samples'",
        )
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let name: String = r.try_get(0)?;
            let Some(month) = name.strip_prefix("meter_samples_") else {
                continue;
            };
            let Some((y, m)) = month.split_once('_') else {
                continue;
            };
            let (Ok(y), Ok(m)) = (y.parse::<i32>(), m.parse::<u8>()) else {
                continue;
            };
            // The partition ends where the next month starts.
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let Some(end) = time::Month::try_from(nm)
                .ok()
                .and_then(|nm| time::Date::from_calendar_date(ny, nm, 1).ok())
                .map(|d| {
                    d.with_time(time::Time::MIDNIGHT)
                        .assume_utc()
                        .unix_timestamp()
                        * 1000
                })
            else {
                continue;
            };
            if end <= cutoff_ms {
                sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                    .execute(&mut *conn)
                    .await?;
                dropped += 1;
            }
        }
    }
    let deleted = sqlx::query("DELETE FROM meter_samples WHERE start_ms < $1")
        .bind(cutoff_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok((deleted, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_starts_cover_the_range_and_the_month_after() {
        // 2026-11-15 to 2027-01-10.
        let got = month_starts(1_794_700_800_000, 1_799_539_200_000);
        let names: Vec<&str> = got.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["2026_11", "2026_12", "2027_01", "2027_02"]);
        assert_eq!(got[0].0, 1_793_491_200_000, "2026-11-01T00:00Z");
        assert_eq!(got[1].0, 1_796_083_200_000, "2026-12-01T00:00Z");
    }
}
