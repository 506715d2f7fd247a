//! Services (CDN properties) of tenants: hostnames, origins, cache rules, TLS certificate
//! and the steering policy ("DNS deployment strategy") that decides which nodes answer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_max_items, check_unique};

/// Most hostnames per service.
pub const MAX_HOSTNAMES: usize = 100;
/// Most origins per service.
pub const MAX_ORIGINS: usize = 16;
/// Most cache rules per service.
pub const MAX_CACHE_RULES: usize = 100;
/// Most request headers in one cache rule's key.
pub const MAX_KEY_HEADERS: usize = 16;
/// Most entries in each steering list (sites, fallbacks, weights).
pub const MAX_STEERING_ENTRIES: usize = 64;
/// Most targeted cache-control fields (RFC 9213) in a service's precedence chain.
pub const MAX_TARGETED_CACHE_CONTROL: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Slug, unique across tenants; also the label of the service's CNAME target in the
    /// platform zone (`<id>.cdn.lingjing.test.`).
    pub id: String,
    /// The owning tenant.
    pub tenant: String,
    /// The tenant's hostnames served by this service (each belongs to one tenant and one
    /// service only; at most 100).
    #[schema(max_items = 100)]
    pub hostnames: Vec<String>,
    /// Where misses are fetched from (at most 16).
    #[schema(max_items = 16)]
    pub origins: Vec<Origin>,
    /// Per-path overrides of caching, first match wins (at most 100).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub cache_rules: Vec<CacheRule>,
    #[serde(default)]
    pub steering: SteeringPolicy,
    /// Certificate for HTTPS, chosen by SNI.
    #[serde(default)]
    pub tls: Option<TlsCertificate>,
    /// Targeted cache-control fields (RFC 9213) the edge obeys instead of `Cache-Control`,
    /// first present and valid one wins; lower-case field names, at most 4. Default:
    /// `["lingjing-cache-control", "cdn-cache-control"]`; empty: only `Cache-Control`.
    #[serde(default = "default_targeted_cache_control")]
    #[schema(max_items = 4)]
    pub targeted_cache_control: Vec<String>,
    /// Send the targeted fields above on to clients (off: they are removed from responses;
    /// `Cache-Control` always goes through unchanged).
    #[serde(default)]
    pub forward_targeted_cache_control: bool,
    /// PEM CA certificates trusted, besides the public roots, for this service's origins
    /// that use TLS (e.g. a private CA); at most 256 KiB.
    #[serde(default)]
    pub origin_ca_pem: Option<String>,
    /// Traffic defence: detection thresholds and what detection does
    /// (`crate::defence::DefenceSettings`; on by default).
    #[serde(default)]
    pub defence: crate::defence::DefenceSettings,
}

/// The default precedence chain of targeted cache-control fields (RFC 9213): Lingjing's
/// own field, then the one for every CDN.
pub fn default_targeted_cache_control() -> Vec<String> {
    vec![
        "lingjing-cache-control".to_owned(),
        "cdn-cache-control".to_owned(),
    ]
}

/// An origin server of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    /// `host:port`, e.g. `127.0.0.1:7900` or `origin.example.com:443`; or `bucket:NAME`,
    /// a bucket of the service's tenant in the platform's object storage (then the only
    /// origin of the service): the edges read it from the S3 gateways with a credential
    /// that can only read that bucket.
    pub address: String,
    /// Relative share of requests among the primary (or among the backup) origins.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Used only when no primary origin is reachable.
    #[serde(default)]
    pub backup: bool,
    /// Connect to the origin with TLS (SNI and the certificate name are the host header's
    /// host; HTTP/2 when the origin offers it).
    #[serde(default)]
    pub tls: bool,
    /// Accept any certificate from this origin (TLS still encrypts, but anyone on the path
    /// can impersonate the origin). For tests and migrations only; needs `tls`.
    #[serde(default)]
    pub tls_skip_verify: bool,
    /// Host header sent to the origin; the client's by default.
    #[serde(default)]
    pub host_header: Option<String>,
}

fn default_weight() -> u32 {
    1
}

