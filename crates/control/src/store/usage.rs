//! Usage intake: the traffic data planes report with their heartbeats, summed per service,
//! node and minute. A report carries a sequence number per node that grows (agents take
//! it from the clock); the last counted one, or one a little behind it, is ignored, so a
//! report resent after a lost answer is counted once; only the last report per node is
//! kept.

use lingjing_model::snapshot::{UsageMinute, UsageSample};
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// How far (in sequence numbers, which agents take from their clock in milliseconds) a
/// report may be behind the last one and still be taken for a late copy of a counted one.
const LATE_COPY_MS: i64 = 10 * 60 * 1000;

/// Adds `samples` (report `seq` of `node`) at `now_ms`'s minute; false if it was
/// already counted.
pub async fn record_usage(
    conn: &mut AnyConnection,
    node: &str,
    seq: u64,
    samples: &[UsageSample],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let seq = i64::try_from(seq).unwrap_or(i64::MAX);
    let last: Option<i64> = sqlx::query("SELECT MAX(seq) FROM usage_reports WHERE node_id = $1")
        .bind(node.to_owned())
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    // The last report again (resent after a lost answer), or a late copy of a recent
    // one: already counted. A much older sequence is an agent whose clock went back
    // (a new machine, an NTP step): counted, or its reports would be lost until the
    // clock caught up.
    if last.is_some_and(|last| seq == last || (seq < last && last - seq < LATE_COPY_MS)) {
        return Ok(false);
    }
    sqlx::query("DELETE FROM usage_reports WHERE node_id = $1")
        .bind(node.to_owned())
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO usage_reports (node_id, seq, received_ms) VALUES ($1, $2, $3)")
        .bind(node.to_owned())
        .bind(seq)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    let minute = now_ms - now_ms.rem_euclid(60_000);
    for s in samples {
        sqlx::query(
            "INSERT INTO usage_minutes (service_id, node_id, minute_ms, requests, bytes_out) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (service_id, node_id, minute_ms) DO UPDATE SET \
             requests = usage_minutes.requests + excluded.requests, bytes_out = usage_minutes.bytes_out + excluded.bytes_out",
        )
        .bind(s.service.clone())
        .bind(node.to_owned())
        .bind(minute)
        .bind(i64::try_from(s.requests).unwrap_or(i64::MAX))
        .bind(i64::try_from(s.bytes_out).unwrap_or(i64::MAX))
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// A service's traffic per minute in `[from_ms, to_ms)`, summed over nodes.
pub async fn service_usage(
    conn: &mut AnyConnection,
    service: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, UsageMinute)>, StoreError> {
    let rows = sqlx::query(
        "SELECT minute_ms, CAST(SUM(requests) AS BIGINT), CAST(SUM(bytes_out) AS BIGINT) FROM usage_minutes \
         WHERE service_id = $1 AND minute_ms >= $2 AND minute_ms < $3 GROUP BY minute_ms ORDER BY minute_ms",
    )
    .bind(service.to_owned())
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let minute: i64 = r.try_get(0)?;
        let requests: i64 = r.try_get(1)?;
        let bytes: i64 = r.try_get(2)?;
        out.push((
            minute,
            UsageMinute {
                minute: crate::time::rfc3339_from_ms(minute),
                requests: requests.max(0) as u64,
                bytes_out: bytes.max(0) as u64,
            },
        ));
    }
    Ok(out)
}
