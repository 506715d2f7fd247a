//! What the edge refuses to do on a tenant's behalf: connect to an origin address the
//! operator's [`OriginPolicy`] does not allow (checked in the origin connector, after name
//! resolution and before every new connection, so DNS rebinding cannot pass and pooled
//! connections were all checked), and serve a request that has already been through this
//! platform (a loop, answered 508). Loops are recognised by this platform's `Via`
//! pseudonyms and by its RFC 8586 `CDN-Loop` entry ([`CDN_ID`]), which every upstream
//! request carries ([`append_cdn_loop`]): `Via` is often stripped or rewritten by other
//! CDNs, `CDN-Loop` is meant to survive them, so a loop edge -> other CDN -> edge is caught
//! too.
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

/// The RFC 8586 `CDN-Loop` request header.
pub const CDN_LOOP: HeaderName = HeaderName::from_static("cdn-loop");

/// The cdn-id this platform writes in `CDN-Loop` (RFC 8586 §2), with a `node` parameter
/// naming the node: `CDN-Loop: lingjing; node=edge-a`. Any entry with this cdn-id, with or
/// without parameters, is this platform's.
pub const CDN_ID: &str = "lingjing";

/// Node `node_id`'s `CDN-Loop` entry: `lingjing; node=<id>` (the id quoted when it is not
/// a token; the bare cdn-id when it cannot be written in a header at all).
pub fn cdn_info(node_id: &str) -> HeaderValue {
    let param = if !node_id.is_empty() && node_id.bytes().all(is_tchar) {
        node_id.to_owned()
    } else {
        let escaped: String = node_id
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    };
    HeaderValue::from_str(&format!("{CDN_ID}; node={param}"))
        .unwrap_or_else(|_| HeaderValue::from_static(CDN_ID))
}

/// Appends this node's entry (`info`, from [`cdn_info`]) to an upstream request's
/// `CDN-Loop`, after whatever the client and earlier CDNs wrote there (RFC 8586 §2).
pub fn append_cdn_loop(headers: &mut HeaderMap, info: &HeaderValue) {
    headers.append(CDN_LOOP, info.clone());
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Splits `s` at `sep` outside quoted strings (RFC 9110 §5.6.4), trimming each part.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(s[start..i].trim());
            start = i + c.len_utf8();
        }
    }
    parts.push(s[start..].trim());
    parts
}

/// A quoted-string's content, unescaped (a token as it is).
fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

