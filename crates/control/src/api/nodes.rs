//! Node credentials: the operator issues a one-time join token for a node
//! (`POST /v1/nodes/{id}/join-token`), the node exchanges it once for its own long-lived
//! credential (`POST /v1/nodes/{id}/credential`), and the operator can revoke that at once
//! (`POST /v1/nodes/{id}/revoke`). Tokens and credentials are stored only as SHA-256
//! hashes. Each join token gives one credential, so a node reinstalled (or a new host
//! taking over its id) joins again without disturbing the running one; revoking ends all
//! of a node's credentials. `GET /v1/nodes/{id}/health` lists the node's health changes.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, response::IntoResponse};
use lingjing_model::Node;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::{Caller, JOIN_TOKEN_PREFIX, NODE_CREDENTIAL_PREFIX, random_hex, sha256_hex};
use crate::error::ApiError;
use crate::store::{get_doc, nodes};

/// How long a join token stays valid by default (seconds).
pub const DEFAULT_JOIN_TOKEN_TTL_S: u64 = 3600;
/// The longest a join token may stay valid (seconds): a week.
pub const MAX_JOIN_TOKEN_TTL_S: u64 = 7 * 24 * 3600;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/nodes/{id}/join-token", post(issue_join_token))
        .route("/v1/nodes/{id}/credential", post(exchange))
        .route("/v1/nodes/{id}/revoke", post(revoke))
        .route("/v1/nodes/{id}/health", get(health_history))
}

/// Most health changes one `GET /v1/nodes/{id}/health` returns.
pub const MAX_HEALTH_HISTORY: u32 = 1000;

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    /// How many changes, latest first (default 100, at most [`MAX_HEALTH_HISTORY`]).
    limit: Option<u32>,
}

/// A change of a node's health, as the prober decided it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthChange {
    /// When (RFC 3339).
    pub at: String,
    pub healthy: bool,
    /// Why, e.g. `2 failed checks: probe 127.0.1.1:9090: connection refused`.
    pub reason: String,
}

async fn health_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<Vec<HealthChange>>, ApiError> {
    caller.require_operator()?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_HEALTH_HISTORY).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("give 1 to {MAX_HEALTH_HISTORY}"),
        ));
    }
    node_exists(&state, &id).await?;
    let mut conn = state.store.pool().acquire().await?;
    let changes = crate::store::health::node_history(&mut conn, &id, limit).await?;
    Ok(Json(
        changes
            .into_iter()
            .map(|(at, healthy, reason)| HealthChange {
                at,
                healthy,
                reason,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct JoinTokenParams {
    /// Seconds the token stays valid (default 3600, at most a week).
    ttl_s: Option<u64>,
}

/// A new join token, shown only once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JoinToken {
    pub node: String,
    /// The one-time secret: start the node with `--join-token` set to it.
    pub join_token: String,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
}

/// What a node presents to get its credential.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialRequest {
    pub join_token: String,
}

/// A node's credential, shown only once: the node keeps it in its state directory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeCredential {
    pub node: String,
    pub credential: String,
}

/// What a revocation removed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub node: String,
    /// Whether the node had credentials (they no longer work).
    pub credential: bool,
    /// How many credentials were revoked.
    pub credentials: u64,
    /// Unused join tokens of the node that no longer work.
    pub join_tokens: u64,
}

async fn node_exists(state: &AppState, id: &str) -> Result<(), ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    get_doc::<Node>(&mut conn, id)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("node", id))
}

async fn issue_join_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<JoinTokenParams>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_operator()?;
    let ttl_s = params.ttl_s.unwrap_or(DEFAULT_JOIN_TOKEN_TTL_S);
    if ttl_s == 0 || ttl_s > MAX_JOIN_TOKEN_TTL_S {
        return Err(ApiError::invalid(
            "ttl_s",
            format!("must be between 1 and {MAX_JOIN_TOKEN_TTL_S} seconds"),
        ));
    }
    node_exists(&state, &id).await?;
    let secret = format!("{JOIN_TOKEN_PREFIX}{}", random_hex(24));
    let expires_ms = crate::time::now_ms().saturating_add((ttl_s * 1000) as i64);
    let mut w = state.store.write(false).await?;
    nodes::insert_join_token(
        &mut w.tx,
        &sha256_hex(&secret),
        &id,
        &crate::time::now_rfc3339(),
        expires_ms,
    )
    .await?;
    w.commit().await?;
    tracing::info!(node = %id, ttl_s, "join token issued");
    Ok((
        StatusCode::CREATED,
        Json(JoinToken {
            node: id,
            join_token: secret,
            expires_at: crate::time::rfc3339_from_ms(expires_ms),
        }),
    ))
}

/// Exchanges a join token for the node's credential. Needs no `Authorization`: the join
/// token is the proof. The token is used up even if the node never keeps the answer.
async fn exchange(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CredentialRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let hash = sha256_hex(req.join_token.trim());
    let now = crate::time::now_ms();
    let mut w = state.store.write(false).await?;
    let used =
        nodes::use_join_token(&mut w.tx, &hash, &id, &crate::time::now_rfc3339(), now).await?;
    if !used {
        let why = match nodes::join_token(&mut w.tx, &hash).await? {
            None => "is not valid (mistyped, or revoked)".to_owned(),
            Some(token) => {
                let node = token.node;
                if node != id {
                    format!("was issued for node `{node}`, not `{id}`")
                } else if let Some(at) = token.used_at {
                    format!("was already used (at {at}); a join token works once")
                } else {
                    "has expired".to_owned()
                }
            }
        };
        return Err(ApiError::Unauthorized(format!(
            "this join token {why}: issue a new one with `lingjing node join-token {id}`"
        )));
    }
    let credential = format!("{NODE_CREDENTIAL_PREFIX}{}", random_hex(32));
    nodes::insert_credential(
        &mut w.tx,
        &id,
        &sha256_hex(&credential),
        &crate::time::now_rfc3339(),
    )
    .await?;
    w.commit().await?;
    tracing::info!(node = %id, "node credential issued for a join token");
    Ok((
        StatusCode::CREATED,
        Json(NodeCredential {
            node: id,
            credential,
        }),
    ))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    caller.require_operator()?;
    node_exists(&state, &id).await?;
    let mut w = state.store.write(false).await?;
    let credential = nodes::delete_credentials(&mut w.tx, &id).await?;
    let join_tokens = nodes::delete_unused_join_tokens(&mut w.tx, &id).await?;
    w.commit().await?;
    tracing::info!(node = %id, credential, join_tokens, "node credential revoked");
    Ok(Json(Revoked {
        node: id,
        credential: credential > 0,
        credentials: credential,
        join_tokens,
    }))
}
