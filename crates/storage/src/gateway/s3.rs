//! The S3 operations: buckets (create, head, delete when empty, list, location,
//! versioning) and objects (put and copy, both conditional; get with ranges and head,
//! both conditional on the ETag and the time; delete, DeleteObjects, list v1 and v2 with
//! prefix, delimiter, continuation token or marker, start-after, max-keys and
//! `encoding-type=url`, ListObjectVersions, multipart uploads with parts copied from
//! object ranges, ListMultipartUploads), each scoped to the tenant of the request's
//! access key (another tenant's bucket is `AccessDenied`, except for the reads a
//! `public-read` bucket opens to everyone: see [`super::acl`]); bucket ACLs (canned
//! `private` and `public-read`), object tags (on PUT, copy and multipart, and the
//! tagging operations, per version) and bucket tags ([`super::tagging`]), and bucket CORS
//! configurations ([`super::cors`], which also applies them).
//!
//! A PUT streams the body, cuts it into blocks of `block_bytes` (`k` times that when the
//! cluster erasure-codes them: `Gateway::block_size`), writes each to its
//! replicas or as erasure-coded shards as it fills (memory per request: one block), checks the length it got
//! against the one declared (s3s does not for aws-chunked bodies) and its `Content-MD5`
//! and flexible checksum (a header, or an aws-chunked trailer: [`super::checksum`]; a
//! mismatch is 400 BadDigest), and only then makes the object visible, in one transaction
//! ([`crate::meta`]), with the checksum it was sent (returned by GET and HEAD of the whole
//! object with `x-amz-checksum-mode: ENABLED`; multipart objects have none). A GET streams the blocks a
//! range covers, up to four fetched ahead, through a channel of one: memory per request
//! stays bounded whatever the size.
//!
//! Versioning follows S3: in a versioned bucket every write is a new version (its id in
//! `x-amz-version-id`), a DELETE without a version id adds a delete marker, and a version
//! id on GET, HEAD, DELETE or a copy source addresses one version; a bucket never
//! versioned shows no version ids. Deleting frees no block at once: blocks are shared by
//! versions and copies; garbage collection ([`crate::gc`]) removes those nothing
//! references any more, and a copy commits only while its source version is there.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::checksum::{self, Expected, Hasher};
use super::class::Class;
use super::{Keys, acl, cors, tagging};
use crate::block::BlockId;
use crate::erasure;
use crate::meta::{self, BlockRef, Condition, Created, Meta, MetaError, Versioning};
use crate::replicas::{ReplicaError, Replicas};

/// The most keys a listing returns (S3's limit).
const MAX_KEYS: i32 = 1000;

/// Characters `encoding-type=url` leaves as they are (as S3 does).
const URL_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The largest object a single PUT takes (S3's limit); larger ones go multipart.
const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The smallest part but the last of a multipart upload (S3's limit).
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// The most parts of a multipart upload (S3's limit).
const MAX_PARTS: i32 = 10_000;

/// The body length a request declared: Content-Length (s3s sets it to the decoded length
/// of an aws-chunked body) or `x-amz-decoded-content-length`.
fn declared_length(content_length: Option<i64>, headers: &http::HeaderMap) -> Option<u64> {
    content_length
        .and_then(|n| u64::try_from(n).ok())
        .or_else(|| {
            headers
                .get("x-amz-decoded-content-length")?
                .to_str()
                .ok()?
                .parse()
                .ok()
        })
}

/// Whether a listing's keys are to be URL-encoded (`encoding-type=url`).
fn url_encoding(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding.map(|e| e.as_str()) {
        None => Ok(false),
        Some("url") => Ok(true),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "encoding-type {other:?} is not supported: use url"
        )),
    }
}

/// `s` as a listing returns it: URL-encoded when `url`.
fn encoded(s: String, url: bool) -> String {
    if url {
        utf8_percent_encode(&s, URL_SAFE).to_string()
    } else {
        s
    }
}

/// The common prefix `key` falls under, when listing `prefix` grouped at `delimiter`.
fn common_prefix(key: &str, prefix: &str, delimiter: Option<&str>) -> Option<String> {
    let d = delimiter?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d)
        .map(|i| key[..prefix.len() + i + d.len()].to_owned())
}

/// Where a listing resumes after `after` (a marker or continuation): past every key under
/// it when it is a common prefix (a page can end with one), else right after it.
fn resume_after(after: String, prefix: &str, delimiter: Option<&str>) -> String {
    if !after.starts_with(prefix) {
        return after;
    }
    match common_prefix(&after, prefix, delimiter) {
        Some(c) if c == after => format!("{after}\u{10FFFF}"),
        _ => after,
    }
}

/// The object a copy reads ([`Gateway::copy_source`]).
struct Source {
    bucket: meta::Bucket,
    object: meta::Object,
    /// The copy source named the version.
    named_version: bool,
}

/// The byte span `x-amz-copy-source-range` (`bytes=FIRST-LAST`, both included) names
/// in an object of `size` bytes; the whole object without one.
fn copy_range(range: Option<&str>, size: u64) -> S3Result<std::ops::Range<u64>> {
    let Some(range) = range else {
        return Ok(0..size);
    };
    let span = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(first, last)| Some((first.parse::<u64>().ok()?, last.parse::<u64>().ok()?)))
        .filter(|(first, last)| first <= last);
    let Some((first, last)) = span else {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range must be bytes=FIRST-LAST, the zero-based offsets of the first and last bytes to copy"
        ));
    };
    if last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "the range {range} is not within the source object of {size} bytes"
        ));
    }
    Ok(first..last + 1)
}

/// One page of ListObjectVersions ([`Gateway::versions_page`]).
struct VersionsListed {
    versions: Vec<meta::Version>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The key (or common prefix) and version id last returned: where the next page starts.
    last: Option<(String, Option<String>)>,
}

/// One page of a listing ([`Gateway::list_page`]).
struct Listed {
    contents: Vec<Object>,
    prefixes: Vec<String>,
    truncated: bool,
    /// The last key or common prefix returned: where the next page starts.
    last: Option<String>,
}

/// A body written as blocks.
struct Stored {
    size: u64,
    md5: [u8; 16],
    blocks: Vec<BlockRef>,
    /// The flexible checksum the request sent and the body matched.
    checksum: Option<checksum::Checksum>,
}

pub(crate) struct Gateway {
    pub(crate) meta: Meta,
    pub(crate) replicas: Arc<Replicas>,
    pub(crate) keys: Keys,
    pub(crate) block_bytes: usize,
}

fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "S3 request failed");
    S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
}

impl From<MetaError> for S3Error {
    fn from(e: MetaError) -> S3Error {
        internal(e)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn timestamp(ms: i64) -> Timestamp {
    let t = UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    Timestamp::from(t)
}

/// A body stream error as the client should see it: a tampered chunk is a bad
/// signature (403), a payload that does not match its declared hash a 400, anything
/// else an incomplete body.
fn body_error(e: &dyn std::fmt::Display) -> S3Error {
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        return S3Error::with_message(
            S3ErrorCode::SignatureDoesNotMatch,
            "a chunk's signature does not match: the upload was altered in transit",
        );
    }
    if text.contains("Sha256Mismatch") {
        let code = "XAmzContentSHA256Mismatch"
            .parse::<S3ErrorCode>()
            .unwrap_or(S3ErrorCode::BadDigest);
        let mut err =
            S3Error::with_message(code, "the body does not match its x-amz-content-sha256");
        err.set_status_code(http::StatusCode::BAD_REQUEST);
        return err;
    }
    S3Error::with_message(
        S3ErrorCode::IncompleteBody,
        format!("reading the body failed: {text}"),
    )
}

impl Gateway {
    /// The tenant of the request's access key (every operation here is signed).
    fn tenant<T>(&self, req: &S3Request<T>) -> S3Result<String> {
        req.credentials
            .as_ref()
            .and_then(|c| self.keys.tenant(&c.access_key))
            .ok_or_else(|| s3_error!(AccessDenied, "sign the request with an access key"))
    }

    /// The tenant of a signed request, `None` for an unsigned one.
    fn caller<T>(&self, req: &S3Request<T>) -> S3Result<Option<String>> {
        match &req.credentials {
            None => Ok(None),
            Some(c) => {
                self.keys.tenant(&c.access_key).map(Some).ok_or_else(|| {
                    s3_error!(AccessDenied, "the access key is not known (revoked?)")
                })
            }
        }
    }

    /// Bucket `name` for a read that `public-read` opens to everyone ([`super::acl`]): the
    /// bucket, and whether the caller owns it. Only the owner reads a version by id
    /// (`named_version`).
    async fn readable_bucket<T>(
        &self,
        req: &S3Request<T>,
        name: &str,
        named_version: bool,
    ) -> S3Result<(meta::Bucket, bool)> {
        let caller = self.caller(req)?;
        let bucket = self
            .meta
            .bucket(name)
            .await?
            .ok_or_else(|| s3_error!(NoSuchBucket, "no bucket {name}"))?;
        if caller.as_deref() == Some(bucket.tenant.as_str()) {
            return Ok((bucket, true));
        }
        if bucket.public_read && !named_version {
            return Ok((bucket, false));
        }
        Err(match caller {
            None => s3_error!(
                AccessDenied,
                "bucket {name} is not public-read: sign the request with an access key"
            ),
            Some(_) if bucket.public_read => s3_error!(
                AccessDenied,
                "versions of another account's objects are not public"
            ),
            Some(_) => s3_error!(AccessDenied, "bucket {name} belongs to another account"),
        })
    }