/// The prefix of an origin address that names a bucket (`bucket:NAME`).
pub const BUCKET_ORIGIN_PREFIX: &str = "bucket:";

impl Origin {
    /// The bucket this origin names (`bucket:NAME`), if it names one.
    pub fn bucket(&self) -> Option<&str> {
        self.address.strip_prefix(BUCKET_ORIGIN_PREFIX)
    }
}

impl Service {
    /// The bucket the service is served from, when its origin is a bucket.
    pub fn bucket_origin(&self) -> Option<&str> {
        self.origins.iter().find_map(Origin::bucket)
    }
}

/// Checks an S3 bucket name as the gateways accept it: 3 to 63 lower-case letters, digits,
/// `.` and `-`, starting and ending with a letter or digit.
pub fn check_bucket_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let edge_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge_ok(name.as_bytes().first())
        && edge_ok(name.as_bytes().last())
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "`{name}` is not a bucket name: 3 to 63 lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit"
            ),
        ))
    }
}

/// A caching rule for the paths matching `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheRule {
    /// A path, or a prefix ending in `*` (e.g. `/assets/*`).
    pub path: String,
    /// Overrides the freshness lifetime from the origin's headers, in seconds.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Never cache matching responses.
    #[serde(default)]
    pub bypass: bool,
    /// Leave the query string out of the cache key.
    #[serde(default)]
    pub ignore_query: bool,
    /// Sort query parameters in the cache key.
    #[serde(default)]
    pub sort_query: bool,
    /// Request headers included in the cache key (at most 16).
    #[serde(default)]
    #[schema(max_items = 16)]
    pub key_headers: Vec<String>,
    /// Store responses that carry `Set-Cookie` in the shared cache (the cookie is
    /// stripped from what is stored and served from cache). Off: such responses are not
    /// stored.
    #[serde(default)]
    pub cache_set_cookie: bool,
}

/// A PEM certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// How DNS chooses the nodes that answer for a service: a "DNS deployment strategy".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct SteeringPolicy {
    /// Sites allowed to serve; empty means every site with edge nodes.
    pub sites: Vec<String>,
    /// Lines to try, in order, when no node is on the client's own line.
    pub fallback_lines: Vec<String>,
    /// Sites to answer with when nothing else matches (e.g. the regional parents).
    pub fallback_sites: Vec<String>,
    /// Relative weight per site among equally good candidates (default 1).
    pub site_weights: BTreeMap<String, u32>,
    /// Addresses per answer.
    pub answer_count: u8,
    /// TTL of answers, in seconds.
    pub ttl: u32,
    /// A node above this share of its capacity is skipped until it has room.
    pub max_load_percent: u8,
}

impl Default for SteeringPolicy {
    fn default() -> Self {
        Self {
            sites: Vec::new(),
            fallback_lines: Vec::new(),
            fallback_sites: Vec::new(),
            site_weights: BTreeMap::new(),
            answer_count: 2,
            ttl: 60,
            max_load_percent: 90,
        }
    }
}

/// Whether `host` (lower-case, no port) is served by the hostname `pattern`: equal, or
/// under a `*.suffix` wildcard (which does not match the bare suffix).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern == host,
    }
}

/// Checks a DNS hostname: 1..=253 characters, labels of 1..=63 letters, digits and `-`,
/// optionally a leading `*.` wildcard.
pub fn check_hostname(field: &str, host: &str) -> Result<(), ValidationError> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || host.len() > 253 {
        return Err(ValidationError::new(
            field,
            "must be a hostname of 1 to 253 characters",
        ));
    }
    if host != host.to_ascii_lowercase() {
        return Err(ValidationError::new(
            field,
            format!("`{host}` must be lowercase"),
        ));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(ValidationError::new(
                field,
                format!("`{host}` is not a valid hostname (label `{label}`)"),
            ));
        }
    }
    Ok(())
}

