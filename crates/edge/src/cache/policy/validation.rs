//! Validation: revalidating a stored response (RFC 9111 §4.3.1), merging a 304 into it
//! (§4.3.3, §4.3.4), entity-tags and the client's own conditional requests (RFC 9110
//! §8.8.3, §13).

use http::header::{self, HeaderMap, HeaderValue};

use super::cache_control::{last_modified, parse_date, split_list};

/// The conditional headers for revalidating a stored response (RFC 9111 §4.3.1):
/// `If-None-Match` with its `ETag`, and `If-Modified-Since` with its valid
/// `Last-Modified`. The proxy sends them instead of the client's own conditionals (the
/// client gets its 304 from [`client_not_modified`]). Empty when the response has no
/// validator (then the request is a plain refetch).
pub fn revalidation_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    let etags: Vec<&HeaderValue> = stored.get_all(header::ETAG).iter().collect();
    match etags.as_slice() {
        [] => {}
        [one] => {
            out.insert(header::IF_NONE_MATCH, (*one).clone());
        }
        many => {
            let joined = many
                .iter()
                .map(|v| v.as_bytes())
                .collect::<Vec<_>>()
                .join(&b", "[..]);
            if let Ok(v) = HeaderValue::from_bytes(&joined) {
                out.insert(header::IF_NONE_MATCH, v);
            }
        }
    }
    if let Some(modified) = last_modified(stored)
        && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(modified))
    {
        out.insert(header::IF_MODIFIED_SINCE, v);
    }
    out
}

/// Whether a 304 from the origin refers to the stored response, so that [`apply_304`] may
/// update it (RFC 9111 §4.3.4): with a strong `ETag` in the 304, the stored one must be
/// the same strong tag; with a weak one, the same tag by weak comparison; with only
/// `Last-Modified`, the same date; with no validator, yes. When false, the 304 is not for
/// what is stored: refetch without conditionals.
pub fn not_modified_matches(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    if let Some(new) = not_modified.get(header::ETAG) {
        let (Some(new), Some(old)) = (
            first_etag(new.as_bytes()),
            stored
                .get(header::ETAG)
                .and_then(|v| first_etag(v.as_bytes())),
        ) else {
            return false;
        };
        return if new.weak {
            new.opaque == old.opaque
        } else {
            !old.weak && new.opaque == old.opaque
        };
    }
    if not_modified.contains_key(header::LAST_MODIFIED) {
        return match (last_modified(not_modified), last_modified(stored)) {
            (Some(new), Some(old)) => new == old,
            _ => false,
        };
    }
    true
}

/// Header fields a 304 never changes in a stored response: hop-by-hop fields (RFC 9111
/// §3.1), `Content-Length` (§3.2), and `Content-Encoding`, which the stored body depends
/// on (§3.2).
const NOT_UPDATED: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authenticate",
    "proxy-authorization",
    "content-length",
    "content-encoding",
    "content-range",
];

/// Updates the stored headers from a 304 (RFC 9111 §4.3.4, §3.2): every field present in
/// the 304 replaces all the stored lines of that field, except the hop-by-hop ones (and
/// those its `Connection` lists), `Content-Length`, `Content-Encoding` and
/// `Content-Range`; fields absent from the 304 are kept. `Date` and `Age` describe a
/// message, not the representation: when the 304 lacks them, the stored ones are removed,
/// so that the age of the refreshed response starts from the 304.
///
/// Check [`not_modified_matches`] first; afterwards run
/// [`storability`](super::storability) (with the stored status),
/// [`initial_age`](super::initial_age) (with the revalidation's request and response times)
/// and [`Freshness::new`](super::Freshness::new) on the merged headers: the 304 may have
/// changed `Cache-Control`.
pub fn apply_304(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let connection_listed: Vec<Vec<u8>> = not_modified
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| split_list(v.as_bytes()))
        .map(|name| name.to_ascii_lowercase())
        .collect();
    for name in not_modified.keys() {
        let lower = name.as_str();
        if NOT_UPDATED.contains(&lower)
            || connection_listed
                .iter()
                .any(|c| c.as_slice() == lower.as_bytes())
        {
            continue;
        }
        stored.remove(name);
        for value in not_modified.get_all(name) {
            stored.append(name.clone(), value.clone());
        }
    }
    for name in [header::DATE, header::AGE] {
        if !not_modified.contains_key(&name) {
            stored.remove(&name);
        }
    }
}

/// An entity-tag (RFC 9110 §8.8.3): weak or not, and its opaque tag without quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

