//! The routing table an edge node serves from, compiled from one edge snapshot: which
//! service a Host belongs to, where its origins and parent caches are. Swapped atomically
//! when a new snapshot is applied, so in-flight requests finish on the table they started
//! with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use lingjing_model::snapshot::{EdgeSnapshot, NodeInfo};
use lingjing_model::{NodeRole, Origin, Service};

/// One service as the proxy needs it.
#[derive(Debug)]
pub struct ServiceRoute {
    pub service: Service,
    /// Parent-cache nodes to fill from (empty: go to the origins directly).
    pub parents: Vec<ParentAddr>,
    /// The service's traffic counters (kept across snapshots).
    pub usage: Arc<crate::usage::ServiceUsage>,
    /// The service's defence counters (kept across snapshots).
    pub defence: Arc<crate::defence::ServiceWatch>,
    /// The service's targeted cache-control fields (RFC 9213), in precedence order.
    pub targeted: Arc<[http::HeaderName]>,
    /// The service's own CA certificates for its TLS origins.
    pub origin_ca: Option<crate::upstream::tls::Pem>,
    /// The service's certificate, which its parents must present (services with one fill
    /// from their parents over TLS).
    pub parent_pin: Option<crate::upstream::tls::Pem>,
    /// The service's request and sent-byte counters.
    pub counters: crate::metrics::ServiceCounters,
    /// For a service served from a bucket: how to read it, and the S3 gateways to read it
    /// from (None: the service has no bucket origin, or the snapshot gave no credential).
    pub bucket: Option<BucketRoute>,
    /// The artefact relay's synthetic service (`crate::relay`): who it serves and the
    /// credential it fetches with; `None` for a tenant's service.
    pub relay: Option<Arc<crate::relay::RelayAccess>>,
}

/// How a service served from a bucket reaches it.
#[derive(Debug, Clone)]
pub struct BucketRoute {
    pub access: Arc<crate::upstream::bucket::BucketAccess>,
    pub gateways: Arc<[SocketAddr]>,
}

impl ServiceRoute {
    pub fn primaries(&self) -> impl Iterator<Item = &Origin> {
        self.service.origins.iter().filter(|o| !o.backup)
    }

    pub fn backups(&self) -> impl Iterator<Item = &Origin> {
        self.service.origins.iter().filter(|o| o.backup)
    }
}

