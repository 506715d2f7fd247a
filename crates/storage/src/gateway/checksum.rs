//! Body integrity, as S3 checks it: `Content-MD5` and the flexible checksums
//! (`x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`, `-sha1`, `-sha256`), sent as a header
//! or as a trailer of an aws-chunked body (`x-amz-trailer` names it; s3s parses trailers
//! and checks their signature, not their value).
//!
//! This module owns what a request asks to be verified ([`Expected::from_headers`]), the
//! one-pass hashing of a body ([`Hasher`]: the MD5 the ETag needs and at most one flexible
//! checksum, in constant memory), the verdict ([`Expected::verify`]: a malformed value is
//! 400 InvalidDigest or InvalidRequest, a mismatch 400 BadDigest, both before anything is
//! written), and how a checksum is kept in the metadata and shown in responses
//! ([`Checksum`]). The algorithms are s3s's (`s3s::crypto`, on AWS's `crc-fast` and the
//! RustCrypto hashes), so the gateway checks exactly what s3s would compute.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use s3s::crypto::Checksum as _;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

/// A flexible checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// Its name as S3 spells it (`x-amz-sdk-checksum-algorithm`, error messages).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The header (or trailer) that carries it.
    pub(crate) fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The length of its digest in bytes.
    fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }

    /// The algorithm named `name` (case-insensitive, as S3 takes it).
    pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    fn from_header(header: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(header.trim()))
    }
}

/// An object's (or a part's) checksum: its algorithm and its value in base64, as the
/// `x-amz-checksum-*` headers carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checksum {
    pub(crate) algorithm: Algorithm,
    pub(crate) value: String,
}

impl Checksum {
    /// As the metadata keeps it: `ALGORITHM:BASE64` (base64 has no `:`).
    pub(crate) fn to_stored(&self) -> String {
        format!("{}:{}", self.algorithm.name(), self.value)
    }

    /// A stored checksum ([`Checksum::to_stored`]); `None` for anything else (not ours:
    /// a read shows no checksum rather than fail).
    pub(crate) fn from_stored(stored: &str) -> Option<Checksum> {
        let (name, value) = stored.split_once(':')?;
        Some(Checksum {
            algorithm: Algorithm::from_name(name)?,
            value: value.to_owned(),
        })
    }

    /// The response fields that show it (`x-amz-checksum-*`, and `x-amz-checksum-type`
    /// FULL_OBJECT: a single PUT's checksum covers the whole object).
    pub(crate) fn to_dto(&self) -> s3s::dto::Checksum {
        let mut out = s3s::dto::Checksum {
            checksum_type: Some(s3s::dto::ChecksumType::from_static(
                s3s::dto::ChecksumType::FULL_OBJECT,
            )),
            ..Default::default()
        };
        let value = Some(self.value.clone());
        match self.algorithm {
            Algorithm::Crc32 => out.checksum_crc32 = value,
            Algorithm::Crc32c => out.checksum_crc32c = value,
            Algorithm::Crc64Nvme => out.checksum_crc64nvme = value,
            Algorithm::Sha1 => out.checksum_sha1 = value,
            Algorithm::Sha256 => out.checksum_sha256 = value,
        }
        out
    }
}

/// The running state of one flexible checksum.
enum Running {
    Crc32(s3s::crypto::Crc32),
    Crc32c(s3s::crypto::Crc32c),
    Crc64Nvme(s3s::crypto::Crc64Nvme),
    Sha1(s3s::crypto::Sha1),
    Sha256(s3s::crypto::Sha256),
}

