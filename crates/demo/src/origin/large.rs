//! `GET /large.bin`: the large deterministic binary, streamed in 64 KiB chunks from the
//! generator (never held in memory), with conditional requests and single byte ranges.
//! A request for several ranges gets the whole body (200); `Range` on HEAD is ignored.

use std::convert::Infallible;
use std::io;
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
    RANGE,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::conditional::{Validators, header_value, http_date};
use super::generator::fill_large;
use super::range::{self, RangeOutcome};

/// Bytes per body chunk.
const CHUNK: u64 = 64 * 1024;
const LARGE_CACHE: &str = "public, max-age=3600";
/// Bump when the generator changes, so old cached copies do not validate.
const GENERATOR_VERSION: u32 = 1;

/// The size and validators of `/large.bin`.
pub(crate) struct Large {
    size: u64,
    etag: HeaderValue,
    last_modified: HeaderValue,
    last_modified_time: SystemTime,
}

impl Large {
    pub(crate) fn new(size: u64, started: SystemTime) -> io::Result<Self> {
        Ok(Self {
            size,
            // The content is a pure function of the size, so this tag is strong.
            etag: header_value(format!("\"large-{size}-g{GENERATOR_VERSION}\""))?,
            last_modified: http_date(started)?,
            last_modified_time: started,
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn validators(&self) -> Validators<'_> {
        Validators {
            etag: &self.etag,
            last_modified: &self.last_modified,
            last_modified_time: self.last_modified_time,
            cache_control: LARGE_CACHE,
        }
    }

    /// Status, `Content-Range` and the span `start..end` (exclusive) to send.
    fn plan(&self, method: &Method, headers: &HeaderMap) -> Plan {
        let whole = Plan::Whole;
        if *method != Method::GET || !self.validators().if_range_holds(headers) {
            return whole;
        }
        let Some(value) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
            return whole;
        };
        match range::evaluate(value, self.size) {
            RangeOutcome::Ignore | RangeOutcome::Multiple => whole,
            RangeOutcome::Unsatisfiable => Plan::Unsatisfiable,
            RangeOutcome::Single { start, end } => Plan::Partial { start, end },
        }
    }
}

enum Plan {
    Whole,
    Partial { start: u64, end: u64 },
    Unsatisfiable,
}

/// `GET` / `HEAD /large.bin`.
pub(crate) async fn large(
    State(shared): State<AppState>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let large = &shared.large;
    let validators = large.validators();
    if validators.not_modified(&headers) {
        return validators.not_modified_response();
    }
    let (status, start, end_excl, content_range) = match large.plan(&method, &headers) {
        Plan::Whole => (StatusCode::OK, 0, large.size, None),
        Plan::Partial { start, end } => (
            StatusCode::PARTIAL_CONTENT,
            start,
            end + 1,
            Some(format!("bytes {start}-{end}/{}", large.size)),
        ),
        Plan::Unsatisfiable => {
            let unsatisfied = format!("bytes */{}", large.size);
            return with_common(
                large,
                StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
                Some(unsatisfied),
            );
        }
    };
    let mut res = Response::new(body(start, end_excl));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTENT_LENGTH, HeaderValue::from(end_excl - start));
    with_common(large, res, content_range)
}

/// Adds the headers every `/large.bin` answer carries, and `Content-Range` if given.
fn with_common(large: &Large, mut res: Response, content_range: Option<String>) -> Response {
    if let Some(text) = content_range {
        match header_value(text) {
            Ok(value) => {
                res.headers_mut().insert(CONTENT_RANGE, value);
            }
            Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
    let h = res.headers_mut();
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(LARGE_CACHE));
    h.insert(ETAG, large.etag.clone());
    h.insert(LAST_MODIFIED, large.last_modified.clone());
    res
}

/// A body stream of generator bytes `start..end`, produced chunk by chunk on demand.
fn body(start: u64, end: u64) -> Body {
    let chunks = futures::stream::unfold(start, move |pos| async move {
        if pos >= end {
            return None;
        }
        let next = end.min(pos + CHUNK);
        let mut buf = vec![0u8; usize::try_from(next - pos).unwrap_or(0)];
        fill_large(pos, &mut buf);
        Some((Ok::<Bytes, Infallible>(Bytes::from(buf)), next))
    });
    Body::from_stream(chunks)
}
