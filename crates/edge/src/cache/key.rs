//! Cache keys and the choice of a service's cache rule for a path.
//!
//! This module owns the *primary* cache key (RFC 9111 §2: method + target URI; only GET is
//! stored, so the method is left out), shaped by the tenant's [`CacheRule`]: the query
//! string can be dropped (`ignore_query`) or its parameters sorted (`sort_query`), and
//! request headers named in `key_headers` are appended. Secondary keys (`Vary`) are
//! [`super::policy::vary_signature`].
//!
//! Every key starts with a *namespace*: the id of the service that stored it and the
//! scheme the client used. So two services never share or purge each other's entries,
//! even when one's hostnames overlap the other's (a wildcard and an exact name), and a
//! response fetched for `http` is never served for `https` (origins often answer the two
//! differently, e.g. with a redirect).
//!
//! # Key format
//!
//! ```text
//! key       = namespace url *( " " name [ "=" value ] )  ; one " name[=value]" per key header
//! namespace = service "|" scheme "://"                    ; what `namespace` returns
//! url       = host path [ "?" query ]
//! ```
//!
//! * `scheme` is `http` or `https`; `host` is lower-cased; `path` always starts with `/` (a
//!   path without one is keyed as if it had one: only origin-form targets are cached);
//!   `query` is kept as given unless the rule drops or sorts it. `/a` (no query) and `/a?`
//!   (empty query) are different keys.
//! * A key header that the request lacks is written as ` name`, an empty one as ` name=`;
//!   several field lines (and list elements) are joined with `,` after trimming the
//!   whitespace around each element, as [`super::policy::vary_signature`] does.
//! * Every component is escaped so that the key is unambiguous (injective): ASCII control
//!   characters, space and `#` are written `#XX` (two upper-case hex digits), as are `|`,
//!   `/` and `?` in the service, `/` and `?` in the host, `?` in the path and `=` in header
//!   names; bytes of a header value that are not UTF-8 are written `#XX` too. Everything
//!   else, including `%` escapes and non-ASCII UTF-8 characters, is kept verbatim. Request
//!   targets parsed by the `http` crate never contain a character that gets escaped, so for
//!   real requests the URL part of a key reads exactly as the request's host + path +
//!   query.
//!
//! So a key maps back to its namespace and URL with [`key_url`] (everything before the
//! first space) and to its parts with [`key_scope`]; purge by prefix tests
//! `key.starts_with(&url_prefix_key(ns, host, prefix))`, purge of one URL (every variant of
//! key headers) tests `key_url(key) == url_key(ns, host, path_and_query, rule)`. The purge
//! indexes (`super::index`) file each key under [`key_host_bucket`] and, per tag, under
//! [`tag_bucket`].

use http::{HeaderMap, HeaderName};
use lingjing_model::CacheRule;

use super::policy::normalized_field;

/// Separates the URL part of a key from each key header (never appears unescaped in the URL).
pub const HEADER_SEPARATOR: char = ' ';

/// Ends the service id in a key's namespace (escaped inside the id).
pub const SERVICE_SEPARATOR: char = '|';

/// The scheme a client used, part of the cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// Both schemes (a purge of a URL removes both copies).
    pub const ALL: [Scheme; 2] = [Scheme::Http, Scheme::Https];

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// `https` for a request that came over TLS, else `http`.
    pub fn of(tls: bool) -> Scheme {
        if tls { Scheme::Https } else { Scheme::Http }
    }
}

/// The namespace every key of `service` for `scheme` starts with: `service|scheme://`.
pub fn namespace(service: &str, scheme: Scheme) -> String {
    let mut ns = String::with_capacity(service.len() + 9);
    push_service(&mut ns, service);
    ns.push(SERVICE_SEPARATOR);
    ns.push_str(scheme.as_str());
    ns.push_str("://");
    ns
}

fn push_service(out: &mut String, service: &str) {
    push_escaped(out, service.as_bytes(), &[SERVICE_SEPARATOR, '/', '?']);
}

/// The first rule whose `path` matches `path` (RFC-independent product rule: first match
/// wins). A rule path ending in `*` is a prefix (`/assets/*` matches `/assets/x.css` and
/// `/assets/` but not `/assets`); any other rule path must equal `path` exactly
/// (case-sensitive). A query string in `path` (from `?` on) is ignored.
pub fn rule_for<'a>(rules: &'a [CacheRule], path: &str) -> Option<&'a CacheRule> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    rules.iter().find(|rule| rule_matches(&rule.path, path))
}