/// The service's targeted cache-control field names (validated by the control plane; a
/// name that is not a header name is skipped).
pub fn targeted_fields(service: &Service) -> Arc<[http::HeaderName]> {
    service
        .targeted_cache_control
        .iter()
        .filter_map(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

/// Where a parent-cache node listens: plain HTTP, and HTTPS (used for services that have a
/// certificate, which the parent then presents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentAddr {
    pub http: SocketAddr,
    pub https: SocketAddr,
}

/// Host -> service, for one snapshot version.
#[derive(Debug, Default)]
pub struct Routes {
    pub version: u64,
    exact: HashMap<String, Arc<ServiceRoute>>,
    /// `*.example.com` entries, stored as `.example.com`.
    wildcard: Vec<(String, Arc<ServiceRoute>)>,
}

impl Routes {
    /// Compiles `snapshot` for the node `node_id` (whose site decides its parent tier);
    /// `credential`: the node's own, which the artefact relay fetches with.
    pub fn build(
        version: u64,
        snapshot: &EdgeSnapshot,
        node_id: &str,
        credential: Option<&str>,
        usage: &crate::usage::UsageRegistry,
        metrics: &crate::metrics::Metrics,
        defence: &crate::defence::Defence,
    ) -> Routes {
        let parents = parent_addresses(snapshot, node_id);
        let gateways: Arc<[SocketAddr]> = snapshot.s3_gateways.iter().copied().collect();
        let buckets: HashMap<&str, BucketRoute> = snapshot
            .bucket_origins
            .iter()
            .map(|b| {
                let access = crate::upstream::bucket::BucketAccess {
                    bucket: b.bucket.clone(),
                    access_key: b.access_key.clone(),
                    secret: b.secret.clone(),
                };
                let route = BucketRoute {
                    access: Arc::new(access),
                    gateways: gateways.clone(),
                };
                (b.service.as_str(), route)
            })
            .collect();
        let mut routes = Routes {
            version,
            ..Routes::default()
        };
        for service in &snapshot.services {
            let route = Arc::new(ServiceRoute {
                service: service.clone(),
                parents: parents.clone(),
                usage: usage.counters(&service.id),
                defence: defence.watch(&service.id),
                targeted: targeted_fields(service),
                origin_ca: service
                    .origin_ca_pem
                    .as_deref()
                    .map(crate::upstream::tls::Pem::new),
                parent_pin: service
                    .tls
                    .as_ref()
                    .map(|c| crate::upstream::tls::Pem::new(&c.cert_pem)),
                counters: metrics.service_counters(&service.id),
                bucket: service
                    .bucket_origin()
                    .and_then(|_| buckets.get(service.id.as_str()).cloned()),
                relay: None,
            });
            for host in &service.hostnames {
                match host.strip_prefix('*') {
                    Some(suffix) => routes.wildcard.push((suffix.to_owned(), route.clone())),
                    None => {
                        routes.exact.insert(host.clone(), route.clone());
                    }
                }
            }
        }
        // The artefact relay, last: its platform hostname is no tenant's.
        if let Some(relay) = &snapshot.artifact_relay {
            let (service, access) = crate::relay::route(relay, credential);
            let host = service.hostnames[0].clone();
            let route = Arc::new(ServiceRoute {
                parents: parents.clone(),
                // Not registered: the platform's own traffic is not metered for billing.
                usage: Arc::default(),
                defence: defence.watch(&service.id),
                targeted: targeted_fields(&service),
                origin_ca: service
                    .origin_ca_pem
                    .as_deref()
                    .map(crate::upstream::tls::Pem::new),
                parent_pin: None,
                counters: metrics.service_counters(&service.id),
                bucket: None,
                relay: Some(Arc::new(access)),
                service,
            });
            routes.exact.insert(host, route);
        }
        // Longest suffix first, so the most specific wildcard wins.
        routes
            .wildcard
            .sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        routes
    }

    /// The service serving `host` (a Host header or SNI name; port and case ignored).
    pub fn lookup(&self, host: &str) -> Option<&Arc<ServiceRoute>> {
        let host = strip_port(host).trim_end_matches('.');
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        if let Some(r) = self.exact.get(host) {
            return Some(r);
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| host.ends_with(suffix.as_str()) && host.len() > suffix.len())
            .map(|(_, r)| r)
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<ServiceRoute>> {
        self.exact
            .values()
            .chain(self.wildcard.iter().map(|(_, r)| r))
    }
}

/// `host:port` or `[v6]:port` without the port.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

/// The addresses of the healthy parent-cache nodes of this node's site's parent.
fn parent_addresses(snapshot: &EdgeSnapshot, node_id: &str) -> Vec<ParentAddr> {
    let Some(me) = snapshot.nodes.iter().find(|n| n.node.id == node_id) else {
        return Vec::new();
    };
    if me.node.roles.contains(&NodeRole::Parent) {
        return Vec::new();
    }
    let Some(parent_site) = snapshot
        .sites
        .iter()
        .find(|s| s.id == me.node.site)
        .and_then(|s| s.parent.clone())
    else {
        return Vec::new();
    };
    snapshot
        .nodes
        .iter()
        .filter(|n: &&NodeInfo| {
            n.node.site == parent_site
                && n.node.roles.contains(&NodeRole::Parent)
                && n.healthy
                && !n.node.drained
        })
        .flat_map(|n| {
            n.addresses.iter().map(|a| ParentAddr {
                http: SocketAddr::new(*a, n.node.ports.http),
                https: SocketAddr::new(*a, n.node.ports.https),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("a.example"), "a.example");
        assert_eq!(strip_port("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(strip_port("2001:db8::1"), "2001:db8::1");
    }
}