    /// Bucket `name`, if the request's tenant owns it.
    async fn own_bucket<T>(&self, req: &S3Request<T>, name: &str) -> S3Result<meta::Bucket> {
        let tenant = self.tenant(req)?;
        match self.meta.bucket(name).await? {
            None => Err(s3_error!(NoSuchBucket, "no bucket {name}")),
            Some(b) if b.tenant != tenant => Err(s3_error!(
                AccessDenied,
                "bucket {name} belongs to another account"
            )),
            Some(b) => Ok(b),
        }
    }

    /// The version a read addresses (`version_id`, or else the latest) in a bucket of the
    /// request's tenant (or, when `public`, a `public-read` one of anyone's: see
    /// [`Gateway::readable_bucket`]), that bucket, and whether the caller owns it. A delete
    /// marker answers 404 NoSuchKey when it is the latest and 405 MethodNotAllowed when
    /// named by its id, with `x-amz-delete-marker: true` (as S3 does).
    async fn readable<T>(
        &self,
        req: &S3Request<T>,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
        public: bool,
    ) -> S3Result<(meta::Bucket, meta::Object, bool)> {
        let (owned, owner) = if public {
            self.readable_bucket(req, bucket, version_id.is_some())
                .await?
        } else {
            (self.own_bucket(req, bucket).await?, true)
        };
        let object = match version_arg(version_id)? {
            None => {
                let o = self
                    .meta
                    .object(bucket, key)
                    .await?
                    .ok_or_else(|| s3_error!(NoSuchKey, "no object {key} in {bucket}"))?;
                if o.delete_marker {
                    return Err(delete_marker_error(
                        s3_error!(NoSuchKey, "{key} in {bucket} is deleted (a delete marker)"),
                        &o.version_id,
                    ));
                }
                o
            }
            Some(v) => {
                let o = self
                    .meta
                    .object_version(bucket, key, v)
                    .await?
                    .ok_or_else(|| s3_error!(NoSuchVersion, "no version {v} of {key} in {bucket}"))?
                    .object;
                if o.delete_marker {
                    return Err(delete_marker_error(
                        s3_error!(MethodNotAllowed, "version {v} of {key} is a delete marker"),
                        v,
                    ));
                }
                o
            }
        };
        Ok((owned, object, owner))
    }

