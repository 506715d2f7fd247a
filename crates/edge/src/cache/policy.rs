//! HTTP caching semantics for a *shared* cache, as pure functions: RFC 9111 (HTTP
//! Caching), RFC 5861 (`stale-while-revalidate`, `stale-if-error`), RFC 9213 (targeted
//! cache-control fields such as `CDN-Cache-Control`) and the conditional requests of RFC
//! 9110 §13.
//!
//! This module owns every caching decision the proxy makes and nothing else: no I/O, no
//! async, no clock (callers pass `now`, `request_time`, `response_time`). The life of a
//! response in the cache:
//!
//! 1. [`storability`] says whether an origin response may be stored, and with which
//!    freshness parameters ([`Storable`]); [`initial_age`] and [`Freshness::new`] add its age (§4.2.3).
//! 2. For each request, [`vary_signature`] over the stored [`vary_fields`] picks the
//!    variant (§4.1) and [`evaluate`] says whether it can be served as is, served stale
//!    while it is refreshed in the background, or must be revalidated first (§4.2, §4.2.4,
//!    RFC 5861). [`client_not_modified`] says whether the client gets a 304 (RFC 9110
//!    §13.1.1–§13.1.3, §13.2.2).
//! 3. Revalidation sends [`revalidation_headers`] (§4.3.1); a 304 that
//!    [`not_modified_matches`] the stored response is merged into it with [`apply_304`]
//!    (§4.3.3, §4.3.4), after which [`storability`] and [`Freshness::new`] run again on the
//!    merged headers.
//! 4. Unsafe requests invalidate ([`invalidates`], [`invalidation_targets`], §4.4).
//!
//! Parsing is defensive: any header bytes are accepted and never cause a panic; where the
//! RFC leaves a choice, the most conservative reading is taken (see
//! [`ResponseCacheControl`], [`RequestCacheControl`]).

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use lingjing_model::CacheRule;

/// The greatest delta-seconds value kept: larger ones saturate to 2^31 s (RFC 9111 §1.2.2).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// The cap of a heuristic freshness lifetime (one day; RFC 9111 §4.2.2 suggests 10% of
/// the time since Last-Modified, and ages over a day call for caution).
pub const MAX_HEURISTIC_LIFETIME: Duration = Duration::from_secs(86_400);

/// The share of (Date − Last-Modified) taken as heuristic lifetime (RFC 9111 §4.2.2).
const HEURISTIC_FRACTION: u32 = 10;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n.min(MAX_DELTA_SECONDS))
}

fn cap(d: Duration) -> Duration {
    d.min(Duration::from_secs(MAX_DELTA_SECONDS))
}

// ---------------------------------------------------------------------------------------
// Cache-Control parsing
// ---------------------------------------------------------------------------------------

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
/// malformed `stale-while-revalidate` or `stale-if-error` counts as 0 (no window). The
/// qualified forms `no-cache="field"` and `private="field"` are treated as unqualified
/// (§5.2.2.4, §5.2.2.7 allow it). Values are capped at [`MAX_DELTA_SECONDS`]; unknown
/// directives are ignored (`must-understand` included: `no-store` is always honoured).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseCacheControl {
    /// `public` (§5.2.2.9): storable even when it normally would not be (Authorization,
    /// status codes that are not heuristically cacheable).
    pub public: bool,
    /// `private` (§5.2.2.7): a shared cache must not store it.
    pub private: bool,
    /// `no-cache` (§5.2.2.4): must be revalidated before every use.
    pub no_cache: bool,
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
    /// `immutable` (RFC 8246): will not change while fresh. Informational: [`evaluate`]
    /// does not use it.
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
                "private" => cc.private = true,
                "no-cache" => cc.no_cache = true,
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

/// The directives of a targeted cache-control field (RFC 9213 §2.1): its field lines as
/// one Structured Field Dictionary (RFC 8941 §4.2.2). `None` when the field is absent,
/// empty or not a valid Dictionary (the next field of the chain is then used). A member
/// `name=?0` is dropped, `?1` or a bare name is a flag, an Integer keeps its digits, and
/// any other value (String, Token, Decimal, Byte Sequence, Inner List) is kept as an
/// empty value, so that a duration of the wrong type counts as 0, as in `Cache-Control`.
/// Parameters are ignored.
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
                    sf::Value::Integer(digits) => Some(digits),
                    sf::Value::Other => Some(String::new()),
                };
                Some(Directive { name, value })
            })
            .collect(),
    )
}

/// Just enough of RFC 8941 (Structured Field Values) to validate and read a Dictionary.
mod sf {
    /// A member's value, as far as cache directives care.
    #[derive(Debug, PartialEq, Eq)]
    pub(super) enum Value {
        /// Boolean true, or a bare key.
        True,
        /// Boolean false.
        False,
        /// An Integer, as written (`-5`, `60`).
        Integer(String),
        /// Any other Item or an Inner List.
        Other,
    }