impl Running {
    fn new(algorithm: Algorithm) -> Running {
        match algorithm {
            Algorithm::Crc32 => Running::Crc32(s3s::crypto::Crc32::new()),
            Algorithm::Crc32c => Running::Crc32c(s3s::crypto::Crc32c::new()),
            Algorithm::Crc64Nvme => Running::Crc64Nvme(s3s::crypto::Crc64Nvme::new()),
            Algorithm::Sha1 => Running::Sha1(s3s::crypto::Sha1::new()),
            Algorithm::Sha256 => Running::Sha256(s3s::crypto::Sha256::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Running::Crc32(h) => h.update(data),
            Running::Crc32c(h) => h.update(data),
            Running::Crc64Nvme(h) => h.update(data),
            Running::Sha1(h) => h.update(data),
            Running::Sha256(h) => h.update(data),
        }
    }

    fn finish(self) -> Checksum {
        let (algorithm, digest): (Algorithm, Vec<u8>) = match self {
            Running::Crc32(h) => (Algorithm::Crc32, h.finalize().to_vec()),
            Running::Crc32c(h) => (Algorithm::Crc32c, h.finalize().to_vec()),
            Running::Crc64Nvme(h) => (Algorithm::Crc64Nvme, h.finalize().to_vec()),
            Running::Sha1(h) => (Algorithm::Sha1, h.finalize().to_vec()),
            Running::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
        };
        Checksum {
            algorithm,
            value: STANDARD.encode(digest),
        }
    }
}

/// Hashes a body as it streams by: always its MD5 (the ETag), and the flexible checksum
/// the request asked for, if any. Constant memory.
pub(crate) struct Hasher {
    md5: Md5,
    checksum: Option<Running>,
}

/// What [`Hasher::finish`] computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digests {
    pub(crate) md5: [u8; 16],
    pub(crate) checksum: Option<Checksum>,
}

impl Hasher {
    pub(crate) fn new(algorithm: Option<Algorithm>) -> Hasher {
        Hasher {
            md5: Md5::new(),
            checksum: algorithm.map(Running::new),
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some(c) = &mut self.checksum {
            c.update(data);
        }
    }

    pub(crate) fn finish(self) -> Digests {
        Digests {
            md5: self.md5.finalize().into(),
            checksum: self.checksum.map(Running::finish),
        }
    }
}

/// Where the flexible checksum to verify comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claimed {
    /// In a header, already decoded (its length checked).
    Header(Algorithm, Vec<u8>),
    /// In the trailer `x-amz-trailer` names, read once the body has ended.
    Trailer(Algorithm),
}

/// What a request asks to be verified about its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expected {
    md5: Option<[u8; 16]>,
    checksum: Option<Claimed>,
}

fn invalid_request(message: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message)
}

/// `value` as the base64 digest of `algorithm`, if it is one.
fn decode(algorithm: Algorithm, value: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(value.trim())
        .ok()
        .filter(|d| d.len() == algorithm.digest_len())
}