fn rule_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix.trim_end_matches('*')),
        None => pattern == path,
    }
}

/// The primary cache key of a GET request for `host` + `path_and_query` (the request
/// target in origin form, e.g. `uri.path_and_query()`) in the namespace `ns` (from
/// [`namespace`]), under `rule` (the one [`rule_for`] picked; `None`: keep the query as
/// is, no key headers). See the module documentation for the format. `host` should be the
/// request's host (with the port if the service distinguishes ports); it is lower-cased
/// here.
pub fn cache_key(
    ns: &str,
    host: &str,
    path_and_query: &str,
    rule: Option<&CacheRule>,
    req: &HeaderMap,
) -> String {
    let mut key = url_key(ns, host, path_and_query, rule);
    if let Some(rule) = rule {
        for name in &rule.key_headers {
            let lower = name.to_ascii_lowercase();
            key.push(HEADER_SEPARATOR);
            push_escaped(&mut key, lower.as_bytes(), &['=']);
            let value = HeaderName::from_bytes(lower.as_bytes())
                .ok()
                .and_then(|name| normalized_field(req, &name));
            if let Some(value) = value {
                key.push('=');
                push_escaped(&mut key, &value, &[]);
            }
        }
    }
    key
}

/// The namespace and URL part of [`cache_key`] (host, path, query as the rule shapes it),
/// without the key headers: every key stored for this URL, whatever its key-header
/// values, satisfies `key_url(key) == url_key(..)`. Used to purge or invalidate one URL.
pub fn url_key(ns: &str, host: &str, path_and_query: &str, rule: Option<&CacheRule>) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let mut key = String::with_capacity(ns.len() + host.len() + path_and_query.len() + 1);
    key.push_str(ns);
    push_host_and_path(&mut key, host, path);
    let ignore = rule.is_some_and(|r| r.ignore_query);
    let sort = rule.is_some_and(|r| r.sort_query);
    match query {
        Some(_) if ignore => {}
        Some(query) => {
            key.push('?');
            if sort {
                push_escaped(&mut key, sorted_query(query).as_bytes(), &[]);
            } else {
                push_escaped(&mut key, query.as_bytes(), &[]);
            }
        }
        None => {}
    }
    key
}

/// The key prefix shared by every key in `ns` of `host` whose path (and query) starts with
/// `prefix`: a purge by prefix removes the keys for which
/// `key.starts_with(&url_prefix_key(ns, host, prefix))`. The prefix is escaped like a key
/// (a `?` in it starts the query, kept as given), and an empty prefix means `/` (the whole
/// host), so `url_prefix_key(ns, "a.com", "")` does not match the keys of `a.com.cn`.
pub fn url_prefix_key(ns: &str, host: &str, prefix: &str) -> String {
    url_key(ns, host, prefix, None)
}

/// The namespace and URL part of a key (host, path and query, as escaped in the key):
/// everything before the first [`HEADER_SEPARATOR`]. For the key of a slice of a large
/// object (`crate::slice::slice_key`, an unescaped control character then the slice
/// number), that of its object's key.
pub fn key_url(key: &str) -> &str {
    let key = crate::slice::object_key(key);
    key.split_once(HEADER_SEPARATOR).map_or(key, |(url, _)| url)
}

/// The parts of a key, as written in it (escaped; for keys of real requests the service
/// id and the request's own lower-cased host and path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyScope<'a> {
    pub service: &'a str,
    pub scheme: &'a str,
    pub host: &'a str,
    /// Without the query.
    pub path: &'a str,
}

/// The service, scheme, host and path of a key; `None` for a string that is not a cache
/// key.
pub fn key_scope(key: &str) -> Option<KeyScope<'_>> {
    let url = key_url(key);
    let (service, rest) = url.split_once(SERVICE_SEPARATOR)?;
    let (scheme, rest) = rest.split_once("://")?;
    let slash = rest.find('/')?;
    let (host, rest) = rest.split_at(slash);
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    Some(KeyScope {
        service,
        scheme,
        host,
        path,
    })
}

