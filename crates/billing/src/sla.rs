//! SLA measurement: a category's monthly uptime from its outages (clipped to the month,
//! overlaps counted once) and the credit lines the plan's schedule grants.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::invoice::{Category, Line, Outage, Uptime, line, ratio, sum};
use crate::month::{Month, format_utc};
use crate::plan::SlaTerms;

const MINUTE_MS: i64 = 60_000;

/// Uptime of each of `categories` in `month`.
pub(crate) fn measure(
    terms: &SlaTerms,
    categories: &[Category],
    month: Month,
    outages: &[Outage],
) -> Vec<Uptime> {
    categories
        .iter()
        .map(|&category| uptime(terms, category, month, outages))
        .collect()
}

/// One credit line per measured category that earned a credit (and has charges).
pub(crate) fn credit_lines(uptime: &[Uptime], lines: &[Line]) -> Vec<Line> {
    uptime
        .iter()
        .filter(|u| u.credit_percent > Decimal::ZERO)
        .filter_map(|u| credit_line(u, lines))
        .collect()
}

fn uptime(terms: &SlaTerms, category: Category, month: Month, outages: &[Outage]) -> Uptime {
    let outages = clipped(category, month, outages);
    let down_ms = union_ms(&outages);
    let percent = uptime_percent(month.duration_ms(), down_ms);
    Uptime {
        category,
        percent,
        target_percent: terms.target_percent,
        downtime_minutes: minutes(down_ms),
        outages,
        credit_percent: credit_percent(terms, percent),
    }
}

/// The category's outages that overlap the month, clipped to it, by start time.
fn clipped(category: Category, month: Month, outages: &[Outage]) -> Vec<Outage> {
    let (start, end) = (month.start_ms(), month.end_ms());
    let mut clipped: Vec<Outage> = outages
        .iter()
        .filter(|o| o.category == category)
        .filter_map(|o| {
            let (from, to) = (o.start_ms.max(start), o.end_ms.min(end));
            (from < to).then(|| Outage {
                start_ms: from,
                end_ms: to,
                ..o.clone()
            })
        })
        .collect();
    clipped.sort_by_key(|o| (o.start_ms, o.end_ms));
    clipped
}

/// Milliseconds covered by the union of intervals sorted by start.
fn union_ms(sorted: &[Outage]) -> i64 {
    let mut total = 0i64;
    let mut current: Option<(i64, i64)> = None;
    for o in sorted {
        current = match current {
            Some((from, to)) if o.start_ms <= to => Some((from, to.max(o.end_ms))),
            Some((from, to)) => {
                total = total.saturating_add(to - from);
                Some((o.start_ms, o.end_ms))
            }
            None => Some((o.start_ms, o.end_ms)),
        };
    }
    if let Some((from, to)) = current {
        total = total.saturating_add(to - from);
    }
    total
}

/// 100 × (month − down) / month, truncated to 4 decimal places (exact integer maths:
/// a breach is never rounded up to the target).
fn uptime_percent(month_ms: i64, down_ms: i64) -> Decimal {
    if month_ms <= 0 {
        return Decimal::ONE_HUNDRED;
    }
    let up_ms = i128::from(month_ms.saturating_sub(down_ms).clamp(0, month_ms));
    let ten_thousandths = up_ms * 1_000_000 / i128::from(month_ms);
    Decimal::try_from_i128_with_scale(ten_thousandths, 4).unwrap_or(Decimal::ZERO)
}