impl Expected {
    /// What `headers` ask: `Content-MD5` (malformed: 400 InvalidDigest), at most one
    /// `x-amz-checksum-*` header or a trailer `x-amz-trailer` names (malformed, several,
    /// or an unknown algorithm: 400 InvalidRequest), consistent with
    /// `x-amz-sdk-checksum-algorithm` when that is sent (alone, it asks for nothing).
    pub(crate) fn from_headers(headers: &http::HeaderMap) -> S3Result<Expected> {
        let md5 = match headers.get("content-md5") {
            None => None,
            Some(v) => {
                let digest = v
                    .to_str()
                    .ok()
                    .and_then(|s| STANDARD.decode(s.trim()).ok())
                    .and_then(|d| <[u8; 16]>::try_from(d).ok());
                match digest {
                    Some(d) => Some(d),
                    None => {
                        return Err(s3_error!(
                            InvalidDigest,
                            "The Content-MD5 you specified was invalid."
                        ));
                    }
                }
            }
        };
        let mut claimed = Vec::new();
        for (name, value) in headers {
            let Some(rest) = name.as_str().strip_prefix("x-amz-checksum-") else {
                continue;
            };
            if rest == "mode" || rest == "type" || rest == "algorithm" {
                continue;
            }
            let Some(algorithm) = Algorithm::from_header(name.as_str()) else {
                return Err(invalid_request(format!(
                    "{name} is not a checksum S3 knows: use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256"
                )));
            };
            let digest = value.to_str().ok().and_then(|v| decode(algorithm, v));
            match digest {
                Some(d) => claimed.push(Claimed::Header(algorithm, d)),
                None => {
                    return Err(invalid_request(format!(
                        "Value for {name} header is invalid."
                    )));
                }
            }
        }
        if let Some(trailer) = headers.get("x-amz-trailer") {
            let names = trailer.to_str().map_err(|_| {
                invalid_request("x-amz-trailer is not a list of header names".to_owned())
            })?;
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if !name.to_ascii_lowercase().starts_with("x-amz-checksum-") {
                    continue;
                }
                match Algorithm::from_header(name) {
                    Some(a) => claimed.push(Claimed::Trailer(a)),
                    None => {
                        return Err(invalid_request(format!(
                            "the trailer {name} is not a checksum S3 knows: use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256"
                        )));
                    }
                }
            }
        }
        if claimed.len() > 1 {
            return Err(invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
                    .to_owned(),
            ));
        }
        let checksum = claimed.pop();
        if let Some(sdk) = headers.get("x-amz-sdk-checksum-algorithm") {
            let named = sdk.to_str().ok().and_then(Algorithm::from_name);
            let Some(named) = named else {
                return Err(invalid_request(
                    "Value for x-amz-sdk-checksum-algorithm header is invalid.".to_owned(),
                ));
            };
            let sent = match &checksum {
                Some(Claimed::Header(a, _) | Claimed::Trailer(a)) => Some(*a),
                None => None,
            };
            if sent.is_some_and(|a| a != named) {
                return Err(invalid_request(format!(
                    "x-amz-sdk-checksum-algorithm is {} but the checksum sent is another",
                    named.name()
                )));
            }
        }
        Ok(Expected { md5, checksum })
    }

    /// The flexible checksum to compute while the body streams, if any.
    pub(crate) fn algorithm(&self) -> Option<Algorithm> {
        match &self.checksum {
            Some(Claimed::Header(a, _) | Claimed::Trailer(a)) => Some(*a),
            None => None,
        }
    }

    /// Checks `got` (the body's digests, hashed by a [`Hasher`] for
    /// [`Expected::algorithm`]) against what was claimed, `trailers` holding the body's
    /// trailers (once it has ended): a mismatch is 400 BadDigest, a trailer that did not
    /// come (or is malformed) 400 InvalidRequest. The verified checksum, to store and
    /// show.
    pub(crate) fn verify(
        &self,
        got: &Digests,
        trailers: Option<&http::HeaderMap>,
    ) -> S3Result<Option<Checksum>> {
        if self.md5.is_some_and(|m| m != got.md5) {
            return Err(s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ));
        }
        let (algorithm, claimed) = match &self.checksum {
            None => return Ok(None),
            Some(Claimed::Header(a, d)) => (*a, d.clone()),
            Some(Claimed::Trailer(a)) => {
                let value = trailers.and_then(|t| t.get(a.header()));
                let Some(value) = value else {
                    return Err(invalid_request(format!(
                        "x-amz-trailer names {} but the body did not end with it",
                        a.header()
                    )));
                };
                match value.to_str().ok().and_then(|v| decode(*a, v)) {
                    Some(d) => (*a, d),
                    None => {
                        return Err(invalid_request(format!(
                            "Value for {} trailing header is invalid.",
                            a.header()
                        )));
                    }
                }
            }
        };
        let computed = got
            .checksum
            .as_ref()
            .filter(|c| c.algorithm == algorithm)
            .ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InternalError,
                    "the body was not hashed for its checksum",
                )
            })?;
        let matches = STANDARD.decode(&computed.value).is_ok_and(|d| d == claimed);
        if !matches {
            return Err(s3_error!(
                BadDigest,
                "The {} you specified did not match the calculated checksum.",
                algorithm.name()
            ));
        }
        Ok(Some(computed.clone()))
    }
}

/// The operations that verify their own bodies ([`Expected::verify`] as they stream them
/// into blocks, aws-chunked trailers included): [`CheckedBody`] leaves theirs alone.
const SELF_CHECKING: [&str; 2] = ["PutObject", "UploadPart"];

/// Whether a request's body is for [`CheckedBody`]: it claims a digest (`Content-MD5`,
/// `x-amz-checksum-*`) and is not aws-chunked (whose digests cover the decoded payload s3s
/// hands the handlers: only PutObject and UploadPart take one, and they check it).
pub(crate) fn wants_check(headers: &http::HeaderMap) -> bool {
    let chunked = headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"))
        || headers
            .get(http::header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("aws-chunked"));
    let claims = headers.keys().any(|k| {
        k.as_str() == "content-md5"
            || k.as_str()
                .strip_prefix("x-amz-checksum-")
                .is_some_and(|rest| !matches!(rest, "mode" | "type" | "algorithm"))
    });
    claims && !chunked
}

