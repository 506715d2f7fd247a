//! Invalidation of stored responses by unsafe requests (RFC 9111 §4.4).

use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Uri};

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
    use crate::cache::policy::testing::*;

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
}
