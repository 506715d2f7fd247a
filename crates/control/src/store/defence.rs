//! Traffic defence rows: rules (`defence_rules`, the rule as a JSON document beside the
//! columns it is looked up by), attack events (`defence_events`, the merged nodes'
//! reports as a JSON document) and which event each node's incident belongs to
//! (`defence_incidents`).

use lingjing_model::defence::DefenceRule;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("defence {what}"))
}

fn rule_from(doc: &str) -> Result<DefenceRule, StoreError> {
    serde_json::from_str(doc).map_err(|_| corrupt("rule"))
}

/// Inserts or replaces `rule` (made from event `event`, if any).
pub async fn put_rule(
    conn: &mut AnyConnection,
    rule: &DefenceRule,
    event: Option<&str>,
) -> Result<(), StoreError> {
    let doc = serde_json::to_string(rule).map_err(|_| corrupt("rule"))?;
    sqlx::query("DELETE FROM defence_rules WHERE id = $1")
        .bind(rule.id.clone())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO defence_rules (id, service_id, tenant_id, event_id, created_ms, expires_ms, doc) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(rule.id.clone())
    .bind(rule.spec.service.clone())
    .bind(rule.tenant.clone())
    .bind(event.map(str::to_owned))
    .bind(rule.created_ms as i64)
    .bind(rule.expires_ms.map(|e| e as i64))
    .bind(doc)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rule `id`.
pub async fn rule(conn: &mut AnyConnection, id: &str) -> Result<Option<DefenceRule>, StoreError> {
    let row = sqlx::query("SELECT doc FROM defence_rules WHERE id = $1")
        .bind(id.to_owned())
        .fetch_optional(conn)
        .await?;
    row.map(|r| rule_from(&r.try_get::<String, _>(0)?))
        .transpose()
}

/// The rule made from event `event`, if any.
pub async fn event_rule(
    conn: &mut AnyConnection,
    event: &str,
) -> Result<Option<DefenceRule>, StoreError> {
    let row = sqlx::query("SELECT doc FROM defence_rules WHERE event_id = $1")
        .bind(event.to_owned())
        .fetch_optional(conn)
        .await?;
    row.map(|r| rule_from(&r.try_get::<String, _>(0)?))
        .transpose()
}

/// Rules still in force at `now_ms` (of tenant `tenant` only, when given), oldest first.
pub async fn live_rules(
    conn: &mut AnyConnection,
    now_ms: i64,
    tenant: Option<&str>,
) -> Result<Vec<DefenceRule>, StoreError> {
    let rows = match tenant {
        None => {
            sqlx::query(
                "SELECT doc FROM defence_rules WHERE expires_ms IS NULL OR expires_ms > $1 \
                 ORDER BY created_ms, id",
            )
            .bind(now_ms)
            .fetch_all(conn)
            .await?
        }
        Some(t) => {
            sqlx::query(
                "SELECT doc FROM defence_rules WHERE (expires_ms IS NULL OR expires_ms > $1) \
                 AND tenant_id = $2 ORDER BY created_ms, id",
            )
            .bind(now_ms)
            .bind(t.to_owned())
            .fetch_all(conn)
            .await?
        }
    };
    rows.iter()
        .map(|r| rule_from(&r.try_get::<String, _>(0)?))
        .collect()
}

/// How many rules in force `tenant` has (all tenants' and the operator's when `None`).
pub async fn count_rules(
    conn: &mut AnyConnection,
    now_ms: i64,
    tenant: Option<&str>,
) -> Result<i64, StoreError> {
    let row =
        match tenant {
            Some(t) => sqlx::query(
                "SELECT COUNT(*) FROM defence_rules WHERE (expires_ms IS NULL OR expires_ms > $1) \
                 AND tenant_id = $2",
            )
            .bind(now_ms)
            .bind(t.to_owned())
            .fetch_one(conn)
            .await?,
            None => sqlx::query(
                "SELECT COUNT(*) FROM defence_rules WHERE expires_ms IS NULL OR expires_ms > $1",
            )
            .bind(now_ms)
            .fetch_one(conn)
            .await?,
        };
    Ok(row.try_get(0)?)
}

/// Deletes rule `id`; whether it existed.
pub async fn delete_rule(conn: &mut AnyConnection, id: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM defence_rules WHERE id = $1")
        .bind(id.to_owned())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes rules that expired before `before_ms`.
pub async fn sweep_rules(conn: &mut AnyConnection, before_ms: i64) -> Result<u64, StoreError> {
    let done =
        sqlx::query("DELETE FROM defence_rules WHERE expires_ms IS NOT NULL AND expires_ms < $1")
            .bind(before_ms)
            .execute(conn)
            .await?;
    Ok(done.rows_affected())
}

/// An event row.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub id: String,
    pub service: String,
    pub tenant: String,
    pub started_ms: i64,
    pub last_ms: i64,
    pub ended_ms: Option<i64>,
    /// The merged reports (JSON; `crate::defence::EventDoc`).
    pub doc: String,
}

const EVENT_COLUMNS: &str = "id, service_id, tenant_id, started_ms, last_ms, ended_ms, doc";

fn event_from(r: &sqlx::any::AnyRow) -> Result<EventRow, StoreError> {
    Ok(EventRow {
        id: r.try_get(0)?,
        service: r.try_get(1)?,
        tenant: r.try_get(2)?,
        started_ms: r.try_get(3)?,
        last_ms: r.try_get(4)?,
        ended_ms: r.try_get(5)?,
        doc: r.try_get(6)?,
    })
}

/// The event node `node`'s incident `incident` belongs to.
pub async fn incident_event(
    conn: &mut AnyConnection,
    node: &str,
    incident: &str,
) -> Result<Option<EventRow>, StoreError> {
    let sql = format!(
        "SELECT {} FROM defence_events e JOIN defence_incidents i ON i.event_id = e.id \
         WHERE i.node_id = $1 AND i.incident = $2",
        EVENT_COLUMNS
            .split(", ")
            .map(|c| format!("e.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let row = sqlx::query(&sql)
        .bind(node.to_owned())
        .bind(incident.to_owned())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(event_from).transpose()
}

/// The newest event of `service` last seen at or after `since_ms` (an event whose nodes
/// went quiet without saying it ended is not joined forever).
pub async fn open_event(
    conn: &mut AnyConnection,
    service: &str,
    since_ms: i64,
) -> Result<Option<EventRow>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM defence_events WHERE service_id = $1 \
         AND last_ms >= $2 ORDER BY started_ms DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(service.to_owned())
        .bind(since_ms)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(event_from).transpose()
}

/// Records that node `node`'s incident `incident` belongs to event `event`.
pub async fn link_incident(
    conn: &mut AnyConnection,
    node: &str,
    incident: &str,
    event: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO defence_incidents (node_id, incident, event_id) VALUES ($1, $2, $3) \
         ON CONFLICT (node_id, incident) DO NOTHING",
    )
    .bind(node.to_owned())
    .bind(incident.to_owned())
    .bind(event.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts or replaces an event (an upsert: two writers never collide on the key).
pub async fn put_event(conn: &mut AnyConnection, e: &EventRow) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO defence_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms, \
         last_ms = excluded.last_ms, ended_ms = excluded.ended_ms, doc = excluded.doc"
    );
    sqlx::query(&sql)
        .bind(e.id.clone())
        .bind(e.service.clone())
        .bind(e.tenant.clone())
        .bind(e.started_ms)
        .bind(e.last_ms)
        .bind(e.ended_ms)
        .bind(e.doc.clone())
        .execute(conn)
        .await?;
    Ok(())
}

/// The newest `limit` events (of `tenant` only, when given; of `service` only, when
/// given), newest first.
pub async fn events(
    conn: &mut AnyConnection,
    tenant: Option<&str>,
    service: Option<&str>,
    limit: i64,
) -> Result<Vec<EventRow>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM defence_events \
         WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR service_id = $2) \
         ORDER BY started_ms DESC, id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.map(str::to_owned))
        .bind(service.map(str::to_owned))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    rows.iter().map(event_from).collect()
}

