//! Colocation inventory: cabinets in the rooms of a site, their rack units and power
//! (contracted and measured, in watts), which tenant holds the whole cabinet or a range of
//! its units over which days, and the tenants' cross-connects there.
//!
//! Invariants (checked by [`Validate`]): no unit is held by two assignments on the same
//! day; an assignment's units lie in the cabinet; days are real calendar days. Power
//! over the contract is not refused but warned of ([`Cabinet::warnings`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_max_items, check_name};

/// Most assignments (past and present) one cabinet keeps.
pub const MAX_ASSIGNMENTS: usize = 500;
/// Most cross-connects of one cabinet.
pub const MAX_CROSS_CONNECTS: usize = 100;
/// Most power one cabinet is contracted for: 100 kW.
pub const MAX_WATTS: u32 = 100_000;

/// A cabinet (rack) a site rents out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cabinet {
    pub id: String,
    pub site: String,
    /// The room (data hall) in the site, e.g. `hall-2`.
    pub room: String,
    /// Rack units, 1 to 60 (default 42).
    #[serde(default = "default_units")]
    pub rack_units: u16,
    /// The power the cabinet is contracted (and fused) for, in watts: 5000 is 5 kW.
    pub contracted_watts: u32,
    /// The draw last measured, in watts (absent: not measured).
    #[serde(default)]
    pub measured_watts: Option<u32>,
    #[serde(default)]
    pub status: CabinetStatus,
    /// Who holds the cabinet or some of its units, over which days.
    #[serde(default)]
    #[schema(max_items = 500)]
    pub assignments: Vec<Assignment>,
    /// Tenants' cross-connects from this cabinet to a carrier.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub cross_connects: Vec<CrossConnect>,
}

fn default_units() -> u16 {
    42
}

/// Where a cabinet is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CabinetStatus {
    /// Built and rentable.
    #[default]
    Active,
    /// Held back (being built, or promised).
    Reserved,
    /// Out of service: takes no new assignment.
    Retired,
}

/// A tenant holding a cabinet (or a range of its units) from one day to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    pub tenant: String,
    /// The first and last unit held, 1-based and inclusive (absent: the whole cabinet).
    #[serde(default)]
    pub units: Option<[u16; 2]>,
    /// The power billed for it, in watts (absent: the cabinet's contracted power, shared
    /// by units for a range of units).
    #[serde(default)]
    pub power_watts: Option<u32>,
    /// The first day held (`YYYY-MM-DD`, UTC).
    pub from: String,
    /// The day it ends (exclusive; absent: open-ended).
    #[serde(default)]
    pub until: Option<String>,
}

/// A tenant's cross-connect from a cabinet to a carrier, with its committed bandwidth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrossConnect {
    pub id: String,
    pub tenant: String,
    /// The carrier (a line id, or any carrier's name as a slug).
    pub carrier: String,
    /// Committed bandwidth in Mbit/s.
    pub commit_mbps: u32,
}

/// A calendar day as (year, month, day), or `None` when `s` is not `YYYY-MM-DD` naming a
/// real day.
pub fn parse_day(s: &str) -> Option<(i32, u8, u8)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    ((2000..=9999).contains(&y) && (1..=days).contains(&d)).then_some((y as i32, m as u8, d as u8))
}

/// Milliseconds since the Unix epoch at the start (00:00 UTC) of `day`.
pub fn day_start_ms((y, m, d): (i32, u8, u8)) -> i64 {
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400_000
}

impl Assignment {
    /// The units held: `units`, or all of a cabinet of `rack_units`.
    pub fn unit_range(&self, rack_units: u16) -> (u16, u16) {
        self.units.map_or((1, rack_units), |[a, b]| (a, b))
    }

    /// `[from, until)` in ms (until: `i64::MAX` when open-ended); `None` when a day is
    /// not a day.
    pub fn period_ms(&self) -> Option<(i64, i64)> {
        let from = day_start_ms(parse_day(&self.from)?);
        let until = match &self.until {
            Some(u) => day_start_ms(parse_day(u)?),
            None => i64::MAX,
        };
        Some((from, until))
    }

    /// The power billed for it, in watts.
    pub fn watts(&self, cabinet: &Cabinet) -> u32 {
        self.power_watts.unwrap_or_else(|| {
            let (a, b) = self.unit_range(cabinet.rack_units);
            let units = u64::from(b - a + 1);
            (u64::from(cabinet.contracted_watts) * units / u64::from(cabinet.rack_units.max(1)))
                as u32
        })
    }
}

