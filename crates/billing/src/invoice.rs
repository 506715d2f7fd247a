//! Invoices: rating one tenant's month of usage against a plan (CDN, storage,
//! colocation, SLA credits, tax), with money rounded to the cent line by line so the
//! totals are exact sums of the printed amounts.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::month::{Month, format_utc};
use crate::percentile::{Direction, Percentile, Sample, percentile95, transfer_bytes};
use crate::plan::{CdnRate, ColocationRate, Plan, StorageRate};
use crate::sla;

pub use crate::render::{to_csv, to_html};

/// What an invoice line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// CDN traffic.
    Cdn,
    /// Object storage.
    Storage,
    /// Colocation: cabinets, power, bandwidth.
    Colocation,
    /// SLA credits (negative).
    Credit,
    /// Tax.
    Tax,
}

impl Category {
    /// Human name: `CDN`, `Storage`, `Colocation`, `Credit`, `Tax`.
    pub fn label(self) -> &'static str {
        match self {
            Category::Cdn => "CDN",
            Category::Storage => "Storage",
            Category::Colocation => "Colocation",
            Category::Credit => "Credit",
            Category::Tax => "Tax",
        }
    }

    /// The snake_case name used in JSON and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Cdn => "cdn",
            Category::Storage => "storage",
            Category::Colocation => "colocation",
            Category::Credit => "credit",
            Category::Tax => "tax",
        }
    }
}

/// One invoice line: `amount = round_money(quantity × unit_price)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Line {
    /// What the line is for.
    pub category: Category,
    /// Human description.
    pub description: String,
    /// How much, in `unit`s.
    pub quantity: Decimal,
    /// `Mbps`, `GB`, `GB-month`, `10k requests`, `cabinet-month`, `kW-month`, `month`, `%`.
    pub unit: String,
    /// Price of one unit.
    pub unit_price: Decimal,
    /// `round_money(quantity × unit_price)`; negative for credits.
    pub amount: Decimal,
    /// How the quantity was computed.
    pub basis: String,
}

/// What one tenant used in one month (the caller aggregates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// CDN traffic per interval (all the tenant's services summed, or one row per node:
    /// rows of the same interval are summed).
    #[serde(default)]
    pub cdn: Vec<Sample>,
    /// (sample time ms, bytes stored): 5-minute samples of the tenant's stored bytes.
    #[serde(default)]
    #[schema(value_type = Vec<Vec<i64>>)]
    pub storage_stored_bytes: Vec<(i64, u64)>,
    /// Storage requests in the month.
    #[serde(default)]
    pub storage_requests: u64,
    /// Bytes sent out of storage in the month.
    #[serde(default)]
    pub storage_egress_bytes: u64,
    /// The tenant's cabinet assignments touching the month.
    #[serde(default)]
    pub cabinets: Vec<CabinetUse>,
    /// The tenant's cross-connect/uplink traffic per interval.
    #[serde(default)]
    pub colocation_bandwidth: Vec<Sample>,
    /// Intervals when what serves the tenant was down.
    #[serde(default)]
    pub outages: Vec<Outage>,
}

/// One cabinet assigned to the tenant for `[from_ms, to_ms)` (clipped to the month).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CabinetUse {
    /// Cabinet name.
    pub cabinet: String,
    /// Site of the cabinet.
    pub site: String,
    /// Contracted power, kW.
    pub contracted_kw: Decimal,
    /// The share of the cabinet held (its units over the cabinet's: 1 for all of it):
    /// the cabinet line is for this share of a cabinet-month.
    #[serde(default = "one")]
    pub units_share: Decimal,
    /// Start of the assignment, ms since the Unix epoch.
    pub from_ms: i64,
    /// End of the assignment (exclusive), ms since the Unix epoch.
    pub to_ms: i64,
}

fn one() -> Decimal {
    Decimal::ONE
}

/// An interval `[start_ms, end_ms)` when a category's service was down for the tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    /// `cdn` or `colocation`.
    pub category: Category,
    /// Start, ms since the Unix epoch.
    pub start_ms: i64,
    /// End (exclusive), ms since the Unix epoch.
    pub end_ms: i64,
    /// What was down.
    pub what: String,
}

/// A rated month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Invoice {
    /// Invoice number (given by the caller).
    pub number: String,
    /// Tenant id.
    pub tenant: String,
    /// The month rated.
    pub month: Month,
    /// Plan id.
    pub plan: String,
    /// ISO 4217 currency of every amount.
    pub currency: String,
    /// Charges, then credits, then tax.
    pub lines: Vec<Line>,
    /// Sum of the charge lines (not credits, not tax).
    pub subtotal: Decimal,
    /// Sum of the credit lines (<= 0).
    pub credits: Decimal,
    /// Sum of the tax lines.
    pub tax: Decimal,
    /// subtotal + credits + tax.
    pub total: Decimal,
    /// Uptime of every category the SLA measures (empty without an SLA).
    pub uptime: Vec<Uptime>,
}

