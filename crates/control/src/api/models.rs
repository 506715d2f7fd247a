//! Edge AI model versions: `POST /v1/models/{model}/versions` (operator) registers one
//! whose artefact (and self-test input) is already kept; a version is never changed or
//! replaced. `GET /v1/models`, `GET /v1/models/{model}/versions` (newest first) and
//! `GET /v1/models/{model}/versions/{version}` for the operator and nodes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lingjing_model::Validate;
use lingjing_model::aiot::ModelVersion;

use super::{ApiJson, AppState};
use crate::auth::{Caller, DataPlaneCaller};
use crate::error::ApiError;
use crate::store::artifacts;
use crate::store::models::{self, ModelSummary, ModelVersionRecord};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/{model}/versions", get(versions).post(register))
        .route("/v1/models/{model}/versions/{version}", get(show))
}

async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Path(model): Path<String>,
    ApiJson(v): ApiJson<ModelVersion>,
) -> Result<(StatusCode, Json<ModelVersionRecord>), ApiError> {
    caller.require_operator()?;
    if v.model != model {
        return Err(ApiError::invalid(
            "model",
            format!("the body names model `{}`, the path `{model}`", v.model),
        ));
    }
    v.validate()?;
    let mut w = state.store.write(false).await?;
    let needed = std::iter::once(("artifact", v.artifact.as_str())).chain(
        v.self_test
            .as_ref()
            .map(|t| ("self_test.input", t.input.as_str())),
    );
    for (field, digest) in needed {
        if artifacts::info(&mut w.tx, digest).await?.is_none() {
            return Err(ApiError::invalid(
                field,
                format!(
                    "no artefact {digest} is kept: upload the file first (PUT /v1/artifacts/sha256/{digest}, or lingjing model push)"
                ),
            ));
        }
    }
    let created_at = crate::time::now_rfc3339();
    if !models::insert(&mut w.tx, &v, &created_at).await? {
        return Err(ApiError::conflict(
            "already_exists",
            format!(
                "model `{model}` has a version {} already, and versions never change: register a greater number",
                v.version
            ),
        ));
    }
    w.commit().await?;
    tracing::info!(model, version = v.version, artifact = %v.artifact, "model version registered");
    Ok((
        StatusCode::CREATED,
        Json(ModelVersionRecord {
            version: v,
            created_at,
        }),
    ))
}

async fn list(
    State(state): State<AppState>,
    _caller: DataPlaneCaller,
) -> Result<Json<Vec<ModelSummary>>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    Ok(Json(models::models(&mut conn).await?))
}

async fn versions(
    State(state): State<AppState>,
    _caller: DataPlaneCaller,
    Path(model): Path<String>,
) -> Result<Json<Vec<ModelVersionRecord>>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    let all = models::versions(&mut conn, &model).await?;
    if all.is_empty() {
        return Err(ApiError::not_found("model", &model));
    }
    Ok(Json(all))
}

async fn show(
    State(state): State<AppState>,
    _caller: DataPlaneCaller,
    Path((model, version)): Path<(String, u32)>,
) -> Result<Json<ModelVersionRecord>, ApiError> {
    let mut conn = state.store.pool().acquire().await?;
    models::get(&mut conn, &model, version)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("model `{model}` has no version {version}")))
}