/// Checks an origin address of the form `host:port`.
fn check_origin_address(field: &str, address: &str) -> Result<(), ValidationError> {
    let bad = || {
        ValidationError::new(
            field,
            format!(
                "`{address}` must be `host:port`, e.g. `origin.example.com:443` or `[2001:db8::1]:80`"
            ),
        )
    };
    if address.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(bad());
    }
    check_hostname(field, host).map_err(|_| bad())
}

impl Validate for Origin {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(bucket) = self.bucket() {
            check_bucket_name("address", bucket)?;
            for (field, set) in [
                ("tls", self.tls),
                ("tls_skip_verify", self.tls_skip_verify),
                ("host_header", self.host_header.is_some()),
                ("backup", self.backup),
            ] {
                if set {
                    return Err(ValidationError::new(
                        field,
                        "does not apply to a bucket origin (the edges reach the S3 gateways themselves)",
                    ));
                }
            }
        } else {
            check_origin_address("address", &self.address)?;
        }
        if self.weight == 0 || self.weight > 10_000 {
            return Err(ValidationError::new("weight", "must be from 1 to 10000"));
        }
        if let Some(h) = &self.host_header {
            check_hostname("host_header", h)?;
        }
        if self.tls_skip_verify && !self.tls {
            return Err(ValidationError::new(
                "tls_skip_verify",
                "applies only to an origin with `tls: true`",
            ));
        }
        Ok(())
    }
}

impl Validate for CacheRule {
    fn validate(&self) -> Result<(), ValidationError> {
        if !self.path.starts_with('/') {
            return Err(ValidationError::new("path", "must start with `/`"));
        }
        if self.path.trim_end_matches('*').contains('*') {
            return Err(ValidationError::new(
                "path",
                "`*` is allowed only at the end",
            ));
        }
        if self.bypass && self.ttl_secs.is_some() {
            return Err(ValidationError::new(
                "ttl_secs",
                "a bypass rule cannot set a TTL",
            ));
        }
        check_max_items("key_headers", &self.key_headers, MAX_KEY_HEADERS)?;
        if self.path.len() > 1024 {
            return Err(ValidationError::new(
                "path",
                "must be at most 1024 characters",
            ));
        }
        for (i, h) in self.key_headers.iter().enumerate() {
            let ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(ValidationError::new(
                    format!("key_headers[{i}]"),
                    format!("`{h}` is not a header name"),
                ));
            }
        }
        Ok(())
    }
}

impl Validate for SteeringPolicy {
    fn validate(&self) -> Result<(), ValidationError> {
        for (field, list) in [
            ("sites", &self.sites),
            ("fallback_lines", &self.fallback_lines),
            ("fallback_sites", &self.fallback_sites),
        ] {
            check_max_items(field, list, MAX_STEERING_ENTRIES)?;
            for (i, s) in list.iter().enumerate() {
                check_id(&format!("{field}[{i}]"), s)?;
            }
            check_unique(field, list)?;
        }
        if self.site_weights.len() > MAX_STEERING_ENTRIES {
            return Err(ValidationError::new(
                "site_weights",
                format!("at most {MAX_STEERING_ENTRIES} sites"),
            ));
        }
        for (site, w) in &self.site_weights {
            check_id("site_weights", site)?;
            if *w > 10_000 {
                return Err(ValidationError::new(
                    format!("site_weights.{site}"),
                    "must be from 0 to 10000",
                ));
            }
        }
        if self.answer_count == 0 || self.answer_count > 16 {
            return Err(ValidationError::new("answer_count", "must be from 1 to 16"));
        }
        if self.ttl == 0 || self.ttl > 86_400 {
            return Err(ValidationError::new(
                "ttl",
                "must be from 1 to 86400 seconds",
            ));
        }
        if self.max_load_percent == 0 || self.max_load_percent > 100 {
            return Err(ValidationError::new(
                "max_load_percent",
                "must be from 1 to 100",
            ));
        }
        Ok(())
    }
}

