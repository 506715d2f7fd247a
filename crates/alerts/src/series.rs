//! One sensor under one rule: the readings the rule needs (the last one, and for a rise
//! the window behind it), and the alert's phase: ok -> pending (the condition holds, its
//! `for` not yet over) -> firing -> ok once the clear condition holds. Each change is a
//! [`Transition`] to notify, made once: a reading that is not newer than the last one
//! (sent again, or late) changes nothing, and the whole state is serde, so it survives a
//! restart of the node unchanged.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::rule::{Condition, Rule};

/// Most readings a rise's window keeps (a sensor reporting more often than that in the
/// window is thinned to its newest).
pub const MAX_WINDOW: usize = 4096;

/// A sensor's reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// When it was taken (ms since the epoch).
    pub at_ms: i64,
    pub value: f64,
}

/// Where an alert is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Ok,
    /// The condition holds since `since_ms`; it fires once that is `for_s` ago.
    Pending {
        since_ms: i64,
    },
    Firing {
        since_ms: i64,
    },
}

/// A change of phase, to notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transition", rename_all = "snake_case")]
pub enum Transition {
    Pending {
        since_ms: i64,
    },
    /// The condition stopped holding before its `for` was over.
    Cancelled {
        at_ms: i64,
    },
    Firing {
        since_ms: i64,
    },
    Resolved {
        fired_ms: i64,
        at_ms: i64,
    },
}

/// One sensor's state under one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    last: Option<Reading>,
    /// For a rise: the readings of the rule's window, oldest first.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    window: VecDeque<Reading>,
    /// When the series was first watched (a sensor never heard from is silent since).
    #[serde(default)]
    watched_ms: Option<i64>,
    phase: Phase,
}