/// The host and the path (without the query) of a key, as written in it. `None` for a
/// string that is not a cache key.
pub fn key_host_and_path(key: &str) -> Option<(&str, &str)> {
    key_scope(key).map(|s| (s.host, s.path))
}

/// The purge-index bucket of `service`'s keys for `host` (both schemes): the escaped
/// service and host joined by [`SERVICE_SEPARATOR`].
pub fn host_bucket(service: &str, host: &str) -> String {
    let mut out = String::with_capacity(service.len() + host.len() + 1);
    push_service(&mut out, service);
    out.push(SERVICE_SEPARATOR);
    push_escaped(&mut out, host.to_ascii_lowercase().as_bytes(), &['/', '?']);
    out
}

/// [`host_bucket`] of a stored key; `None` for a string that is not a cache key.
pub fn key_host_bucket(key: &str) -> Option<String> {
    let scope = key_scope(key)?;
    Some(format!(
        "{}{SERVICE_SEPARATOR}{}",
        scope.service, scope.host
    ))
}

/// The purge-index bucket of `service`'s keys tagged `tag`.
pub fn tag_bucket(service: &str, tag: &str) -> String {
    let mut out = String::with_capacity(service.len() + tag.len() + 1);
    push_service(&mut out, service);
    out.push(SERVICE_SEPARATOR);
    out.push_str(tag);
    out
}

/// [`tag_bucket`] of `tag` on a stored key; `None` for a string that is not a cache key.
pub fn key_tag_bucket(key: &str, tag: &str) -> Option<String> {
    let scope = key_scope(key)?;
    Some(format!("{}{SERVICE_SEPARATOR}{tag}", scope.service))
}

fn push_host_and_path(key: &mut String, host: &str, path: &str) {
    push_escaped(key, host.to_ascii_lowercase().as_bytes(), &['/', '?']);
    if !path.starts_with('/') {
        key.push('/');
    }
    push_escaped(key, path.as_bytes(), &['?']);
}

/// The query's `&`-separated parameters, sorted by name, then by value (a parameter
/// without `=` sorts before one with an empty value), joined again with `&`. Parameters
/// are compared as written (not percent-decoded); empty ones are kept.
fn sorted_query(query: &str) -> String {
    let mut params: Vec<&str> = query.split('&').collect();
    params.sort_by(|a, b| split_param(a).cmp(&split_param(b)));
    params.join("&")
}

fn split_param(param: &str) -> (&str, Option<&str>) {
    match param.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (param, None),
    }
}

