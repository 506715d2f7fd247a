//! Helpers shared by the unit tests of the policy modules.

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::*;

pub(crate) const T0: u64 = 1_700_000_000;

pub(crate) fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

pub(crate) fn date(s: u64) -> String {
    httpdate::fmt_http_date(at(s))
}

pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

pub(crate) fn store(res: &[(&str, &str)]) -> Storability {
    store_with(&[], 200, res, &RuleOverride::default())
}

pub(crate) fn store_with(
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

pub(crate) fn yes(s: Storability) -> Storable {
    match s {
        Storability::Yes(s) => s,
        Storability::No(why) => panic!("not storable: {why}"),
    }
}

pub(crate) fn no(s: Storability) -> &'static str {
    match s {
        Storability::No(why) => why,
        Storability::Yes(s) => panic!("storable: {s:?}"),
    }
}

pub(crate) fn fresh_for(lifetime: u64) -> Freshness {
    Freshness {
        lifetime: Duration::from_secs(lifetime),
        initial_age: Duration::ZERO,
        stored_at: at(T0),
        stale_while_revalidate: Duration::ZERO,
        stale_if_error: Duration::ZERO,
        must_revalidate: false,
    }
}

pub(crate) fn targeted_rule(names: &[&'static str]) -> RuleOverride {
    RuleOverride {
        targeted: names.iter().map(|n| HeaderName::from_static(n)).collect(),
        ..RuleOverride::default()
    }
}
