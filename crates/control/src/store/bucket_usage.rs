//! Object storage usage intake and reads: per-bucket traffic the S3 gateways report with
//! their heartbeats (summed per bucket, gateway and minute; counted once per report, as
//! `super::usage` does for services) and the samples of what each bucket holds (kept once
//! per bucket and sample time, however often received).

use std::collections::BTreeMap;

use lingjing_model::snapshot::{BucketStored, BucketTraffic, BucketUsage};
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

fn db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn back(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Adds gateway `node`'s `traffic` at `now_ms`'s minute (the caller has checked the
/// report is new).
pub async fn record_traffic(
    conn: &mut AnyConnection,
    node: &str,
    traffic: &[BucketTraffic],
    now_ms: i64,
) -> Result<(), StoreError> {
    let minute = now_ms - now_ms.rem_euclid(60_000);
    for t in traffic {
        sqlx::query(
            "INSERT INTO bucket_traffic_minutes (bucket, tenant_id, node_id, minute_ms, requests, bytes_in, bytes_out) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bucket, node_id, minute_ms) DO UPDATE SET \
             requests = bucket_traffic_minutes.requests + excluded.requests, \
             bytes_in = bucket_traffic_minutes.bytes_in + excluded.bytes_in, \
             bytes_out = bucket_traffic_minutes.bytes_out + excluded.bytes_out",
        )
        .bind(t.bucket.clone())
        .bind(t.tenant.clone())
        .bind(node.to_owned())
        .bind(minute)
        .bind(db(t.requests))
        .bind(db(t.bytes_in))
        .bind(db(t.bytes_out))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Keeps the `stored` samples (one per bucket and time: a repeat changes nothing).
pub async fn record_stored(
    conn: &mut AnyConnection,
    stored: &[BucketStored],
) -> Result<(), StoreError> {
    for s in stored {
        sqlx::query(
            "INSERT INTO bucket_stored (bucket, tenant_id, at_ms, objects, stored_bytes, raw_bytes, parity_bytes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bucket, at_ms) DO NOTHING",
        )
        .bind(s.bucket.clone())
        .bind(s.tenant.clone())
        .bind(db(s.at_ms))
        .bind(db(s.objects))
        .bind(db(s.stored_bytes))
        .bind(db(s.raw_bytes))
        .bind(db(s.parity_bytes))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Every bucket's usage in `[from_ms, to_ms)` (of `tenant` only, when given), by bucket.
pub async fn usage(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<BucketUsage>, StoreError> {
    let mut out: BTreeMap<String, BucketUsage> = BTreeMap::new();
    let entry = |out: &mut BTreeMap<String, BucketUsage>, bucket: String, tenant: String| {
        out.entry(bucket.clone())
            .or_insert_with(|| BucketUsage {
                bucket,
                tenant,
                requests: 0,
                bytes_in: 0,
                bytes_out: 0,
                stored: None,
                samples: 0,
                mean_stored_bytes: 0,
            })
            .clone()
    };
    let filter = if tenant.is_some() {
        " AND tenant_id = $3"
    } else {
        ""
    };
    let sql = format!(
        "SELECT bucket, MAX(tenant_id), CAST(SUM(requests) AS BIGINT), CAST(SUM(bytes_in) AS BIGINT), \
         CAST(SUM(bytes_out) AS BIGINT) FROM bucket_traffic_minutes \
         WHERE minute_ms >= $1 AND minute_ms < $2{filter} GROUP BY bucket"
    );
    let mut q = sqlx::query(&sql).bind(from_ms).bind(to_ms);
    if let Some(t) = tenant {
        q = q.bind(t.to_owned());
    }
    for r in q.fetch_all(&mut *conn).await? {
        let bucket: String = r.try_get(0)?;
        let mut u = entry(&mut out, bucket.clone(), r.try_get(1)?);
        u.requests = back(r.try_get(2)?);
        u.bytes_in = back(r.try_get(3)?);
        u.bytes_out = back(r.try_get(4)?);
        out.insert(bucket, u);
    }
    let sql = format!(
        "SELECT bucket, tenant_id, at_ms, objects, stored_bytes, raw_bytes, parity_bytes FROM bucket_stored \
         WHERE at_ms >= $1 AND at_ms < $2{filter} ORDER BY bucket, at_ms"
    );
    let mut q = sqlx::query(&sql).bind(from_ms).bind(to_ms);
    if let Some(t) = tenant {
        q = q.bind(t.to_owned());
    }
    let mut sums: BTreeMap<String, u128> = BTreeMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        let sample = BucketStored {
            bucket: r.try_get(0)?,
            tenant: r.try_get(1)?,
            at_ms: back(r.try_get(2)?),
            objects: back(r.try_get(3)?),
            stored_bytes: back(r.try_get(4)?),
            raw_bytes: back(r.try_get(5)?),
            parity_bytes: back(r.try_get(6)?),
        };
        let mut u = entry(&mut out, sample.bucket.clone(), sample.tenant.clone());
        u.samples += 1;
        *sums.entry(sample.bucket.clone()).or_default() += u128::from(sample.stored_bytes);
        let bucket = sample.bucket.clone();
        u.stored = Some(sample);
        out.insert(bucket, u);
    }
    for (bucket, sum) in sums {
        if let Some(u) = out.get_mut(&bucket)
            && u.samples > 0
        {
            u.mean_stored_bytes = u64::try_from(sum / u128::from(u.samples)).unwrap_or(u64::MAX);
        }
    }
    Ok(out.into_values().collect())
}
