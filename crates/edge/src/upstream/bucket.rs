//! Bucket origins (`bucket:NAME`): a service served from a bucket of the platform's object
//! storage. The edge reads `GET /{bucket}/{key}` (or `HEAD`) from the S3 gateways listed in
//! its snapshot, path-style, signed with AWS Signature Version 4 under the service's
//! platform credential (which the gateways accept only for reading that bucket). The
//! edge signs even for a `public-read` bucket: there the credential reads exactly what an
//! unsigned caller may (objects, no listing), whoever owns the bucket, so serving a
//! public bucket needs nothing the edge could learn only from the bucket's ACL, and a
//! bucket made private again stops being served by other tenants' services at once.
//!
//! The key is the request path, percent-decoded, without its leading `/`; a path ending
//! in `/` reads its `index.html`, as a static website expects. The query string is not
//! sent (in S3 it selects sub-resources, not content). Of the request's fields only the
//! conditionals and `Range` are sent, so revalidation (`If-None-Match`,
//! `If-Modified-Since` against the object's ETag and Last-Modified) works and nothing a
//! client wrote can change what is signed.

use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use lingjing_model::sigv4;

/// The credential an edge reads one service's bucket with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketAccess {
    pub bucket: String,
    pub access_key: String,
    pub secret: String,
}

pub use lingjing_model::sigv4::EMPTY_SHA256;
/// The request fields passed on to the gateway.
const PASSED: [HeaderName; 5] = [
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// The gateway path (`/{bucket}/{key}`, key percent-encoded as SigV4 wants it) for a
/// client's `path_and_query`.
pub fn object_path(bucket: &str, path_and_query: &str) -> String {
    let path = path_and_query.split('?').next().unwrap_or("/");
    let mut key = percent_decode(path.strip_prefix('/').unwrap_or(path));
    if key.is_empty() || key.ends_with(b"/") {
        key.extend_from_slice(b"index.html");
    }
    let mut out = String::with_capacity(bucket.len() + key.len() * 3 + 2);
    out.push('/');
    out.push_str(bucket);
    out.push('/');
    for b in key {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` with `%XX` escapes decoded (a `%` not followed by two hex digits stays as it is).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The fields of a signed `method` request for `path` to the gateway at `host`: the
/// passed request fields of `client`, then those of [`sigv4`] for an empty payload.
pub fn signed_headers(
    access: &BucketAccess,
    method: &http::Method,
    host: &str,
    path: &str,
    client: &HeaderMap,
    now: SystemTime,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in PASSED {
        for v in client.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    let signed = sigv4(
        (&access.access_key, &access.secret),
        method,
        host,
        path,
        EMPTY_SHA256,
        now,
    );
    for (name, value) in signed {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.insert(name, v);
        }
    }
    out
}

/// AWS Signature Version 4 ([`lingjing_model::sigv4`]) of a `method` request for `path`
/// (already percent-encoded, no query) to `host`, whose payload has SHA-256 `payload`
/// (hex, or `UNSIGNED-PAYLOAD`), with key `(access_key, secret)`: the `Host`,
/// `x-amz-date`, `x-amz-content-sha256` and `Authorization` fields to send.
pub fn sigv4(
    key: (&str, &str),
    method: &http::Method,
    host: &str,
    path: &str,
    payload: &str,
    now: SystemTime,
) -> [(HeaderName, String); 4] {
    let signed = sigv4::sign(
        &sigv4::Request {
            method: method.as_str(),
            host,
            path,
            query: &[],
            payload,
        },
        key,
        now,
    );
    [
        (header::HOST, host.to_owned()),
        (HeaderName::from_static("x-amz-date"), signed.amz_date),
        (
            HeaderName::from_static("x-amz-content-sha256"),
            signed.content_sha256,
        ),
        (header::AUTHORIZATION, signed.authorization),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn paths_become_keys_of_the_bucket() {
        assert_eq!(object_path("site", "/"), "/site/index.html");
        assert_eq!(object_path("site", "/docs/?x=1"), "/site/docs/index.html");
        assert_eq!(object_path("site", "/a.css?v=3"), "/site/a.css");
        assert_eq!(
            object_path("site", "/a%20b/%E4%BD%A0.txt"),
            "/site/a%20b/%E4%BD%A0.txt"
        );
        assert_eq!(object_path("site", "/a+b%2Fc"), "/site/a%2Bb/c");
        assert_eq!(object_path("site", "/100%"), "/site/100%25");
        // A key can never leave the bucket: `..` is part of the key, not a step up.
        assert_eq!(object_path("site", "/../other/x"), "/site/../other/x");
    }

    #[test]
    fn the_signature_matches_aws_for_a_get() {
        // AWS's documented example "GET Object" (Signature Version 4, header-based),
        // with the same date, key and fields, but without `Range` in the signed fields.
        let access = BucketAccess {
            bucket: "examplebucket".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let mut client = HeaderMap::new();
        client.insert(header::RANGE, HeaderValue::from_static("bytes=0-9"));
        client.insert(header::COOKIE, HeaderValue::from_static("secret=1"));
        let h = signed_headers(
            &access,
            &http::Method::GET,
            "examplebucket.s3.amazonaws.com",
            "/test.txt",
            &client,
            UNIX_EPOCH + Duration::from_secs(1_369_353_600),
        );
        assert_eq!(h["x-amz-date"], "20130524T000000Z");
        assert_eq!(h[header::RANGE], "bytes=0-9");
        assert!(
            h.get(header::COOKIE).is_none(),
            "client fields are not passed on"
        );
        let auth = h[header::AUTHORIZATION].to_str().expect("ascii");
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
    }
}
