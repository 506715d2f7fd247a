//! What the edge refuses to do on a tenant's behalf: connect to an origin address the
//! operator's [`OriginPolicy`] does not allow (checked in the origin connector, after name
//! resolution and before every new connection, so DNS rebinding cannot pass and pooled
//! connections were all checked), and serve a request that has already been through this
//! platform (a loop through `Via`, answered 508).
//!
//! Both read a [`Guard`] compiled once per snapshot ([`Guard::build`]).

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use lingjing_model::NodeRole;
use lingjing_model::origin_policy::{CompiledOriginPolicy, OriginPolicy, OriginRefused};
use lingjing_model::snapshot::EdgeSnapshot;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::net::TcpStream;

use crate::body::Body;
use crate::node::Edge;

/// The request header a child edge adds to its fetches from its parent tier, naming
/// itself (its node id). It is removed from every other upstream request (see
/// [`mark_parent_fetch`]), so it never reaches an origin and cannot come back through one.
pub const PARENT_FETCH: HeaderName = HeaderName::from_static("lingjing-parent-fetch");

/// The pseudonym a node writes in `Via` (`1.1 lingjing-<node>`).
pub fn pseudonym(node_id: &str) -> String {
    format!("lingjing-{node_id}")
}

/// What the guard knows from one snapshot.
#[derive(Debug, Default)]
pub struct Guard {
    /// The operator's origin policy, as the snapshot states it.
    pub policy: OriginPolicy,
    /// `policy`, ready to check addresses.
    pub origins: CompiledOriginPolicy,
    /// The `Via` pseudonyms of this platform's nodes (this node's included).
    pseudonyms: HashSet<String>,
    /// This node's own pseudonym.
    own: String,
    /// Whether this node is in the parent tier (children fetch from it).
    is_parent: bool,
}

impl Guard {
    /// The guard of node `node_id` before any snapshot: only public origins.
    pub fn empty(node_id: &str) -> Guard {
        let own = pseudonym(node_id);
        Guard {
            policy: OriginPolicy::default(),
            origins: OriginPolicy::default().compile(),
            pseudonyms: HashSet::from([own.clone()]),
            own,
            is_parent: false,
        }
    }

    /// Compiles `snapshot` for node `node_id`.
    pub fn build(snapshot: &EdgeSnapshot, node_id: &str) -> Guard {
        let mut guard = Guard::empty(node_id);
        guard.origins = snapshot.origin_policy.compile();
        guard.policy = snapshot.origin_policy.clone();
        guard
            .pseudonyms
            .extend(snapshot.nodes.iter().map(|n| pseudonym(&n.node.id)));
        guard.is_parent = snapshot
            .nodes
            .iter()
            .any(|n| n.node.id == node_id && n.node.roles.contains(&NodeRole::Parent));
        guard
    }

    /// Whether a request with `headers` has already been through this platform and must
    /// not be fetched again: `Some(why)` for a loop.
    ///
    /// A request carrying one of this platform's `Via` pseudonyms is a loop, except the
    /// one legitimate case: a child edge filling from its parent. Telling the two apart:
    /// the child marks that fetch with [`PARENT_FETCH`] (its node id), and the edge removes
    /// that header from every request it sends anywhere else, so a request that went out
    /// to an origin and came back never carries it. A parent therefore accepts our `Via`
    /// only when the request is so marked, names exactly one node of ours (the child that
    /// marked it, which is not this node) and this node is in the parent tier.
    ///
    /// The mark is not a secret: a client could send it. That buys nothing: it lets the
    /// first hop through once, and the next hop carries two of our pseudonyms (or this
    /// node's own) and is refused, so no loop outlives two hops. (Checking the client
    /// address against the snapshot's node addresses instead would break behind NAT and
    /// on single-host deployments where every node and origin shares 127.0.0.1.)
    pub fn loop_reason(&self, headers: &HeaderMap) -> Option<String> {
        let ours: Vec<&str> = headers
            .get_all(header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.split_whitespace().nth(1))
            .filter(|by| self.pseudonyms.contains(*by))
            .collect();
        let first = *ours.first()?;
        if ours.contains(&self.own.as_str()) {
            return Some(format!(
                "this request already passed through this node ({})",
                self.own
            ));
        }
        let marked_by = headers
            .get(&PARENT_FETCH)
            .and_then(|v| v.to_str().ok())
            .map(pseudonym);
        let parent_fetch = self.is_parent && ours.len() == 1 && marked_by.as_deref() == Some(first);
        if parent_fetch {
            None
        } else {
            Some(format!(
                "this request already passed through this platform (Via: {})",
                ours.join(", ")
            ))
        }
    }
}

