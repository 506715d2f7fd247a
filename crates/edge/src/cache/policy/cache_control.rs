//! Parsing of the fields caching decisions read: `Cache-Control` of requests and
//! responses (RFC 9111 §5.2), the targeted cache-control fields (RFC 9213, read through
//! [`super::sf`]), list splitting and quoted strings (RFC 9110 §5.6), `Date`,
//! `Last-Modified` and `Age` (§5.1). Defensive: any bytes parse, conservatively.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{MAX_DELTA_SECONDS, secs, sf};

/// The request's caching directives (RFC 9111 §5.2.1), from every `Cache-Control` field
/// line; `Pragma: no-cache` counts as `no-cache` when the request has no `Cache-Control`
/// at all (§5.4).
///
/// Conservative merging: the smallest `max-age`, the largest `min-fresh`, the smallest
/// `max-stale` (a bare `max-stale` only when no valued one is present). A malformed
/// `max-age` counts as `max-age=0`, a malformed `max-stale` value as `max-stale=0`; a
/// malformed `min-fresh` is ignored. Values are capped at [`MAX_DELTA_SECONDS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCacheControl {
    /// `no-cache` (§5.2.1.4): do not serve a stored response without revalidating it.
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5): do not store the response to this request.
    pub no_store: bool,
    /// `max-age=N` (§5.2.1.1): only a response whose age is at most N seconds.
    pub max_age: Option<u64>,
    /// `max-stale[=N]` (§5.2.1.2): a stale response is acceptable, `None` inside meaning
    /// stale by any amount, `Some(n)` by at most n seconds.
    pub max_stale: Option<Option<u64>>,
    /// `min-fresh=N` (§5.2.1.3): only a response that stays fresh for N more seconds.
    pub min_fresh: Option<u64>,
    /// `only-if-cached` (§5.2.1.7): the proxy answers 504 instead of contacting the
    /// origin (not evaluated here: the proxy checks this flag).
    pub only_if_cached: bool,
}

impl RequestCacheControl {
    /// Parses the request's `Cache-Control` (and `Pragma`) fields. Never fails.
    pub fn parse(headers: &HeaderMap) -> RequestCacheControl {
        let mut cc = RequestCacheControl::default();
        for d in directives(headers, &header::CACHE_CONTROL) {
            match d.name.as_str() {
                "no-cache" => cc.no_cache = true,
                "no-store" => cc.no_store = true,
                "only-if-cached" => cc.only_if_cached = true,
                "max-age" => {
                    let n = delta_seconds(d.value.as_deref()).unwrap_or(0);
                    cc.max_age = Some(cc.max_age.map_or(n, |m| m.min(n)));
                }
                "min-fresh" => {
                    if let Some(n) = delta_seconds(d.value.as_deref()) {
                        cc.min_fresh = Some(cc.min_fresh.map_or(n, |m| m.max(n)));
                    }
                }
                "max-stale" => {
                    // Bare: any staleness; a malformed value: none.
                    let this = d
                        .value
                        .as_deref()
                        .map(|v| delta_seconds(Some(v)).unwrap_or(0));
                    cc.max_stale = Some(match (cc.max_stale, this) {
                        (None, this) => this,
                        (Some(None), this) => this,
                        (Some(Some(a)), None) => Some(a),
                        (Some(Some(a)), Some(b)) => Some(a.min(b)),
                    });
                }
                _ => {}
            }
        }
        if !headers.contains_key(header::CACHE_CONTROL)
            && directives(headers, &header::PRAGMA)
                .iter()
                .any(|d| d.name == "no-cache")
        {
            cc.no_cache = true;
        }
        cc
    }
}

