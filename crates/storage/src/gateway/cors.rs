//! Bucket CORS, as S3 does it: the configuration PutBucketCors stores (checked here: 1 to
//! [`MAX_RULES`] rules, methods only `GET PUT POST DELETE HEAD`, at most one `*` in an
//! origin or an allowed header), the preflight `OPTIONS` a browser sends before a
//! cross-origin request ([`preflight`]: unauthenticated; s3s does not route `OPTIONS`, so
//! the server answers it before s3s), and the headers an actual request carrying an
//! `Origin` gets on its response ([`decorate`]).
//!
//! A rule matches when one of its origins matches the `Origin` (a `*` stands for any
//! run of characters), the method (the preflight's `Access-Control-Request-Method`, or the
//! request's own) is one of its methods, and, on a preflight, every header named in
//! `Access-Control-Request-Headers` matches one of its allowed headers (ignoring case). The
//! first rule that matches decides. A rule whose origin is `*` alone answers
//! `Access-Control-Allow-Origin: *`; any other echoes the origin and allows credentials.
//!
//! Cost: a request that carries an `Origin` reads its bucket's CORS configuration (one
//! indexed read of `buckets`); requests without one read nothing more. There is no cache,
//! so a change is seen by the next request on every gateway.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use s3s::Body;
use s3s::S3Result;
use s3s::dto::{CORSConfiguration, CORSRule, CORSRules};
use s3s::host::{MultiDomain, S3Host};
use s3s::path::S3Path;
use s3s::s3_error;
use serde::{Deserialize, Serialize};

use crate::meta::Meta;

/// The most rules a configuration holds (S3's limit).
pub(crate) const MAX_RULES: usize = 100;

/// The methods a rule may allow.
const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// One CORS rule, as stored (JSON in `buckets.cors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i32>,
}

/// The rules of a PutBucketCors body, checked as S3 checks them.
pub(crate) fn from_config(config: &CORSConfiguration) -> S3Result<Vec<Rule>> {
    let rules = &config.cors_rules;
    if rules.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration has at least one CORSRule"
        ));
    }
    if rules.len() > MAX_RULES {
        return Err(s3_error!(
            InvalidRequest,
            "a CORS configuration has at most {MAX_RULES} rules, this one has {}",
            rules.len()
        ));
    }
    rules.iter().map(rule_from).collect()
}

fn rule_from(r: &CORSRule) -> S3Result<Rule> {
    if r.allowed_methods.is_empty() || r.allowed_origins.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "every CORSRule needs an AllowedMethod and an AllowedOrigin"
        ));
    }
    if let Some(id) = &r.id
        && id.chars().count() > 255
    {
        return Err(s3_error!(
            InvalidArgument,
            "a CORSRule's ID has at most 255 characters"
        ));
    }
    for m in &r.allowed_methods {
        if !METHODS.contains(&m.as_str()) {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            ));
        }
    }
    for o in &r.allowed_origins {
        if o.matches('*').count() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedOrigin \"{o}\" can not have more than one wildcard."
            ));
        }
    }
    let headers = r.allowed_headers.clone().unwrap_or_default();
    for h in &headers {
        if h.matches('*').count() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "AllowedHeader \"{h}\" can not have more than one wildcard."
            ));
        }
    }
    if r.max_age_seconds.is_some_and(|s| s < 0) {
        return Err(s3_error!(
            InvalidArgument,
            "MaxAgeSeconds is a number of seconds, not negative"
        ));
    }
    Ok(Rule {
        id: r.id.clone(),
        origins: r.allowed_origins.clone(),
        methods: r.allowed_methods.clone(),
        headers,
        expose: r.expose_headers.clone().unwrap_or_default(),
        max_age: r.max_age_seconds,
    })
}

/// `rules` as a GetBucketCors answer.
pub(crate) fn to_config(rules: Vec<Rule>) -> CORSRules {
    rules
        .into_iter()
        .map(|r| CORSRule {
            id: r.id,
            allowed_origins: r.origins,
            allowed_methods: r.methods,
            allowed_headers: (!r.headers.is_empty()).then_some(r.headers),
            expose_headers: (!r.expose.is_empty()).then_some(r.expose),
            max_age_seconds: r.max_age,
        })
        .collect()
}

