//! Billing runs: for each tenant on a plan, the month's usage gathered from the store
//! (metered CDN traffic per 5-minute interval, storage samples and traffic, the outages
//! of the nodes that serve its services) and rated by `lingjing_billing::rate`. A month
//! that ended [`CLOSE_AFTER_MS`] ago gets final invoices, once: a tenant that already has
//! one keeps it unchanged (re-running a closed month changes nothing; a correction is a
//! credit note). The month still running (or just ended) gets drafts, replaced by each
//! run.

use std::collections::BTreeMap;

use lingjing_billing::{CabinetUse, Category, Month, Outage, Sample, Usage};
use lingjing_model::colocation::Cabinet;
use lingjing_model::metering::{UsageCounts, UsageGroup};
use lingjing_model::{Node, NodeRole, Service};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::error::{ApiError, StoreError};
use crate::store::billing::{self as store, InvoiceKind, InvoiceRecord};
use crate::store::list_docs;

/// What a run did for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A final invoice was made.
    Issued,
    /// The tenant already had its final invoice: nothing changed.
    Unchanged,
    /// The month is still running: a draft was (re)made.
    Drafted,
}

/// One tenant's invoice in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunLine {
    pub tenant: String,
    pub number: String,
    pub outcome: Outcome,
    pub currency: String,
    #[schema(value_type = String)]
    pub total: rust_decimal::Decimal,
}

/// What `POST /v1/billing/runs` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunResult {
    #[schema(value_type = String, example = "2026-11")]
    pub month: Month,
    /// The month had ended: its invoices are final.
    pub closed: bool,
    pub invoices: Vec<RunLine>,
}

/// The invoice number of `tenant`'s `month` (`INV-202611-shop`; drafts `DRAFT-...`).
pub fn number(kind: InvoiceKind, tenant: &str, month: Month) -> String {
    let prefix = match kind {
        InvoiceKind::Invoice => "INV",
        InvoiceKind::Draft => "DRAFT",
        InvoiceKind::CreditNote => "CN",
    };
    format!("{prefix}-{:04}{:02}-{tenant}", month.year, month.month)
}

/// Most points a rating reads of one series (a month of 5-minute intervals is 8,928 per
/// key; this allows 100 keys).
const SERIES_MAX: usize = 892_800;

/// How long after its end a month closes: the last interval's samples, and those a node
/// held while the control plane was away for a few hours, are in by then. Samples of a
/// month that arrive after its final invoices are kept (usage shows them) but billed
/// by no invoice.
pub const CLOSE_AFTER_MS: i64 = 6 * 3_600_000;

/// Rates `month` for every tenant on a plan (see the module docs).
pub async fn run(state: &AppState, month: Month, now_ms: i64) -> Result<RunResult, ApiError> {
    if month.start_ms() > now_ms {
        return Err(ApiError::BadRequest(format!(
            "{month} has not begun: bill an ended month, or the current one for drafts"
        )));
    }
    let closed = now_ms >= month.end_ms() + CLOSE_AFTER_MS;
    let plans = {
        let mut conn = state.store.pool().acquire().await?;
        store::tenant_plans(&mut conn).await?
    };
    let mut invoices = Vec::new();
    for (tenant, plan_id) in plans {
        let month_name = month.to_string();
        // Reads on a connection of their own, returned before the write (a one-connection
        // pool must not wait for itself).
        let mut conn = state.store.pool().acquire().await?;
        if closed && let Some(done) = store::final_invoice(&mut conn, &tenant, &month_name).await? {
            invoices.push(line(&done, Outcome::Unchanged));
            continue;
        }
        let Some(plan) = store::get_plan(&mut conn, &plan_id).await? else {
            continue;
        };
        let usage = tenant_usage(&mut conn, &tenant, month).await?;
        drop(conn);
        let kind = if closed {
            InvoiceKind::Invoice
        } else {
            InvoiceKind::Draft
        };
        let invoice =
            lingjing_billing::rate(&tenant, &number(kind, &tenant, month), month, &plan, &usage);
        let record = InvoiceRecord {
            kind,
            issued: crate::time::rfc3339_from_ms(now_ms),
            refers_to: None,
            reason: None,
            invoice,
        };
        let mut w = state.store.write(false).await?;
        let written = store::put_invoice(&mut w.tx, &record, now_ms).await?;
        w.commit().await?;
        if !written {
            // Another run issued it meanwhile: that one stands.
            let mut conn = state.store.pool().acquire().await?;
            if let Some(done) = store::final_invoice(&mut conn, &tenant, &month_name).await? {
                invoices.push(line(&done, Outcome::Unchanged));
            }
            continue;
        }
        let outcome = if closed {
            Outcome::Issued
        } else {
            Outcome::Drafted
        };
        tracing::info!(tenant = %tenant, month = %month, number = %record.invoice.number, total = %record.invoice.total, ?outcome, "billing: invoice made");
        invoices.push(line(&record, outcome));
    }
    Ok(RunResult {
        month,
        closed,
        invoices,
    })
}

