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
//!    [`remove_fields_not_to_store`] leaves out the fields the origin keeps out of shared
//!    copies (qualified `no-cache` and `private`, §5.2.2.4, §5.2.2.7).
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
//!
//! One module per concern, the items re-exported here: `cache_control` (parsing the
//! fields; `sf` reads the targeted ones), `storing` (what may be stored, for how long, and
//! without which fields), `freshness` (age, [`evaluate`]), `validation` (revalidation,
//! 304s, the client's conditionals), `vary` and `invalidation`.

use std::time::Duration;

mod cache_control;
mod freshness;
mod invalidation;
mod sf;
mod storing;
#[cfg(test)]
mod testing;
mod validation;
mod vary;

pub(crate) use cache_control::normalized_field;
pub use cache_control::{KEPT_FIELDS, RequestCacheControl, ResponseCacheControl};
pub use freshness::{Evaluation, Freshness, evaluate, initial_age};
pub use invalidation::{invalidates, invalidation_targets};
pub use storing::{
    RuleOverride, Storability, Storable, fields_not_to_store, is_heuristically_cacheable,
    remove_fields_not_to_store, storability, stored_without_cookie, take_fields_not_to_store,
};
pub use validation::{apply_304, client_not_modified, not_modified_matches, revalidation_headers};
pub use vary::{VaryStar, vary_fields, vary_signature};

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::header::{self, HeaderMap, HeaderName, HeaderValue};
    use http::{Method, StatusCode};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::testing::*;
    use super::*;

    // --- robustness ---------------------------------------------------------------------------

    /// Random header values, biased towards the characters the parsers care about.
    fn random_value(rng: &mut StdRng) -> HeaderValue {
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
        for _ in 0..rng.random_range(0..12) {
            if rng.random_range(0..4) == 0 {
                // A raw byte, any that a header value may hold.
                let b = rng.random::<u8>();
                if b == b'\t' || (b >= 0x20 && b != 0x7f) {
                    out.push(b);
                }
            } else {
                out.extend_from_slice(PIECES[rng.random_range(0..PIECES.len())]);
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
        let mut rng = StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        for _ in 0..5_000 {
            let mut req = HeaderMap::new();
            let mut res = HeaderMap::new();
            for _ in 0..rng.random_range(0..6) {
                req.append(
                    names[rng.random_range(0..names.len())].clone(),
                    random_value(&mut rng),
                );
            }
            for _ in 0..rng.random_range(0..8) {
                res.append(
                    names[rng.random_range(0..names.len())].clone(),
                    random_value(&mut rng),
                );
            }
            let now = at(rng.random_range(0..1u64 << 40));
            let req_cc = RequestCacheControl::parse(&req);
            let _ = ResponseCacheControl::parse(&res);
            let status = StatusCode::from_u16(rng.random_range(100..600u16)).unwrap();
            let rule = RuleOverride {
                ttl: (rng.random_range(0..2) == 0).then(|| Duration::from_secs(rng.random())),
                bypass: rng.random_range(0..8) == 0,
                cache_set_cookie: rng.random_range(0..2) == 0,
                targeted: if rng.random_range(0..2) == 0 {
                    std::sync::Arc::from([HeaderName::from_static("cdn-cache-control")])
                } else {
                    std::sync::Arc::default()
                },
            };
            let mut stored = res.clone();
            remove_fields_not_to_store(&mut stored, &rule);
            if let Storability::Yes(s) = storability(&Method::GET, &req, status, &res, &rule, now) {
                assert!(s.lifetime <= Duration::from_secs(MAX_DELTA_SECONDS));
                let f = Freshness::new(&s, initial_age(&res, now, now), now);
                for dt in [0, 1, 1 << 20, 1 << 40] {
                    let later = now + Duration::from_secs(dt);
                    let _ = evaluate(&f, &req_cc, later);
                    let _ = f.remaining(later);
                }
            }
            let _ = initial_age(&res, now, at(rng.random_range(0..1u64 << 40)));
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