/// This platform's entries in the request's `CDN-Loop` fields: for each, the node it names
/// (`None`: no `node` parameter). Other CDNs' entries are skipped.
fn our_cdn_loop_entries(headers: &HeaderMap) -> Vec<Option<String>> {
    headers
        .get_all(&CDN_LOOP)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| split_unquoted(v, ','))
        .filter_map(|info| {
            let mut parts = split_unquoted(info, ';').into_iter();
            let id = parts.next()?;
            if !id.eq_ignore_ascii_case(CDN_ID) {
                return None;
            }
            let node = parts.find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("node")
                    .then(|| unquote(value.trim()))
            });
            Some(node)
        })
        .collect()
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
    /// A request carrying one of this platform's `Via` pseudonyms, or this platform's
    /// entry in `CDN-Loop` ([`CDN_ID`]; another CDN on the way may have stripped `Via` but
    /// keeps `CDN-Loop`), is a loop, except the one legitimate case: a child edge filling
    /// from its parent. Telling the two apart: the child marks that fetch with
    /// [`PARENT_FETCH`] (its node id), and the edge removes that header from every request
    /// it sends anywhere else, so a request that went out to an origin and came back never
    /// carries it. A parent therefore accepts our `Via` and `CDN-Loop` only when the
    /// request is so marked, this node is in the parent tier, and each names at most one
    /// hop of ours: the child that marked it (a node of the snapshot, not this one).
    ///
    /// The mark is not a secret: a client could send it. That buys nothing: it lets the
    /// first hop through once, and the next hop carries two of our hops (or this node's
    /// own) and is refused, so no loop outlives two hops. (Checking the client address
    /// against the snapshot's node addresses instead would break behind NAT and on
    /// single-host deployments where every node and origin shares 127.0.0.1.)
    pub fn loop_reason(&self, headers: &HeaderMap) -> Option<String> {
        let via: Vec<&str> = headers
            .get_all(header::VIA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.split_whitespace().nth(1))
            .filter(|by| self.pseudonyms.contains(*by))
            .collect();
        let cdn = our_cdn_loop_entries(headers);
        if via.is_empty() && cdn.is_empty() {
            return None;
        }
        let own_cdn = cdn
            .iter()
            .any(|n| n.as_deref().is_some_and(|n| pseudonym(n) == self.own));
        let own = via.contains(&self.own.as_str()) || own_cdn;
        let marked = headers.get(&PARENT_FETCH).and_then(|v| v.to_str().ok());
        let parent_fetch = !own
            && self.is_parent
            && marked.is_some_and(|child| {
                let child_via = pseudonym(child);
                self.pseudonyms.contains(&child_via)
                    && via.len() <= 1
                    && via.iter().all(|v| *v == child_via)
                    && cdn.len() <= 1
                    && cdn.iter().all(|n| n.as_deref() == Some(child))
            });
        if parent_fetch {
            return None;
        }
        let mut seen = Vec::new();
        if !via.is_empty() {
            seen.push(format!("Via: {}", via.join(", ")));
        }
        if !cdn.is_empty() {
            let entries: Vec<String> = cdn
                .iter()
                .map(|n| match n {
                    Some(n) => format!("{CDN_ID}; node={n}"),
                    None => CDN_ID.to_owned(),
                })
                .collect();
            seen.push(format!("CDN-Loop: {}", entries.join(", ")));
        }
        if own {
            return Some(format!(
                "this request already passed through this node, {} ({})",
                self.own,
                seen.join("; ")
            ));
        }
        Some(format!(
            "this request already passed through this platform ({})",
            seen.join("; ")
        ))
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
    fn our_cdn_loop_entry_is_a_loop_whatever_via_says() {
        let g = Guard::build(&snap(), "child");
        for value in [
            "lingjing",
            "LingJing",
            "cloudflare, lingjing",
            "lingjing; node=parent",
            "lingjing; node=\"x, y\"",
            "lingjing; node=unknown-node",
        ] {
            assert!(
                g.loop_reason(&headers(&[("cdn-loop", value)])).is_some(),
                "{value}"
            );
        }
        // Split over several lines, with a quoted comma in another CDN's parameter.
        assert!(
            g.loop_reason(&headers(&[
                ("cdn-loop", "foo; v=\"a,lingjing\""),
                ("cdn-loop", "bar, lingjing; node=parent")
            ]))
            .is_some()
        );
        let why = g
            .loop_reason(&headers(&[("cdn-loop", "lingjing; node=child")]))
            .expect("a loop");
        assert!(why.contains("this node"), "{why}");
    }

    #[test]
    fn other_cdns_entries_are_no_loop() {
        let g = Guard::build(&snap(), "child");
        for value in [
            "cloudflare",
            "cloudflare, fastly; x=1",
            "lingjing.example.net",
            "not-lingjing; node=child",
            "foo; v=\"lingjing, x\"",
        ] {
            assert!(
                g.loop_reason(&headers(&[("cdn-loop", value)])).is_none(),
                "{value}"
            );
        }
    }

    #[test]
    fn a_parent_accepts_one_marked_child_hop_in_cdn_loop_too() {
        let parent = Guard::build(&snap(), "parent");
        let mark = ("lingjing-parent-fetch", "child");
        let via = ("via", "1.1 lingjing-child");
        let child_cdn = ("cdn-loop", "cloudflare, lingjing; node=child");
        assert!(
            parent
                .loop_reason(&headers(&[via, child_cdn, mark]))
                .is_none()
        );
        // Without Via (stripped on the way): still one child hop.
        assert!(parent.loop_reason(&headers(&[child_cdn, mark])).is_none());
        // Unmarked: a loop through an origin or another CDN.
        assert!(parent.loop_reason(&headers(&[via, child_cdn])).is_some());
        // Two of our hops, a hop without a node, another node's hop, or this node's own.
        for cdn in [
            "lingjing; node=child, lingjing; node=child",
            "lingjing",
            "lingjing; node=other",
            "lingjing; node=parent",
        ] {
            assert!(
                parent
                    .loop_reason(&headers(&[via, ("cdn-loop", cdn), mark]))
                    .is_some(),
                "{cdn}"
            );
        }
        // The mark must name a node of the snapshot.
        assert!(
            parent
                .loop_reason(&headers(&[
                    ("cdn-loop", "lingjing; node=stranger"),
                    ("lingjing-parent-fetch", "stranger")
                ]))
                .is_some()
        );
        // A node that is not a parent never takes our CDN-Loop.
        let child = Guard::build(&snap(), "child");
        assert!(
            child
                .loop_reason(&headers(&[
                    ("cdn-loop", "lingjing; node=parent"),
                    ("lingjing-parent-fetch", "parent")
                ]))
                .is_some()
        );
    }

    #[test]
    fn cdn_info_names_the_node_and_is_appended() {
        assert_eq!(cdn_info("edge-a"), "lingjing; node=edge-a");
        assert_eq!(cdn_info("a b\"c"), "lingjing; node=\"a b\\\"c\"");
        let mut h = headers(&[("cdn-loop", "cloudflare")]);
        append_cdn_loop(&mut h, &cdn_info("edge-a"));
        let all: Vec<_> = h.get_all(&CDN_LOOP).iter().collect();
        assert_eq!(all, ["cloudflare", "lingjing; node=edge-a"]);
        // What a node writes, it recognises as its own.
        let g = Guard::build(&snap(), "child");
        let mut h = HeaderMap::new();
        append_cdn_loop(&mut h, &cdn_info("child"));
        let why = g.loop_reason(&h).expect("a loop");
        assert!(why.contains("this node"), "{why}");
        assert_eq!(our_cdn_loop_entries(&h), [Some("child".to_owned())]);
        let mut h = HeaderMap::new();
        append_cdn_loop(&mut h, &cdn_info("a b\"c"));
        assert_eq!(our_cdn_loop_entries(&h), [Some("a b\"c".to_owned())]);
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
