//! Bucket access: the canned ACLs `private` and `public-read` (the only ACLs there are;
//! grants, ACL bodies and the other canned ACLs answer `NotImplemented`), and what a
//! caller that does not own a bucket may do with it.
//!
//! A bucket belongs to the tenant that created it; only that tenant changes it, its ACL,
//! tags or CORS, or writes, deletes or copies anything in it. `public-read` grants S3's
//! `AllUsers` `READ`, which, as with a public bucket in S3 (a bucket policy allowing
//! `s3:GetObject` and `s3:ListBucket` to everyone), lets anyone, unsigned or signed by
//! another tenant:
//!
//! - GetObject and HeadObject of the latest version (ranges and conditionals included;
//!   a `versionId` is `s3:GetObjectVersion`, not granted: 403);
//! - ListObjects, ListObjectsV2 and HeadBucket (`s3:ListBucket`).
//!
//! Nothing else: ListObjectVersions, ListMultipartUploads, the ACL, tags, CORS and
//! versioning of the bucket, object tags (and `x-amz-tagging-count`, left out of such
//! reads), and a copy out of the bucket stay the owner's (403 `AccessDenied`). An
//! unsigned request is decided first in the gateway's `S3Access` check
//! ([`check_anonymous`]) and again by the handler, which reads the bucket itself.

use s3s::access::S3AccessContext;
use s3s::dto::{BucketCannedACL, GetBucketAclOutput, Grant, Grantee, Owner, Permission, Type};
use s3s::path::S3Path;
use s3s::{S3Result, s3_error};

use crate::meta::Meta;

/// The operations `public-read` opens to callers other than the owner.
const PUBLIC_OPS: [&str; 5] = [
    "GetObject",
    "HeadObject",
    "ListObjects",
    "ListObjectsV2",
    "HeadBucket",
];

/// Whether `op` is one `public-read` opens to callers other than the owner.
pub(crate) fn public_op(op: &str) -> bool {
    PUBLIC_OPS.contains(&op)
}

/// The canned ACLs S3 knows for buckets and objects, of which only `private` and
/// `public-read` are implemented.
const KNOWN_CANNED: [&str; 8] = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// A bucket's canned ACL header: `Some(true)` for `public-read`, `Some(false)` for
/// `private`, `None` when absent. A known one not implemented is `NotImplemented`, an
/// unknown one `InvalidArgument`.
pub(crate) fn canned(acl: Option<&BucketCannedACL>) -> S3Result<Option<bool>> {
    match acl.map(BucketCannedACL::as_str) {
        None => Ok(None),
        Some("private") => Ok(Some(false)),
        Some("public-read") => Ok(Some(true)),
        Some(other) if KNOWN_CANNED.contains(&other) => Err(s3_error!(
            NotImplemented,
            "the canned ACL {other:?} is not implemented: use private or public-read"
        )),
        Some(other) => Err(s3_error!(InvalidArgument, "{other:?} is not a canned ACL")),
    }
}

/// `x-amz-grant-*` headers are refused (only canned ACLs are implemented).
pub(crate) fn no_grants(grants: &[Option<&String>]) -> S3Result<()> {
    if grants.iter().any(Option::is_some) {
        return Err(s3_error!(
            NotImplemented,
            "x-amz-grant-* headers are not implemented: use x-amz-acl private or public-read"
        ));
    }
    Ok(())
}

/// The GetBucketAcl answer for a bucket of `tenant`: the owner's `FULL_CONTROL`, and
/// `AllUsers` `READ` when `public_read`.
pub(crate) fn bucket_acl(tenant: &str, public_read: bool) -> GetBucketAclOutput {
    let owner = Owner {
        display_name: Some(tenant.to_owned()),
        id: Some(tenant.to_owned()),
    };
    let mut grants = vec![Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name.clone(),
            id: owner.id.clone(),
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if public_read {
        grants.push(Grant {
            grantee: Some(Grantee {
                display_name: None,
                id: None,
                type_: Type::from_static(Type::GROUP),
                email_address: None,
                uri: Some("http://acs.amazonaws.com/groups/global/AllUsers".to_owned()),
            }),
            permission: Some(Permission::from_static(Permission::READ)),
        });
    }
    GetBucketAclOutput {
        grants: Some(grants),
        owner: Some(owner),
    }
}

/// Whether a query string names a version (`versionId`).
fn names_version(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|p| p.split('=').next() == Some("versionId"))
}