/// Parses an entity-tag list (`If-None-Match`, or one `ETag`): whether it holds `*`, and
/// the tags. Lenient: an unquoted tag is taken as written up to the next comma.
fn parse_etags(v: &[u8]) -> (bool, Vec<EntityTag<'_>>) {
    let mut star = false;
    let mut tags = Vec::new();
    let mut rest = v;
    loop {
        rest = rest.trim_ascii_start();
        while let Some(r) = rest.strip_prefix(b",") {
            rest = r.trim_ascii_start();
        }
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix(b"*") {
            star = true;
            rest = r;
            continue;
        }
        let (weak, r) = match rest.strip_prefix(b"W/") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if let Some(r) = r.strip_prefix(b"\"") {
            let end = r.iter().position(|&b| b == b'"').unwrap_or(r.len());
            tags.push(EntityTag {
                weak,
                opaque: &r[..end],
            });
            rest = r.get(end + 1..).unwrap_or(&[]);
        } else {
            let end = r.iter().position(|&b| b == b',').unwrap_or(r.len());
            tags.push(EntityTag {
                weak,
                opaque: r[..end].trim_ascii(),
            });
            rest = &r[end..];
        }
    }
    (star, tags)
}

fn first_etag(v: &[u8]) -> Option<EntityTag<'_>> {
    parse_etags(v).1.into_iter().next()
}

