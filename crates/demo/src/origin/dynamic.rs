//! The dynamic part of the demo site: `/api/...` (JSON, never cached) and `/slow?ms=N`
//! (a deliberately slow but cacheable answer, for request collapsing and timeouts).

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// Longest delay `/slow` accepts, in milliseconds; larger values are capped.
pub(crate) const MAX_SLOW_MS: u64 = 30_000;
/// Delay of `/slow` without `ms`.
const DEFAULT_SLOW_MS: u64 = 1_000;

/// Anything under `/api/`, any method: `{"now_ms": <unix ms>, "hits": <api requests so far>}`.
pub(crate) async fn api(State(shared): State<AppState>) -> Response {
    let hits = shared.api_hits.fetch_add(1, Ordering::SeqCst) + 1;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
        ],
        format!("{{\"now_ms\":{now_ms},\"hits\":{hits}}}"),
    )
        .into_response()
}

/// `GET /slow?ms=N`: waits `min(N, 30000)` ms, then answers a small cacheable body.
pub(crate) async fn slow(RawQuery(query): RawQuery) -> Response {
    let Some(ms) = slow_ms(query.as_deref()) else {
        return (StatusCode::BAD_REQUEST, "ms must be a whole number\n").into_response();
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    (
        [
            (CONTENT_TYPE, "text/plain; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=30"),
        ],
        format!("slow answer after {ms} ms\n"),
    )
        .into_response()
}

/// The capped delay asked by the query, `None` when `ms` is not a number.
fn slow_ms(query: Option<&str>) -> Option<u64> {
    let value = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "ms")
        .map(|(_, value)| value);
    match value {
        None => Some(DEFAULT_SLOW_MS),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .or_else(|| {
                (!v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())).then_some(u64::MAX)
            })
            .map(|ms| ms.min(MAX_SLOW_MS)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_query() {
        assert_eq!(slow_ms(None), Some(DEFAULT_SLOW_MS));
        assert_eq!(slow_ms(Some("ms=10")), Some(10));
        assert_eq!(slow_ms(Some("a=b&ms=250")), Some(250));
        assert_eq!(slow_ms(Some("ms=99999999")), Some(MAX_SLOW_MS));
        assert_eq!(
            slow_ms(Some("ms=999999999999999999999999")),
            Some(MAX_SLOW_MS)
        );
        assert_eq!(slow_ms(Some("ms=abc")), None);
        assert_eq!(slow_ms(Some("ms=")), None);
    }
}
