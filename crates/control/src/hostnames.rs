//! Hostname ownership and domain control. A hostname (or wildcard) belongs to one tenant:
//! no other tenant may claim the same name, a wildcard covering it, or a name under its
//! wildcard. Public suffixes, wildcards directly under one, and names in the platform zone
//! are refused. A new hostname is `pending` until its tenant proves control with a TXT
//! record `_lingjing-challenge.<name>` holding the hostname's token, or the operator
//! approves it; data planes see only `verified` names.
//!
//! Rows live in `service_hostnames` (hostname, service, state, token, and the labels
//! reversed, `example.demo.*`, so "names under this wildcard" is one indexed prefix query),
//! read and written through `crate::store::hostnames`. Every check is a handful of indexed
//! lookups per hostname: linear in the input.

use std::collections::{HashMap, HashSet};

use lingjing_model::Service;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::auth::random_hex;
use crate::context::ViewContext;
use crate::error::{ApiError, StoreError};
use crate::store::hostnames::{self as rows, Held, holder};

/// The TXT owner label a tenant publishes its token under.
pub const CHALLENGE_LABEL: &str = "_lingjing-challenge";

/// Whether a hostname may be served yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HostnameState {
    /// Waiting for proof of domain control; not served.
    Pending,
    /// Proven (or approved by the operator); served by edges and DNS.
    Verified,
}

impl HostnameState {
    fn as_str(self) -> &'static str {
        match self {
            HostnameState::Pending => "pending",
            HostnameState::Verified => "verified",
        }
    }
    fn parse(s: &str) -> HostnameState {
        if s == "verified" {
            HostnameState::Verified
        } else {
            HostnameState::Pending
        }
    }
}

/// A hostname's domain-control state and what to publish to prove control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostnameStatus {
    pub hostname: String,
    pub state: HostnameState,
    /// Publish a TXT record with this name...
    pub challenge_name: String,
    /// ... holding this value, then `POST /v1/services/{id}/verify`.
    pub challenge_value: String,
    /// When it was verified (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// Why the last check did not verify it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `*.a.b` -> `a.b`; `a.b` -> `a.b`.
fn base(host: &str) -> &str {
    host.strip_prefix("*.").unwrap_or(host)
}

/// The name the TXT challenge is published under: `_lingjing-challenge.<name>` (for a
/// wildcard, under the name it covers).
pub fn challenge_name(host: &str) -> String {
    format!("{CHALLENGE_LABEL}.{}", base(host))
}

/// Labels reversed and joined: `www.demo.example` -> `example.demo.www`.
pub fn reversed(host: &str) -> String {
    host.rsplit('.').collect::<Vec<_>>().join(".")
}

/// Checks a hostname against the public suffix list and the platform zone, naming
/// `field` in the error.
pub fn check_name(field: &str, host: &str, ctx: &ViewContext) -> Result<(), ApiError> {
    let name = base(host);
    let wildcard = host.starts_with("*.");
    let suffix = psl::suffix(name.as_bytes()).map(|s| s.as_bytes().to_vec());
    if suffix.as_deref() == Some(name.as_bytes()) {
        return Err(ApiError::invalid(
            field,
            if wildcard {
                format!(
                    "`{host}` covers every name under the public suffix `{name}`; claim names of your own domain instead"
                )
            } else {
                format!("`{host}` is a public suffix, not a domain anyone can own")
            },
        ));
    }
    let zone = ctx.zone.trim_end_matches('.');
    let in_zone = name == zone || name.ends_with(&format!(".{zone}"));
    let covers_zone = wildcard && zone.ends_with(&format!(".{name}"));
    if in_zone || covers_zone {
        return Err(ApiError::invalid(
            field,
            format!(
                "`{host}` is in the platform's own zone `{zone}`; use your own domain and point it here with a CNAME"
            ),
        ));
    }
    Ok(())
}

/// Refuses a service id that is a reserved label of the platform zone.
pub fn check_service_id(id: &str, ctx: &ViewContext) -> Result<(), ApiError> {
    if let Some(pattern) = ctx.policy.reserved(id) {
        return Err(ApiError::Conflict {
            code: "name_reserved",
            message: format!(
                "the service id `{id}` becomes the DNS name `{id}.{}`, which the platform reserves (`{pattern}`); choose another id",
                ctx.zone
            ),
            field: Some("id".into()),
        });
    }
    Ok(())
}

fn taken(i: usize, message: String) -> ApiError {
    ApiError::Conflict {
        code: "hostname_taken",
        message,
        field: Some(format!("hostnames[{i}]")),
    }
}

/// The oldest claim time (RFC 3339) of a pending name that still holds it.
fn claim_cutoff(ctx: &ViewContext) -> String {
    let ttl_ms = i64::try_from(ctx.policy.pending_ttl.as_millis()).unwrap_or(i64::MAX);
    crate::time::rfc3339_from_ms(crate::time::now_ms().saturating_sub(ttl_ms))
}

