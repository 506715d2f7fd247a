//! Services served from a bucket (`bucket:NAME` origins): the platform credential each
//! such service's edges read the bucket with, derived from the storage cluster token, the
//! tenant and the bucket, so nothing is stored and every control-plane replica derives the
//! same one. The gateways get it (in their snapshot) marked read-only for that bucket; the
//! edges get it with the service. A gateway serves it only `GetObject` and `HeadObject` in
//! that bucket, and only while the bucket belongs to the service's tenant, so a tenant who
//! names another tenant's private bucket reads nothing.

use hmac::{Hmac, Mac};
use lingjing_model::Service;
use lingjing_model::snapshot::{BucketOrigin, S3Credential};
use sha2::{Digest, Sha256};

/// The prefix of every bucket-origin access key (tenants' keys are `LJ` and hex digits, so
/// the two never collide).
pub const ACCESS_KEY_PREFIX: &str = "LJO";

/// The read-only credential for `tenant`'s bucket `bucket`, under cluster token `token`.
pub fn credential(token: &str, tenant: &str, bucket: &str) -> S3Credential {
    let id = Sha256::digest(format!("{tenant}\0{bucket}").as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"lingjing bucket origin\0");
    mac.update(tenant.as_bytes());
    mac.update(b"\0");
    mac.update(bucket.as_bytes());
    S3Credential {
        access_key: format!(
            "{ACCESS_KEY_PREFIX}{}",
            hex::encode_upper(&id[..9]).get(..17).unwrap_or_default()
        ),
        secret: hex::encode(&mac.finalize().into_bytes()[..20]),
        tenant: tenant.to_owned(),
        read_only_bucket: Some(bucket.to_owned()),
    }
}

/// The credentials of every service in `services` served from a bucket, for the gateways.
pub fn gateway_credentials(token: &str, services: &[Service]) -> Vec<S3Credential> {
    let mut out: Vec<S3Credential> = services
        .iter()
        .filter_map(|s| Some(credential(token, &s.tenant, s.bucket_origin()?)))
        .collect();
    out.sort_by(|a, b| a.access_key.cmp(&b.access_key));
    out.dedup_by(|a, b| a.access_key == b.access_key);
    out
}

/// What each service in `services` served from a bucket needs at the edges.
pub fn edge_origins(token: &str, services: &[Service]) -> Vec<BucketOrigin> {
    services
        .iter()
        .filter_map(|s| {
            let bucket = s.bucket_origin()?;
            let c = credential(token, &s.tenant, bucket);
            Some(BucketOrigin {
                service: s.id.clone(),
                bucket: bucket.to_owned(),
                access_key: c.access_key,
                secret: c.secret,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stable_and_differ_per_tenant_bucket_and_token() {
        let a = credential("t", "acme", "site");
        assert_eq!(a, credential("t", "acme", "site"));
        assert_eq!(a.access_key.len(), 20);
        assert!(a.access_key.starts_with(ACCESS_KEY_PREFIX));
        assert_eq!(a.secret.len(), 40);
        assert_eq!(a.read_only_bucket.as_deref(), Some("site"));
        for other in [
            credential("t", "acme", "other"),
            credential("t", "evil", "site"),
            credential("u", "acme", "site"),
            // No ambiguity between where the tenant ends and the bucket begins.
            credential("t", "acmes", "ite"),
        ] {
            assert_ne!(a.secret, other.secret);
        }
        assert_ne!(a.access_key, credential("t", "evil", "site").access_key);
    }
}
