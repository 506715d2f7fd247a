//! The operator's segment note: revenue, cost and gross margin per segment (IDC
//! colocation, edge computing) and per site, with shared site costs split by the site's
//! revenue share and bandwidth contracts priced by the site's measured 95th percentile.

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::invoice::{ratio, round_money};
use crate::month::Month;
use crate::percentile::{Direction, Sample, percentile95};

/// A reporting segment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// IDC colocation.
    Idc,
    /// Edge computing: CDN, storage (later AI).
    Edge,
}

impl Segment {
    /// Both segments, in report order.
    pub const ALL: [Segment; 2] = [Segment::Idc, Segment::Edge];

    fn label(self) -> &'static str {
        match self {
            Segment::Idc => "idc",
            Segment::Edge => "edge",
        }
    }
}

/// Revenue of one segment (e.g. the month's invoices, summed by the caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Revenue {
    /// The segment earning it.
    pub segment: Segment,
    /// The site earning it; `None`: not attributable to a site.
    #[serde(default)]
    pub site: Option<String>,
    /// Amount (rounded to the cent by the report).
    pub amount: Decimal,
}

/// How a cost item's monthly amount is found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CostBasis {
    /// A fixed monthly amount.
    Flat {
        /// The month's cost.
        monthly: Decimal,
    },
    /// A bandwidth contract billed at max(commit, the site's measured 95th) × price.
    Percentile95 {
        /// Which of the site's traffic the carrier bills.
        direction: Direction,
        /// Price per Mbps.
        price_per_mbps: Decimal,
        /// Mbps committed (billed even when unused).
        commit_mbps: Decimal,
    },
}

/// One cost of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostItem {
    /// The site bearing the cost.
    pub site: String,
    /// The segment bearing it; `None`: shared, split by the site's revenue share per
    /// segment, or evenly when the site has no revenue.
    #[serde(default)]
    pub segment: Option<Segment>,
    /// What the cost is.
    pub description: String,
    /// The line (carrier) a bandwidth contract is with: its 95th percentile is of that
    /// line's traffic at the site (absent: all of the site's traffic).
    #[serde(default)]
    pub line: Option<String>,
    /// How the amount is found.
    pub basis: CostBasis,
}

/// A site's measured traffic (for [`CostBasis::Percentile95`] items).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteTraffic {
    /// Site name.
    pub site: String,
    /// The line this traffic went over (absent: not told apart).
    #[serde(default)]
    pub line: Option<String>,
    /// 5-minute samples; rows of the same interval are summed.
    pub samples: Vec<Sample>,
}

/// Revenue, cost and margin of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentLine {
    /// The segment.
    pub segment: Segment,
    /// Revenue.
    pub revenue: Decimal,
    /// Attributed cost (dedicated plus its share of shared costs).
    pub cost: Decimal,
    /// revenue − cost.
    pub gross_margin: Decimal,
    /// gross_margin / revenue in percent, 2 decimal places; `None` when revenue is 0.
    pub margin_percent: Option<Decimal>,
    /// This segment's share of total revenue in percent, 2 decimal places; `None` when
    /// total revenue is 0.
    pub share_of_revenue_percent: Option<Decimal>,
}

/// Revenue, cost and margin of one site (revenue without a site is not in any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SiteLine {
    /// Site name.
    pub site: String,
    /// Revenue attributed to the site.
    pub revenue: Decimal,
    /// Costs of the site.
    pub cost: Decimal,
    /// revenue − cost.
    pub gross_margin: Decimal,
    /// gross_margin / revenue in percent, 2 decimal places; `None` when revenue is 0.
    pub margin_percent: Option<Decimal>,
}

/// One priced cost item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CostLine {
    /// The site bearing the cost.
    pub site: String,
    /// The segment bearing it; `None`: shared (the basis says how it was split).
    pub segment: Option<Segment>,
    /// What the cost is.
    pub description: String,
    /// The month's amount.
    pub amount: Decimal,
    /// How the amount was found and split.
    pub basis: String,
}

/// Totals over both segments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    /// Total revenue.
    pub revenue: Decimal,
    /// Total cost.
    pub cost: Decimal,
    /// revenue − cost.
    pub gross_margin: Decimal,
    /// gross_margin / revenue in percent, 2 decimal places; `None` when revenue is 0.
    pub margin_percent: Option<Decimal>,
}

