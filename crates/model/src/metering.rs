//! Metering as the API reads it (`GET /v1/usage`): traffic per service, node, site or
//! tenant over a time range, in steps of 5 minutes, an hour, a day or a month, summed from
//! the raw 5-minute samples the edges report (`snapshot::MeterReport`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the rows of a usage report are per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    Service,
    Node,
    Site,
    /// The line (carrier) of the node's address the clients reached (`` when the
    /// address is in no pool of a line).
    Line,
    Tenant,
}

impl UsageGroup {
    /// The column of `meter_samples` it groups by.
    pub fn column(self) -> &'static str {
        match self {
            UsageGroup::Service => "service_id",
            UsageGroup::Node => "node_id",
            UsageGroup::Site => "site_id",
            UsageGroup::Line => "line_id",
            UsageGroup::Tenant => "tenant_id",
        }
    }
}

impl std::str::FromStr for UsageGroup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "service" => Ok(UsageGroup::Service),
            "node" => Ok(UsageGroup::Node),
            "site" => Ok(UsageGroup::Site),
            "line" => Ok(UsageGroup::Line),
            "tenant" => Ok(UsageGroup::Tenant),
            other => Err(format!(
                "group {other:?}: use service, node, site, line or tenant"
            )),
        }
    }
}

/// The length of a report's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum UsageStep {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "1d")]
    Day,
    /// Calendar months (UTC).
    #[serde(rename = "month")]
    Month,
}

impl UsageStep {
    /// The step in ms (a month is summed from days).
    pub fn sql_ms(self) -> i64 {
        match self {
            UsageStep::FiveMinutes => 300_000,
            UsageStep::Hour => 3_600_000,
            UsageStep::Day | UsageStep::Month => 86_400_000,
        }
    }
}

impl std::str::FromStr for UsageStep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "5m" => Ok(UsageStep::FiveMinutes),
            "1h" => Ok(UsageStep::Hour),
            "1d" => Ok(UsageStep::Day),
            "month" => Ok(UsageStep::Month),
            other => Err(format!("step {other:?}: use 5m, 1h, 1d or month")),
        }
    }
}

/// Traffic counted in one step (or over the whole range).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageCounts {
    pub requests: u64,
    /// Of `requests`: answered from the cache.
    pub hit_requests: u64,
    /// Of `requests`: cache misses (the rest passed through uncached or failed).
    pub miss_requests: u64,
    /// Body bytes received (client uploads, upstream responses).
    pub bytes_in: u64,
    /// Body bytes sent to clients.
    pub bytes_out: u64,
    pub hit_bytes_out: u64,
    pub miss_bytes_out: u64,
}

impl UsageCounts {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &UsageCounts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.hit_requests = self.hit_requests.saturating_add(other.hit_requests);
        self.miss_requests = self.miss_requests.saturating_add(other.miss_requests);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.hit_bytes_out = self.hit_bytes_out.saturating_add(other.hit_bytes_out);
        self.miss_bytes_out = self.miss_bytes_out.saturating_add(other.miss_bytes_out);
    }
}

/// One step of a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsagePoint {
    /// The step's start (RFC 3339, UTC).
    pub start: String,
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// One service's (node's, site's, tenant's) traffic over the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageSeries {
    pub key: String,
    /// Steps with traffic, oldest first (steps without any are left out).
    pub points: Vec<UsagePoint>,
    pub total: UsageCounts,
}

/// What `GET /v1/usage` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    pub group: UsageGroup,
    pub step: UsageStep,
    pub series: Vec<UsageSeries>,
    /// Everything in the report.
    pub total: UsageCounts,
}

/// Most points one report may hold (series x steps); a longer range needs a longer step.
pub const MAX_USAGE_POINTS: usize = 100_000;
