//! Node load: the traffic a node served over its last window of usage reports (at least
//! [`MIN_WINDOW_MS`]), in Mbit/s and as a share of its capacity. DNS steering skips nodes
//! at or above a service's `max_load_percent`, so the share rides in the DNS snapshot; to
//! keep snapshots from churning with every report, the published share changes (and the
//! configuration version moves) only when it moves into another band of [`PUBLISH_STEP`]
//! points (0-4, 5-9, ..., 90-94, ...): a share crossing a threshold on a band edge — the
//! default `max_load_percent` of 90 is one — is always published; a threshold inside a
//! band is honoured to within the band.

use lingjing_model::Node;
use sqlx::{AnyConnection, Row};

use crate::error::StoreError;
use crate::store::get_doc;

/// The width of the bands of load share, in points, whose changes are published.
pub const PUBLISH_STEP: i64 = 5;
/// The shortest window a load share is measured over, in milliseconds.
pub const MIN_WINDOW_MS: i64 = 5_000;

/// What a usage report did to a node's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadChange {
    pub mbps: i64,
    pub percent: i64,
    /// When it was measured (the end of its window).
    pub at_ms: i64,
    /// The share moved enough to be published (the caller bumps the version).
    pub publish: bool,
}

/// Records `bytes` served since the node's last report. Traffic is summed until the
/// window since the last measurement is [`MIN_WINDOW_MS`] long (so heartbeats sent early,
/// milliseconds apart, do not make noisy measurements), then measured. The stored
/// (published) share is left as it was: when the change is to be published, the caller
/// writes it with [`publish_load`] in a transaction that bumps the version, so the
/// snapshot of that version is the first to carry it.
pub async fn record_load(
    conn: &mut AnyConnection,
    node: &str,
    bytes: u64,
    now_ms: i64,
) -> Result<Option<LoadChange>, StoreError> {
    let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
    let stored =
        sqlx::query("SELECT percent, at_ms, pending_bytes FROM node_load WHERE node_id = $1")
            .bind(node.to_owned())
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>((
                    r.try_get::<i64, _>(0)?,
                    r.try_get::<i64, _>(1)?,
                    r.try_get::<i64, _>(2)?,
                ))
            })
            .transpose()?;
    let Some((stored, since_ms, pending)) = stored else {
        // The first report: its traffic covers an unknown span; it starts the clock.
        sqlx::query("INSERT INTO node_load (node_id, mbps, percent, at_ms, pending_bytes) VALUES ($1, 0, 0, $2, 0)")
            .bind(node.to_owned())
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        return Ok(None);
    };
    let pending = pending.saturating_add(bytes);
    let elapsed_ms = now_ms - since_ms;
    if elapsed_ms < MIN_WINDOW_MS {
        sqlx::query("UPDATE node_load SET pending_bytes = $1 WHERE node_id = $2")
            .bind(pending)
            .bind(node.to_owned())
            .execute(&mut *conn)
            .await?;
        return Ok(None);
    }
    let Some(doc) = get_doc::<Node>(&mut *conn, node).await? else {
        return Ok(None);
    };
    // bits per millisecond = kbit/s; / 1000 = Mbit/s.
    let mbps =
        i64::try_from(pending.max(0) as u128 * 8 / (elapsed_ms as u128) / 1000).unwrap_or(i64::MAX);
    let percent = if doc.capacity_mbps == 0 {
        0
    } else {
        (i128::from(mbps) * 100 / i128::from(doc.capacity_mbps)).clamp(0, 255) as i64
    };
    let publish = publishes(stored, percent);
    sqlx::query("UPDATE node_load SET mbps = $1, at_ms = $2, pending_bytes = 0 WHERE node_id = $3")
        .bind(mbps)
        .bind(now_ms)
        .bind(node.to_owned())
        .execute(&mut *conn)
        .await?;
    Ok(Some(LoadChange {
        mbps,
        percent,
        at_ms: now_ms,
        publish,
    }))
}

/// Whether a measured share differs enough from the published one to be published.
fn publishes(published: i64, measured: i64) -> bool {
    published / PUBLISH_STEP != measured / PUBLISH_STEP
}

/// The published load share of every node that reported, by node id.
pub async fn load_percents(
    conn: &mut AnyConnection,
) -> Result<std::collections::HashMap<String, (i64, i64)>, StoreError> {
    let rows = sqlx::query("SELECT node_id, mbps, percent FROM node_load")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?))))
        .collect()
}

/// Publishes a node's load share (inside a version-bumping write).
pub async fn publish_load(
    conn: &mut AnyConnection,
    node: &str,
    change: &LoadChange,
) -> Result<(), StoreError> {
    // Only if no newer measurement came in between (a retried heartbeat racing this one).
    sqlx::query("UPDATE node_load SET percent = $1 WHERE node_id = $2 AND at_ms = $3")
        .bind(change.percent)
        .bind(node.to_owned())
        .bind(change.at_ms)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::publishes;

    #[test]
    fn a_share_crossing_a_band_edge_is_published() {
        // The default max_load_percent (90) is a band edge: crossing it always shows.
        assert!(publishes(87, 91));
        assert!(publishes(91, 89));
        assert!(publishes(0, 5));
        assert!(publishes(255, 0));
        // Moves inside a band do not churn snapshots.
        assert!(!publishes(90, 94));
        assert!(!publishes(3, 0));
        assert!(!publishes(87, 89));
    }
}
