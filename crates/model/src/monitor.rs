//! IDC monitoring (issue 18): sensors placed at site -> room -> cabinet (-> rack unit),
//! the rules each one is watched by (its kind's defaults, or its own), the receivers
//! alerts are sent to, silences, the telemetry devices send, and the records a site's
//! node sends the control plane (readings and alert transitions).
//!
//! Invariants: a sensor's id is unique platform-wide and names it on every wire; a
//! device reports only the sensors whose `device` it is; an alert is one per rule and
//! sensor ([`lingjing_alerts::alert::key`]) and each of its transitions has one
//! [`AlertEvent::id`], so a transition sent twice is kept and notified once.

use std::collections::BTreeMap;

use lingjing_alerts::rule::{self, Condition, Rule, Severity};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ident::check_id;
use crate::validate::{Validate, ValidationError, check_max_items, check_name};

/// Most rules of one sensor's own.
pub const MAX_SENSOR_RULES: usize = 20;
/// Most values in one telemetry message.
pub const MAX_VALUES: usize = 1000;
/// Most matchers of a silence.
pub const MAX_MATCHERS: usize = 20;
/// Most sites, tenants or severities a receiver's route names.
pub const MAX_ROUTE_ITEMS: usize = 100;
/// Most records in one batch a node sends.
pub const MAX_BATCH_RECORDS: usize = 500;
/// The longest reporting interval: a day.
pub const MAX_INTERVAL_S: u32 = 86_400;

/// What a sensor measures, which sets its unit and default rules.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    /// Rack inlet air, °C.
    Temperature,
    /// Relative humidity, %.
    Humidity,
    /// A cabinet's or PDU's draw, W.
    Power,
    /// 1 smoke detected, 0 clear.
    Smoke,
    /// 1 water detected, 0 dry.
    Water,
    /// 1 open, 0 closed.
    Door,
    /// 0 on mains, 1 on battery, 2 fault.
    Ups,
    /// 1 online (streaming), 0 dark.
    Camera,
}

impl SensorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SensorKind::Temperature => "temperature",
            SensorKind::Humidity => "humidity",
            SensorKind::Power => "power",
            SensorKind::Smoke => "smoke",
            SensorKind::Water => "water",
            SensorKind::Door => "door",
            SensorKind::Ups => "ups",
            SensorKind::Camera => "camera",
        }
    }

    /// The unit of its readings.
    pub fn unit(self) -> &'static str {
        match self {
            SensorKind::Temperature => "°C",
            SensorKind::Humidity => "%RH",
            SensorKind::Power => "W",
            SensorKind::Smoke
            | SensorKind::Water
            | SensorKind::Door
            | SensorKind::Ups
            | SensorKind::Camera => "state",
        }
    }
}

/// A sensor of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sensor {
    pub id: String,
    pub site: String,
    /// The room (data hall), e.g. `hall-1`.
    pub room: String,
    /// The cabinet it is in or on (a colocation cabinet's id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cabinet: Option<String>,
    /// The rack unit, where it matters (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_unit: Option<u16>,
    pub kind: SensorKind,
    /// The device that reports it (over MQTT `lj/v1/{site}/{device}/telemetry` or HTTP);
    /// one device may report many sensors.
    pub device: String,
    /// How often it reports, in seconds (default 60): silent for three intervals raises
    /// `silent`.
    #[serde(default = "default_interval")]
    pub interval_s: u32,
    /// For a power sensor: the contract its alerts are measured against, in watts
    /// (absent: its cabinet's contracted power).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_watts: Option<u32>,
    /// The tenant whose equipment it watches (routes alerts to the tenant's receivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Its own rules instead of its kind's defaults (`silent` is always added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>, max_items = 20)]
    pub rules: Option<Vec<Rule>>,
}

fn default_interval() -> u32 {
    60
}