/// The response's caching directives (RFC 9111 §5.2.2, RFC 5861, RFC 8246), from every
/// `Cache-Control` field line.
///
/// Conservative merging: flags are or-ed (so `public` with `private` is private), and each
/// duration is the smallest one given. A malformed `max-age` or `s-maxage` (not
/// delta-seconds, or missing its value) counts as 0 — the response is stale (§4.2.1); a
/// malformed `stale-while-revalidate` or `stale-if-error` counts as 0 (no window). Values
/// are capped at [`MAX_DELTA_SECONDS`]; unknown directives are ignored (`must-understand`
/// included: `no-store` is always honoured).
///
/// The qualified forms `no-cache="field, ..."` and `private="field, ..."` (§5.2.2.4,
/// §5.2.2.7; quoted or as a token, names in any case, whitespace around them ignored) fill
/// [`no_cache_fields`](Self::no_cache_fields) and [`private_fields`](Self::private_fields)
/// instead of the flags: the response may be stored and reused, without those fields
/// (`fields_not_to_store` in `storing`). A qualified form is read as unqualified — the
/// flag is set — when its list is empty, holds anything that is not a field name, or names
/// a field this cache needs to serve and evaluate the stored response ([`KEPT_FIELDS`],
/// and any `*cache-control` field); §5.2.2.4 and §5.2.2.7 allow a cache to do so.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseCacheControl {
    /// `public` (§5.2.2.9): storable even when it normally would not be (Authorization,
    /// status codes that are not heuristically cacheable).
    pub public: bool,
    /// `private` without field names (§5.2.2.7): a shared cache must not store it.
    pub private: bool,
    /// The fields of `private="..."` (§5.2.2.7), lower-case, each once: a shared cache
    /// must not store them, and may store the rest of the response.
    pub private_fields: Vec<HeaderName>,
    /// `no-cache` without field names (§5.2.2.4): must be revalidated before every use.
    pub no_cache: bool,
    /// The fields of `no-cache="..."` (§5.2.2.4), lower-case, each once: the response may
    /// be reused without revalidation, but never with these fields.
    pub no_cache_fields: Vec<HeaderName>,
    /// `no-store` (§5.2.2.5): must not be stored.
    pub no_store: bool,
    /// `max-age=N` (§5.2.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage=N` (§5.2.2.10): for shared caches, overrides `max-age` and `Expires`, and
    /// implies `proxy-revalidate`.
    pub s_maxage: Option<u64>,
    /// `must-revalidate` (§5.2.2.2): never served stale.
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8): like `must-revalidate`, for shared caches.
    pub proxy_revalidate: bool,
    /// `immutable` (RFC 8246): will not change while fresh. Informational:
    /// [`evaluate`](super::evaluate) does not use it.
    pub immutable: bool,
    /// `stale-while-revalidate=N` (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N` (RFC 5861 §4).
    pub stale_if_error: Option<u64>,
}

impl ResponseCacheControl {
    /// Parses the response's `Cache-Control` fields. Never fails.
    pub fn parse(headers: &HeaderMap) -> ResponseCacheControl {
        ResponseCacheControl::from_directives(directives(headers, &header::CACHE_CONTROL))
    }

    /// The directives this cache obeys (RFC 9213 §2.2): those of the first field of
    /// `targeted` (in order) whose value is present, non-empty and a valid Structured Field
    /// Dictionary (RFC 8941), else those of `Cache-Control`. The flag is true when a
    /// targeted field was chosen: `Cache-Control` and `Expires` are then ignored.
    pub fn parse_targeted(
        headers: &HeaderMap,
        targeted: &[HeaderName],
    ) -> (ResponseCacheControl, bool) {
        for name in targeted {
            if let Some(d) = targeted_directives(headers, name) {
                return (ResponseCacheControl::from_directives(d), true);
            }
        }
        (ResponseCacheControl::parse(headers), false)
    }

