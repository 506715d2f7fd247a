//! The rule engine of one site, pure (no I/O, no clock): the site's sensors from the
//! snapshot, each watched by its rules ([`Sensor::rules`]), devices by `device-offline`,
//! rooms by the composites; readings, device status and the passing of time go in,
//! [`AlertEvent`]s (one per transition, each named by [`AlertEvent::id`]) come out.
//!
//! [`State`] is everything that must survive a restart (each series' readings and phase,
//! escalations made, composites firing); it is serde. Unknown sensors, readings of a
//! sensor from a device that is not its own and values that are not numbers are counted
//! and dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lingjing_alerts::alert::{Acknowledgement, all_firing, key};
use lingjing_alerts::rule::{Condition, Rule, Severity};
use lingjing_alerts::{Alert, Phase, Reading, Series, Transition, silenced};
use lingjing_model::monitor::{
    AlertEvent, AlertState, Composite, DEVICE_OFFLINE, MonitorConfig, Sensor, SensorValue,
    Telemetry, default_composites,
};
use serde::{Deserialize, Serialize};

/// One alert's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    pub series: Series,
    /// Escalated during the current firing.
    #[serde(default)]
    pub escalated: bool,
}

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// By alert key (`{rule}/{sensor}`); a hash map: every series is looked up on every
    /// tick.
    pub alerts: HashMap<String, Tracked>,
    /// Composites firing, by key (`{composite}/{room}`) -> since.
    #[serde(default)]
    pub composites: BTreeMap<String, i64>,
}

/// What one telemetry message did.
#[derive(Debug, Default, PartialEq)]
pub struct Taken {
    pub at_ms: i64,
    /// The readings kept (of known sensors of the device).
    pub values: Vec<SensorValue>,
    /// Values dropped: unknown sensor, someone else's, not a number.
    pub dropped: usize,
    pub events: Vec<AlertEvent>,
}

struct Watch {
    sensor: Sensor,
    rules: Vec<Rule>,
    labels: BTreeMap<String, String>,
}

/// The engine of one site.
pub struct Engine {
    site: String,
    watches: HashMap<String, Watch>,
    /// Device -> its sensors.
    devices: HashMap<String, Vec<String>>,
    /// Room -> its sensors.
    rooms: BTreeMap<String, Vec<String>>,
    composites: Vec<Composite>,
    silences: Vec<lingjing_alerts::Silence>,
    /// Alert key -> the firing acknowledged (since) and who did.
    acks: HashMap<String, (i64, Acknowledgement)>,
    escalate_after_s: u32,
    state: State,
    rule_count: usize,
}

fn offline_rule() -> Rule {
    Rule {
        id: DEVICE_OFFLINE.into(),
        severity: Severity::Warning,
        condition: Condition::Above {
            value: 0.5,
            clear: 0.5,
        },
        for_s: 0,
    }
}

impl Engine {
    /// The engine of `site`, set up from `config`, going on from `state`.
    pub fn new(site: &str, config: &MonitorConfig, state: State) -> Engine {
        let mut e = Engine {
            site: site.to_owned(),
            watches: HashMap::new(),
            devices: HashMap::new(),
            rooms: BTreeMap::new(),
            composites: default_composites(),
            silences: Vec::new(),
            acks: HashMap::new(),
            escalate_after_s: config.escalate_after_s,
            state,
            rule_count: 0,
        };
        e.configure(config);
        e
    }

    /// Takes a new snapshot: sensors added or changed are watched by their rules from now
    /// (their states kept where the rule still exists); states of rules and sensors gone
    /// are dropped.
    pub fn configure(&mut self, config: &MonitorConfig) {
        self.watches.clear();
        self.devices.clear();
        self.rooms.clear();
        self.rule_count = 0;
        for s in config.sensors.iter().filter(|s| s.site == self.site) {
            let mut labels: BTreeMap<String, String> = s.labels().into_iter().collect();
            labels.insert("site".into(), self.site.clone());
            labels.insert("sensor".into(), s.id.clone());
            let rules = s.rules();
            self.rule_count += rules.len();
            self.devices
                .entry(s.device.clone())
                .or_default()
                .push(s.id.clone());
            self.rooms
                .entry(s.room.clone())
                .or_default()
                .push(s.id.clone());
            self.watches.insert(
                s.id.clone(),
                Watch {
                    sensor: s.clone(),
                    rules,
                    labels,
                },
            );
        }
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for (id, w) in &self.watches {
            for r in &w.rules {
                keep.insert(key(&r.id, id));
            }
        }
        for d in self.devices.keys() {
            keep.insert(key(DEVICE_OFFLINE, d));
        }
        self.state.alerts.retain(|k, _| keep.contains(k));
        let rooms = &self.rooms;
        self.state.composites.retain(|k, _| {
            k.split_once('/')
                .is_some_and(|(_, room)| rooms.contains_key(room))
        });
        self.silences = config.silences.iter().map(|s| s.to_alerts()).collect();
        self.acks = config
            .acks
            .iter()
            .map(|a| {
                (
                    a.key.clone(),
                    (
                        a.firing_since_ms,
                        Acknowledgement {
                            by: a.by.clone(),
                            at_ms: a.at_ms,
                        },
                    ),
                )
            })
            .collect();
        self.escalate_after_s = config.escalate_after_s;
    }