/// A category's measured uptime for the month and the credit it earned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Uptime {
    /// `cdn` or `colocation`.
    pub category: Category,
    /// Uptime in percent, 4 decimal places, rounded toward zero.
    pub percent: Decimal,
    /// The SLA target, percent.
    pub target_percent: Decimal,
    /// Downtime (union of the outages) in minutes, 2 decimal places.
    pub downtime_minutes: Decimal,
    /// The category's outages, clipped to the month, by start time.
    pub outages: Vec<Outage>,
    /// Credit earned, percent of the category's charges (0 when none).
    pub credit_percent: Decimal,
}

/// Rounds money to the cent, midpoint away from zero, always with 2 decimal places.
pub fn round_money(d: Decimal) -> Decimal {
    let mut rounded = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// Rates `usage` of `tenant` in `month` against `plan`.
///
/// Assumes a plan that passed [`Plan::check`]; with an unchecked plan arithmetic
/// saturates instead of panicking.
pub fn rate(tenant: &str, number: &str, month: Month, plan: &Plan, usage: &Usage) -> Invoice {
    let mut lines = Vec::new();
    if let Some(cdn) = &plan.cdn {
        lines.extend(cdn_lines(cdn, month, &usage.cdn));
    }
    if let Some(storage) = &plan.storage {
        lines.extend(storage_lines(storage, month, usage));
    }
    if let Some(colocation) = &plan.colocation {
        lines.extend(colocation_lines(colocation, month, usage));
    }
    let uptime = match &plan.sla {
        Some(terms) => sla::measure(terms, &sla_categories(plan), month, &usage.outages),
        None => Vec::new(),
    };
    lines.extend(sla::credit_lines(&uptime, &lines));
    let head = Head {
        number,
        tenant,
        month,
        plan: &plan.id,
        currency: &plan.currency,
    };
    finish(head, lines, plan.tax_rate, uptime)
}

/// The categories an SLA covers: those the plan sells that can have outages.
fn sla_categories(plan: &Plan) -> Vec<Category> {
    let mut categories = Vec::new();
    if plan.cdn.is_some() {
        categories.push(Category::Cdn);
    }
    if plan.colocation.is_some() {
        categories.push(Category::Colocation);
    }
    categories
}

/// Builds a line with `amount = round_money(quantity × unit_price)`.
pub(crate) fn line(
    category: Category,
    description: impl Into<String>,
    quantity: Decimal,
    unit: &str,
    unit_price: Decimal,
    basis: impl Into<String>,
) -> Line {
    Line {
        category,
        description: description.into(),
        quantity,
        unit: unit.into(),
        unit_price,
        amount: round_money(quantity.saturating_mul(unit_price)),
        basis: basis.into(),
    }
}

/// Rounds a quantity to 6 decimal places (midpoint away from zero), without trailing
/// zeros.
pub(crate) fn round_quantity(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// `a / b`, 0 when `b` is 0 or the quotient overflows.
pub(crate) fn ratio(a: Decimal, b: Decimal) -> Decimal {
    a.checked_div(b).unwrap_or(Decimal::ZERO)
}

/// Exact GB (10^9 bytes) of `bytes`.
fn gb_of(bytes: u64) -> Decimal {
    Decimal::try_from_i128_with_scale(i128::from(bytes), 9)
        .unwrap_or(Decimal::MAX)
        .normalize()
}

fn cdn_lines(rate: &CdnRate, month: Month, samples: &[Sample]) -> Vec<Line> {
    match rate {
        CdnRate::Percentile95 {
            direction,
            commit_mbps,
            commit_fee,
            overage_per_mbps,
        } => {
            let p = percentile95(samples, month, *direction);
            let commit = Commit {
                category: Category::Cdn,
                label: "CDN",
                commit: *commit_mbps,
                fee: *commit_fee,
                overage_price: *overage_per_mbps,
            };
            percentile_lines(&commit, &p)
        }
        CdnRate::Transfer {
            commit_gb,
            commit_fee,
            overage_per_gb,
        } => {
            let commit = Commit {
                category: Category::Cdn,
                label: "CDN",
                commit: *commit_gb,
                fee: *commit_fee,
                overage_price: *overage_per_gb,
            };
            transfer_lines(&commit, month, samples)
        }
    }
}

/// A monthly commit: a fee for `commit` units, `overage_price` per unit above.
struct Commit<'a> {
    category: Category,
    label: &'a str,
    commit: Decimal,
    fee: Decimal,
    overage_price: Decimal,
}

impl Commit<'_> {
    /// The commit line and, when `used` exceeds the commit, the overage line.
    fn lines(&self, used: Decimal, unit: &str, basis: &str) -> Vec<Line> {
        let label = self.label;
        let mut lines = vec![line(
            self.category,
            format!("{label} commit"),
            Decimal::ONE,
            "month",
            self.fee,
            basis,
        )];
        let over = used.saturating_sub(self.commit).normalize();
        if over > Decimal::ZERO {
            let basis = format!(
                "{basis}; overage {used} − {} = {over} {unit}",
                self.commit.normalize()
            );
            lines.push(line(
                self.category,
                format!("{label} overage"),
                over,
                unit,
                self.overage_price,
                basis,
            ));
        }
        lines
    }
}

fn percentile_lines(commit: &Commit, p: &Percentile) -> Vec<Line> {
    let basis = format!("{}; commit {} Mbps", p.basis, commit.commit.normalize());
    commit.lines(p.mbps, "Mbps", &basis)
}

