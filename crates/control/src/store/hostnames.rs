//! Service hostnames (`service_hostnames`): per hostname its service, domain-control state
//! (`pending` or `verified`), challenge token, claim time and its labels reversed
//! (`example.demo.*`), so "names under this wildcard" is one indexed range query. The
//! ownership rules that read these rows live in `crate::hostnames`.

use std::collections::{BTreeMap, HashSet};

use sqlx::{AnyConnection, Row};

use crate::error::StoreError;

/// A service's row for a hostname, with the service's tenant.
#[derive(Debug, Clone)]
pub struct Held {
    pub service: String,
    pub tenant: String,
    pub verified: bool,
    /// When the name was claimed (RFC 3339).
    pub claimed_at: String,
}

impl Held {
    /// Whether this claim keeps others off the name: verified, or pending for less than
    /// the policy's `pending_ttl` (`cutoff` is the oldest claim time that still counts).
    pub fn blocks(&self, cutoff: &str) -> bool {
        self.verified || self.claimed_at.as_str() >= cutoff
    }
}

/// The service other than `service` holding `hostname` exactly, if any.
pub async fn holder(
    conn: &mut AnyConnection,
    hostname: &str,
    service: &str,
) -> Result<Option<Held>, StoreError> {
    let row = sqlx::query(
        "SELECT h.service_id, s.tenant_id, h.state, h.claimed_at FROM service_hostnames h \
         JOIN services s ON s.id = h.service_id WHERE h.hostname = $1 AND h.service_id <> $2",
    )
    .bind(hostname.to_owned())
    .bind(service.to_owned())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => Some(Held {
            service: r.try_get(0)?,
            tenant: r.try_get(1)?,
            verified: r.try_get::<String, _>(2)? == "verified",
            claimed_at: r.try_get(3)?,
        }),
        None => None,
    })
}

/// A hostname whose reversed labels start with `prefix` (e.g. `example.demo.`) that a
/// tenant other than `tenant` holds: verified, or claimed at or after `since` (`""`: any
/// claim). One indexed range query.
pub async fn name_under(
    conn: &mut AnyConnection,
    prefix: &str,
    tenant: &str,
    since: &str,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query(
        "SELECT h.hostname FROM service_hostnames h JOIN services s ON s.id = h.service_id \
         WHERE h.reversed >= $1 AND h.reversed < $2 AND s.tenant_id <> $3 \
         AND (h.state = 'verified' OR h.claimed_at >= $4) LIMIT 1",
    )
    .bind(prefix.to_owned())
    .bind(format!("{}/", prefix.trim_end_matches('.')))
    .bind(tenant.to_owned())
    .bind(since.to_owned())
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// Deletes `service`'s row for `hostname`.
pub async fn delete_hostname(
    conn: &mut AnyConnection,
    hostname: &str,
    service: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM service_hostnames WHERE hostname = $1 AND service_id = $2")
        .bind(hostname.to_owned())
        .bind(service.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// The hostnames stored for `service`.
pub async fn hostnames_of(
    conn: &mut AnyConnection,
    service: &str,
) -> Result<HashSet<String>, StoreError> {
    Ok(
        sqlx::query("SELECT hostname FROM service_hostnames WHERE service_id = $1")
            .bind(service.to_owned())
            .fetch_all(conn)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?,
    )
}

/// Stores a new `pending` claim of `hostname` by `service`.
pub async fn insert_pending(
    conn: &mut AnyConnection,
    hostname: &str,
    service: &str,
    reversed: &str,
    token: &str,
    claimed_at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO service_hostnames (hostname, service_id, reversed, state, token, claimed_at) \
         VALUES ($1, $2, $3, 'pending', $4, $5)",
    )
    .bind(hostname.to_owned())
    .bind(service.to_owned())
    .bind(reversed.to_owned())
    .bind(token.to_owned())
    .bind(claimed_at.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored hostname row, as the API shows it.
#[derive(Debug, Clone)]
pub struct HostnameRow {
    pub hostname: String,
    pub service: String,
    /// `pending` or `verified`.
    pub state: String,
    pub token: String,
    pub verified_at: Option<String>,
}

/// The hostname rows of the services `ids` (queried 500 ids at a time).
pub async fn hostname_rows(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<Vec<HostnameRow>, StoreError> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT hostname, service_id, state, token, verified_at FROM service_hostnames \
             WHERE service_id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind((*id).to_owned());
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    rows.iter()
        .map(|r| {
            Ok(HostnameRow {
                hostname: r.try_get(0)?,
                service: r.try_get(1)?,
                state: r.try_get(2)?,
                token: r.try_get(3)?,
                verified_at: r.try_get(4)?,
            })
        })
        .collect()
}

/// Verified hostnames per service.
pub async fn verified(
    conn: &mut AnyConnection,
) -> Result<BTreeMap<String, HashSet<String>>, StoreError> {
    let rows =
        sqlx::query("SELECT service_id, hostname FROM service_hostnames WHERE state = 'verified'")
            .fetch_all(conn)
            .await?;
    let mut out: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for r in &rows {
        out.entry(r.try_get(0)?).or_default().insert(r.try_get(1)?);
    }
    Ok(out)
}

/// Sets the state of `service`'s `hostname` and when it was verified.
pub async fn set_state(
    conn: &mut AnyConnection,
    service: &str,
    hostname: &str,
    state: &str,
    verified_at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE service_hostnames SET state = $1, verified_at = $2 WHERE service_id = $3 AND hostname = $4",
    )
    .bind(state.to_owned())
    .bind(verified_at.to_owned())
    .bind(service.to_owned())
    .bind(hostname.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows written before `reversed` existed: (hostname, service, tenant).
pub async fn without_reversed(
    conn: &mut AnyConnection,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let rows = sqlx::query(
        "SELECT h.hostname, h.service_id, s.tenant_id FROM service_hostnames h \
         JOIN services s ON s.id = h.service_id WHERE h.reversed = ''",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Fills in the reversed labels of `hostname`.
pub async fn set_reversed(
    conn: &mut AnyConnection,
    hostname: &str,
    reversed: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE service_hostnames SET reversed = $1 WHERE hostname = $2")
        .bind(reversed.to_owned())
        .bind(hostname.to_owned())
        .execute(conn)
        .await?;
    Ok(())
}

/// Puts `service`'s `hostname` back to `pending` with a new claim time and token.
pub async fn withdraw(
    conn: &mut AnyConnection,
    hostname: &str,
    service: &str,
    claimed_at: &str,
    token: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE service_hostnames SET state = 'pending', claimed_at = $1, token = $2 \
         WHERE hostname = $3 AND service_id = $4",
    )
    .bind(claimed_at.to_owned())
    .bind(token.to_owned())
    .bind(hostname.to_owned())
    .bind(service.to_owned())
    .execute(conn)
    .await?;
    Ok(())
}