/// The segment note for one month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentReport {
    /// The month reported.
    pub month: Month,
    /// Currency of every amount.
    pub currency: String,
    /// IDC, then edge.
    pub segments: Vec<SegmentLine>,
    /// Sites by name.
    pub sites: Vec<SiteLine>,
    /// Every cost item, priced, in input order.
    pub costs: Vec<CostLine>,
    /// Both segments together (exact sums of the segment lines).
    pub total: Totals,
}

/// Builds the segment note: every amount rounded to the cent, totals exact sums.
pub fn segment_report(
    month: Month,
    currency: &str,
    revenue: &[Revenue],
    costs: &[CostItem],
    traffic: &[SiteTraffic],
) -> SegmentReport {
    let site_revenue = revenue_by_site(revenue);
    let mut ledger = Ledger::default();
    for r in revenue {
        ledger.add_revenue(r.segment, r.site.as_deref(), round_money(r.amount));
    }
    let cost_lines: Vec<CostLine> = costs
        .iter()
        .map(|item| {
            let (amount, basis) = price(item, month, traffic);
            let split = split(item.segment, amount, site_revenue.get(item.site.as_str()));
            ledger.add_cost(&item.site, &split);
            CostLine {
                site: item.site.clone(),
                segment: item.segment,
                description: item.description.clone(),
                amount,
                basis: format!("{basis}{}", split.note),
            }
        })
        .collect();
    ledger.report(month, currency, cost_lines)
}

/// Per-segment amounts (`[idc, edge]`).
type BySegment = [Decimal; 2];

fn slot(segment: Segment) -> usize {
    match segment {
        Segment::Idc => 0,
        Segment::Edge => 1,
    }
}

/// Each site's revenue per segment (rounded to the cent).
fn revenue_by_site(revenue: &[Revenue]) -> BTreeMap<&str, BySegment> {
    let mut sites: BTreeMap<&str, BySegment> = BTreeMap::new();
    for r in revenue {
        if let Some(site) = r.site.as_deref() {
            let entry = sites.entry(site).or_default();
            entry[slot(r.segment)] = entry[slot(r.segment)].saturating_add(round_money(r.amount));
        }
    }
    sites
}

/// The month's amount of a cost item, rounded to the cent, and how it was found.
fn price(item: &CostItem, month: Month, traffic: &[SiteTraffic]) -> (Decimal, String) {
    match &item.basis {
        CostBasis::Flat { monthly } => {
            let amount = round_money(*monthly);
            (amount, format!("flat {amount} a month"))
        }
        CostBasis::Percentile95 {
            direction,
            price_per_mbps,
            commit_mbps,
        } => {
            let samples: Vec<Sample> = traffic
                .iter()
                .filter(|t| t.site == item.site && (item.line.is_none() || t.line == item.line))
                .flat_map(|t| t.samples.iter().copied())
                .collect();
            let p = percentile95(&samples, month, *direction);
            let billed = p.mbps.max(*commit_mbps).normalize();
            let amount = round_money(billed.saturating_mul(*price_per_mbps));
            let basis = format!(
                "max(commit {} Mbps, measured {} Mbps) = {billed} Mbps × {} per Mbps; {}",
                commit_mbps.normalize(),
                p.mbps,
                price_per_mbps.normalize(),
                p.basis,
            );
            (amount, basis)
        }
    }
}

/// A cost divided between the segments, and a note saying how.
struct Split {
    amounts: BySegment,
    note: String,
}

/// Attributes `amount` to its segment, or splits a shared cost by the site's revenue
/// share (negative revenue counts as 0), evenly when the site has none. The IDC part is
/// rounded to the cent and edge gets the rest, so the parts sum to the amount exactly.
fn split(segment: Option<Segment>, amount: Decimal, site_revenue: Option<&BySegment>) -> Split {
    if let Some(segment) = segment {
        let mut amounts = BySegment::default();
        amounts[slot(segment)] = amount;
        return Split {
            amounts,
            note: String::new(),
        };
    }
    let [idc_rev, edge_rev] = site_revenue
        .copied()
        .unwrap_or_default()
        .map(|r| r.max(Decimal::ZERO));
    let site_total = idc_rev.saturating_add(edge_rev);
    let (idc, how) = if site_total > Decimal::ZERO {
        let idc = round_money(ratio(amount.saturating_mul(idc_rev), site_total));
        let share = percent(idc_rev, site_total).unwrap_or_default();
        (idc, format!("by site revenue share (idc {share}%)"))
    } else {
        (
            round_money(ratio(amount, Decimal::TWO)),
            "evenly (the site has no revenue)".to_string(),
        )
    };
    let edge = amount.saturating_sub(idc);
    Split {
        amounts: [idc, edge],
        note: format!("; shared, split {how}: idc {idc}, edge {edge}"),
    }
}