fn transfer_lines(commit: &Commit, month: Month, samples: &[Sample]) -> Vec<Line> {
    let bytes = transfer_bytes(samples, month, Direction::Out);
    let gb = gb_of(bytes);
    let basis = format!(
        "{bytes} bytes out in {month} = {gb} GB (GB = 10^9 bytes); commit {} GB",
        commit.commit.normalize()
    );
    commit.lines(gb, "GB", &basis)
}

fn storage_lines(rate: &StorageRate, month: Month, usage: &Usage) -> Vec<Line> {
    let (gb_months, count) = stored_gb_months(&usage.storage_stored_bytes, month);
    let stored_basis = format!(
        "mean of {count} stored-bytes samples over the {} five-minute intervals of {month} \
         (missing samples count as 0), GB = 10^9 bytes",
        month.intervals()
    );
    let requests = Decimal::try_from_i128_with_scale(i128::from(usage.storage_requests), 4)
        .unwrap_or(Decimal::MAX)
        .normalize();
    let egress = gb_of(usage.storage_egress_bytes);
    let lines = [
        line(
            Category::Storage,
            "Storage",
            gb_months,
            "GB-month",
            rate.per_gb_month,
            stored_basis,
        ),
        line(
            Category::Storage,
            "Storage requests",
            requests,
            "10k requests",
            rate.per_10k_requests,
            format!("{} requests", usage.storage_requests),
        ),
        line(
            Category::Storage,
            "Storage egress",
            egress,
            "GB",
            rate.egress_per_gb,
            format!("{} bytes out (GB = 10^9 bytes)", usage.storage_egress_bytes),
        ),
    ];
    lines
        .into_iter()
        .filter(|l| !l.quantity.is_zero())
        .collect()
}

/// GB-months stored: the sum of the month's samples over its interval count, in GB,
/// 6 decimal places; and how many samples fell in the month.
fn stored_gb_months(samples: &[(i64, u64)], month: Month) -> (Decimal, usize) {
    let (sum, count) = samples
        .iter()
        .filter(|(ms, _)| month.contains(*ms))
        .fold((0u128, 0usize), |(sum, count), (_, bytes)| {
            (sum.saturating_add(u128::from(*bytes)), count + 1)
        });
    let sum_gb = i128::try_from(sum)
        .ok()
        .and_then(|s| Decimal::try_from_i128_with_scale(s, 9).ok())
        .unwrap_or(Decimal::MAX);
    let gb_months = round_quantity(ratio(sum_gb, Decimal::from(month.intervals())));
    (gb_months, count)
}

fn colocation_lines(rate: &ColocationRate, month: Month, usage: &Usage) -> Vec<Line> {
    let mut lines: Vec<Line> = usage
        .cabinets
        .iter()
        .flat_map(|cabinet| cabinet_lines(rate, month, cabinet))
        .collect();
    if let Some(bandwidth) = &rate.bandwidth {
        let p = percentile95(&usage.colocation_bandwidth, month, bandwidth.direction);
        let commit = Commit {
            category: Category::Colocation,
            label: "Colocation bandwidth",
            commit: bandwidth.commit_mbps,
            fee: bandwidth.commit_fee,
            overage_price: bandwidth.overage_per_mbps,
        };
        lines.extend(percentile_lines(&commit, &p));
    }
    lines
}

/// The cabinet line and the power line of one assignment, prorated by the
/// milliseconds of the month it covers; none when it does not touch the month.
fn cabinet_lines(rate: &ColocationRate, month: Month, cabinet: &CabinetUse) -> Vec<Line> {
    let from = cabinet.from_ms.max(month.start_ms());
    let to = cabinet.to_ms.min(month.end_ms());
    if to <= from {
        return Vec::new();
    }
    let (assigned_ms, month_ms) = (Decimal::from(to - from), Decimal::from(month.duration_ms()));
    let month_share = ratio(assigned_ms, month_ms);
    let share = round_quantity(month_share);
    let cabinet_share = round_quantity(month_share.saturating_mul(cabinet.units_share));
    let kw_months = round_quantity(ratio(
        cabinet.contracted_kw.saturating_mul(assigned_ms),
        month_ms,
    ));
    let hours = ratio(assigned_ms, Decimal::from(3_600_000))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    let period = format!(
        "assigned {} to {} in {month}: {hours} of {} hours = {share} of the month",
        format_utc(from),
        format_utc(to),
        month.days() * 24,
    );
    let name = format!("{} ({})", cabinet.cabinet, cabinet.site);
    let kw = cabinet.contracted_kw.normalize();
    let cabinet_basis = if cabinet.units_share == Decimal::ONE {
        period.clone()
    } else {
        format!(
            "{period}; × {} of the cabinet's units = {cabinet_share}",
            cabinet.units_share.normalize()
        )
    };
    let mut lines = vec![line(
        Category::Colocation,
        format!("Cabinet {name}"),
        cabinet_share,
        "cabinet-month",
        rate.per_cabinet_month,
        cabinet_basis,
    )];
    if kw_months > Decimal::ZERO {
        lines.push(line(
            Category::Colocation,
            format!("Power {name}, {kw} kW contracted"),
            kw_months,
            "kW-month",
            rate.per_kw_month,
            format!("{kw} kW × {share} of the month; {period}"),
        ));
    }
    lines
}