impl Cabinet {
    /// What the operator should know but need not fix at once: measured power over the
    /// contract, or more power sold on one day than the cabinet is contracted for.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(m) = self.measured_watts
            && m > self.contracted_watts
        {
            out.push(format!(
                "cabinet {} draws {m} W, over its contracted {} W",
                self.id, self.contracted_watts
            ));
        }
        // The power sold at the start of each assignment (when the sum can rise).
        let periods: Vec<(i64, i64, u32)> = self
            .assignments
            .iter()
            .filter_map(|a| a.period_ms().map(|(f, u)| (f, u, a.watts(self))))
            .collect();
        for &(start, _, _) in &periods {
            let sold: u64 = periods
                .iter()
                .filter(|(f, u, _)| *f <= start && start < *u)
                .map(|(_, _, w)| u64::from(*w))
                .sum();
            if sold > u64::from(self.contracted_watts) {
                out.push(format!(
                    "cabinet {}: {sold} W sold from {}, over its contracted {} W",
                    self.id,
                    crate::colocation::day_of_ms(start),
                    self.contracted_watts
                ));
                break;
            }
        }
        out
    }
}

/// `YYYY-MM-DD` of a day-start `ms`.
pub fn day_of_ms(ms: i64) -> String {
    let (y, m, d) = crate::units::civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

impl Validate for Cabinet {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("site", &self.site)?;
        check_id("room", &self.room)?;
        if !(1..=60).contains(&self.rack_units) {
            return Err(ValidationError::new("rack_units", "1 to 60"));
        }
        if self.contracted_watts > MAX_WATTS {
            return Err(ValidationError::new(
                "contracted_watts",
                format!("at most {MAX_WATTS} (100 kW)"),
            ));
        }
        if self.measured_watts.is_some_and(|m| m > 10 * MAX_WATTS) {
            return Err(ValidationError::new("measured_watts", "implausibly high"));
        }
        check_max_items("assignments", &self.assignments, MAX_ASSIGNMENTS)?;
        check_max_items("cross_connects", &self.cross_connects, MAX_CROSS_CONNECTS)?;
        let mut periods = Vec::with_capacity(self.assignments.len());
        for (i, a) in self.assignments.iter().enumerate() {
            let field = |f: &str| format!("assignments[{i}].{f}");
            check_id(&field("tenant"), &a.tenant)?;
            if let Some([first, last]) = a.units
                && (first == 0 || first > last || last > self.rack_units)
            {
                return Err(ValidationError::new(
                    field("units"),
                    format!(
                        "[first, last] with 1 <= first <= last <= {} (the cabinet's units)",
                        self.rack_units
                    ),
                ));
            }
            if a.power_watts.is_some_and(|w| w > MAX_WATTS) {
                return Err(ValidationError::new(field("power_watts"), "at most 100000"));
            }
            if parse_day(&a.from).is_none() {
                return Err(ValidationError::new(field("from"), "a day: YYYY-MM-DD"));
            }
            if let Some(u) = &a.until
                && parse_day(u).is_none()
            {
                return Err(ValidationError::new(field("until"), "a day: YYYY-MM-DD"));
            }
            let Some((from, until)) = a.period_ms() else {
                return Err(ValidationError::new(field("from"), "a day: YYYY-MM-DD"));
            };
            if until <= from {
                return Err(ValidationError::new(field("until"), "after `from`"));
            }
            let units = a.unit_range(self.rack_units);
            for (j, (f, u, (ua, ub), tenant)) in periods.iter().enumerate() {
                let days_overlap = from < *u && *f < until;
                let units_overlap = units.0 <= *ub && *ua <= units.1;
                if days_overlap && units_overlap {
                    return Err(ValidationError::new(
                        field("units"),
                        format!(
                            "units {}-{} are held by {tenant} (assignments[{j}]) on some of the same days",
                            units.0.max(*ua),
                            units.1.min(*ub)
                        ),
                    ));
                }
            }
            periods.push((from, until, units, a.tenant.clone()));
        }
        for (i, c) in self.cross_connects.iter().enumerate() {
            check_id(&format!("cross_connects[{i}].id"), &c.id)?;
            if self.cross_connects[..i].iter().any(|o| o.id == c.id) {
                return Err(ValidationError::new(
                    format!("cross_connects[{i}].id"),
                    format!("`{}` is listed twice", c.id),
                ));
            }
            check_id(&format!("cross_connects[{i}].tenant"), &c.tenant)?;
            check_name(&format!("cross_connects[{i}].carrier"), &c.carrier)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cabinet() -> Cabinet {
        Cabinet {
            id: "wx-1-a01".into(),
            site: "wx-1".into(),
            room: "hall-1".into(),
            rack_units: 42,
            contracted_watts: 5000,
            measured_watts: None,
            status: CabinetStatus::Active,
            assignments: Vec::new(),
            cross_connects: Vec::new(),
        }
    }

    fn held(tenant: &str, units: Option<[u16; 2]>, from: &str, until: Option<&str>) -> Assignment {
        Assignment {
            tenant: tenant.into(),
            units,
            power_watts: None,
            from: from.into(),
            until: until.map(Into::into),
        }
    }

    #[test]
    fn days_parse_only_when_real() {
        assert_eq!(parse_day("2026-11-30"), Some((2026, 11, 30)));
        assert_eq!(parse_day("2028-02-29"), Some((2028, 2, 29)));
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-11-31",
            "26-11-01",
            "2026-1-01",
            "2026-11-0a",
            "+026-11-01",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        assert_eq!(day_start_ms((2026, 11, 1)), 1_793_491_200_000);
        assert_eq!(day_start_ms((1970, 1, 1)), 0);
        assert_eq!(day_of_ms(1_796_083_200_000), "2026-12-01");
    }

    #[test]
    fn no_unit_is_held_twice_on_one_day() {
        let mut c = cabinet();
        c.assignments = vec![
            held("a", Some([1, 10]), "2026-11-01", None),
            held("b", Some([11, 42]), "2026-11-01", None),
        ];
        assert!(c.validate().is_ok());
        // The same units, later days: fine once the first has ended.
        c.assignments[0].until = Some("2026-12-01".into());
        c.assignments
            .push(held("c", Some([5, 6]), "2026-12-01", None));
        assert!(c.validate().is_ok());
        // Overlapping days and units: refused, naming them.
        c.assignments
            .push(held("d", Some([10, 12]), "2026-11-15", Some("2026-11-20")));
        let e = c.validate().expect_err("units held twice");
        assert_eq!(e.field, "assignments[3].units");
        assert!(e.message.contains("units 10-10 are held by a"), "{e}");
        // A whole-cabinet assignment overlaps any.
        c.assignments.pop();
        c.assignments.push(held("e", None, "2027-01-01", None));
        assert_eq!(
            c.validate().expect_err("whole").field,
            "assignments[3].units"
        );
    }

    #[test]
    fn bad_shapes_are_refused_by_field() {
        type Mutation = Box<dyn Fn(&mut Cabinet)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.rack_units = 0), "rack_units"),
            (
                Box::new(|c| c.contracted_watts = MAX_WATTS + 1),
                "contracted_watts",
            ),
            (
                Box::new(|c| c.assignments = vec![held("a", Some([0, 2]), "2026-11-01", None)]),
                "assignments[0].units",
            ),
            (
                Box::new(|c| c.assignments = vec![held("a", Some([1, 43]), "2026-11-01", None)]),
                "assignments[0].units",
            ),
            (
                Box::new(|c| c.assignments = vec![held("a", None, "2026-11-31", None)]),
                "assignments[0].from",
            ),
            (
                Box::new(|c| {
                    c.assignments = vec![held("a", None, "2026-11-02", Some("2026-11-01"))]
                }),
                "assignments[0].until",
            ),
            (
                Box::new(|c| c.assignments = vec![held("Not Ok", None, "2026-11-01", None)]),
                "assignments[0].tenant",
            ),
        ];
        for (mutate, field) in cases {
            let mut c = cabinet();
            mutate(&mut c);
            assert_eq!(c.validate().expect_err(field).field, field);
        }
    }

    #[test]
    fn power_over_the_contract_is_warned_of_not_refused() {
        let mut c = cabinet();
        assert!(c.warnings().is_empty());
        c.measured_watts = Some(5200);
        c.assignments = vec![
            held("a", Some([1, 21]), "2026-11-01", None),
            Assignment {
                power_watts: Some(4000),
                ..held("b", Some([22, 42]), "2026-11-10", None)
            },
        ];
        assert!(c.validate().is_ok());
        let w = c.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("draws 5200 W"), "{w:?}");
        assert!(w[1].contains("6500 W sold from 2026-11-10"), "{w:?}");
        // Half the units: half the power by default.
        assert_eq!(c.assignments[0].watts(&c), 2500);
    }
}