impl Validate for Sensor {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_id("site", &self.site)?;
        check_id("room", &self.room)?;
        if let Some(c) = &self.cabinet {
            check_id("cabinet", c)?;
        }
        if self.rack_unit == Some(0) || self.rack_unit.is_some_and(|u| u > 60) {
            return Err(ValidationError::new("rack_unit", "1 to 60"));
        }
        check_id("device", &self.device)?;
        if self.interval_s == 0 || self.interval_s > MAX_INTERVAL_S {
            return Err(ValidationError::new(
                "interval_s",
                format!("1 to {MAX_INTERVAL_S} seconds"),
            ));
        }
        if let Some(t) = &self.tenant {
            check_id("tenant", t)?;
        }
        if self.contract_watts == Some(0) {
            return Err(ValidationError::new(
                "contract_watts",
                "must be above 0 (leave it out to use the cabinet's)",
            ));
        }
        if let Some(rules) = &self.rules {
            check_max_items("rules", rules, MAX_SENSOR_RULES)?;
            let mut seen = std::collections::BTreeSet::new();
            for (i, r) in rules.iter().enumerate() {
                check_id(&format!("rules[{i}].id"), &r.id)?;
                if r.id == "silent" || r.id == DEVICE_OFFLINE {
                    return Err(ValidationError::new(
                        format!("rules[{i}].id"),
                        "`silent` and `device-offline` are built in: name the rule otherwise",
                    ));
                }
                if !seen.insert(r.id.as_str()) {
                    return Err(ValidationError::new(
                        format!("rules[{i}].id"),
                        format!("`{}` is named twice", r.id),
                    ));
                }
                r.check()
                    .map_err(|m| ValidationError::new(format!("rules[{i}]"), m))?;
            }
        }
        Ok(())
    }
}

/// The rule of a device whose last will said `offline`.
pub const DEVICE_OFFLINE: &str = "device-offline";

impl Sensor {
    /// The rules it is watched by: its own or its kind's defaults, then `silent` (three
    /// intervals without a reading). A power sensor with no contract known gets no power
    /// rules.
    pub fn rules(&self) -> Vec<Rule> {
        let mut rules = match &self.rules {
            Some(own) => own.clone(),
            None => default_rules(self.kind, self.contract_watts),
        };
        rules.push(rule::silent(self.interval_s));
        rules
    }

    /// Labels its alerts carry (to match silences and routes).
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut l = vec![
            ("room".to_owned(), self.room.clone()),
            ("kind".to_owned(), self.kind.as_str().to_owned()),
            ("device".to_owned(), self.device.clone()),
        ];
        if let Some(c) = &self.cabinet {
            l.push(("cabinet".into(), c.clone()));
        }
        if let Some(t) = &self.tenant {
            l.push(("tenant".into(), t.clone()));
        }
        l
    }
}

/// A kind's default rules (a site's default rule set).
pub fn default_rules(kind: SensorKind, contract_watts: Option<u32>) -> Vec<Rule> {
    let r = |id: &str, severity, condition, for_s| Rule {
        id: id.to_owned(),
        severity,
        condition,
        for_s,
    };
    match kind {
        SensorKind::Temperature => rule::inlet_temperature(),
        SensorKind::Humidity => rule::humidity(),
        SensorKind::Power => contract_watts.map(rule::cabinet_power).unwrap_or_default(),
        SensorKind::Smoke => vec![rule::detector("smoke")],
        SensorKind::Water => vec![rule::detector("water")],
        SensorKind::Door => vec![r(
            "door-open",
            Severity::Warning,
            Condition::Above {
                value: 0.5,
                clear: 0.5,
            },
            600,
        )],
        SensorKind::Ups => vec![
            r(
                "ups-on-battery",
                Severity::Warning,
                Condition::Above {
                    value: 0.5,
                    clear: 0.5,
                },
                0,
            ),
            r(
                "ups-fault",
                Severity::Critical,
                Condition::Above {
                    value: 1.5,
                    clear: 1.5,
                },
                0,
            ),
        ],
        SensorKind::Camera => vec![r(
            "camera-dark",
            Severity::Warning,
            Condition::Below {
                value: 0.5,
                clear: 0.5,
            },
            60,
        )],
    }
}

/// A composite alert of a site's default rule set: every one of `all` firing on sensors
/// of one room (smoke AND a rise of the inlet temperature: a fire, not a dusty detector).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Composite {
    pub id: String,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub all: Vec<String>,
}

/// The composites every site is watched by.
pub fn default_composites() -> Vec<Composite> {
    vec![Composite {
        id: "fire-suspected".into(),
        severity: Severity::Critical,
        all: vec!["smoke".into(), "inlet-rising".into()],
    }]
}