impl Validate for Service {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("tenant", &self.tenant)?;
        if self.hostnames.is_empty() {
            return Err(ValidationError::new(
                "hostnames",
                "a service needs at least one hostname",
            ));
        }
        check_max_items("hostnames", &self.hostnames, MAX_HOSTNAMES)?;
        for (i, h) in self.hostnames.iter().enumerate() {
            check_hostname(&format!("hostnames[{i}]"), h)?;
        }
        check_unique("hostnames", &self.hostnames)?;
        check_max_items("origins", &self.origins, MAX_ORIGINS)?;
        check_max_items("cache_rules", &self.cache_rules, MAX_CACHE_RULES)?;
        if self.origins.is_empty() {
            return Err(ValidationError::new(
                "origins",
                "a service needs at least one origin",
            ));
        }
        if self.origins.iter().all(|o| o.backup) {
            return Err(ValidationError::new(
                "origins",
                "at least one origin must not be a backup",
            ));
        }
        for (i, o) in self.origins.iter().enumerate() {
            o.validate()
                .map_err(|e| e.within(format!("origins[{i}]")))?;
        }
        self.defence.validate().map_err(|e| e.within("defence"))?;
        if self.bucket_origin().is_some() && self.origins.len() > 1 {
            return Err(ValidationError::new(
                "origins",
                "a bucket origin must be the service's only origin",
            ));
        }
        for (i, r) in self.cache_rules.iter().enumerate() {
            r.validate()
                .map_err(|e| e.within(format!("cache_rules[{i}]")))?;
        }
        self.steering.validate().map_err(|e| e.within("steering"))?;
        check_max_items(
            "targeted_cache_control",
            &self.targeted_cache_control,
            MAX_TARGETED_CACHE_CONTROL,
        )?;
        for (i, name) in self.targeted_cache_control.iter().enumerate() {
            check_targeted_field(&format!("targeted_cache_control[{i}]"), name)?;
        }
        check_unique("targeted_cache_control", &self.targeted_cache_control)?;
        if let Some(tls) = &self.tls {
            if tls.cert_pem.len() + tls.key_pem.len() > 256 * 1024 {
                return Err(ValidationError::new(
                    "tls",
                    "a certificate chain and key of at most 256 KiB",
                ));
            }
            if !tls.cert_pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ValidationError::new(
                    "tls.cert_pem",
                    "must be a PEM certificate chain",
                ));
            }
            if !tls.key_pem.contains("PRIVATE KEY-----") {
                return Err(ValidationError::new(
                    "tls.key_pem",
                    "must be a PEM private key",
                ));
            }
        }
        if let Some(ca) = &self.origin_ca_pem {
            if ca.len() > 256 * 1024 {
                return Err(ValidationError::new(
                    "origin_ca_pem",
                    "CA certificates of at most 256 KiB",
                ));
            }
            if !ca.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ValidationError::new(
                    "origin_ca_pem",
                    "must be PEM CA certificates (-----BEGIN CERTIFICATE-----)",
                ));
            }
        }
        Ok(())
    }
}