    /// Streams `body` into blocks on their replicas (one block in memory at a time),
    /// checking its length against `declared` (s3s does not for aws-chunked bodies) and
    /// `limit`, and its digests against `expected` (`Content-MD5`, a flexible checksum
    /// in a header or in one of `trailers`): any failure is an error before the caller
    /// writes a row, so nothing becomes visible (the blocks already written are
    /// content-addressed and harmless).
    async fn store_body(
        &self,
        mut body: StreamingBlob,
        declared: Option<u64>,
        limit: u64,
        expected: &Expected,
        trailers: Option<&s3s::TrailingHeaders>,
        class: Class,
    ) -> S3Result<Stored> {
        if declared.is_some_and(|d| d > limit) {
            return Err(s3_error!(
                EntityTooLarge,
                "the body is larger than {limit} bytes"
            ));
        }
        let mut hasher = Hasher::new(expected.algorithm());
        let mut received: u64 = 0;
        let mut blocks = Vec::new();
        let block_bytes = self.block_size(class.cold());
        let mut pending = BytesMut::with_capacity(block_bytes);
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| body_error(&e))?;
            received += chunk.len() as u64;
            if declared.is_some_and(|d| received > d) {
                return Err(s3_error!(
                    IncompleteBody,
                    "the body is longer than its declared length"
                ));
            }
            if received > limit {
                return Err(s3_error!(
                    EntityTooLarge,
                    "the body is larger than {limit} bytes"
                ));
            }
            hasher.update(&chunk);
            while !chunk.is_empty() {
                let room = block_bytes - pending.len();
                let take = room.min(chunk.len());
                pending.extend_from_slice(&chunk.split_to(take));
                if pending.len() == block_bytes {
                    let full =
                        std::mem::replace(&mut pending, BytesMut::with_capacity(block_bytes));
                    blocks.push(self.write_block(full.freeze(), class.cold()).await?);
                }
            }
        }
        if declared.is_some_and(|d| received != d) {
            return Err(s3_error!(
                IncompleteBody,
                "the body ended after {received} bytes, short of its declared length"
            ));
        }
        let digests = hasher.finish();
        // The body has ended: its trailers (if any) are in.
        let trailers = trailers.and_then(s3s::TrailingHeaders::take);
        let checksum = expected.verify(&digests, trailers.as_ref())?;
        if !pending.is_empty() {
            blocks.push(self.write_block(pending.freeze(), class.cold()).await?);
        }
        Ok(Stored {
            size: received,
            md5: digests.md5,
            blocks,
            checksum,
        })
    }

    /// Upload `upload_id`, if it is for `bucket`/`key` in a bucket of the request's tenant.
    async fn own_upload<T>(
        &self,
        req: &S3Request<T>,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> S3Result<meta::Upload> {
        self.own_bucket(req, bucket).await?;
        match self.meta.upload(upload_id).await? {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => Err(s3_error!(
                NoSuchUpload,
                "no upload {upload_id} for {key} in {bucket} (completed or aborted?)"
            )),
        }
    }

    /// One page of a listing: up to `max_keys` objects and common prefixes of `bucket`
    /// under `prefix` (grouped at `delimiter`), after the key `after`.
    async fn list_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        mut after: String,
        max_keys: i32,
    ) -> S3Result<Listed> {
        after = resume_after(after, prefix, delimiter);
        let mut contents = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        // The last key or common prefix returned: where the next page starts.
        let mut last = None;
        let mut truncated = false;
        let limit = usize::try_from(max_keys).unwrap_or(0);
        'pages: loop {
            let page = self.meta.list(bucket, prefix, &after, 1000).await?;
            let full_page = page.len() == 1000;
            let mut skipped_ahead = false;
            for o in page {
                after.clone_from(&o.key);
                let common = common_prefix(&o.key, prefix, delimiter);
                if contents.len() + prefixes.len() >= limit {
                    truncated = true;
                    break 'pages;
                }
                match common {
                    Some(c) => {
                        // Every other key under this common prefix is skipped: the next
                        // query starts past them.
                        after = format!("{c}\u{10FFFF}");
                        last = Some(c.clone());
                        prefixes.push(c);
                        skipped_ahead = true;
                        break;
                    }
                    None => {
                        last = Some(o.key.clone());
                        let class = Class::of_metadata(&o.metadata);
                        contents.push(Object {
                            storage_class: Some(ObjectStorageClass::from_static(class.name())),
                            key: Some(o.key),
                            size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                            e_tag: Some(ETag::Strong(o.etag)),
                            last_modified: Some(timestamp(o.last_modified)),
                            ..Default::default()
                        });
                    }
                }
            }
            if !full_page && !skipped_ahead {
                break;
            }
        }
        Ok(Listed {
            contents,
            prefixes,
            truncated,
            last,
        })
    }

    /// One page of ListObjectVersions: up to `max_keys` versions, delete markers and
    /// common prefixes of `bucket` under `prefix` (grouped at `delimiter`), after version
    /// `after_version` of `after_key` (after all of `after_key` when `None`).
    async fn versions_page(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        after_key: String,
        mut after_version: Option<String>,
        max_keys: i32,
    ) -> S3Result<VersionsListed> {
        let mut after_key = if after_version.is_none() {
            resume_after(after_key, prefix, delimiter)
        } else {
            after_key
        };
        let mut versions = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut last = None;
        let mut truncated = false;
        let limit = usize::try_from(max_keys).unwrap_or(0);
        'pages: loop {
            let page = self
                .meta
                .list_versions(bucket, prefix, &after_key, after_version.as_deref(), 1000)
                .await?;
            let full_page = page.len() == 1000;
            let mut skipped_ahead = false;
            for v in page {
                after_key.clone_from(&v.object.key);
                after_version = Some(v.object.version_id.clone());
                if versions.len() + prefixes.len() >= limit {
                    truncated = true;
                    break 'pages;
                }
                match common_prefix(&v.object.key, prefix, delimiter) {
                    Some(c) => {
                        after_key = format!("{c}\u{10FFFF}");
                        after_version = None;
                        last = Some((c.clone(), None));
                        prefixes.push(c);
                        skipped_ahead = true;
                        break;
                    }
                    None => {
                        last = Some((v.object.key.clone(), Some(v.object.version_id.clone())));
                        versions.push(v);
                    }
                }
            }
            if !full_page && !skipped_ahead {
                break;
            }
        }
        Ok(VersionsListed {
            versions,
            prefixes,
            truncated,
            last,
        })
    }

    /// Whether a conditional PUT may go ahead as things are now (it is decided again,
    /// atomically, when the object is written).
    async fn check_put_condition(
        &self,
        bucket: &str,
        key: &str,
        condition: &Condition,
    ) -> S3Result<()> {
        let current = match condition {
            Condition::None => return Ok(()),
            // A delete marker is no object.
            _ => self
                .meta
                .object(bucket, key)
                .await?
                .filter(|o| !o.delete_marker),
        };
        match (condition, current) {
            (Condition::Absent, Some(_)) => Err(s3_error!(
                PreconditionFailed,
                "an object is at {key} already (If-None-Match: *)"
            )),
            (Condition::Matching(_), None) => Err(s3_error!(
                NoSuchKey,
                "no object {key} in {bucket} (If-Match)"
            )),
            (Condition::Matching(Some(e)), Some(o)) if *e != o.etag => Err(s3_error!(
                PreconditionFailed,
                "the object's ETag is not the one If-Match names"
            )),
            _ => Ok(()),
        }
    }

    /// Deletes `key` (S3's DeleteObject, also one entry of DeleteObjects): version
    /// `version_id` for good when named, else the object (unversioned bucket) or by a new
    /// delete marker. Deleting what is not there succeeds, as in S3. Blocks stay until
    /// garbage collection (not written yet).
    async fn delete_one(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<DeletedObject> {
        match version_arg(version_id)? {
            Some(v) => {
                let removed = self.meta.delete_version(bucket, key, v).await?;
                let marker = removed.is_some_and(|o| o.delete_marker);
                Ok(DeletedObject {
                    key: Some(key.to_owned()),
                    version_id: Some(v.to_owned()),
                    delete_marker: marker.then_some(true),
                    delete_marker_version_id: marker.then(|| v.to_owned()),
                })
            }
            None => {
                let marker = self.meta.delete_object(bucket, key, now_ms()).await?;
                Ok(DeletedObject {
                    key: Some(key.to_owned()),
                    version_id: None,
                    delete_marker: marker.as_ref().map(|_| true),
                    delete_marker_version_id: marker.map(|m| m.version_id),
                })
            }
        }
    }

    /// The object a copy reads, in a bucket of the request's tenant, if it meets the
    /// `x-amz-copy-source-if-*` conditions (any failing is 412, as in S3).
    async fn copy_source<T>(
        &self,
        req: &S3Request<T>,
        source: &CopySource,
        conditions: &Preconditions<'_>,
    ) -> S3Result<Source> {
        let (bucket, key, version_id) = match source {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => (bucket, key, version_id.as_deref()),
            _ => return Err(not_implemented("copying from an access point")),
        };
        let (bucket, object) = match self.readable(req, bucket, key, version_id, false).await {
            Err(e) if *e.code() == S3ErrorCode::MethodNotAllowed => {
                return Err(s3_error!(
                    InvalidRequest,
                    "the source of a copy may not be a delete marker"
                ));
            }
            Err(e) => return Err(e),
            Ok((bucket, object, _)) => (bucket, object),
        };
        if precondition(&object, conditions).is_some() {
            return Err(s3_error!(
                PreconditionFailed,
                "the source object does not meet the x-amz-copy-source-if-* conditions"
            ));
        }
        Ok(Source {
            bucket,
            object,
            named_version: version_id.is_some(),
        })
    }

    /// The bytes `span` of `source` as the blocks of a new part: blocks wholly inside the
    /// span are shared (content-addressed), the pieces of the blocks at its ends written
    /// anew. Every byte is read once, for the part's MD5; one block in memory at a time.
    async fn copy_blocks(
        &self,
        source: &meta::Object,
        span: std::ops::Range<u64>,
        class: Class,
    ) -> S3Result<Stored> {
        let mut md5 = Md5::new();
        let mut blocks = Vec::new();
        let mut offset = 0u64;
        for block in &source.blocks {
            let (start, end) = (offset, offset + block.len);
            offset = end;
            if end <= span.start || start >= span.end {
                continue;
            }
            let from = span.start.max(start) - start;
            let to = span.end.min(end) - start;
            let data = read_block(&self.replicas, block).await.map_err(|e| {
                tracing::error!(error = %e, "copy source read failed");
                S3Error::with_message(S3ErrorCode::ServiceUnavailable, e.to_string())
            })?;
            let (from_at, to_at) = (
                usize::try_from(from).map_err(internal)?,
                usize::try_from(to).map_err(internal)?,
            );
            let piece = slice_parts(data, from_at, to_at).ok_or_else(|| {
                internal(format!(
                    "block {} is shorter than the object's map says",
                    block.id
                ))
            })?;
            let piece = crate::replicas::join(piece);
            md5.update(&piece);
            if from == 0 && to == block.len {
                blocks.push(block.clone());
            } else {
                blocks.push(self.write_block(piece, class.cold()).await?);
            }
        }
        Ok(Stored {
            size: span.end - span.start,
            md5: md5.finalize().into(),
            blocks,
            checksum: None,
        })
    }

    /// Replaces the tags of `object` (a version [`Gateway::readable`] found; `named`: the
    /// request named it); the version's absence now (deleted meanwhile) is answered as if
    /// it had never been there.
    async fn retag(
        &self,
        object: &meta::Object,
        named: Option<&str>,
        tags: &[(String, String)],
    ) -> S3Result<()> {
        if self
            .meta
            .set_object_tags(&object.bucket, &object.key, &object.version_id, tags)
            .await?
        {
            return Ok(());
        }
        Err(match named {
            Some(v) => s3_error!(
                NoSuchVersion,
                "no version {v} of {} (deleted meanwhile)",
                object.key
            ),
            None => s3_error!(NoSuchKey, "no object {} (deleted meanwhile)", object.key),
        })
    }

    /// The size a new body is cut into blocks of: `block_bytes`, or `k` times that when the
    /// cluster codes blocks (so that each shard is as large as a replicated block: `k`
    /// times fewer shard requests than coding `block_bytes` blocks would make).
    fn block_size(&self, cold: bool) -> usize {
        match self.replicas.code_for(usize::MAX, cold) {
            Some(code) => {
                let coded = self.block_bytes.saturating_mul(code.data());
                if self.replicas.code_for(coded, cold).is_some() {
                    coded
                } else {
                    self.block_bytes
                }
            }
            None => self.block_bytes,
        }
    }

    /// Writes one block: as erasure-coded shards when the cluster's policy codes a block
    /// of its size, else to its replicas. A coded write that cannot place every shard
    /// (too few nodes up) falls back to replicas.
    async fn write_block(&self, data: Bytes, cold: bool) -> S3Result<BlockRef> {
        let unavailable = |e: ReplicaError| {
            tracing::error!(error = %e, "block write failed");
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, e.to_string())
        };
        if let Some(code) = self.replicas.code_for(data.len(), cold) {
            match self.replicas.put_coded(code, data.clone()).await {
                Ok(placed) => return Ok(placed.block_ref()),
                Err(e @ ReplicaError::CodedShort { .. }) => {
                    tracing::warn!(error = %e, "coded write short of nodes: writing replicas");
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        let placed = self.replicas.put(data).await.map_err(unavailable)?;
        Ok(placed.block_ref())
    }
}

/// A copy whose source version was deleted between reading it and committing: answered
/// as if the source had never been there; one overwritten meanwhile: 503, to retry.
fn source_gone(named_version: bool, gone: meta::SourceGone) -> S3Error {
    if gone.overwritten {
        // 503: the AWS SDKs retry it, and the retry copies what the key holds now.
        s3_error!(
            ServiceUnavailable,
            "the copy source was overwritten while it was being copied; retry the copy"
        )
    } else if named_version {
        s3_error!(
            NoSuchVersion,
            "the copy source version was deleted meanwhile"
        )
    } else {
        s3_error!(NoSuchKey, "the copy source was deleted meanwhile")
    }
}

/// Whether `condition` holds for an object whose ETag is `etag`.
fn etag_matches(condition: &ETagCondition, etag: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(ETag::Strong(v) | ETag::Weak(v)) => v == etag,
    }
}

/// The conditions of a read (GET, HEAD) or a copy source on an object, each optional.
#[derive(Default)]
struct Preconditions<'a> {
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
}

/// Seconds since the Unix epoch: HTTP dates have no finer grain, so an object's time is
/// compared by its whole seconds.
fn epoch_seconds(t: &Timestamp) -> i64 {
    time::OffsetDateTime::from(t.clone()).unix_timestamp()
}

/// Whether `object` fails `p`, evaluated as RFC 9110 §13.2.2 orders them and S3 does:
/// If-Match (else If-Unmodified-Since) failing is `Failed`; If-None-Match matching (else
/// If-Modified-Since with no change since) is `NotModified`.
fn precondition(object: &meta::Object, p: &Preconditions<'_>) -> Option<Stop> {
    let modified = object.last_modified.div_euclid(1000);
    let failed = match p.if_match {
        Some(c) => !etag_matches(c, &object.etag),
        None => p
            .if_unmodified_since
            .is_some_and(|t| modified > epoch_seconds(t)),
    };
    if failed {
        return Some(Stop::Failed);
    }
    let unchanged = match p.if_none_match {
        Some(c) => etag_matches(c, &object.etag),
        None => p
            .if_modified_since
            .is_some_and(|t| modified <= epoch_seconds(t)),
    };
    unchanged.then_some(Stop::NotModified)
}

/// Why [`precondition`] stops a request.
#[derive(Debug, PartialEq, Eq)]
enum Stop {
    /// 412 Precondition Failed.
    Failed,
    /// 304 Not Modified on a read (412 on a copy source).
    NotModified,
}

/// How many blocks one GET reads ahead of what its client has taken: the request's memory
/// is bounded by this many blocks (plus one in the channel), and a large object's blocks
/// are fetched from the storage nodes this many at a time, in order.
const READ_AHEAD_BLOCKS: usize = 4;

