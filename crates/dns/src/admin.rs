//! The DNS server's admin HTTP server (axum), on `DnsConfig::admin`:
//! - `GET /healthz`: 200 `ok <version>` once a snapshot is applied, 503 before;
//! - `GET /metrics`: the [`DnsMetrics`](crate::metrics::DnsMetrics) as OpenMetrics text;
//! - `GET /explain?name=demo.cdn.lingjing.test&client=203.0.113.70[&subnet=32][&type=AAAA]`:
//!   the [`Explanation`](crate::Explanation) of how that client is answered, as JSON;
//!   400 with `{"error": ...}` for bad parameters, 404 for a name that is not a service
//!   name of the zone, 503 before the first snapshot.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gslb::ClientInfo;
use crate::server::DnsServer;
use crate::steer::Family;

/// The admin routes over `server`.
pub fn router(server: Arc<DnsServer>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/explain", get(explain))
        .with_state(server)
}

/// Serves the admin routes on `listener` until `stopped` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    server: Arc<DnsServer>,
    mut stopped: watch::Receiver<bool>,
) {
    let shutdown = async move {
        while !*stopped.borrow_and_update() {
            if stopped.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, router(server))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(error = %e, "dns admin server failed");
    }
}

async fn healthz(State(server): State<Arc<DnsServer>>) -> Response {
    match server.version() {
        0 => (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n").into_response(),
        v => (StatusCode::OK, format!("ok {v}\n")).into_response(),
    }
}

async fn metrics(State(server): State<Arc<DnsServer>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        server.metrics().encode(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn explain(
    State(server): State<Arc<DnsServer>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Query(params) = match query {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(name) = params.get("name").filter(|n| !n.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "give the name: ?name=SERVICE.ZONE&client=IP",
        );
    };
    let Some(client) = params.get("client") else {
        return error(
            StatusCode::BAD_REQUEST,
            "give the client's address: &client=IP",
        );
    };
    let Ok(client) = client.parse::<IpAddr>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("client `{client}` is not an IP address"),
        );
    };
    let subnet = match params.get("subnet").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let max = if client.is_ipv4() { 32 } else { 128 };
            match s.parse::<u8>() {
                Ok(len) if len <= max => Some(len),
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("subnet `{s}` is not a prefix length from 0 to {max}"),
                    );
                }
            }
        }
    };
    let family = match params
        .get("type")
        .map(|t| t.to_ascii_uppercase())
        .as_deref()
    {
        None | Some("" | "A") => Family::V4,
        Some("AAAA") => Family::V6,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("type `{other}` is not A or AAAA"),
            );
        }
    };
    if server.version() == 0 {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet");
    }
    let mut qname = name.to_ascii_lowercase();
    if !qname.ends_with('.') {
        qname.push('.');
    }
    let info = ClientInfo {
        addr: client,
        ecs: subnet.map(|len| (crate::gslb::truncate(client, len), len)),
    };
    match server.explain(&qname, family, &info) {
        Some(e) => Json(e).into_response(),
        None => {
            let zone = server.gslb().zone().to_owned();
            error(
                StatusCode::NOT_FOUND,
                format!("`{name}` is not a service name in zone {zone} (names are SERVICE.{zone})"),
            )
        }
    }
}
