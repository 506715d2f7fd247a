//! The monitor's HTTP API on the node, for devices without MQTT and for people:
//! `POST /v1/telemetry/{device}` (`Authorization: Bearer <the site's telemetry token>`, a
//! [`Telemetry`] JSON body, at most [`MAX_BODY_BYTES`]) answers 200 `{"kept", "dropped",
//! "alerts"}` once the readings are durable; 401 a missing or wrong token (or none set
//! on the node); 400 a body that is not the JSON; 404 a device of no sensor of the site;
//! 503 the node watches no site, or cannot write; 507 the outbox is full.
//! `GET /v1/monitor/alerts` lists the alerts pending or firing on the node.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lingjing_model::monitor::Telemetry;
use sha2::{Digest, Sha256};

use crate::site::{Monitor, Refused, now_ms};

/// Largest telemetry body taken.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
struct Api {
    monitor: Arc<Monitor>,
    /// SHA-256 of the site's telemetry token (none: HTTP telemetry is refused).
    token_sha256: Option<[u8; 32]>,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    (status, axum::Json(body)).into_response()
}

/// The routes; `token` is the telemetry token devices send (none: refused).
pub fn routes(monitor: Arc<Monitor>, token: Option<&str>) -> Router {
    let api = Api {
        monitor,
        token_sha256: token.map(|t| Sha256::digest(t.as_bytes()).into()),
    };
    Router::new()
        .route(
            "/v1/telemetry/{device}",
            post(telemetry).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/v1/monitor/alerts", get(alerts))
        .with_state(api)
}

/// Answers a refused input.
pub fn refused(r: Refused) -> Response {
    match r {
        Refused::NoSite => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_site",
            "this node watches no site: the control plane names one edge AI node per site in its snapshot",
        ),
        Refused::UnknownDevice => error(
            StatusCode::NOT_FOUND,
            "unknown_device",
            "no sensor of this site is reported by this device: add it with `lingjing sensor add`",
        ),
        Refused::Full(m) => error(StatusCode::INSUFFICIENT_STORAGE, "outbox_full", m),
        Refused::Failed(m) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
        Refused::Invalid(m) => error(StatusCode::BAD_REQUEST, "bad_telemetry", m),
    }
}

async fn telemetry(
    State(api): State<Api>,
    Path(device): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
    match (api.token_sha256, given) {
        (Some(want), Some(got)) if want == got => {}
        (None, _) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorised",
                "HTTP telemetry is off on this node: start it with --telemetry-token-file",
            );
        }
        _ => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorised",
                "send `Authorization: Bearer <the site's telemetry token>`",
            );
        }
    }
    let msg: Telemetry = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            api.monitor.metrics().readings("malformed", 1);
            return error(
                StatusCode::BAD_REQUEST,
                "bad_telemetry",
                format!(
                    "expected {{\"seq\": N, \"at_ms\": MS (optional), \"values\": {{\"SENSOR\": NUMBER}}}}: {e}"
                ),
            );
        }
    };
    if msg.values.len() > lingjing_model::monitor::MAX_VALUES {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_telemetry",
            format!(
                "at most {} values in a message",
                lingjing_model::monitor::MAX_VALUES
            ),
        );
    }
    match api.monitor.telemetry(None, &device, &msg, now_ms()).await {
        Ok(took) => axum::Json(took).into_response(),
        Err(r) => {
            if r == Refused::UnknownDevice {
                api.monitor.metrics().readings("unknown_device", 1);
            }
            refused(r)
        }
    }
}

async fn alerts(State(api): State<Api>) -> Response {
    let active: Vec<serde_json::Value> = api
        .monitor
        .active()
        .await
        .into_iter()
        .map(|(key, phase)| serde_json::json!({"key": key, "phase": phase}))
        .collect();
    axum::Json(serde_json::json!({
        "site": api.monitor.site().await,
        "alerts": active,
    }))
    .into_response()
}