    pub fn site(&self) -> &str {
        &self.site
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// How many sensors and rules (series) it watches.
    pub fn size(&self) -> (usize, usize) {
        (self.watches.len(), self.rule_count)
    }

    /// Whether `device` reports sensors of this site.
    pub fn knows_device(&self, device: &str) -> bool {
        self.devices.contains_key(device)
    }

    /// Takes a device's telemetry message received at `now_ms`.
    pub fn telemetry(&mut self, device: &str, msg: &Telemetry, now_ms: i64) -> Taken {
        let at_ms = msg.at_ms.unwrap_or(now_ms);
        let mut taken = Taken {
            at_ms,
            ..Taken::default()
        };
        for (sensor, value) in &msg.values {
            let own = self
                .watches
                .get(sensor)
                .is_some_and(|w| w.sensor.device == device);
            if !own || !value.is_finite() {
                taken.dropped += 1;
                continue;
            }
            taken.values.push(SensorValue {
                sensor: sensor.clone(),
                value: *value,
            });
            self.observe(
                sensor,
                Reading {
                    at_ms,
                    value: *value,
                },
                &mut taken.events,
            );
        }
        self.finish(at_ms, &mut taken.events);
        taken
    }

    fn observe(&mut self, sensor: &str, r: Reading, events: &mut Vec<AlertEvent>) {
        let Some(w) = self.watches.get(sensor) else {
            return;
        };
        let mut k = String::new();
        for rule in &w.rules {
            key_into(&mut k, &rule.id, sensor);
            let Some(tracked) = tracked(&mut self.state.alerts, &k) else {
                continue;
            };
            let before = tracked.series.phase();
            if let Some(t) = tracked.series.observe(rule, r) {
                if matches!(t, Transition::Firing { .. }) {
                    tracked.escalated = false;
                }
                events.push(event(
                    &self.site,
                    k.clone(),
                    rule,
                    sensor,
                    &w.labels,
                    before,
                    t,
                    Some(r.value),
                ));
            }
        }
    }

    /// A device said it is `online` (or its last will said it is not) at `at_ms`.
    pub fn device_status(&mut self, device: &str, online: bool, at_ms: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        if !self.knows_device(device) {
            return events;
        }
        let rule = offline_rule();
        let k = key(DEVICE_OFFLINE, device);
        let mut labels = BTreeMap::new();
        labels.insert("site".to_owned(), self.site.clone());
        labels.insert("device".to_owned(), device.to_owned());
        labels.insert("sensor".to_owned(), device.to_owned());
        let tracked = self.state.alerts.entry(k.clone()).or_default();
        let before = tracked.series.phase();
        let r = Reading {
            at_ms,
            value: if online { 0.0 } else { 1.0 },
        };
        if let Some(t) = tracked.series.observe(&rule, r) {
            events.push(event(
                &self.site, k, &rule, device, &labels, before, t, None,
            ));
        }
        self.finish(at_ms, &mut events);
        events
    }

    /// Time passes: `for` windows end, sensors go silent, critical alerts nobody
    /// acknowledged are escalated.
    pub fn tick(&mut self, now_ms: i64) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        // One key buffer for the whole pass: this runs over every series every second.
        let mut k = String::new();
        for (id, w) in &self.watches {
            for rule in &w.rules {
                key_into(&mut k, &rule.id, id);
                let Some(tracked) = tracked(&mut self.state.alerts, &k) else {
                    continue;
                };
                let before = tracked.series.phase();
                if let Some(t) = tracked.series.tick(rule, now_ms) {
                    if matches!(t, Transition::Firing { .. }) {
                        tracked.escalated = false;
                    }
                    events.push(event(
                        &self.site,
                        k.clone(),
                        rule,
                        id,
                        &w.labels,
                        before,
                        t,
                        None,
                    ));
                }
                let Phase::Firing { since_ms } = tracked.series.phase() else {
                    continue;
                };
                if rule.severity != Severity::Critical || tracked.escalated {
                    continue;
                }
                let alert = Alert {
                    rule: rule.id.clone(),
                    sensor: id.clone(),
                    site: self.site.clone(),
                    severity: rule.severity,
                    phase: tracked.series.phase(),
                    labels: Vec::new(),
                    acknowledged: self
                        .acks
                        .get(k.as_str())
                        .filter(|(s, _)| *s == since_ms)
                        .map(|(_, a)| a.clone()),
                    escalated: tracked.escalated,
                };
                if alert.escalation_due(self.escalate_after_s, now_ms) {
                    tracked.escalated = true;
                    let mut e = event(
                        &self.site,
                        k.clone(),
                        rule,
                        id,
                        &w.labels,
                        Phase::Firing { since_ms },
                        Transition::Firing { since_ms },
                        None,
                    );
                    e.state = AlertState::Escalated;
                    e.at_ms = since_ms + i64::from(self.escalate_after_s) * 1000;
                    events.push(e);
                }
            }
        }
        self.finish(now_ms, &mut events);
        events
    }