    struct Parser<'a> {
        input: &'a [u8],
        pos: usize,
    }

    /// Parses a Dictionary (RFC 8941 §4.2.2); `None` when the input is not one. A
    /// repeated key keeps its last value, at its first place.
    pub(super) fn dictionary(input: &[u8]) -> Option<Vec<(String, Value)>> {
        let mut p = Parser { input, pos: 0 };
        p.skip(|b| b == b' ');
        let mut out: Vec<(String, Value)> = Vec::new();
        while p.peek().is_some() {
            let key = p.key()?;
            let value = if p.eat(b'=') {
                p.item_or_inner_list()?
            } else {
                p.parameters()?;
                Value::True
            };
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => out.push((key, value)),
            }
            p.skip(|b| b == b' ' || b == b'\t');
            if p.peek().is_none() {
                break;
            }
            if !p.eat(b',') {
                return None;
            }
            p.skip(|b| b == b' ' || b == b'\t');
            // Something must follow the comma.
            p.peek()?;
        }
        Some(out)
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.input.get(self.pos).copied()
        }

        fn eat(&mut self, b: u8) -> bool {
            let hit = self.peek() == Some(b);
            if hit {
                self.pos += 1;
            }
            hit
        }

        fn skip(&mut self, f: impl Fn(u8) -> bool) {
            while self.peek().is_some_and(&f) {
                self.pos += 1;
            }
        }

        fn key(&mut self) -> Option<String> {
            let start = self.pos;
            if !self
                .peek()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'*')
            {
                return None;
            }
            self.skip(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'.' | b'*')
            });
            Some(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
        }

        fn item_or_inner_list(&mut self) -> Option<Value> {
            if self.eat(b'(') {
                loop {
                    self.skip(|b| b == b' ');
                    if self.eat(b')') {
                        break;
                    }
                    self.bare_item()?;
                    self.parameters()?;
                    if !matches!(self.peek(), Some(b' ' | b')')) {
                        return None;
                    }
                }
                self.parameters()?;
                return Some(Value::Other);
            }
            let value = self.bare_item()?;
            self.parameters()?;
            Some(value)
        }

        fn parameters(&mut self) -> Option<()> {
            while self.eat(b';') {
                self.skip(|b| b == b' ');
                self.key()?;
                if self.eat(b'=') {
                    self.bare_item()?;
                }
            }
            Some(())
        }

        fn bare_item(&mut self) -> Option<Value> {
            match self.peek()? {
                b'-' | b'0'..=b'9' => self.number(),
                b'"' => self.string(),
                b':' => self.byte_sequence(),
                b'?' => {
                    self.pos += 1;
                    match self.peek()? {
                        b'1' => {
                            self.pos += 1;
                            Some(Value::True)
                        }
                        b'0' => {
                            self.pos += 1;
                            Some(Value::False)
                        }
                        _ => None,
                    }
                }
                b if b.is_ascii_alphabetic() || b == b'*' => {
                    self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b));
                    Some(Value::Other)
                }
                _ => None,
            }
        }

        /// An Integer (at most 15 digits) or a Decimal (at most 12 digits, `.`, 1 to 3).
        fn number(&mut self) -> Option<Value> {
            let start = self.pos;
            self.eat(b'-');
            let int_start = self.pos;
            self.skip(|b| b.is_ascii_digit());
            let int_digits = self.pos - int_start;
            if int_digits == 0 {
                return None;
            }
            if !self.eat(b'.') {
                if int_digits > 15 {
                    return None;
                }
                let digits = String::from_utf8_lossy(&self.input[start..self.pos]).into_owned();
                return Some(Value::Integer(digits));
            }
            let frac_start = self.pos;
            self.skip(|b| b.is_ascii_digit());
            let frac_digits = self.pos - frac_start;
            if int_digits > 12 || frac_digits == 0 || frac_digits > 3 {
                return None;
            }
            Some(Value::Other)
        }

        fn string(&mut self) -> Option<Value> {
            self.pos += 1;
            loop {
                match self.peek()? {
                    b'"' => {
                        self.pos += 1;
                        return Some(Value::Other);
                    }
                    b'\\' => {
                        self.pos += 1;
                        if !matches!(self.peek()?, b'"' | b'\\') {
                            return None;
                        }
                        self.pos += 1;
                    }
                    0x20..=0x7e => self.pos += 1,
                    _ => return None,
                }
            }
        }

        fn byte_sequence(&mut self) -> Option<Value> {
            self.pos += 1;
            self.skip(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            self.eat(b':').then_some(Value::Other)
        }
    }
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
pub(crate) fn split_list(bytes: &[u8]) -> Vec<&[u8]> {
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

fn parse_date(v: &HeaderValue) -> Option<SystemTime> {
    let s = v.to_str().ok()?;
    httpdate::parse_http_date(s.trim()).ok()
}

/// The first `Date` of a response, when valid.
fn date_value(res: &HeaderMap) -> Option<SystemTime> {
    res.get(header::DATE).and_then(parse_date)
}

/// The first `Last-Modified` of a response, when valid.
fn last_modified(res: &HeaderMap) -> Option<SystemTime> {
    res.get(header::LAST_MODIFIED).and_then(parse_date)
}

/// The `Age` value (RFC 9111 §5.1): the first member of the field (a list keeps only its
/// first member; later members and field lines are discarded), ignored — 0 — when that
/// member is not delta-seconds. A list or a bad value never makes a response older than
/// its first member says.
fn age_value(res: &HeaderMap) -> Duration {
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

// ---------------------------------------------------------------------------------------
// Storing responses
// ---------------------------------------------------------------------------------------

/// What a tenant's [`CacheRule`] and service change about caching: a fixed freshness
/// lifetime, no caching at all, the targeted cache-control fields obeyed. The default
/// changes nothing (and obeys only `Cache-Control`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOverride {
    /// Replaces the freshness lifetime (and `no-cache`) the origin's headers give, for
    /// heuristically cacheable status codes; capped at [`MAX_DELTA_SECONDS`].
    pub ttl: Option<Duration>,
    /// Never store matching responses.
    pub bypass: bool,
    /// Store responses that carry `Set-Cookie` (the cookie is stripped from what is
    /// stored); off, they are not stored.
    pub cache_set_cookie: bool,
    /// The targeted cache-control fields (RFC 9213) obeyed instead of `Cache-Control`,
    /// first present and valid one wins (the service's `targeted_cache_control`).
    pub targeted: std::sync::Arc<[HeaderName]>,
}

impl From<&CacheRule> for RuleOverride {
    fn from(rule: &CacheRule) -> RuleOverride {
        RuleOverride {
            ttl: rule.ttl_secs.map(secs),
            bypass: rule.bypass,
            cache_set_cookie: rule.cache_set_cookie,
            targeted: std::sync::Arc::default(),
        }
    }
}

impl From<Option<&CacheRule>> for RuleOverride {
    fn from(rule: Option<&CacheRule>) -> RuleOverride {
        rule.map(RuleOverride::from).unwrap_or_default()
    }
}

/// The freshness parameters of a storable response (see [`storability`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storable {
    /// The freshness lifetime (RFC 9111 §4.2.1), counted from the response's age, not from
    /// when it was stored. Zero: stale at once, revalidated before every use.
    pub lifetime: Duration,
    /// How long after becoming stale it may be served while it is refreshed in the
    /// background (RFC 5861 §3); zero: not at all.
    pub stale_while_revalidate: Duration,
    /// How long after becoming stale it may be served when the origin fails (RFC 5861 §4).
    pub stale_if_error: Duration,
    /// Never served stale, whatever the windows above say (`must-revalidate`,
    /// `proxy-revalidate`, `s-maxage` or `no-cache`; §4.2.4, §5.2.2).
    pub must_revalidate: bool,
    /// The lifetime is a heuristic one (§4.2.2), from `Last-Modified`.
    pub heuristic: bool,
}

/// Whether a response may be stored (RFC 9111 §3), and how fresh it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storability {
    /// Not stored, with a short reason for logs and the `Cache-Status` detail.
    No(&'static str),
    /// Stored, with these freshness parameters.
    Yes(Storable),
}

/// Status codes that are heuristically cacheable (RFC 9110 §15.1), less 206 (ranges are
/// stored elsewhere).
pub fn is_heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether this shared cache may store the response to a request, and with which
/// freshness parameters (RFC 9111 §3, §3.5, §4.2.1, §4.2.2, §5.2).
///
/// In order, the response is not stored when:
/// * the method is not GET (HEAD, POST and the rest are not stored here);
/// * `rule.bypass`;
/// * the request has `Cache-Control: no-store` (§5.2.1.5);
/// * the status is 1xx, 206 (ranges are handled elsewhere) or 304 (it updates a stored
///   response: [`apply_304`]);
/// * the response has `no-store` or `private` (§5.2.2.5, §5.2.2.7; a tenant's TTL does not
///   override either);
/// * the request has `Authorization` and the response has none of `public`, `s-maxage`,
///   `must-revalidate` (§3.5);
/// * the response has `Vary: *` (§4.1);
/// * the response has `Set-Cookie` and `rule.cache_set_cookie` is off (a product rule: a
///   shared cache must not hand one client's cookie to the next; with the rule on, the
///   proxy stores the response without its `Set-Cookie`).
///
/// The response directives are those of the first targeted field of `rule.targeted`
/// (RFC 9213, e.g. `Lingjing-Cache-Control`, `CDN-Cache-Control`) that is present and a
/// valid Structured Field Dictionary, instead of `Cache-Control` and `Expires`; without one,
/// `Cache-Control`'s ([`ResponseCacheControl::parse_targeted`]).
///
/// Otherwise the lifetime is, first match:
/// * `rule.ttl` when the status is heuristically cacheable ([`is_heuristically_cacheable`];
///   a tenant's TTL does not pin a 5xx or a 302 in the cache): that lifetime, even without
///   validators, and despite a `no-cache` or `max-age` of the origin;
/// * `no-cache` (§5.2.2.4): zero with `must_revalidate`, stored only with a validator
///   (`ETag` or `Last-Modified`);
/// * explicit freshness (§4.2.1): `s-maxage`, else `max-age`, else `Expires` − `Date` (the
///   `now` when there is no valid `Date`); an invalid `Expires` (or several different
///   ones) means already expired;
/// * heuristic freshness (§4.2.2), only for heuristically cacheable status codes or
///   `public` responses: 10% of (`Date` − `Last-Modified`), capped at
///   [`MAX_HEURISTIC_LIFETIME`];
/// * zero when there is a validator (`ETag` only: revalidated on every use).
///
/// A status code that is not heuristically cacheable (and not `public`) needs explicit
/// freshness; a response with neither freshness information nor a validator is not
/// stored ("no freshness information or validator"), nor one that would be stale on
/// arrival with no validator and no stale window to use it in. `must_revalidate` is set by
/// `must-revalidate`, `proxy-revalidate`, `s-maxage` (§5.2.2.10) and `no-cache`.
///
/// `now` stands for the time the response was received, used where `Date` is missing.
pub fn storability(
    method: &Method,
    req: &HeaderMap,
    status: StatusCode,
    res: &HeaderMap,
    rule: &RuleOverride,
    now: SystemTime,
) -> Storability {
    if method != Method::GET {
        return Storability::No("method is not GET");
    }
    if rule.bypass {
        return Storability::No("bypassed by a cache rule");
    }
    if RequestCacheControl::parse(req).no_store {
        return Storability::No("request has no-store");
    }
    if status.is_informational() {
        return Storability::No("interim response");
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Storability::No("partial content");
    }
    if status == StatusCode::NOT_MODIFIED {
        return Storability::No("304 is not stored");
    }
    let (cc, targeted) = ResponseCacheControl::parse_targeted(res, &rule.targeted);
    if cc.no_store {
        return Storability::No("response has no-store");
    }
    if cc.private {
        return Storability::No("response is private");
    }
    if req.contains_key(header::AUTHORIZATION)
        && !(cc.public || cc.s_maxage.is_some() || cc.must_revalidate)
    {
        return Storability::No("request has Authorization");
    }
    if vary_fields(res).is_err() {
        return Storability::No("Vary: *");
    }
    if res.contains_key(header::SET_COOKIE) && !rule.cache_set_cookie {
        return Storability::No("response sets a cookie");
    }

    let has_validator = res.contains_key(header::ETAG) || last_modified(res).is_some();
    let must_revalidate = cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some();
    let stale_while_revalidate = secs(cc.stale_while_revalidate.unwrap_or(0));
    let stale_if_error = secs(cc.stale_if_error.unwrap_or(0));
    let storable = |lifetime, must_revalidate, heuristic| Storable {
        lifetime,
        stale_while_revalidate,
        stale_if_error,
        must_revalidate,
        heuristic,
    };
    let heuristic_status = is_heuristically_cacheable(status);

    if let Some(ttl) = rule.ttl
        && heuristic_status
    {
        return useful(storable(cap(ttl), must_revalidate, false), has_validator);
    }
    let explicit = explicit_lifetime(&cc, targeted, res, now);
    if explicit.is_none() && !heuristic_status && !cc.public {
        return Storability::No("status not cacheable without explicit freshness");
    }
    if explicit.is_none() && !has_validator {
        return Storability::No("no freshness information or validator");
    }
    if cc.no_cache {
        if !has_validator {
            return Storability::No("no-cache without a validator");
        }
        return Storability::Yes(storable(Duration::ZERO, true, false));
    }
    let (lifetime, heuristic) = match explicit {
        Some(lifetime) => (lifetime, false),
        None => match heuristic_lifetime(res, now) {
            Some(lifetime) => (lifetime, true),
            None => (Duration::ZERO, false),
        },
    };
    useful(
        storable(lifetime, must_revalidate, heuristic),
        has_validator,
    )
}

