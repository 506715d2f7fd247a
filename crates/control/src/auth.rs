//! Who is calling: the operator (fleet-wide token), a tenant (an API key scoped to its
//! own resources) or a node (its own credential, for its own snapshot and heartbeats).
//! Keys, node credentials and join tokens are stored only as SHA-256 hashes.
//!
//! [`Caller`] is the extractor of operator and tenant routes: a node credential gets 403
//! there. [`DataPlaneCaller`] is the extractor of the data planes' routes (snapshots,
//! heartbeats): the operator or a node, a tenant key gets 403.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::api::AppState;
use crate::error::{ApiError, StoreError};
use crate::store::{nodes, tenants};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Tenant(String),
}

impl Caller {
    /// Refuses anyone but the operator.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Tenant(_) => Err(ApiError::Forbidden(
                "this needs the operator token; tenant API keys manage only their own services"
                    .into(),
            )),
        }
    }

    /// The operator, or tenant `tenant` itself.
    pub fn require_tenant_or_operator(&self, tenant: &str) -> Result<(), ApiError> {
        match self {
            Caller::Operator => Ok(()),
            Caller::Tenant(t) if t == tenant => Ok(()),
            Caller::Tenant(t) => Err(ApiError::Forbidden(format!(
                "this API key belongs to tenant `{t}`: it reads only its own"
            ))),
        }
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A new random secret of 32 bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Creates a tenant API key: returns (key id, full secret to hand to the tenant).
pub async fn create_api_key(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<(String, String), StoreError> {
    let id = random_hex(6);
    let secret = format!("ljk_{id}_{}", random_hex(24));
    crate::store::tenants::insert_api_key(
        conn,
        &id,
        tenant,
        &sha256_hex(&secret),
        &crate::time::now_rfc3339(),
    )
    .await?;
    Ok((id, secret))
}

/// Prefix of node credentials (`ljn_...`).
pub const NODE_CREDENTIAL_PREFIX: &str = "ljn_";
/// Prefix of join tokens (`ljj_...`).
pub const JOIN_TOKEN_PREFIX: &str = "ljj_";

/// Who presented a valid token, before the route decides what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Tenant(String),
    Node(String),
}

/// The caller of a data-plane route: the operator, or a node with its own credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataPlaneCaller {
    Operator,
    Node(String),
}

impl DataPlaneCaller {
    /// Refuses a node acting for another node.
    pub fn require_node(&self, id: &str) -> Result<(), ApiError> {
        match self {
            DataPlaneCaller::Node(me) if me != id => Err(ApiError::Forbidden(format!(
                "this node credential belongs to node `{me}`: it may act only for its own node, not for `{id}`"
            ))),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::Operator => Ok(Caller::Operator),
            Principal::Tenant(t) => Ok(Caller::Tenant(t)),
            Principal::Node(n) => Err(ApiError::Forbidden(format!(
                "this is node `{n}`'s credential: it may only read its own role's snapshot and post its own heartbeats; use the operator token or a tenant API key"
            ))),
        }
    }
}

impl FromRequestParts<AppState> for DataPlaneCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Principal::from_request_parts(parts, state).await? {
            Principal::Operator => Ok(DataPlaneCaller::Operator),
            Principal::Node(n) => Ok(DataPlaneCaller::Node(n)),
            Principal::Tenant(_) => Err(ApiError::Forbidden(
                "snapshots and heartbeats are for data-plane nodes (their node credential) and the operator; tenant API keys manage only their own services".into(),
            )),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "missing `Authorization: Bearer <token>`: use the operator token (lingjing-data/operator.token) or a tenant API key".into(),
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let hash = sha256_hex(token);
        if hash == state.operator_token_sha256 {
            return Ok(Principal::Operator);
        }
        if token.starts_with("ljk_")
            && let Some(tenant) = tenants::tenant_for_api_key(&state.store, &hash).await?
        {
            return Ok(Principal::Tenant(tenant));
        }
        if token.starts_with(NODE_CREDENTIAL_PREFIX) {
            return match nodes::node_for_credential(&state.store, &hash).await? {
                Some(node) => Ok(Principal::Node(node)),
                None => Err(ApiError::Unauthorized(
                    "this node credential is not valid (revoked, or its node was deleted): issue a join token with `lingjing node join-token NODE` and restart the node with --join-token".into(),
                )),
            };
        }
        if token.starts_with(JOIN_TOKEN_PREFIX) {
            return Err(ApiError::Unauthorized(
                "a join token is not a credential: a node exchanges it once at POST /v1/nodes/{id}/credential (start the node with --join-token)".into(),
            ));
        }
        Err(ApiError::Unauthorized(
            "the token is not valid: check LINGJING_TOKEN or the key you were given".into(),
        ))
    }
}
