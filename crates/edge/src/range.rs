//! Byte ranges (RFC 9110 §14): parsing `Range` against a known length, `If-Range`, and the
//! `multipart/byteranges` body for several ranges.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header;

/// Most ranges honoured in one request; more is treated as an abuse and answered whole.
pub const MAX_RANGES: usize = 16;

/// What to do with a request's `Range` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No (usable) Range: send the whole representation.
    Full,
    /// Inclusive byte ranges, all within the length.
    Ranges(Vec<(u64, u64)>),
    /// None of the ranges can be satisfied: 416.
    Unsatisfiable,
}

/// Interprets `Range` for a representation of `len` bytes whose validators are in
/// `stored` (for `If-Range`). Syntax errors mean "ignore the header" (§14.2).
pub fn parse(req: &HeaderMap, stored: &HeaderMap, len: u64) -> RangeRequest {
    let Some(value) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeRequest::Full;
    };
    if let Some(cond) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && !if_range_matches(cond.trim(), stored)
    {
        return RangeRequest::Full;
    }
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let mut out = Vec::new();
    let mut any = false;
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((a, b)) = part.split_once('-') else {
            return RangeRequest::Full;
        };
        let (a, b) = (a.trim(), b.trim());
        any = true;
        let range = if a.is_empty() {
            let Ok(n) = b.parse::<u64>() else {
                return RangeRequest::Full;
            };
            if n == 0 || len == 0 {
                None
            } else {
                Some((len.saturating_sub(n), len - 1))
            }
        } else {
            let Ok(start) = a.parse::<u64>() else {
                return RangeRequest::Full;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match b.parse::<u64>() {
                    Ok(e) if e >= start => e,
                    _ => return RangeRequest::Full,
                }
            };
            (start < len).then(|| (start, end.min(len - 1)))
        };
        if let Some(r) = range {
            out.push(r);
        }
    }
    if !any {
        return RangeRequest::Full;
    }
    if out.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    if out.len() > MAX_RANGES {
        return RangeRequest::Full;
    }
    RangeRequest::Ranges(out)
}

/// `If-Range` holds: a strong ETag equal to the stored one, or the stored Last-Modified.
fn if_range_matches(cond: &str, stored: &HeaderMap) -> bool {
    if cond.starts_with('"') {
        return stored
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|e| e == cond);
    }
    if cond.starts_with("W/") {
        return false;
    }
    stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|lm| lm == cond)
}

/// `Content-Range` of one range.
pub fn content_range(start: u64, end: u64, len: u64) -> String {
    format!("bytes {start}-{end}/{len}")
}

/// A `multipart/byteranges` body and its boundary.
pub fn multipart(
    body: &Bytes,
    ranges: &[(u64, u64)],
    content_type: Option<&str>,
) -> (String, Bytes) {
    let boundary = format!("lingjing-{:016x}", rand::random::<u64>());
    let len = body.len() as u64;
    let mut out = BytesMut::new();
    for &(s, e) in ranges {
        out.put_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        if let Some(ct) = content_type {
            out.put_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.put_slice(format!("Content-Range: {}\r\n\r\n", content_range(s, e, len)).as_bytes());
        out.put_slice(&body[s as usize..=e as usize]);
    }
    out.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, out.freeze())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn req(range: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).expect("value"));
        h
    }

    #[test]
    fn single_suffix_and_open_ranges() {
        let none = HeaderMap::new();
        assert_eq!(
            parse(&req("bytes=0-9"), &none, 100),
            RangeRequest::Ranges(vec![(0, 9)])
        );
        assert_eq!(
            parse(&req("bytes=90-"), &none, 100),
            RangeRequest::Ranges(vec![(90, 99)])
        );
        assert_eq!(
            parse(&req("bytes=-10"), &none, 100),
            RangeRequest::Ranges(vec![(90, 99)])
        );
        assert_eq!(
            parse(&req("bytes=-1000"), &none, 100),
            RangeRequest::Ranges(vec![(0, 99)])
        );
        assert_eq!(
            parse(&req("bytes=50-1000"), &none, 100),
            RangeRequest::Ranges(vec![(50, 99)])
        );
        assert_eq!(
            parse(&req("bytes=0-0,5-6"), &none, 100),
            RangeRequest::Ranges(vec![(0, 0), (5, 6)])
        );
        assert_eq!(
            parse(&req("bytes=100-"), &none, 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse(&req("bytes=-0"), &none, 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse(&req("bytes=5-1"), &none, 100), RangeRequest::Full);
        assert_eq!(parse(&req("items=0-1"), &none, 100), RangeRequest::Full);
        assert_eq!(parse(&req("bytes=x-1"), &none, 100), RangeRequest::Full);
        assert_eq!(parse(&HeaderMap::new(), &none, 100), RangeRequest::Full);
    }

    #[test]
    fn if_range_needs_the_same_strong_validator() {
        let mut stored = HeaderMap::new();
        stored.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        let mut r = req("bytes=0-1");
        r.insert(header::IF_RANGE, HeaderValue::from_static("\"v1\""));
        assert_eq!(parse(&r, &stored, 10), RangeRequest::Ranges(vec![(0, 1)]));
        r.insert(header::IF_RANGE, HeaderValue::from_static("\"v2\""));
        assert_eq!(parse(&r, &stored, 10), RangeRequest::Full);
    }

    #[test]
    fn multipart_body_carries_each_range() {
        let body = Bytes::from_static(b"0123456789");
        let (boundary, out) = multipart(&body, &[(0, 1), (8, 9)], Some("text/plain"));
        let text = String::from_utf8(out.to_vec()).expect("utf8");
        assert!(text.contains("Content-Range: bytes 0-1/10\r\n\r\n01"));
        assert!(text.contains("Content-Range: bytes 8-9/10\r\n\r\n89"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
