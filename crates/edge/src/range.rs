//! Byte ranges (RFC 9110 §14): parsing `Range` against a known length, `If-Range`, and
//! the one range responder, [`Ranged`], which every ranged answer of the edge goes
//! through: whole stored bodies and fills in progress (`crate::proxy`) and objects served
//! from slices (`crate::slice`). From the request's headers, the representation's headers
//! and its length it builds the status (200, 206 or 416), the headers (`Accept-Ranges`,
//! `Content-Range`, the `multipart/byteranges` `Content-Type`, `Content-Length`) and the
//! body as a list of [`Piece`]s: literal bytes (the part headers of a multipart answer)
//! and spans of the representation, which each caller reads its own way.
//!
//! Bounds: ranges that overlap or touch are coalesced (RFC 9110 §15.3.7.2 allows it,
//! whatever their order; the result is then sorted), so the bytes of the parts never add
//! up to more than the representation: `bytes=0-,0-,…` is one range, not sixteen copies.
//! More than [`MAX_RANGES`] ranges after coalescing, or more than [`MAX_RANGE_SPECS`]
//! range specs in the header, are answered with the whole representation (200), as
//! nginx does past its `max_ranges`. A multipart answer is thus at most the
//! representation plus [`MAX_RANGES`] part headers.

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

/// Most ranges honoured in one request after coalescing; more is answered whole.
pub const MAX_RANGES: usize = 16;

/// Most range specs read from one `Range` header; more is answered whole without
/// looking further.
pub const MAX_RANGE_SPECS: usize = 256;

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
    let mut specs = 0usize;
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        specs += 1;
        if specs > MAX_RANGE_SPECS {
            return RangeRequest::Full;
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
    let out = coalesce(out);
    if out.len() > MAX_RANGES {
        return RangeRequest::Full;
    }
    RangeRequest::Ranges(out)
}