impl Series {
    /// A series known only by its phase (kept elsewhere, e.g. an alert's last state):
    /// the next reading is evaluated from there, so an alert still firing is not raised
    /// again.
    pub fn resumed(phase: Phase) -> Series {
        Series {
            phase,
            ..Series::default()
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn last(&self) -> Option<Reading> {
        self.last
    }

    /// Takes a reading and evaluates the rule at its time. A reading not newer than the
    /// last one, or not a number, is ignored.
    pub fn observe(&mut self, rule: &Rule, r: Reading) -> Option<Transition> {
        if !r.value.is_finite() || self.last.is_some_and(|l| r.at_ms <= l.at_ms) {
            return None;
        }
        self.watched_ms.get_or_insert(r.at_ms);
        self.last = Some(r);
        if let Condition::RisingBy { within_s, .. } = rule.condition {
            self.window.push_back(r);
            let from = r.at_ms.saturating_sub(i64::from(within_s) * 1000);
            while self.window.front().is_some_and(|w| w.at_ms < from)
                || self.window.len() > MAX_WINDOW
            {
                self.window.pop_front();
            }
        }
        self.step(rule, r.at_ms)
    }

    /// Time passes (no reading): a `for` may be over, a sensor may have gone silent.
    pub fn tick(&mut self, rule: &Rule, now_ms: i64) -> Option<Transition> {
        self.watched_ms.get_or_insert(now_ms);
        self.step(rule, now_ms)
    }

    /// Whether the condition holds (to go pending, or stay so).
    fn holds(&self, rule: &Rule, now_ms: i64) -> bool {
        match (&rule.condition, self.last) {
            (Condition::Above { value, .. }, Some(l)) => l.value > *value,
            (Condition::Below { value, .. }, Some(l)) => l.value < *value,
            (Condition::RisingBy { delta, .. }, Some(_)) => self.rise() >= *delta,
            (Condition::NoData { after_s }, _) => self.silent(*after_s, now_ms),
            (_, None) => false,
        }
    }

    /// Whether a firing alert clears.
    fn clears(&self, rule: &Rule, now_ms: i64) -> bool {
        match (&rule.condition, self.last) {
            (Condition::Above { clear, .. }, Some(l)) => l.value <= *clear,
            (Condition::Below { clear, .. }, Some(l)) => l.value >= *clear,
            (Condition::RisingBy { delta, .. }, Some(_)) => self.rise() < delta / 2.0,
            (Condition::NoData { after_s }, _) => !self.silent(*after_s, now_ms),
            (_, None) => false,
        }
    }

    /// How far the last reading is above the lowest of the window.
    fn rise(&self) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let low = self
            .window
            .iter()
            .map(|r| r.value)
            .fold(f64::INFINITY, f64::min);
        if low.is_finite() {
            last.value - low
        } else {
            0.0
        }
    }

    fn silent(&self, after_s: u32, now_ms: i64) -> bool {
        let heard = self.last.map(|l| l.at_ms).or(self.watched_ms);
        heard.is_some_and(|h| now_ms.saturating_sub(h) > i64::from(after_s) * 1000)
    }

    /// When the condition began to hold, found at `now_ms`: for no-data, when the
    /// silence passed its limit (not when it was noticed). Every time in a transition is
    /// one of the readings' or derived from them and the rule, so the same readings give
    /// the same transition again (a node that recomputes one after a crash names it the
    /// same).
    fn began(&self, rule: &Rule, now_ms: i64) -> i64 {
        match rule.condition {
            Condition::NoData { after_s } => self
                .last
                .map(|l| l.at_ms)
                .or(self.watched_ms)
                .map_or(now_ms, |h| {
                    h.saturating_add(i64::from(after_s) * 1000).min(now_ms)
                }),
            _ => now_ms,
        }
    }

    fn step(&mut self, rule: &Rule, now_ms: i64) -> Option<Transition> {
        let for_ms = i64::from(rule.for_s) * 1000;
        match self.phase {
            Phase::Ok if self.holds(rule, now_ms) => {
                let began = self.began(rule, now_ms);
                if for_ms == 0 {
                    self.phase = Phase::Firing { since_ms: began };
                    Some(Transition::Firing { since_ms: began })
                } else if now_ms.saturating_sub(began) >= for_ms {
                    let fired = began.saturating_add(for_ms);
                    self.phase = Phase::Firing { since_ms: fired };
                    Some(Transition::Firing { since_ms: fired })
                } else {
                    self.phase = Phase::Pending { since_ms: began };
                    Some(Transition::Pending { since_ms: began })
                }
            }
            Phase::Ok => None,
            Phase::Pending { .. } if !self.holds(rule, now_ms) => {
                self.phase = Phase::Ok;
                Some(Transition::Cancelled { at_ms: now_ms })
            }
            // It fired when its `for` was over (however late this is noticed).
            Phase::Pending { since_ms } if now_ms.saturating_sub(since_ms) >= for_ms => {
                let fired = since_ms.saturating_add(for_ms);
                self.phase = Phase::Firing { since_ms: fired };
                Some(Transition::Firing { since_ms: fired })
            }
            Phase::Pending { .. } => None,
            Phase::Firing { since_ms } if self.clears(rule, now_ms) => {
                self.phase = Phase::Ok;
                Some(Transition::Resolved {
                    fired_ms: since_ms,
                    at_ms: now_ms,
                })
            }
            Phase::Firing { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Severity, inlet_temperature, silent};

    const S: i64 = 1000;

    fn at(s: i64, value: f64) -> Reading {
        Reading {
            at_ms: 1_800_000_000_000 + s * S,
            value,
        }
    }

    fn t(s: i64) -> i64 {
        1_800_000_000_000 + s * S
    }

    fn hot() -> Rule {
        inlet_temperature().remove(0) // above 27, clear 26, for 60 s
    }

    #[test]
    fn a_threshold_fires_after_its_for_and_clears_below_its_clear_level_once() {
        let rule = hot();
        let mut s = Series::default();
        assert_eq!(s.observe(&rule, at(0, 26.0)), None);
        assert_eq!(
            s.observe(&rule, at(10, 28.0)),
            Some(Transition::Pending { since_ms: t(10) })
        );
        assert_eq!(s.observe(&rule, at(40, 28.5)), None);
        assert_eq!(s.tick(&rule, t(69)), None);
        assert_eq!(
            s.tick(&rule, t(70)),
            Some(Transition::Firing { since_ms: t(70) })
        );
        assert_eq!(s.tick(&rule, t(80)), None, "fires once");
        // Inside the band (26, 27]: still firing.
        assert_eq!(s.observe(&rule, at(90, 26.5)), None);
        assert_eq!(s.observe(&rule, at(100, 27.4)), None);
        assert_eq!(
            s.observe(&rule, at(110, 26.0)),
            Some(Transition::Resolved {
                fired_ms: t(70),
                at_ms: t(110)
            })
        );
        assert_eq!(s.observe(&rule, at(120, 25.0)), None);
    }

    #[test]
    fn a_pending_alert_is_cancelled_when_the_condition_stops_before_its_for() {
        let rule = hot();
        let mut s = Series::default();
        s.observe(&rule, at(0, 28.0));
        assert_eq!(
            s.observe(&rule, at(30, 27.0)),
            Some(Transition::Cancelled { at_ms: t(30) })
        );
        assert_eq!(s.tick(&rule, t(100)), None, "no fire after a cancel");
        assert_eq!(s.phase(), Phase::Ok);
    }

    #[test]
    fn hysteresis_keeps_a_value_at_the_line_from_flapping() {
        let rule = Rule { for_s: 0, ..hot() };
        let mut s = Series::default();
        let mut transitions = Vec::new();
        for (i, v) in [27.5, 26.8, 27.5, 26.8, 27.5, 26.8].into_iter().enumerate() {
            transitions.extend(s.observe(&rule, at(i as i64 * 10, v)));
        }
        assert_eq!(transitions, [Transition::Firing { since_ms: t(0) }]);
    }

    #[test]
    fn a_rise_within_its_window_warns_early_and_one_spread_out_does_not() {
        let rule = inlet_temperature().remove(3); // 2 degrees in 300 s, at once
        assert_eq!(rule.severity, Severity::Warning);
        let mut s = Series::default();
        assert_eq!(s.observe(&rule, at(0, 22.0)), None);
        assert_eq!(s.observe(&rule, at(60, 22.5)), None);
        assert_eq!(s.observe(&rule, at(120, 23.0)), None);
        assert_eq!(
            s.observe(&rule, at(180, 24.1)),
            Some(Transition::Firing { since_ms: t(180) })
        );
        // It levels off: once the window holds no reading under 23.1, it clears.
        assert_eq!(s.observe(&rule, at(300, 24.1)), None);
        assert_eq!(
            s.observe(&rule, at(481, 24.1)),
            Some(Transition::Resolved {
                fired_ms: t(180),
                at_ms: t(481)
            })
        );
        // The same 2.5 degrees over 400 s is not a rise within 300 s.
        let mut slow = Series::default();
        assert_eq!(slow.observe(&rule, at(0, 22.0)), None);
        assert_eq!(slow.observe(&rule, at(400, 24.5)), None);
    }

    #[test]
    fn a_silent_sensor_fires_and_its_next_reading_resolves_it() {
        let rule = silent(60); // 180 s
        let mut s = Series::default();
        assert_eq!(s.observe(&rule, at(0, 1.0)), None);
        assert_eq!(s.tick(&rule, t(180)), None);
        // Noticed at 181 s, it fired when the silence passed 180 s: the time is the
        // readings', so a node recomputing it after a crash names it the same.
        assert_eq!(
            s.tick(&rule, t(181)),
            Some(Transition::Firing { since_ms: t(180) })
        );
        assert_eq!(
            s.observe(&rule, at(200, 1.0)),
            Some(Transition::Resolved {
                fired_ms: t(180),
                at_ms: t(200)
            })
        );
        // A sensor never heard from is silent from when it was first watched.
        let mut never = Series::default();
        assert_eq!(never.tick(&rule, t(0)), None);
        assert!(matches!(
            never.tick(&rule, t(181)),
            Some(Transition::Firing { .. })
        ));
    }

    #[test]
    fn a_restart_in_a_for_window_neither_loses_nor_repeats_the_alert() {
        let rule = hot();
        let mut s = Series::default();
        assert!(matches!(
            s.observe(&rule, at(0, 29.0)),
            Some(Transition::Pending { .. })
        ));
        // The node writes its state and is killed; it starts again from the file.
        let kept = serde_json::to_string(&s).expect("serialise");
        let mut back: Series = serde_json::from_str(&kept).expect("deserialise");
        assert_eq!(back, s);
        // The device sends its last reading again: nothing new.
        assert_eq!(back.observe(&rule, at(0, 29.0)), None);
        assert_eq!(back.tick(&rule, t(59)), None);
        assert_eq!(
            back.tick(&rule, t(60)),
            Some(Transition::Firing { since_ms: t(60) })
        );
        assert_eq!(back.tick(&rule, t(61)), None);
    }

    #[test]
    fn late_and_bad_readings_change_nothing() {
        let rule = Rule { for_s: 0, ..hot() };
        let mut s = Series::default();
        s.observe(&rule, at(10, 25.0));
        assert_eq!(s.observe(&rule, at(5, 40.0)), None, "older than the last");
        assert_eq!(s.observe(&rule, at(20, f64::NAN)), None);
        assert_eq!(s.observe(&rule, at(30, f64::INFINITY)), None);
        assert_eq!(s.phase(), Phase::Ok);
        assert_eq!(s.last(), Some(at(10, 25.0)));
    }
}
