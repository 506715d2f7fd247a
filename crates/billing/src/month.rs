//! Billing months (UTC calendar months), their 5-minute intervals, and UTC timestamp
//! formatting. Pure calendar arithmetic: total over every input, no clock.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::error::BillingError;

/// Length of one usage interval: five minutes, in milliseconds.
pub const INTERVAL_MS: i64 = 300_000;

/// Milliseconds in a day.
const DAY_MS: i64 = 86_400_000;

/// Intervals in a day (24 × 12).
const INTERVALS_PER_DAY: u32 = 288;

/// A UTC calendar month, written `YYYY-MM` (serialized as that string).
///
/// The fields are public; an out-of-range `month` is clamped to 1..=12 by the
/// arithmetic (use [`Month::parse`] to validate input).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// Calendar year (2000..=9999 when parsed).
    pub year: i32,
    /// Month of the year, 1..=12.
    pub month: u8,
}

impl Month {
    /// Parses a strict `YYYY-MM` (year 2000..=9999, month 01..=12).
    pub fn parse(s: &str) -> Result<Month, BillingError> {
        let bad = || {
            BillingError::invalid(
                "month",
                format!("must be YYYY-MM (2000-01..9999-12), not {s:?}"),
            )
        };
        let bytes = s.as_bytes();
        let shape_ok = bytes.len() == 7
            && bytes[4] == b'-'
            && bytes[..4].iter().chain(&bytes[5..]).all(u8::is_ascii_digit);
        if !shape_ok {
            return Err(bad());
        }
        let year: i32 = s[..4].parse().map_err(|_| bad())?;
        let month: u8 = s[5..].parse().map_err(|_| bad())?;
        if !(2000..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// The month containing the instant `ms` (milliseconds since the Unix epoch, UTC).
    pub fn of_ms(ms: i64) -> Month {
        let (year, month, _) = civil_from_days(ms.div_euclid(DAY_MS));
        Month {
            year: i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
            month,
        }
    }

    /// The first instant of the month, in milliseconds since the Unix epoch.
    pub fn start_ms(self) -> i64 {
        days_from_civil(i64::from(self.year), self.month_number(), 1).saturating_mul(DAY_MS)
    }

    /// The first instant of the next month (the end of this one, exclusive).
    pub fn end_ms(self) -> i64 {
        self.start_ms().saturating_add(self.duration_ms())
    }

    /// Length of the month in milliseconds.
    pub fn duration_ms(self) -> i64 {
        i64::from(self.days()) * DAY_MS
    }

    /// Number of 5-minute intervals in the month (8,640 for 30 days, 8,928 for 31).
    pub fn intervals(self) -> u32 {
        self.days() * INTERVALS_PER_DAY
    }

    /// The following month.
    pub fn next(self) -> Month {
        match self.month_number() {
            12 => Month {
                year: self.year.saturating_add(1),
                month: 1,
            },
            m => Month {
                year: self.year,
                month: m + 1,
            },
        }
    }

    /// Whether the instant `ms` falls in this month.
    pub fn contains(self, ms: i64) -> bool {
        (self.start_ms()..self.end_ms()).contains(&ms)
    }

    /// Number of days in the month.
    pub fn days(self) -> u32 {
        match self.month_number() {
            2 if is_leap(i64::from(self.year)) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }

    fn month_number(self) -> u8 {
        self.month.clamp(1, 12)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl std::str::FromStr for Month {
    type Err = BillingError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Month::parse(s)
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Month::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Month {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9]{4}-(0[1-9]|1[0-2])$"))
            .description(Some("A UTC calendar month, YYYY-MM"))
            .examples([serde_json::json!("2026-11")])
            .into()
    }
}

impl utoipa::ToSchema for Month {}

/// Formats an instant as RFC 3339 UTC: `2026-11-14T10:05:00Z` (milliseconds only when
/// not zero: `2026-11-14T10:05:00.250Z`).
pub(crate) fn format_utc(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    let in_day = ms.rem_euclid(DAY_MS);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    let frac = if milli == 0 {
        String::new()
    } else {
        format!(".{milli:03}")
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{frac}Z")
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day number since 1970-01-01 (year, month, day).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Month {
        Month::parse(s).expect("valid month")
    }

    /// Reference start of a month from the `time` crate.
    fn time_start_ms(year: i32, month: u8) -> i64 {
        let month = time::Month::try_from(month).expect("month");
        let date = time::Date::from_calendar_date(year, month, 1).expect("date");
        (date.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }

    #[test]
    fn parse_is_strict() {
        assert_eq!(
            m("2026-11"),
            Month {
                year: 2026,
                month: 11
            }
        );
        assert_eq!(
            m("2000-01"),
            Month {
                year: 2000,
                month: 1
            }
        );
        assert_eq!(
            m("9999-12"),
            Month {
                year: 9999,
                month: 12
            }
        );
        for bad in [
            "",
            "2026-1",
            "2026-13",
            "2026-00",
            "1999-12",
            "2026/11",
            " 2026-11",
            "2026-11 ",
            "+026-11",
            "2026-+1",
            "20261-1",
            "2026-011",
            "٢٠٢٦-11",
            "abcd-ef",
            "2026-1a",
        ] {
            let err = Month::parse(bad).expect_err(bad);
            assert!(
                matches!(&err, BillingError::Invalid { field, .. } if field == "month"),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_and_serde_round_trip() {
        let month = m("2026-03");
        assert_eq!(month.to_string(), "2026-03");
        let json = serde_json::to_string(&month).expect("serialize");
        assert_eq!(json, "\"2026-03\"");
        assert_eq!(
            serde_json::from_str::<Month>(&json).expect("deserialize"),
            month
        );
        assert!(serde_json::from_str::<Month>("\"2026-3\"").is_err());
        assert!(serde_json::from_str::<Month>("202603").is_err());
    }

    #[test]
    fn intervals_per_month_length() {
        assert_eq!(m("2026-11").intervals(), 8_640); // 30 days
        assert_eq!(m("2026-12").intervals(), 8_928); // 31 days
        assert_eq!(m("2027-02").intervals(), 8_064); // 28 days
        assert_eq!(m("2028-02").intervals(), 8_352); // 29 days (leap)
        assert_eq!(m("2100-02").intervals(), 8_064); // not a leap year
        assert_eq!(m("2000-02").intervals(), 8_352); // leap year (divisible by 400)
    }

    #[test]
    fn bounds_match_the_time_crate() {
        // 2026-11-01T00:00:00Z = 1_793_491_200 s since the epoch.
        assert_eq!(m("2026-11").start_ms(), 1_793_491_200_000);
        assert_eq!(m("2026-11").end_ms(), m("2026-12").start_ms());
        for year in [2000, 2024, 2026, 2100, 2400, 9999] {
            for month in 1..=12 {
                let mo = Month { year, month };
                assert_eq!(mo.start_ms(), time_start_ms(year, month), "{mo}");
                let len = mo.end_ms() - mo.start_ms();
                assert_eq!(len, i64::from(mo.intervals()) * INTERVAL_MS, "{mo}");
                assert_eq!(Month::of_ms(mo.start_ms()), mo);
                assert_eq!(Month::of_ms(mo.end_ms() - 1), mo);
                assert_eq!(Month::of_ms(mo.end_ms()), mo.next());
            }
        }
    }

    #[test]
    fn next_and_of_ms() {
        assert_eq!(m("2026-12").next(), m("2027-01"));
        assert_eq!(m("2026-01").next(), m("2026-02"));
        assert_eq!(
            Month::of_ms(0),
            Month {
                year: 1970,
                month: 1
            }
        );
        assert_eq!(
            Month::of_ms(-1),
            Month {
                year: 1969,
                month: 12
            }
        );
    }

    #[test]
    fn total_on_odd_inputs() {
        for ms in [i64::MIN, i64::MAX, -1, 0] {
            let _ = Month::of_ms(ms);
            let _ = format_utc(ms);
        }
        for mo in [
            Month {
                year: i32::MAX,
                month: 12,
            },
            Month {
                year: i32::MIN,
                month: 0,
            },
            Month {
                year: 2026,
                month: 200,
            },
        ] {
            let _ = (
                mo.start_ms(),
                mo.end_ms(),
                mo.intervals(),
                mo.next(),
                mo.to_string(),
            );
        }
        assert_eq!(
            Month {
                year: 2026,
                month: 13
            }
            .intervals(),
            8_928
        ); // clamped to December
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_utc(m("2026-11").start_ms()), "2026-11-01T00:00:00Z");
        let ms = m("2026-11").start_ms() + 13 * DAY_MS + 10 * 3_600_000 + 5 * 60_000;
        assert_eq!(format_utc(ms), "2026-11-14T10:05:00Z");
        assert_eq!(format_utc(ms + 250), "2026-11-14T10:05:00.250Z");
        assert_eq!(format_utc(-1), "1969-12-31T23:59:59.999Z");
    }
}
