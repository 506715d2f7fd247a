//! Domain control: `POST /v1/services/{id}/verify` checks each pending hostname's
//! `_lingjing-challenge` TXT record (or, for the operator with `approve`, approves them
//! without it) and marks proven names verified, which puts them in the data planes'
//! snapshots.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use lingjing_model::Service;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiBytes, AppState, parse_json};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::hostnames::{self, HostnameState, HostnameStatus};
use crate::store::get_doc;

/// How long one verify request may spend on DNS lookups, all names together.
const VERIFY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/services/{id}/verify", post(verify))
}

/// What to verify; the body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// Operator only: mark every pending hostname verified without the DNS check.
    #[serde(default)]
    pub approve: bool,
}

/// The outcome per hostname.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResult {
    pub service: String,
    pub hostnames: Vec<HostnameStatus>,
}

pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<VerifyResult>, ApiError> {
    // The body may be left out, empty or `null`.
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        VerifyRequest::default()
    } else {
        parse_json::<Option<VerifyRequest>>(&body)?.unwrap_or_default()
    };
    if req.approve {
        caller.require_operator()?;
    }
    let mut conn = state.store.pool().acquire().await?;
    let service = get_doc::<Service>(&mut conn, &id)
        .await?
        .filter(|s| match &caller {
            Caller::Operator => true,
            Caller::Tenant(t) => *t == s.tenant,
        })
        .ok_or_else(|| ApiError::not_found("service", &id))?;
    let mut list = hostnames::statuses(&mut conn, std::slice::from_ref(&service))
        .await?
        .remove(&service.id)
        .unwrap_or_default();
    drop(conn);
    // Every pending name is looked up at once, within one deadline, so a request with
    // many names cannot hold a connection for long.
    let mut proven: Vec<String> = Vec::new();
    if req.approve {
        proven.extend(
            list.iter()
                .filter(|s| s.state == HostnameState::Pending)
                .map(|s| s.hostname.clone()),
        );
    } else {
        let resolver = state.views.policy.challenge_resolver;
        let mut lookups = tokio::task::JoinSet::new();
        for (i, status) in list.iter().enumerate() {
            if status.state == HostnameState::Pending {
                let name = status.challenge_name.clone();
                lookups.spawn(async move { (i, crate::challenge::txt(resolver, &name).await) });
            }
        }
        let deadline = tokio::time::Instant::now() + VERIFY_DEADLINE;
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, lookups.join_next()).await {
            let Ok((i, found)) = done else { continue };
            let status = &mut list[i];
            match found {
                Ok(values) if values.iter().any(|v| v.trim() == status.challenge_value) => {
                    proven.push(status.hostname.clone());
                }
                Ok(values) if values.is_empty() => {
                    status.detail = Some(format!(
                        "no TXT record at `{}`: publish one holding `{}` and verify again",
                        status.challenge_name, status.challenge_value
                    ));
                }
                Ok(values) => {
                    status.detail = Some(format!(
                        "the TXT record at `{}` holds {:?}, not `{}`",
                        status.challenge_name, values, status.challenge_value
                    ));
                }
                Err(e) => status.detail = Some(e),
            }
        }
        lookups.abort_all();
        for status in list.iter_mut() {
            if status.state == HostnameState::Pending
                && status.detail.is_none()
                && !proven.contains(&status.hostname)
            {
                status.detail = Some(format!(
                    "the lookup of `{}` did not finish within {} s: verify again",
                    status.challenge_name,
                    VERIFY_DEADLINE.as_secs()
                ));
            }
        }
    }
    if !proven.is_empty() {
        let mut w = state.store.write(true).await?;
        let mut marked = Vec::new();
        for host in &proven {
            // Proof of control does not override another tenant's verified name.
            if let Some(why) = hostnames::verify_conflict(&mut w.tx, &service, host).await? {
                if let Some(s) = list.iter_mut().find(|s| s.hostname == *host) {
                    s.detail = Some(why);
                }
                continue;
            }
            hostnames::mark_verified(&mut w.tx, &service.id, host).await?;
            marked.push(host.clone());
        }
        state.published(w.commit().await?);
        tracing::info!(service = %service.id, hostnames = ?marked, approved = req.approve, "hostnames verified");
        let now = crate::time::now_rfc3339();
        for s in list.iter_mut().filter(|s| marked.contains(&s.hostname)) {
            s.state = HostnameState::Verified;
            s.verified_at = Some(now.clone());
        }
    }
    Ok(Json(VerifyResult {
        service: service.id,
        hostnames: list,
    }))
}