/// Whether `s` matches `pattern`, whose one `*` (if any) stands for any run of
/// characters.
fn wildcard(pattern: &str, s: &str, ignore_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ignore_case {
            a.eq_ignore_ascii_case(b)
        } else {
            a == b
        }
    };
    match pattern.split_once('*') {
        None => eq(pattern, s),
        Some((head, tail)) => {
            s.len() >= head.len() + tail.len()
                && s.get(..head.len()).is_some_and(|h| eq(h, head))
                && s.get(s.len() - tail.len()..).is_some_and(|t| eq(t, tail))
        }
    }
}

/// The first of `rules` that allows `origin` to use `method` with `headers` (lowercase),
/// and the origin pattern that matched.
fn matching<'a>(
    rules: &'a [Rule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<(&'a Rule, &'a str)> {
    rules.iter().find_map(|r| {
        let pattern = r.origins.iter().find(|o| wildcard(o, origin, false))?;
        if !r.methods.iter().any(|m| m == method) {
            return None;
        }
        let allowed = headers
            .iter()
            .all(|h| r.headers.iter().any(|a| wildcard(a, h, true)));
        allowed.then_some((r, pattern.as_str()))
    })
}

/// What `Vary` says on every CORS answer of a bucket that has a configuration.
const VARY: &str = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method";

/// The headers that tell the browser `rule` (matched by `pattern`) lets `origin` in.
fn allow(rule: &Rule, pattern: &str, origin: &HeaderValue, h: &mut HeaderMap) {
    if pattern == "*" {
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    } else {
        h.insert("access-control-allow-origin", origin.clone());
        h.insert(
            "access-control-allow-credentials",
            HeaderValue::from_static("true"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&rule.methods.join(", ")) {
        h.insert("access-control-allow-methods", v);
    }
    if !rule.expose.is_empty()
        && let Ok(v) = HeaderValue::from_str(&rule.expose.join(", "))
    {
        h.insert("access-control-expose-headers", v);
    }
    if let Some(age) = rule.max_age {
        h.insert("access-control-max-age", HeaderValue::from(age));
    }
}

/// The bucket a request addresses (virtual-hosted or path style, as s3s reads it), and
/// whether it names an object.
pub(crate) fn addressed<B>(host: &MultiDomain, req: &http::Request<B>) -> Option<(String, bool)> {
    let path = percent_encoding::percent_decode_str(req.uri().path())
        .decode_utf8()
        .ok()?;
    let host_header = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let is_ip = |h: &str| {
        h.parse::<std::net::SocketAddr>().is_ok() || h.parse::<std::net::IpAddr>().is_ok()
    };
    let parsed = match host_header {
        Some(h) if !is_ip(h) => {
            let vh = host.parse_host_header(h).ok()?;
            s3s::path::parse_virtual_hosted_style(vh.bucket(), &path)
        }
        _ => s3s::path::parse_path_style(&path),
    };
    match parsed.ok()? {
        S3Path::Root => None,
        S3Path::Bucket { bucket } => Some((bucket.into(), false)),
        S3Path::Object { bucket, .. } => Some((bucket.into(), true)),
    }
}

/// The stored rules, `None` when there are none (or they cannot be read: logged).
fn parse_rules(stored: &str) -> Option<Vec<Rule>> {
    match serde_json::from_str(stored) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, "unreadable stored CORS configuration");
            None
        }
    }
}