/// Why `host` of `tenant` may not be served next to other tenants' names: an overlapping
/// name (equal, covering or covered) another tenant holds. `only_verified`: count only
/// verified names (when verifying); else also pending claims younger than the cutoff.
async fn overlap(
    conn: &mut AnyConnection,
    host: &str,
    service: &str,
    tenant: &str,
    cutoff: Option<&str>,
) -> Result<Option<String>, StoreError> {
    let counts = |h: &Held| h.tenant != tenant && cutoff.map_or(h.verified, |c| h.blocks(c));
    // Covered by another tenant's wildcard: `*.b.c` or `*.c` for `a.b.c` (and for
    // `*.a.b.c`, the wildcards above `a.b.c`).
    let name = base(host);
    let labels: Vec<&str> = name.split('.').collect();
    let first = if host.starts_with("*.") { 0 } else { 1 };
    for k in first..labels.len() {
        let wildcard = format!("*.{}", labels[k..].join("."));
        if wildcard == host {
            continue;
        }
        if let Some(h) = holder(&mut *conn, &wildcard, service).await?
            && counts(&h)
        {
            return Ok(Some(format!(
                "`{host}` falls under `{wildcard}`, which another tenant holds"
            )));
        }
    }
    // Covering another tenant's names: anything under `*.name`. A pending claim counts
    // from `cutoff` on; with no cutoff only verified names (no claim is that young).
    if host.starts_with("*.")
        && let Some(other) = covered_name(conn, host, tenant, cutoff.unwrap_or("9999")).await?
    {
        return Ok(Some(format!(
            "`{host}` would cover `{other}`, which another tenant holds"
        )));
    }
    Ok(None)
}

/// A name under the wildcard `host` that a tenant other than `tenant` holds: verified, or
/// claimed at or after `since` (`""`: any claim). One indexed range query on the
/// reversed labels.
async fn covered_name(
    conn: &mut AnyConnection,
    host: &str,
    tenant: &str,
    since: &str,
) -> Result<Option<String>, StoreError> {
    let prefix = format!("{}.", reversed(base(host)));
    rows::name_under(conn, &prefix, tenant, since).await
}

/// Refuses hostnames of `service` that another service holds, or that overlap (cover or
/// are covered by) a name another tenant holds: verified, or claimed (pending) within the
/// policy's `pending_ttl`. A claim of another tenant's that stayed pending longer is
/// released: the name is taken from that service.
pub async fn check_ownership(
    conn: &mut AnyConnection,
    service: &Service,
    ctx: &ViewContext,
) -> Result<(), ApiError> {
    let cutoff = claim_cutoff(ctx);
    for (i, host) in service.hostnames.iter().enumerate() {
        if let Some(h) = holder(&mut *conn, host, &service.id).await? {
            if h.tenant == service.tenant || h.blocks(&cutoff) {
                let whose = if h.tenant == service.tenant {
                    format!("your service `{}`", h.service)
                } else if h.verified {
                    "another tenant".to_owned()
                } else {
                    format!(
                        "another tenant (not verified yet; an unverified claim is released {} h after it was made)",
                        ctx.policy.pending_ttl.as_secs() / 3600
                    )
                };
                return Err(taken(
                    i,
                    format!("`{host}` is already held by {whose}; remove it there first"),
                ));
            }
            release(&mut *conn, &h.service, host).await?;
        }
        if let Some(why) = overlap(
            &mut *conn,
            host,
            &service.id,
            &service.tenant,
            Some(&cutoff),
        )
        .await?
        {
            return Err(taken(i, why));
        }
    }
    Ok(())
}

/// Takes an expired pending `host` from `service` (row and document).
async fn release(conn: &mut AnyConnection, service: &str, host: &str) -> Result<(), StoreError> {
    rows::delete_hostname(&mut *conn, host, service).await?;
    if let Some(mut s) = crate::store::get_doc::<Service>(&mut *conn, service).await? {
        s.hostnames.retain(|h| h != host);
        crate::store::update_doc(&mut *conn, &s).await?;
    }
    tracing::info!(
        service,
        hostname = host,
        "released an unverified hostname claim"
    );
    Ok(())
}

/// Why `host` of `service` cannot be verified: another tenant holds an overlapping
/// verified name.
pub async fn verify_conflict(
    conn: &mut AnyConnection,
    service: &Service,
    host: &str,
) -> Result<Option<String>, StoreError> {
    overlap(conn, host, &service.id, &service.tenant, None).await
}

/// Records the service's hostnames: kept names keep their state and token, new ones start
/// `pending` with a fresh token, removed ones are dropped.
pub async fn sync(conn: &mut AnyConnection, service: &Service) -> Result<(), StoreError> {
    let existing = rows::hostnames_of(&mut *conn, &service.id).await?;
    let wanted: HashSet<&str> = service.hostnames.iter().map(String::as_str).collect();
    for gone in existing.iter().filter(|h| !wanted.contains(h.as_str())) {
        rows::delete_hostname(&mut *conn, gone, &service.id).await?;
    }
    for host in service.hostnames.iter().filter(|h| !existing.contains(*h)) {
        rows::insert_pending(
            &mut *conn,
            host,
            &service.id,
            &reversed(host),
            &format!("lingjing-verify={}", random_hex(16)),
            &crate::time::now_rfc3339(),
        )
        .await?;
    }
    Ok(())
}