/// Whether the client's conditional GET/HEAD is answered 304 from the stored response
/// (RFC 9110 §13.1.2, §13.1.3, §13.2.2): `If-None-Match` (`*`, or any listed tag equal to
/// the stored `ETag` by weak comparison) when present — `If-Modified-Since` is then
/// ignored; otherwise `If-Modified-Since` (a single valid date) not earlier than the
/// stored `Last-Modified`. False when there is no such condition or no validator to
/// compare with. Only for GET and HEAD; requests with `If-Match`, `If-Unmodified-Since` or
/// `If-Range` are left to the caller (forward them).
pub fn client_not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    let mut if_none_match = req.get_all(header::IF_NONE_MATCH).iter().peekable();
    if if_none_match.peek().is_some() {
        let stored_tag = stored
            .get(header::ETAG)
            .and_then(|v| first_etag(v.as_bytes()));
        for line in if_none_match {
            let (star, tags) = parse_etags(line.as_bytes());
            if star {
                return true;
            }
            if let Some(stored_tag) = stored_tag
                && tags.iter().any(|t| t.opaque == stored_tag.opaque)
            {
                return true;
            }
        }
        return false;
    }
    let mut ims = req.get_all(header::IF_MODIFIED_SINCE).iter();
    let (Some(since), None) = (ims.next(), ims.next()) else {
        return false;
    };
    match (parse_date(since), last_modified(stored)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};

    use super::*;
    use crate::cache::policy::testing::*;
    use crate::cache::policy::*;

    #[test]
    fn revalidation_headers_from_validators() {
        let lm = date(T0 - 100);
        let stored = headers(&[("etag", "W/\"abc\""), ("last-modified", &lm)]);
        let h = revalidation_headers(&stored);
        assert_eq!(h.get("if-none-match").unwrap(), "W/\"abc\"");
        assert_eq!(h.get("if-modified-since").unwrap(), lm.as_str());
        // An obsolete date format is sent as IMF-fixdate.
        let stored = headers(&[("last-modified", "Sunday, 06-Nov-94 08:49:37 GMT")]);
        assert_eq!(
            revalidation_headers(&stored)
                .get("if-modified-since")
                .unwrap(),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        let stored = headers(&[("last-modified", "not a date")]);
        assert!(revalidation_headers(&stored).is_empty());
        assert!(revalidation_headers(&HeaderMap::new()).is_empty());
        let stored = headers(&[("etag", "\"a\""), ("etag", "\"b\"")]);
        assert_eq!(
            revalidation_headers(&stored).get("if-none-match").unwrap(),
            "\"a\", \"b\""
        );
    }

    #[test]
    fn apply_304_merges_headers() {
        let mut stored = headers(&[
            ("content-type", "text/css"),
            ("content-length", "1234"),
            ("content-encoding", "gzip"),
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("date", &date(T0 - 1000)),
            ("age", "40"),
            ("x-keep", "1"),
            ("x-multi", "a"),
            ("x-multi", "b"),
        ]);
        let not_modified = headers(&[
            ("cache-control", "max-age=600"),
            ("etag", "\"v1\""),
            ("content-length", "0"),
            ("content-encoding", "br"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-multi", "c"),
            ("x-new", "n"),
            ("x-new", "m"),
        ]);
        assert!(not_modified_matches(&stored, &not_modified));
        apply_304(&mut stored, &not_modified);
        assert_eq!(stored.get("cache-control").unwrap(), "max-age=600");
        assert_eq!(stored.get("content-length").unwrap(), "1234");
        assert_eq!(stored.get("content-encoding").unwrap(), "gzip");
        assert_eq!(stored.get("content-type").unwrap(), "text/css");
        assert_eq!(stored.get("x-keep").unwrap(), "1");
        let multi: Vec<_> = stored.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["c"]);
        let new: Vec<_> = stored.get_all("x-new").iter().collect();
        assert_eq!(new, ["n", "m"]);
        for hop in ["connection", "x-hop", "keep-alive", "transfer-encoding"] {
            assert!(!stored.contains_key(hop), "{hop}");
        }
        // The 304 had no Date or Age: the old ones go, the age restarts.
        assert!(!stored.contains_key("date") && !stored.contains_key("age"));
        let s = yes(storability(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &stored,
            &RuleOverride::default(),
            at(T0),
        ));
        assert_eq!(s.lifetime, Duration::from_secs(600));
        assert_eq!(initial_age(&stored, at(T0), at(T0)), Duration::ZERO);
        // With a Date in the 304 it replaces the stored one.
        let mut stored = headers(&[("date", &date(T0 - 1000)), ("etag", "\"v1\"")]);
        apply_304(&mut stored, &headers(&[("date", &date(T0))]));
        assert_eq!(stored.get("date").unwrap(), date(T0).as_str());
    }

    #[test]
    fn not_modified_must_match_stored_validators() {
        let stored = headers(&[("etag", "\"v1\""), ("last-modified", &date(T0))]);
        assert!(not_modified_matches(
            &stored,
            &headers(&[("etag", "\"v1\"")])
        ));
        assert!(not_modified_matches(
            &stored,
            &headers(&[("etag", "W/\"v1\"")])
        ));
        assert!(!not_modified_matches(
            &stored,
            &headers(&[("etag", "\"v2\"")])
        ));
        assert!(not_modified_matches(&stored, &HeaderMap::new()));
        assert!(not_modified_matches(
            &stored,
            &headers(&[("last-modified", &date(T0))])
        ));
        assert!(!not_modified_matches(
            &stored,
            &headers(&[("last-modified", &date(T0 + 1))])
        ));
        // A strong tag in the 304 does not match a weak stored one.
        let weak = headers(&[("etag", "W/\"v1\"")]);
        assert!(!not_modified_matches(
            &weak,
            &headers(&[("etag", "\"v1\"")])
        ));
        assert!(not_modified_matches(
            &weak,
            &headers(&[("etag", "W/\"v1\"")])
        ));
        // An ETag in the 304 and none stored.
        assert!(!not_modified_matches(
            &HeaderMap::new(),
            &headers(&[("etag", "\"v1\"")])
        ));
    }

    #[test]
    fn client_conditionals() {
        let lm = T0 - 1000;
        let stored = headers(&[("etag", "\"abc\""), ("last-modified", &date(lm))]);
        let cnm = |req: &[(&str, &str)]| client_not_modified(&headers(req), &stored);
        // If-None-Match, weak comparison.
        assert!(cnm(&[("if-none-match", "\"abc\"")]));
        assert!(cnm(&[("if-none-match", "W/\"abc\"")]));
        assert!(cnm(&[("if-none-match", "\"x\", W/\"abc\"")]));
        assert!(cnm(&[
            ("if-none-match", "\"x\""),
            ("if-none-match", "\"abc\"")
        ]));
        assert!(cnm(&[("if-none-match", "*")]));
        assert!(!cnm(&[("if-none-match", "\"abcd\"")]));
        assert!(!cnm(&[("if-none-match", "\"x\", \"y\"")]));
        // If-None-Match takes precedence over If-Modified-Since.
        assert!(!cnm(&[
            ("if-none-match", "\"nope\""),
            ("if-modified-since", &date(lm + 10)),
        ]));
        assert!(cnm(&[
            ("if-none-match", "\"abc\""),
            ("if-modified-since", &date(lm - 10)),
        ]));
        // If-Modified-Since alone.
        assert!(cnm(&[("if-modified-since", &date(lm))]));
        assert!(cnm(&[("if-modified-since", &date(lm + 10))]));
        assert!(!cnm(&[("if-modified-since", &date(lm - 1))]));
        assert!(!cnm(&[("if-modified-since", "garbage")]));
        assert!(!cnm(&[
            ("if-modified-since", &date(lm)),
            ("if-modified-since", &date(lm)),
        ]));
        assert!(!cnm(&[]));
        // Weak stored tag.
        let weak = headers(&[("etag", "W/\"abc\"")]);
        assert!(client_not_modified(
            &headers(&[("if-none-match", "\"abc\"")]),
            &weak
        ));
        // Nothing to compare with.
        assert!(!client_not_modified(
            &headers(&[("if-none-match", "\"abc\"")]),
            &HeaderMap::new()
        ));
        assert!(client_not_modified(
            &headers(&[("if-none-match", "*")]),
            &HeaderMap::new()
        ));
        assert!(!client_not_modified(
            &headers(&[("if-modified-since", &date(lm))]),
            &HeaderMap::new()
        ));
    }
}