/// Refuses what could never be used: stale on arrival, nothing to revalidate with, and no
/// stale window to serve it in.
fn useful(s: Storable, has_validator: bool) -> Storability {
    let no_window = s.stale_while_revalidate.is_zero() && s.stale_if_error.is_zero();
    if s.lifetime.is_zero() && !has_validator && (s.must_revalidate || no_window) {
        Storability::No("stale on arrival and no validator")
    } else {
        Storability::Yes(s)
    }
}

/// The explicit freshness lifetime (RFC 9111 §4.2.1): `s-maxage`, `max-age`, or
/// `Expires` − `Date` (not when the directives came from a targeted field, `targeted`:
/// RFC 9213 §2.2 ignores `Expires` then); `None` when the response has none of them.
fn explicit_lifetime(
    cc: &ResponseCacheControl,
    targeted: bool,
    res: &HeaderMap,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(s) = cc.s_maxage {
        return Some(secs(s));
    }
    if let Some(m) = cc.max_age {
        return Some(secs(m));
    }
    if targeted {
        return None;
    }
    let mut all = res.get_all(header::EXPIRES).iter();
    let first = all.next()?;
    let expires = parse_date(first);
    if all.any(|other| parse_date(other) != expires) {
        // Several different Expires: "the response should be considered stale" (§4.2.1).
        return Some(Duration::ZERO);
    }
    let Some(expires) = expires else {
        // An invalid date, e.g. "0", represents a time in the past (§5.3).
        return Some(Duration::ZERO);
    };
    let date = date_value(res).unwrap_or(now);
    Some(cap(expires.duration_since(date).unwrap_or(Duration::ZERO)))
}

/// The heuristic lifetime (RFC 9111 §4.2.2): 10% of the time between `Last-Modified` and
/// `Date` (or `now`), at most [`MAX_HEURISTIC_LIFETIME`]; `None` without a valid
/// `Last-Modified`.
fn heuristic_lifetime(res: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let modified = last_modified(res)?;
    let date = date_value(res).unwrap_or(now);
    let since = date.duration_since(modified).unwrap_or(Duration::ZERO);
    Some((since / HEURISTIC_FRACTION).min(MAX_HEURISTIC_LIFETIME))
}

// ---------------------------------------------------------------------------------------
// Freshness and age
// ---------------------------------------------------------------------------------------

/// The freshness of a stored response: everything [`evaluate`] needs, kept with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The freshness lifetime (RFC 9111 §4.2.1).
    pub lifetime: Duration,
    /// The corrected initial age when it was received (§4.2.3).
    pub initial_age: Duration,
    /// When it was received (`response_time`); its resident time counts from here.
    pub stored_at: SystemTime,
    /// The stale-while-revalidate window (RFC 5861 §3).
    pub stale_while_revalidate: Duration,
    /// The stale-if-error window (RFC 5861 §4).
    pub stale_if_error: Duration,
    /// Never served stale (§4.2.4, §5.2.2.2).
    pub must_revalidate: bool,
}

impl Freshness {
    /// The freshness of a response that [`storability`] found storable, received at
    /// `stored_at` (its `response_time`) with the corrected initial age `initial_age`
    /// (from [`initial_age`]).
    pub fn new(storable: &Storable, initial_age: Duration, stored_at: SystemTime) -> Freshness {
        Freshness {
            lifetime: storable.lifetime,
            initial_age,
            stored_at,
            stale_while_revalidate: storable.stale_while_revalidate,
            stale_if_error: storable.stale_if_error,
            must_revalidate: storable.must_revalidate,
        }
    }

    /// The current age (§4.2.3): `corrected_initial_age + resident_time`, the resident time
    /// counting from `stored_at` (zero if `now` is earlier).
    pub fn age(&self, now: SystemTime) -> Duration {
        let resident = now.duration_since(self.stored_at).unwrap_or(Duration::ZERO);
        self.initial_age.saturating_add(resident)
    }

    /// Fresh: the lifetime exceeds the current age (§4.2).
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.lifetime > self.age(now)
    }

    /// How long it stays fresh (zero when stale).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.lifetime.saturating_sub(self.age(now))
    }

    /// How long it has been stale (zero when fresh).
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.lifetime)
    }
}

/// The corrected initial age of a response (RFC 9111 §4.2.3):
///
/// ```text
/// apparent_age          = max(0, response_time - date_value)
/// response_delay        = response_time - request_time
/// corrected_age_value   = age_value + response_delay
/// corrected_initial_age = max(apparent_age, corrected_age_value)
/// ```
///
/// with `date_value` the `Date` (`response_time` when missing or invalid) and `age_value`
/// the `Age` (0 when missing or invalid). `request_time` is when the request was sent
/// upstream (origin or parent), `response_time` when the response header arrived. Clock
/// skew never makes an age negative; the result is capped at [`MAX_DELTA_SECONDS`].
pub fn initial_age(
    res: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let date = date_value(res).unwrap_or(response_time);
    let apparent_age = response_time.duration_since(date).unwrap_or(Duration::ZERO);
    let response_delay = response_time
        .duration_since(request_time)
        .unwrap_or(Duration::ZERO);
    let corrected_age_value = age_value(res).saturating_add(response_delay);
    cap(apparent_age.max(corrected_age_value))
}

/// What to do with a stored response for a request (see [`evaluate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// Serve it without contacting the origin: fresh, or stale within the client's
    /// `max-stale`.
    Fresh,
    /// Serve it now, stale, and refresh it in the background (RFC 5861 §3).
    StaleWhileRevalidate,
    /// Revalidate (or refetch) before serving.
    Revalidate {
        /// When the origin cannot be reached or answers 500, 502, 503 or 504, the stored
        /// response may be served instead (fresh, or stale within `stale-if-error`, RFC
        /// 5861 §4); false: answer with the error.
        stale_if_error: bool,
    },
}