fn line(record: &InvoiceRecord, outcome: Outcome) -> RunLine {
    RunLine {
        tenant: record.invoice.tenant.clone(),
        number: record.invoice.number.clone(),
        outcome,
        currency: record.invoice.currency.clone(),
        total: record.invoice.total,
    }
}

/// Metered traffic for a rating: [`crate::store::meter::series`] with the rating's bound.
async fn metered(
    conn: &mut AnyConnection,
    group: UsageGroup,
    step_ms: i64,
    from: i64,
    to: i64,
    filter: &crate::store::meter::Filter,
) -> Result<BTreeMap<String, BTreeMap<i64, UsageCounts>>, StoreError> {
    crate::store::meter::series(conn, group, step_ms, from, to, filter, SERIES_MAX).await
}

/// One series' steps as the rater's samples.
fn samples(steps: BTreeMap<i64, UsageCounts>) -> Vec<Sample> {
    steps
        .into_iter()
        .map(|(start_ms, c)| Sample {
            start_ms,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
        })
        .collect()
}

/// What `tenant` used in `month`, as the rater takes it.
pub async fn tenant_usage(
    conn: &mut AnyConnection,
    tenant: &str,
    month: Month,
) -> Result<Usage, StoreError> {
    let (from, to) = (month.start_ms(), month.end_ms());
    let filter = crate::store::meter::Filter {
        tenant: Some(tenant.to_owned()),
        ..Default::default()
    };
    let cdn = metered(conn, UsageGroup::Tenant, 300_000, from, to, &filter)
        .await?
        .into_values()
        .flat_map(samples)
        .collect();
    let (storage_requests, storage_egress_bytes) =
        store::storage_traffic(conn, tenant, from, to).await?;
    let cabinets = cabinet_uses(conn, tenant, from, to).await?;
    let colocation_bandwidth = crate::store::colocation::colo_traffic(conn, tenant, from, to)
        .await?
        .into_iter()
        .map(|(start_ms, bytes_in, bytes_out)| Sample {
            start_ms,
            bytes_in,
            bytes_out,
        })
        .collect();
    let mut outages = cdn_outages(conn, tenant, from, to).await?;
    outages.extend(colocation_outages(conn, &cabinets, from, to).await?);
    Ok(Usage {
        cdn,
        storage_stored_bytes: store::stored_samples(conn, tenant, from, to).await?,
        storage_requests,
        storage_egress_bytes,
        cabinets,
        colocation_bandwidth,
        outages,
    })
}

/// `tenant`'s cabinet assignments touching `[from, to)`.
pub async fn cabinet_uses(
    conn: &mut AnyConnection,
    tenant: &str,
    from: i64,
    to: i64,
) -> Result<Vec<CabinetUse>, StoreError> {
    let mut out = Vec::new();
    for cabinet in list_docs::<Cabinet>(conn).await? {
        for a in cabinet.assignments.iter().filter(|a| a.tenant == tenant) {
            let Some((start, end)) = a.period_ms() else {
                continue;
            };
            if end <= from || start >= to {
                continue;
            }
            let (first, last) = a.unit_range(cabinet.rack_units);
            let units = Decimal::from(last - first + 1) / Decimal::from(cabinet.rack_units.max(1));
            let name = match a.units {
                Some([f, l]) => format!("{} units {f}-{l}", cabinet.id),
                None => cabinet.id.clone(),
            };
            out.push(CabinetUse {
                cabinet: name,
                site: cabinet.site.clone(),
                contracted_kw: Decimal::new(i64::from(a.watts(&cabinet)), 3),
                units_share: units,
                from_ms: start,
                to_ms: end,
            });
        }
    }
    Ok(out)
}