/// Where a [`CheckedBody`] leaves its verdict: the error the request is to be answered
/// with (code and message), when its body failed its digest.
#[derive(Clone, Default)]
pub(crate) struct Verdict(std::sync::Arc<std::sync::Mutex<Option<(S3ErrorCode, String)>>>);

impl Verdict {
    fn set(&self, e: &S3Error) {
        if let Ok(mut v) = self.0.lock() {
            *v = Some((e.code().clone(), e.message().unwrap_or_default().to_owned()));
        }
    }

    /// The failure, if the body failed.
    pub(crate) fn take(&self) -> Option<(S3ErrorCode, String)> {
        self.0.lock().ok().and_then(|mut v| v.take())
    }
}

/// What a [`CheckedBody`] is doing.
enum Checking {
    /// Not polled yet: the operation is not known until s3s has routed the request.
    Waiting(Result<Expected, (S3ErrorCode, String)>),
    Hashing(Expected, Box<Hasher>),
    /// Nothing (more) to check.
    Passing,
}

/// A request body whose `Content-MD5` or `x-amz-checksum-*` header is verified as s3s
/// reads it, for the operations whose bodies s3s reads whole before their handlers run
/// (DeleteObjects, the tagging, CORS, ACL and versioning configurations,
/// CompleteMultipartUpload): s3s checks none of them. A mismatch (or a malformed header)
/// ends the body with an error and leaves it in the [`Verdict`], which the server answers
/// with (400 BadDigest, InvalidDigest or InvalidRequest) in place of the failure s3s
/// reports; the handler never runs, so nothing changes. PutObject and UploadPart
/// ([`SELF_CHECKING`], known from the [`super::metrics::OpSlot`] by the first read) pass
/// through unhashed.
pub(crate) struct CheckedBody<B> {
    inner: B,
    state: Checking,
    op: super::metrics::OpSlot,
    verdict: Verdict,
}

impl<B> CheckedBody<B> {
    pub(crate) fn new(
        inner: B,
        headers: &http::HeaderMap,
        op: super::metrics::OpSlot,
        verdict: Verdict,
    ) -> CheckedBody<B> {
        let expected = Expected::from_headers(headers)
            .map_err(|e| (e.code().clone(), e.message().unwrap_or_default().to_owned()));
        CheckedBody {
            inner,
            state: Checking::Waiting(expected),
            op,
            verdict,
        }
    }

    fn fail(&mut self, e: &S3Error) -> Box<dyn std::error::Error + Send + Sync> {
        self.verdict.set(e);
        self.state = Checking::Passing;
        Box::new(std::io::Error::other(format!(
            "{}: {}",
            e.code().as_str(),
            e.message().unwrap_or_default()
        )))
    }
}