/// The hostname states of the given services, in each service's hostname order.
pub async fn statuses(
    conn: &mut AnyConnection,
    services: &[Service],
) -> Result<HashMap<String, Vec<HostnameStatus>>, StoreError> {
    let ids: HashSet<&str> = services.iter().map(|s| s.id.as_str()).collect();
    let all: Vec<&str> = ids.iter().copied().collect();
    let mut by_host: HashMap<(String, String), HostnameStatus> = HashMap::new();
    for r in rows::hostname_rows(conn, &all).await? {
        if !ids.contains(r.service.as_str()) {
            continue;
        }
        by_host.insert(
            (r.service, r.hostname.clone()),
            HostnameStatus {
                challenge_name: challenge_name(&r.hostname),
                hostname: r.hostname,
                state: HostnameState::parse(&r.state),
                challenge_value: r.token,
                verified_at: r.verified_at,
                detail: None,
            },
        );
    }
    Ok(services
        .iter()
        .map(|s| {
            let list = s
                .hostnames
                .iter()
                .filter_map(|h| by_host.remove(&(s.id.clone(), h.clone())))
                .collect();
            (s.id.clone(), list)
        })
        .collect())
}

/// Keeps only verified hostnames in `services` and drops services left with none.
pub async fn only_verified(
    conn: &mut AnyConnection,
    services: Vec<Service>,
) -> Result<Vec<Service>, StoreError> {
    let verified = rows::verified(conn).await?;
    Ok(services
        .into_iter()
        .filter_map(|mut s| {
            let ok = verified.get(&s.id)?;
            s.hostnames.retain(|h| ok.contains(h));
            (!s.hostnames.is_empty()).then_some(s)
        })
        .collect())
}

/// Marks `hostname` of `service` verified.
pub async fn mark_verified(
    conn: &mut AnyConnection,
    service: &str,
    hostname: &str,
) -> Result<(), StoreError> {
    rows::set_state(
        conn,
        service,
        hostname,
        HostnameState::Verified.as_str(),
        &crate::time::now_rfc3339(),
    )
    .await
}

/// Fills `reversed` for rows written before it existed (their state defaults to
/// `verified`: names served before domain control keep being served), then withdraws
/// from service every such wildcard that covers another tenant's name (the more specific
/// name wins; the wildcard's tenant must prove control again).
pub async fn backfill(conn: &mut AnyConnection) -> Result<(), StoreError> {
    let filled = rows::without_reversed(&mut *conn).await?;
    for (host, _, _) in &filled {
        rows::set_reversed(&mut *conn, host, &reversed(host)).await?;
    }
    for (host, service, tenant) in filled.iter().filter(|(h, _, _)| h.starts_with("*.")) {
        let other = covered_name(&mut *conn, host, tenant, "").await?;
        if let Some(other) = other {
            rows::withdraw(
                &mut *conn,
                host,
                service,
                &crate::time::now_rfc3339(),
                &format!("lingjing-verify={}", random_hex(16)),
            )
            .await?;
            tracing::warn!(hostname = %host, %service, covers = %other,
                "a wildcard covering another tenant's name is withdrawn until it is verified again");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::TrustPolicy;

    fn ctx() -> ViewContext {
        ViewContext {
            zone: "cdn.lingjing.test.".into(),
            policy: TrustPolicy::default(),
            control_endpoint: None,
            storage: Default::default(),
            meter_retention_days: 400,
            relay: None,
        }
    }

    #[test]
    fn public_suffixes_and_zone() {
        let ctx = ctx();
        for bad in [
            "com",
            "co.uk",
            "*.com",
            "*.co.uk",
            "github.io",
            "*.github.io",
            "example",
            "*.example",
            "cdn.lingjing.test",
            "www.cdn.lingjing.test",
            "*.cdn.lingjing.test",
            "*.lingjing.test",
        ] {
            assert!(check_name("h", bad, &ctx).is_err(), "{bad}");
        }
        for ok in [
            "example.com",
            "*.example.com",
            "www.example.co.uk",
            "me.github.io",
            "www.demo.example",
            "*.demo.example",
            "lingjing.test",
            "other.test",
        ] {
            assert!(check_name("h", ok, &ctx).is_ok(), "{ok}");
        }
    }

    #[test]
    fn reversing() {
        assert_eq!(reversed("www.demo.example"), "example.demo.www");
        assert_eq!(reversed("*.demo.example"), "example.demo.*");
        assert_eq!(
            challenge_name("*.demo.example"),
            "_lingjing-challenge.demo.example"
        );
    }
}