/// The invoice's identifying fields.
struct Head<'a> {
    number: &'a str,
    tenant: &'a str,
    month: Month,
    plan: &'a str,
    currency: &'a str,
}

/// Adds the tax line and the totals. Every amount is already rounded to the cent, so
/// the totals are exact sums of the printed amounts.
fn finish(head: Head, mut lines: Vec<Line>, tax_rate: Decimal, uptime: Vec<Uptime>) -> Invoice {
    let subtotal = sum(&lines, |c| !matches!(c, Category::Credit | Category::Tax));
    let credits = sum(&lines, |c| c == Category::Credit);
    let taxable = subtotal.saturating_add(credits);
    let percent = tax_rate.saturating_mul(Decimal::ONE_HUNDRED).normalize();
    let tax_line = line(
        Category::Tax,
        format!("Tax {percent}%"),
        percent,
        "%",
        ratio(taxable, Decimal::ONE_HUNDRED),
        format!("{percent}% of {taxable} (subtotal {subtotal} + credits {credits})"),
    );
    if tax_line.amount > Decimal::ZERO {
        lines.push(tax_line);
    }
    let tax = sum(&lines, |c| c == Category::Tax);
    Invoice {
        number: head.number.into(),
        tenant: head.tenant.into(),
        month: head.month,
        plan: head.plan.into(),
        currency: head.currency.into(),
        total: taxable.saturating_add(tax),
        lines,
        subtotal,
        credits,
        tax,
        uptime,
    }
}

