//! Whether a response may be stored (RFC 9111 §3, §3.5) and with which freshness
//! parameters (§4.2.1, §4.2.2, §5.2; RFC 5861), a tenant's cache rule applied.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};
use lingjing_model::CacheRule;

use super::cache_control::{
    RequestCacheControl, ResponseCacheControl, date_value, last_modified, parse_date,
};
use super::vary::vary_fields;
use super::{HEURISTIC_FRACTION, MAX_HEURISTIC_LIFETIME, cap, secs};

/// What a tenant's [`CacheRule`] and service change about caching: a fixed freshness
/// lifetime, no caching at all, the targeted cache-control fields obeyed. The default
/// changes nothing (and obeys only `Cache-Control`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleOverride {
    /// Replaces the freshness lifetime (and `no-cache`) the origin's headers give, for
    /// heuristically cacheable status codes; capped at
    /// [`MAX_DELTA_SECONDS`](super::MAX_DELTA_SECONDS).
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
///   response: [`apply_304`](super::apply_304));
/// * the response has `no-store` or an unqualified `private` (§5.2.2.5, §5.2.2.7; a
///   tenant's TTL does not override either);
/// * the request has `Authorization` and the response has none of `public`, `s-maxage`,
///   `must-revalidate` (§3.5);
/// * the response has `Vary: *` (§4.1);
/// * the response has `Set-Cookie`, `rule.cache_set_cookie` is off and the origin does
///   not list `Set-Cookie` in a qualified `no-cache` or `private` (a product rule: a
///   shared cache must not hand one client's cookie to the next; with the rule on, or
///   the field listed, the proxy stores the response without its `Set-Cookie`).
///
/// A qualified `no-cache="field, ..."` or `private="field, ..."` does not stop storing or
/// reuse: the listed fields are left out of the stored response
/// ([`fields_not_to_store`], [`remove_fields_not_to_store`]).
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
/// * an unqualified `no-cache` (§5.2.2.4): zero with `must_revalidate`, stored only with a
///   validator (`ETag` or `Last-Modified`);
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
/// `must-revalidate`, `proxy-revalidate`, `s-maxage` (§5.2.2.10) and unqualified `no-cache`.
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
    if res.contains_key(header::SET_COOKIE) && !stored_without_cookie(&cc, rule) {
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

/// The fields a shared cache leaves out of the response it stores (RFC 9111 §5.2.2.4,
/// §5.2.2.7): those of a qualified `no-cache="..."` (never sent on a reuse that was not
/// revalidated) and of a qualified `private="..."` (never stored by a shared cache), in
/// that order, each once. The client whose request fetched the response still gets them.
pub fn fields_not_to_store(cc: &ResponseCacheControl) -> Vec<HeaderName> {
    let mut out = cc.no_cache_fields.clone();
    for name in &cc.private_fields {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// Whether a response that sets a cookie may still be stored, without its `Set-Cookie`:
/// a cookie rule says so (`rule.cache_set_cookie`), or the origin lists `Set-Cookie` in a
/// qualified `no-cache` or `private` of `cc` (the directives this cache obeys).
pub fn stored_without_cookie(cc: &ResponseCacheControl, rule: &RuleOverride) -> bool {
    rule.cache_set_cookie || fields_not_to_store(cc).contains(&header::SET_COOKIE)
}

/// Removes from `headers` (a response about to be stored) the [`fields_not_to_store`] of
/// the directives this cache obeys for it (`rule.targeted`, as [`storability`] reads them).
pub fn remove_fields_not_to_store(headers: &mut HeaderMap, rule: &RuleOverride) {
    take_fields_not_to_store(headers, rule);
}

/// [`remove_fields_not_to_store`], returning the fields removed (for the client whose
/// request fetched the response, which alone may get them).
pub fn take_fields_not_to_store(
    headers: &mut HeaderMap,
    rule: &RuleOverride,
) -> Vec<(HeaderName, http::HeaderValue)> {
    let (cc, _) = ResponseCacheControl::parse_targeted(headers, &rule.targeted);
    let mut taken = Vec::new();
    for name in fields_not_to_store(&cc) {
        for value in headers.get_all(&name) {
            taken.push((name.clone(), value.clone()));
        }
        headers.remove(name);
    }
    taken
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::policy::testing::*;
    use crate::cache::policy::*;

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
    fn qualified_no_cache_and_private_store_without_the_fields() {
        // Stored and reused without revalidation: only the listed fields are held back.
        for cc in [
            "max-age=60, no-cache=\"x-foo\"",
            "max-age=60, private=\"x-foo\"",
            "max-age=60, no-cache=\"x-foo\", private=\"x-bar\"",
        ] {
            let s = yes(store(&[("cache-control", cc)]));
            assert_eq!(s.lifetime, Duration::from_secs(60), "{cc}");
            assert!(!s.must_revalidate, "{cc}");
        }
        // Unqualified, or a list read as unqualified: as before.
        let s = yes(store(&[
            ("cache-control", "max-age=60, no-cache"),
            ("etag", "\"v\""),
        ]));
        assert!(s.lifetime.is_zero() && s.must_revalidate);
        let s = yes(store(&[
            ("cache-control", "max-age=60, no-cache=\"etag\""),
            ("etag", "\"v\""),
        ]));
        assert!(s.lifetime.is_zero() && s.must_revalidate);
        assert_eq!(
            no(store(&[("cache-control", "max-age=60, private=\"\"")])),
            "response is private"
        );
        // A listed Set-Cookie lets the response be stored without a cookie rule.
        for cc in [
            "max-age=60, no-cache=\"Set-Cookie\"",
            "max-age=60, private=\"x-a, set-cookie\"",
        ] {
            let s = yes(store(&[("cache-control", cc), ("set-cookie", "s=1")]));
            assert_eq!(s.lifetime, Duration::from_secs(60), "{cc}");
        }
        assert_eq!(
            no(store(&[
                ("cache-control", "max-age=60, no-cache=\"x-foo\""),
                ("set-cookie", "s=1"),
            ])),
            "response sets a cookie"
        );
        // Through a targeted field, which then alone counts.
        let chain = targeted_rule(&["cdn-cache-control"]);
        let res = [
            ("cache-control", "no-cache=\"set-cookie\""),
            ("cdn-cache-control", "max-age=60"),
            ("set-cookie", "s=1"),
        ];
        assert_eq!(
            no(store_with(&[], 200, &res, &chain)),
            "response sets a cookie"
        );
        let res = [
            ("cdn-cache-control", "max-age=60, no-cache=\"set-cookie\""),
            ("set-cookie", "s=1"),
        ];
        assert!(!yes(store_with(&[], 200, &res, &chain)).must_revalidate);
    }

    #[test]
    fn fields_not_to_store_are_removed_from_the_stored_copy() {
        let cc = ResponseCacheControl::parse(&headers(&[(
            "cache-control",
            "no-cache=\"X-B, set-cookie\", private=\"x-a, x-b\", max-age=9",
        )]));
        let fields = fields_not_to_store(&cc);
        let names: Vec<&str> = fields.iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-b", "set-cookie", "x-a"]);
        assert!(
            fields_not_to_store(&ResponseCacheControl::parse(&headers(&[(
                "cache-control",
                "no-cache, private, max-age=9"
            )])))
            .is_empty()
        );

        let mut res = headers(&[
            (
                "cache-control",
                "max-age=60, no-cache=\"set-cookie, x-foo\"",
            ),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("etag", "\"v\""),
        ]);
        remove_fields_not_to_store(&mut res, &RuleOverride::default());
        let mut left: Vec<&str> = res.keys().map(|n| n.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["cache-control", "etag", "x-bar"]);

        // The directives obeyed name the fields: the targeted field's when one is used.
        let chain = targeted_rule(&["cdn-cache-control"]);
        let mut res = headers(&[
            ("cache-control", "private=\"x-bar\""),
            ("cdn-cache-control", "max-age=60, private=\"x-foo\""),
            ("x-foo", "1"),
            ("x-bar", "2"),
        ]);
        remove_fields_not_to_store(&mut res, &chain);
        assert!(!res.contains_key("x-foo"));
        assert!(res.contains_key("x-bar"));
        remove_fields_not_to_store(&mut res, &RuleOverride::default());
        assert!(!res.contains_key("x-bar"));
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
}