    fn from_directives(directives: Vec<Directive>) -> ResponseCacheControl {
        fn smallest(slot: &mut Option<u64>, n: u64) {
            *slot = Some(slot.map_or(n, |m| m.min(n)));
        }
        let mut cc = ResponseCacheControl::default();
        for d in directives {
            let n = || delta_seconds(d.value.as_deref()).unwrap_or(0);
            match d.name.as_str() {
                "public" => cc.public = true,
                "private" => match d.value.as_deref().and_then(qualified_fields) {
                    Some(names) => add_fields(&mut cc.private_fields, names),
                    None => cc.private = true,
                },
                "no-cache" => match d.value.as_deref().and_then(qualified_fields) {
                    Some(names) => add_fields(&mut cc.no_cache_fields, names),
                    None => cc.no_cache = true,
                },
                "no-store" => cc.no_store = true,
                "must-revalidate" => cc.must_revalidate = true,
                "proxy-revalidate" => cc.proxy_revalidate = true,
                "immutable" => cc.immutable = true,
                "max-age" => smallest(&mut cc.max_age, n()),
                "s-maxage" => smallest(&mut cc.s_maxage, n()),
                "stale-while-revalidate" => smallest(&mut cc.stale_while_revalidate, n()),
                "stale-if-error" => smallest(&mut cc.stale_if_error, n()),
                _ => {}
            }
        }
        cc
    }
}

/// Fields a qualified `no-cache` or `private` may not remove from a stored response: those
/// that frame and describe its body, its validators, and those its freshness and variant
/// selection are computed from. A list naming one is read as the unqualified directive.
pub const KEPT_FIELDS: [HeaderName; 12] = [
    header::AGE,
    header::CACHE_CONTROL,
    header::CONTENT_ENCODING,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::CONTENT_TYPE,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::TRANSFER_ENCODING,
    header::VARY,
];

/// The field names of a qualified `no-cache` or `private` argument (already unquoted): a
/// comma-separated list, elements trimmed of whitespace, names lower-cased. `None` when
/// the list has no name, an element that is not a valid field name, or a name in
/// [`KEPT_FIELDS`] or ending in `cache-control` (the targeted fields): the directive is
/// then read as unqualified, the conservative reading.
fn qualified_fields(value: &str) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for element in split_list(value.as_bytes()) {
        let name = HeaderName::from_bytes(element).ok()?;
        if KEPT_FIELDS.contains(&name) || name.as_str().ends_with("cache-control") {
            return None;
        }
        names.push(name);
    }
    (!names.is_empty()).then_some(names)
}

/// Appends the names of `more` that `fields` does not hold yet.
fn add_fields(fields: &mut Vec<HeaderName>, more: Vec<HeaderName>) {
    for name in more {
        if !fields.contains(&name) {
            fields.push(name);
        }
    }
}

