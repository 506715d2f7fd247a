//! The node's HTTP API: `POST /v1/infer/{slot}` (a JPEG or PNG image, or a JSON tensor
//! `{"shape": [...], "data": [...]}`) answers with the decoded result and the version that
//! made it; `POST /v1/patrol/frames` takes a patrol camera's frame (see `patrol`);
//! `GET /v1/slots` shows each slot's state; `/healthz` and `/metrics`. The node adds
//! `GET /v1/patrol/devices` (see `mqtt`).
//! Errors are JSON `{"error": {"code", "message"}}` with a status that says whose fault
//! it is (422 the input, 503 try again, 500 the model).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::patrol::Patrol;
use crate::runtime::{InferFailure, Owned, Runtime};

/// Largest request body (an image or a tensor).
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Inference requests a node takes in at once, bodies read or being read (the rest get
/// 503): with [`MAX_BODY_BYTES`], at most 1 GiB of bodies in memory.
pub const MAX_IN_FLIGHT: usize = 64;

/// The node's routes; with `patrol`, `POST /v1/patrol/frames` too (its frames count
/// against the same [`MAX_IN_FLIGHT`] as inference requests).
pub fn router(runtime: Arc<Runtime>, patrol: Option<Arc<Patrol>>) -> Router {
    let admission = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut app = Router::new()
        .route(
            "/v1/infer/{slot}",
            post(infer).layer(axum::middleware::from_fn_with_state(
                admission.clone(),
                admit,
            )),
        )
        .route("/v1/slots", get(slots))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(runtime);
    if let Some(patrol) = patrol {
        app = app.merge(crate::patrol::routes(patrol, admission));
    }
    app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

pub(crate) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

/// An error about one field of the request (`{"error": {"code", "message", "field"}}`).
pub(crate) fn field_error(
    status: StatusCode,
    code: &str,
    field: &str,
    message: impl Into<String>,
) -> Response {
    let body =
        serde_json::json!({"error": {"code": code, "message": message.into(), "field": field}});
    (status, axum::Json(body)).into_response()
}

/// `response` with `Retry-After: seconds`.
pub(crate) fn retry_after(mut response: Response, seconds: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    response
}

/// Takes a request in only while fewer than [`MAX_IN_FLIGHT`] are (before its body is
/// read).
pub(crate) async fn admit(
    State(admission): State<Arc<tokio::sync::Semaphore>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = admission.try_acquire() else {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("this node has {MAX_IN_FLIGHT} inference requests in hand: try again shortly"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    next.run(request).await
}

/// The request's media type, lowercase, without parameters ("" when none).
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

async fn infer(
    State(runtime): State<Arc<Runtime>>,
    Path(slot): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = match media_type(&headers).as_str() {
        "application/json" => Owned::Json(body),
        "image/jpeg" | "image/png" | "application/octet-stream" | "" => Owned::Image(body),
        other => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "Content-Type {other} is not taken: send an image/jpeg or image/png image, or application/json {{\"shape\": [...], \"data\": [...]}}"
                ),
            );
        }
    };
    match runtime.infer(&slot, input).await {
        Ok(inference) => {
            let version = inference.version;
            let mut response = axum::Json(inference).into_response();
            if let Ok(v) = HeaderValue::from_str(&version.to_string()) {
                response.headers_mut().insert("x-model-version", v);
            }
            response
        }
        Err(failure) => infer_failure(&slot, failure),
    }
}

/// The answer to an inference that failed on `slot`.
pub(crate) fn infer_failure(slot: &str, failure: InferFailure) -> Response {
    match failure {
        InferFailure::UnknownSlot => error(
            StatusCode::NOT_FOUND,
            "unknown_slot",
            format!("this node has no slot `{slot}` (GET /v1/slots lists them)"),
        ),
        InferFailure::NothingServing => retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_serving",
                format!("slot `{slot}` has no version serving yet (GET /v1/slots says why)"),
            ),
            "5",
        ),
        InferFailure::Busy => retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "slot `{slot}` has {} requests waiting: try again shortly",
                    crate::runtime::MAX_QUEUED
                ),
            ),
            "1",
        ),
        InferFailure::BadInput(m) => error(StatusCode::UNPROCESSABLE_ENTITY, "bad_input", m),
        InferFailure::Failed { version, message } => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "inference_failed",
            format!("version {version} failed: {message}"),
        ),
    }
}

async fn slots(State(runtime): State<Arc<Runtime>>) -> Response {
    axum::Json(runtime.reports()).into_response()
}

async fn metrics(State(runtime): State<Arc<Runtime>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        runtime.metrics().encode(),
    )
        .into_response()
}
