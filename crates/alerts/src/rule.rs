//! Alert rules: a condition on one sensor's readings, how long it must hold before the
//! alert fires (`for_s`), and how bad it is. Thresholds have a separate clear level
//! (hysteresis), so a value hovering at the line does not flap; the default rule set of a
//! site follows ASHRAE's recommended rack inlet range (18–27 °C; allowable 15–32 °C for
//! class A1).

use serde::{Deserialize, Serialize};

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

/// What must hold of a sensor's readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// The last reading is above `value`; it clears once at or below `clear`.
    Above { value: f64, clear: f64 },
    /// The last reading is below `value`; it clears once at or above `clear`.
    Below { value: f64, clear: f64 },
    /// The last reading is at least `delta` above the lowest of the `within_s` seconds
    /// before it (the early warning: "2 °C in 5 minutes"); it clears once the rise is
    /// under half of `delta`.
    RisingBy { delta: f64, within_s: u32 },
    /// No reading for `after_s` seconds (a silent sensor); a reading clears it.
    NoData { after_s: u32 },
}

/// A rule: its condition must hold for `for_s` seconds (0: at once) before the alert fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub severity: Severity,
    pub condition: Condition,
    #[serde(default)]
    pub for_s: u32,
}

impl Rule {
    /// Checks the rule's numbers: finite, clear levels on the right side, positive windows.
    pub fn check(&self) -> Result<(), String> {
        let finite = |v: f64, what: &str| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{what} must be a finite number"))
            }
        };
        match &self.condition {
            Condition::Above { value, clear } => {
                finite(*value, "value")?;
                finite(*clear, "clear")?;
                if clear > value {
                    return Err(
                        "an `above` rule clears at or below its value: clear <= value".into(),
                    );
                }
            }
            Condition::Below { value, clear } => {
                finite(*value, "value")?;
                finite(*clear, "clear")?;
                if clear < value {
                    return Err(
                        "a `below` rule clears at or above its value: clear >= value".into(),
                    );
                }
            }
            Condition::RisingBy { delta, within_s } => {
                finite(*delta, "delta")?;
                if *delta <= 0.0 || *within_s == 0 || *within_s > 86_400 {
                    return Err("a rise needs delta > 0 and within_s of 1 to 86400".into());
                }
            }
            Condition::NoData { after_s } => {
                if *after_s == 0 {
                    return Err("no-data needs after_s > 0".into());
                }
            }
        }
        if self.for_s > 7 * 86_400 {
            return Err("for_s is at most a week".into());
        }
        Ok(())
    }
}

fn rule(id: &str, severity: Severity, condition: Condition, for_s: u32) -> Rule {
    Rule {
        id: id.to_owned(),
        severity,
        condition,
        for_s,
    }
}

/// The default rules of a rack inlet temperature sensor (°C): warn above 27, critical
/// above 32, warn below 18 (each for a minute, clearing a degree inside), and the early
/// warning of a rise of 2 °C in 5 minutes.
pub fn inlet_temperature() -> Vec<Rule> {
    vec![
        rule(
            "inlet-hot",
            Severity::Warning,
            Condition::Above {
                value: 27.0,
                clear: 26.0,
            },
            60,
        ),
        rule(
            "inlet-too-hot",
            Severity::Critical,
            Condition::Above {
                value: 32.0,
                clear: 31.0,
            },
            60,
        ),
        rule(
            "inlet-cold",
            Severity::Warning,
            Condition::Below {
                value: 18.0,
                clear: 19.0,
            },
            60,
        ),
        rule(
            "inlet-rising",
            Severity::Warning,
            Condition::RisingBy {
                delta: 2.0,
                within_s: 300,
            },
            0,
        ),
    ]
}

/// The default rules of a relative humidity sensor (%): warn above 70 or below 20.
pub fn humidity() -> Vec<Rule> {
    vec![
        rule(
            "humidity-high",
            Severity::Warning,
            Condition::Above {
                value: 70.0,
                clear: 65.0,
            },
            300,
        ),
        rule(
            "humidity-low",
            Severity::Warning,
            Condition::Below {
                value: 20.0,
                clear: 25.0,
            },
            300,
        ),
    ]
}

/// The default rules of a cabinet's power (W) against its contract: warn at 80%,
/// critical at 100%.
pub fn cabinet_power(contracted_watts: u32) -> Vec<Rule> {
    let c = f64::from(contracted_watts);
    vec![
        rule(
            "power-80",
            Severity::Warning,
            Condition::Above {
                value: 0.8 * c,
                clear: 0.75 * c,
            },
            60,
        ),
        rule(
            "power-100",
            Severity::Critical,
            Condition::Above {
                value: c,
                clear: 0.95 * c,
            },
            0,
        ),
    ]
}

/// Smoke or water (1: detected, 0: clear): critical at once.
pub fn detector(id: &str) -> Rule {
    rule(
        id,
        Severity::Critical,
        Condition::Above {
            value: 0.5,
            clear: 0.5,
        },
        0,
    )
}

/// A sensor silent for three of its reporting intervals.
pub fn silent(interval_s: u32) -> Rule {
    rule(
        "silent",
        Severity::Warning,
        Condition::NoData {
            after_s: interval_s.saturating_mul(3).max(1),
        },
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_rules_are_refused() {
        let mut all = inlet_temperature();
        all.extend(humidity());
        all.extend(cabinet_power(5000));
        all.push(detector("smoke"));
        all.push(silent(60));
        for r in &all {
            assert_eq!(r.check(), Ok(()), "{r:?}");
        }
        let bad = rule(
            "x",
            Severity::Warning,
            Condition::Above {
                value: 27.0,
                clear: 28.0,
            },
            0,
        );
        assert!(bad.check().unwrap_err().contains("clear <= value"));
        let nan = rule(
            "x",
            Severity::Warning,
            Condition::Below {
                value: f64::NAN,
                clear: 1.0,
            },
            0,
        );
        assert!(nan.check().is_err());
        let rise = rule(
            "x",
            Severity::Warning,
            Condition::RisingBy {
                delta: 0.0,
                within_s: 60,
            },
            0,
        );
        assert!(rise.check().is_err());
    }
}