/// Block `block`'s bytes, from its replicas or its shards, checked against its id, as
/// pieces whose concatenation is the block.
async fn read_block(replicas: &Replicas, block: &BlockRef) -> Result<Vec<Bytes>, ReplicaError> {
    let corrupt = |what: &str| ReplicaError::Codec(format!("corrupt block map: {what}"));
    let id: BlockId = block.id.parse().map_err(|_| corrupt("block id"))?;
    let Some(coded) = &block.coded else {
        return replicas.get(&id, &block.nodes).await.map(|b| vec![b]);
    };
    erasure::check_codec(&coded.codec).map_err(|e| ReplicaError::Codec(e.to_string()))?;
    let shards = coded
        .shards
        .iter()
        .map(|s| {
            Ok((
                s.id.parse().map_err(|_| corrupt("shard id"))?,
                s.node.clone(),
            ))
        })
        .collect::<Result<Vec<(BlockId, String)>, ReplicaError>>()?;
    replicas
        .get_coded_parts(&id, block.len, coded.code, &shards)
        .await
}

/// The bytes `from..to` of the block made of `parts`, as pieces (slices, no copies);
/// `None` when the block is shorter than `to` or the range is backwards.
fn slice_parts(parts: Vec<Bytes>, from: usize, to: usize) -> Option<Vec<Bytes>> {
    let total: usize = parts.iter().map(Bytes::len).sum();
    if to > total || from > to {
        return None;
    }
    let mut out = Vec::new();
    let mut at = 0;
    for part in parts {
        let (start, end) = (at, at + part.len());
        at = end;
        if end <= from || start >= to {
            continue;
        }
        out.push(part.slice(from.saturating_sub(start)..(to - start).min(part.len())));
    }
    Some(out)
}

