//! Who is calling: the operator (fleet-wide token) or a tenant (an API key scoped to its
//! own resources). Keys are stored only as SHA-256 hashes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::api::AppState;
use crate::error::{ApiError, StoreError};

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
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, secret_sha256, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.clone())
    .bind(tenant.to_owned())
    .bind(sha256_hex(&secret))
    .bind(crate::time::now_rfc3339())
    .execute(conn)
    .await?;
    Ok((id, secret))
}

impl FromRequestParts<AppState> for Caller {
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
            return Ok(Caller::Operator);
        }
        if token.starts_with("ljk_") {
            let row = sqlx::query("SELECT tenant_id FROM api_keys WHERE secret_sha256 = $1")
                .bind(hash)
                .fetch_optional(state.store.pool())
                .await?;
            if let Some(row) = row {
                return Ok(Caller::Tenant(row.try_get::<String, _>(0)?));
            }
        }
        Err(ApiError::Unauthorized(
            "the token is not valid: check LINGJING_TOKEN or the key you were given".into(),
        ))
    }
}