/// Sum of the amounts of the lines whose category passes `keep`, with 2 decimal places.
pub(crate) fn sum(lines: &[Line], keep: impl Fn(Category) -> bool) -> Decimal {
    let total = lines
        .iter()
        .filter(|l| keep(l.category))
        .fold(Decimal::ZERO, |acc, l| acc.saturating_add(l.amount));
    round_money(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::month::INTERVAL_MS;
    use crate::plan::{BandwidthCommit, CreditStep, SlaTerms};
    use crate::test_util::{NOVEMBER, d, sla_terms};

    const HOUR_MS: i64 = 3_600_000;

    fn plan() -> Plan {
        Plan {
            id: "all-in".into(),
            name: "All in".into(),
            currency: "CNY".into(),
            tax_rate: d("0.06"),
            cdn: Some(CdnRate::Percentile95 {
                direction: Direction::Out,
                commit_mbps: d("5"),
                commit_fee: d("100.00"),
                overage_per_mbps: d("10.00"),
            }),
            storage: Some(StorageRate {
                per_gb_month: d("0.02"),
                per_10k_requests: d("0.004"),
                egress_per_gb: d("0.05"),
            }),
            colocation: Some(ColocationRate {
                per_cabinet_month: d("800"),
                per_kw_month: d("150"),
                bandwidth: Some(BandwidthCommit {
                    direction: Direction::Max,
                    commit_mbps: d("100"),
                    commit_fee: d("200"),
                    overage_per_mbps: d("5"),
                }),
            }),
            sla: Some(sla_terms()),
        }
    }

    /// Interval i sends (i + 1) × 0.001 Mbps out: the 95th is 8.208 Mbps.
    fn ramp() -> Vec<Sample> {
        (0..8_640)
            .map(|i| Sample {
                start_ms: NOVEMBER.start_ms() + i * INTERVAL_MS,
                bytes_in: 0,
                bytes_out: (i as u64 + 1) * 37_500,
            })
            .collect()
    }

    fn outage(category: Category, start_h: i64, hours: i64) -> Outage {
        let start_ms = NOVEMBER.start_ms() + start_h * HOUR_MS;
        Outage {
            category,
            start_ms,
            end_ms: start_ms + hours * HOUR_MS,
            what: "edge-bj-1".into(),
        }
    }

    fn usage() -> Usage {
        let half_month = NOVEMBER.start_ms() + 15 * 24 * HOUR_MS;
        Usage {
            cdn: ramp(),
            // 1,000 GB stored in the first 4,320 intervals (half the month): 500 GB-month.
            storage_stored_bytes: (0..4_320)
                .map(|i| (NOVEMBER.start_ms() + i * INTERVAL_MS, 1_000_000_000_000))
                .collect(),
            storage_requests: 1_234_567,
            storage_egress_bytes: 12_345_000_000,
            cabinets: vec![
                CabinetUse {
                    cabinet: "A01".into(),
                    site: "bj-1".into(),
                    contracted_kw: d("5"),
                    units_share: Decimal::ONE,
                    from_ms: 0,
                    to_ms: i64::MAX,
                },
                CabinetUse {
                    cabinet: "A02".into(),
                    site: "bj-1".into(),
                    contracted_kw: d("4"),
                    units_share: Decimal::ONE,
                    from_ms: half_month,
                    to_ms: i64::MAX,
                },
                CabinetUse {
                    cabinet: "Z99".into(),
                    site: "sh-1".into(),
                    contracted_kw: d("4"),
                    units_share: Decimal::ONE,
                    from_ms: 0,
                    to_ms: NOVEMBER.start_ms(),
                },
            ],
            colocation_bandwidth: Vec::new(),
            outages: vec![
                outage(Category::Cdn, 100, 2),
                outage(Category::Colocation, 200, 10),
            ],
        }
    }

    fn find<'a>(inv: &'a Invoice, description: &str) -> &'a Line {
        inv.lines
            .iter()
            .find(|l| l.description.starts_with(description))
            .unwrap_or_else(|| panic!("no line {description}: {:#?}", inv.lines))
    }

    #[test]
    fn round_money_is_half_away_from_zero() {
        assert_eq!(round_money(d("0.005")).to_string(), "0.01");
        assert_eq!(round_money(d("-0.005")).to_string(), "-0.01");
        assert_eq!(round_money(d("2.675")).to_string(), "2.68"); // 2.67 in f64
        assert_eq!(round_money(d("1.234")).to_string(), "1.23");
        assert_eq!(round_money(d("7")).to_string(), "7.00");
        assert_eq!(round_money(d("0.1049999")).to_string(), "0.10");
    }

    #[test]
    fn full_invoice_by_hand() {
        let inv = rate("acme", "INV-2026-11-0001", NOVEMBER, &plan(), &usage());
        let expect = |description: &str, quantity: &str, amount: &str| {
            let line = find(&inv, description);
            assert_eq!(
                (line.quantity, line.amount),
                (d(quantity), d(amount)),
                "{line:#?}"
            );
        };
        // CDN: commit 100.00; 95th 8.208 Mbps − 5 = 3.208 Mbps × 10.00 = 32.08.
        expect("CDN commit", "1", "100.00");
        expect("CDN overage", "3.208", "32.08");
        // Storage: 500 GB-month × 0.02 = 10.00; 123.4567 × 0.004 = 0.4938268 → 0.49;
        // 12.345 GB × 0.05 = 0.61725 → 0.62.
        expect("Storage", "500", "10.00");
        expect("Storage requests", "123.4567", "0.49");
        expect("Storage egress", "12.345", "0.62");
        // Colocation: A01 whole month 800 + 5 kW × 150 = 750; A02 half: 400 + 2 × 150 = 300;
        // bandwidth commit 200 (no traffic); Z99 ended before the month: no lines.
        expect("Cabinet A01 (bj-1)", "1", "800.00");
        expect("Power A01 (bj-1)", "5", "750.00");
        expect("Cabinet A02 (bj-1)", "0.5", "400.00");
        expect("Power A02 (bj-1)", "2", "300.00");
        expect("Colocation bandwidth commit", "1", "200.00");
        assert!(inv.lines.iter().all(|l| !l.description.contains("Z99")));
        assert!(
            inv.lines
                .iter()
                .all(|l| !l.description.contains("overage") || l.category == Category::Cdn)
        );
        // Subtotal: 132.08 + 11.11 + 2450.00.
        assert_eq!(inv.subtotal, d("2593.19"));
        // Credits: CDN 2 h down → 99.7222% → 10% of 132.08 = 13.208 → 13.21;
        // colocation 10 h down → 98.6111% → 25% of 2450.00 = 612.50.
        expect("SLA credit: CDN", "10", "-13.21");
        expect("SLA credit: Colocation", "25", "-612.50");
        assert_eq!(inv.credits, d("-625.71"));
        // Tax: 6% of 1967.48 = 118.0488 → 118.05.
        expect("Tax 6%", "6", "118.05");
        assert_eq!(inv.tax, d("118.05"));
        assert_eq!(
            find(&inv, "Tax").basis,
            "6% of 1967.48 (subtotal 2593.19 + credits -625.71)"
        );
        assert_eq!(inv.total, d("2085.53"));
        assert_eq!(inv.lines.len(), 13);
        assert_eq!(inv.lines.last().map(|l| l.category), Some(Category::Tax));
        for line in &inv.lines {
            assert_eq!(
                line.amount,
                round_money(line.quantity * line.unit_price),
                "{line:#?}"
            );
        }
        assert_eq!(
            (
                inv.plan.as_str(),
                inv.currency.as_str(),
                inv.tenant.as_str()
            ),
            ("all-in", "CNY", "acme")
        );
        assert_eq!(inv.uptime.len(), 2);
        assert_eq!(inv.uptime[0].percent, d("99.7222"));
        assert_eq!(inv.uptime[1].percent, d("98.6111"));
        assert_eq!(inv.uptime[1].downtime_minutes, d("600"));
    }

    #[test]
    fn cdn_basis_is_the_percentile_basis() {
        let inv = rate("acme", "1", NOVEMBER, &plan(), &usage());
        let overage = find(&inv, "CDN overage");
        assert_eq!(
            overage.basis,
            "95th percentile of out: 433rd highest of 8640 five-minute samples (top 432 dropped), \
             2026-11-29T11:55:00Z, 8.208 Mbps; commit 5 Mbps; overage 8.208 − 5 = 3.208 Mbps"
        );
        assert_eq!(overage.unit, "Mbps");
    }

    #[test]
    fn commit_line_without_traffic() {
        let bare = Plan {
            storage: None,
            colocation: None,
            sla: None,
            ..plan()
        };
        let inv = rate("acme", "1", NOVEMBER, &bare, &Usage::default());
        assert_eq!(inv.lines.len(), 2); // commit + tax
        assert_eq!(inv.lines[0].description, "CDN commit");
        assert_eq!(inv.lines[0].unit, "month");
        assert_eq!(inv.subtotal, d("100.00"));
        assert_eq!(inv.tax, d("6.00"));
        assert_eq!(inv.total, d("106.00"));
        assert!(inv.uptime.is_empty());
    }

    #[test]
    fn empty_plan_rates_to_zero() {
        let empty = Plan {
            cdn: None,
            storage: None,
            colocation: None,
            sla: None,
            ..plan()
        };
        let inv = rate("acme", "1", NOVEMBER, &empty, &usage());
        assert!(inv.lines.is_empty());
        assert_eq!(
            (inv.subtotal, inv.credits, inv.tax, inv.total),
            (d("0"), d("0"), d("0"), d("0"))
        );
        assert_eq!(inv.total.to_string(), "0.00");
    }

    #[test]
    fn transfer_plan() {
        let transfer = Plan {
            cdn: Some(CdnRate::Transfer {
                commit_gb: d("1000"),
                commit_fee: d("50"),
                overage_per_gb: d("0.08"),
            }),
            storage: None,
            colocation: None,
            sla: None,
            tax_rate: d("0"),
            ..plan()
        };
        // 1,234.567891234 GB out (and inbound traffic, which does not count).
        let usage = Usage {
            cdn: vec![
                Sample {
                    start_ms: NOVEMBER.start_ms(),
                    bytes_in: 9_999_999_999_999,
                    bytes_out: 1_000_000_000_000,
                },
                Sample {
                    start_ms: NOVEMBER.end_ms() - INTERVAL_MS,
                    bytes_in: 0,
                    bytes_out: 234_567_891_234,
                },
                Sample {
                    start_ms: NOVEMBER.end_ms(),
                    bytes_in: 0,
                    bytes_out: 1_000_000_000_000,
                },
            ],
            ..Usage::default()
        };
        let inv = rate("acme", "1", NOVEMBER, &transfer, &usage);
        let overage = find(&inv, "CDN overage");
        assert_eq!(overage.quantity, d("234.567891234"));
        assert_eq!(overage.unit, "GB");
        // 234.567891234 × 0.08 = 18.76543129872 → 18.77
        assert_eq!(overage.amount, d("18.77"));
        assert_eq!(inv.total, d("68.77"));
        assert!(
            overage
                .basis
                .starts_with("1234567891234 bytes out in 2026-11 = 1234.567891234 GB"),
            "{}",
            overage.basis
        );
    }

    #[test]
    fn storage_created_mid_month_is_pro_rata_and_zero_lines_omitted() {
        let storage_only = Plan {
            cdn: None,
            colocation: None,
            sla: None,
            tax_rate: d("0"),
            ..plan()
        };
        // 3 GB for the last 2,880 intervals (10 days of 30): 1 GB-month; one sample in
        // December does not count.
        let mut stored: Vec<(i64, u64)> = (5_760..8_640)
            .map(|i| (NOVEMBER.start_ms() + i * INTERVAL_MS, 3_000_000_000))
            .collect();
        stored.push((NOVEMBER.end_ms(), 1_000_000_000_000_000));
        let usage = Usage {
            storage_stored_bytes: stored,
            ..Usage::default()
        };
        let inv = rate("acme", "1", NOVEMBER, &storage_only, &usage);
        assert_eq!(inv.lines.len(), 1);
        assert_eq!(inv.lines[0].quantity, d("1"));
        assert_eq!(inv.lines[0].unit, "GB-month");
        assert_eq!(inv.total, d("0.02"));
        // Nothing stored or requested: no storage lines at all.
        let inv = rate("acme", "1", NOVEMBER, &storage_only, &Usage::default());
        assert!(inv.lines.is_empty());
    }

    #[test]
    fn stored_gb_months_round_to_six_places() {
        // 1 byte in one interval of 8,640: 1 / 8640 / 1e9 GB-month = 1.157e-13 → 0.
        assert_eq!(
            stored_gb_months(&[(NOVEMBER.start_ms(), 1)], NOVEMBER),
            (d("0"), 1)
        );
        // 8,640 bytes × 1,000,000 in one interval: 1e10 / 8640 / 1e9 = 0.00115740740... → 0.001157
        let (gb, _) = stored_gb_months(&[(NOVEMBER.start_ms(), 8_640_000_000)], NOVEMBER);
        assert_eq!(gb, d("0.001"));
        let (gb, _) = stored_gb_months(&[(NOVEMBER.start_ms(), 10_000_000_000)], NOVEMBER);
        assert_eq!(gb, d("0.001157"));
    }

    #[test]
    fn cabinet_assignment_prorated_by_milliseconds() {
        let colo_only = Plan {
            cdn: None,
            storage: None,
            sla: None,
            tax_rate: d("0"),
            ..plan()
        };
        let colo_only = Plan {
            colocation: colo_only.colocation.map(|c| ColocationRate {
                bandwidth: None,
                ..c
            }),
            ..colo_only
        };
        // 1 hour of 720: 0.001388888... → 0.001389 cabinet-months; 3 kW → 0.004167 kW-months.
        let start = NOVEMBER.start_ms() + 10 * HOUR_MS;
        let usage = Usage {
            cabinets: vec![CabinetUse {
                cabinet: "B07".into(),
                site: "sh-1".into(),
                contracted_kw: d("3"),
                units_share: Decimal::ONE,
                from_ms: start,
                to_ms: start + HOUR_MS,
            }],
            ..Usage::default()
        };
        let inv = rate("acme", "1", NOVEMBER, &colo_only, &usage);
        assert_eq!(inv.lines.len(), 2);
        assert_eq!(inv.lines[0].quantity, d("0.001389"));
        assert_eq!(inv.lines[0].amount, d("1.11")); // 0.001389 × 800 = 1.1112
        assert_eq!(
            inv.lines[0].basis,
            "assigned 2026-11-01T10:00:00Z to 2026-11-01T11:00:00Z in 2026-11: 1 of 720 hours = 0.001389 of the month"
        );
        assert_eq!(inv.lines[1].quantity, d("0.004167"));
        assert_eq!(inv.lines[1].unit, "kW-month");
        assert_eq!(inv.lines[1].amount, d("0.63")); // 0.004167 × 150 = 0.62505
        // A reversed or empty period yields nothing.
        let usage = Usage {
            cabinets: vec![CabinetUse {
                from_ms: start,
                to_ms: start,
                ..usage.cabinets[0].clone()
            }],
            ..Usage::default()
        };
        assert!(
            rate("acme", "1", NOVEMBER, &colo_only, &usage)
                .lines
                .is_empty()
        );
    }

    #[test]
    fn colocation_bandwidth_overage() {
        let colo_only = Plan {
            cdn: None,
            storage: None,
            sla: None,
            tax_rate: d("0"),
            ..plan()
        };
        // Max of in (constant 120 Mbps = 4,500,000,000 bytes) and out (0): 120 − 100 = 20 Mbps × 5.
        let samples: Vec<Sample> = (0..8_640)
            .map(|i| Sample {
                start_ms: NOVEMBER.start_ms() + i * INTERVAL_MS,
                bytes_in: 4_500_000_000,
                bytes_out: 0,
            })
            .collect();
        let usage = Usage {
            colocation_bandwidth: samples,
            ..Usage::default()
        };
        let inv = rate("acme", "1", NOVEMBER, &colo_only, &usage);
        let overage = find(&inv, "Colocation bandwidth overage");
        assert_eq!((overage.quantity, overage.amount), (d("20"), d("100.00")));
        assert_eq!(overage.category, Category::Colocation);
        assert_eq!(inv.total, d("300.00"));
    }

    #[test]
    fn sla_credits_by_outage_length() {
        let cdn_only = Plan {
            storage: None,
            colocation: None,
            tax_rate: d("0"),
            ..plan()
        };
        let usage_with = |outages| Usage {
            cdn: ramp(),
            outages,
            ..Usage::default()
        };
        // CDN charges: 132.08.
        let inv = rate(
            "acme",
            "1",
            NOVEMBER,
            &cdn_only,
            &usage_with(vec![outage(Category::Cdn, 5, 2)]),
        );
        assert_eq!(inv.uptime[0].percent, d("99.7222"));
        assert_eq!(inv.uptime[0].credit_percent, d("10"));
        assert_eq!(inv.credits, d("-13.21"));
        // 10 hours: 100 × (43200 − 600) / 43200 = 98.6111... → 25%: 33.02.
        let inv = rate(
            "acme",
            "1",
            NOVEMBER,
            &cdn_only,
            &usage_with(vec![outage(Category::Cdn, 5, 10)]),
        );
        assert_eq!(inv.uptime[0].percent, d("98.6111"));
        assert_eq!(inv.uptime[0].credit_percent, d("25"));
        assert_eq!(inv.credits, d("-33.02"));
        assert_eq!(inv.total, d("99.06"));
        // Overlapping outages (5h–7h and 6h–8h, one inside) count 3 hours once: 99.5833.
        let overlapping = vec![
            outage(Category::Cdn, 5, 2),
            outage(Category::Cdn, 6, 2),
            outage(Category::Cdn, 6, 1),
        ];
        let inv = rate("acme", "1", NOVEMBER, &cdn_only, &usage_with(overlapping));
        assert_eq!(inv.uptime[0].percent, d("99.5833"));
        assert_eq!(inv.uptime[0].downtime_minutes, d("180"));
        assert_eq!(inv.uptime[0].outages.len(), 3);
        // A colocation outage does not credit CDN lines (and the plan measures only CDN).
        let inv = rate(
            "acme",
            "1",
            NOVEMBER,
            &cdn_only,
            &usage_with(vec![outage(Category::Colocation, 5, 100)]),
        );
        assert_eq!(inv.uptime.len(), 1);
        assert_eq!(inv.uptime[0].percent, d("100"));
        assert_eq!(inv.credits, d("0"));
        assert!(inv.lines.iter().all(|l| l.category != Category::Credit));
    }

    #[test]
    fn credit_line_names_uptime_and_outages() {
        let cdn_only = Plan {
            storage: None,
            colocation: None,
            tax_rate: d("0"),
            ..plan()
        };
        let usage = Usage {
            cdn: ramp(),
            outages: vec![outage(Category::Cdn, 5, 2)],
            ..Usage::default()
        };
        let inv = rate("acme", "1", NOVEMBER, &cdn_only, &usage);
        let credit = find(&inv, "SLA credit");
        assert_eq!(
            credit.description,
            "SLA credit: CDN uptime 99.7222% below the 99.90% target"
        );
        assert_eq!(credit.unit, "%");
        assert_eq!(credit.unit_price, d("-1.3208"));
        assert_eq!(
            credit.basis,
            "10% of CDN charges 132.08; downtime 120 min: \
             2026-11-01T05:00:00Z to 2026-11-01T07:00:00Z (120 min, edge-bj-1)"
        );
    }

    #[test]
    fn money_exact_across_a_million_lines() {
        // Line i: quantity i at 0.01 → i cents. Sum = 0.01 × n(n + 1) / 2 with n = 10^6
        // = 0.01 × 500,000,500,000 = 5,000,005,000.00.
        let n = 1_000_000i64;
        let price = d("0.01");
        let lines: Vec<Line> = (1..=n)
            .map(|i| {
                line(
                    Category::Cdn,
                    String::new(),
                    Decimal::from(i),
                    "",
                    price,
                    String::new(),
                )
            })
            .collect();
        let head = Head {
            number: "1",
            tenant: "t",
            month: NOVEMBER,
            plan: "p",
            currency: "CNY",
        };
        let inv = finish(head, lines, Decimal::ZERO, Vec::new());
        assert_eq!(inv.subtotal, d("5000005000.00"));
        assert_eq!(inv.total, d("5000005000.00"));
        // The same sum in f64 is off.
        let float: f64 = (1..=n).map(|i| i as f64 * 0.01).sum();
        assert_ne!(float, 5_000_005_000.0);
    }

    #[test]
    fn half_cent_lines_round_each_then_sum() {
        // 10,000 lines of 0.005 → each 0.01 → 100.00 (not 50.00).
        let lines: Vec<Line> = (0..10_000)
            .map(|_| line(Category::Storage, "x", d("1"), "GB", d("0.005"), ""))
            .collect();
        let head = Head {
            number: "1",
            tenant: "t",
            month: NOVEMBER,
            plan: "p",
            currency: "CNY",
        };
        let inv = finish(head, lines, d("0.1"), Vec::new());
        assert_eq!(inv.subtotal, d("100.00"));
        assert_eq!(inv.tax, d("10.00"));
        assert_eq!(inv.total, d("110.00"));
    }

    #[test]
    fn unchecked_plan_does_not_panic() {
        let wild = Plan {
            tax_rate: d("-5"),
            cdn: Some(CdnRate::Percentile95 {
                direction: Direction::Aggregate,
                commit_mbps: Decimal::MIN,
                commit_fee: Decimal::MAX,
                overage_per_mbps: Decimal::MAX,
            }),
            storage: Some(StorageRate {
                per_gb_month: Decimal::MAX,
                per_10k_requests: Decimal::MIN,
                egress_per_gb: Decimal::MAX,
            }),
            colocation: Some(ColocationRate {
                per_cabinet_month: Decimal::MAX,
                per_kw_month: Decimal::MAX,
                bandwidth: None,
            }),
            sla: Some(SlaTerms {
                target_percent: d("-1"),
                schedule: vec![CreditStep {
                    below_percent: d("1000"),
                    credit_percent: Decimal::MAX,
                }],
            }),
            ..plan()
        };
        let mut usage = usage();
        usage.storage_requests = u64::MAX;
        usage.storage_egress_bytes = u64::MAX;
        usage.cabinets[0].contracted_kw = Decimal::MAX;
        usage.outages.push(Outage {
            category: Category::Cdn,
            start_ms: i64::MIN,
            end_ms: i64::MAX,
            what: String::new(),
        });
        let _ = rate("acme", "1", NOVEMBER, &wild, &usage);
        let odd_month = Month {
            year: i32::MAX,
            month: 12,
        };
        let _ = rate("acme", "1", odd_month, &wild, &usage);
    }

    #[test]
    fn serde_shapes() {
        let inv = rate("acme", "1", NOVEMBER, &plan(), &usage());
        let json = serde_json::to_value(&inv).expect("json");
        assert_eq!(json["month"], "2026-11");
        assert_eq!(json["total"], "2085.53");
        assert_eq!(json["lines"][0]["category"], "cdn");
        assert_eq!(serde_json::from_value::<Invoice>(json).expect("back"), inv);
        let usage: Usage =
            serde_json::from_str(r#"{"storage_stored_bytes":[[0,5]],"storage_requests":3}"#)
                .expect("usage");
        assert_eq!(usage.storage_stored_bytes, vec![(0, 5)]);
        assert!(serde_json::from_str::<Usage>(r#"{"cdn":[],"typo":1}"#).is_err());
    }

    #[test]
    fn openapi_schemas_build() {
        let mut schemas = Vec::new();
        <Invoice as utoipa::ToSchema>::schemas(&mut schemas);
        let month = schemas
            .iter()
            .find(|(name, _)| name == "Month")
            .expect("Month schema");
        let month = serde_json::to_value(&month.1).expect("json");
        assert_eq!(month["type"], "string");
        assert_eq!(month["examples"][0], "2026-11");
        let line = serde_json::to_value(<Line as utoipa::PartialSchema>::schema()).expect("json");
        assert_eq!(line["properties"]["amount"]["type"], "string");
    }
}