/// Keeps the larger of the stored and the reported busiest seconds of a service's minute.
pub async fn record_minute(
    conn: &mut AnyConnection,
    s: &lingjing_model::defence::BaselineSample,
) -> Result<(), StoreError> {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    sqlx::query(
        "INSERT INTO defence_minutes (service_id, minute_ms, service_rps, source_rps, prefix_rps) \
         VALUES ($1, $2, 0, 0, 0) ON CONFLICT (service_id, minute_ms) DO NOTHING",
    )
    .bind(s.service.clone())
    .bind(clamp(s.minute_ms))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE defence_minutes SET \
         service_rps = CASE WHEN service_rps < $3 THEN $3 ELSE service_rps END, \
         source_rps = CASE WHEN source_rps < $4 THEN $4 ELSE source_rps END, \
         prefix_rps = CASE WHEN prefix_rps < $5 THEN $5 ELSE prefix_rps END \
         WHERE service_id = $1 AND minute_ms = $2",
    )
    .bind(s.service.clone())
    .bind(clamp(s.minute_ms))
    .bind(clamp(s.service_rps))
    .bind(clamp(s.source_rps))
    .bind(clamp(s.prefix_rps))
    .execute(conn)
    .await?;
    Ok(())
}

/// A service's minutes since `since_ms`: (service, source, prefix) busiest seconds.
pub async fn minutes(
    conn: &mut AnyConnection,
    service: &str,
    since_ms: i64,
) -> Result<Vec<(u64, u64, u64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT service_rps, source_rps, prefix_rps FROM defence_minutes \
         WHERE service_id = $1 AND minute_ms >= $2",
    )
    .bind(service.to_owned())
    .bind(since_ms)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let get = |i: usize| r.try_get::<i64, _>(i).map(|v| v.max(0) as u64);
            Ok((get(0)?, get(1)?, get(2)?))
        })
        .collect()
}