fn minutes(ms: i64) -> Decimal {
    ratio(Decimal::from(ms), Decimal::from(MINUTE_MS))
        .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// The credit of the step with the lowest `below_percent` still above `uptime`; 0 if
/// uptime is not below any step.
fn credit_percent(terms: &SlaTerms, uptime: Decimal) -> Decimal {
    terms
        .schedule
        .iter()
        .filter(|step| uptime < step.below_percent)
        .min_by_key(|step| step.below_percent)
        .map_or(Decimal::ZERO, |step| step.credit_percent)
}

fn credit_line(uptime: &Uptime, lines: &[Line]) -> Option<Line> {
    let charges = sum(lines, |c| c == uptime.category);
    let label = uptime.category.label();
    let description = format!(
        "SLA credit: {label} uptime {}% below the {}% target",
        uptime.percent, uptime.target_percent
    );
    let basis = format!(
        "{}% of {label} charges {charges}; downtime {} min: {}",
        uptime.credit_percent.normalize(),
        uptime.downtime_minutes,
        outage_list(&uptime.outages),
    );
    let unit_price = -ratio(charges, Decimal::ONE_HUNDRED);
    let credit = line(
        Category::Credit,
        description,
        uptime.credit_percent,
        "%",
        unit_price,
        basis,
    );
    (!credit.amount.is_zero()).then_some(credit)
}

fn outage_list(outages: &[Outage]) -> String {
    if outages.is_empty() {
        return "none".into();
    }
    outages
        .iter()
        .map(|o| {
            let length = minutes(o.end_ms.saturating_sub(o.start_ms));
            format!(
                "{} to {} ({length} min, {})",
                format_utc(o.start_ms),
                format_utc(o.end_ms),
                o.what
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{NOVEMBER, d, sla_terms};

    const MONTH_MS: i64 = 30 * 86_400_000;

    fn cdn(start_ms: i64, end_ms: i64) -> Outage {
        Outage {
            category: Category::Cdn,
            start_ms,
            end_ms,
            what: "x".into(),
        }
    }

    #[test]
    fn uptime_truncates_to_four_places() {
        // 2 h of 43,200 min: 100 × 43080 / 43200 = 99.72222...
        assert_eq!(uptime_percent(MONTH_MS, 2 * 3_600_000), d("99.7222"));
        // 10 h: 100 × 42600 / 43200 = 98.61111...
        assert_eq!(uptime_percent(MONTH_MS, 10 * 3_600_000), d("98.6111"));
        // 1 ms short of 100%: 99.99999996... → 99.9999, never 100.
        assert_eq!(uptime_percent(MONTH_MS, 1), d("99.9999"));
        // 43.2 min: exactly 99.9.
        assert_eq!(uptime_percent(MONTH_MS, 2_592_000), d("99.9"));
        assert_eq!(uptime_percent(MONTH_MS, 0), d("100"));
        assert_eq!(uptime_percent(MONTH_MS, MONTH_MS * 2), d("0"));
        assert_eq!(uptime_percent(0, 5), d("100"));
    }

    #[test]
    fn credit_steps() {
        let t = sla_terms();
        assert_eq!(credit_percent(&t, d("100")), d("0"));
        assert_eq!(credit_percent(&t, d("99.9")), d("0")); // at the target: no breach
        assert_eq!(credit_percent(&t, d("99.8999")), d("10"));
        assert_eq!(credit_percent(&t, d("99.0")), d("10"));
        assert_eq!(credit_percent(&t, d("98.9999")), d("25"));
        assert_eq!(credit_percent(&t, d("0")), d("25"));
        // Order of the schedule does not matter to the lookup.
        let mut reversed = sla_terms();
        reversed.schedule.reverse();
        assert_eq!(credit_percent(&reversed, d("98")), d("25"));
    }

    #[test]
    fn union_counts_overlaps_once_and_clips_to_the_month() {
        let start = NOVEMBER.start_ms();
        let h = 3_600_000;
        let outages = vec![
            cdn(start + 5 * h, start + 7 * h),
            cdn(start + 6 * h, start + 8 * h),
            cdn(start + 20 * h, start + 21 * h),
            cdn(start + 8 * h, start + 9 * h), // touches the first group: merged
            cdn(start - 5 * h, start + h),     // starts before the month: 1 h counts
            cdn(NOVEMBER.end_ms() - h, NOVEMBER.end_ms() + 50 * h), // 1 h counts
            cdn(start + 30 * h, start + 29 * h), // reversed: ignored
            Outage {
                category: Category::Colocation,
                ..cdn(start, NOVEMBER.end_ms())
            },
        ];
        let clipped = clipped(Category::Cdn, NOVEMBER, &outages);
        assert_eq!(clipped.len(), 6);
        assert_eq!(clipped[0].start_ms, start);
        assert_eq!(union_ms(&clipped), (4 + 1 + 1 + 1) * h);
        let measured = measure(
            &sla_terms(),
            &[Category::Cdn, Category::Colocation],
            NOVEMBER,
            &outages,
        );
        assert_eq!(measured[0].downtime_minutes, d("420"));
        assert_eq!(measured[1].percent, d("0"));
        assert_eq!(measured[1].credit_percent, d("25"));
    }

    #[test]
    fn minutes_round_to_two_places() {
        assert_eq!(minutes(1), d("0.00"));
        assert_eq!(minutes(59_700), d("1")); // 0.995 → 1.00
        assert_eq!(minutes(20_000), d("0.33"));
    }
}
