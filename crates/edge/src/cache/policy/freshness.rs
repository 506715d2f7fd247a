//! The freshness of a stored response and what to do with it for a request: age (RFC
//! 9111 §4.2.3), freshness (§4.2), serving stale (§4.2.4, RFC 5861).

use std::time::{Duration, SystemTime};

use http::header::HeaderMap;

use super::cache_control::{RequestCacheControl, age_value, date_value};
use super::storing::Storable;
use super::{cap, secs};

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
    /// The freshness of a response that [`storability`](super::storability) found
    /// storable, received at `stored_at` (its `response_time`) with the corrected initial
    /// age `initial_age` (from [`initial_age`]).
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
/// skew never makes an age negative; the result is capped at
/// [`MAX_DELTA_SECONDS`](super::MAX_DELTA_SECONDS).
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

#[cfg(test)]
mod tests {
    use http::{Method, StatusCode};

    use super::*;
    use crate::cache::policy::testing::*;
    use crate::cache::policy::*;

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
}