    /// After any input that made transitions: the composites they change, and which of
    /// all these transitions a silence holds back.
    fn finish(&mut self, at_ms: i64, events: &mut Vec<AlertEvent>) {
        if events.is_empty() {
            return;
        }
        self.composites(at_ms, events);
        for e in events.iter_mut() {
            e.silenced = self.is_silenced(e);
        }
    }

    /// Re-evaluates the composites of every room, adding their transitions to `events`.
    fn composites(&mut self, at_ms: i64, events: &mut Vec<AlertEvent>) {
        let firing = |rule: &str, sensors: &[String], alerts: &HashMap<String, Tracked>| {
            sensors.iter().any(|s| {
                alerts
                    .get(&key(rule, s))
                    .is_some_and(|t| matches!(t.series.phase(), Phase::Firing { .. }))
            })
        };
        let mut out = Vec::new();
        for (room, sensors) in &self.rooms {
            for c in &self.composites {
                let phases: Vec<Phase> = c
                    .all
                    .iter()
                    .map(|r| {
                        if firing(r, sensors, &self.state.alerts) {
                            Phase::Firing { since_ms: 0 }
                        } else {
                            Phase::Ok
                        }
                    })
                    .collect();
                let k = key(&c.id, room);
                let now = all_firing(&phases);
                let was = self.state.composites.get(&k).copied();
                let mut labels = BTreeMap::new();
                labels.insert("site".to_owned(), self.site.clone());
                labels.insert("room".to_owned(), room.clone());
                labels.insert("sensor".to_owned(), room.clone());
                let mut e = AlertEvent {
                    key: k.clone(),
                    rule: c.id.clone(),
                    sensor: room.clone(),
                    site: self.site.clone(),
                    severity: c.severity,
                    state: AlertState::Firing,
                    since_ms: at_ms,
                    at_ms,
                    value: None,
                    labels,
                    silenced: false,
                };
                match (was, now) {
                    (None, true) => {
                        self.state.composites.insert(k, at_ms);
                        out.push(e);
                    }
                    (Some(since), false) => {
                        self.state.composites.remove(&k);
                        e.state = AlertState::Resolved;
                        e.since_ms = since;
                        out.push(e);
                    }
                    _ => {}
                }
            }
        }
        events.extend(out);
    }

    fn is_silenced(&self, e: &AlertEvent) -> bool {
        if self.silences.is_empty() {
            return false;
        }
        let mut labels: Vec<(String, String)> = e
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.push((
            "severity".into(),
            match e.severity {
                Severity::Warning => "warning".into(),
                Severity::Critical => "critical".into(),
            },
        ));
        let alert = Alert {
            rule: e.rule.clone(),
            sensor: e.sensor.clone(),
            site: e.site.clone(),
            severity: e.severity,
            phase: Phase::Ok,
            labels,
            acknowledged: None,
            escalated: false,
        };
        silenced(&self.silences, &alert, e.at_ms)
    }