/// Where an alert goes: a webhook (JSON, signed with the receiver's secret) or email
/// through an SMTP relay, for the alerts its route matches; retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub id: String,
    /// A webhook: the `http://` or `https://` URL alerts are POSTed to (one of `url` and
    /// `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The webhook's key of `X-Lingjing-Signature: sha256=HEX(HMAC-SHA256(secret,
    /// body))`, 16 to 256 characters. Write-only: reads leave it out, a replace without
    /// it keeps it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
    /// Email through an SMTP relay (one of `url` and `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailRoute>,
    /// The sites it hears from (empty: all).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub sites: Vec<String>,
    /// The tenants whose alerts it hears (empty: all, including the operator's own).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub tenants: Vec<String>,
    /// The least severity it hears (default warning: all).
    #[serde(default = "default_min_severity")]
    #[schema(value_type = String)]
    pub min_severity: Severity,
}

/// Email of alerts: one message per transition to every address in `to`, through the
/// SMTP relay at `relay` (`smtp://HOST[:PORT]`, port 25 by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRoute {
    pub relay: String,
    /// The sender, e.g. `Lingjing alerts <alerts@example.org>`.
    pub from: String,
    /// 1 to 20 addresses.
    #[schema(max_items = 20)]
    pub to: Vec<String>,
    /// Require STARTTLS (the relay's certificate must be valid for its host name).
    #[serde(default)]
    pub starttls: bool,
    /// AUTH PLAIN user (only with `starttls`: no password crosses the wire in clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Write-only, as `secret`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
}

/// Most addresses an email route sends to.
pub const MAX_EMAIL_TO: usize = 20;