/// Whether the stored response may answer the request as it is (RFC 9111 §4.2, §4.2.4,
/// §5.2.1, RFC 5861), in order:
///
/// 1. request `no-cache`, or an age above the request's `max-age`: revalidate;
/// 2. fresh: served, unless it will not stay fresh for the request's `min-fresh`;
/// 3. stale and `must_revalidate`: revalidate, never served stale, not even on error;
/// 4. stale and the request has `min-fresh`: revalidate;
/// 5. stale within `stale-while-revalidate`: serve stale and refresh;
/// 6. stale within the request's `max-stale`: served;
/// 7. otherwise revalidate.
///
/// Whenever it says revalidate, `stale_if_error` is true when the response is fresh or,
/// without `must_revalidate`, stale by no more than its `stale-if-error` window.
/// `only-if-cached` is left to the caller. To ignore the client's directives (as many
/// CDNs do to shield origins from reloads), pass `RequestCacheControl::default()`.
pub fn evaluate(f: &Freshness, req: &RequestCacheControl, now: SystemTime) -> Evaluation {
    let within = |staleness: Duration, window: Duration| !window.is_zero() && staleness <= window;
    let age = f.age(now);
    let fresh = f.lifetime > age;
    let staleness = age.saturating_sub(f.lifetime);
    let revalidate = Evaluation::Revalidate {
        stale_if_error: fresh || (!f.must_revalidate && within(staleness, f.stale_if_error)),
    };
    if req.no_cache {
        return revalidate;
    }
    if req.max_age.is_some_and(|max_age| age > secs(max_age)) {
        return revalidate;
    }
    if fresh {
        if req
            .min_fresh
            .is_some_and(|min_fresh| f.lifetime - age < secs(min_fresh))
        {
            return revalidate;
        }
        return Evaluation::Fresh;
    }
    if f.must_revalidate || req.min_fresh.is_some() {
        return revalidate;
    }
    if within(staleness, f.stale_while_revalidate) {
        return Evaluation::StaleWhileRevalidate;
    }
    match req.max_stale {
        Some(None) => Evaluation::Fresh,
        Some(Some(max_stale)) if staleness <= secs(max_stale) => Evaluation::Fresh,
        _ => revalidate,
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

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
/// Check [`not_modified_matches`] first; afterwards run [`storability`] (with the stored
/// status), [`initial_age`] (with the revalidation's request and response times) and
/// [`Freshness::new`] on the merged headers: the 304 may have changed `Cache-Control`.
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

// ---------------------------------------------------------------------------------------
// Vary
// ---------------------------------------------------------------------------------------

/// A response with `Vary: *` (RFC 9111 §4.1): it never matches a later request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaryStar;

impl std::fmt::Display for VaryStar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vary: * matches no request")
    }
}

impl std::error::Error for VaryStar {}

/// The request fields a response varies on (RFC 9111 §4.1): the names in all its `Vary`
/// lines, lower-cased, deduplicated and sorted (so that the order the origin lists them
/// in does not matter). `Err(VaryStar)` for `*`. An element that is not a valid field
/// name is skipped: no request can carry such a field, so it matches all alike.
pub fn vary_fields(res: &HeaderMap) -> Result<Vec<HeaderName>, VaryStar> {
    let mut fields: Vec<HeaderName> = Vec::new();
    for line in res.get_all(header::VARY) {
        for element in split_list(line.as_bytes()) {
            if element == b"*" {
                return Err(VaryStar);
            }
            if let Ok(name) = HeaderName::from_bytes(element)
                && !fields.contains(&name)
            {
                fields.push(name);
            }
        }
    }
    fields.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(fields)
}