/// The decision on a request signed with a bucket-origin credential (an edge reading the
/// bucket a CDN service is served from): `GetObject` and `HeadObject` in `bucket`, no
/// other operation and no other bucket. The handler then checks, as for any key, that the
/// bucket belongs to the credential's tenant (or is `public-read`).
pub(crate) fn check_read_only(cx: &S3AccessContext<'_>, bucket: &str) -> S3Result<()> {
    let op = cx.s3_op().name();
    let in_bucket = match cx.s3_path() {
        S3Path::Object { bucket: b, .. } => b.as_ref() == bucket,
        S3Path::Root | S3Path::Bucket { .. } => false,
    };
    if matches!(op, "GetObject" | "HeadObject") && in_bucket {
        Ok(())
    } else {
        Err(s3_error!(
            AccessDenied,
            "this platform credential may only read objects of bucket {bucket}"
        ))
    }
}

/// The decision on an unsigned request, before its input is read: only a [`public_op`]
/// on a `public-read` bucket (and, for objects, no `versionId`) goes on to the handler,
/// which decides again. A missing bucket is `NoSuchBucket`, as S3 answers.
pub(crate) async fn check_anonymous(meta: &Meta, cx: &S3AccessContext<'_>) -> S3Result<()> {
    let denied = || {
        s3_error!(
            AccessDenied,
            "sign the request with an S3 access key (lingjing tenant s3-key-create); unsigned requests may only read public-read buckets"
        )
    };
    let op = cx.s3_op().name();
    if !public_op(op) {
        return Err(denied());
    }
    let bucket = match cx.s3_path() {
        S3Path::Root => return Err(denied()),
        S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket,
    };
    if names_version(cx.uri().query()) {
        return Err(s3_error!(
            AccessDenied,
            "reading a version by id needs a signed request by the bucket's owner"
        ));
    }
    match meta.bucket(bucket).await {
        Ok(None) => Err(s3_error!(NoSuchBucket, "no bucket {bucket}")),
        Ok(Some(b)) if b.public_read => Ok(()),
        Ok(Some(_)) => Err(denied()),
        Err(e) => {
            tracing::error!(error = %e, "reading a bucket for an access check failed");
            Err(s3_error!(
                ServiceUnavailable,
                "the bucket could not be read; retry"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::S3ErrorCode;

    #[test]
    fn only_private_and_public_read_are_implemented() {
        let acl = |s: &'static str| BucketCannedACL::from_static(s);
        assert_eq!(canned(None).expect("none"), None);
        assert_eq!(canned(Some(&acl("private"))).expect("private"), Some(false));
        assert_eq!(
            canned(Some(&acl("public-read"))).expect("public"),
            Some(true)
        );
        for other in [
            "public-read-write",
            "authenticated-read",
            "log-delivery-write",
        ] {
            assert_eq!(
                *canned(Some(&acl(other))).expect_err(other).code(),
                S3ErrorCode::NotImplemented
            );
        }
        assert_eq!(
            *canned(Some(&acl("Public-Read")))
                .expect_err("unknown")
                .code(),
            S3ErrorCode::InvalidArgument
        );
        let g = "id=x".to_owned();
        assert!(no_grants(&[None, None]).is_ok());
        assert_eq!(
            *no_grants(&[None, Some(&g)]).expect_err("grant").code(),
            S3ErrorCode::NotImplemented
        );
    }

    #[test]
    fn public_read_opens_reads_only() {
        for op in [
            "GetObject",
            "HeadObject",
            "ListObjects",
            "ListObjectsV2",
            "HeadBucket",
        ] {
            assert!(public_op(op), "{op}");
        }
        for op in [
            "PutObject",
            "DeleteObject",
            "DeleteObjects",
            "CopyObject",
            "ListObjectVersions",
            "ListMultipartUploads",
            "GetObjectTagging",
            "GetBucketAcl",
            "PutBucketAcl",
            "GetBucketCors",
            "ListBuckets",
            "CreateMultipartUpload",
        ] {
            assert!(!public_op(op), "{op}");
        }
        assert!(names_version(Some("versionId=abc")));
        assert!(names_version(Some("x=1&versionId")));
        assert!(!names_version(Some("versionIdx=1")));
        assert!(!names_version(None));
    }

    #[test]
    fn the_acl_shows_the_owner_and_all_users() {
        let private = bucket_acl("shop", false);
        assert_eq!(private.grants.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            private.owner.as_ref().and_then(|o| o.id.as_deref()),
            Some("shop")
        );
        let public = bucket_acl("shop", true);
        let all = &public.grants.as_ref().expect("grants")[1];
        assert_eq!(
            all.grantee.as_ref().and_then(|g| g.uri.as_deref()),
            Some("http://acs.amazonaws.com/groups/global/AllUsers")
        );
        assert_eq!(
            all.permission.as_ref().map(Permission::as_str),
            Some(Permission::READ)
        );
    }
}