/// The directives of a targeted cache-control field (RFC 9213 §2.1): its field lines as
/// one Structured Field Dictionary (RFC 8941 §4.2.2). `None` when the field is absent,
/// empty or not a valid Dictionary (the next field of the chain is then used). A member
/// `name=?0` is dropped, `?1` or a bare name is a flag, an Integer keeps its digits, the
/// String of `no-cache` and `private` is their list of field names (`no-cache="set-cookie"`),
/// and any other value (String, Token, Decimal, Byte Sequence, Inner List) is kept as an
/// empty value, so that a duration of the wrong type counts as 0, as in `Cache-Control`,
/// and a `no-cache` or `private` of another type is unqualified. Parameters are ignored.
fn targeted_directives(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<Directive>> {
    let mut input = Vec::new();
    for line in headers.get_all(name) {
        if !input.is_empty() {
            input.push(b',');
        }
        input.extend_from_slice(line.as_bytes());
    }
    let members = sf::dictionary(&input)?;
    if members.is_empty() {
        return None;
    }
    Some(
        members
            .into_iter()
            .filter_map(|(name, value)| {
                let value = match value {
                    sf::Value::True => None,
                    sf::Value::False => return None,
                    // The field names of `no-cache` and `private`: a String, or none.
                    _ if name == "no-cache" || name == "private" => match value {
                        sf::Value::String(fields) => Some(fields),
                        _ => Some(String::new()),
                    },
                    sf::Value::Integer(digits) => Some(digits),
                    sf::Value::String(_) | sf::Value::Other => Some(String::new()),
                };
                Some(Directive { name, value })
            })
            .collect(),
    )
}

/// One directive: lower-cased name, unquoted value (`None` without `=`).
struct Directive {
    name: String,
    value: Option<String>,
}

fn directives(headers: &HeaderMap, name: &HeaderName) -> Vec<Directive> {
    let mut out = Vec::new();
    for value in headers.get_all(name) {
        for element in split_list(value.as_bytes()) {
            let (name, value) = match element.iter().position(|&b| b == b'=') {
                Some(i) => (&element[..i], Some(&element[i + 1..])),
                None => (element, None),
            };
            let name = name.trim_ascii();
            if name.is_empty() {
                continue;
            }
            out.push(Directive {
                name: String::from_utf8_lossy(name).to_ascii_lowercase(),
                value: value.map(|v| unquote(v.trim_ascii())),
            });
        }
    }
    out
}

/// Splits a field value on the commas outside quoted strings (RFC 9110 §5.6.1, §5.6.4);
/// elements are trimmed of whitespace and empty ones dropped. An unterminated quoted
/// string runs to the end.
pub(super) fn split_list(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
        } else if b == b'"' {
            quoted = true;
        } else if b == b',' {
            let element = bytes[start..i].trim_ascii();
            if !element.is_empty() {
                out.push(element);
            }
            start = i + 1;
        }
    }
    let element = bytes[start..].trim_ascii();
    if !element.is_empty() {
        out.push(element);
    }
    out
}