/// A relay URL's host and port.
pub fn smtp_relay(relay: &str) -> Result<(String, u16), String> {
    let rest = relay
        .strip_prefix("smtp://")
        .ok_or("the relay is smtp://HOST[:PORT]")?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains(['/', '@', '?', '#', ' ']) {
        return Err(
            "the relay is smtp://HOST[:PORT] (credentials go in username and password)".into(),
        );
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (rest, None),
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let port = match port {
        None => 25,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{p}` is not a port"))?,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("the relay has no host".into());
    }
    Ok((host.to_owned(), port))
}

/// Whether `a` looks like an email address (`name <local@domain>` or `local@domain`);
/// the relay has the last word.
fn check_address(field: &str, a: &str) -> Result<(), ValidationError> {
    let bare = match (a.find('<'), a.rfind('>')) {
        (Some(i), Some(j)) if i < j && j == a.len() - 1 => &a[i + 1..j],
        _ => a,
    };
    let ok = a.len() <= 320
        && !a.chars().any(char::is_control)
        && bare.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.contains(['@', ' ', '<', '>'])
        })
        && !bare.contains([' ', '<', '>', ',']);
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            "an email address: local@domain, or Name <local@domain>",
        ))
    }
}

fn default_min_severity() -> Severity {
    Severity::Warning
}

impl Validate for Receiver {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        match (&self.url, &self.email) {
            (Some(url), None) => {
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
                    .ok_or_else(|| {
                        ValidationError::new("url", "must start with http:// or https://")
                    })?;
                if rest.is_empty()
                    || url.len() > 2048
                    || url.chars().any(|c| c.is_control() || c.is_whitespace())
                {
                    return Err(ValidationError::new(
                        "url",
                        "a host after the scheme, at most 2048 characters, no spaces",
                    ));
                }
                if self.secret.len() < 16 || self.secret.len() > 256 {
                    return Err(ValidationError::new("secret", "16 to 256 characters"));
                }
            }
            (None, Some(e)) => {
                smtp_relay(&e.relay).map_err(|m| ValidationError::new("email.relay", m))?;
                check_address("email.from", &e.from)?;
                if e.to.is_empty() {
                    return Err(ValidationError::new("email.to", "at least one address"));
                }
                check_max_items("email.to", &e.to, MAX_EMAIL_TO)?;
                for (i, a) in e.to.iter().enumerate() {
                    check_address(&format!("email.to[{i}]"), a)?;
                }
                if e.username.is_some() && !e.starttls {
                    return Err(ValidationError::new(
                        "email.username",
                        "credentials need starttls: true (they would cross the wire in clear)",
                    ));
                }
                if e.username.is_some() && e.password.is_empty() {
                    return Err(ValidationError::new(
                        "email.password",
                        "needed with a username",
                    ));
                }
                if !self.secret.is_empty() {
                    return Err(ValidationError::new(
                        "secret",
                        "only a webhook has a secret",
                    ));
                }
            }
            _ => {
                return Err(ValidationError::new(
                    "url",
                    "give a webhook `url` (with `secret`) or an `email` route, one of them",
                ));
            }
        }
        check_max_items("sites", &self.sites, MAX_ROUTE_ITEMS)?;
        check_max_items("tenants", &self.tenants, MAX_ROUTE_ITEMS)?;
        for (i, s) in self.sites.iter().enumerate() {
            check_id(&format!("sites[{i}]"), s)?;
        }
        for (i, t) in self.tenants.iter().enumerate() {
            check_id(&format!("tenants[{i}]"), t)?;
        }
        Ok(())
    }
}

impl Receiver {
    /// Whether an alert of `site`, `tenant` and `severity` goes to it.
    pub fn routes(&self, site: &str, tenant: Option<&str>, severity: Severity) -> bool {
        severity >= self.min_severity
            && (self.sites.is_empty() || self.sites.iter().any(|s| s == site))
            && (self.tenants.is_empty()
                || tenant.is_some_and(|t| self.tenants.iter().any(|x| x == t)))
    }
}

/// A silence: alerts whose labels match every matcher are not notified between `starts`
/// and `ends` (they are still raised, kept and shown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub id: String,
    #[schema(max_items = 20)]
    pub matchers: Vec<SilenceMatcher>,
    /// ms since the epoch.
    pub starts_ms: i64,
    pub ends_ms: i64,
    pub by: String,
    #[serde(default)]
    pub comment: String,
}

/// `label` equals `value` (or starts with it, with `prefix`). Labels: `site`, `rule`,
/// `sensor`, `room`, `kind`, `device`, `cabinet`, `tenant`, `severity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatcher {
    pub label: String,
    pub value: String,
    #[serde(default)]
    pub prefix: bool,
}

impl Validate for Silence {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("id", &self.id)?;
        check_name("by", &self.by)?;
        if self.comment.len() > 1000 {
            return Err(ValidationError::new("comment", "at most 1000 characters"));
        }
        check_max_items("matchers", &self.matchers, MAX_MATCHERS)?;
        self.to_alerts()
            .check()
            .map_err(|m| ValidationError::new("matchers", m))
    }
}

impl Silence {
    /// As the rule engine takes it.
    pub fn to_alerts(&self) -> lingjing_alerts::Silence {
        lingjing_alerts::Silence {
            id: self.id.clone(),
            matchers: self
                .matchers
                .iter()
                .map(|m| lingjing_alerts::alert::Matcher {
                    label: m.label.clone(),
                    value: m.value.clone(),
                    prefix: m.prefix,
                })
                .collect(),
            starts_ms: self.starts_ms,
            ends_ms: self.ends_ms,
            by: self.by.clone(),
            comment: self.comment.clone(),
        }
    }
}

/// An acknowledgement of a firing alert, as the nodes learn it (it stops escalation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertAck {
    pub key: String,
    /// The firing it acknowledged (a later firing is not acknowledged).
    pub firing_since_ms: i64,
    pub by: String,
    pub at_ms: i64,
}

/// Which node watches a site's sensors (the first edge AI node of the site by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteMonitor {
    pub site: String,
    pub node: String,
}

/// What edge AI nodes need to watch their site (in the `aiot` snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitorConfig {
    #[serde(default)]
    pub monitors: Vec<SiteMonitor>,
    /// Power sensors carry their cabinet's contract in `contract_watts`.
    #[serde(default)]
    pub sensors: Vec<Sensor>,
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// The silences not yet over.
    #[serde(default)]
    pub silences: Vec<Silence>,
    /// Acknowledgements of alerts still firing.
    #[serde(default)]
    pub acks: Vec<AlertAck>,
    /// A critical alert firing this long unacknowledged is escalated (default 900 s).
    #[serde(default = "default_escalate")]
    pub escalate_after_s: u32,
}

fn default_escalate() -> u32 {
    900
}

impl MonitorConfig {
    /// The site `node` watches, if any.
    pub fn site_of(&self, node: &str) -> Option<&str> {
        self.monitors
            .iter()
            .find(|m| m.node == node)
            .map(|m| m.site.as_str())
    }
}

