//! Byte ranges (RFC 9110 §14): parsing `Range` against a known length, `If-Range`, and the
//! `multipart/byteranges` body for several ranges.
//!
//! Bounds: ranges that overlap or touch are coalesced (RFC 9110 §15.3.7.2 allows it,
//! whatever their order; the result is then sorted), so the bytes of the parts never add
//! up to more than the representation: `bytes=0-,0-,…` is one range, not sixteen copies.
//! More than [`MAX_RANGES`] ranges after coalescing, or more than [`MAX_RANGE_SPECS`]
//! range specs in the header, are answered with the whole representation (200), as
//! nginx does past its `max_ranges`. A multipart answer is thus at most the
//! representation plus [`MAX_RANGES`] part headers.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http::header;

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

    /// The body, cut from the whole representation (`ranges` must lie within it).
    pub fn body(&self, whole: &Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        for (head, (s, e)) in &self.parts {
            out.put_slice(head);
            out.put_slice(&whole[*s as usize..=*e as usize]);
        }
        out.put_slice(&self.tail);
        out.freeze()
    }
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
        let m = Multipart::new(&[(0, 1), (8, 9)], Some("text/plain"), 10);
        let out = m.body(&body);
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
