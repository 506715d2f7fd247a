//! Conditional requests (RFC 9110 §13): `If-None-Match` (weak comparison),
//! `If-Modified-Since` and `If-Range`, and the 304 answer.

use std::io;
use std::time::SystemTime;

use axum::http::header::{
    CACHE_CONTROL, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// A strong entity tag for `body`: the first 128 bits of its SHA-256, quoted.
pub(crate) fn strong_etag(body: &[u8]) -> io::Result<HeaderValue> {
    let digest = Sha256::digest(body);
    header_value(format!("\"{}\"", hex::encode(&digest[..16])))
}

/// `t` as an HTTP date header value.
pub(crate) fn http_date(t: SystemTime) -> io::Result<HeaderValue> {
    header_value(httpdate::fmt_http_date(t))
}

/// A header value built at startup; invalid text is an error, never a panic.
pub(crate) fn header_value(text: String) -> io::Result<HeaderValue> {
    HeaderValue::try_from(text).map_err(io::Error::other)
}

/// The validators and caching policy of one representation.
pub(crate) struct Validators<'a> {
    /// Strong entity tag, with quotes.
    pub etag: &'a HeaderValue,
    pub last_modified: &'a HeaderValue,
    pub last_modified_time: SystemTime,
    pub cache_control: &'static str,
}

impl Validators<'_> {
    /// True when a GET/HEAD with these headers should be answered 304. `If-None-Match`
    /// takes precedence; `If-Modified-Since` counts only without it.
    pub(crate) fn not_modified(&self, headers: &HeaderMap) -> bool {
        let mut inm = headers.get_all(IF_NONE_MATCH).iter().peekable();
        if inm.peek().is_some() {
            let etag = self.etag.to_str().unwrap_or_default();
            return inm.any(|v| v.to_str().is_ok_and(|list| list_matches(list, etag)));
        }
        headers
            .get(IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| self.last_modified_time <= since)
    }

    /// True when a `Range` may be honoured: no `If-Range`, or one that names the current
    /// representation (strong comparison for tags, exact match for dates).
    pub(crate) fn if_range_holds(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(IF_RANGE) else {
            return true;
        };
        let Ok(value) = value.to_str() else {
            return false;
        };
        let value = value.trim();
        if value.starts_with('"') {
            return value == self.etag.to_str().unwrap_or_default();
        }
        if value.starts_with("W/") {
            return false;
        }
        httpdate::parse_http_date(value).is_ok_and(|date| date == self.last_modified_time)
    }

    /// The 304 answer, with the headers a 200 would have carried for caching.
    pub(crate) fn not_modified_response(&self) -> Response {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        let h = res.headers_mut();
        h.insert(ETAG, self.etag.clone());
        h.insert(LAST_MODIFIED, self.last_modified.clone());
        h.insert(CACHE_CONTROL, HeaderValue::from_static(self.cache_control));
        res
    }
}

/// Weak comparison of `etag` against an `If-None-Match` list (`*` matches anything).
fn list_matches(list: &str, etag: &str) -> bool {
    let want = opaque(etag);
    let mut rest = list.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix('*') {
            if after.trim_start().is_empty() || after.trim_start().starts_with(',') {
                return true;
            }
            return false;
        }
        let tag_start = rest.strip_prefix("W/").unwrap_or(rest);
        let Some(body) = tag_start.strip_prefix('"') else {
            return false;
        };
        let Some(close) = body.find('"') else {
            return false;
        };
        if &body[..close] == want {
            return true;
        }
        rest = &body[close + 1..];
    }
    false
}

/// The opaque part of an entity tag (without `W/` and quotes).
fn opaque(etag: &str) -> &str {
    let tag = etag.strip_prefix("W/").unwrap_or(etag);
    tag.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::list_matches;

    #[test]
    fn if_none_match_lists() {
        assert!(list_matches("\"abc\"", "\"abc\""));
        assert!(list_matches("W/\"abc\"", "\"abc\""));
        assert!(list_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(list_matches("\"a,b\",\"abc\"", "\"abc\""));
        assert!(list_matches("*", "\"abc\""));
        assert!(!list_matches("\"abcd\"", "\"abc\""));
        assert!(!list_matches("abc", "\"abc\""));
        assert!(!list_matches("", "\"abc\""));
        assert!(!list_matches("\"abc", "\"abc\""));
    }
}