/// Merges inclusive ranges that overlap or are adjacent: the result's ranges are disjoint
/// and separated by at least one byte. Ranges already apart keep the request's order;
/// once any are merged, the result is in ascending order.
pub fn coalesce(ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    if ranges.len() < 2 {
        return ranges;
    }
    let mut sorted = ranges.clone();
    sorted.sort_unstable();
    if sorted.windows(2).all(|w| w[1].0 > w[0].1.saturating_add(1)) {
        return ranges;
    }
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
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

/// A `multipart/byteranges` answer for several ranges of a representation of `total`
/// bytes: the part headers are built up front, so its length is known without the body
/// (HEAD builds none).
#[derive(Debug, Clone)]
pub struct Multipart {
    boundary: String,
    /// Each part's header block (with the delimiter before it) and its range.
    parts: Vec<(Bytes, (u64, u64))>,
    tail: Bytes,
}

impl Multipart {
    /// The answer for `ranges` (inclusive, within `total`), each part labelled with
    /// `content_type` when given.
    pub fn new(ranges: &[(u64, u64)], content_type: Option<&str>, total: u64) -> Multipart {
        let boundary = format!("lingjing-{:016x}", rand::random::<u64>());
        let parts = ranges
            .iter()
            .map(|&(s, e)| {
                let mut head = format!("\r\n--{boundary}\r\n");
                if let Some(ct) = content_type {
                    head.push_str(&format!("Content-Type: {ct}\r\n"));
                }
                head.push_str(&format!(
                    "Content-Range: {}\r\n\r\n",
                    content_range(s, e, total)
                ));
                (Bytes::from(head), (s, e))
            })
            .collect();
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        Multipart {
            boundary,
            parts,
            tail,
        }
    }

    /// The `Content-Type` of the answer.
    pub fn content_type(&self) -> String {
        format!("multipart/byteranges; boundary={}", self.boundary)
    }

    /// The body's length.
    pub fn len(&self) -> u64 {
        self.parts
            .iter()
            .map(|(head, (s, e))| head.len() as u64 + e - s + 1)
            .sum::<u64>()
            + self.tail.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Each part's header block and range, in order; then [`Multipart::tail`].
    pub fn parts(&self) -> &[(Bytes, (u64, u64))] {
        &self.parts
    }

    /// The closing delimiter.
    pub fn tail(&self) -> &Bytes {
        &self.tail
    }

    /// The body in pieces: each part's header block and span, then the closing delimiter.
    pub fn pieces(&self) -> Vec<Piece> {
        let mut out = Vec::with_capacity(self.parts.len() * 2 + 1);
        for (head, (s, e)) in &self.parts {
            out.push(Piece::Literal(head.clone()));
            out.push(Piece::Span(*s, *e));
        }
        out.push(Piece::Literal(self.tail.clone()));
        out
    }
}

/// One piece of a ranged answer's body: literal bytes, or the inclusive span
/// `[start, end]` of the representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Literal(Bytes),
    Span(u64, u64),
}

/// An answer to a request for a representation of known length, its `Range` (and
/// `If-Range`) applied: the status, the headers, and the body as [`Piece`]s (how the spans
/// are read is the caller's: from a stored body, a fill in progress, slices).
#[derive(Debug, Clone)]
pub struct Ranged {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, in order; its length is the `Content-Length` set in `headers`.
    pub pieces: Vec<Piece>,
}

impl Ranged {
    /// The answer to the request headers `req` for a representation of `total` bytes with
    /// `status` and `headers` (whose validators `If-Range` is checked against, and whose
    /// `Content-Type` labels the parts of a multipart answer). Only a 200 is ranged:
    ///
    /// * no usable `Range` (or `If-Range` not matching, or another status): `status`, the
    ///   whole representation (`Content-Length: total`);
    /// * one range: 206 with `Content-Range` and the range's `Content-Length`;
    /// * several: 206 `multipart/byteranges` (`Content-Type` with the boundary,
    ///   `Content-Length` of the whole multipart body);
    /// * none satisfiable: [`Ranged::unsatisfiable`].
    ///
    /// Every answer says `Accept-Ranges: bytes`.
    pub fn new(req: &HeaderMap, status: StatusCode, mut headers: HeaderMap, total: u64) -> Ranged {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let ranges = if status == StatusCode::OK {
            parse(req, &headers, total)
        } else {
            RangeRequest::Full
        };
        match ranges {
            RangeRequest::Full => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
                let pieces = if total == 0 {
                    Vec::new()
                } else {
                    vec![Piece::Span(0, total - 1)]
                };
                Ranged {
                    status,
                    headers,
                    pieces,
                }
            }
            RangeRequest::Unsatisfiable => Ranged::unsatisfiable(headers, total),
            RangeRequest::Ranges(rs) if rs.len() == 1 => {
                let (s, e) = rs[0];
                headers.insert(header::CONTENT_RANGE, value(&content_range(s, e, total)));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(e - s + 1));
                Ranged {
                    status: StatusCode::PARTIAL_CONTENT,
                    headers,
                    pieces: vec![Piece::Span(s, e)],
                }
            }
            RangeRequest::Ranges(rs) => {
                let ct = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let multipart = Multipart::new(&rs, ct.as_deref(), total);
                headers.insert(header::CONTENT_TYPE, value(&multipart.content_type()));
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(multipart.len()));
                Ranged {
                    status: StatusCode::PARTIAL_CONTENT,
                    headers,
                    pieces: multipart.pieces(),
                }
            }
        }
    }

    /// A 416 for a representation of `total` bytes (`Content-Range: bytes */total`), with
    /// `headers` and no body.
    pub fn unsatisfiable(mut headers: HeaderMap, total: u64) -> Ranged {
        headers.insert(header::CONTENT_RANGE, value(&format!("bytes */{total}")));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        Ranged {
            status: StatusCode::RANGE_NOT_SATISFIABLE,
            headers,
            pieces: Vec::new(),
        }
    }

    /// The spans of the body, in order.
    pub fn spans(&self) -> Vec<(u64, u64)> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Span(s, e) => Some((*s, *e)),
                Piece::Literal(_) => None,
            })
            .collect()
    }

    /// Whether the body is `multipart/byteranges` (several ranges).
    pub fn is_multipart(&self) -> bool {
        self.spans().len() > 1
    }

    /// The body's length (its `Content-Length`).
    pub fn len(&self) -> u64 {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(b) => b.len() as u64,
                Piece::Span(s, e) => e - s + 1,
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The body, cut from the whole representation `whole` (a single span shares its
    /// bytes). Spans reaching past `whole` are cut short (never a panic): the body is then
    /// shorter than its `Content-Length`.
    pub fn cut(&self, whole: &Bytes) -> Bytes {
        let span = |s: u64, e: u64| {
            let end = usize::try_from(e.saturating_add(1))
                .unwrap_or(usize::MAX)
                .min(whole.len());
            let start = usize::try_from(s).unwrap_or(usize::MAX).min(end);
            whole.slice(start..end)
        };
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [Piece::Span(s, e)] => span(*s, *e),
            pieces => {
                let mut out = BytesMut::with_capacity(usize::try_from(self.len()).unwrap_or(0));
                for p in pieces {
                    match p {
                        Piece::Literal(b) => out.put_slice(b),
                        Piece::Span(s, e) => out.put_slice(&span(*s, *e)),
                    }
                }
                out.freeze()
            }
        }
    }
}