/// The incidents at the sites of `cabinets` while the tenant held them.
async fn colocation_outages(
    conn: &mut AnyConnection,
    cabinets: &[CabinetUse],
    from: i64,
    to: i64,
) -> Result<Vec<Outage>, StoreError> {
    let mut out = Vec::new();
    for (incident, start, end) in crate::store::colocation::incidents(conn, from, to).await? {
        for c in cabinets.iter().filter(|c| c.site == incident.site) {
            let (a, b) = (start.max(c.from_ms), end.min(c.to_ms));
            if a < b {
                out.push(Outage {
                    category: Category::Colocation,
                    start_ms: a,
                    end_ms: b,
                    what: format!(
                        "site {}: {} (incident {})",
                        incident.site, incident.what, incident.id
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// The segment report of `month`: revenue from its invoices (final ones, else drafts;
/// credit notes included; tax left out), split into segments by line category (credits
/// pro rata), and into sites by the tenant's CDN traffic per site (edge) and cabinets
/// per site (IDC); the operator's costs per site.
pub async fn segments(
    conn: &mut AnyConnection,
    month: Month,
) -> Result<lingjing_billing::SegmentReport, ApiError> {
    use lingjing_billing::{Segment, SiteTraffic};
    let (from, to) = (month.start_ms(), month.end_ms());
    let records = store::list_invoices(conn, None, Some(&month.to_string())).await?;
    let finals: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| r.kind == InvoiceKind::Invoice)
        .map(|r| r.invoice.tenant.clone())
        .collect();
    let mut currency: Option<String> = None;
    // Per tenant: (edge, idc) revenue, credits and credit notes spread pro rata.
    let mut per_tenant: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    for r in &records {
        if r.kind == InvoiceKind::Draft && finals.contains(&r.invoice.tenant) {
            continue;
        }
        match &currency {
            None => currency = Some(r.invoice.currency.clone()),
            Some(c) if *c != r.invoice.currency => {
                return Err(ApiError::conflict(
                    "mixed_currencies",
                    format!(
                        "{month}'s invoices are in {c} and {}: one report per currency is not supported",
                        r.invoice.currency
                    ),
                ));
            }
            Some(_) => {}
        }
        let entry = per_tenant.entry(r.invoice.tenant.clone()).or_default();
        let mut edge = Decimal::ZERO;
        let mut idc = Decimal::ZERO;
        let mut credits = Decimal::ZERO;
        for l in &r.invoice.lines {
            match l.category {
                Category::Cdn | Category::Storage => edge += l.amount,
                Category::Colocation => idc += l.amount,
                Category::Credit => credits += l.amount,
                Category::Tax => {}
            }
        }
        if r.kind == InvoiceKind::CreditNote {
            // Spread over the tenant's split so far (evenly when it has none).
            let (e, i) = *entry;
            let whole = e + i;
            let share = if whole.is_zero() {
                Decimal::new(5, 1)
            } else {
                e / whole
            };
            entry.0 += credits * share;
            entry.1 += credits - credits * share;
            continue;
        }
        let whole = edge + idc;
        let edge_credit = if whole.is_zero() {
            Decimal::ZERO
        } else {
            credits * edge / whole
        };
        entry.0 += edge + edge_credit;
        entry.1 += idc + (credits - edge_credit);
    }
    let mut revenue = Vec::new();
    for (tenant, (edge, idc)) in per_tenant {
        let filter = crate::store::meter::Filter {
            tenant: Some(tenant.clone()),
            ..Default::default()
        };
        let by_site = metered(conn, UsageGroup::Site, to - from, from, to, &filter).await?;
        let bytes: BTreeMap<String, u64> = by_site
            .into_iter()
            .map(|(site, steps)| {
                let bytes = steps
                    .values()
                    .fold(0u64, |a, c| a.saturating_add(c.bytes_out));
                (site, bytes)
            })
            .collect();
        revenue.extend(split(Segment::Edge, edge, &bytes));
        let mut months: BTreeMap<String, u64> = BTreeMap::new();
        for c in cabinet_uses(conn, &tenant, from, to).await? {
            let ms = (c.to_ms.min(to) - c.from_ms.max(from)).max(0) as u64;
            *months.entry(c.site).or_default() += ms;
        }
        revenue.extend(split(Segment::Idc, idc, &months));
    }
    let costs: Vec<lingjing_billing::CostItem> = crate::store::colocation::costs(conn)
        .await?
        .into_iter()
        .map(|c| lingjing_billing::CostItem {
            site: c.site,
            segment: c.segment,
            description: c.description,
            line: c.line,
            basis: c.basis,
        })
        .collect();
    // Each costed site's traffic per line, for the contracts priced by the 95th.
    let mut traffic: Vec<SiteTraffic> = Vec::new();
    let sites: std::collections::BTreeSet<String> = costs.iter().map(|c| c.site.clone()).collect();
    for site in sites {
        let filter = crate::store::meter::Filter {
            site: Some(site.clone()),
            ..Default::default()
        };
        let by_line = metered(conn, UsageGroup::Line, 300_000, from, to, &filter).await?;
        for (line, steps) in by_line {
            traffic.push(SiteTraffic {
                site: site.clone(),
                line: (!line.is_empty()).then_some(line),
                samples: samples(steps),
            });
        }
    }
    let currency = currency.unwrap_or_else(|| "CNY".to_owned());
    Ok(lingjing_billing::segment_report(
        month, &currency, &revenue, &costs, &traffic,
    ))
}

/// `amount` of `segment` split over sites by `weights` (none: not attributable).
fn split(
    segment: lingjing_billing::Segment,
    amount: Decimal,
    weights: &BTreeMap<String, u64>,
) -> Vec<lingjing_billing::Revenue> {
    let total = weights.values().fold(0u64, |a, w| a.saturating_add(*w));
    if amount.is_zero() {
        return Vec::new();
    }
    if total == 0 {
        return vec![lingjing_billing::Revenue {
            segment,
            site: None,
            amount,
        }];
    }
    weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(site, w)| lingjing_billing::Revenue {
            segment,
            site: Some(site.clone()),
            amount: amount * Decimal::from(*w) / Decimal::from(total),
        })
        .collect()
}

/// The intervals in `[from, to)` when one of `tenant`'s services had no node up that may
/// serve it (its edge sites, or its fallback sites), from the recorded health changes.
pub async fn cdn_outages(
    conn: &mut AnyConnection,
    tenant: &str,
    from: i64,
    to: i64,
) -> Result<Vec<Outage>, StoreError> {
    let services: Vec<Service> = list_docs::<Service>(conn)
        .await?
        .into_iter()
        .filter(|s| s.tenant == tenant)
        .collect();
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let changes = crate::store::health::health_changes(conn, to).await?;
    let nodes: Vec<Node> = list_docs::<Node>(conn).await?;
    let empty = Vec::new();
    let down: BTreeMap<&str, Vec<(i64, i64)>> = nodes
        .iter()
        .map(|n| {
            let c = changes.get(&n.id).unwrap_or(&empty);
            (n.id.as_str(), crate::sla::down_intervals(c, from, to))
        })
        .collect();
    let mut out = Vec::new();
    for service in &services {
        let s = &service.steering;
        let members: Vec<&[(i64, i64)]> = nodes
            .iter()
            .filter(|n| {
                let edge_here = n.roles.contains(&NodeRole::Edge)
                    && (s.sites.is_empty() || s.sites.contains(&n.site));
                edge_here || s.fallback_sites.contains(&n.site)
            })
            .filter_map(|n| down.get(n.id.as_str()).map(Vec::as_slice))
            .collect();
        for (start_ms, end_ms) in crate::sla::all_down_intervals(&members, from, to) {
            out.push(Outage {
                category: Category::Cdn,
                start_ms,
                end_ms,
                what: format!("service {} (no node that serves it was up)", service.id),
            });
        }
    }
    Ok(out)
}
