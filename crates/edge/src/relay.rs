//! The artefact relay: the platform's nodes fetch artefacts (edge AI models,
//! `GET /v1/artifacts/sha256/{digest}`) through their site's edge and its parent tier, so
//! that an artefact leaves the control plane once per region (request collapsing, then
//! the cache: artefacts are immutable and say `public, max-age=31536000, immutable`). The
//! node checks digest and size itself; the relay is a cache, never trusted.
//!
//! When the edge snapshot has an [`ArtifactRelay`], the routing table gets a synthetic
//! service for its hostname ([`route`]): tenant [`TENANT`], id [`SERVICE_ID`] (not a
//! valid slug, so no tenant's service shares its metrics or cache namespace), one origin,
//! the control plane's API, and the same parent tier as every service of this node's
//! site. What the proxy does with it differs from a tenant's service in four ways:
//!
//! * only the platform's nodes are answered: a client address not in
//!   [`ArtifactRelay::clients`] (nor a child edge of this platform filling from this
//!   parent) gets 403, and nothing is fetched ([`check`]);
//! * only `GET` and `HEAD` of `/v1/artifacts/sha256/{64 lower-case hex}`, no query (405,
//!   404);
//! * the client's `Authorization` is never sent anywhere (`proxy::upstream_headers`
//!   removes it for the relay, for parents too); the origin tier carries this edge's own
//!   node credential ([`RelayAccess::authorization`], set by `upstream::targets`), and a
//!   parent adds its own when it goes to the control plane. An edge without a credential
//!   (standalone) answers 503 and says why;
//! * the control plane is a platform endpoint, which the origin policy refuses to tenants:
//!   the relay's origin is reached through the trusted pools (as parents and the S3
//!   gateways are), its certificate checked against the system's roots plus
//!   [`ArtifactRelay::upstream_ca`] (the name checked is the upstream's host, an IP
//!   address included).
//!
//! Nothing of it is metered for billing (its usage counters are not registered).
//! Artefacts larger than `proxy::MAX_OBJECT_BYTES` are not stored whole: they stream to
//! the client that asked and are kept as slices (`crate::slice`), and concurrent requests
//! for one such artefact are not collapsed.

use std::collections::HashSet;
use std::net::IpAddr;

use http::header::HeaderValue;
use http::{Method, StatusCode, Uri};
use lingjing_model::snapshot::ArtifactRelay;
use lingjing_model::{Origin, Service, SteeringPolicy};

/// The id of the relay's synthetic service: metrics and the cache namespace are kept
/// under it. A dot is not allowed in a service id, so no tenant's service can have it.
pub const SERVICE_ID: &str = "lingjing.artifacts";

/// The tenant the relay's service belongs to.
pub const TENANT: &str = "platform";

/// The path before an artefact's digest.
pub const PATH_PREFIX: &str = "/v1/artifacts/sha256/";

/// What the proxy needs to serve the relay, besides its service.
#[derive(Debug)]
pub struct RelayAccess {
    /// `Bearer <this edge's node credential>` (marked sensitive), sent with every request
    /// to the relay's upstream; `None`: no credential.
    pub authorization: Option<HeaderValue>,
    /// The addresses of the platform's nodes, the only clients answered.
    pub clients: HashSet<IpAddr>,
    /// Why the relay cannot fetch anything (no credential, an upstream it cannot use):
    /// its requests are answered 503 with this.
    pub unavailable: Option<String>,
}

/// The relay's synthetic service and its access, for `relay` as the snapshot states it;
/// `credential`: this edge's node credential.
pub fn route(relay: &ArtifactRelay, credential: Option<&str>) -> (Service, RelayAccess) {
    let mut unavailable = None;
    let authorization = match credential {
        None => {
            unavailable = Some(
                "this edge has no node credential (it runs without a control plane), so it \
                 cannot fetch artefacts for the platform's nodes"
                    .to_owned(),
            );
            None
        }
        Some(c) => match HeaderValue::from_str(&format!("Bearer {c}")) {
            Ok(mut v) => {
                v.set_sensitive(true);
                Some(v)
            }
            Err(_) => {
                unavailable = Some(
                    "this edge's node credential cannot be sent in a header, so it cannot \
                     fetch artefacts"
                        .to_owned(),
                );
                None
            }
        },
    };
    let origins = match upstream_origin(&relay.upstream) {
        Ok(o) => vec![o],
        Err(why) => {
            tracing::error!(upstream = %relay.upstream, error = %why, "artefact relay unusable");
            unavailable.get_or_insert(format!(
                "the relay's upstream `{}` cannot be used: {why}",
                relay.upstream
            ));
            Vec::new()
        }
    };
    let service = Service {
        id: SERVICE_ID.to_owned(),
        tenant: TENANT.to_owned(),
        hostnames: vec![relay.hostname.trim_end_matches('.').to_ascii_lowercase()],
        origins,
        cache_rules: Vec::new(),
        steering: SteeringPolicy::default(),
        tls: None,
        targeted_cache_control: lingjing_model::service::default_targeted_cache_control(),
        forward_targeted_cache_control: false,
        origin_ca_pem: relay.upstream_ca.clone(),
        defence: Default::default(),
    };
    let access = RelayAccess {
        authorization,
        clients: relay.clients.iter().map(|a| a.to_canonical()).collect(),
        unavailable,
    };
    (service, access)
}