/// The secondary key of a request for a response varying on `fields` (RFC 9111 §4.1): a
/// stored variant is selected when its signature equals the request's. One ` name=value`
/// per field (space separated), the value normalised (field lines and list elements
/// joined with `,`, whitespace around elements trimmed; case kept) and escaped like a
/// cache key; a missing field is ` name` alone, so it differs from an empty one. Empty for
/// no fields. The proxy may normalise fields like `Accept-Encoding` itself beforehand.
pub fn vary_signature(fields: &[HeaderName], req: &HeaderMap) -> String {
    let mut out = String::new();
    for (i, name) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(name.as_str());
        if let Some(value) = normalized_field(req, name) {
            out.push('=');
            super::key::push_escaped(&mut out, &value, &[]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Invalidation
// ---------------------------------------------------------------------------------------

/// Whether a response to `method` invalidates the stored responses for the target URI
/// (RFC 9111 §4.4): an unsafe method (anything but GET, HEAD, OPTIONS, TRACE — unknown
/// methods included) answered with a non-error status (2xx or 3xx). The caller also
/// invalidates the [`invalidation_targets`].
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    !method.is_safe() && (status.is_success() || status.is_redirection())
}

/// The paths (with query, without fragment) named by the response's `Location` and
/// `Content-Location` that are on `host` (RFC 9111 §4.4: a URI with another host must not
/// be invalidated): absolute paths (`/x`), and absolute or network-path URIs
/// (`https://host/x`, `//host/x`) whose host equals `host`'s host, case-insensitively
/// (ports are not compared). Relative references like `x/y` are skipped (they would need
/// the request's URI). Deduplicated; those from `Location` first, then `Content-Location`.
pub fn invalidation_targets(host: &str, res: &HeaderMap) -> Vec<String> {
    let own_host = own_host(host);
    let mut out: Vec<String> = Vec::new();
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        for value in res.get_all(name) {
            let Ok(s) = value.to_str() else { continue };
            if let Some(path) = same_host_path(own_host, s.trim())
                && !out.contains(&path)
            {
                out.push(path);
            }
        }
    }
    out
}

/// The host of a `host[:port]` string (IPv6 literals keep their brackets).
fn own_host(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

fn same_host_path(host: &str, reference: &str) -> Option<String> {
    let reference = reference.split_once('#').map_or(reference, |(r, _)| r);
    if reference.starts_with('/') && !reference.starts_with("//") {
        return Some(reference.to_string());
    }
    let uri: Uri = if reference.starts_with("//") {
        format!("http:{reference}").parse().ok()?
    } else {
        reference.parse().ok()?
    };
    let scheme = uri.scheme_str()?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = uri.authority()?;
    if !authority.host().eq_ignore_ascii_case(host) {
        return None;
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Some(if path.is_empty() { "/" } else { path }.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn date(s: u64) -> String {
        httpdate::fmt_http_date(at(s))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn store(res: &[(&str, &str)]) -> Storability {
        store_with(&[], 200, res, &RuleOverride::default())
    }

    fn store_with(
        req: &[(&str, &str)],
        status: u16,
        res: &[(&str, &str)],
        rule: &RuleOverride,
    ) -> Storability {
        storability(
            &Method::GET,
            &headers(req),
            StatusCode::from_u16(status).unwrap(),
            &headers(res),
            rule,
            at(T0),
        )
    }

    fn yes(s: Storability) -> Storable {
        match s {
            Storability::Yes(s) => s,
            Storability::No(why) => panic!("not storable: {why}"),
        }
    }

    fn no(s: Storability) -> &'static str {
        match s {
            Storability::No(why) => why,
            Storability::Yes(s) => panic!("storable: {s:?}"),
        }
    }

    fn fresh_for(lifetime: u64) -> Freshness {
        Freshness {
            lifetime: Duration::from_secs(lifetime),
            initial_age: Duration::ZERO,
            stored_at: at(T0),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
        }
    }

    // --- Cache-Control parsing -----------------------------------------------------------

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
                no_cache: false,
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
        assert!(cc.no_cache);
        assert_eq!(cc.max_age, Some(5));
        let cc = ResponseCacheControl::parse(&headers(&[("cache-control", "private=\"x\"")]));
        assert!(cc.private);
        // Escapes in quoted strings.
        let cc = ResponseCacheControl::parse(&headers(&[(
            "cache-control",
            r#"x="a\"b,c", max-age="7""#,
        )]));
        assert_eq!(cc.max_age, Some(7));
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

    // --- storability -----------------------------------------------------------------------

    #[test]
    fn only_get_is_stored() {
        for m in [Method::HEAD, Method::POST, Method::PUT, Method::OPTIONS] {
            let s = storability(
                &m,
                &HeaderMap::new(),
                StatusCode::OK,
                &headers(&[("cache-control", "max-age=60")]),
                &RuleOverride::default(),
                at(T0),
            );
            assert_eq!(no(s), "method is not GET");
        }
        let s = yes(store(&[("cache-control", "max-age=60")]));
        assert_eq!(s.lifetime, Duration::from_secs(60));
        assert!(!s.heuristic && !s.must_revalidate);
    }

    #[test]
    fn no_store_private_vary_star_and_bypass() {
        assert_eq!(
            no(store(&[("cache-control", "max-age=60, no-store")])),
            "response has no-store"
        );
        assert_eq!(
            no(store(&[("cache-control", "private, max-age=60")])),
            "response is private"
        );
        assert_eq!(
            no(store(&[
                ("cache-control", "max-age=60"),
                ("vary", "accept, *")
            ])),
            "Vary: *"
        );
        assert_eq!(
            no(store_with(
                &[("cache-control", "no-store")],
                200,
                &[("cache-control", "max-age=60")],
                &RuleOverride::default()
            )),
            "request has no-store"
        );
        let bypass = RuleOverride {
            ttl: None,
            bypass: true,
            cache_set_cookie: false,
            ..RuleOverride::default()
        };
        assert_eq!(
            no(store_with(
                &[],
                200,
                &[("cache-control", "max-age=60")],
                &bypass
            )),
            "bypassed by a cache rule"
        );
        // A tenant TTL does not override no-store or private.
        let ttl = RuleOverride {
            ttl: Some(Duration::from_secs(300)),
            bypass: false,
            cache_set_cookie: false,
            ..RuleOverride::default()
        };
        assert!(matches!(
            store_with(&[], 200, &[("cache-control", "no-store")], &ttl),
            Storability::No(_)
        ));
        assert!(matches!(
            store_with(&[], 200, &[("cache-control", "private")], &ttl),
            Storability::No(_)
        ));
        // Request no-cache does not prevent storing.
        assert!(matches!(
            store_with(
                &[("cache-control", "no-cache")],
                200,
                &[("cache-control", "max-age=9")],
                &RuleOverride::default()
            ),
            Storability::Yes(_)
        ));
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate() {
        let auth = [("authorization", "Bearer x")];
        let r = RuleOverride::default();
        assert_eq!(
            no(store_with(
                &auth,
                200,
                &[("cache-control", "max-age=60")],
                &r
            )),
            "request has Authorization"
        );
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "must-revalidate, max-age=60",
        ] {
            let s = yes(store_with(&auth, 200, &[("cache-control", cc)], &r));
            assert_eq!(s.lifetime, Duration::from_secs(60), "{cc}");
        }
        // A tenant TTL does not make authenticated content shared.
        let ttl = RuleOverride {
            ttl: Some(Duration::from_secs(60)),
            bypass: false,
            cache_set_cookie: false,
            ..RuleOverride::default()
        };
        assert_eq!(
            no(store_with(&auth, 200, &[], &ttl)),
            "request has Authorization"
        );
    }

    #[test]
    fn partial_and_not_modified_are_never_stored() {
        let r = RuleOverride::default();
        let cc = [("cache-control", "max-age=60"), ("etag", "\"a\"")];
        assert_eq!(no(store_with(&[], 206, &cc, &r)), "partial content");
        assert_eq!(no(store_with(&[], 304, &cc, &r)), "304 is not stored");
        assert_eq!(no(store_with(&[], 100, &cc, &r)), "interim response");
    }

    #[test]
    fn explicit_freshness_precedence() {
        // s-maxage wins over max-age wins over Expires.
        let s = yes(store(&[
            ("date", &date(T0)),
            ("expires", &date(T0 + 1000)),
            ("cache-control", "max-age=100, s-maxage=10"),
        ]));
        assert_eq!(s.lifetime, Duration::from_secs(10));
        assert!(s.must_revalidate, "s-maxage implies proxy-revalidate");
        let s = yes(store(&[
            ("date", &date(T0)),
            ("expires", &date(T0 + 1000)),
            ("cache-control", "max-age=100"),
        ]));
        assert_eq!(s.lifetime, Duration::from_secs(100));
        assert!(!s.must_revalidate);
        // Expires − Date, not Expires − now.
        let s = yes(store(&[
            ("date", &date(T0 - 500)),
            ("expires", &date(T0 + 1000)),
        ]));
        assert_eq!(s.lifetime, Duration::from_secs(1500));
        // Without Date, Expires − now.
        let s = yes(store(&[("expires", &date(T0 + 1000))]));
        assert_eq!(s.lifetime, Duration::from_secs(1000));
        // Explicit freshness needs no validator.
        assert!(!s.heuristic);
        // The other date formats of RFC 9110 §5.6.7.
        let s = yes(store(&[
            ("date", "Sunday, 06-Nov-94 08:49:37 GMT"),
            ("expires", "Sun Nov  6 08:59:37 1994"),
        ]));
        assert_eq!(s.lifetime, Duration::from_secs(600));
    }

    #[test]
    fn expires_in_the_past_or_invalid_is_stale() {
        let validator = ("etag", "\"v1\"");
        for expires in ["0", "-1", "garbage", &date(T0 - 10)] {
            let s = yes(store(&[
                ("date", &date(T0)),
                ("expires", expires),
                validator,
            ]));
            assert_eq!(s.lifetime, Duration::ZERO, "{expires}");
            // Without a validator it could never be used.
            assert_eq!(
                no(store(&[("date", &date(T0)), ("expires", expires)])),
                "stale on arrival and no validator"
            );
        }
        // Several different Expires: stale.
        let s = yes(store(&[
            ("expires", &date(T0 + 100)),
            ("expires", &date(T0 + 200)),
            validator,
        ]));
        assert_eq!(s.lifetime, Duration::ZERO);
        // Several equal ones are fine.
        let s = yes(store(&[
            ("date", &date(T0)),
            ("expires", &date(T0 + 100)),
            ("expires", &date(T0 + 100)),
        ]));
        assert_eq!(s.lifetime, Duration::from_secs(100));
        // max-age overrides an invalid Expires.
        let s = yes(store(&[("expires", "0"), ("cache-control", "max-age=30")]));
        assert_eq!(s.lifetime, Duration::from_secs(30));
        // A stale response without validator but with stale-if-error is worth keeping.
        let s = yes(store(&[("cache-control", "max-age=0, stale-if-error=600")]));
        assert_eq!(s.stale_if_error, Duration::from_secs(600));
    }

    #[test]
    fn heuristic_freshness() {
        // 10% of Date − Last-Modified.
        let s = yes(store(&[
            ("date", &date(T0)),
            ("last-modified", &date(T0 - 10_000)),
        ]));
        assert_eq!(s.lifetime, Duration::from_secs(1000));
        assert!(s.heuristic);
        // Capped at one day.
        let s = yes(store(&[
            ("date", &date(T0)),
            ("last-modified", &date(T0 - 100 * 86_400)),
        ]));
        assert_eq!(s.lifetime, MAX_HEURISTIC_LIFETIME);
        // Without Date, from now.
        let s = yes(store(&[("last-modified", &date(T0 - 600))]));
        assert_eq!(s.lifetime, Duration::from_secs(60));
        // Last-Modified in the future: zero, but storable (it is a validator).
        let s = yes(store(&[
            ("date", &date(T0)),
            ("last-modified", &date(T0 + 600)),
        ]));
        assert_eq!(s.lifetime, Duration::ZERO);
        // Other heuristically cacheable statuses.
        for status in [203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            let s = yes(store_with(
                &[],
                status,
                &[("date", &date(T0)), ("last-modified", &date(T0 - 1000))],
                &RuleOverride::default(),
            ));
            assert_eq!(s.lifetime, Duration::from_secs(100), "{status}");
        }
        // Not for other statuses, unless public.
        for status in [302, 307, 400, 403, 500, 502, 503] {
            let res = [("date", date(T0)), ("last-modified", date(T0 - 1000))];
            let res: Vec<(&str, &str)> = res.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(
                no(store_with(&[], status, &res, &RuleOverride::default())),
                "status not cacheable without explicit freshness",
                "{status}"
            );
            let mut public = res.clone();
            public.push(("cache-control", "public"));
            let s = yes(store_with(&[], status, &public, &RuleOverride::default()));
            assert!(s.heuristic);
            // Explicit freshness makes them storable.
            let s = yes(store_with(
                &[],
                status,
                &[("cache-control", "max-age=5")],
                &RuleOverride::default(),
            ));
            assert_eq!(s.lifetime, Duration::from_secs(5));
        }
        // An explicit expiry disables heuristics.
        let s = yes(store(&[
            ("date", &date(T0)),
            ("last-modified", &date(T0 - 10_000)),
            ("cache-control", "max-age=7"),
        ]));
        assert_eq!(s.lifetime, Duration::from_secs(7));
        assert!(!s.heuristic);
        // An invalid Last-Modified is no validator.
        assert_eq!(
            no(store(&[("last-modified", "yesterday")])),
            "no freshness information or validator"
        );
    }

    #[test]
    fn no_freshness_and_no_validator_is_not_stored() {
        assert_eq!(no(store(&[])), "no freshness information or validator");
        assert_eq!(
            no(store(&[("content-type", "text/html")])),
            "no freshness information or validator"
        );
        // An ETag alone: stored, revalidated on every use.
        let s = yes(store(&[("etag", "\"x\"")]));
        assert_eq!(s.lifetime, Duration::ZERO);
        assert!(!s.heuristic);
        // ... but a 500 with an ETag needs explicit freshness.
        assert!(matches!(
            store_with(&[], 500, &[("etag", "\"x\"")], &RuleOverride::default()),
            Storability::No(_)
        ));
    }

    #[test]
    fn no_cache_with_and_without_validator() {
        let s = yes(store(&[("cache-control", "no-cache"), ("etag", "\"v\"")]));
        assert_eq!(s.lifetime, Duration::ZERO);
        assert!(s.must_revalidate);
        let s = yes(store(&[
            ("cache-control", "no-cache, max-age=3600"),
            ("last-modified", &date(T0 - 100_000)),
        ]));
        assert_eq!(s.lifetime, Duration::ZERO);
        assert!(s.must_revalidate);
        assert_eq!(
            no(store(&[("cache-control", "no-cache, max-age=3600")])),
            "no-cache without a validator"
        );
        assert_eq!(
            no(store(&[("cache-control", "no-cache")])),
            "no freshness information or validator"
        );
    }

    #[test]
    fn must_revalidate_flags() {
        for cc in [
            "max-age=5, must-revalidate",
            "max-age=5, proxy-revalidate",
            "s-maxage=5",
        ] {
            assert!(yes(store(&[("cache-control", cc)])).must_revalidate, "{cc}");
        }
        // must-revalidate with max-age=0 and no validator: useless.
        assert_eq!(
            no(store(&[(
                "cache-control",
                "max-age=0, must-revalidate, stale-if-error=60"
            )])),
            "stale on arrival and no validator"
        );
    }

    #[test]
    fn rule_ttl_overrides_freshness() {
        let ttl = RuleOverride {
            ttl: Some(Duration::from_secs(300)),
            bypass: false,
            cache_set_cookie: false,
            ..RuleOverride::default()
        };
        // No freshness, no validator: stored anyway.
        let s = yes(store_with(&[], 200, &[], &ttl));
        assert_eq!(s.lifetime, Duration::from_secs(300));
        assert!(!s.heuristic && !s.must_revalidate);
        // Overrides max-age and no-cache.
        let s = yes(store_with(
            &[],
            200,
            &[(
                "cache-control",
                "max-age=5, no-cache, stale-while-revalidate=9",
            )],
            &ttl,
        ));
        assert_eq!(s.lifetime, Duration::from_secs(300));
        assert_eq!(s.stale_while_revalidate, Duration::from_secs(9));
        assert!(!s.must_revalidate);
        // must-revalidate still forbids stale.
        let s = yes(store_with(
            &[],
            404,
            &[("cache-control", "must-revalidate")],
            &ttl,
        ));
        assert!(s.must_revalidate);
        // Not for statuses that are not heuristically cacheable.
        assert!(matches!(
            store_with(&[], 503, &[], &ttl),
            Storability::No("status not cacheable without explicit freshness")
        ));
        let s = yes(store_with(
            &[],
            503,
            &[("cache-control", "max-age=2")],
            &ttl,
        ));
        assert_eq!(s.lifetime, Duration::from_secs(2));
        // Zero TTL without validator is useless; with one it means "always revalidate".
        let zero = RuleOverride {
            ttl: Some(Duration::ZERO),
            bypass: false,
            cache_set_cookie: false,
            ..RuleOverride::default()
        };
        assert!(matches!(
            store_with(&[], 200, &[], &zero),
            Storability::No(_)
        ));
        let s = yes(store_with(&[], 200, &[("etag", "\"e\"")], &zero));
        assert_eq!(s.lifetime, Duration::ZERO);
    }

    #[test]
    fn set_cookie_is_stored_only_when_a_rule_allows_it() {
        let res = [("cache-control", "max-age=60"), ("set-cookie", "s=1")];
        assert_eq!(
            no(store_with(&[], 200, &res, &RuleOverride::default())),
            "response sets a cookie"
        );
        let allow = RuleOverride {
            cache_set_cookie: true,
            ..RuleOverride::default()
        };
        yes(store_with(&[], 200, &res, &allow));
    }

    #[test]
    fn rule_override_from_cache_rule() {
        let rule = CacheRule {
            path: "/a/*".into(),
            ttl_secs: Some(u64::MAX),
            bypass: false,
            ignore_query: false,
            sort_query: false,
            key_headers: Vec::new(),
            cache_set_cookie: false,
        };
        let o = RuleOverride::from(&rule);
        assert_eq!(o.ttl, Some(Duration::from_secs(MAX_DELTA_SECONDS)));
        assert!(!o.bypass);
        assert_eq!(RuleOverride::from(None), RuleOverride::default());
        assert_eq!(RuleOverride::default().ttl, None);
        let bypass = CacheRule {
            ttl_secs: None,
            bypass: true,
            ..rule
        };
        assert!(RuleOverride::from(Some(&bypass)).bypass);
    }

    // --- age and freshness --------------------------------------------------------------------

    #[test]
    fn age_calculation_rfc9111_4_2_3() {
        let request_time = at(T0);
        let response_time = at(T0 + 2);
        // Date 10 s before the response arrived, Age 5: apparent age 10 wins over 5 + 2.
        let res = headers(&[("date", &date(T0 - 8)), ("age", "5")]);
        assert_eq!(
            initial_age(&res, request_time, response_time),
            Duration::from_secs(10)
        );
        // Age 60 from a parent: corrected age value 60 + 2 wins.
        let res = headers(&[("date", &date(T0 - 8)), ("age", "60")]);
        assert_eq!(
            initial_age(&res, request_time, response_time),
            Duration::from_secs(62)
        );
        // Date in the future (clock skew): apparent age 0, the delay still counts.
        let res = headers(&[("date", &date(T0 + 100))]);
        assert_eq!(
            initial_age(&res, request_time, response_time),
            Duration::from_secs(2)
        );
        // No Date, no Age: just the response delay.
        assert_eq!(
            initial_age(&HeaderMap::new(), request_time, response_time),
            Duration::from_secs(2)
        );
        // Invalid Age is ignored; a huge one saturates.
        let res = headers(&[("age", "abc")]);
        assert_eq!(
            initial_age(&res, response_time, response_time),
            Duration::ZERO
        );
        let res = headers(&[("age", "99999999999999999999999")]);
        assert_eq!(
            initial_age(&res, response_time, response_time),
            Duration::from_secs(MAX_DELTA_SECONDS)
        );
        // Response before request (clock trouble): no negative delay.
        assert_eq!(
            initial_age(&HeaderMap::new(), at(T0 + 5), at(T0)),
            Duration::ZERO
        );

        // Age grows with resident time.
        let storable = yes(store(&[("cache-control", "max-age=100"), ("age", "30")]));
        let f = Freshness::new(
            &storable,
            initial_age(&headers(&[("age", "30")]), at(T0), at(T0)),
            at(T0),
        );
        assert_eq!(f.initial_age, Duration::from_secs(30));
        assert_eq!(f.stored_at, at(T0));
        assert_eq!(f.age(at(T0 + 50)), Duration::from_secs(80));
        assert!(f.is_fresh(at(T0 + 69)));
        assert_eq!(f.remaining(at(T0 + 69)), Duration::from_secs(1));
        assert!(!f.is_fresh(at(T0 + 70)));
        assert_eq!(f.remaining(at(T0 + 70)), Duration::ZERO);
        assert_eq!(f.staleness(at(T0 + 75)), Duration::from_secs(5));
        // A clock going back does not make it younger than it arrived.
        assert_eq!(f.age(at(T0 - 1000)), Duration::from_secs(30));
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

    fn targeted_rule(names: &[&'static str]) -> RuleOverride {
        RuleOverride {
            targeted: names.iter().map(|n| HeaderName::from_static(n)).collect(),
            ..RuleOverride::default()
        }
    }

    #[test]
    fn structured_field_dictionaries() {
        use sf::Value::*;
        let ok = |v: &str| sf::dictionary(v.as_bytes()).expect(v);
        assert_eq!(
            ok("  max-age=60, no-store,private=?0,\tx=?1;p=\"q\", *k.v_2=:YWJj:, t=tok/en:1"),
            vec![
                ("max-age".to_owned(), Integer("60".to_owned())),
                ("no-store".to_owned(), True),
                ("private".to_owned(), False),
                ("x".to_owned(), True),
                ("*k.v_2".to_owned(), Other),
                ("t".to_owned(), Other),
            ]
        );
        assert_eq!(
            ok("a=(1 \"b\";c=1 d);e, f=-1.25"),
            vec![("a".to_owned(), Other), ("f".to_owned(), Other),]
        );
        assert!(ok("").is_empty());
        for bad in [
            "A=1",
            "a=",
            "a=1,",
            ",a",
            "a=\"x",
            "a=\"\\n\"",
            "a=?2",
            "a=1.",
            "a=1.2345",
            "a=1234567890123456",
            "a=(1",
            "a=(1)x",
            "a=:YWJj",
            "a b",
            "a=é",
            "a;=1",
        ] {
            assert_eq!(sf::dictionary(bad.as_bytes()), None, "{bad}");
        }
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

    // --- evaluate ------------------------------------------------------------------------------

    #[test]
    fn fresh_and_stale() {
        let f = fresh_for(60);
        let none = RequestCacheControl::default();
        assert_eq!(evaluate(&f, &none, at(T0 + 59)), Evaluation::Fresh);
        assert_eq!(
            evaluate(&f, &none, at(T0 + 60)),
            Evaluation::Revalidate {
                stale_if_error: false
            }
        );
    }

    #[test]
    fn stale_while_revalidate_and_stale_if_error_windows() {
        let f = Freshness {
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(300),
            ..fresh_for(60)
        };
        let none = RequestCacheControl::default();
        assert_eq!(evaluate(&f, &none, at(T0 + 10)), Evaluation::Fresh);
        assert_eq!(
            evaluate(&f, &none, at(T0 + 60)),
            Evaluation::StaleWhileRevalidate
        );
        assert_eq!(
            evaluate(&f, &none, at(T0 + 90)),
            Evaluation::StaleWhileRevalidate
        );
        assert_eq!(
            evaluate(&f, &none, at(T0 + 91)),
            Evaluation::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            evaluate(&f, &none, at(T0 + 360)),
            Evaluation::Revalidate {
                stale_if_error: true
            }
        );
        assert_eq!(
            evaluate(&f, &none, at(T0 + 361)),
            Evaluation::Revalidate {
                stale_if_error: false
            }
        );
    }

    #[test]
    fn must_revalidate_blocks_stale_serving_and_stale_if_error() {
        let f = Freshness {
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(300),
            must_revalidate: true,
            ..fresh_for(60)
        };
        let none = RequestCacheControl::default();
        assert_eq!(evaluate(&f, &none, at(T0 + 10)), Evaluation::Fresh);
        for t in [60, 70, 200] {
            assert_eq!(
                evaluate(&f, &none, at(T0 + t)),
                Evaluation::Revalidate {
                    stale_if_error: false
                }
            );
        }
        let any_stale = RequestCacheControl {
            max_stale: Some(None),
            ..Default::default()
        };
        assert_eq!(
            evaluate(&f, &any_stale, at(T0 + 70)),
            Evaluation::Revalidate {
                stale_if_error: false
            }
        );
        // The same through storability: no-cache with swr/sie windows.
        let s = yes(store(&[
            (
                "cache-control",
                "no-cache, stale-while-revalidate=60, stale-if-error=60",
            ),
            ("etag", "\"e\""),
        ]));
        let f = Freshness::new(&s, Duration::ZERO, at(T0));
        assert_eq!(
            evaluate(&f, &none, at(T0 + 1)),
            Evaluation::Revalidate {
                stale_if_error: false
            }
        );
    }

    #[test]
    fn request_directives() {
        let f = Freshness {
            stale_if_error: Duration::from_secs(100),
            ..fresh_for(60)
        };
        let at10 = at(T0 + 10);
        // no-cache: revalidate; the fresh copy may still answer if the origin fails.
        let no_cache = RequestCacheControl {
            no_cache: true,
            ..Default::default()
        };
        assert_eq!(
            evaluate(&f, &no_cache, at10),
            Evaluation::Revalidate {
                stale_if_error: true
            }
        );
        // Pragma: no-cache counts.
        let pragma = RequestCacheControl::parse(&headers(&[("pragma", "no-cache")]));
        assert!(matches!(
            evaluate(&f, &pragma, at10),
            Evaluation::Revalidate { .. }
        ));
        // max-age=0: revalidate anything with an age.
        let max_age_0 = RequestCacheControl::parse(&headers(&[("cache-control", "max-age=0")]));
        assert!(matches!(
            evaluate(&f, &max_age_0, at10),
            Evaluation::Revalidate { .. }
        ));
        let max_age_10 = RequestCacheControl {
            max_age: Some(10),
            ..Default::default()
        };
        assert_eq!(evaluate(&f, &max_age_10, at10), Evaluation::Fresh);
        assert!(matches!(
            evaluate(&f, &max_age_10, at(T0 + 11)),
            Evaluation::Revalidate { .. }
        ));
        // min-fresh: must stay fresh that much longer.
        let min_fresh = RequestCacheControl {
            min_fresh: Some(50),
            ..Default::default()
        };
        assert_eq!(evaluate(&f, &min_fresh, at10), Evaluation::Fresh);
        assert!(matches!(
            evaluate(&f, &min_fresh, at(T0 + 11)),
            Evaluation::Revalidate { .. }
        ));
        // max-stale: stale accepted up to the bound.
        let max_stale = RequestCacheControl {
            max_stale: Some(Some(20)),
            ..Default::default()
        };
        assert_eq!(evaluate(&f, &max_stale, at(T0 + 80)), Evaluation::Fresh);
        assert_eq!(
            evaluate(&f, &max_stale, at(T0 + 81)),
            Evaluation::Revalidate {
                stale_if_error: true
            }
        );
        let any_stale = RequestCacheControl {
            max_stale: Some(None),
            ..Default::default()
        };
        assert_eq!(
            evaluate(&f, &any_stale, at(T0 + 1_000_000)),
            Evaluation::Fresh
        );
        // max-stale does not override max-age; min-fresh refuses stale.
        let both = RequestCacheControl {
            max_stale: Some(None),
            max_age: Some(30),
            ..Default::default()
        };
        assert!(matches!(
            evaluate(&f, &both, at(T0 + 80)),
            Evaluation::Revalidate { .. }
        ));
        let both = RequestCacheControl {
            max_stale: Some(None),
            min_fresh: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            evaluate(&f, &both, at(T0 + 80)),
            Evaluation::Revalidate { .. }
        ));
        // Client constraints override stale-while-revalidate.
        let swr = Freshness {
            stale_while_revalidate: Duration::from_secs(100),
            ..fresh_for(60)
        };
        assert_eq!(
            evaluate(&swr, &RequestCacheControl::default(), at(T0 + 70)),
            Evaluation::StaleWhileRevalidate
        );
        assert!(matches!(
            evaluate(&swr, &no_cache, at(T0 + 70)),
            Evaluation::Revalidate { .. }
        ));
        assert!(matches!(
            evaluate(&swr, &min_fresh, at(T0 + 70)),
            Evaluation::Revalidate { .. }
        ));
    }

    #[test]
    fn end_to_end_store_then_evaluate_with_age() {
        // A parent says Age: 50 on a max-age=60 response; the request took 2 s.
        let res = headers(&[
            ("date", &date(T0)),
            ("cache-control", "max-age=60, stale-while-revalidate=10"),
            ("age", "50"),
        ]);
        let s = yes(storability(
            &Method::GET,
            &HeaderMap::new(),
            StatusCode::OK,
            &res,
            &RuleOverride::default(),
            at(T0 + 2),
        ));
        let f = Freshness::new(&s, initial_age(&res, at(T0), at(T0 + 2)), at(T0 + 2));
        assert_eq!(f.initial_age, Duration::from_secs(52));
        let none = RequestCacheControl::default();
        assert_eq!(evaluate(&f, &none, at(T0 + 9)), Evaluation::Fresh);
        assert_eq!(
            evaluate(&f, &none, at(T0 + 10)),
            Evaluation::StaleWhileRevalidate
        );
        assert!(matches!(
            evaluate(&f, &none, at(T0 + 21)),
            Evaluation::Revalidate { .. }
        ));
    }

    // --- validation ---------------------------------------------------------------------------

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

    // --- vary ---------------------------------------------------------------------------------

    #[test]
    fn vary_fields_and_signatures() {
        let res = headers(&[
            ("vary", "Accept-Encoding, accept-language"),
            ("vary", "ACCEPT-ENCODING"),
        ]);
        let fields = vary_fields(&res).unwrap();
        assert_eq!(fields, ["accept-encoding", "accept-language"]);
        assert_eq!(vary_fields(&headers(&[("vary", "a, *")])), Err(VaryStar));
        assert_eq!(
            vary_fields(&HeaderMap::new()).unwrap(),
            Vec::<HeaderName>::new()
        );
        assert_eq!(
            vary_fields(&headers(&[("vary", "bad name, , x")])).unwrap(),
            ["x"]
        );

        let sig = |req: &[(&str, &str)]| vary_signature(&fields, &headers(req));
        assert_eq!(
            sig(&[("accept-encoding", "gzip, br"), ("accept-language", "en")]),
            "accept-encoding=gzip,br accept-language=en"
        );
        assert_eq!(
            sig(&[("accept-encoding", "gzip,br"), ("accept-language", "en")]),
            sig(&[
                ("accept-encoding", " gzip "),
                ("accept-encoding", "br"),
                ("accept-language", "en")
            ])
        );
        // Missing differs from empty.
        assert_eq!(sig(&[]), "accept-encoding accept-language");
        assert_eq!(
            sig(&[("accept-encoding", ""), ("accept-language", "")]),
            "accept-encoding= accept-language="
        );
        // Values stay case-sensitive, and a value cannot imitate another field.
        assert_ne!(
            sig(&[("accept-encoding", "GZIP")]),
            sig(&[("accept-encoding", "gzip")])
        );
        assert_ne!(
            sig(&[("accept-encoding", "x accept-language=en")]),
            sig(&[("accept-encoding", "x"), ("accept-language", "en")])
        );
        assert_eq!(vary_signature(&[], &headers(&[("a", "b")])), "");
    }

    // --- invalidation -------------------------------------------------------------------------

    #[test]
    fn unsafe_methods_invalidate() {
        assert!(invalidates(&Method::POST, StatusCode::OK));
        assert!(invalidates(&Method::PUT, StatusCode::CREATED));
        assert!(invalidates(&Method::DELETE, StatusCode::NO_CONTENT));
        assert!(invalidates(&Method::PATCH, StatusCode::SEE_OTHER));
        assert!(invalidates(
            &Method::from_bytes(b"PURGEX").unwrap(),
            StatusCode::OK
        ));
        assert!(!invalidates(&Method::POST, StatusCode::NOT_FOUND));
        assert!(!invalidates(
            &Method::POST,
            StatusCode::INTERNAL_SERVER_ERROR
        ));
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(!invalidates(&m, StatusCode::OK));
        }
    }

    #[test]
    fn invalidation_targets_are_same_host_paths() {
        let res = headers(&[
            ("location", "/new?id=1#frag"),
            ("content-location", "https://WWW.a.com:8443/item/1"),
            ("content-location", "http://evil.com/x"),
            ("location", "//www.a.com/net"),
            ("location", "relative/path"),
            ("location", "/new?id=1"),
            ("content-location", "ftp://www.a.com/x"),
            ("content-location", "http://www.a.com"),
        ]);
        assert_eq!(
            invalidation_targets("www.a.com:8080", &res),
            ["/new?id=1", "/net", "/item/1", "/"]
        );
        assert!(
            invalidation_targets("b.com", &headers(&[("location", "http://a.com/x")])).is_empty()
        );
        assert_eq!(
            invalidation_targets("[::1]:80", &headers(&[("location", "http://[::1]/v6")])),
            ["/v6"]
        );
    }

    // --- robustness ---------------------------------------------------------------------------

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Random header values, biased towards the characters the parsers care about.
    fn random_value(rng: &mut Rng) -> HeaderValue {
        const PIECES: &[&[u8]] = &[
            b"max-age",
            b"s-maxage",
            b"no-cache",
            b"private",
            b"public",
            b"no-store",
            b"max-stale",
            b"min-fresh",
            b"stale-if-error",
            b"stale-while-revalidate",
            b"must-revalidate",
            b"*",
            b"W/",
            b"\"",
            b"\\",
            b",",
            b"=",
            b" ",
            b"\t",
            b"0",
            b"9",
            b"99999999999999999999999",
            b"-1",
            b"Sun, 06 Nov 1994 08:49:37 GMT",
            b"GMT",
            b"\xff",
            b"\x80",
            b"\xc3\xa9",
            b"a",
            b"Z",
            b";",
            b"/",
            b"?",
            b"#",
        ];
        let mut out = Vec::new();
        for _ in 0..rng.below(12) {
            if rng.below(4) == 0 {
                // A raw byte, any that a header value may hold.
                let b = (rng.next() & 0xff) as u8;
                if b == b'\t' || (b >= 0x20 && b != 0x7f) {
                    out.push(b);
                }
            } else {
                out.extend_from_slice(PIECES[rng.below(PIECES.len())]);
            }
        }
        HeaderValue::from_bytes(&out).unwrap()
    }

    #[test]
    fn random_header_values_never_panic() {
        let names = [
            header::CACHE_CONTROL,
            HeaderName::from_static("cdn-cache-control"),
            header::PRAGMA,
            header::EXPIRES,
            header::DATE,
            header::AGE,
            header::LAST_MODIFIED,
            header::ETAG,
            header::VARY,
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::LOCATION,
            header::CONTENT_LOCATION,
            header::CONNECTION,
            header::AUTHORIZATION,
        ];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let mut req = HeaderMap::new();
            let mut res = HeaderMap::new();
            for _ in 0..rng.below(6) {
                req.append(
                    names[rng.below(names.len())].clone(),
                    random_value(&mut rng),
                );
            }
            for _ in 0..rng.below(8) {
                res.append(
                    names[rng.below(names.len())].clone(),
                    random_value(&mut rng),
                );
            }
            let now = at(rng.next() % (1 << 40));
            let req_cc = RequestCacheControl::parse(&req);
            let _ = ResponseCacheControl::parse(&res);
            let status = StatusCode::from_u16(100 + (rng.next() % 500) as u16).unwrap();
            let rule = RuleOverride {
                ttl: (rng.below(2) == 0).then(|| Duration::from_secs(rng.next())),
                bypass: rng.below(8) == 0,
                cache_set_cookie: rng.below(2) == 0,
                targeted: if rng.below(2) == 0 {
                    std::sync::Arc::from([HeaderName::from_static("cdn-cache-control")])
                } else {
                    std::sync::Arc::default()
                },
            };
            if let Storability::Yes(s) = storability(&Method::GET, &req, status, &res, &rule, now) {
                assert!(s.lifetime <= Duration::from_secs(MAX_DELTA_SECONDS));
                let f = Freshness::new(&s, initial_age(&res, now, now), now);
                for dt in [0, 1, 1 << 20, 1 << 40] {
                    let later = now + Duration::from_secs(dt);
                    let _ = evaluate(&f, &req_cc, later);
                    let _ = f.remaining(later);
                }
            }
            let _ = initial_age(&res, now, at(rng.next() % (1 << 40)));
            let _ = revalidation_headers(&res);
            let _ = not_modified_matches(&res, &req);
            let _ = client_not_modified(&req, &res);
            if let Ok(fields) = vary_fields(&res) {
                let _ = vary_signature(&fields, &req);
            }
            let _ = invalidation_targets("a.com", &res);
            let mut stored = res.clone();
            apply_304(&mut stored, &req);
        }
    }
}
