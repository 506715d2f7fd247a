//! The operator's DNS "explain": which node a client of a given address (or ECS subnet)
//! gets for a service's name, and why: its line and region, the rule that chose, every
//! candidate with its verdict. The answer is the GSLB's own (`lingjing_dns::Gslb`, built
//! from the DNS snapshot the API hands the DNS nodes), as `lingjing dns explain` gives it.

use std::net::IpAddr;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use lingjing_dns::{ClientInfo, Explanation, Family, Gslb};
use lingjing_model::snapshot::{DnsSnapshot, Snapshot};
use serde::Deserialize;

use super::{Chrome, Operator, Shared, error_page, failure_page, render_status};
use crate::session::Session;

/// What the form asks.
#[derive(Debug, Default, Deserialize)]
pub struct ExplainQuery {
    /// `SERVICE.ZONE` or just the service id.
    #[serde(default)]
    name: String,
    /// The client's address.
    #[serde(default)]
    client: String,
    /// The ECS prefix length the client's resolver sends (empty: none, classify by the
    /// address itself).
    #[serde(default)]
    subnet: String,
    /// `aaaa` for IPv6 answers.
    #[serde(default)]
    family: String,
}

#[derive(Template)]
#[template(path = "dns.html")]
struct ExplainPage {
    chrome: Chrome,
    zone: String,
    query: ExplainQuery,
    error: Option<String>,
    explanation: Option<Shown>,
}

/// An explanation as the page shows it.
struct Shown {
    service: String,
    client: String,
    classified_by: String,
    line: String,
    region: String,
    rule: String,
    answer: String,
    ttl: u32,
    ecs_scope: String,
    version: u64,
    candidates: Vec<Candidate>,
}

struct Candidate {
    node: String,
    site: String,
    pool: String,
    addresses: String,
    nearness: String,
    weight: u32,
    answered: bool,
    verdict: String,
}

impl Shown {
    fn of(e: Explanation) -> Shown {
        Shown {
            service: e.service,
            client: e.client.to_string(),
            classified_by: e.classified_by.to_owned(),
            line: e
                .line
                .unwrap_or_else(|| "none (no line's prefix holds it)".into()),
            region: e.region.unwrap_or_else(|| "unknown".into()),
            rule: e.rule_text,
            answer: if e.answer.is_empty() {
                "no address".into()
            } else {
                e.answer
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            ttl: e.ttl,
            ecs_scope: e.ecs_scope.map_or_else(|| "-".into(), |s| format!("/{s}")),
            version: e.snapshot_version,
            candidates: e
                .candidates
                .into_iter()
                .map(|c| Candidate {
                    answered: c.verdict == "answered",
                    addresses: c
                        .addresses
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    nearness: c.nearness.map_or_else(|| "-".into(), |n| format!("{n:?}")),
                    node: c.node,
                    site: c.site,
                    pool: c.pool.to_owned(),
                    weight: c.weight,
                    verdict: c.verdict,
                })
                .collect(),
        }
    }
}

/// `GET /dns[?name=..&client=..&subnet=..]`.
pub async fn explain(
    State(console): State<Shared>,
    Operator(session): Operator,
    Query(query): Query<ExplainQuery>,
) -> Response {
    let built = match gslb(&console, &session).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let zone = built.zone.clone();
    let page = |status, error, explanation| {
        render_status(
            status,
            &ExplainPage {
                chrome: Chrome::new(&session, "DNS explain", "dns"),
                zone: zone.clone(),
                query: ExplainQuery {
                    name: query.name.clone(),
                    client: query.client.clone(),
                    subnet: query.subnet.clone(),
                    family: query.family.clone(),
                },
                error,
                explanation,
            },
        )
    };
    if query.name.trim().is_empty() && query.client.trim().is_empty() {
        return page(StatusCode::OK, None, None);
    }
    match answer(&built, &query) {
        Ok(e) => page(StatusCode::OK, None, Some(Shown::of(e))),
        Err(why) => page(StatusCode::UNPROCESSABLE_ENTITY, Some(why), None),
    }
}

/// The GSLB of the DNS nodes' snapshot (as they get it: the operator may read every
/// role's), built once per snapshot version: the API is asked only whether there is a
/// newer one (with the session's own credential, so it still decides who may read it).
#[allow(
    clippy::result_large_err,
    reason = "the refusal is the answer to send, once per request"
)]
async fn gslb(console: &Shared, session: &Session) -> Result<Arc<BuiltGslb>, Response> {
    let cached = console
        .dns
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let after = cached.as_ref().map_or(0, |c| c.version);
    let path = format!("/v1/snapshots/dns?after={after}&timeout_ms=0");
    let bytes = match console
        .api
        .raw(Method::GET, &session.credential, &path, None)
        .await
    {
        Ok((_, bytes)) => bytes,
        Err(f) if f.status == StatusCode::NOT_MODIFIED => match cached {
            Some(c) => return Ok(c),
            None => return Err(failure_page(session, f)),
        },
        Err(f) => return Err(failure_page(session, f)),
    };
    // Parsing and indexing thousands of services is CPU work: off the async threads.
    let built = tokio::task::spawn_blocking(move || {
        let snapshot: Snapshot<DnsSnapshot> = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the DNS snapshot did not parse: {e}"))?;
        let gslb = Gslb::from_snapshot(&snapshot)
            .map_err(|e| format!("the DNS snapshot does not build: {e}"))?;
        Ok::<_, String>(BuiltGslb {
            version: snapshot.version,
            zone: snapshot.body.zone,
            gslb,
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match built {
        Ok(b) => {
            let b = Arc::new(b);
            *console
                .dns
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(b.clone());
            Ok(b)
        }
        Err(message) => Err(error_page(
            Some(session),
            StatusCode::INTERNAL_SERVER_ERROR,
            message,
        )),
    }
}

/// A DNS snapshot's GSLB, kept until a newer snapshot comes.
pub(crate) struct BuiltGslb {
    version: u64,
    zone: String,
    gslb: Gslb,
}

/// The GSLB's explanation for the query, or what is wrong with the query.
fn answer(built: &BuiltGslb, q: &ExplainQuery) -> Result<Explanation, String> {
    let client: IpAddr = q
        .client
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not an IP address", q.client.trim()))?;
    let max = if client.is_ipv4() { 32 } else { 128 };
    let subnet = match q.subnet.trim() {
        "" => None,
        s => Some(
            s.trim_start_matches('/')
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("the subnet is a prefix length, 0 to {max}"))?,
        ),
    };
    let zone = built.zone.trim_end_matches('.');
    let mut qname = q.name.trim().trim_end_matches('.').to_ascii_lowercase();
    if !qname.ends_with(zone) {
        qname = format!("{qname}.{zone}");
    }
    qname.push('.');
    let family = if q.family == "aaaa" {
        Family::V6
    } else {
        Family::V4
    };
    let info = ClientInfo {
        addr: client,
        ecs: subnet.map(|p| (client, p)),
    };
    built.gslb.explain(&qname, family, &info).ok_or_else(|| {
        format!("{qname} is not a service name of the zone {zone} (names are SERVICE.{zone})")
    })
}