/// The relay's one origin: the upstream URL's host and port (TLS for `https`), sent with
/// its Host.
fn upstream_origin(upstream: &str) -> Result<Origin, String> {
    let uri: Uri = upstream.parse().map_err(|e| format!("not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the scheme must be http or https".to_owned()),
    };
    let authority = uri.authority().ok_or_else(|| "no host in it".to_owned())?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err("a base URL with a path is not supported".to_owned());
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    // `host()` keeps an IPv6 address's brackets.
    let address = format!("{}:{port}", authority.host());
    Ok(Origin {
        address,
        weight: 1,
        backup: false,
        tls,
        tls_skip_verify: false,
        host_header: Some(authority.as_str().to_owned()),
    })
}

/// Why the relay refuses a request, before anything is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub text: String,
}

/// Whether the relay answers a `method` request for `path_and_query` from `client`;
/// `peer`: a child edge of this platform filling from this node (`proxy`'s `internal`),
/// which may relay for its own nodes. `Some`: refused so.
pub fn check(
    access: &RelayAccess,
    method: &Method,
    path: &str,
    query: Option<&str>,
    client: IpAddr,
    peer: bool,
) -> Option<Refusal> {
    let refuse = |status, text: &str| {
        Some(Refusal {
            status,
            text: format!("{text}\n"),
        })
    };
    if !peer && !access.clients.contains(&client.to_canonical()) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the artefact relay serves only the platform's nodes",
        );
    }
    if *method != Method::GET && *method != Method::HEAD {
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "the artefact relay serves only GET and HEAD",
        );
    }
    let digest_ok = path
        .strip_prefix(PATH_PREFIX)
        .is_some_and(|d| lingjing_model::artifact::check_digest("digest", d).is_ok());
    if !digest_ok || query.is_some() {
        return refuse(
            StatusCode::NOT_FOUND,
            "the artefact relay serves only /v1/artifacts/sha256/{64 lower-case hex digits}, without a query",
        );
    }
    if let Some(why) = &access.unavailable {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, why);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(upstream: &str) -> ArtifactRelay {
        ArtifactRelay {
            hostname: "Artifacts.CDN.lingjing.test.".to_owned(),
            upstream: upstream.to_owned(),
            upstream_ca: None,
            clients: vec!["127.0.0.1".parse().expect("ip")],
        }
    }

    #[test]
    fn the_upstream_becomes_one_origin() {
        let (s, a) = route(&relay("https://127.0.0.1:7700"), Some("tok"));
        assert_eq!(s.hostnames, ["artifacts.cdn.lingjing.test"]);
        assert_eq!(s.tenant, TENANT);
        let o = &s.origins[0];
        assert_eq!(o.address, "127.0.0.1:7700");
        assert!(o.tls && !o.tls_skip_verify);
        assert_eq!(o.host_header.as_deref(), Some("127.0.0.1:7700"));
        assert!(a.unavailable.is_none());
        let auth = a.authorization.expect("a credential");
        assert_eq!(auth, "Bearer tok");
        assert!(auth.is_sensitive());

        let (s, _) = route(&relay("http://[::1]:8080/"), Some("tok"));
        assert_eq!(s.origins[0].address, "[::1]:8080");
        assert!(!s.origins[0].tls);
        let (s, _) = route(&relay("https://cp.example"), Some("tok"));
        assert_eq!(s.origins[0].address, "cp.example:443");
        assert_eq!(s.origins[0].host_header.as_deref(), Some("cp.example"));
    }

    #[test]
    fn an_unusable_relay_says_why() {
        let (_, a) = route(&relay("https://127.0.0.1:7700"), None);
        assert!(a.unavailable.expect("why").contains("no node credential"));
        for bad in ["ftp://x", "127.0.0.1:7700", "https://cp.example/api"] {
            let (s, a) = route(&relay(bad), Some("tok"));
            assert!(s.origins.is_empty(), "{bad}");
            assert!(a.unavailable.is_some(), "{bad}");
        }
    }

    #[test]
    fn only_nodes_get_artefacts_by_digest() {
        let (_, a) = route(&relay("http://127.0.0.1:1"), Some("tok"));
        let digest = "0123456789abcdef".repeat(4);
        let path = format!("{PATH_PREFIX}{digest}");
        let node: IpAddr = "127.0.0.1".parse().expect("ip");
        let other: IpAddr = "127.0.0.2".parse().expect("ip");
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        let status = |m: Method, p: &str, q: Option<&str>, c: IpAddr, peer: bool| {
            check(&a, &m, p, q, c, peer).map(|r| r.status)
        };
        assert_eq!(status(Method::GET, &path, None, node, false), None);
        assert_eq!(status(Method::HEAD, &path, None, mapped, false), None);
        assert_eq!(
            status(Method::GET, &path, None, other, false),
            Some(StatusCode::FORBIDDEN)
        );
        // A child edge filling from this parent relays for its nodes.
        assert_eq!(status(Method::GET, &path, None, other, true), None);
        assert_eq!(
            status(Method::POST, &path, None, node, false),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        for bad in [
            "/".to_owned(),
            "/v1/artifacts".to_owned(),
            format!("{PATH_PREFIX}{}", digest.to_uppercase()),
            format!("{PATH_PREFIX}{}", &digest[1..]),
            format!("{path}/x"),
        ] {
            assert_eq!(
                status(Method::GET, &bad, None, node, false),
                Some(StatusCode::NOT_FOUND),
                "{bad}"
            );
        }
        assert_eq!(
            status(Method::GET, &path, Some("x=1"), node, false),
            Some(StatusCode::NOT_FOUND)
        );
        let (_, none) = route(&relay("http://127.0.0.1:1"), None);
        assert_eq!(
            check(&none, &Method::GET, &path, None, node, false).map(|r| r.status),
            Some(StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
