//! Alerts as people see them: one per rule and sensor (the dedup key), at a site, with
//! labels to match; silences (matchers and a time window, as Alertmanager's), composite
//! conditions (every named alert firing: smoke AND temperature rising), acknowledgement,
//! and escalation of a critical alert nobody acknowledged.

use serde::{Deserialize, Serialize};

use crate::rule::Severity;
use crate::series::Phase;

/// The dedup key of an alert: one per rule and sensor.
pub fn key(rule: &str, sensor: &str) -> String {
    format!("{rule}/{sensor}")
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub sensor: String,
    pub site: String,
    pub severity: Severity,
    pub phase: Phase,
    /// Labels to match silences and routes on (`site`, `room`, `kind`, `tenant`, ...).
    #[serde(default)]
    pub labels: Vec<(String, String)>,
    #[serde(default)]
    pub acknowledged: Option<Acknowledgement>,
    /// Whether it was escalated already (once per firing).
    #[serde(default)]
    pub escalated: bool,
}

/// Who acknowledged an alert, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledgement {
    pub by: String,
    pub at_ms: i64,
}

impl Alert {
    pub fn key(&self) -> String {
        key(&self.rule, &self.sensor)
    }

    /// The value of label `name` (`site`, `rule` and `sensor` are always there).
    pub fn label(&self, name: &str) -> Option<&str> {
        match name {
            "site" => Some(&self.site),
            "rule" => Some(&self.rule),
            "sensor" => Some(&self.sensor),
            _ => self
                .labels
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
        }
    }

    /// Whether a critical alert, firing for `after_s` and not acknowledged, is due to be
    /// escalated now (once per firing: the caller sets `escalated`).
    pub fn escalation_due(&self, after_s: u32, now_ms: i64) -> bool {
        match self.phase {
            Phase::Firing { since_ms } => {
                self.severity == Severity::Critical
                    && self.acknowledged.is_none()
                    && !self.escalated
                    && now_ms.saturating_sub(since_ms) >= i64::from(after_s) * 1000
            }
            _ => false,
        }
    }
}

/// A label matcher of a silence: equal to `value` (or, with `prefix`, starting with it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub label: String,
    pub value: String,
    /// Match values that start with `value` rather than equal it.
    #[serde(default)]
    pub prefix: bool,
}

/// A silence: alerts matching every matcher notify nobody from `starts_ms` to `ends_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub by: String,
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    /// Checks it: at least one matcher (a silence of everything is refused), a window
    /// that ends after it starts.
    pub fn check(&self) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err(
                "a silence needs at least one matcher (it would silence everything)".into(),
            );
        }
        if self.ends_ms <= self.starts_ms {
            return Err("a silence must end after it starts".into());
        }
        Ok(())
    }

    /// Whether it silences `alert` at `now_ms`.
    pub fn silences(&self, alert: &Alert, now_ms: i64) -> bool {
        (self.starts_ms..self.ends_ms).contains(&now_ms)
            && !self.matchers.is_empty()
            && self.matchers.iter().all(|m| {
                alert.label(&m.label).is_some_and(|v| {
                    if m.prefix {
                        v.starts_with(&m.value)
                    } else {
                        v == m.value
                    }
                })
            })
    }
}

/// Whether any of `silences` silences `alert` now.
pub fn silenced(silences: &[Silence], alert: &Alert, now_ms: i64) -> bool {
    silences.iter().any(|s| s.silences(alert, now_ms))
}

/// A composite condition holds when every alert it names is firing (none named: never).
pub fn all_firing(phases: &[Phase]) -> bool {
    !phases.is_empty() && phases.iter().all(|p| matches!(p, Phase::Firing { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(severity: Severity, phase: Phase) -> Alert {
        Alert {
            rule: "inlet-too-hot".into(),
            sensor: "wx-1/hall-2/c07/inlet".into(),
            site: "wx-1".into(),
            severity,
            phase,
            labels: vec![
                ("room".into(), "hall-2".into()),
                ("tenant".into(), "acme".into()),
            ],
            acknowledged: None,
            escalated: false,
        }
    }

    #[test]
    fn one_alert_per_rule_and_sensor() {
        let a = alert(Severity::Critical, Phase::Ok);
        assert_eq!(a.key(), "inlet-too-hot/wx-1/hall-2/c07/inlet");
        let mut b = a.clone();
        b.sensor = "wx-1/hall-2/c08/inlet".into();
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn a_silence_needs_all_its_matchers_and_its_window() {
        let a = alert(Severity::Warning, Phase::Firing { since_ms: 0 });
        let s = Silence {
            id: "s1".into(),
            matchers: vec![
                Matcher {
                    label: "site".into(),
                    value: "wx-1".into(),
                    prefix: false,
                },
                Matcher {
                    label: "sensor".into(),
                    value: "wx-1/hall-2/".into(),
                    prefix: true,
                },
            ],
            starts_ms: 100,
            ends_ms: 200,
            by: "ops".into(),
            comment: "maintenance".into(),
        };
        assert_eq!(s.check(), Ok(()));
        assert!(s.silences(&a, 150));
        assert!(
            !s.silences(&a, 99) && !s.silences(&a, 200),
            "only inside its window"
        );
        let mut other = s.clone();
        other.matchers.push(Matcher {
            label: "room".into(),
            value: "hall-3".into(),
            prefix: false,
        });
        assert!(!other.silences(&a, 150), "every matcher must match");
        let mut unknown = s.clone();
        unknown.matchers = vec![Matcher {
            label: "rack".into(),
            value: "7".into(),
            prefix: false,
        }];
        assert!(
            !unknown.silences(&a, 150),
            "a label the alert lacks does not match"
        );
        let everything = Silence {
            matchers: vec![],
            ..s.clone()
        };
        assert!(everything.check().is_err() && !everything.silences(&a, 150));
        assert!(silenced(&[unknown, s], &a, 150));
    }

    #[test]
    fn an_unacknowledged_critical_alert_escalates_once_after_its_delay() {
        let mut a = alert(Severity::Critical, Phase::Firing { since_ms: 0 });
        assert!(!a.escalation_due(600, 599_999));
        assert!(a.escalation_due(600, 600_000));
        a.escalated = true;
        assert!(!a.escalation_due(600, 700_000), "once per firing");
        let mut acked = alert(Severity::Critical, Phase::Firing { since_ms: 0 });
        acked.acknowledged = Some(Acknowledgement {
            by: "li".into(),
            at_ms: 10,
        });
        assert!(!acked.escalation_due(600, 700_000));
        assert!(
            !alert(Severity::Warning, Phase::Firing { since_ms: 0 }).escalation_due(600, 700_000)
        );
        assert!(
            !alert(Severity::Critical, Phase::Pending { since_ms: 0 }).escalation_due(600, 700_000)
        );
    }

    #[test]
    fn a_composite_needs_every_alert_firing() {
        let f = Phase::Firing { since_ms: 1 };
        assert!(all_firing(&[f, f]));
        assert!(!all_firing(&[f, Phase::Pending { since_ms: 1 }]));
        assert!(!all_firing(&[f, Phase::Ok]));
        assert!(!all_firing(&[]));
    }
}