    /// The alerts pending or firing now, in order of key.
    pub fn active(&self) -> Vec<(String, Phase)> {
        let mut out: Vec<(String, Phase)> = self
            .state
            .alerts
            .iter()
            .filter(|(_, t)| t.series.phase() != Phase::Ok)
            .map(|(k, t)| (k.clone(), t.series.phase()))
            .collect();
        out.extend(
            self.state
                .composites
                .iter()
                .map(|(k, s)| (k.clone(), Phase::Firing { since_ms: *s })),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Writes the alert key of `rule` and `sensor` (as [`key`] makes it) into `buf`, so that
/// a pass over many series allocates nothing.
fn key_into(buf: &mut String, rule: &str, sensor: &str) {
    buf.clear();
    buf.push_str(rule);
    buf.push('/');
    buf.push_str(sensor);
}

/// The state of alert `k`, made on first use (the key is allocated only then).
fn tracked<'a>(alerts: &'a mut HashMap<String, Tracked>, k: &str) -> Option<&'a mut Tracked> {
    if !alerts.contains_key(k) {
        alerts.insert(k.to_owned(), Tracked::default());
    }
    alerts.get_mut(k)
}

#[allow(clippy::too_many_arguments)]
fn event(
    site: &str,
    key: String,
    rule: &Rule,
    sensor: &str,
    labels: &BTreeMap<String, String>,
    before: Phase,
    t: Transition,
    value: Option<f64>,
) -> AlertEvent {
    let (state, since_ms, at_ms) = match t {
        Transition::Pending { since_ms } => (AlertState::Pending, since_ms, since_ms),
        Transition::Cancelled { at_ms } => {
            let since = match before {
                Phase::Pending { since_ms } => since_ms,
                _ => at_ms,
            };
            (AlertState::Cancelled, since, at_ms)
        }
        Transition::Firing { since_ms } => (AlertState::Firing, since_ms, since_ms),
        Transition::Resolved { fired_ms, at_ms } => (AlertState::Resolved, fired_ms, at_ms),
    };
    let mut labels = labels.clone();
    labels.insert("rule".into(), rule.id.clone());
    AlertEvent {
        key,
        rule: rule.id.clone(),
        sensor: sensor.to_owned(),
        site: site.to_owned(),
        severity: rule.severity,
        state,
        since_ms,
        at_ms,
        value,
        labels,
        silenced: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingjing_model::monitor::{AlertAck, SensorKind, Silence, SilenceMatcher, SiteMonitor};

    const T0: i64 = 1_800_000_000_000;

    fn sensor(id: &str, kind: SensorKind, device: &str) -> Sensor {
        Sensor {
            id: id.into(),
            site: "wuxi-1".into(),
            room: "hall-1".into(),
            cabinet: None,
            rack_unit: None,
            kind,
            device: device.into(),
            interval_s: 60,
            contract_watts: None,
            tenant: None,
            rules: None,
        }
    }

    fn config() -> MonitorConfig {
        MonitorConfig {
            monitors: vec![SiteMonitor {
                site: "wuxi-1".into(),
                node: "n1".into(),
            }],
            sensors: vec![
                sensor("t1", SensorKind::Temperature, "env-1"),
                sensor("smoke1", SensorKind::Smoke, "env-1"),
                sensor("elsewhere", SensorKind::Temperature, "env-9"),
            ],
            escalate_after_s: 900,
            ..MonitorConfig::default()
        }
    }

    fn msg(at_s: i64, values: &[(&str, f64)]) -> Telemetry {
        Telemetry {
            seq: 0,
            at_ms: Some(T0 + at_s * 1000),
            values: values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    fn states(events: &[AlertEvent]) -> Vec<(String, AlertState)> {
        events.iter().map(|e| (e.key.clone(), e.state)).collect()
    }

    #[test]
    fn readings_raise_and_clear_once_and_foreign_values_are_dropped() {
        let mut e = Engine::new("wuxi-1", &config(), State::default());
        let taken = e.telemetry(
            "env-1",
            &msg(0, &[("t1", 26.5), ("elsewhere", 40.0), ("nobody", 1.0)]),
            T0,
        );
        assert_eq!(taken.values.len(), 1);
        assert_eq!(taken.dropped, 2);
        assert!(taken.events.is_empty());
        let hot = e.telemetry("env-1", &msg(10, &[("t1", 28.0)]), T0);
        assert_eq!(
            states(&hot.events),
            [("inlet-hot/t1".to_owned(), AlertState::Pending)]
        );
        // The `for` (60 s) passes: it fires once, at the end of the window.
        let fired = e.tick(T0 + 75_000);
        assert_eq!(
            states(&fired),
            [("inlet-hot/t1".to_owned(), AlertState::Firing)]
        );
        assert_eq!(fired[0].since_ms, T0 + 70_000);
        assert!(e.tick(T0 + 80_000).is_empty());
        // 26.5 is inside the hysteresis: still firing; 26 clears.
        assert!(
            e.telemetry("env-1", &msg(90, &[("t1", 26.5)]), T0)
                .events
                .is_empty()
        );
        let cleared = e.telemetry("env-1", &msg(100, &[("t1", 26.0)]), T0);
        assert_eq!(
            states(&cleared.events),
            [("inlet-hot/t1".to_owned(), AlertState::Resolved)]
        );
    }

    #[test]
    fn a_restart_mid_window_neither_loses_nor_repeats_the_alert() {
        let mut e = Engine::new("wuxi-1", &config(), State::default());
        e.telemetry("env-1", &msg(0, &[("t1", 29.0)]), T0);
        let saved = serde_json::to_string(e.state()).expect("state");
        let restored: State = serde_json::from_str(&saved).expect("back");
        let mut again = Engine::new("wuxi-1", &config(), restored);
        let fired = again.tick(T0 + 61_000);
        assert_eq!(
            states(&fired),
            [("inlet-hot/t1".to_owned(), AlertState::Firing)]
        );
        // The same transition recomputed by the engine before the restart has the same id.
        let first = e.tick(T0 + 65_000);
        assert_eq!(first[0].id(), fired[0].id());
        assert!(again.tick(T0 + 120_000).is_empty());
    }

    #[test]
    fn smoke_with_a_rising_temperature_is_a_fire_and_silences_hold_back() {
        let mut cfg = config();
        cfg.silences.push(Silence {
            id: "works".into(),
            matchers: vec![SilenceMatcher {
                label: "rule".into(),
                value: "smoke".into(),
                prefix: false,
            }],
            starts_ms: T0,
            ends_ms: T0 + 3_600_000,
            by: "ops".into(),
            comment: String::new(),
        });
        let mut e = Engine::new("wuxi-1", &cfg, State::default());
        e.telemetry("env-1", &msg(0, &[("t1", 22.0), ("smoke1", 0.0)]), T0);
        let smoke = e.telemetry("env-1", &msg(10, &[("smoke1", 1.0)]), T0);
        assert_eq!(
            states(&smoke.events),
            [("smoke/smoke1".to_owned(), AlertState::Firing)]
        );
        assert!(smoke.events[0].silenced);
        // Rising 2.5 °C within 5 minutes fires at once: with the smoke, a fire.
        let fire = e.telemetry("env-1", &msg(100, &[("t1", 24.5)]), T0).events;
        let s = states(&fire);
        assert!(s.contains(&("inlet-rising/t1".to_owned(), AlertState::Firing)));
        assert!(s.contains(&("fire-suspected/hall-1".to_owned(), AlertState::Firing)));
        assert!(
            !fire
                .iter()
                .find(|e| e.rule == "fire-suspected")
                .expect("fire")
                .silenced
        );
        let out = e.telemetry("env-1", &msg(300, &[("smoke1", 0.0)]), T0);
        let s = states(&out.events);
        assert!(s.contains(&("fire-suspected/hall-1".to_owned(), AlertState::Resolved)));
    }

    #[test]
    fn offline_by_last_will_and_escalation_once_unless_acknowledged() {
        let mut e = Engine::new("wuxi-1", &config(), State::default());
        assert_eq!(
            states(&e.device_status("env-1", false, T0)),
            [("device-offline/env-1".to_owned(), AlertState::Firing)]
        );
        assert!(e.device_status("ghost", false, T0).is_empty());
        assert_eq!(
            states(&e.device_status("env-1", true, T0 + 1000)),
            [("device-offline/env-1".to_owned(), AlertState::Resolved)]
        );
        // Water: critical at once; escalated after 900 s, once.
        let mut cfg = config();
        cfg.sensors.push(sensor("w1", SensorKind::Water, "env-2"));
        let mut e = Engine::new("wuxi-1", &cfg, State::default());
        e.telemetry("env-2", &msg(0, &[("w1", 1.0)]), T0);
        let late = e.tick(T0 + 901_000);
        assert!(states(&late).contains(&("water/w1".to_owned(), AlertState::Escalated)));
        assert!(
            !states(&e.tick(T0 + 902_000))
                .contains(&("water/w1".to_owned(), AlertState::Escalated))
        );
        // Acknowledged: never escalated.
        cfg.acks.push(AlertAck {
            key: "water/w1".into(),
            firing_since_ms: T0,
            by: "ops".into(),
            at_ms: T0 + 5000,
        });
        let mut e = Engine::new("wuxi-1", &cfg, State::default());
        e.telemetry("env-2", &msg(0, &[("w1", 1.0)]), T0);
        assert!(
            !states(&e.tick(T0 + 901_000))
                .contains(&("water/w1".to_owned(), AlertState::Escalated))
        );
    }
}
