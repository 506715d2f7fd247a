//! AWS Signature Version 4 for the platform's own S3 clients (the edges reading bucket
//! origins, `lingjing up` writing the demo site, the console browsing buckets):
//! header-based, signing `host`, `x-amz-content-sha256` and `x-amz-date`, in the one
//! region the gateways serve.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The SHA-256 of an empty payload (a GET's or HEAD's).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The region named in the signature's scope (the gateways serve one region).
pub const REGION: &str = "us-east-1";

/// A request to sign.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `host` or `host:port`, as the `Host` field will say.
    pub host: &'a str,
    /// The path, already percent-encoded as S3 wants it (see [`encode`]).
    pub path: &'a str,
    /// Query parameters, not encoded (signing encodes and sorts them).
    pub query: &'a [(&'a str, &'a str)],
    /// The payload's SHA-256 in hex, or `UNSIGNED-PAYLOAD`.
    pub payload: &'a str,
}

/// The fields a signed request sends besides `Host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub amz_date: String,
    pub content_sha256: String,
    pub authorization: String,
}

impl Signed {
    /// The three fields as (name, value).
    pub fn fields(&self) -> [(&'static str, &str); 3] {
        [
            ("x-amz-date", &self.amz_date),
            ("x-amz-content-sha256", &self.content_sha256),
            ("authorization", &self.authorization),
        ]
    }
}

/// Signs `req` with `(access_key, secret)` at `now`.
pub fn sign(req: &Request<'_>, (access_key, secret): (&str, &str), now: SystemTime) -> Signed {
    let stamp = amz_date(now);
    let day = &stamp[..8];
    let payload = req.payload;
    let canonical = format!(
        "{}\n{}\n{}\nhost:{}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}",
        req.method,
        req.path,
        canonical_query(req.query),
        req.host
    );
    let scope = format!("{day}/{REGION}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in [REGION, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    Signed {
        authorization: format!(
            "AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
        ),
        amz_date: stamp,
        content_sha256: payload.to_owned(),
    }
}

/// The query string of `query` as sent and signed: names and values percent-encoded,
/// sorted by name then value.
pub fn canonical_query(query: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode(k, true), encode(v, true)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `s` percent-encoded as SigV4 wants: everything but `A-Za-z0-9-._~` (and `/` unless
/// `slash` is set, for a path).
pub fn encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !slash) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SHA-256 of `bytes` in hex (a signed payload).
pub fn payload_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `now` as SigV4 writes it: `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::units::civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn dates_are_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        assert_eq!(amz_date(t), "20150830T123600Z");
        assert_eq!(amz_date(UNIX_EPOCH), "19700101T000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        assert_eq!(amz_date(leap), "20240229T120000Z");
    }

    #[test]
    fn the_signature_matches_aws_for_a_list() {
        // AWS's documented example "GET Bucket (List Objects)" (Signature Version 4,
        // header-based): GET /?max-keys=2&prefix=J with the same date and key.
        let signed = sign(
            &Request {
                method: "GET",
                host: "examplebucket.s3.amazonaws.com",
                path: "/",
                query: &[("prefix", "J"), ("max-keys", "2")],
                payload: EMPTY_SHA256,
            },
            (
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            UNIX_EPOCH + Duration::from_secs(1_369_353_600),
        );
        assert_eq!(signed.amz_date, "20130524T000000Z");
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn queries_are_encoded_and_sorted() {
        assert_eq!(
            canonical_query(&[("prefix", "a b/ü"), ("list-type", "2"), ("delimiter", "/")]),
            "delimiter=%2F&list-type=2&prefix=a%20b%2F%C3%BC"
        );
        assert_eq!(encode("a b/c", false), "a%20b/c");
    }
}
