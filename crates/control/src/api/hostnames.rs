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
    let req: VerifyRequest = match parse_json::<Option<VerifyRequest>>(&body) {
        _ if body.iter().all(u8::is_ascii_whitespace) => VerifyRequest::default(),
        Ok(req) => req.unwrap_or_default(),
        Err(e) => return Err(e),
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
            #[allow(unreachable_patterns)]
            _ => false,
        })
        .ok_or_else(|| ApiError::not_found("service", &id))?;
    let mut list = hostnames::statuses(&mut conn, std::slice::from_ref(&service))
        .await?
        .remove(&service.id)
        .unwrap_or_default();
    drop(conn);
    let mut proven = Vec::new();
    for status in list
        .iter_mut()
        .filter(|s| s.state == HostnameState::Pending)
    {
        if req.approve {
            proven.push(status.hostname.clone());
            continue;
        }
        let resolver = state.views.policy.challenge_resolver;
        match crate::challenge::txt(resolver, &status.challenge_name).await {
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
    if !proven.is_empty() {
        let mut w = state.store.write(true).await?;
        for host in &proven {
            hostnames::mark_verified(&mut w.tx, &service.id, host).await?;
        }
        state.published(w.commit().await?);
        tracing::info!(service = %service.id, hostnames = ?proven, approved = req.approve, "hostnames verified");
        let now = crate::time::now_rfc3339();
        for s in list.iter_mut().filter(|s| proven.contains(&s.hostname)) {
            s.state = HostnameState::Verified;
            s.verified_at = Some(now.clone());
        }
    }
    Ok(Json(VerifyResult {
        service: service.id,
        hostnames: list,
    }))
}