/// An S3 XML error answer built here (outside s3s).
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &str,
) -> http::Response<Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message>{extra}</Error>",
        xml_escape(message)
    );
    let mut res = http::Response::new(Body::from(xml));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    res
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The answer to a preflight `OPTIONS` (`addressed`: the bucket and whether it names an
/// object; `None` when it names no bucket).
pub(crate) async fn preflight(
    meta: &Meta,
    addressed: Option<(String, bool)>,
    headers: &HeaderMap,
) -> http::Response<Body> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(method)) = (
        headers.get(http::header::ORIGIN),
        text("access-control-request-method"),
    ) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
            "",
        );
    };
    let resource = match &addressed {
        Some((_, true)) => "OBJECT",
        _ => "BUCKET",
    };
    let forbidden = |message: &str| {
        error_response(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            message,
            &format!(
                "<Method>{}</Method><ResourceType>{resource}</ResourceType>",
                xml_escape(method)
            ),
        )
    };
    let Some((bucket, _)) = addressed else {
        return forbidden("CORSResponse: a preflight names a bucket");
    };
    let stored = match meta.bucket_cors(&bucket).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return forbidden("CORSResponse: Bucket not found"),
        Err(e) => {
            tracing::error!(error = %e, "reading a bucket's CORS configuration failed");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the CORS configuration could not be read; retry",
                "",
            );
        }
    };
    let Some(rules) = stored.as_deref().and_then(parse_rules) else {
        return forbidden("CORSResponse: CORS is not enabled for this bucket.");
    };
    let requested: Vec<String> = text("access-control-request-headers")
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let origin_text = origin.to_str().unwrap_or("");
    let Some((rule, pattern)) = matching(&rules, origin_text, method, &requested) else {
        let mut res = forbidden(
            "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        );
        res.headers_mut()
            .insert(http::header::VARY, HeaderValue::from_static(VARY));
        return res;
    };
    let mut res = http::Response::new(Body::empty());
    let h = res.headers_mut();
    allow(rule, pattern, origin, h);
    if !requested.is_empty()
        && let Ok(v) = HeaderValue::from_str(&requested.join(", "))
    {
        h.insert("access-control-allow-headers", v);
    }
    h.insert(http::header::VARY, HeaderValue::from_static(VARY));
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    res
}

/// Adds the CORS headers to the response of an actual request with `origin` to `bucket`
/// (nothing when the bucket has no configuration or no rule matches).
pub(crate) async fn decorate(
    meta: &Meta,
    bucket: &str,
    origin: &HeaderValue,
    method: &Method,
    response: &mut HeaderMap,
) {
    let stored = match meta.bucket_cors(bucket).await {
        Ok(Some(Some(stored))) => stored,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(error = %e, "reading a bucket's CORS configuration failed");
            return;
        }
    };
    let Some(rules) = parse_rules(&stored) else {
        return;
    };
    response.insert(http::header::VARY, HeaderValue::from_static(VARY));
    let origin_text = origin.to_str().unwrap_or("");
    if let Some((rule, pattern)) = matching(&rules, origin_text, method.as_str(), &[]) {
        allow(rule, pattern, origin, response);
    }
}

/// The rules as stored.
pub(crate) fn to_stored(rules: &[Rule]) -> S3Result<String> {
    serde_json::to_string(rules).map_err(|e| s3_error!(InternalError, "{e}"))
}

