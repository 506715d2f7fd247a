//! Tenant API keys: the operator creates them (the secret is shown once), lists and
//! revokes them; `whoami` tells a credential's holder whom it speaks for.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use lingjing_model::Tenant;
use lingjing_model::tenant::{ApiKeyInfo, NewApiKey, WhoAmI};

use super::AppState;
use crate::auth::{Caller, create_api_key};
use crate::error::ApiError;
use crate::store::{get_doc, tenants};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{id}/keys", get(list).post(create))
        .route("/v1/tenants/{id}/keys/{key}", delete(revoke))
        .route("/v1/whoami", get(whoami))
}

/// Whom the caller's credential speaks for (a node credential gets 403, as everywhere
/// outside the data planes' routes).
async fn whoami(caller: Caller) -> Json<WhoAmI> {
    Json(match caller {
        Caller::Operator => WhoAmI {
            role: "operator".into(),
            tenant: None,
        },
        Caller::Tenant(t) => WhoAmI {
            role: "tenant".into(),
            tenant: Some(t),
        },
    })
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<NewApiKey>), ApiError> {
    caller.require_operator()?;
    let mut w = state.store.write(false).await?;
    get_doc::<Tenant>(&mut w.tx, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant", &id))?;
    let keys = tenants::api_key_count(&mut w.tx, &id).await?;
    if keys as usize >= lingjing_model::tenant::MAX_API_KEYS {
        return Err(ApiError::conflict(
            "limit_reached",
            format!(
                "tenant `{id}` has {keys} API keys, the limit is {}: revoke one first (lingjing tenant key-revoke)",
                lingjing_model::tenant::MAX_API_KEYS
            ),
        ));
    }
    let (key_id, secret) = create_api_key(&mut w.tx, &id).await?;
    w.commit().await?;
    tracing::info!(tenant = %id, key = %key_id, "api key created");
    Ok((
        StatusCode::CREATED,
        Json(NewApiKey {
            id: key_id,
            tenant: id,
            secret,
        }),
    ))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    caller.require_operator()?;
    Ok(Json(tenants::api_keys(&state.store, &id).await?))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    caller.require_operator()?;
    let mut w = state.store.write(false).await?;
    if !tenants::delete_api_key(&mut w.tx, &id, &key).await? {
        return Err(ApiError::NotFound(format!(
            "tenant `{id}` has no key `{key}`"
        )));
    }
    w.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