/// Appends `bytes` to `out`, escaping as the module documentation says: ASCII controls,
/// space, `#` and the `extra` characters become `#XX`, and so does every byte that is not
/// part of valid UTF-8; the rest is copied. Injective for a given `extra`.
pub(crate) fn push_escaped(out: &mut String, bytes: &[u8], extra: &[char]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_ascii_control() || c == ' ' || c == '#' || extra.contains(&c) {
                // Only ASCII characters are escaped, so `c` is one byte.
                push_hex(out, c as u8);
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            push_hex(out, b);
        }
    }
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('#');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The namespace of the keys in these tests.
    const NS: &str = "svc|http://";

    fn ns(rest: &str) -> String {
        format!("{NS}{rest}")
    }

    fn cache_key(host: &str, pq: &str, rule: Option<&CacheRule>, req: &HeaderMap) -> String {
        super::cache_key(NS, host, pq, rule, req)
    }

    fn url_key(host: &str, pq: &str, rule: Option<&CacheRule>) -> String {
        super::url_key(NS, host, pq, rule)
    }

    fn url_prefix_key(host: &str, prefix: &str) -> String {
        super::url_prefix_key(NS, host, prefix)
    }

    #[test]
    fn slice_keys_belong_to_their_url() {
        let k = cache_key("a.com", "/big.iso?x=1", None, &HeaderMap::new());
        let slice = crate::slice::slice_key(&k, 12);
        assert_eq!(key_url(&slice), ns("a.com/big.iso?x=1"));
        assert_eq!(key_host_and_path(&slice), Some(("a.com", "/big.iso")));
        assert!(slice.starts_with(&url_prefix_key("a.com", "/big")));
        // No key contains the separator: control characters are always escaped.
        let odd = cache_key("a.com", "/a\u{1}slice=1", None, &HeaderMap::new());
        assert!(!odd.contains(crate::slice::SLICE_SEPARATOR));
    }

    #[test]
    fn namespaces_separate_services_and_schemes() {
        let h = HeaderMap::new();
        let a = super::cache_key(&namespace("a", Scheme::Http), "x.com", "/p", None, &h);
        let b = super::cache_key(&namespace("b", Scheme::Http), "x.com", "/p", None, &h);
        let s = super::cache_key(&namespace("a", Scheme::Https), "x.com", "/p", None, &h);
        assert_eq!(a, "a|http://x.com/p");
        assert_eq!(s, "a|https://x.com/p");
        assert_ne!(a, b);
        assert_ne!(a, s);
        assert_eq!(
            key_scope(&s),
            Some(KeyScope {
                service: "a",
                scheme: "https",
                host: "x.com",
                path: "/p"
            })
        );
        // Both schemes of one service's host share a purge bucket; services do not.
        assert_eq!(key_host_bucket(&a), Some(host_bucket("a", "X.com")));
        assert_eq!(key_host_bucket(&s), Some(host_bucket("a", "x.com")));
        assert_ne!(key_host_bucket(&b), Some(host_bucket("a", "x.com")));
        assert_eq!(key_tag_bucket(&a, "t"), Some(tag_bucket("a", "t")));
        // A service id cannot fake another namespace.
        let odd = namespace("a|http://x.com/p", Scheme::Http);
        assert!(!super::cache_key(&odd, "y.com", "/", None, &h).starts_with(&a));
        assert_eq!(key_scope("x.com/p"), None);
    }

    fn rule(path: &str) -> CacheRule {
        CacheRule {
            path: path.to_string(),
            ttl_secs: None,
            bypass: false,
            ignore_query: false,
            sort_query: false,
            key_headers: Vec::new(),
            cache_set_cookie: false,
        }
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

    #[test]
    fn rule_matching_first_match_exact_and_prefix() {
        let rules = vec![
            rule("/index.html"),
            rule("/assets/*"),
            rule("/assets/big/*"),
            rule("/*"),
        ];
        assert_eq!(rule_for(&rules, "/index.html").unwrap().path, "/index.html");
        assert_eq!(rule_for(&rules, "/assets/x.css").unwrap().path, "/assets/*");
        assert_eq!(rule_for(&rules, "/assets/").unwrap().path, "/assets/*");
        // First match wins, even when a later rule is more specific.
        assert_eq!(rule_for(&rules, "/assets/big/a").unwrap().path, "/assets/*");
        // `/assets` is not under `/assets/*`; it falls to the catch-all.
        assert_eq!(rule_for(&rules, "/assets").unwrap().path, "/*");
        // Exact paths are case-sensitive and not prefixes.
        assert_eq!(rule_for(&rules, "/index.html2").unwrap().path, "/*");
        assert_eq!(rule_for(&rules, "/INDEX.html").unwrap().path, "/*");
        // The query does not take part.
        assert_eq!(
            rule_for(&rules, "/index.html?v=1").unwrap().path,
            "/index.html"
        );

        let rules = vec![rule("/only")];
        assert!(rule_for(&rules, "/other").is_none());
        assert!(rule_for(&[], "/").is_none());
        // Several trailing stars behave as one.
        let rules = vec![rule("/a**")];
        assert!(rule_for(&rules, "/abc").is_some());
    }

    #[test]
    fn key_lowercases_host_and_keeps_path_and_query() {
        let h = HeaderMap::new();
        assert_eq!(
            cache_key("WWW.Example.COM", "/A/b.css?X=1&a=2", None, &h),
            ns("www.example.com/A/b.css?X=1&a=2")
        );
        assert_eq!(
            cache_key("www.example.com:8080", "/", None, &h),
            ns("www.example.com:8080/")
        );
        // No query and an empty query differ.
        assert_ne!(
            cache_key("a.com", "/x", None, &h),
            cache_key("a.com", "/x?", None, &h)
        );
        // Percent escapes and UTF-8 are kept verbatim.
        assert_eq!(
            cache_key("a.com", "/%E4%B8%AD/中.jpg", None, &h),
            ns("a.com/%E4%B8%AD/中.jpg")
        );
        // A path without a leading slash is keyed as if it had one.
        assert_eq!(cache_key("a.com", "", None, &h), ns("a.com/"));
        assert_eq!(cache_key("a.com", "?q", None, &h), ns("a.com/?q"));
    }

    #[test]
    fn key_query_ignore_and_sort() {
        let h = HeaderMap::new();
        let mut r = rule("/*");
        r.ignore_query = true;
        assert_eq!(
            cache_key("a.com", "/x?b=1&a=2", Some(&r), &h),
            ns("a.com/x")
        );
        assert_eq!(
            cache_key("a.com", "/x?b=1", Some(&r), &h),
            cache_key("a.com", "/x", Some(&r), &h)
        );

        let mut r = rule("/*");
        r.sort_query = true;
        assert_eq!(
            cache_key("a.com", "/x?b=2&a=9&b=1&a", Some(&r), &h),
            ns("a.com/x?a&a=9&b=1&b=2")
        );
        assert_eq!(
            cache_key("a.com", "/x?b=1&a=2", Some(&r), &h),
            cache_key("a.com", "/x?a=2&b=1", Some(&r), &h)
        );
        // By name first: `a=1` before `a-b=0` although '-' < '='.
        assert_eq!(
            cache_key("a.com", "/x?a-b=0&a=1", Some(&r), &h),
            ns("a.com/x?a=1&a-b=0")
        );
        // Without sort_query the order matters.
        assert_ne!(
            cache_key("a.com", "/x?b=1&a=2", None, &h),
            cache_key("a.com", "/x?a=2&b=1", None, &h)
        );
    }

    #[test]
    fn key_headers_are_appended_and_missing_differs_from_empty() {
        let mut r = rule("/*");
        r.key_headers = vec!["X-Device".into(), "Accept-Language".into()];
        let k = |h: &HeaderMap| cache_key("a.com", "/p?q=1", Some(&r), h);

        let both = headers(&[("x-device", "mobile"), ("accept-language", "zh-CN, en")]);
        assert_eq!(
            k(&both),
            ns("a.com/p?q=1 x-device=mobile accept-language=zh-CN,en")
        );
        let missing = headers(&[("accept-language", "en")]);
        let empty = headers(&[("x-device", ""), ("accept-language", "en")]);
        assert_eq!(k(&missing), ns("a.com/p?q=1 x-device accept-language=en"));
        assert_eq!(k(&empty), ns("a.com/p?q=1 x-device= accept-language=en"));
        assert_ne!(k(&missing), k(&empty));
        // Several field lines are joined like one comma-separated line.
        let lines = headers(&[("accept-language", "zh-CN"), ("accept-language", "en")]);
        let one = headers(&[("accept-language", "zh-CN ,en")]);
        assert_eq!(k(&lines), k(&one));
        // Spaces inside a value are escaped so they cannot fake a separator.
        let spaced = headers(&[("x-device", "a accept-language=en")]);
        assert_eq!(
            k(&spaced),
            ns("a.com/p?q=1 x-device=a#20accept-language=en accept-language")
        );
        assert_ne!(
            k(&spaced),
            k(&headers(&[("x-device", "a"), ("accept-language", "en")]))
        );
        // Key headers do not change the URL part.
        assert_eq!(key_url(&k(&both)), ns("a.com/p?q=1"));
        assert_eq!(key_url(&k(&both)), url_key("a.com", "/p?q=1", Some(&r)));
    }

    #[test]
    fn keys_are_unambiguous() {
        let h = HeaderMap::new();
        let inputs = [
            ("a.com", "/b"),
            ("a.com/", "b"),
            ("a.com/b", ""),
            ("a.co", "m/b"),
            ("a.com?", "/b"),
            ("a.com", "/b?"),
            ("a.com", "/b#3F"),
            ("a.com", "/b?#3F"),
            ("a.com", "/b c"),
            ("a.com", "/b#20c"),
            ("a.com", "/b?c d"),
            ("a.com", "/b?c#20d"),
            ("a.com", "/b\nc"),
            ("a.com", "/b#0Ac"),
        ];
        let mut keys: Vec<String> = inputs
            .iter()
            .map(|(host, p)| cache_key(host, p, None, &h))
            .collect();
        // `("a.com/", "b")`, `("a.com/b", "")` and `("a.co", "m/b")` differ from
        // `("a.com", "/b")` because `/` in a host is escaped.
        assert_eq!(keys[0], ns("a.com/b"));
        assert_eq!(keys[1], ns("a.com#2F/b"));
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "{keys:?}");

        // A key header value that looks like another key header.
        let mut r = rule("/*");
        r.key_headers = vec!["a".into(), "b".into()];
        let one = headers(&[("a", "1 b=2")]);
        let two = headers(&[("a", "1"), ("b", "2")]);
        assert_ne!(
            cache_key("h", "/", Some(&r), &one),
            cache_key("h", "/", Some(&r), &two)
        );
        // Non-UTF-8 bytes in a header value are escaped, not replaced.
        let mut r = rule("/*");
        r.key_headers = vec!["x".into()];
        let mut a = HeaderMap::new();
        a.insert("x", HeaderValue::from_bytes(b"\xff").unwrap());
        let mut b = HeaderMap::new();
        b.insert("x", HeaderValue::from_bytes(b"\xfe").unwrap());
        let ka = cache_key("h", "/", Some(&r), &a);
        assert_eq!(ka, ns("h/ x=#FF"));
        assert_ne!(ka, cache_key("h", "/", Some(&r), &b));
    }

    #[test]
    fn key_maps_back_to_host_and_path() {
        let mut r = rule("/*");
        r.key_headers = vec!["x-device".into()];
        let req = headers(&[("x-device", "a/b?c")]);
        let key = cache_key("WWW.A.com", "/dir/file.js?v=3", Some(&r), &req);
        assert_eq!(key_host_and_path(&key), Some(("www.a.com", "/dir/file.js")));
        assert_eq!(key_url(&key), ns("www.a.com/dir/file.js?v=3"));
        let key = cache_key("a.com", "/", None, &HeaderMap::new());
        assert_eq!(key_host_and_path(&key), Some(("a.com", "/")));
        assert_eq!(key_host_and_path("not a key"), None);
    }

    #[test]
    fn prefix_keys_for_purge() {
        let h = HeaderMap::new();
        let mut r = rule("/*");
        r.key_headers = vec!["x-device".into()];
        let key = cache_key("a.com", "/assets/app.css?v=2", Some(&r), &h);
        assert!(key.starts_with(&url_prefix_key("A.COM", "/assets/")));
        assert!(key.starts_with(&url_prefix_key("a.com", "/assets/app.css?v")));
        assert!(key.starts_with(&url_prefix_key("a.com", "")));
        assert!(key.starts_with(&url_prefix_key("a.com", "/")));
        assert!(!key.starts_with(&url_prefix_key("a.com", "/img/")));
        assert!(!key.starts_with(&url_prefix_key("b.com", "/")));
        // The whole-host prefix of `a.co` does not match `a.com`.
        assert!(!key.starts_with(&url_prefix_key("a.co", "")));
        // Exact URL purge through url_key, whatever the key headers.
        assert_eq!(
            key_url(&key),
            url_key("a.com", "/assets/app.css?v=2", Some(&r))
        );
        // Sorted queries purge by the sorted form.
        let mut s = rule("/*");
        s.sort_query = true;
        let key = cache_key("a.com", "/x?b=1&a=1", Some(&s), &h);
        assert_eq!(key_url(&key), url_key("a.com", "/x?a=1&b=1", Some(&s)));
    }

    #[test]
    fn random_inputs_never_panic_and_stay_injective() {
        let alphabet: Vec<char> = "/?&=# ab%\n\u{7f}中Z#2F".chars().collect();
        let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        let mut r = rule("/*");
        r.key_headers = vec!["x".into(), "Y=z".into(), "".into()];
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let mut s = || {
                let len = rng.random_range(0..8);
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect::<String>()
            };
            let host = s();
            let path = s();
            let key = cache_key(&host, &path, Some(&r), &HeaderMap::new());
            let _ = key_host_and_path(&key);
            let _ = rule_for(std::slice::from_ref(&r), &path);
            let _ = url_prefix_key(&host, &path);
            // Same key only for the same (lower-cased host, normalised path).
            let norm = (
                host.to_ascii_lowercase(),
                if path.starts_with('/') {
                    path.clone()
                } else {
                    format!("/{path}")
                },
            );
            if let Some(prev) = seen.insert(key.clone(), norm.clone()) {
                assert_eq!(prev, norm, "collision on {key:?}");
            }
        }
    }
}
