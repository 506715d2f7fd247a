//! The operator's fleet: sites by region with how many of their nodes are healthy, every
//! node (health in words, drained, applied snapshot versions, load, last heartbeat)
//! refreshing live; a node's page with its health history and drain/undrain.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Redirect, Response};
use lingjing_model::snapshot::NodeStatus;
use lingjing_model::{Region, Site};
use serde::Deserialize;

use super::{Chrome, Operator, Posted, Shared, failure_page, render};
use crate::api::Failure;
use crate::format::When;
use crate::listing::{Column, ListQuery, Listing};
use crate::session::Session;

/// A node as the API lists it (the fields the pages show).
#[derive(Debug, Clone, Deserialize)]
struct NodeView {
    id: String,
    site: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    capacity_mbps: u64,
    #[serde(default)]
    drained: bool,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    status: NodeStatus,
}

/// Health in words (colour only repeats it).
pub(crate) struct Health {
    pub word: &'static str,
    /// CSS class: `ok`, `bad`, `unknown`.
    pub class: &'static str,
}

impl Health {
    pub(crate) fn of(healthy: Option<bool>) -> Health {
        match healthy {
            Some(true) => Health {
                word: "healthy",
                class: "ok",
            },
            Some(false) => Health {
                word: "down",
                class: "bad",
            },
            None => Health {
                word: "not probed yet",
                class: "unknown",
            },
        }
    }
}

/// A row of the node table.
pub(crate) struct NodeRow {
    id: String,
    site: String,
    region: String,
    roles: String,
    health: Health,
    health_reason: String,
    drained: bool,
    applied: String,
    load: String,
    last_heartbeat: When,
}

impl NodeRow {
    fn of(n: &NodeView, region: String) -> NodeRow {
        NodeRow {
            id: n.id.clone(),
            site: n.site.clone(),
            region,
            roles: n.roles.join(", "),
            health: Health::of(n.status.healthy),
            health_reason: n.status.health_reason.clone().unwrap_or_default(),
            drained: n.drained,
            applied: n
                .status
                .applied
                .iter()
                .map(|(role, v)| format!("{role} v{v}"))
                .collect::<Vec<_>>()
                .join(", "),
            load: match (n.status.load_mbps, n.status.load_percent) {
                (Some(m), Some(p)) => format!("{m} Mbit/s ({p}%)"),
                (Some(m), None) => format!("{m} Mbit/s"),
                _ => "-".into(),
            },
            last_heartbeat: When::of(n.status.last_heartbeat.as_deref()),
        }
    }
}

/// A row of the site table.
pub(crate) struct SiteRow {
    id: String,
    name: String,
    region: String,
    nodes: usize,
    healthy: usize,
    down: usize,
    drained: usize,
}

#[derive(Template)]
#[template(path = "fleet.html")]
struct FleetPage {
    chrome: Chrome,
    sites: Vec<SiteRow>,
    listing: Listing<NodeRow>,
    refreshed: When,
    /// What the live part fetches to refresh itself.
    live: String,
}

#[derive(Template)]
#[template(path = "fleet_live.html")]
struct FleetLive {
    listing: Listing<NodeRow>,
    refreshed: When,
    live: String,
}

/// The live part's own address for `listing` (same sort, filter and page).
fn live_href(listing: &Listing<NodeRow>) -> String {
    listing.here.replacen("/fleet?", "/fleet/live?", 1)
}

const NODE_COLUMNS: &[Column] = &[
    Column {
        key: "node",
        title: "Node",
    },
    Column {
        key: "site",
        title: "Site",
    },
    Column {
        key: "health",
        title: "Health",
    },
    Column {
        key: "drained",
        title: "Drained",
    },
    Column {
        key: "load",
        title: "Load",
    },
    Column {
        key: "heartbeat",
        title: "Last heartbeat",
    },
];

/// The fleet as the API has it: (sites, node listing).
async fn fleet(
    console: &Shared,
    session: &Session,
    query: &ListQuery,
) -> Result<(Vec<SiteRow>, Listing<NodeRow>), Failure> {
    let c = &session.credential;
    let (regions, sites, nodes) = tokio::join!(
        console.api.get::<Vec<Region>>(c, "/v1/regions"),
        console.api.get::<Vec<Site>>(c, "/v1/sites"),
        console.api.get::<Vec<NodeView>>(c, "/v1/nodes"),
    );
    let (regions, sites, nodes) = (regions?, sites?, nodes?);
    let region_names: HashMap<&str, &str> = regions
        .iter()
        .map(|r| (r.id.as_str(), r.name.as_str()))
        .collect();
    let site_region: HashMap<&str, String> = sites
        .iter()
        .map(|s| {
            let region = region_names
                .get(s.region.as_str())
                .copied()
                .unwrap_or(&s.region);
            (s.id.as_str(), region.to_owned())
        })
        .collect();
    let mut site_rows: Vec<SiteRow> = sites
        .iter()
        .map(|s| SiteRow {
            id: s.id.clone(),
            name: s.name.clone(),
            region: site_region.get(s.id.as_str()).cloned().unwrap_or_default(),
            nodes: 0,
            healthy: 0,
            down: 0,
            drained: 0,
        })
        .collect();
    let index: HashMap<String, usize> = site_rows
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect();
    for n in &nodes {
        if let Some(&i) = index.get(&n.site) {
            let row = &mut site_rows[i];
            row.nodes += 1;
            row.healthy += usize::from(n.status.healthy == Some(true));
            row.down += usize::from(n.status.healthy == Some(false));
            row.drained += usize::from(n.drained);
        }
    }
    site_rows.sort_by(|a, b| (&a.region, &a.id).cmp(&(&b.region, &b.id)));
    let rows: Vec<NodeRow> = nodes
        .iter()
        .map(|n| {
            let region = site_region
                .get(n.site.as_str())
                .cloned()
                .unwrap_or_default();
            NodeRow::of(n, region)
        })
        .collect();
    let listing = Listing::of(
        "/fleet",
        rows,
        query,
        NODE_COLUMNS,
        |r| {
            format!(
                "{} {} {} {} {}",
                r.id, r.site, r.region, r.roles, r.health.word
            )
        },
        |r, key| match key {
            "site" => (r.site.clone(), r.id.clone()),
            "health" => (r.health.word.to_owned(), r.id.clone()),
            "drained" => (r.drained.to_string(), r.id.clone()),
            "load" => (format!("{:>20}", r.load), r.id.clone()),
            "heartbeat" => (r.last_heartbeat.iso.clone(), r.id.clone()),
            _ => (r.id.clone(), String::new()),
        },
    );
    Ok((site_rows, listing))
}