/// Sets or removes the [`PARENT_FETCH`] mark on an upstream request's `headers`: present
/// (naming `node_id`) only on a fetch from the parent tier.
pub fn mark_parent_fetch(headers: &mut HeaderMap, to_parent: bool, node_id: &str) {
    headers.remove(&PARENT_FETCH);
    if to_parent && let Ok(v) = HeaderValue::from_str(node_id) {
        headers.insert(PARENT_FETCH, v);
    }
}

/// The guard's counters.
#[derive(Clone, Default)]
pub struct GuardMetrics {
    /// Connections to origin addresses the policy refused.
    pub origin_refused: Counter,
    /// Requests answered 508 Loop Detected.
    pub loops: Counter,
}

impl GuardMetrics {
    pub fn register(registry: &mut Registry) -> GuardMetrics {
        let m = GuardMetrics::default();
        registry.register(
            "origin_refused",
            "Origin addresses refused at connect time (non-public or platform addresses)",
            m.origin_refused.clone(),
        );
        registry.register(
            "loops",
            "Requests refused with 508 because they already passed through this platform",
            m.loops.clone(),
        );
        m
    }
}

/// The hook at the top of the request lifecycle: a 508 for a request that loops.
pub fn refuse_loop(edge: &Edge, headers: &HeaderMap, client: SocketAddr) -> Option<Response<Body>> {
    let why = edge.guard.load().loop_reason(headers)?;
    edge.guard_metrics.loops.inc();
    tracing::warn!(node = %edge.node_id, %client, reason = %why, "request loop refused (508)");
    let mut res = Response::new(crate::body::full(format!(
        "loop detected: {why}; a service's origin must not point back at the platform's edges\n"
    )));
    *res.status_mut() = StatusCode::LOOP_DETECTED;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        HeaderName::from_static("cache-status"),
        edge.cache_status("fwd=request; detail=loop"),
    );
    Some(res)
}

/// Every resolved address of an origin was refused by the policy.
#[derive(Debug, thiserror::Error)]
#[error(
    "origin `{host}` resolves only to addresses the platform does not connect to (non-public or platform addresses): {reasons}"
)]
pub struct OriginAddressRefused {
    pub host: String,
    pub reasons: String,
}

/// The connector to tenants' origins: resolves the host, drops every address the current
/// snapshot's policy refuses, and connects to the first allowed address that answers.
#[derive(Clone)]
pub struct OriginConnector {
    guard: Arc<ArcSwap<Guard>>,
    refused: Counter,
    connect_timeout: std::time::Duration,
}

impl OriginConnector {
    pub fn new(
        guard: Arc<ArcSwap<Guard>>,
        refused: Counter,
        connect_timeout: std::time::Duration,
    ) -> OriginConnector {
        OriginConnector {
            guard,
            refused,
            connect_timeout,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for OriginConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await })
    }
}

