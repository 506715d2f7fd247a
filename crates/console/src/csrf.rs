//! Cross-site request forgery: every form carries a token that a page of this console
//! put there (the session's own, or for sign-in one bound to a short-lived cookie), and a
//! POST whose `Origin` names another site is refused before its form is read. The
//! SameSite=Strict cookies are a third line.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

/// The pre-session cookie the sign-in form's token is checked against.
pub const SIGN_IN_COOKIE: &str = "lj_sign_in";

/// Whether `given` (from a form) equals `expected`, compared in constant time; an empty
/// `expected` never matches.
pub fn token_matches(given: &str, expected: &str) -> bool {
    if expected.is_empty() || given.len() != expected.len() {
        return false;
    }
    given
        .bytes()
        .zip(expected.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// Whether the request's `Origin` (when the browser sent one) is this console's own
/// host: browsers send it on every cross-site POST.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_exactly() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", ""));
    }

    #[test]
    fn a_post_from_another_site_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "127.0.0.1:7700".parse().expect("host"));
        assert!(
            same_origin(&h),
            "no Origin: a same-site form or a non-browser client"
        );
        h.insert(ORIGIN, "https://127.0.0.1:7700".parse().expect("origin"));
        assert!(same_origin(&h));
        h.insert(ORIGIN, "https://evil.example".parse().expect("origin"));
        assert!(!same_origin(&h));
        h.insert(ORIGIN, "null".parse().expect("origin"));
        assert!(!same_origin(&h));
    }
}