/// A device's telemetry message (MQTT payload or HTTP body): readings of its sensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// The device's own counter (logged; messages sent twice are harmless).
    #[serde(default)]
    pub seq: u64,
    /// When taken, ms since the epoch (default: when received).
    #[serde(default)]
    pub at_ms: Option<i64>,
    /// Sensor id -> value (at most 1000).
    pub values: BTreeMap<String, f64>,
}

/// An alert's transition, as the node saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Pending,
    Cancelled,
    Firing,
    Resolved,
    /// Critical, firing unacknowledged too long: sent again, once.
    Escalated,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Cancelled => "cancelled",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
            AlertState::Escalated => "escalated",
        }
    }
}

/// One transition of one alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertEvent {
    /// `{rule}/{sensor}`: one alert per rule and sensor.
    pub key: String,
    pub rule: String,
    /// The sensor (or device, for `device-offline`; or room, for a composite).
    pub sensor: String,
    pub site: String,
    #[schema(value_type = String)]
    pub severity: Severity,
    pub state: AlertState,
    /// When the condition began to hold (pending) or the alert fired (firing and after).
    pub since_ms: i64,
    /// When this transition happened.
    pub at_ms: i64,
    /// The reading that made it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Whether a silence held it back from receivers (it is still kept and shown).
    #[serde(default)]
    pub silenced: bool,
}

impl AlertEvent {
    /// Names this transition: the same transition sent twice has the same id.
    pub fn id(&self) -> String {
        format!("{}@{}:{}", self.key, self.since_ms, self.state.as_str())
    }

    pub fn tenant(&self) -> Option<&str> {
        self.labels.get("tenant").map(String::as_str)
    }
}

/// A sensor's value in a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SensorValue {
    pub sensor: String,
    pub value: f64,
}

/// What a record from a site's node carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MonitorEvent {
    /// One message's readings.
    Readings {
        at_ms: i64,
        values: Vec<SensorValue>,
    },
    Alert(AlertEvent),
}

/// One record of a node's monitoring outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitorRecord {
    /// Consecutive from 1 within its stream.
    pub seq: u64,
    pub site: String,
    pub event: MonitorEvent,
}

/// A batch of records a node sends (`POST /v1/monitor/records`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MonitorBatch {
    pub node: String,
    pub stream: String,
    /// At most [`MAX_BATCH_RECORDS`].
    #[schema(max_items = 500)]
    pub records: Vec<MonitorRecord>,
}