impl OriginConnector {
    async fn connect(self, uri: Uri) -> Result<TokioIo<TcpStream>, BoxError> {
        let host = uri
            .host()
            .ok_or_else(|| format!("origin URI `{uri}` has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot resolve origin `{host}`: {e}"))?
            .collect();
        // The policy of the snapshot being served now, whatever the pooled client saw.
        let guard = self.guard.load();
        let mut refused: Vec<OriginRefused> = Vec::new();
        let mut allowed = Vec::new();
        for addr in resolved {
            match guard.origins.check(addr) {
                Ok(()) => allowed.push(addr),
                Err(why) => refused.push(why),
            }
        }
        drop(guard);
        if !refused.is_empty() {
            self.refused.inc_by(refused.len() as u64);
            tracing::warn!(
                origin = %host,
                refused = %refused.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                "origin address refused by the origin policy"
            );
        }
        if allowed.is_empty() {
            if refused.is_empty() {
                return Err(format!("origin `{host}` resolves to no address").into());
            }
            return Err(Box::new(OriginAddressRefused {
                host: format!("{host}:{port}"),
                reasons: refused
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }));
        }
        let mut failures = Vec::new();
        for addr in allowed {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(TokioIo::new(stream));
                }
                Ok(Err(e)) => failures.push(format!("{addr}: {e}")),
                Err(_) => failures.push(format!("{addr}: connect timed out")),
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("cannot connect to origin `{host}`: {}", failures.join("; ")),
        )
        .into())
    }
}

/// The [`OriginAddressRefused`] somewhere in `err`'s sources, if the policy refused it.
pub fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a OriginAddressRefused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<OriginAddressRefused>() {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingjing_model::snapshot::NodeInfo;
    use lingjing_model::{Node, NodePorts};

    fn node(id: &str, role: NodeRole) -> NodeInfo {
        NodeInfo {
            node: Node {
                id: id.to_owned(),
                site: "s".to_owned(),
                roles: vec![role],
                ports: NodePorts::default(),
                capacity_mbps: 0,
                drained: false,
            },
            addresses: Vec::new(),
            healthy: true,
            load_percent: 0,
        }
    }

    fn snap() -> EdgeSnapshot {
        EdgeSnapshot {
            nodes: vec![
                node("child", NodeRole::Edge),
                node("parent", NodeRole::Parent),
            ],
            ..EdgeSnapshot::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn foreign_via_is_no_loop() {
        let g = Guard::build(&snap(), "child");
        assert!(g.loop_reason(&headers(&[])).is_none());
        assert!(
            g.loop_reason(&headers(&[(
                "via",
                "1.1 proxy.example, 1.0 lingjing-other"
            )]))
            .is_none()
        );
    }

    #[test]
    fn own_via_is_a_loop_even_when_marked() {
        for id in ["child", "parent"] {
            let g = Guard::build(&snap(), id);
            let via = format!("1.1 {}", pseudonym(id));
            assert!(
                g.loop_reason(&headers(&[("via", &via), ("lingjing-parent-fetch", id)]))
                    .is_some()
            );
        }
    }

    #[test]
    fn a_parent_accepts_one_marked_child_hop_only() {
        let parent = Guard::build(&snap(), "parent");
        let child_via = ("via", "1.1 lingjing-child");
        assert!(
            parent
                .loop_reason(&headers(&[child_via, ("lingjing-parent-fetch", "child")]))
                .is_none()
        );
        // Unmarked, or marked by someone else: a loop through an origin.
        assert!(parent.loop_reason(&headers(&[child_via])).is_some());
        assert!(
            parent
                .loop_reason(&headers(&[child_via, ("lingjing-parent-fetch", "x")]))
                .is_some()
        );
        // Two of our hops: at most one is a child.
        assert!(
            parent
                .loop_reason(&headers(&[
                    ("via", "1.1 lingjing-child, 1.1 lingjing-child"),
                    ("lingjing-parent-fetch", "child")
                ]))
                .is_some()
        );
        // A node that is not a parent never takes our Via.
        let child = Guard::build(&snap(), "child");
        assert!(
            child
                .loop_reason(&headers(&[
                    ("via", "1.1 lingjing-parent"),
                    ("lingjing-parent-fetch", "parent")
                ]))
                .is_some()
        );
    }

    #[test]
    fn the_mark_is_set_only_towards_parents() {
        let mut h = headers(&[("lingjing-parent-fetch", "forged")]);
        mark_parent_fetch(&mut h, false, "child");
        assert!(h.get(&PARENT_FETCH).is_none());
        mark_parent_fetch(&mut h, true, "child");
        assert_eq!(h.get(&PARENT_FETCH).expect("mark"), "child");
    }
}