/// `part / whole` in percent, 2 decimal places; `None` when `whole` is 0.
fn percent(part: Decimal, whole: Decimal) -> Option<Decimal> {
    let fraction = part.checked_div(whole)?;
    let mut percent = fraction
        .saturating_mul(Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    percent.rescale(2);
    Some(percent)
}

/// Running sums per segment and per site.
#[derive(Default)]
struct Ledger {
    revenue: BySegment,
    cost: BySegment,
    sites: BTreeMap<String, (Decimal, Decimal)>,
}

impl Ledger {
    fn add_revenue(&mut self, segment: Segment, site: Option<&str>, amount: Decimal) {
        let s = slot(segment);
        self.revenue[s] = self.revenue[s].saturating_add(amount);
        if let Some(site) = site {
            let entry = self.sites.entry(site.to_string()).or_default();
            entry.0 = entry.0.saturating_add(amount);
        }
    }

    fn add_cost(&mut self, site: &str, split: &Split) {
        for (total, part) in self.cost.iter_mut().zip(split.amounts) {
            *total = total.saturating_add(part);
        }
        let entry = self.sites.entry(site.to_string()).or_default();
        entry.1 = entry
            .1
            .saturating_add(split.amounts[0].saturating_add(split.amounts[1]));
    }

    fn report(self, month: Month, currency: &str, costs: Vec<CostLine>) -> SegmentReport {
        let total_revenue = self.revenue[0].saturating_add(self.revenue[1]);
        let segments = Segment::ALL
            .iter()
            .map(|&segment| {
                let s = slot(segment);
                let (revenue, cost) = (self.revenue[s], self.cost[s]);
                SegmentLine {
                    segment,
                    revenue,
                    cost,
                    gross_margin: revenue.saturating_sub(cost),
                    margin_percent: percent(revenue.saturating_sub(cost), revenue),
                    share_of_revenue_percent: percent(revenue, total_revenue),
                }
            })
            .collect();
        let sites = self
            .sites
            .into_iter()
            .map(|(site, (revenue, cost))| SiteLine {
                site,
                revenue,
                cost,
                gross_margin: revenue.saturating_sub(cost),
                margin_percent: percent(revenue.saturating_sub(cost), revenue),
            })
            .collect();
        let total_cost = self.cost[0].saturating_add(self.cost[1]);
        let total = Totals {
            revenue: total_revenue,
            cost: total_cost,
            gross_margin: total_revenue.saturating_sub(total_cost),
            margin_percent: percent(total_revenue.saturating_sub(total_cost), total_revenue),
        };
        SegmentReport {
            month,
            currency: currency.to_string(),
            segments,
            sites,
            costs,
            total,
        }
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::month::INTERVAL_MS;
    use crate::test_util::{NOVEMBER, d};

    fn revenue(segment: Segment, site: Option<&str>, amount: &str) -> Revenue {
        Revenue {
            segment,
            site: site.map(str::to_string),
            amount: d(amount),
        }
    }

    fn cost(site: &str, segment: Option<Segment>, description: &str, basis: CostBasis) -> CostItem {
        CostItem {
            site: site.into(),
            segment,
            description: description.into(),
            line: None,
            basis,
        }
    }

    fn flat(monthly: &str) -> CostBasis {
        CostBasis::Flat {
            monthly: d(monthly),
        }
    }

    /// One node's samples: the first 432 intervals at `peak` bytes, the rest at `base`.
    fn node(site: &str, peak: u64, base: u64) -> SiteTraffic {
        let samples = (0..8_640)
            .map(|i| Sample {
                start_ms: NOVEMBER.start_ms() + i * INTERVAL_MS,
                bytes_in: 0,
                bytes_out: if i < 432 { peak } else { base },
            })
            .collect();
        SiteTraffic {
            site: site.into(),
            line: None,
            samples,
        }
    }

    fn example() -> SegmentReport {
        let revenue = [
            revenue(Segment::Idc, Some("bj-1"), "6000"),
            revenue(Segment::Edge, Some("bj-1"), "4000"),
            revenue(Segment::Edge, Some("sh-1"), "3000"),
            revenue(Segment::Edge, None, "500"),
        ];
        let costs = [
            cost("bj-1", None, "building, power, cooling", flat("1000")),
            cost("bj-1", Some(Segment::Idc), "cabinet lease", flat("2500")),
            cost("sh-1", Some(Segment::Edge), "servers", flat("200")),
            cost(
                "sh-1",
                None,
                "transit",
                CostBasis::Percentile95 {
                    direction: Direction::Out,
                    price_per_mbps: d("2.00"),
                    commit_mbps: d("100"),
                },
            ),
            cost("gz-1", None, "rent", flat("100.01")),
            cost(
                "gz-1",
                Some(Segment::Idc),
                "cross-connect",
                CostBasis::Percentile95 {
                    direction: Direction::Max,
                    price_per_mbps: d("1.5"),
                    commit_mbps: d("200"),
                },
            ),
        ];
        // sh-1: two nodes, each 500 Mbps in the top 432 intervals and 75 Mbps otherwise:
        // summed 1000 / 150 Mbps, so the 95th is 150 Mbps. bj-1's traffic is not sh-1's.
        let traffic = [
            node("sh-1", 18_750_000_000, 2_812_500_000),
            node("sh-1", 18_750_000_000, 2_812_500_000),
            node("bj-1", 99_000_000_000, 99_000_000_000),
        ];
        segment_report(NOVEMBER, "CNY", &revenue, &costs, &traffic)
    }

    #[test]
    fn costs_priced_and_split() {
        let report = example();
        let amounts: Vec<Decimal> = report.costs.iter().map(|c| c.amount).collect();
        // 150 Mbps × 2.00 = 300.00; gz-1 cross-connect: no traffic, commit 200 × 1.5 = 300.00.
        assert_eq!(
            amounts,
            ["1000.00", "2500.00", "200.00", "300.00", "100.01", "300.00"].map(d)
        );
        // bj-1 revenue: idc 6000 of 10000 → 60% of 1000.
        assert!(
            report.costs[0].basis.ends_with(
                "; shared, split by site revenue share (idc 60.00%): idc 600.00, edge 400.00"
            ),
            "{}",
            report.costs[0].basis
        );
        // sh-1 earns only edge revenue: the transit is all edge.
        assert!(report.costs[3].basis.starts_with("max(commit 100 Mbps, measured 150 Mbps) = 150 Mbps × 2 per Mbps; 95th percentile of out"));
        assert!(
            report.costs[3].basis.ends_with("idc 0.00, edge 300.00"),
            "{}",
            report.costs[3].basis
        );
        // gz-1 has no revenue: 100.01 evenly, 50.005 → idc 50.01, edge the rest 50.00.
        assert!(
            report.costs[4]
                .basis
                .ends_with("split evenly (the site has no revenue): idc 50.01, edge 50.00")
        );
        assert_eq!(report.costs[4].segment, None);
        assert_eq!(report.costs[5].segment, Some(Segment::Idc));
    }

    #[test]
    fn segments_and_totals_by_hand() {
        let report = example();
        let idc = &report.segments[0];
        let edge = &report.segments[1];
        assert_eq!(idc.segment, Segment::Idc);
        assert_eq!(edge.segment, Segment::Edge);
        // IDC: revenue 6000; cost 600 + 2500 + 50.01 + 300 = 3450.01; margin 2549.99 =
        // 42.49983% → 42.50; share 6000 / 13500 = 44.444% → 44.44.
        assert_eq!(
            (idc.revenue, idc.cost, idc.gross_margin),
            (d("6000.00"), d("3450.01"), d("2549.99"))
        );
        assert_eq!(idc.margin_percent, Some(d("42.50")));
        assert_eq!(idc.share_of_revenue_percent, Some(d("44.44")));
        // Edge: revenue 4000 + 3000 + 500 = 7500; cost 400 + 200 + 300 + 50.00 = 950;
        // margin 6550 = 87.333% → 87.33; share 55.555% → 55.56.
        assert_eq!(
            (edge.revenue, edge.cost, edge.gross_margin),
            (d("7500.00"), d("950.00"), d("6550.00"))
        );
        assert_eq!(edge.margin_percent, Some(d("87.33")));
        assert_eq!(edge.share_of_revenue_percent, Some(d("55.56")));
        // Total: 13500 − 4400.01 = 9099.99 = 67.4073% → 67.41.
        let total = &report.total;
        assert_eq!(
            (total.revenue, total.cost, total.gross_margin),
            (d("13500.00"), d("4400.01"), d("9099.99"))
        );
        assert_eq!(total.margin_percent, Some(d("67.41")));
        assert_eq!(
            total.cost,
            report.costs.iter().map(|c| c.amount).sum::<Decimal>()
        );
        assert_eq!(report.month, NOVEMBER);
        assert_eq!(report.currency, "CNY");
    }

    #[test]
    fn sites_by_name() {
        let report = example();
        let sites: Vec<(&str, Decimal, Decimal, Decimal, Option<Decimal>)> = report
            .sites
            .iter()
            .map(|s| {
                (
                    s.site.as_str(),
                    s.revenue,
                    s.cost,
                    s.gross_margin,
                    s.margin_percent,
                )
            })
            .collect();
        assert_eq!(
            sites,
            [
                ("bj-1", d("10000"), d("3500"), d("6500"), Some(d("65.00"))),
                ("gz-1", d("0"), d("400.01"), d("-400.01"), None),
                // 2500 / 3000 = 83.333% → 83.33
                ("sh-1", d("3000"), d("500"), d("2500"), Some(d("83.33"))),
            ]
        );
    }

    #[test]
    fn empty_report_lists_both_segments() {
        let report = segment_report(NOVEMBER, "EUR", &[], &[], &[]);
        assert_eq!(report.segments.len(), 2);
        assert_eq!(report.segments[0].segment, Segment::Idc);
        assert_eq!(report.segments[0].margin_percent, None);
        assert_eq!(report.segments[0].share_of_revenue_percent, None);
        assert!(report.sites.is_empty());
        assert_eq!(report.total.revenue, Decimal::ZERO);
        assert_eq!(report.total.margin_percent, None);
    }

    #[test]
    fn amounts_rounded_to_the_cent() {
        let report = segment_report(
            NOVEMBER,
            "EUR",
            &[
                revenue(Segment::Idc, Some("a"), "0.005"),
                revenue(Segment::Idc, Some("a"), "0.005"),
            ],
            &[cost("a", Some(Segment::Idc), "x", flat("0.004"))],
            &[],
        );
        // Each revenue rounds to 0.01 first: 0.02; the cost rounds to 0.00.
        assert_eq!(report.segments[0].revenue, d("0.02"));
        assert_eq!(report.segments[0].cost, d("0.00"));
        assert_eq!(report.total.gross_margin, d("0.02"));
    }

    #[test]
    fn shared_split_sums_exactly() {
        // Revenue 1 : 2 → idc gets 100 / 3 = 33.333... → 33.33, edge the rest 66.67.
        assert_eq!(
            split_of(d("100.00"), [d("1"), d("2")]),
            [d("33.33"), d("66.67")]
        );
        // Negative revenue counts as zero share.
        assert_eq!(
            split_of(d("10.00"), [d("-5"), d("5")]),
            [d("0.00"), d("10.00")]
        );
        // Dedicated costs are not split.
        assert_eq!(
            split(Some(Segment::Edge), d("7"), None).amounts,
            [d("0"), d("7")]
        );
    }

    fn split_of(amount: Decimal, revenue: BySegment) -> BySegment {
        split(None, amount, Some(&revenue)).amounts
    }

    #[test]
    fn serde_shapes() {
        let item: CostItem = serde_json::from_str(
            r#"{"site":"a","description":"transit","basis":{"kind":"percentile95","direction":"max","price_per_mbps":"2","commit_mbps":"0"}}"#,
        )
        .expect("cost item");
        assert_eq!(item.segment, None);
        assert!(
            serde_json::from_str::<CostItem>(
                r#"{"site":"a","description":"x","basis":{"kind":"flat","monthly":"1"},"y":0}"#
            )
            .is_err()
        );
        let json = serde_json::to_value(example()).expect("json");
        assert_eq!(json["segments"][0]["segment"], "idc");
        assert_eq!(json["total"]["margin_percent"], "67.41");
        assert_eq!(
            serde_json::from_value::<SegmentReport>(json).expect("back"),
            example()
        );
    }
}
