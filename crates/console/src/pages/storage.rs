//! The operator's object storage: each storage node's health, disk use and free space,
//! blocks held, last scrub and corrupt copies found (`GET /v1/storage/status`).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use lingjing_model::snapshot::StorageNodeStatus;

use super::fleet::Health;
use super::{Chrome, Operator, Shared, failure_page, render};
use crate::format::{When, bytes, count, percent};

/// A storage node's row.
struct Row {
    id: String,
    site: String,
    health: Health,
    used: String,
    free: String,
    /// Share of the disk in use by blocks, of what blocks and free space make.
    share: String,
    blocks: String,
    last_scrub: When,
    scrubbing: bool,
    corrupt: u64,
    reported: When,
}

#[derive(Template)]
#[template(path = "storage.html")]
struct StoragePage {
    chrome: Chrome,
    nodes: Vec<Row>,
    used: String,
    free: String,
    corrupt: u64,
    unreported: usize,
}

/// `GET /storage`.
pub async fn status(State(console): State<Shared>, Operator(session): Operator) -> Response {
    let nodes: Vec<StorageNodeStatus> = match console
        .api
        .get(&session.credential, "/v1/storage/status")
        .await
    {
        Ok(n) => n,
        Err(f) => return failure_page(&session, f),
    };
    let (mut used, mut free, mut corrupt) = (0u64, 0u64, 0u64);
    let rows: Vec<Row> = nodes
        .into_iter()
        .map(|n| {
            let r = n.report.unwrap_or_default();
            used = used.saturating_add(r.used_bytes);
            free = free.saturating_add(r.free_bytes);
            corrupt = corrupt.saturating_add(r.corrupt_found);
            let scrub = r.last_scrub_ms.and_then(|ms| {
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
            });
            Row {
                id: n.node.node.id.clone(),
                site: n.node.node.site.clone(),
                health: Health::of(Some(n.node.healthy)),
                used: bytes(r.used_bytes),
                free: bytes(r.free_bytes),
                share: percent(r.used_bytes, r.used_bytes.saturating_add(r.free_bytes)),
                blocks: count(r.blocks),
                last_scrub: When::of(scrub.as_deref()),
                scrubbing: r.scrub_running,
                corrupt: r.corrupt_found,
                reported: When::of(n.reported_at.as_deref()),
            }
        })
        .collect();
    render(&StoragePage {
        chrome: Chrome::new(&session, "Object storage", "storage"),
        unreported: rows.iter().filter(|r| r.reported.iso.is_empty()).count(),
        nodes: rows,
        used: bytes(used),
        free: bytes(free),
        corrupt,
    })
}
