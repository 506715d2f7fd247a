//! 95th-percentile ("burstable") billing and monthly transfer totals over 5-minute
//! usage samples.
//!
//! The carriers' rule: a month has one value per 5-minute interval (missing intervals
//! count as 0), sort descending, drop the top 5% (rounded down), bill the next one.

use std::cmp::Reverse;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::month::{INTERVAL_MS, Month, format_utc};

/// Traffic of one 5-minute interval (of one node or service, or already summed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// Start of the interval, ms since the Unix epoch (a multiple of [`INTERVAL_MS`]).
    pub start_ms: i64,
    /// Bytes received in the interval.
    pub bytes_in: u64,
    /// Bytes sent in the interval.
    pub bytes_out: u64,
}

/// Which traffic is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Inbound only.
    In,
    /// Outbound only.
    Out,
    /// The higher of the inbound and the outbound 95th percentile, each computed alone.
    Max,
    /// The 95th percentile of inbound + outbound per interval.
    Aggregate,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::Max => "max(in, out)",
            Direction::Aggregate => "in + out",
        }
    }
}

/// A computed 95th percentile and how it was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Percentile {
    /// The direction billed.
    pub direction: Direction,
    /// Five-minute intervals in the month.
    pub intervals: u32,
    /// Highest intervals dropped: floor(intervals × 5 / 100).
    pub dropped: u32,
    /// Start of the billed interval; `None` when the billed value is 0 (no interval
    /// stands out).
    pub billed_interval_start_ms: Option<i64>,
    /// Bytes in the billed interval.
    pub billed_bytes: u64,
    /// The billed rate: bytes × 8 / 300 s / 10^6, in Mbps, rounded to 6 decimal places.
    pub mbps: Decimal,
    /// A sentence saying how the value was reached.
    pub basis: String,
}

/// The 95th percentile of `samples` in `month` for `direction`.
///
/// Intervals without a sample count as 0 bytes, samples outside the month are ignored,
/// and samples with the same interval (several nodes' rows) are summed.
pub fn percentile95(samples: &[Sample], month: Month, direction: Direction) -> Percentile {
    match direction {
        Direction::Max => max_of_in_and_out(samples, month),
        single => {
            let values = per_interval(samples, month, |s| one_direction(s, single));
            from_values(&values, month, single)
        }
    }
}

/// Total bytes in `month`: in, out, the larger of both totals (`Max`) or their sum
/// (`Aggregate`). Saturates at `u64::MAX`.
pub fn transfer_bytes(samples: &[Sample], month: Month, direction: Direction) -> u64 {
    let (total_in, total_out) = samples
        .iter()
        .filter(|s| month.contains(s.start_ms))
        .fold((0u64, 0u64), |(i, o), s| {
            (i.saturating_add(s.bytes_in), o.saturating_add(s.bytes_out))
        });
    match direction {
        Direction::In => total_in,
        Direction::Out => total_out,
        Direction::Max => total_in.max(total_out),
        Direction::Aggregate => total_in.saturating_add(total_out),
    }
}

