//! IDC monitoring's tables: readings and their per-minute rollups, alerts (one row per
//! rule and sensor, its current state) and their transitions (one row per transition
//! id). Sensors, receivers and silences are resource documents.

use lingjing_model::monitor::{AlertAck, AlertEvent, AlertState, SensorValue};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

use crate::error::StoreError;

/// How long raw readings are kept.
pub const RAW_RETENTION_DAYS: i64 = 7;
/// How long per-minute rollups are kept (13 months: a year back, month on month).
pub const ROLLUP_RETENTION_DAYS: i64 = 400;

/// Keeps readings taken at `at_ms` (a reading kept already is skipped) and adds each
/// new one to its minute's rollup. Returns how many were new.
pub async fn insert_readings(
    conn: &mut AnyConnection,
    at_ms: i64,
    values: &[SensorValue],
) -> Result<u64, StoreError> {
    let minute = at_ms - at_ms.rem_euclid(60_000);
    let mut new = 0;
    for v in values {
        let inserted = sqlx::query(
            "INSERT INTO readings (sensor_id, at_ms, value) VALUES ($1, $2, $3) ON CONFLICT (sensor_id, at_ms) DO NOTHING",
        )
        .bind(&v.sensor)
        .bind(at_ms)
        .bind(v.value)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        new += 1;
        let updated = sqlx::query(
            "UPDATE reading_minutes SET \
               min_value = CASE WHEN min_value < $3 THEN min_value ELSE $3 END, \
               max_value = CASE WHEN max_value > $3 THEN max_value ELSE $3 END, \
               sum_value = sum_value + $3, count = count + 1, \
               last_value = CASE WHEN last_ms <= $4 THEN $3 ELSE last_value END, \
               last_ms = CASE WHEN last_ms <= $4 THEN $4 ELSE last_ms END \
             WHERE sensor_id = $1 AND minute_ms = $2",
        )
        .bind(&v.sensor)
        .bind(minute)
        .bind(v.value)
        .bind(at_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO reading_minutes (sensor_id, minute_ms, min_value, max_value, sum_value, count, last_value, last_ms) \
                 VALUES ($1, $2, $3, $3, $3, 1, $3, $4)",
            )
            .bind(&v.sensor)
            .bind(minute)
            .bind(v.value)
            .bind(at_ms)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(new)
}

/// One point of a sensor's series.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Point {
    /// The reading's time, or the start of its step.
    pub at_ms: i64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub last: f64,
    pub count: u64,
}

/// The raw readings of `sensor` in `[from, to)`, at most `limit`.
pub async fn raw(
    conn: &mut AnyConnection,
    sensor: &str,
    from_ms: i64,
    to_ms: i64,
    limit: u32,
) -> Result<Vec<Point>, StoreError> {
    let rows = sqlx::query(
        "SELECT at_ms, value FROM readings WHERE sensor_id = $1 AND at_ms >= $2 AND at_ms < $3 ORDER BY at_ms LIMIT $4",
    )
    .bind(sensor)
    .bind(from_ms)
    .bind(to_ms)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let v: f64 = r.try_get(1)?;
            Ok(Point {
                at_ms: r.try_get(0)?,
                min: v,
                max: v,
                mean: v,
                last: v,
                count: 1,
            })
        })
        .collect()
}

