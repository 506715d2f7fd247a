//! The REST API under `/v1`: the router, its shared state, and the JSON body extractor that
//! turns malformed input into 400/422 answers naming the field.

mod agents;
mod artifacts;
pub mod billing;
pub mod colocation;
mod crud;
pub mod defence;
pub mod hostnames;
pub mod inspect;
mod ipam;
mod lines;
mod models;
pub mod monitor;
mod nodes;
pub mod open311;
pub mod openapi;
pub mod purges;
pub mod rollouts;
mod sla;
pub(crate) mod storage;
mod tenants;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use lingjing_model::{DnsRecord, IpPool, Line, Node, Region, Service, Site, Tenant};
use serde::de::DeserializeOwned;

use crate::context::ViewContext;
use crate::error::ApiError;
use crate::snapshot::Hub;
use crate::store::Store;

/// Largest request body of most routes (services, purges, tenants, inventory): far more
/// than the largest valid one (100 hostnames, a certificate chain).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest request body of the operator's bulk routes (line prefix tables: a
/// whole-country table fits).
pub const MAX_BULK_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The answer to a body over the route's limit.
fn too_large() -> ApiError {
    ApiError::TooLarge(format!(
        "the request body is over this endpoint's limit ({} KiB; {} MiB for line prefix tables): send less",
        MAX_BODY_BYTES / 1024,
        MAX_BULK_BODY_BYTES / (1024 * 1024)
    ))
}

/// The raw request body; a body over the route's limit gets the JSON error (413).
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    too_large()
                } else {
                    ApiError::BadRequest(format!("could not read the body: {e}"))
                }
            })
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    pub operator_token_sha256: String,
    pub views: Arc<ViewContext>,
}

impl AppState {
    /// Announces a committed configuration version to the long-pollers.
    pub fn published(&self, version: Option<u64>) {
        if let Some(v) = version {
            self.hub.publish(v);
        }
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(crud::routes::<Region>())
        .merge(crud::routes::<Line>())
        .merge(crud::routes::<Site>())
        .merge(crud::routes::<Node>())
        .merge(crud::routes::<IpPool>())
        .merge(crud::routes::<DnsRecord>())
        .merge(crud::routes::<Tenant>())
        .merge(crud::routes::<Service>())
        .merge(crud::routes::<lingjing_model::colocation::Cabinet>())
        .merge(crud::routes::<lingjing_model::inspect::Device>())
        .merge(crud::routes::<lingjing_model::inspect::Crew>())
        .merge(crud::routes::<lingjing_model::monitor::Sensor>())
        .merge(crud::routes::<lingjing_model::monitor::Receiver>())
        .merge(crud::routes::<lingjing_model::monitor::Silence>())
        .merge(hostnames::routes())
        .merge(ipam::routes())
        .merge(lines::routes().layer(axum::extract::DefaultBodyLimit::max(MAX_BULK_BODY_BYTES)))
        .merge(tenants::routes())
        .merge(storage::routes())
        .merge(agents::routes())
        .merge(nodes::routes())
        .merge(purges::routes())
        .merge(defence::routes())
        .merge(usage::routes())
        .merge(billing::routes())
        .merge(colocation::routes())
        .merge(sla::routes())
        .merge(artifacts::routes().layer(axum::extract::DefaultBodyLimit::disable()))
        .merge(models::routes())
        .merge(rollouts::routes())
        .merge(inspect::routes())
        .merge(monitor::routes())
        .merge(open311::routes())
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            ApiError::NotFound("no such endpoint: see /v1/openapi.json for the API".into())
        })
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed(
                "this endpoint does not take that method: see /v1/openapi.json".into(),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Query parameters; a malformed query string gets the JSON error body (400).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// A JSON request body; errors name the offending field.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        if !json_type {
            return Err(ApiError::BadRequest(
                "send the body as JSON with `Content-Type: application/json`".into(),
            ));
        }
        let ApiBytes(bytes) = ApiBytes::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses JSON, reporting syntax errors as 400 and shape errors as 422 with the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::BadRequest(format!("the body is not valid JSON: {inner}"))
        } else {
            let msg = inner.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            let mut field = if path == "." { String::new() } else { path };
            if let Some(missing) = msg
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
            {
                field = if field.is_empty() {
                    missing.to_owned()
                } else {
                    format!("{field}.{missing}")
                };
            }
            ApiError::invalid(field, msg)
        }
    })?;
    // Only whitespace may follow the value: `{...} garbage` is not a JSON body.
    de.end()
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}