/// The bytes of `parts` (a block and the range of it wanted) in order, as a body
/// stream. A task fetches up to [`READ_AHEAD_BLOCKS`] blocks at once (coded blocks of a
/// `k+m` code: `READ_AHEAD_BLOCKS / k`, at least 2) and stops at the first
/// that cannot be read (the client sees the body cut short, never wrong bytes) or when
/// the client goes away.
fn read_blocks(
    replicas: Arc<Replicas>,
    parts: Vec<(BlockRef, u64, u64)>,
) -> tokio_stream::wrappers::ReceiverStream<Result<Bytes, std::io::Error>> {
    // A coded block is `k` shard requests at once and `k` times larger: fewer ahead.
    let ahead = parts
        .iter()
        .filter_map(|(b, _, _)| b.coded.as_ref().map(|c| c.code.data()))
        .max()
        .map_or(READ_AHEAD_BLOCKS, |k| (READ_AHEAD_BLOCKS / k).max(2));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut chunks = futures::stream::iter(parts)
            .map(|(block, from, to)| {
                let replicas = replicas.clone();
                async move {
                    let parts = read_block(&replicas, &block).await.map_err(|e| {
                        tracing::error!(error = %e, "object read failed");
                        std::io::Error::other(e.to_string())
                    })?;
                    let (from, to) = (
                        usize::try_from(from).unwrap_or(0),
                        usize::try_from(to).unwrap_or(0),
                    );
                    slice_parts(parts, from, to).ok_or_else(|| {
                        std::io::Error::other(format!(
                            "block {} is shorter than the object's map says",
                            block.id
                        ))
                    })
                }
            })
            .buffered(ahead);
        while let Some(block) = chunks.next().await {
            match block {
                Ok(parts) => {
                    for part in parts {
                        if tx.send(Ok(part)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A GET's or HEAD's answer to [`precondition`].
fn read_precondition(object: &meta::Object, p: &Preconditions<'_>) -> S3Result<()> {
    match precondition(object, p) {
        None => Ok(()),
        Some(Stop::Failed) => Err(s3_error!(
            PreconditionFailed,
            "the object does not meet If-Match or If-Unmodified-Since"
        )),
        Some(Stop::NotModified) => Err(S3Error::new(S3ErrorCode::NotModified)),
    }
}

/// A canned ACL other than `private` (what every bucket and object is today) is refused
/// rather than ignored: `public-read` comes with anonymous access.
fn private_only(acl: Option<&str>) -> S3Result<()> {
    match acl {
        None | Some("private") => Ok(()),
        Some(other) => Err(not_implemented(&format!("the canned ACL {other:?}"))),
    }
}

/// A version id from the request: one this gateway never gives out is 400
/// InvalidArgument, as in S3.
fn version_arg(id: Option<&str>) -> S3Result<Option<&str>> {
    match id {
        Some(v) if !meta::is_version_id(v) => {
            Err(s3_error!(InvalidArgument, "invalid version id {v:?}"))
        }
        other => Ok(other),
    }
}

/// `e` with `x-amz-delete-marker: true` and the marker's version id, as S3 answers a
/// read that meets a delete marker.
fn delete_marker_error(mut e: S3Error, version_id: &str) -> S3Error {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-amz-delete-marker",
        http::HeaderValue::from_static("true"),
    );
    if let Ok(v) = http::HeaderValue::from_str(version_id) {
        headers.insert("x-amz-version-id", v);
    }
    e.set_headers(headers);
    e
}

/// The version id a response shows: none for a bucket that was never versioned (unless
/// the request named one).
fn shown_version(versioning: Versioning, version_id: &str, named: bool) -> Option<String> {
    (versioning != Versioning::Unversioned || named).then(|| version_id.to_owned())
}

/// `x-amz-tagging-count` for the owner of a version with tags (S3 leaves it out when there
/// are none, and shows it only to callers who may read the tags).
fn tag_count(object: &meta::Object, owner: bool) -> Option<i32> {
    (owner && !object.tags.is_empty()).then(|| i32::try_from(object.tags.len()).unwrap_or(i32::MAX))
}

/// S3 refuses `response-*` overrides on unsigned GETs.
fn no_anonymous_overrides(input: &GetObjectInput, signed: bool) -> S3Result<()> {
    let overrides = input.response_cache_control.is_some()
        || input.response_content_disposition.is_some()
        || input.response_content_encoding.is_some()
        || input.response_content_language.is_some()
        || input.response_content_type.is_some()
        || input.response_expires.is_some();
    if overrides && !signed {
        return Err(s3_error!(
            InvalidRequest,
            "Request specific response headers cannot be used for anonymous GET requests."
        ));
    }
    Ok(())
}

/// The checksum fields a read (GET, HEAD) shows: the version's checksum when the request
/// asked for it (`x-amz-checksum-mode: ENABLED`) and reads the whole object (S3 shows none
/// for a range); none otherwise, or when the version has none.
fn read_checksum(
    object: &meta::Object,
    mode: Option<&ChecksumMode>,
    whole: bool,
) -> s3s::dto::Checksum {
    let enabled = mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case(ChecksumMode::ENABLED));
    object
        .checksum
        .as_deref()
        .filter(|_| enabled && whole)
        .and_then(checksum::Checksum::from_stored)
        .map(|c| c.to_dto())
        .unwrap_or_default()
}

fn not_implemented(what: &str) -> S3Error {
    s3_error!(NotImplemented, "{what} is not implemented yet")
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let tenant = self.tenant(&req)?;
        let input = &req.input;
        let name = &input.bucket;
        let public_read = acl::canned(input.acl.as_ref())?.unwrap_or(false);
        acl::no_grants(&[
            input.grant_full_control.as_ref(),
            input.grant_read.as_ref(),
            input.grant_read_acp.as_ref(),
            input.grant_write.as_ref(),
            input.grant_write_acp.as_ref(),
        ])?;
        if public_read
            && input
                .object_ownership
                .as_ref()
                .is_some_and(|o| o.as_str() == ObjectOwnership::BUCKET_OWNER_ENFORCED)
        {
            return Err(s3_error!(
                InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
            ));
        }
        if input.object_lock_enabled_for_bucket == Some(true) {
            return Err(not_implemented("object lock"));
        }
        match self
            .meta
            .create_bucket_with_acl(name, &tenant, now_ms(), public_read)
            .await?
        {
            Created::Created => Ok(S3Response::new(CreateBucketOutput {
                location: Some(format!("/{name}")),
            })),
            Created::OwnedByYou => Err(s3_error!(
                BucketAlreadyOwnedByYou,
                "you own bucket {name} already"
            )),
            Created::TakenByAnother => Err(s3_error!(
                BucketAlreadyExists,
                "bucket names are global and {name} is taken: choose another"
            )),
        }
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.readable_bucket(&req, &req.input.bucket, false).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.own_bucket(&req, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let name = &req.input.bucket;
        self.own_bucket(&req, name).await?;
        if !self.meta.delete_empty_bucket(name).await? {
            return Err(s3_error!(
                BucketNotEmpty,
                "bucket {name} still holds objects: delete them first"
            ));
        }
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let tenant = self.tenant(&req)?;
        let buckets = self
            .meta
            .buckets(&tenant)
            .await?
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(timestamp(b.created_at)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some(tenant.clone()),
                id: Some(tenant),
            }),
            ..Default::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.own_bucket(&req, &req.input.bucket).await?;
        private_only(req.input.acl.as_ref().map(|a| a.as_str()))?;
        acl::no_grants(&[
            req.input.grant_full_control.as_ref(),
            req.input.grant_read.as_ref(),
            req.input.grant_read_acp.as_ref(),
            req.input.grant_write_acp.as_ref(),
        ])?;
        let tags = tagging::from_header(req.input.tagging.as_deref())?;
        let class = Class::requested(req.input.storage_class.as_ref())?;
        let expected = Expected::from_headers(&req.headers)?;
        let condition = match (&req.input.if_none_match, &req.input.if_match) {
            (None, None) => Condition::None,
            (Some(ETagCondition::Any), None) => Condition::Absent,
            (None, Some(ETagCondition::Any)) => Condition::Matching(None),
            (None, Some(ETagCondition::ETag(ETag::Strong(e) | ETag::Weak(e)))) => {
                Condition::Matching(Some(e.clone()))
            }
            _ => {
                return Err(not_implemented(
                    "If-None-Match other than * on PUT, or with If-Match",
                ));
            }
        };
        // Refused early when it already fails (no block written); decided atomically below.
        self.check_put_condition(&req.input.bucket, &req.input.key, &condition)
            .await?;
        let declared = declared_length(req.input.content_length, &req.headers);
        let input = req.input;
        let body = input
            .body
            .ok_or_else(|| s3_error!(IncompleteBody, "the request has no body"))?;
        let stored = self
            .store_body(
                body,
                declared,
                MAX_OBJECT_BYTES,
                &expected,
                req.trailing_headers.as_ref(),
                class,
            )
            .await?;
        let etag = hex::encode(stored.md5);
        let object = meta::Object {
            size: stored.size,
            etag: etag.clone(),
            content_type: input.content_type.map(|c| c.to_string()),
            metadata: super::kept::stored_metadata!(move input, class),
            last_modified: now_ms(),
            blocks: stored.blocks,
            tags,
            checksum: stored.checksum.as_ref().map(checksum::Checksum::to_stored),
            ..meta::Object::new(&input.bucket, &input.key)
        };
        let written = self
            .meta
            .put_object(&object, &condition)
            .await?
            .ok_or_else(|| {
                s3_error!(
                    PreconditionFailed,
                    "the object changed while it was uploaded: the condition no longer holds"
                )
            })?;
        let shown = stored
            .checksum
            .as_ref()
            .map(checksum::Checksum::to_dto)
            .unwrap_or_default();
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            version_id: shown_version(written.versioning, &written.version_id, false),
            checksum_crc32: shown.checksum_crc32,
            checksum_crc32c: shown.checksum_crc32c,
            checksum_crc64nvme: shown.checksum_crc64nvme,
            checksum_sha1: shown.checksum_sha1,
            checksum_sha256: shown.checksum_sha256,
            checksum_type: shown.checksum_type,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let named = req.input.version_id.as_deref();
        let (bucket, mut object, owner) = self
            .readable(&req, &req.input.bucket, &req.input.key, named, true)
            .await?;
        read_precondition(
            &object,
            &Preconditions {
                if_match: req.input.if_match.as_ref(),
                if_none_match: req.input.if_none_match.as_ref(),
                if_modified_since: req.input.if_modified_since.as_ref(),
                if_unmodified_since: req.input.if_unmodified_since.as_ref(),
            },
        )?;
        let mut headers = http::HeaderMap::new();
        if let Some(n) = tag_count(&object, owner) {
            headers.insert("x-amz-tagging-count", http::HeaderValue::from(n));
        }
        let shown = read_checksum(
            &object,
            req.input.checksum_mode.as_ref(),
            req.input.range.is_none() && req.input.part_number.is_none(),
        );
        let fields = super::kept::shown(std::mem::take(&mut object.metadata));
        let mut response = S3Response::new(HeadObjectOutput {
            checksum_crc32: shown.checksum_crc32,
            checksum_crc32c: shown.checksum_crc32c,
            checksum_crc64nvme: shown.checksum_crc64nvme,
            checksum_sha1: shown.checksum_sha1,
            checksum_sha256: shown.checksum_sha256,
            checksum_type: shown.checksum_type,
            content_length: Some(i64::try_from(object.size).unwrap_or(i64::MAX)),
            e_tag: Some(ETag::Strong(object.etag)),
            last_modified: Some(timestamp(object.last_modified)),
            content_type: object.content_type.and_then(|c| c.parse().ok()),
            metadata: Some(fields.metadata),
            cache_control: fields.cache_control,
            content_disposition: fields.content_disposition,
            content_encoding: fields.content_encoding,
            content_language: fields.content_language,
            storage_class: fields.storage_class,
            accept_ranges: Some("bytes".into()),
            version_id: shown_version(bucket.versioning, &object.version_id, named.is_some()),
            ..Default::default()
        });
        response.headers = headers;
        Ok(response)
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let named = req.input.version_id.as_deref();
        let (bucket, mut object, owner) = self
            .readable(&req, &req.input.bucket, &req.input.key, named, true)
            .await?;
        no_anonymous_overrides(&req.input, req.credentials.is_some())?;
        if req.input.part_number.is_some() {
            return Err(not_implemented("partNumber on GetObject"));
        }
        read_precondition(
            &object,
            &Preconditions {
                if_match: req.input.if_match.as_ref(),
                if_none_match: req.input.if_none_match.as_ref(),
                if_modified_since: req.input.if_modified_since.as_ref(),
                if_unmodified_since: req.input.if_unmodified_since.as_ref(),
            },
        )?;
        let span = match &req.input.range {
            Some(r) => r.check(object.size)?,
            None => 0..object.size,
        };
        let content_range = req.input.range.as_ref().map(|_| {
            format!(
                "bytes {}-{}/{}",
                span.start,
                span.end.saturating_sub(1),
                object.size
            )
        });
        // The blocks the span covers, with the part of each it needs.
        let mut parts = Vec::new();
        let mut offset = 0u64;
        for block in &object.blocks {
            let (start, end) = (offset, offset + block.len);
            offset = end;
            if end <= span.start || start >= span.end {
                continue;
            }
            let from = span.start.max(start) - start;
            let to = span.end.min(end) - start;
            parts.push((block.clone(), from, to));
        }
        let stream = read_blocks(self.replicas.clone(), parts);
        let tag_count = tag_count(&object, owner);
        let shown = read_checksum(
            &object,
            req.input.checksum_mode.as_ref(),
            req.input.range.is_none(),
        );
        let fields = super::kept::shown(std::mem::take(&mut object.metadata));
        Ok(S3Response::new(GetObjectOutput {
            tag_count,
            checksum_crc32: shown.checksum_crc32,
            checksum_crc32c: shown.checksum_crc32c,
            checksum_crc64nvme: shown.checksum_crc64nvme,
            checksum_sha1: shown.checksum_sha1,
            checksum_sha256: shown.checksum_sha256,
            checksum_type: shown.checksum_type,
            body: Some(StreamingBlob::wrap(stream)),
            content_length: Some(i64::try_from(span.end - span.start).unwrap_or(i64::MAX)),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(ETag::Strong(object.etag)),
            last_modified: Some(timestamp(object.last_modified)),
            content_type: object.content_type.and_then(|c| c.parse().ok()),
            metadata: Some(fields.metadata),
            cache_control: fields.cache_control,
            content_disposition: fields.content_disposition,
            content_encoding: fields.content_encoding,
            content_language: fields.content_language,
            storage_class: fields.storage_class,
            version_id: shown_version(bucket.versioning, &object.version_id, named.is_some()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        if input.if_match.is_some()
            || input.if_match_last_modified_time.is_some()
            || input.if_match_size.is_some()
        {
            return Err(not_implemented("a conditional DeleteObject"));
        }
        let deleted = self
            .delete_one(&input.bucket, &input.key, input.version_id.as_deref())
            .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: deleted.delete_marker,
            version_id: deleted.delete_marker_version_id.or(deleted.version_id),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = &req.input;
        self.readable_bucket(&req, &input.bucket, false).await?;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max_keys = input.max_keys.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS);
        let after = match &input.continuation_token {
            Some(token) => {
                let bytes = hex::decode(token).map_err(|_| {
                    s3_error!(
                        InvalidArgument,
                        "the continuation token is not one this gateway gave"
                    )
                })?;
                String::from_utf8(bytes).map_err(|_| {
                    s3_error!(
                        InvalidArgument,
                        "the continuation token is not one this gateway gave"
                    )
                })?
            }
            None => input.start_after.clone().unwrap_or_default(),
        };
        let listed = self
            .list_page(
                &input.bucket,
                &prefix,
                delimiter.as_deref(),
                after,
                max_keys,
            )
            .await?;
        let (contents, prefixes, truncated, last) = (
            listed.contents,
            listed.prefixes,
            listed.truncated,
            listed.last,
        );
        let encode = |s: String| encoded(s, url);
        let key_count = i32::try_from(contents.len() + prefixes.len()).unwrap_or(i32::MAX);
        let contents = contents
            .into_iter()
            .map(|mut o| {
                o.key = o.key.map(encode);
                o
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket.clone()),
            prefix: Some(encode(prefix.clone())),
            delimiter: delimiter.map(encode),
            max_keys: Some(max_keys),
            key_count: Some(key_count),
            continuation_token: input.continuation_token.clone(),
            start_after: input.start_after.clone().map(encode),
            is_truncated: Some(truncated),
            next_continuation_token: truncated
                .then(|| last.map(|l| hex::encode(l.as_bytes())))
                .flatten(),
            contents: Some(contents),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode(p)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.own_bucket(&req, &req.input.bucket).await?;
        private_only(req.input.acl.as_ref().map(|a| a.as_str()))?;
        acl::no_grants(&[
            req.input.grant_full_control.as_ref(),
            req.input.grant_read.as_ref(),
            req.input.grant_read_acp.as_ref(),
            req.input.grant_write_acp.as_ref(),
        ])?;
        let tags = tagging::from_header(req.input.tagging.as_deref())?;
        let class = Class::requested(req.input.storage_class.as_ref())?;
        let input = req.input;
        let upload_id = meta::new_upload_id();
        self.meta
            .create_upload(&meta::Upload {
                upload_id: upload_id.clone(),
                bucket: input.bucket.clone(),
                key: input.key.clone(),
                content_type: input.content_type.map(|c| c.to_string()),
                metadata: super::kept::stored_metadata!(move input, class),
                initiated: now_ms(),
                tags,
            })
            .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = &req.input;
        let upload = self
            .own_upload(&req, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let class = Class::of_metadata(&upload.metadata);
        if !(1..=MAX_PARTS).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers go from 1 to {MAX_PARTS}"
            ));
        }
        let expected = Expected::from_headers(&req.headers)?;
        let declared = declared_length(input.content_length, &req.headers);
        let input = req.input;
        let body = input
            .body
            .ok_or_else(|| s3_error!(IncompleteBody, "the request has no body"))?;
        let stored = self
            .store_body(
                body,
                declared,
                MAX_OBJECT_BYTES,
                &expected,
                req.trailing_headers.as_ref(),
                class,
            )
            .await?;
        let etag = hex::encode(stored.md5);
        let recorded = self
            .meta
            .put_part(
                &input.upload_id,
                &meta::Part {
                    part_number: i64::from(input.part_number),
                    size: stored.size,
                    etag: etag.clone(),
                    blocks: stored.blocks,
                    last_modified: now_ms(),
                },
            )
            .await?;
        if !recorded {
            return Err(s3_error!(
                NoSuchUpload,
                "the upload was completed or aborted meanwhile"
            ));
        }
        let shown = stored
            .checksum
            .as_ref()
            .map(checksum::Checksum::to_dto)
            .unwrap_or_default();
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            checksum_crc32: shown.checksum_crc32,
            checksum_crc32c: shown.checksum_crc32c,
            checksum_crc64nvme: shown.checksum_crc64nvme,
            checksum_sha1: shown.checksum_sha1,
            checksum_sha256: shown.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = &req.input;
        let upload = self
            .own_upload(&req, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let class = Class::of_metadata(&upload.metadata);
        if !(1..=MAX_PARTS).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers go from 1 to {MAX_PARTS}"
            ));
        }
        if input.copy_source_sse_customer_key.is_some() || input.sse_customer_key.is_some() {
            return Err(not_implemented("server-side encryption with customer keys"));
        }
        let source = self
            .copy_source(
                &req,
                &input.copy_source,
                &Preconditions {
                    if_match: input.copy_source_if_match.as_ref(),
                    if_none_match: input.copy_source_if_none_match.as_ref(),
                    if_modified_since: input.copy_source_if_modified_since.as_ref(),
                    if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
                },
            )
            .await?;
        let span = copy_range(input.copy_source_range.as_deref(), source.object.size)?;
        if span.end - span.start > MAX_OBJECT_BYTES {
            return Err(s3_error!(
                EntityTooLarge,
                "a part is at most {MAX_OBJECT_BYTES} bytes: copy a smaller range"
            ));
        }
        let stored = self.copy_blocks(&source.object, span, class).await?;
        let etag = hex::encode(stored.md5);
        let now = now_ms();
        let recorded = self
            .meta
            .put_part_copy(
                &input.upload_id,
                &meta::Part {
                    part_number: i64::from(input.part_number),
                    size: stored.size,
                    etag: etag.clone(),
                    blocks: stored.blocks,
                    last_modified: now,
                },
                &meta::VersionRef {
                    bucket: &source.bucket.name,
                    key: &source.object.key,
                    version_id: &source.object.version_id,
                    blocks: &source.object.blocks,
                },
            )
            .await?
            .map_err(|gone| source_gone(source.named_version, gone))?;
        if !recorded {
            return Err(s3_error!(
                NoSuchUpload,
                "the upload was completed or aborted meanwhile"
            ));
        }
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(now)),
                ..Default::default()
            }),
            copy_source_version_id: shown_version(
                source.bucket.versioning,
                &source.object.version_id,
                source.named_version,
            ),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = &req.input;
        let upload = self
            .own_upload(&req, &input.bucket, &input.key, &input.upload_id)
            .await?;
        if input.if_match.is_some() || input.if_none_match.is_some() {
            return Err(not_implemented("a conditional CompleteMultipartUpload"));
        }
        let listed = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.clone())
            .unwrap_or_default();
        if listed.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "list the parts to complete the upload with"
            ));
        }
        let uploaded = self.meta.parts(&input.upload_id).await?;
        let mut chosen: Vec<&meta::Part> = Vec::with_capacity(listed.len());
        let mut previous = 0;
        for part in &listed {
            let number = part.part_number.unwrap_or(0);
            if number <= previous {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "list the parts in ascending order, each once"
                ));
            }
            previous = number;
            let found = uploaded.iter().find(|p| p.part_number == i64::from(number));
            let etag_matches = |p: &meta::Part| match &part.e_tag {
                Some(ETag::Strong(e) | ETag::Weak(e)) => e.trim_matches('"') == p.etag,
                None => false,
            };
            match found {
                Some(p) if etag_matches(p) => chosen.push(p),
                _ => {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {number} was not uploaded, or its ETag differs"
                    ));
                }
            }
        }
        if let Some(small) = chosen[..chosen.len() - 1]
            .iter()
            .find(|p| p.size < MIN_PART_BYTES)
        {
            return Err(s3_error!(
                EntityTooSmall,
                "part {} has {} bytes; every part but the last needs at least {MIN_PART_BYTES}",
                small.part_number,
                small.size
            ));
        }
        // S3's multipart ETag: the MD5 of the parts' MD5s, then the number of parts.
        let mut md5 = Md5::new();
        for p in &chosen {
            md5.update(hex::decode(&p.etag).map_err(internal)?);
        }
        let etag = format!("{}-{}", hex::encode(md5.finalize()), chosen.len());
        let object = meta::Object {
            size: chosen.iter().map(|p| p.size).sum(),
            etag: etag.clone(),
            content_type: upload.content_type.clone(),
            metadata: upload.metadata.clone(),
            last_modified: now_ms(),
            blocks: chosen
                .iter()
                .flat_map(|p| p.blocks.iter().cloned())
                .collect(),
            tags: upload.tags.clone(),
            ..meta::Object::new(&upload.bucket, &upload.key)
        };
        let written = self
            .meta
            .complete_upload(&upload.upload_id, &object)
            .await?
            .ok_or_else(|| {
                s3_error!(
                    NoSuchUpload,
                    "the upload was completed or aborted meanwhile"
                )
            })?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(upload.bucket.clone()),
            key: Some(upload.key),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", upload.bucket, object.key)),
            version_id: shown_version(written.versioning, &written.version_id, false),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = &req.input;
        self.own_upload(&req, &input.bucket, &input.key, &input.upload_id)
            .await?;
        if !self.meta.abort_upload(&input.upload_id).await? {
            return Err(s3_error!(
                NoSuchUpload,
                "the upload was completed or aborted meanwhile"
            ));
        }
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max = input.max_uploads.unwrap_or(1000).clamp(0, 1000);
        let key_marker = input.key_marker.clone().filter(|k| !k.is_empty());
        // S3 ignores an upload-id-marker without a key-marker.
        let upload_marker = input
            .upload_id_marker
            .clone()
            .filter(|u| !u.is_empty() && key_marker.is_some());
        let mut after_key = key_marker.clone().unwrap_or_default();
        let mut after_upload = upload_marker.clone();
        if after_upload.is_none() {
            after_key = resume_after(after_key, &prefix, delimiter.as_deref());
        }
        let limit = usize::try_from(max).unwrap_or(0);
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut last: Option<(String, Option<String>)> = None;
        let mut truncated = false;
        'pages: loop {
            let page = self
                .meta
                .list_uploads(
                    &input.bucket,
                    &prefix,
                    &after_key,
                    after_upload.as_deref(),
                    1000,
                )
                .await?;
            let full_page = page.len() == 1000;
            let mut skipped_ahead = false;
            for u in page {
                after_key.clone_from(&u.key);
                after_upload = Some(u.upload_id.clone());
                if uploads.len() + prefixes.len() >= limit {
                    truncated = true;
                    break 'pages;
                }
                match common_prefix(&u.key, &prefix, delimiter.as_deref()) {
                    Some(c) => {
                        after_key = format!("{c}\u{10FFFF}");
                        after_upload = None;
                        last = Some((c.clone(), None));
                        prefixes.push(c);
                        skipped_ahead = true;
                        break;
                    }
                    None => {
                        last = Some((u.key.clone(), Some(u.upload_id.clone())));
                        uploads.push(u);
                    }
                }
            }
            if !full_page && !skipped_ahead {
                break;
            }
        }
        let tenant = self.tenant(&req)?;
        let encode = |s: String| encoded(s, url);
        let (next_key, next_upload) = match last.filter(|_| truncated) {
            Some((k, u)) => (Some(encode(k)), u),
            None => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket.clone()),
            prefix: Some(encode(prefix.clone())),
            delimiter: delimiter.map(encode),
            key_marker: Some(key_marker.map(encode).unwrap_or_default()),
            upload_id_marker: Some(upload_marker.unwrap_or_default()),
            max_uploads: Some(max),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_upload,
            uploads: Some(
                uploads
                    .into_iter()
                    .map(|u| MultipartUpload {
                        key: Some(encode(u.key)),
                        upload_id: Some(u.upload_id),
                        initiated: Some(timestamp(u.initiated)),
                        storage_class: Some(StorageClass::from_static(
                            Class::of_metadata(&u.metadata).name(),
                        )),
                        owner: Some(Owner {
                            display_name: Some(tenant.clone()),
                            id: Some(tenant.clone()),
                        }),
                        initiator: Some(Initiator {
                            display_name: Some(tenant.clone()),
                            id: Some(tenant.clone()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            common_prefixes: Some(
                prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode(p)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = &req.input;
        self.own_upload(&req, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let max = input.max_parts.unwrap_or(1000).clamp(1, 1000);
        let marker = i64::from(input.part_number_marker.unwrap_or(0));
        let all = self.meta.parts(&input.upload_id).await?;
        let after: Vec<_> = all.into_iter().filter(|p| p.part_number > marker).collect();
        let truncated = after.len() > usize::try_from(max).unwrap_or(1000);
        let page: Vec<_> = after
            .into_iter()
            .take(usize::try_from(max).unwrap_or(1000))
            .collect();
        let next = truncated
            .then(|| page.last().and_then(|p| i32::try_from(p.part_number).ok()))
            .flatten();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            upload_id: Some(input.upload_id.clone()),
            max_parts: Some(max),
            is_truncated: Some(truncated),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            parts: Some(
                page.into_iter()
                    .map(|p| Part {
                        part_number: i32::try_from(p.part_number).ok(),
                        size: i64::try_from(p.size).ok(),
                        e_tag: Some(ETag::Strong(p.etag)),
                        last_modified: Some(timestamp(p.last_modified)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = &req.input;
        self.readable_bucket(&req, &input.bucket, false).await?;
        let url = url_encoding(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max_keys = input.max_keys.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS);
        let listed = self
            .list_page(
                &input.bucket,
                &prefix,
                delimiter.as_deref(),
                input.marker.clone().unwrap_or_default(),
                max_keys,
            )
            .await?;
        let encode = |s: String| encoded(s, url);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(encode(prefix.clone())),
            marker: input.marker.clone().map(encode),
            max_keys: Some(max_keys),
            is_truncated: Some(listed.truncated),
            next_marker: listed
                .truncated
                .then_some(listed.last)
                .flatten()
                .map(encode),
            contents: Some(
                listed
                    .contents
                    .into_iter()
                    .map(|mut o| {
                        o.key = o.key.map(encode);
                        o
                    })
                    .collect(),
            ),
            common_prefixes: Some(
                listed
                    .prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode(p)),
                    })
                    .collect(),
            ),
            delimiter: delimiter.map(encode),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "at most 1000 keys per DeleteObjects request"
            ));
        }
        let quiet = input.delete.quiet == Some(true);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for o in &input.delete.objects {
            if o.e_tag.is_some() || o.last_modified_time.is_some() || o.size.is_some() {
                errors.push(Error {
                    key: Some(o.key.clone()),
                    version_id: o.version_id.clone(),
                    code: Some("NotImplemented".into()),
                    message: Some("conditional deletes are not implemented yet".into()),
                });
                continue;
            }
            match self
                .delete_one(&input.bucket, &o.key, o.version_id.as_deref())
                .await
            {
                Ok(_) if quiet => {}
                Ok(d) => deleted.push(d),
                Err(e) => {
                    let internal = *e.code() == S3ErrorCode::InternalError;
                    errors.push(Error {
                        key: Some(o.key.clone()),
                        version_id: o.version_id.clone(),
                        code: Some(e.code().as_str().to_owned()),
                        message: Some(if internal {
                            "the object could not be deleted; retry".to_owned()
                        } else {
                            e.message().unwrap_or_default().to_owned()
                        }),
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        let config = &input.versioning_configuration;
        if input.mfa.is_some()
            || config
                .mfa_delete
                .as_ref()
                .is_some_and(|m| m.as_str() == MFADelete::ENABLED)
        {
            return Err(not_implemented("MFA delete"));
        }
        let state = match config.status.as_ref().map(|s| s.as_str()) {
            Some(BucketVersioningStatus::ENABLED) => Versioning::Enabled,
            Some(BucketVersioningStatus::SUSPENDED) => Versioning::Suspended,
            _ => {
                return Err(s3_error!(
                    MalformedXML,
                    "the versioning Status must be Enabled or Suspended"
                ));
            }
        };
        if !self.meta.set_versioning(&input.bucket, state).await? {
            return Err(s3_error!(NoSuchBucket, "no bucket {}", input.bucket));
        }
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        let bucket = self.own_bucket(&req, &req.input.bucket).await?;
        let status = match bucket.versioning {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::ENABLED,
            )),
            Versioning::Suspended => Some(BucketVersioningStatus::from_static(
                BucketVersioningStatus::SUSPENDED,
            )),
        };
        Ok(S3Response::new(GetBucketVersioningOutput {
            status,
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        let url = url_encoding(input.encoding_type.as_ref())?;
        if input.optional_object_attributes.is_some() {
            return Err(not_implemented("optional object attributes"));
        }
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let max_keys = input.max_keys.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS);
        let key_marker = input.key_marker.clone().filter(|k| !k.is_empty());
        let version_marker = input.version_id_marker.clone().filter(|v| !v.is_empty());
        if version_marker.is_some() && key_marker.is_none() {
            return Err(s3_error!(
                InvalidArgument,
                "a version-id-marker needs a key-marker"
            ));
        }
        version_arg(version_marker.as_deref())?;
        let listed = self
            .versions_page(
                &input.bucket,
                &prefix,
                delimiter.as_deref(),
                key_marker.clone().unwrap_or_default(),
                version_marker.clone(),
                max_keys,
            )
            .await?;
        let encode = |s: String| encoded(s, url);
        let (next_key, next_version) = match listed.last.filter(|_| listed.truncated) {
            Some((k, v)) => (Some(encode(k)), v),
            None => (None, None),
        };
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for v in listed.versions {
            let o = v.object;
            if o.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(v.is_latest),
                    key: Some(encode(o.key)),
                    last_modified: Some(timestamp(o.last_modified)),
                    version_id: Some(o.version_id),
                    ..Default::default()
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(ETag::Strong(o.etag)),
                    is_latest: Some(v.is_latest),
                    key: Some(encode(o.key)),
                    last_modified: Some(timestamp(o.last_modified)),
                    size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                    storage_class: Some(ObjectVersionStorageClass::from_static(
                        Class::of_metadata(&o.metadata).name(),
                    )),
                    version_id: Some(o.version_id),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket.clone()),
            prefix: Some(encode(prefix.clone())),
            delimiter: delimiter.map(encode),
            key_marker: Some(key_marker.map(encode).unwrap_or_default()),
            version_id_marker: Some(version_marker.unwrap_or_default()),
            max_keys: Some(max_keys),
            is_truncated: Some(listed.truncated),
            next_key_marker: next_key,
            next_version_id_marker: next_version,
            versions: Some(versions),
            delete_markers: Some(markers),
            common_prefixes: Some(
                listed
                    .prefixes
                    .into_iter()
                    .map(|p| CommonPrefix {
                        prefix: Some(encode(p)),
                    })
                    .collect(),
            ),
            encoding_type: input.encoding_type.clone(),
            ..Default::default()
        }))
    }

    /// A copy is a new object row over the same blocks: blocks are content-addressed and
    /// immutable, so no byte is read or written.
    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = &req.input;
        private_only(input.acl.as_ref().map(|a| a.as_str()))?;
        acl::no_grants(&[
            input.grant_full_control.as_ref(),
            input.grant_read.as_ref(),
            input.grant_read_acp.as_ref(),
            input.grant_write_acp.as_ref(),
        ])?;
        // COPY (the default) keeps the source's tags and ignores x-amz-tagging, as S3 does;
        // REPLACE takes x-amz-tagging (none: no tags).
        let replace_tags = match input.tagging_directive.as_ref().map(|d| d.as_str()) {
            None | Some(TaggingDirective::COPY) => None,
            Some(TaggingDirective::REPLACE) => {
                Some(tagging::from_header(input.tagging.as_deref())?)
            }
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "x-amz-tagging-directive is COPY or REPLACE, not {other:?}"
                ));
            }
        };
        self.own_bucket(&req, &input.bucket).await?;
        let Source {
            bucket: from_bucket,
            object: source,
            named_version,
        } = self
            .copy_source(
                &req,
                &input.copy_source,
                &Preconditions {
                    if_match: input.copy_source_if_match.as_ref(),
                    if_none_match: input.copy_source_if_none_match.as_ref(),
                    if_modified_since: input.copy_source_if_modified_since.as_ref(),
                    if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
                },
            )
            .await?;
        let (source_bucket, source_key) = (&from_bucket.name, &source.key);
        if source.size > MAX_OBJECT_BYTES {
            return Err(s3_error!(
                InvalidRequest,
                "a copy source is at most {MAX_OBJECT_BYTES} bytes: copy larger ones by parts (UploadPartCopy)"
            ));
        }
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == "REPLACE");
        // Copying a named version onto its own key restores it, as in S3.
        if *source_bucket == input.bucket && *source_key == input.key && !named_version && !replace
        {
            return Err(s3_error!(
                InvalidRequest,
                "copying an object onto itself needs --metadata-directive REPLACE (new metadata)"
            ));
        }
        // The copy shares the source's blocks, so it keeps their class.
        let class = Class::of_metadata(&source.metadata);
        if Class::requested(input.storage_class.as_ref())? != class && input.storage_class.is_some()
        {
            return Err(not_implemented(
                "changing an object's storage class by a copy (its blocks are shared): upload it again with the class",
            ));
        }
        let (content_type, metadata) = if replace {
            (
                input.content_type.as_ref().map(|c| c.to_string()),
                super::kept::stored_metadata!(clone input, class),
            )
        } else {
            (source.content_type.clone(), source.metadata.clone())
        };
        let now = now_ms();
        let tags = replace_tags.unwrap_or(source.tags);
        let source_version = source.version_id.clone();
        let source_blocks = source.blocks.clone();
        let from = meta::VersionRef {
            bucket: source_bucket,
            key: source_key,
            version_id: &source_version,
            blocks: &source_blocks,
        };
        let written = self
            .meta
            .put_object_copy(
                &meta::Object {
                    size: source.size,
                    etag: source.etag.clone(),
                    content_type,
                    metadata,
                    last_modified: now,
                    blocks: source.blocks,
                    tags,
                    // The same bytes: the same checksum.
                    checksum: source.checksum,
                    ..meta::Object::new(&input.bucket, &input.key)
                },
                &Condition::None,
                &from,
            )
            .await?
            .map_err(|gone| source_gone(named_version, gone))?
            .ok_or_else(|| internal("an unconditional write was refused"))?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(source.etag)),
                last_modified: Some(timestamp(now)),
                ..Default::default()
            }),
            copy_source_version_id: shown_version(
                from_bucket.versioning,
                &source.version_id,
                named_version,
            ),
            version_id: shown_version(written.versioning, &written.version_id, false),
            ..Default::default()
        }))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        if input.access_control_policy.is_some() {
            return Err(not_implemented(
                "an ACL body (grants): set a canned ACL with x-amz-acl private or public-read",
            ));
        }
        acl::no_grants(&[
            input.grant_full_control.as_ref(),
            input.grant_read.as_ref(),
            input.grant_read_acp.as_ref(),
            input.grant_write.as_ref(),
            input.grant_write_acp.as_ref(),
        ])?;
        let Some(public_read) = acl::canned(input.acl.as_ref())? else {
            return Err(s3_error!(
                MissingSecurityHeader,
                "Your request was missing a required header: x-amz-acl"
            ));
        };
        if !self
            .meta
            .set_public_read(&input.bucket, public_read)
            .await?
        {
            return Err(s3_error!(NoSuchBucket, "no bucket {}", input.bucket));
        }
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        let bucket = self.own_bucket(&req, &req.input.bucket).await?;
        Ok(S3Response::new(acl::bucket_acl(
            &bucket.tenant,
            bucket.public_read,
        )))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = &req.input;
        let named = input.version_id.as_deref();
        let (bucket, object, _) = self
            .readable(&req, &input.bucket, &input.key, named, false)
            .await?;
        let tags = tagging::from_tagging(&input.tagging, tagging::MAX_OBJECT_TAGS)?;
        self.retag(&object, named, &tags).await?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: shown_version(bucket.versioning, &object.version_id, named.is_some()),
        }))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = &req.input;
        let named = input.version_id.as_deref();
        let (bucket, object, _) = self
            .readable(&req, &input.bucket, &input.key, named, false)
            .await?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            version_id: shown_version(bucket.versioning, &object.version_id, named.is_some()),
            tag_set: tagging::to_tag_set(object.tags),
        }))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = &req.input;
        let named = input.version_id.as_deref();
        let (bucket, object, _) = self
            .readable(&req, &input.bucket, &input.key, named, false)
            .await?;
        self.retag(&object, named, &[]).await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: shown_version(bucket.versioning, &object.version_id, named.is_some()),
        }))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        let tags = tagging::from_tagging(&input.tagging, tagging::MAX_BUCKET_TAGS)?;
        // An empty tag set is none (GetBucketTagging answers NoSuchTagSet).
        let tags = (!tags.is_empty()).then_some(tags);
        if !self
            .meta
            .set_bucket_tags(&input.bucket, tags.as_deref())
            .await?
        {
            return Err(s3_error!(NoSuchBucket, "no bucket {}", input.bucket));
        }
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        match self.meta.bucket_tags(&input.bucket).await? {
            Some(tags) => Ok(S3Response::new(GetBucketTaggingOutput {
                tag_set: tagging::to_tag_set(tags),
            })),
            None => Err(s3_error!(NoSuchTagSet, "The TagSet does not exist")),
        }
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        if !self.meta.set_bucket_tags(&input.bucket, None).await? {
            return Err(s3_error!(NoSuchBucket, "no bucket {}", input.bucket));
        }
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        let rules = cors::from_config(&input.cors_configuration)?;
        let stored = cors::to_stored(&rules)?;
        if !self
            .meta
            .set_bucket_cors(&input.bucket, Some(&stored))
            .await?
        {
            return Err(s3_error!(NoSuchBucket, "no bucket {}", input.bucket));
        }
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        match self.meta.bucket_cors(&input.bucket).await? {
            Some(Some(stored)) => Ok(S3Response::new(GetBucketCorsOutput {
                cors_rules: Some(cors::to_config(cors::from_stored(&stored)?)),
            })),
            _ => Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            )),
        }
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        let input = &req.input;
        self.own_bucket(&req, &input.bucket).await?;
        if !self.meta.set_bucket_cors(&input.bucket, None).await? {
            return Err(s3_error!(NoSuchBucket, "no bucket {}", input.bucket));
        }
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from(time::OffsetDateTime::from_unix_timestamp(seconds).expect("time"))
    }

    #[test]
    fn a_range_of_a_block_in_pieces_is_the_same_range_of_its_bytes() {
        let whole: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let cuts = [0, 1, 7, 300, 301, 999, 1000];
        let parts: Vec<Bytes> = [0usize, 1, 300, 301, 640, 1000]
            .windows(2)
            .map(|w| Bytes::copy_from_slice(&whole[w[0]..w[1]]))
            .collect();
        for &from in &cuts {
            for &to in &cuts {
                let got = slice_parts(parts.clone(), from, to);
                if from > to {
                    assert!(got.is_none(), "{from}..{to}");
                    continue;
                }
                let got = got.expect("in range").concat();
                assert_eq!(got, whole[from..to], "{from}..{to}");
            }
        }
        assert!(slice_parts(parts, 0, 1001).is_none());
    }

    #[test]
    fn copy_source_ranges_are_first_to_last_within_the_object() {
        assert_eq!(copy_range(None, 10).expect("whole"), 0..10);
        assert_eq!(copy_range(Some("bytes=0-9"), 10).expect("all"), 0..10);
        assert_eq!(copy_range(Some("bytes=3-3"), 10).expect("one"), 3..4);
        for bad in [
            "bytes=0-10",
            "bytes=5-4",
            "bytes=-3",
            "bytes=3-",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "",
        ] {
            let e = copy_range(Some(bad), 10).expect_err(bad);
            assert_eq!(*e.code(), S3ErrorCode::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn preconditions_are_evaluated_in_rfc_order_on_whole_seconds() {
        let mut object = meta::Object::new("b", "k");
        object.etag = "e1".into();
        // 1000.5 s: compared as 1000.
        object.last_modified = 1_000_500;
        let etag = ETagCondition::ETag(ETag::Strong("e1".into()));
        let other = ETagCondition::ETag(ETag::Strong("e2".into()));
        let (before, same, after) = (at(999), at(1000), at(1001));
        let check = |p: Preconditions<'_>| precondition(&object, &p);
        assert_eq!(check(Preconditions::default()), None);
        let ims = |t| Preconditions {
            if_modified_since: Some(t),
            ..Default::default()
        };
        assert_eq!(check(ims(&before)), None);
        assert_eq!(check(ims(&same)), Some(Stop::NotModified));
        assert_eq!(check(ims(&after)), Some(Stop::NotModified));
        let ius = |t| Preconditions {
            if_unmodified_since: Some(t),
            ..Default::default()
        };
        assert_eq!(check(ius(&before)), Some(Stop::Failed));
        assert_eq!(check(ius(&same)), None);
        // If-Match decides alone when present; so does If-None-Match.
        assert_eq!(
            check(Preconditions {
                if_match: Some(&etag),
                if_unmodified_since: Some(&before),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            check(Preconditions {
                if_match: Some(&other),
                if_unmodified_since: Some(&after),
                ..Default::default()
            }),
            Some(Stop::Failed)
        );
        assert_eq!(
            check(Preconditions {
                if_none_match: Some(&other),
                if_modified_since: Some(&after),
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            check(Preconditions {
                if_none_match: Some(&etag),
                if_modified_since: Some(&before),
                ..Default::default()
            }),
            Some(Stop::NotModified)
        );
    }
}
