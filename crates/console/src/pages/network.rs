//! The operator's network: carrier lines with how many client prefixes each holds, IP
//! pools with how full they are, and a pool's allocations (which node holds which
//! address since when).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use lingjing_model::Allocation;
use serde::Deserialize;

use super::fleet::encode;
use super::{Chrome, Operator, Shared, failure_page, render};
use crate::format::{When, count, percent};
use crate::listing::{Column, ListQuery, Listing};

#[derive(Debug, Deserialize)]
struct LineView {
    id: String,
    name: String,
    #[serde(default)]
    prefix_count: u64,
}

#[derive(Debug, Deserialize)]
struct PoolView {
    id: String,
    site: String,
    #[serde(default)]
    line: Option<String>,
    cidr: String,
    #[serde(default)]
    allocated: u64,
    #[serde(default)]
    capacity: u64,
}

/// A row of the lines table.
pub(crate) struct LineRow {
    id: String,
    name: String,
    prefixes: String,
}

/// A row of the pools table.
pub(crate) struct PoolRow {
    id: String,
    site: String,
    line: String,
    cidr: String,
    /// `3 of 14 (21.4%)`.
    used: String,
    full: bool,
}

#[derive(Template)]
#[template(path = "network.html")]
struct NetworkPage {
    chrome: Chrome,
    lines: Vec<LineRow>,
    listing: Listing<PoolRow>,
}

const POOL_COLUMNS: &[Column] = &[
    Column {
        key: "pool",
        title: "Pool",
    },
    Column {
        key: "site",
        title: "Site",
    },
    Column {
        key: "line",
        title: "Line",
    },
];

/// `GET /network`.
pub async fn overview(
    State(console): State<Shared>,
    Operator(session): Operator,
    Query(query): Query<ListQuery>,
) -> Response {
    let c = &session.credential;
    let (lines, pools) = tokio::join!(
        console.api.get::<Vec<LineView>>(c, "/v1/lines"),
        console.api.get::<Vec<PoolView>>(c, "/v1/pools"),
    );
    let (lines, pools) = match (lines, pools) {
        (Ok(l), Ok(p)) => (l, p),
        (Err(f), _) | (_, Err(f)) => return failure_page(&session, f),
    };
    let rows = pools
        .into_iter()
        .map(|p| PoolRow {
            used: format!(
                "{} of {} ({})",
                count(p.allocated),
                count(p.capacity),
                percent(p.allocated, p.capacity)
            ),
            full: p.capacity > 0 && p.allocated >= p.capacity,
            line: p.line.unwrap_or_else(|| "any".into()),
            id: p.id,
            site: p.site,
            cidr: p.cidr,
        })
        .collect();
    let listing = Listing::of(
        "/network",
        rows,
        &query,
        POOL_COLUMNS,
        |r| format!("{} {} {} {}", r.id, r.site, r.line, r.cidr),
        |r, key| match key {
            "site" => (r.site.clone(), r.id.clone()),
            "line" => (r.line.clone(), r.id.clone()),
            _ => (r.id.clone(), String::new()),
        },
    );
    render(&NetworkPage {
        chrome: Chrome::new(&session, "Lines and IP pools", "network"),
        lines: lines
            .into_iter()
            .map(|l| LineRow {
                prefixes: count(l.prefix_count),
                id: l.id,
                name: l.name,
            })
            .collect(),
        listing,
    })
}

/// A row of a pool's allocations.
struct AllocationRow {
    address: String,
    node: String,
    since: When,
}

#[derive(Template)]
#[template(path = "pool.html")]
struct PoolPage {
    chrome: Chrome,
    allocations: Vec<AllocationRow>,
}

/// `GET /pools/{id}`.
pub async fn pool(
    State(console): State<Shared>,
    Operator(session): Operator,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/v1/pools/{}/allocations", encode(&id));
    let allocations: Vec<Allocation> = match console.api.get(&session.credential, &path).await {
        Ok(a) => a,
        Err(f) => return failure_page(&session, f),
    };
    render(&PoolPage {
        chrome: Chrome::new(&session, format!("Pool {id}"), "network"),
        allocations: allocations
            .into_iter()
            .map(|a| AllocationRow {
                address: a.address.to_string(),
                since: When::of(Some(&a.allocated_at)),
                node: a.node,
            })
            .collect(),
    })
}