/// The rules stored as `stored`.
pub(crate) fn from_stored(stored: &str) -> S3Result<Vec<Rule>> {
    serde_json::from_str(stored).map_err(|e| s3_error!(InternalError, "stored CORS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    fn rule(origins: &[&str], methods: &[&str], headers: &[&str]) -> CORSRule {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        CORSRule {
            allowed_origins: v(origins),
            allowed_methods: v(methods),
            allowed_headers: (!headers.is_empty()).then(|| v(headers)),
            ..Default::default()
        }
    }

    fn config(rules: Vec<CORSRule>) -> CORSConfiguration {
        CORSConfiguration { cors_rules: rules }
    }

    #[test]
    fn configurations_are_checked_as_s3_checks_them() {
        from_config(&config(vec![rule(
            &["https://*.example.com"],
            &["GET", "HEAD"],
            &["*"],
        )]))
        .expect("valid");
        let refused = |c: CORSConfiguration| from_config(&c).expect_err("refused").code().clone();
        assert_eq!(refused(config(vec![])), S3ErrorCode::MalformedXML);
        assert_eq!(
            refused(config(vec![rule(&["*"], &["PATCH"], &[])])),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            refused(config(vec![rule(&["*"], &["get"], &[])])),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            refused(config(vec![rule(&["https://*.*.com"], &["GET"], &[])])),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            refused(config(vec![rule(&["*"], &["GET"], &["x-*-*"])])),
            S3ErrorCode::InvalidRequest
        );
        assert_eq!(
            refused(config(vec![rule(&[], &["GET"], &[])])),
            S3ErrorCode::MalformedXML
        );
        assert_eq!(
            refused(config(vec![rule(&["*"], &[], &[])])),
            S3ErrorCode::MalformedXML
        );
        from_config(&config(
            (0..100).map(|_| rule(&["*"], &["GET"], &[])).collect(),
        ))
        .expect("100 rules");
        assert_eq!(
            refused(config(
                (0..101).map(|_| rule(&["*"], &["GET"], &[])).collect()
            )),
            S3ErrorCode::InvalidRequest
        );
        let stored = from_config(&config(vec![CORSRule {
            id: Some("web".into()),
            expose_headers: Some(vec!["ETag".into()]),
            max_age_seconds: Some(600),
            ..rule(&["https://a.example"], &["PUT"], &["content-type"])
        }]))
        .expect("valid");
        let back = from_stored(&to_stored(&stored).expect("json")).expect("read");
        assert_eq!(back, stored);
        assert_eq!(to_config(back)[0].max_age_seconds, Some(600));
    }

    #[test]
    fn wildcards_stand_for_any_run_of_characters() {
        assert!(wildcard("*", "https://x", false));
        assert!(wildcard(
            "https://*.example.com",
            "https://a.b.example.com",
            false
        ));
        assert!(!wildcard(
            "https://*.example.com",
            "https://example.com",
            false
        ));
        assert!(!wildcard(
            "https://*.example.com",
            "http://a.example.com",
            false
        ));
        assert!(wildcard("http://*", "http://", false));
        assert!(!wildcard("https://a.example", "https://A.example", false));
        assert!(wildcard("X-Amz-*", "x-amz-date", true));
        assert!(
            !wildcard("ab*ba", "aba", false),
            "head and tail may not overlap"
        );
        assert!(!wildcard("é*", "e", false));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = from_config(&config(vec![
            rule(
                &["https://app.example"],
                &["PUT"],
                &["content-type", "x-amz-*"],
            ),
            rule(&["*"], &["GET", "HEAD"], &[]),
        ]))
        .expect("valid");
        let hs = |h: &[&str]| h.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let (r, p) = matching(
            &rules,
            "https://app.example",
            "PUT",
            &hs(&["content-type", "x-amz-date"]),
        )
        .expect("first rule");
        assert_eq!((r.methods[0].as_str(), p), ("PUT", "https://app.example"));
        assert!(
            matching(
                &rules,
                "https://app.example",
                "PUT",
                &hs(&["authorization"])
            )
            .is_none()
        );
        assert!(matching(&rules, "https://other.example", "PUT", &[]).is_none());
        assert!(matching(&rules, "https://app.example", "DELETE", &[]).is_none());
        let (_, p) = matching(&rules, "https://other.example", "GET", &[]).expect("second rule");
        assert_eq!(p, "*");
        // A rule without allowed headers allows none.
        assert!(matching(&rules, "https://other.example", "GET", &hs(&["x-custom"])).is_none());
    }

    #[test]
    fn requests_are_addressed_as_s3s_reads_them() {
        let host = MultiDomain::new(&["s3.test", "s3.test:9000"]).expect("domain");
        let req = |host_header: &str, path: &str| {
            http::Request::builder()
                .uri(path)
                .header("host", host_header)
                .body(())
                .expect("request")
        };
        assert_eq!(
            addressed(&host, &req("127.0.0.1:9000", "/bk1/k")),
            Some(("bk1".into(), true))
        );
        assert_eq!(
            addressed(&host, &req("s3.test:9000", "/bk1")),
            Some(("bk1".into(), false))
        );
        assert_eq!(
            addressed(&host, &req("bk2.s3.test:9000", "/k/x")),
            Some(("bk2".into(), true))
        );
        assert_eq!(
            addressed(&host, &req("bk2.s3.test", "/")),
            Some(("bk2".into(), false))
        );
        assert_eq!(addressed(&host, &req("s3.test", "/")), None);
        assert_eq!(addressed(&host, &req("127.0.0.1", "/%FF")), None);
    }
}