/// The rollups of `sensor` in `[from, to)`, merged into steps of `step_ms` (a multiple
/// of a minute).
pub async fn rolled(
    conn: &mut AnyConnection,
    sensor: &str,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
) -> Result<Vec<Point>, StoreError> {
    let rows = sqlx::query(
        "SELECT minute_ms, min_value, max_value, sum_value, count, last_value FROM reading_minutes \
         WHERE sensor_id = $1 AND minute_ms >= $2 AND minute_ms < $3 ORDER BY minute_ms",
    )
    .bind(sensor)
    .bind(from_ms - from_ms.rem_euclid(60_000))
    .bind(to_ms)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<(Point, f64)> = Vec::new();
    for r in &rows {
        let minute: i64 = r.try_get(0)?;
        let (min, max, sum): (f64, f64, f64) = (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        let count = r.try_get::<i64, _>(4)? as u64;
        let last: f64 = r.try_get(5)?;
        let at = minute - (minute - from_ms).rem_euclid(step_ms);
        match out.last_mut() {
            Some((p, s)) if p.at_ms == at => {
                p.min = p.min.min(min);
                p.max = p.max.max(max);
                *s += sum;
                p.count += count;
                p.last = last;
            }
            _ => out.push((
                Point {
                    at_ms: at,
                    min,
                    max,
                    mean: 0.0,
                    last,
                    count,
                },
                sum,
            )),
        }
    }
    Ok(out
        .into_iter()
        .map(|(mut p, sum)| {
            p.mean = if p.count > 0 {
                sum / p.count as f64
            } else {
                0.0
            };
            p
        })
        .collect())
}

/// Deletes raw readings before `raw_before_ms` and rollups before `minutes_before_ms`.
pub async fn prune(
    conn: &mut AnyConnection,
    raw_before_ms: i64,
    minutes_before_ms: i64,
) -> Result<u64, StoreError> {
    let a = sqlx::query("DELETE FROM readings WHERE at_ms < $1")
        .bind(raw_before_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM reading_minutes WHERE minute_ms < $1")
        .bind(minutes_before_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(a + b)
}

/// Keeps one alert transition (once per id) and moves the alert's row to it unless the
/// row holds a later one. False when the transition was kept already.
pub async fn record_alert(
    conn: &mut AnyConnection,
    node: &str,
    e: &AlertEvent,
) -> Result<bool, StoreError> {
    let body = serde_json::to_string(e).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let inserted = sqlx::query(
        "INSERT INTO alert_events (id, key, at_ms, node_id, body) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(e.id())
    .bind(&e.key)
    .bind(e.at_ms)
    .bind(node)
    .bind(&body)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    if e.state == AlertState::Escalated {
        return Ok(true);
    }
    let current: Option<(i64, i64)> =
        sqlx::query("SELECT updated_ms, since_ms FROM alerts WHERE key = $1")
            .bind(&e.key)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
            .transpose()?;
    let severity = match e.severity {
        lingjing_alerts::Severity::Warning => "warning",
        lingjing_alerts::Severity::Critical => "critical",
    };
    match current {
        Some((updated, _)) if updated > e.at_ms => {}
        Some((_, since)) => {
            // A new firing is not acknowledged.
            let keep_ack = since == e.since_ms;
            sqlx::query(
                "UPDATE alerts SET state = $2, since_ms = $3, updated_ms = $4, body = $5, severity = $6, \
                 acked_by = CASE WHEN $7 THEN acked_by ELSE NULL END, \
                 acked_ms = CASE WHEN $7 THEN acked_ms ELSE NULL END WHERE key = $1",
            )
            .bind(&e.key)
            .bind(e.state.as_str())
            .bind(e.since_ms)
            .bind(e.at_ms)
            .bind(&body)
            .bind(severity)
            .bind(keep_ack)
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "INSERT INTO alerts (key, site_id, rule, sensor, severity, state, since_ms, updated_ms, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&e.key)
            .bind(&e.site)
            .bind(&e.rule)
            .bind(&e.sensor)
            .bind(severity)
            .bind(e.state.as_str())
            .bind(e.since_ms)
            .bind(e.at_ms)
            .bind(&body)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(true)
}

/// An alert as the API lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertRow {
    /// The last transition.
    #[serde(flatten)]
    pub last: AlertEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_ms: Option<i64>,
}

/// Alerts in `states` (empty: all), of `site` (none: all), newest first, at most `limit`.
pub async fn alerts(
    conn: &mut AnyConnection,
    states: &[&str],
    site: Option<&str>,
    limit: u32,
) -> Result<Vec<AlertRow>, StoreError> {
    let mut sql = String::from("SELECT body, acked_by, acked_ms FROM alerts WHERE 1 = 1");
    let mut n = 0;
    if !states.is_empty() {
        let marks: Vec<String> = states
            .iter()
            .map(|_| {
                n += 1;
                format!("${n}")
            })
            .collect();
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
    }
    if site.is_some() {
        n += 1;
        sql.push_str(&format!(" AND site_id = ${n}"));
    }
    sql.push_str(&format!(" ORDER BY updated_ms DESC, key LIMIT ${}", n + 1));
    let mut q = sqlx::query(&sql);
    for s in states {
        q = q.bind(*s);
    }
    if let Some(s) = site {
        q = q.bind(s);
    }
    let rows = q.bind(i64::from(limit)).fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            let body: String = r.try_get(0)?;
            let last: AlertEvent = serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("alert {body}: {e}")))?;
            Ok(AlertRow {
                last,
                acked_by: r.try_get(1)?,
                acked_ms: r.try_get(2)?,
            })
        })
        .collect()
}

/// Acknowledges a firing alert; false if it is not firing.
pub async fn ack(
    conn: &mut AnyConnection,
    key: &str,
    by: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE alerts SET acked_by = $2, acked_ms = $3 WHERE key = $1 AND state = 'firing'",
    )
    .bind(key)
    .bind(by)
    .bind(now_ms)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Acknowledgements of alerts firing (for the nodes: they stop escalation).
pub async fn acks(conn: &mut AnyConnection) -> Result<Vec<AlertAck>, StoreError> {
    let rows = sqlx::query(
        "SELECT key, since_ms, acked_by, acked_ms FROM alerts WHERE state = 'firing' AND acked_by IS NOT NULL",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AlertAck {
                key: r.try_get(0)?,
                firing_since_ms: r.try_get(1)?,
                by: r.try_get(2)?,
                at_ms: r.try_get::<Option<i64>, _>(3)?.unwrap_or(0),
            })
        })
        .collect()
}

/// Alerts of `rules` pending or firing: (key, state, since).
pub async fn open_alerts(
    conn: &mut AnyConnection,
    rules: &[&str],
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT key, state, since_ms, rule FROM alerts WHERE state IN ('pending', 'firing')",
    )
    .fetch_all(conn)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let rule: String = r.try_get(3)?;
        if rules.contains(&rule.as_str()) {
            out.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
    }
    Ok(out)
}

/// Transitions kept from `node` not yet sent to receivers, oldest first: (id, event).
pub async fn unnotified(
    conn: &mut AnyConnection,
    node: &str,
    limit: u32,
) -> Result<Vec<(String, AlertEvent)>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, body FROM alert_events WHERE node_id = $1 AND notified_ms IS NULL \
         ORDER BY at_ms, id LIMIT $2",
    )
    .bind(node)
    .bind(i64::from(limit))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let body: String = r.try_get(1)?;
            let e: AlertEvent = serde_json::from_str(&body)
                .map_err(|e| StoreError::Corrupt(format!("alert event {body}: {e}")))?;
            Ok((r.try_get(0)?, e))
        })
        .collect()
}

/// Marks a transition sent.
pub async fn mark_notified(
    conn: &mut AnyConnection,
    id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE alert_events SET notified_ms = $2 WHERE id = $1")
        .bind(id)
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}