/// The content of a quoted string (backslash escapes resolved; anything after the closing
/// quote ignored), or `v` itself when it is not quoted.
fn unquote(v: &[u8]) -> String {
    let Some(rest) = v.strip_prefix(b"\"") else {
        return String::from_utf8_lossy(v).into_owned();
    };
    let mut out = Vec::with_capacity(rest.len());
    let mut escaped = false;
    for &b in rest {
        if escaped {
            out.push(b);
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            break;
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `delta-seconds = 1*DIGIT` (RFC 9111 §1.2.2), saturating at [`MAX_DELTA_SECONDS`];
/// `None` when missing or malformed.
fn delta_seconds(v: Option<&str>) -> Option<u64> {
    let v = v?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u64 = 0;
    for b in v.bytes() {
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
        if n >= MAX_DELTA_SECONDS {
            return Some(MAX_DELTA_SECONDS);
        }
    }
    Some(n)
}

/// The field lines of `name` as one normalised value: list elements split on commas
/// outside quotes, trimmed of whitespace, empty ones dropped, joined with `,`. `None` when
/// the field is absent (an empty field gives `Some` of nothing).
pub(crate) fn normalized_field(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<u8>> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let mut out = Vec::new();
    for line in lines {
        for element in split_list(line.as_bytes()) {
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(element);
        }
    }
    Some(out)
}

pub(super) fn parse_date(v: &HeaderValue) -> Option<SystemTime> {
    let s = v.to_str().ok()?;
    httpdate::parse_http_date(s.trim()).ok()
}

/// The first `Date` of a response, when valid.
pub(super) fn date_value(res: &HeaderMap) -> Option<SystemTime> {
    res.get(header::DATE).and_then(parse_date)
}

/// The first `Last-Modified` of a response, when valid.
pub(super) fn last_modified(res: &HeaderMap) -> Option<SystemTime> {
    res.get(header::LAST_MODIFIED).and_then(parse_date)
}

/// The `Age` value (RFC 9111 §5.1): the first member of the field (a list keeps only its
/// first member; later members and field lines are discarded), ignored — 0 — when that
/// member is not delta-seconds. A list or a bad value never makes a response older than
/// its first member says.
pub(super) fn age_value(res: &HeaderMap) -> Duration {
    let first = res
        .get_all(header::AGE)
        .iter()
        .find_map(|line| split_list(line.as_bytes()).first().copied());
    let age = first
        .and_then(|element| std::str::from_utf8(element).ok())
        .and_then(|s| delta_seconds(Some(s)))
        .unwrap_or(0);
    secs(age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::testing::*;
    use crate::cache::policy::*;

    #[test]
    fn response_cache_control_parsing() {
        let cc = ResponseCacheControl::parse(&headers(&[
            ("cache-control", "Public, MAX-AGE=60 , s-maxage=\"30\""),
            (
                "cache-control",
                "must-revalidate,proxy-revalidate, immutable",
            ),
            (
                "cache-control",
                "stale-while-revalidate=5, stale-if-error=86400, x-ext=\"a,b\"",
            ),
        ]));
        assert_eq!(
            cc,
            ResponseCacheControl {
                public: true,
                private: false,
                private_fields: Vec::new(),
                no_cache: false,
                no_cache_fields: Vec::new(),
                no_store: false,
                max_age: Some(60),
                s_maxage: Some(30),
                must_revalidate: true,
                proxy_revalidate: true,
                immutable: true,
                stale_while_revalidate: Some(5),
                stale_if_error: Some(86400),
            }
        );
        // A comma inside a quoted value does not split, and what follows is still read.
        let cc = ResponseCacheControl::parse(&headers(&[(
            "cache-control",
            "no-cache=\"set-cookie, x-a\", max-age=5",
        )]));
        assert_eq!(
            cc.no_cache_fields,
            [header::SET_COOKIE, names(&["x-a"])[0].clone()]
        );
        assert_eq!(cc.max_age, Some(5));
        // Escapes in quoted strings.
        let cc = ResponseCacheControl::parse(&headers(&[(
            "cache-control",
            r#"x="a\"b,c", max-age="7""#,
        )]));
        assert_eq!(cc.max_age, Some(7));
    }

    fn names(names: &[&str]) -> Vec<HeaderName> {
        names
            .iter()
            .map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
            .collect()
    }

    #[test]
    fn qualified_no_cache_and_private_rfc9111_5_2_2_4_and_5_2_2_7() {
        let parse = |v: &str| ResponseCacheControl::parse(&headers(&[("cache-control", v)]));
        let fields = |v: &str| {
            let cc = parse(v);
            (
                cc.no_cache,
                cc.no_cache_fields,
                cc.private,
                cc.private_fields,
            )
        };
        // Quoted lists, any case, whitespace around names and commas, empty elements.
        let cc = parse("max-age=60, no-cache=\" Set-Cookie ,X-Foo,, x-bar\"");
        assert!(!cc.no_cache);
        assert_eq!(cc.no_cache_fields, names(&["set-cookie", "x-foo", "x-bar"]));
        assert_eq!(cc.max_age, Some(60));
        // The token form (senders should quote, recipients accept both), and private.
        assert_eq!(
            fields("NO-CACHE=Set-Cookie, Private=\"X-Foo\""),
            (false, names(&["set-cookie"]), false, names(&["x-foo"]))
        );
        // Both directives, over several lines: lists join, each name once.
        let cc = ResponseCacheControl::parse(&headers(&[
            ("cache-control", "no-cache=\"x-a, x-b\", private=\"x-c\""),
            ("cache-control", "no-cache=\"X-B, x-d\", private=\"x-a\""),
        ]));
        assert_eq!(cc.no_cache_fields, names(&["x-a", "x-b", "x-d"]));
        assert_eq!(cc.private_fields, names(&["x-c", "x-a"]));
        assert!(!cc.no_cache && !cc.private);
        // An unqualified form next to a qualified one: the unqualified one holds.
        let cc = parse("no-cache=\"x-a\", no-cache");
        assert!(cc.no_cache);
        assert_eq!(cc.no_cache_fields, names(&["x-a"]));
        assert!(parse("private, private=\"x-a\"").private);
        // Read as unqualified: an empty list, something that is not a field name, a field
        // the stored response needs, a targeted cache-control field.
        for v in [
            "no-cache=\"\"",
            "no-cache=",
            "no-cache=\" , \"",
            "no-cache=\"x-a, x b\"",
            "no-cache=\"x-a; y\"",
            "no-cache=\"x-a, ETag\"",
            "no-cache=\"content-encoding\"",
            "no-cache=\"Vary\"",
            "no-cache=\"cache-control\"",
            "no-cache=\"CDN-Cache-Control\"",
        ] {
            assert_eq!(fields(v), (true, vec![], false, vec![]), "{v}");
            let private = v.replace("no-cache", "private");
            assert_eq!(fields(&private), (false, vec![], true, vec![]), "{private}");
        }
        for kept in &KEPT_FIELDS {
            assert!(parse(&format!("private=\"{kept}\"")).private, "{kept}");
        }
    }

    #[test]
    fn qualified_directives_in_targeted_fields() {
        let targeted = [HeaderName::from_static("cdn-cache-control")];
        let parse = |res: &[(&str, &str)]| {
            let (cc, used) = ResponseCacheControl::parse_targeted(&headers(res), &targeted);
            assert!(used);
            cc
        };
        // A String member is the list of field names.
        let cc = parse(&[
            ("cache-control", "no-cache"),
            (
                "cdn-cache-control",
                "max-age=60, no-cache=\"Set-Cookie, x-foo\", private=\"x-bar\"",
            ),
        ]);
        assert!(!cc.no_cache && !cc.private);
        assert_eq!(cc.no_cache_fields, names(&["set-cookie", "x-foo"]));
        assert_eq!(cc.private_fields, names(&["x-bar"]));
        // A Token, an Inner List or another type: unqualified, as an empty list is.
        for member in [
            "no-cache=set-cookie",
            "no-cache=(\"set-cookie\")",
            "no-cache=1",
            "no-cache=\"\"",
            "no-cache=\"date\"",
        ] {
            let cc = parse(&[("cdn-cache-control", member)]);
            assert!(cc.no_cache && cc.no_cache_fields.is_empty(), "{member}");
        }
        // A String means field names only for no-cache and private: max-age="60" is 0.
        assert_eq!(
            parse(&[("cdn-cache-control", "max-age=\"60\"")]).max_age,
            Some(0)
        );
        // The Cache-Control lists do not count when a targeted field is used.
        let cc = parse(&[
            ("cache-control", "no-cache=\"x-a\""),
            ("cdn-cache-control", "max-age=60"),
        ]);
        assert!(cc.no_cache_fields.is_empty());
    }

    #[test]
    fn malformed_and_duplicate_directives_are_conservative() {
        let parse = |v: &str| ResponseCacheControl::parse(&headers(&[("cache-control", v)]));
        assert_eq!(parse("max-age=abc").max_age, Some(0));
        assert_eq!(parse("max-age").max_age, Some(0));
        assert_eq!(parse("max-age=").max_age, Some(0));
        assert_eq!(parse("max-age=-5").max_age, Some(0));
        assert_eq!(parse("max-age=+5").max_age, Some(0));
        assert_eq!(parse("max-age=1.5").max_age, Some(0));
        assert_eq!(parse("s-maxage=x").s_maxage, Some(0));
        assert_eq!(parse("max-age=60, max-age=10").max_age, Some(10));
        assert_eq!(parse("max-age=10, max-age=60").max_age, Some(10));
        assert_eq!(parse("max-age=60, max-age=bad").max_age, Some(0));
        assert_eq!(
            parse("stale-while-revalidate=x").stale_while_revalidate,
            Some(0)
        );
        assert_eq!(
            parse("stale-if-error=9, stale-if-error=3").stale_if_error,
            Some(3)
        );
        // Saturation at 2^31.
        assert_eq!(
            parse("max-age=99999999999999999999999999").max_age,
            Some(MAX_DELTA_SECONDS)
        );
        assert_eq!(parse("max-age=2147483649").max_age, Some(MAX_DELTA_SECONDS));
        assert_eq!(parse("max-age=2147483647").max_age, Some(2_147_483_647));
        // Garbage is ignored.
        let cc = parse(",,, =x, \"quoted\", ;;, max-age=3,");
        assert_eq!(cc.max_age, Some(3));
        assert!(!cc.no_cache && !cc.public);
        // Both public and private: private.
        let cc = parse("public, private");
        assert!(cc.private);
        // An unterminated quote swallows the rest of the line.
        let cc = parse("x=\"abc, no-store");
        assert!(!cc.no_store);
    }

    #[test]
    fn request_cache_control_parsing() {
        let parse = |pairs: &[(&str, &str)]| RequestCacheControl::parse(&headers(pairs));
        let cc = parse(&[(
            "cache-control",
            "no-cache, no-store, max-age=5, min-fresh=3, max-stale=10, only-if-cached",
        )]);
        assert_eq!(
            cc,
            RequestCacheControl {
                no_cache: true,
                no_store: true,
                max_age: Some(5),
                max_stale: Some(Some(10)),
                min_fresh: Some(3),
                only_if_cached: true,
            }
        );
        assert_eq!(
            parse(&[("cache-control", "max-stale")]).max_stale,
            Some(None)
        );
        assert_eq!(
            parse(&[("cache-control", "max-stale, max-stale=4")]).max_stale,
            Some(Some(4))
        );
        assert_eq!(
            parse(&[("cache-control", "max-stale=4, max-stale")]).max_stale,
            Some(Some(4))
        );
        assert_eq!(
            parse(&[("cache-control", "max-stale=x")]).max_stale,
            Some(Some(0))
        );
        assert_eq!(
            parse(&[("cache-control", "min-fresh=1, min-fresh=9")]).min_fresh,
            Some(9)
        );
        assert_eq!(parse(&[("cache-control", "min-fresh=x")]).min_fresh, None);
        assert_eq!(parse(&[("cache-control", "max-age=zz")]).max_age, Some(0));
        assert_eq!(
            parse(&[
                ("cache-control", "max-age=9"),
                ("cache-control", "max-age=2")
            ])
            .max_age,
            Some(2)
        );
        // Pragma: no-cache only without Cache-Control.
        assert!(parse(&[("pragma", "no-cache")]).no_cache);
        assert!(parse(&[("pragma", "x, No-Cache")]).no_cache);
        assert!(!parse(&[("pragma", "no-cache"), ("cache-control", "max-age=5")]).no_cache);
        assert!(!parse(&[("pragma", "other")]).no_cache);
    }

    #[test]
    fn age_field_per_rfc9111_5_1() {
        let age = |v: &[&str]| {
            let mut h = HeaderMap::new();
            for line in v {
                h.append(header::AGE, HeaderValue::from_str(line).expect("value"));
            }
            age_value(&h).as_secs()
        };
        // A list keeps its first member; a bad one is ignored (0), never "very old".
        assert_eq!(age(&["0, old"]), 0);
        assert_eq!(age(&["5, 99999"]), 5);
        assert_eq!(age(&["old, 50"]), 0);
        assert_eq!(age(&["7", "900"]), 7);
        assert_eq!(age(&["-3"]), 0);
        assert_eq!(age(&["1.5"]), 0);
        assert_eq!(age(&[""]), 0);
        assert_eq!(age(&[" , 4"]), 4);
        assert_eq!(age(&[]), 0);
        // A fresh response with `Age: 0, old` stays fresh.
        let res = headers(&[("cache-control", "max-age=60"), ("age", "0, old")]);
        let storable = yes(store(&[("cache-control", "max-age=60"), ("age", "0, old")]));
        let f = Freshness::new(&storable, initial_age(&res, at(T0), at(T0)), at(T0));
        assert!(f.is_fresh(at(T0 + 59)));
    }

    #[test]
    fn targeted_cache_control_rfc9213() {
        let chain = targeted_rule(&["lingjing-cache-control", "cdn-cache-control"]);
        let with = |res: &[(&str, &str)], rule: &RuleOverride| store_with(&[], 200, res, rule);
        // CDN-Cache-Control replaces Cache-Control (not merged).
        let res = [
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::from_secs(60));
        assert_eq!(
            no(with(&res, &RuleOverride::default())),
            "response has no-store"
        );
        let res = [
            ("cache-control", "max-age=600, must-revalidate"),
            ("cdn-cache-control", "max-age=60"),
        ];
        let s = yes(with(&res, &chain));
        assert_eq!(s.lifetime, Duration::from_secs(60));
        assert!(!s.must_revalidate);
        // The first of the chain wins.
        let res = [
            ("lingjing-cache-control", "no-store"),
            ("cdn-cache-control", "max-age=60"),
        ];
        assert_eq!(no(with(&res, &chain)), "response has no-store");
        let res = [
            ("lingjing-cache-control", "max-age=5"),
            ("cdn-cache-control", "no-store"),
        ];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::from_secs(5));
        // Invalid or empty: the next field, then Cache-Control.
        for bad in [
            "max-age=\"60",
            "Max-Age=60",
            "max-age=60,",
            "max-age=1.2.3",
            "",
            "max-age=(1 2",
        ] {
            let res = [
                ("lingjing-cache-control", bad),
                ("cdn-cache-control", "max-age=7"),
            ];
            assert_eq!(
                yes(with(&res, &chain)).lifetime,
                Duration::from_secs(7),
                "{bad}"
            );
        }
        let res = [
            ("cdn-cache-control", "max-age=60 x"),
            ("cache-control", "max-age=9"),
        ];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::from_secs(9));
        // Dictionary details: parameters ignored, ?0 drops a flag, wrong types count as 0,
        // several lines form one dictionary, the last duplicate wins.
        let res = [(
            "cdn-cache-control",
            "max-age=60;x=1, no-store=?0, private=?0",
        )];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::from_secs(60));
        let res = [("cdn-cache-control", "max-age=\"60\""), ("etag", "\"a\"")];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::ZERO);
        let res = [("cdn-cache-control", "max-age=-5"), ("etag", "\"a\"")];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::ZERO);
        let res = [("cdn-cache-control", "max-age=10, max-age=20, private=?1")];
        assert_eq!(no(with(&res, &chain)), "response is private");
        let res = [
            ("cdn-cache-control", "max-age=10"),
            ("cdn-cache-control", "max-age=20"),
        ];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::from_secs(20));
        let res = [
            (
                "cdn-cache-control",
                "no-cache=(a b), stale-while-revalidate=30",
            ),
            ("etag", "\"a\""),
        ];
        let s = yes(with(&res, &chain));
        assert!(s.must_revalidate && s.lifetime.is_zero());
        // A targeted field that is used makes Expires ignored (RFC 9213 §2.2).
        let res = [
            ("cdn-cache-control", "must-revalidate"),
            ("date", &date(T0)),
            ("expires", &date(T0 + 100)),
            ("etag", "\"a\""),
        ];
        assert_eq!(yes(with(&res, &chain)).lifetime, Duration::ZERO);
        // An empty chain: only Cache-Control.
        let res = [
            ("cache-control", "max-age=3"),
            ("cdn-cache-control", "max-age=60"),
        ];
        assert_eq!(
            yes(with(&res, &RuleOverride::default())).lifetime,
            Duration::from_secs(3)
        );
    }
}