impl MonitorRecord {
    /// Checks a record from a node (sizes and ids; sensors are checked against the
    /// inventory by the control plane).
    pub fn check(&self, field: &str) -> Result<(), ValidationError> {
        check_id(&format!("{field}.site"), &self.site)?;
        match &self.event {
            MonitorEvent::Readings { values, .. } => {
                check_max_items(&format!("{field}.values"), values, MAX_VALUES)?;
                for (i, v) in values.iter().enumerate() {
                    check_id(&format!("{field}.values[{i}].sensor"), &v.sensor)?;
                    if !v.value.is_finite() {
                        return Err(ValidationError::new(
                            format!("{field}.values[{i}].value"),
                            "must be a finite number",
                        ));
                    }
                }
            }
            MonitorEvent::Alert(a) => {
                check_id(&format!("{field}.rule"), &a.rule)?;
                check_id(&format!("{field}.sensor"), &a.sensor)?;
                if a.key != lingjing_alerts::alert::key(&a.rule, &a.sensor) {
                    return Err(ValidationError::new(
                        format!("{field}.key"),
                        "must be `{rule}/{sensor}`",
                    ));
                }
                if a.labels.len() > 20
                    || a.labels.iter().any(|(k, v)| k.len() > 64 || v.len() > 256)
                {
                    return Err(ValidationError::new(
                        format!("{field}.labels"),
                        "at most 20 labels, names up to 64 and values up to 256 characters",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sensor(kind: SensorKind) -> Sensor {
        Sensor {
            id: "s1".into(),
            site: "wuxi-1".into(),
            room: "hall-1".into(),
            cabinet: Some("c1".into()),
            rack_unit: None,
            kind,
            device: "dev-1".into(),
            interval_s: 30,
            contract_watts: None,
            tenant: None,
            rules: None,
        }
    }

    #[test]
    fn each_kind_has_its_defaults_and_silent_always() {
        let t = sensor(SensorKind::Temperature).rules();
        let ids: Vec<&str> = t.iter().map(|r| r.id.as_str()).collect();
        assert!(ids.contains(&"inlet-hot") && ids.contains(&"inlet-rising"));
        assert_eq!(ids.last(), Some(&"silent"));
        // Power without a contract: only silent; with one, 80% and 100%.
        assert_eq!(sensor(SensorKind::Power).rules().len(), 1);
        let mut p = sensor(SensorKind::Power);
        p.contract_watts = Some(5000);
        assert_eq!(p.rules().len(), 3);
        for k in [SensorKind::Smoke, SensorKind::Water] {
            let r = sensor(k).rules();
            assert_eq!(r[0].severity, Severity::Critical);
            assert_eq!(r[0].for_s, 0);
        }
        for r in sensor(SensorKind::Ups).rules() {
            r.check().expect("valid");
        }
    }

    #[test]
    fn bad_sensors_and_receivers_are_refused_by_field() {
        let mut s = sensor(SensorKind::Temperature);
        assert_eq!(s.validate(), Ok(()));
        s.interval_s = 0;
        assert_eq!(s.validate().unwrap_err().field, "interval_s");
        let mut s = sensor(SensorKind::Temperature);
        s.rules = Some(vec![rule::silent(60)]);
        assert_eq!(s.validate().unwrap_err().field, "rules[0].id");
        let mut r = Receiver {
            id: "ops".into(),
            url: Some("https://hooks.example/alerts".into()),
            secret: "0123456789abcdef".into(),
            email: None,
            sites: vec![],
            tenants: vec![],
            min_severity: Severity::Warning,
        };
        assert_eq!(r.validate(), Ok(()));
        assert!(r.routes("any", None, Severity::Warning));
        r.min_severity = Severity::Critical;
        assert!(!r.routes("any", None, Severity::Warning));
        r.tenants = vec!["acme".into()];
        assert!(!r.routes("any", None, Severity::Critical));
        assert!(r.routes("any", Some("acme"), Severity::Critical));
        r.secret = "short".into();
        assert_eq!(r.validate().unwrap_err().field, "secret");
        r.secret = "0123456789abcdef".into();
        r.url = Some("ftp://x".into());
        assert_eq!(r.validate().unwrap_err().field, "url");
        // Email instead: a relay, a sender, addresses; credentials only over STARTTLS.
        r.url = None;
        r.secret.clear();
        r.email = Some(EmailRoute {
            relay: "smtp://10.0.0.5".into(),
            from: "Lingjing <alerts@example.org>".into(),
            to: vec!["ops@example.org".into()],
            starttls: false,
            username: None,
            password: String::new(),
        });
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(smtp_relay("smtp://10.0.0.5"), Ok(("10.0.0.5".into(), 25)));
        assert_eq!(smtp_relay("smtp://mx:2525"), Ok(("mx".into(), 2525)));
        assert!(smtp_relay("smtps://mx").is_err() && smtp_relay("smtp://u:p@mx").is_err());
        let mut e = r.clone();
        if let Some(m) = e.email.as_mut() {
            m.username = Some("u".into());
            m.password = "p".into();
        }
        assert_eq!(e.validate().unwrap_err().field, "email.username");
        let mut e = r.clone();
        if let Some(m) = e.email.as_mut() {
            m.to = vec!["not an address".into()];
        }
        assert_eq!(e.validate().unwrap_err().field, "email.to[0]");
        r.url = Some("https://x".into());
        assert_eq!(r.validate().unwrap_err().field, "url");
    }

    #[test]
    fn an_event_id_names_the_transition() {
        let e = AlertEvent {
            key: "inlet-hot/s1".into(),
            rule: "inlet-hot".into(),
            sensor: "s1".into(),
            site: "wuxi-1".into(),
            severity: Severity::Warning,
            state: AlertState::Firing,
            since_ms: 5,
            at_ms: 7,
            value: Some(28.0),
            labels: BTreeMap::new(),
            silenced: false,
        };
        assert_eq!(e.id(), "inlet-hot/s1@5:firing");
        let rec = MonitorRecord {
            seq: 1,
            site: "wuxi-1".into(),
            event: MonitorEvent::Alert(e),
        };
        assert_eq!(rec.check("records[0]"), Ok(()));
        let text = serde_json::to_string(&rec).expect("json");
        let back: MonitorRecord = serde_json::from_str(&text).expect("back");
        assert_eq!(back, rec);
    }
}