fn now() -> When {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .ok();
    When::of(now.as_deref())
}

/// `GET /fleet`.
pub async fn overview(
    State(console): State<Shared>,
    Operator(session): Operator,
    Query(query): Query<ListQuery>,
) -> Response {
    match fleet(&console, &session, &query).await {
        Ok((sites, listing)) => render(&FleetPage {
            chrome: Chrome::new(&session, "Fleet", "fleet"),
            sites,
            live: live_href(&listing),
            listing,
            refreshed: now(),
        }),
        Err(f) => failure_page(&session, f),
    }
}

/// `GET /fleet/live`: the node table alone, for the overview's periodic refresh.
pub async fn live(
    State(console): State<Shared>,
    Operator(session): Operator,
    Query(query): Query<ListQuery>,
) -> Response {
    match fleet(&console, &session, &query).await {
        Ok((_, listing)) => render(&FleetLive {
            live: live_href(&listing),
            listing,
            refreshed: now(),
        }),
        Err(f) => failure_page(&session, f),
    }
}

/// A health change on a node's page.
struct Change {
    at: When,
    health: Health,
    reason: String,
}

#[derive(Deserialize)]
struct HealthChange {
    at: String,
    healthy: bool,
    #[serde(default)]
    reason: String,
}

#[derive(Template)]
#[template(path = "node.html")]
struct NodePage {
    chrome: Chrome,
    node: NodeRow,
    addresses: String,
    capacity: String,
    registered: When,
    agent: String,
    history: Vec<Change>,
}

/// `GET /nodes/{id}`.
pub async fn node(
    State(console): State<Shared>,
    Operator(session): Operator,
    Path(id): Path<String>,
) -> Response {
    let c = &session.credential;
    let path = format!("/v1/nodes/{}", encode(&id));
    let history_path = format!("{path}/health?limit=50");
    let (view, history) = tokio::join!(
        console.api.get::<NodeView>(c, &path),
        console.api.get::<Vec<HealthChange>>(c, &history_path),
    );
    let (n, history) = match (view, history) {
        (Ok(v), Ok(h)) => (v, h),
        (Err(f), _) | (_, Err(f)) => return failure_page(&session, f),
    };
    let sites: Vec<Site> = console.api.get(c, "/v1/sites").await.unwrap_or_default();
    let region = sites
        .iter()
        .find(|s| s.id == n.site)
        .map(|s| s.region.clone())
        .unwrap_or_default();
    render(&NodePage {
        chrome: Chrome::new(&session, format!("Node {}", n.id), "fleet"),
        addresses: if n.addresses.is_empty() {
            "none allocated".into()
        } else {
            n.addresses.join(", ")
        },
        capacity: if n.capacity_mbps == 0 {
            "unlimited".into()
        } else {
            format!("{} Mbit/s", n.capacity_mbps)
        },
        registered: When::of(n.status.registered_at.as_deref()),
        agent: n.status.agent.clone().unwrap_or_else(|| "-".into()),
        history: history
            .into_iter()
            .map(|h| Change {
                at: When::of(Some(&h.at)),
                health: Health::of(Some(h.healthy)),
                reason: h.reason,
            })
            .collect(),
        node: NodeRow::of(&n, region),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct DrainForm {
    #[serde(default)]
    csrf: String,
    /// `true` drains, anything else undrains.
    #[serde(default)]
    drained: String,
}

super::csrf_field!(DrainForm);

/// `POST /nodes/{id}/drain`: sets the node's `drained` through the API (read, change,
/// write back, as `lingjing node drain` does).
pub async fn drain(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted(session, form): Posted<DrainForm>,
) -> Response {
    let c = &session.credential;
    let path = format!("/v1/nodes/{}", encode(&id));
    let mut node: serde_json::Value = match console.api.get(c, &path).await {
        Ok(v) => v,
        Err(f) => return failure_page(&session, f),
    };
    if let Some(o) = node.as_object_mut() {
        o.remove("addresses");
        o.remove("status");
        o.insert(
            "drained".into(),
            serde_json::Value::Bool(form.drained == "true"),
        );
    }
    match console
        .api
        .call::<serde_json::Value>(Method::PUT, c, &path, Some(&node))
        .await
    {
        Ok(_) => {
            tracing::info!(node = %id, drained = form.drained == "true", "console: node drain changed");
            Redirect::to(&format!("/nodes/{}", encode(&id))).into_response()
        }
        Err(f) => failure_page(&session, f),
    }
}

/// `id` as one path segment.
pub(crate) fn encode(id: &str) -> String {
    lingjing_model::sigv4::encode(id, true)
}