/// Deletes minutes older than `before_ms`.
pub async fn sweep_minutes(conn: &mut AnyConnection, before_ms: i64) -> Result<u64, StoreError> {
    let done = sqlx::query("DELETE FROM defence_minutes WHERE minute_ms < $1")
        .bind(before_ms)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// Every service's learned thresholds.
pub async fn learned(
    conn: &mut AnyConnection,
) -> Result<Vec<lingjing_model::defence::LearnedThresholds>, StoreError> {
    let rows = sqlx::query("SELECT doc FROM defence_learned ORDER BY service_id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| serde_json::from_str(&r.try_get::<String, _>(0)?).map_err(|_| corrupt("learned")))
        .collect()
}

/// Stores (or, with `None`, forgets) a service's learned thresholds.
pub async fn put_learned(
    conn: &mut AnyConnection,
    service: &str,
    learned: Option<&lingjing_model::defence::LearnedThresholds>,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM defence_learned WHERE service_id = $1")
        .bind(service.to_owned())
        .execute(&mut *conn)
        .await?;
    if let Some(l) = learned {
        let doc = serde_json::to_string(l).map_err(|_| corrupt("learned"))?;
        sqlx::query("INSERT INTO defence_learned (service_id, doc) VALUES ($1, $2)")
            .bind(service.to_owned())
            .bind(doc)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Deletes events last seen before `before_ms`, and their incident links.
pub async fn sweep_events(conn: &mut AnyConnection, before_ms: i64) -> Result<u64, StoreError> {
    sqlx::query(
        "DELETE FROM defence_incidents WHERE event_id IN \
         (SELECT id FROM defence_events WHERE last_ms < $1)",
    )
    .bind(before_ms)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query("DELETE FROM defence_events WHERE last_ms < $1")
        .bind(before_ms)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