impl<B> hyper::body::Body for CheckedBody<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Checking::Waiting(expected) = &this.state {
            let op = this.op.get();
            this.state = if op.as_deref().is_some_and(|o| SELF_CHECKING.contains(&o)) {
                Checking::Passing
            } else {
                match expected {
                    Err((code, message)) => {
                        let e = S3Error::with_message(code.clone(), message.clone());
                        return Poll::Ready(Some(Err(this.fail(&e))));
                    }
                    Ok(e) => Checking::Hashing(e.clone(), Box::new(Hasher::new(e.algorithm()))),
                }
            };
        }
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => {
                if let (Checking::Hashing(_, hasher), Some(data)) =
                    (&mut this.state, frame.data_ref())
                {
                    hasher.update(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                match std::mem::replace(&mut this.state, Checking::Passing) {
                    Checking::Hashing(expected, hasher) => {
                        if let Err(e) = expected.verify(&hasher.finish(), None) {
                            return Poll::Ready(Some(Err(this.fail(&e))));
                        }
                    }
                    Checking::Waiting(_) | Checking::Passing => {}
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // The end is where the verdict is given: it must be polled.
        matches!(self.state, Checking::Passing) && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests(algorithm: Option<Algorithm>, data: &[u8]) -> Digests {
        let mut h = Hasher::new(algorithm);
        // In pieces, as a body streams.
        for piece in data.chunks(3) {
            h.update(piece);
        }
        h.finish()
    }

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        map
    }

    #[test]
    fn known_vectors() {
        // The check values of each algorithm's catalogue entry (over "123456789"), in
        // hex; S3 shows them in base64, big-endian.
        for (algorithm, hex_digest) in [
            (Algorithm::Crc32, "cbf43926"),
            (Algorithm::Crc32c, "e3069283"),
            (Algorithm::Crc64Nvme, "ae8b14860a799888"),
            (Algorithm::Sha1, "f7c3bc1d808e04732adf679965ccc34ca7ae3441"),
            (
                Algorithm::Sha256,
                "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
            ),
        ] {
            let got = digests(Some(algorithm), b"123456789");
            let checksum = got.checksum.expect("computed");
            assert_eq!(checksum.algorithm, algorithm);
            assert_eq!(
                hex::encode(STANDARD.decode(&checksum.value).expect("base64")),
                hex_digest,
                "{}",
                algorithm.name()
            );
        }
        // What AWS shows for an empty object, and for "hello world" (its documentation).
        let empty = digests(Some(Algorithm::Crc32), b"");
        assert_eq!(empty.checksum.expect("crc32").value, "AAAAAA==");
        assert_eq!(hex::encode(empty.md5), "d41d8cd98f00b204e9800998ecf8427e");
        let hello = digests(Some(Algorithm::Crc32), b"hello world");
        assert_eq!(hello.checksum.expect("crc32").value, "DUoRhQ==");
        assert_eq!(digests(None, b"x").checksum, None);
    }

    #[test]
    fn names_headers_and_storage_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
            assert_eq!(Algorithm::from_name(&a.name().to_lowercase()), Some(a));
            assert_eq!(Algorithm::from_header(a.header()), Some(a));
            let c = digests(Some(a), b"data").checksum.expect("computed");
            assert_eq!(Checksum::from_stored(&c.to_stored()), Some(c.clone()));
            let dto = c.to_dto();
            let shown = [
                dto.checksum_crc32,
                dto.checksum_crc32c,
                dto.checksum_crc64nvme,
                dto.checksum_sha1,
                dto.checksum_sha256,
            ];
            assert_eq!(shown.iter().flatten().collect::<Vec<_>>(), [&c.value]);
        }
        assert_eq!(Algorithm::from_name("MD5"), None);
        assert_eq!(Checksum::from_stored("garbage"), None);
        assert_eq!(Checksum::from_stored("XXH3:AAAA"), None);
    }

    #[test]
    fn content_md5_is_checked() {
        let data = b"the body";
        let got = digests(None, data);
        let good = STANDARD.encode(got.md5);
        let expected = Expected::from_headers(&headers(&[("content-md5", &good)])).expect("ok");
        assert_eq!(expected.verify(&got, None).expect("matches"), None);
        let other = STANDARD.encode(digests(None, b"another").md5);
        let e = Expected::from_headers(&headers(&[("content-md5", &other)]))
            .expect("well-formed")
            .verify(&got, None)
            .expect_err("mismatch");
        assert_eq!(*e.code(), S3ErrorCode::BadDigest);
        for bad in ["not base64!", "AAAA", &STANDARD.encode([0u8; 17])] {
            let e = Expected::from_headers(&headers(&[("content-md5", bad)])).expect_err(bad);
            assert_eq!(*e.code(), S3ErrorCode::InvalidDigest, "{bad}");
        }
    }

    #[test]
    fn header_checksums_are_checked() {
        let data = b"some bytes";
        for a in Algorithm::ALL {
            let right = digests(Some(a), data).checksum.expect("computed").value;
            let expected = Expected::from_headers(&headers(&[
                (a.header(), &right),
                ("x-amz-sdk-checksum-algorithm", a.name()),
            ]))
            .expect("ok");
            assert_eq!(expected.algorithm(), Some(a));
            let got = digests(expected.algorithm(), data);
            let verified = expected.verify(&got, None).expect("matches");
            assert_eq!(verified.map(|c| c.value), Some(right.clone()));
            // The checksum of other bytes.
            let wrong = digests(Some(a), b"other bytes").checksum.expect("c").value;
            let e = Expected::from_headers(&headers(&[(a.header(), &wrong)]))
                .expect("ok")
                .verify(&got, None)
                .expect_err("mismatch");
            assert_eq!(*e.code(), S3ErrorCode::BadDigest);
            assert!(
                e.message().expect("message").contains(a.name()),
                "{:?}",
                e.message()
            );
            // Malformed: not base64, or the wrong length.
            for bad in ["!!".to_owned(), STANDARD.encode([0u8; 7])] {
                let e = Expected::from_headers(&headers(&[(a.header(), &bad)])).expect_err(&bad);
                assert_eq!(*e.code(), S3ErrorCode::InvalidRequest);
            }
        }
    }

    #[test]
    fn conflicting_or_unknown_checksums_are_refused() {
        let crc = digests(Some(Algorithm::Crc32), b"x")
            .checksum
            .expect("c")
            .value;
        let sha = digests(Some(Algorithm::Sha256), b"x")
            .checksum
            .expect("c")
            .value;
        for pairs in [
            vec![
                ("x-amz-checksum-crc32", crc.as_str()),
                ("x-amz-checksum-sha256", sha.as_str()),
            ],
            vec![
                ("x-amz-checksum-crc32", crc.as_str()),
                ("x-amz-trailer", "x-amz-checksum-crc32"),
            ],
            vec![("x-amz-checksum-xxhash", "AAAA")],
            vec![("x-amz-trailer", "x-amz-checksum-md5")],
            vec![
                ("x-amz-checksum-crc32", crc.as_str()),
                ("x-amz-sdk-checksum-algorithm", "SHA256"),
            ],
            vec![("x-amz-sdk-checksum-algorithm", "MD5")],
        ] {
            let e = Expected::from_headers(&headers(&pairs)).expect_err("refused");
            assert_eq!(*e.code(), S3ErrorCode::InvalidRequest, "{pairs:?}");
        }
        // The algorithm alone asks for nothing; so do the checksum mode and type headers.
        let alone = Expected::from_headers(&headers(&[
            ("x-amz-sdk-checksum-algorithm", "crc32"),
            ("x-amz-checksum-mode", "ENABLED"),
        ]))
        .expect("ok");
        assert_eq!(alone, Expected::default());
    }

    #[test]
    fn trailer_checksums_are_checked_after_the_body() {
        let data = b"chunked body";
        let expected =
            Expected::from_headers(&headers(&[("x-amz-trailer", "x-amz-checksum-crc32c")]))
                .expect("ok");
        assert_eq!(expected.algorithm(), Some(Algorithm::Crc32c));
        let got = digests(expected.algorithm(), data);
        let right = got.checksum.clone().expect("computed").value;
        let verified = expected
            .verify(&got, Some(&headers(&[("x-amz-checksum-crc32c", &right)])))
            .expect("matches");
        assert_eq!(verified.map(|c| c.value), Some(right));
        let wrong = digests(Some(Algorithm::Crc32c), b"else")
            .checksum
            .expect("c");
        let e = expected
            .verify(
                &got,
                Some(&headers(&[("x-amz-checksum-crc32c", &wrong.value)])),
            )
            .expect_err("mismatch");
        assert_eq!(*e.code(), S3ErrorCode::BadDigest);
        for trailers in [
            None,
            Some(headers(&[])),
            Some(headers(&[("x-amz-checksum-crc32", "AAAAAA==")])),
            Some(headers(&[("x-amz-checksum-crc32c", "garbage")])),
        ] {
            let e = expected
                .verify(&got, trailers.as_ref())
                .expect_err("missing or malformed");
            assert_eq!(*e.code(), S3ErrorCode::InvalidRequest, "{trailers:?}");
        }
        // Other trailers are none of this module's business.
        let other =
            Expected::from_headers(&headers(&[("x-amz-trailer", "x-amz-meta-a")])).expect("ok");
        assert_eq!(other, Expected::default());
    }
}