/// A targeted cache-control field name: a lower-case header name (letters, digits, `-`,
/// at most 64 bytes) that is not `cache-control` itself.
fn check_targeted_field(field: &str, name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(ValidationError::new(
            field,
            format!(
                "`{name}` is not a lower-case header name (letters, digits and `-`, at most 64), e.g. `cdn-cache-control`"
            ),
        ));
    }
    if name == "cache-control" {
        return Err(ValidationError::new(
            field,
            "`cache-control` is always the last resort; list only targeted fields such as `cdn-cache-control`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            id: "demo".into(),
            tenant: "demo".into(),
            hostnames: vec!["www.demo.example".into()],
            origins: vec![Origin {
                address: "127.0.0.1:7900".into(),
                weight: 1,
                backup: false,
                tls: false,
                host_header: None,
                tls_skip_verify: false,
            }],
            cache_rules: vec![],
            steering: SteeringPolicy::default(),
            tls: None,
            targeted_cache_control: default_targeted_cache_control(),
            forward_targeted_cache_control: false,
            origin_ca_pem: None,
            defence: Default::default(),
        }
    }

    #[test]
    fn a_bucket_origin_is_a_valid_bucket_name_and_the_only_origin() {
        let mut s = service();
        s.origins[0].address = "bucket:site-assets".into();
        assert!(s.validate().is_ok());
        assert_eq!(s.bucket_origin(), Some("site-assets"));
        for bad in [
            "bucket:",
            "bucket:ab",
            "bucket:Upper",
            "bucket:a..b",
            "bucket:-a1",
            "bucket:a/b",
        ] {
            let mut s = service();
            s.origins[0].address = bad.into();
            assert_eq!(
                s.validate().expect_err(bad).field,
                "origins[0].address",
                "{bad}"
            );
        }
        let mut two = s.clone();
        two.origins.push(service().origins[0].clone());
        assert_eq!(two.validate().expect_err("two").field, "origins");
        let mut tls = s.clone();
        tls.origins[0].tls = true;
        assert_eq!(tls.validate().expect_err("tls").field, "origins[0].tls");
        let mut host = s;
        host.origins[0].host_header = Some("x.example".into());
        assert_eq!(
            host.validate().expect_err("host").field,
            "origins[0].host_header"
        );
    }

    #[test]
    fn targeted_cache_control_chain() {
        let json = r#"{"id":"demo","tenant":"demo","hostnames":["a.example"],
            "origins":[{"address":"127.0.0.1:1"}]}"#;
        let s: Service = serde_json::from_str(json).expect("old JSON still parses");
        assert_eq!(s.targeted_cache_control, default_targeted_cache_control());
        assert!(!s.forward_targeted_cache_control);
        let mut s = service();
        s.targeted_cache_control = vec![];
        assert!(s.validate().is_ok());
        for bad in ["CDN-Cache-Control", "a b", "", "cache-control", "x:y"] {
            let mut s = service();
            s.targeted_cache_control = vec![bad.to_owned()];
            assert_eq!(
                s.validate().expect_err(bad).field,
                "targeted_cache_control[0]",
                "{bad}"
            );
        }
        let mut s = service();
        s.targeted_cache_control = (0..5).map(|i| format!("x{i}-cache-control")).collect();
        assert_eq!(
            s.validate().expect_err("five").field,
            "targeted_cache_control"
        );
        let mut s = service();
        s.targeted_cache_control = vec!["cdn-cache-control".into(), "cdn-cache-control".into()];
        assert!(s.validate().is_err());
    }

    #[test]
    fn origin_tls_settings_are_checked() {
        let mut s = service();
        s.origins[0].tls_skip_verify = true;
        assert_eq!(
            s.validate().expect_err("skip without tls").field,
            "origins[0].tls_skip_verify"
        );
        s.origins[0].tls = true;
        assert!(s.validate().is_ok());
        let mut s = service();
        s.origin_ca_pem = Some("not a certificate".into());
        assert_eq!(s.validate().expect_err("not PEM").field, "origin_ca_pem");
        s.origin_ca_pem = Some(format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            "A".repeat(300 * 1024)
        ));
        assert_eq!(s.validate().expect_err("too big").field, "origin_ca_pem");
        s.origin_ca_pem =
            Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn errors_name_nested_fields() {
        assert!(service().validate().is_ok());
        let mut s = service();
        s.origins[0].weight = 0;
        assert_eq!(
            s.validate().expect_err("must be refused").field,
            "origins[0].weight"
        );
        let mut s = service();
        s.steering.answer_count = 0;
        assert_eq!(
            s.validate().expect_err("must be refused").field,
            "steering.answer_count"
        );
        let mut s = service();
        s.hostnames.push("Bad_Host".into());
        assert_eq!(
            s.validate().expect_err("must be refused").field,
            "hostnames[1]"
        );
        let mut s = service();
        s.origins[0].address = "nohost".into();
        assert_eq!(
            s.validate().expect_err("must be refused").field,
            "origins[0].address"
        );
    }

    #[test]
    fn hostnames() {
        for ok in ["a.b", "*.demo.example", "x-1.example", "origin.example.com"] {
            assert!(check_hostname("h", ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", "-a.b", "a b", "*.", "A.b"] {
            assert!(check_hostname("h", bad).is_err(), "{bad}");
        }
    }
}