/// Mbps of `bytes` sent in one 5-minute interval, rounded to 6 decimal places.
pub(crate) fn mbps_of(bytes: u64) -> Decimal {
    // At most 1.5e20 before dividing: far inside Decimal's range.
    let bits = Decimal::from(bytes) * Decimal::from(8);
    (bits / Decimal::from(300_000_000u32))
        .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

fn one_direction(s: &Sample, direction: Direction) -> u64 {
    match direction {
        Direction::In => s.bytes_in,
        Direction::Out | Direction::Max => s.bytes_out,
        Direction::Aggregate => s.bytes_in.saturating_add(s.bytes_out),
    }
}

/// One value per interval of the month (`None` where there is no sample); samples of the
/// same interval summed.
fn per_interval(
    samples: &[Sample],
    month: Month,
    value: impl Fn(&Sample) -> u64,
) -> Vec<Option<u64>> {
    let mut values = vec![None; month.intervals() as usize];
    let start = month.start_ms();
    for sample in samples.iter().filter(|s| month.contains(s.start_ms)) {
        let index = usize::try_from((sample.start_ms - start) / INTERVAL_MS).unwrap_or(usize::MAX);
        if let Some(slot) = values.get_mut(index) {
            *slot = Some(slot.unwrap_or(0u64).saturating_add(value(sample)));
        }
    }
    values
}

/// The 95th percentile of per-interval values (missing ones count as 0).
fn from_values(slots: &[Option<u64>], month: Month, direction: Direction) -> Percentile {
    let values: Vec<u64> = slots.iter().map(|v| v.unwrap_or(0)).collect();
    let intervals = u32::try_from(values.len()).unwrap_or(u32::MAX);
    let dropped = intervals / 20; // floor(intervals × 5 / 100)
    let billed = billed_index(&values, dropped as usize);
    let billed_bytes = billed.and_then(|i| values.get(i)).copied().unwrap_or(0);
    let billed_interval_start_ms = billed
        .filter(|_| billed_bytes > 0)
        .map(|i| month.start_ms().saturating_add(i as i64 * INTERVAL_MS));
    let mbps = mbps_of(billed_bytes);
    let counts = Counts {
        intervals,
        dropped,
        missing: slots.iter().filter(|v| v.is_none()).count(),
    };
    let basis = basis(direction, counts, billed_interval_start_ms, &mbps);
    Percentile {
        direction,
        intervals,
        dropped,
        billed_interval_start_ms,
        billed_bytes,
        mbps,
        basis,
    }
}

/// Index of the interval at descending rank `rank` (0-based); ties broken by the earlier
/// interval, so the choice is deterministic.
fn billed_index(values: &[u64], rank: usize) -> Option<usize> {
    if rank >= values.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.select_nth_unstable_by_key(rank, |&i| (Reverse(values[i]), i));
    order.get(rank).copied()
}

/// Interval counts a basis sentence reports.
#[derive(Clone, Copy)]
struct Counts {
    intervals: u32,
    dropped: u32,
    missing: usize,
}

fn basis(
    direction: Direction,
    counts: Counts,
    billed_start: Option<i64>,
    mbps: &Decimal,
) -> String {
    let Counts {
        intervals,
        dropped,
        missing,
    } = counts;
    let missing = match missing {
        0 => String::new(),
        n => format!("; {n} without a sample, counted as 0"),
    };
    let when = billed_start
        .map(|ms| format!("{}, ", format_utc(ms)))
        .unwrap_or_default();
    format!(
        "95th percentile of {}: {} highest of {intervals} five-minute samples \
         (top {dropped} dropped{missing}), {when}{mbps} Mbps",
        direction.label(),
        ordinal(u64::from(dropped) + 1),
    )
}

fn max_of_in_and_out(samples: &[Sample], month: Month) -> Percentile {
    let inbound = percentile95(samples, month, Direction::In);
    let outbound = percentile95(samples, month, Direction::Out);
    let (higher, lower, relation) = if outbound.billed_bytes >= inbound.billed_bytes {
        let relation = if outbound.billed_bytes == inbound.billed_bytes {
            "equal to"
        } else {
            "higher than"
        };
        (outbound, inbound, relation)
    } else {
        (inbound, outbound, "higher than")
    };
    let basis = format!(
        "max of in and out: {} {} Mbps is {relation} {} {} Mbps; {}; {}",
        higher.direction.label(),
        higher.mbps,
        lower.direction.label(),
        lower.mbps,
        higher.basis,
        lower.basis,
    );
    Percentile {
        direction: Direction::Max,
        basis,
        ..higher
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ..., `11th`, `12th`, `13th`, `21st`, ..., `433rd`.
pub(crate) fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{NOVEMBER, d};

    const DECEMBER: Month = Month {
        year: 2026,
        month: 12,
    };

    /// 37,500 bytes in 300 s = 0.001 Mbps.
    const MILLI_MBPS: u64 = 37_500;

    /// Interval i of `month` sends (i + 1) × 0.001 Mbps out and `bytes_in` in.
    fn ramp(month: Month, bytes_in: u64) -> Vec<Sample> {
        (0..i64::from(month.intervals()))
            .map(|i| Sample {
                start_ms: month.start_ms() + i * INTERVAL_MS,
                bytes_in,
                bytes_out: (i as u64 + 1) * MILLI_MBPS,
            })
            .collect()
    }

    /// A deterministic permutation: position j takes element (j × 7919) mod n (7919 is
    /// prime and does not divide 8,640 or 8,928, so this is a bijection).
    fn shuffled(samples: &[Sample]) -> Vec<Sample> {
        let n = samples.len();
        (0..n).map(|j| samples[j * 7919 % n]).collect()
    }

    #[test]
    fn thirty_day_month_drops_432() {
        let samples = ramp(NOVEMBER, 0);
        let p = percentile95(&samples, NOVEMBER, Direction::Out);
        assert_eq!(p.intervals, 8_640);
        assert_eq!(p.dropped, 432);
        // Rank 433 of 1..=8640 (× 0.001 Mbps) descending is 8640 − 432 = 8208.
        assert_eq!(p.mbps, d("8.208"));
        assert_eq!(p.billed_bytes, 8_208 * MILLI_MBPS);
        // Value 8208 is sample index 8207.
        assert_eq!(
            p.billed_interval_start_ms,
            Some(NOVEMBER.start_ms() + 8_207 * INTERVAL_MS)
        );
        assert_eq!(
            p.basis,
            "95th percentile of out: 433rd highest of 8640 five-minute samples (top 432 dropped), \
             2026-11-29T11:55:00Z, 8.208 Mbps"
        );
    }

    #[test]
    fn order_of_samples_does_not_matter() {
        let samples = ramp(NOVEMBER, 0);
        let mixed = shuffled(&samples);
        assert_ne!(mixed[..10], samples[..10]);
        assert_eq!(
            percentile95(&mixed, NOVEMBER, Direction::Out),
            percentile95(&samples, NOVEMBER, Direction::Out)
        );
        let mut reversed = samples.clone();
        reversed.reverse();
        assert_eq!(
            percentile95(&reversed, NOVEMBER, Direction::Out).mbps,
            d("8.208")
        );
    }

    #[test]
    fn thirty_one_day_month_drops_446() {
        let samples = shuffled(&ramp(DECEMBER, 0));
        let p = percentile95(&samples, DECEMBER, Direction::Out);
        assert_eq!(p.intervals, 8_928);
        assert_eq!(p.dropped, 446);
        assert_eq!(p.mbps, d("8.482")); // 8928 − 446 = 8482
    }

    #[test]
    fn february_drop_counts() {
        let feb = Month {
            year: 2027,
            month: 2,
        };
        let p = percentile95(&[], feb, Direction::Out);
        assert_eq!((p.intervals, p.dropped), (8_064, 403)); // floor(403.2)
        let leap = Month {
            year: 2028,
            month: 2,
        };
        let p = percentile95(&[], leap, Direction::Out);
        assert_eq!((p.intervals, p.dropped), (8_352, 417)); // floor(417.6)
    }

    #[test]
    fn missing_samples_count_as_zero() {
        let samples: Vec<Sample> = ramp(NOVEMBER, 0).into_iter().take(100).collect();
        let p = percentile95(&samples, NOVEMBER, Direction::Out);
        assert_eq!(p.mbps, Decimal::ZERO);
        assert_eq!(p.billed_bytes, 0);
        assert_eq!(p.billed_interval_start_ms, None);
        assert_eq!(
            p.basis,
            "95th percentile of out: 433rd highest of 8640 five-minute samples \
             (top 432 dropped; 8540 without a sample, counted as 0), 0 Mbps"
        );
        let empty = percentile95(&[], NOVEMBER, Direction::Aggregate);
        assert_eq!(empty.mbps, Decimal::ZERO);
    }

    #[test]
    fn exactly_433_busy_intervals_bill_the_smallest_of_them() {
        // 433 intervals at 10 Mbps, 8207 without samples: the 433rd highest is 10 Mbps.
        let busy: Vec<Sample> = (0..433)
            .map(|i| Sample {
                start_ms: NOVEMBER.start_ms() + i * INTERVAL_MS,
                bytes_in: 0,
                bytes_out: 10_000 * MILLI_MBPS,
            })
            .collect();
        let p = percentile95(&busy, NOVEMBER, Direction::Out);
        assert_eq!(p.mbps, d("10"));
        // Ties: the latest of the equal intervals is at rank 433.
        assert_eq!(
            p.billed_interval_start_ms,
            Some(NOVEMBER.start_ms() + 432 * INTERVAL_MS)
        );
        let p = percentile95(&busy[..432], NOVEMBER, Direction::Out);
        assert_eq!(p.mbps, Decimal::ZERO);
    }

    #[test]
    fn in_out_max_aggregate() {
        // in: constant 2 Mbps = 2e6 × 300 / 8 = 75,000,000 bytes per interval.
        let samples = ramp(NOVEMBER, 75_000_000);
        let of = |d| percentile95(&samples, NOVEMBER, d).mbps;
        assert_eq!(of(Direction::In), d("2"));
        assert_eq!(of(Direction::Out), d("8.208"));
        assert_eq!(of(Direction::Max), d("8.208"));
        // in + out = 2 + (i + 1) × 0.001: rank 433 is 2 + 8.208.
        assert_eq!(of(Direction::Aggregate), d("10.208"));

        let max = percentile95(&samples, NOVEMBER, Direction::Max);
        assert_eq!(max.direction, Direction::Max);
        assert_eq!(
            max.billed_interval_start_ms,
            Some(NOVEMBER.start_ms() + 8_207 * INTERVAL_MS)
        );
        assert!(
            max.basis
                .starts_with("max of in and out: out 8.208 Mbps is higher than in 2 Mbps; "),
            "{}",
            max.basis
        );

        // in: constant 9 Mbps (337,500,000 bytes) beats out's 8.208.
        let samples = ramp(NOVEMBER, 337_500_000);
        let max = percentile95(&samples, NOVEMBER, Direction::Max);
        assert_eq!(max.mbps, d("9"));
        assert_eq!(max.billed_bytes, 337_500_000);
        // All in-intervals tie: ranked in time order, so the 433rd is interval 432.
        assert_eq!(
            max.billed_interval_start_ms,
            Some(NOVEMBER.start_ms() + 432 * INTERVAL_MS)
        );
        assert!(
            max.basis
                .starts_with("max of in and out: in 9 Mbps is higher than out 8.208 Mbps; ")
        );
    }

    #[test]
    fn same_interval_rows_of_two_nodes_sum() {
        // Two nodes each carry half of the ramp: (i + 1) × 18,750 bytes.
        let half: Vec<Sample> = ramp(NOVEMBER, 0)
            .into_iter()
            .map(|s| Sample {
                bytes_out: s.bytes_out / 2,
                ..s
            })
            .collect();
        let both: Vec<Sample> = half.iter().chain(half.iter()).copied().collect();
        assert_eq!(
            percentile95(&half, NOVEMBER, Direction::Out).mbps,
            d("4.104")
        );
        assert_eq!(
            percentile95(&both, NOVEMBER, Direction::Out).mbps,
            d("8.208")
        );
        assert_eq!(
            transfer_bytes(&both, NOVEMBER, Direction::Out),
            2 * transfer_bytes(&half, NOVEMBER, Direction::Out)
        );
    }

    #[test]
    fn samples_outside_the_month_are_ignored() {
        let mut samples = ramp(NOVEMBER, 0);
        let huge = Sample {
            start_ms: 0,
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
        };
        samples.push(Sample {
            start_ms: NOVEMBER.start_ms() - INTERVAL_MS,
            ..huge
        });
        samples.push(Sample {
            start_ms: NOVEMBER.end_ms(),
            ..huge
        });
        samples.push(Sample {
            start_ms: i64::MIN,
            ..huge
        });
        samples.push(Sample {
            start_ms: i64::MAX,
            ..huge
        });
        assert_eq!(
            percentile95(&samples, NOVEMBER, Direction::Out).mbps,
            d("8.208")
        );
        assert_eq!(transfer_bytes(&samples, NOVEMBER, Direction::In), 0);
    }

    #[test]
    fn unaligned_sample_falls_in_its_interval() {
        let start = NOVEMBER.start_ms();
        let samples = [
            Sample {
                start_ms: start + 1,
                bytes_in: 0,
                bytes_out: 10,
            },
            Sample {
                start_ms: start + INTERVAL_MS - 1,
                bytes_in: 0,
                bytes_out: 20,
            },
        ];
        let values = per_interval(&samples, NOVEMBER, |s| s.bytes_out);
        assert_eq!(values[0], Some(30));
        assert_eq!(values[1], None);
    }

    #[test]
    fn rate_rounds_to_six_places() {
        assert_eq!(mbps_of(0), Decimal::ZERO);
        assert_eq!(mbps_of(1), Decimal::ZERO); // 2.67e-8 Mbps
        assert_eq!(mbps_of(37), d("0.000001")); // 9.87e-7 Mbps
        // 1,234,567,891 × 8 / 3e8 = 32.921810426666...
        assert_eq!(mbps_of(1_234_567_891), d("32.92181"));
        // 123,456,789 × 8 / 3e8 = 3.29218104
        assert_eq!(mbps_of(123_456_789), d("3.292181"));
        // 18,750 bytes × 8 / 3e8 = 0.0005 exactly
        assert_eq!(mbps_of(18_750), d("0.0005"));
        // Largest input: (2^64 − 1) × 8 / 3e8 = 491,913,175,298.92137640 Mbps, no overflow.
        assert_eq!(mbps_of(u64::MAX), d("491913175298.921376"));
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        let start = NOVEMBER.start_ms();
        let big = Sample {
            start_ms: start,
            bytes_in: u64::MAX,
            bytes_out: u64::MAX,
        };
        let samples = vec![big; 1_000];
        assert_eq!(
            transfer_bytes(&samples, NOVEMBER, Direction::Aggregate),
            u64::MAX
        );
        let p = percentile95(&samples, NOVEMBER, Direction::Aggregate);
        assert_eq!(p.mbps, Decimal::ZERO); // one busy interval is within the dropped top 5%
    }

    #[test]
    fn transfer_totals() {
        let samples = [
            Sample {
                start_ms: NOVEMBER.start_ms(),
                bytes_in: 5,
                bytes_out: 7,
            },
            Sample {
                start_ms: NOVEMBER.start_ms() + INTERVAL_MS,
                bytes_in: 10,
                bytes_out: 1,
            },
        ];
        assert_eq!(transfer_bytes(&samples, NOVEMBER, Direction::In), 15);
        assert_eq!(transfer_bytes(&samples, NOVEMBER, Direction::Out), 8);
        assert_eq!(transfer_bytes(&samples, NOVEMBER, Direction::Max), 15);
        assert_eq!(transfer_bytes(&samples, NOVEMBER, Direction::Aggregate), 23);
        assert_eq!(transfer_bytes(&samples, DECEMBER, Direction::Aggregate), 0);
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112, 433, 447]
            .into_iter()
            .map(ordinal)
            .collect();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
                "101st", "111th", "112th", "433rd", "447th"
            ]
        );
    }

    #[test]
    fn serde_shapes() {
        assert_eq!(
            serde_json::to_string(&Direction::Aggregate).expect("json"),
            "\"aggregate\""
        );
        let s: Sample =
            serde_json::from_str(r#"{"start_ms":0,"bytes_in":1,"bytes_out":2}"#).expect("sample");
        assert_eq!(
            s,
            Sample {
                start_ms: 0,
                bytes_in: 1,
                bytes_out: 2
            }
        );
        assert!(
            serde_json::from_str::<Sample>(r#"{"start_ms":0,"bytes_in":1,"bytes_out":2,"x":1}"#)
                .is_err()
        );
        let p = percentile95(&ramp(NOVEMBER, 0), NOVEMBER, Direction::Out);
        let json = serde_json::to_value(&p).expect("json");
        assert_eq!(json["mbps"], "8.208");
        assert_eq!(serde_json::from_value::<Percentile>(json).expect("back"), p);
    }
}