/// A header value, or `invalid` for text that cannot be one (never the case for the
/// values built here).
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
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
    fn the_responder_answers_whole_one_range_several_or_416() {
        let mut stored = HeaderMap::new();
        stored.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let whole = Bytes::from_static(b"0123456789");
        let header = |r: &Ranged, name| {
            r.headers
                .get(name)
                .map(|v: &HeaderValue| v.to_str().expect("ascii").to_owned())
        };
        let full = Ranged::new(&HeaderMap::new(), StatusCode::OK, stored.clone(), 10);
        assert_eq!(full.status, StatusCode::OK);
        assert_eq!(full.cut(&whole), whole);
        assert_eq!(header(&full, header::CONTENT_LENGTH).as_deref(), Some("10"));
        assert_eq!(
            header(&full, header::ACCEPT_RANGES).as_deref(),
            Some("bytes")
        );
        // Another status is answered whole, Range or not.
        let other = Ranged::new(&req("bytes=0-1"), StatusCode::NOT_FOUND, stored.clone(), 10);
        assert_eq!((other.status, other.len()), (StatusCode::NOT_FOUND, 10));
        let one = Ranged::new(&req("bytes=2-4"), StatusCode::OK, stored.clone(), 10);
        assert_eq!(one.status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(one.cut(&whole), Bytes::from_static(b"234"));
        assert_eq!(
            header(&one, header::CONTENT_RANGE).as_deref(),
            Some("bytes 2-4/10")
        );
        assert_eq!(header(&one, header::CONTENT_LENGTH).as_deref(), Some("3"));
        let several = Ranged::new(&req("bytes=0-1,8-9"), StatusCode::OK, stored.clone(), 10);
        assert!(several.is_multipart());
        assert_eq!(several.spans(), vec![(0, 1), (8, 9)]);
        assert_eq!(several.cut(&whole).len() as u64, several.len());
        assert_eq!(
            header(&several, header::CONTENT_LENGTH),
            Some(several.len().to_string())
        );
        assert!(
            header(&several, header::CONTENT_TYPE)
                .expect("a Content-Type")
                .starts_with("multipart/byteranges; boundary=")
        );
        let none = Ranged::new(&req("bytes=10-"), StatusCode::OK, stored.clone(), 10);
        assert_eq!(none.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert!(none.pieces.is_empty());
        assert_eq!(
            header(&none, header::CONTENT_RANGE).as_deref(),
            Some("bytes */10")
        );
        // An empty representation has no span; a body shorter than announced is cut short.
        assert!(
            Ranged::new(&HeaderMap::new(), StatusCode::OK, stored, 0)
                .pieces
                .is_empty()
        );
        assert_eq!(
            one.cut(&Bytes::from_static(b"012")),
            Bytes::from_static(b"2")
        );
    }

    #[test]
    fn multipart_body_carries_each_range() {
        let body = Bytes::from_static(b"0123456789");
        let m = Multipart::new(&[(0, 1), (8, 9)], Some("text/plain"), 10);
        let out = Ranged {
            status: StatusCode::PARTIAL_CONTENT,
            headers: HeaderMap::new(),
            pieces: m.pieces(),
        }
        .cut(&body);
        assert_eq!(out.len() as u64, m.len());
        let text = String::from_utf8(out.to_vec()).expect("utf8");
        assert!(text.contains("Content-Range: bytes 0-1/10\r\n\r\n01"));
        assert!(text.contains("Content-Range: bytes 8-9/10\r\n\r\n89"));
        let boundary = m
            .content_type()
            .rsplit('=')
            .next()
            .expect("boundary")
            .to_owned();
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn overlapping_and_adjacent_ranges_are_coalesced() {
        let none = HeaderMap::new();
        // The classic amplification: sixteen times the whole object is one range.
        let many = format!("bytes={}", vec!["0-"; 16].join(","));
        assert_eq!(
            parse(&req(&many), &none, 1000),
            RangeRequest::Ranges(vec![(0, 999)])
        );
        assert_eq!(
            parse(&req("bytes=50-59,0-9,10-19,55-70,-5"), &none, 100),
            RangeRequest::Ranges(vec![(0, 19), (50, 70), (95, 99)])
        );
        // Disjoint ranges stay apart, in the request's order.
        assert_eq!(
            parse(&req("bytes=8-9,0-1"), &none, 10),
            RangeRequest::Ranges(vec![(8, 9), (0, 1)])
        );
        // Whatever comes in, the parts never add up to more than the object.
        for spec in ["0-,0-,0-", "-100,0-99,10-20", "0-0,0-0,1-1,0-1"] {
            let RangeRequest::Ranges(rs) = parse(&req(&format!("bytes={spec}")), &none, 100) else {
                panic!("{spec} is satisfiable");
            };
            assert!(
                rs.iter().map(|(s, e)| e - s + 1).sum::<u64>() <= 100,
                "{spec}"
            );
        }
    }

    #[test]
    fn too_many_ranges_are_answered_whole() {
        let none = HeaderMap::new();
        let sixteen: Vec<String> = (0..16).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
        let RangeRequest::Ranges(rs) =
            parse(&req(&format!("bytes={}", sixteen.join(","))), &none, 1000)
        else {
            panic!("sixteen disjoint ranges are served");
        };
        assert_eq!(rs.len(), MAX_RANGES);
        let seventeen: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 10, i * 10)).collect();
        assert_eq!(
            parse(&req(&format!("bytes={}", seventeen.join(","))), &none, 1000),
            RangeRequest::Full
        );
        // Many specs that coalesce into few are fine, up to MAX_RANGE_SPECS.
        let dup = format!("bytes={}", vec!["0-1"; MAX_RANGE_SPECS].join(","));
        assert_eq!(
            parse(&req(&dup), &none, 10),
            RangeRequest::Ranges(vec![(0, 1)])
        );
        let over = format!("bytes={}", vec!["0-1"; MAX_RANGE_SPECS + 1].join(","));
        assert_eq!(parse(&req(&over), &none, 10), RangeRequest::Full);
    }
}
