//! Snapshots: the immutable, versioned views of desired state that the control plane hands
//! each data-plane role, and the node status the API reports back.
//!
//! Invariant: a snapshot's `version` is the control plane's configuration version when it
//! was built; versions only increase, so a data plane applies a snapshot only when its
//! version is newer than the one it has.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ErasureCode, IpPool, Line, LinePrefix, Node, Purge, Region, Service, Site};

/// A data-plane role that receives snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Edge cache nodes (and parent caches).
    Edge,
    /// GSLB DNS servers.
    Dns,
    /// Storage nodes (object storage blocks): the cluster token and their peers.
    Storage,
    /// S3 gateways: the storage nodes, the cluster token and the tenants' S3 keys.
    S3,
    /// Edge AI nodes: the model versions each of their slots should run.
    Aiot,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Edge, Role::Dns, Role::Storage, Role::S3, Role::Aiot];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::Dns => "dns",
            Role::Storage => "storage",
            Role::S3 => "s3",
            Role::Aiot => "aiot",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "edge" => Ok(Role::Edge),
            "dns" => Ok(Role::Dns),
            "storage" => Ok(Role::Storage),
            "s3" => Ok(Role::S3),
            "aiot" => Ok(Role::Aiot),
            other => Err(format!(
                "unknown role `{other}`: expected `edge`, `dns`, `storage`, `s3` or `aiot`"
            )),
        }
    }
}

/// One version of what a role needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Snapshot<T> {
    pub version: u64,
    pub role: Role,
    /// When the control plane built it (RFC 3339).
    pub generated_at: String,
    pub body: T,
}

/// A node as data planes see it: its definition, its addresses and whether it may take
/// traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub node: Node,
    #[schema(value_type = Vec<String>)]
    pub addresses: Vec<IpAddr>,
    /// Passing its health checks (and heartbeating, once its agent has registered).
    pub healthy: bool,
    /// Traffic it serves now as a share of its `capacity_mbps`, in percent (0 when the
    /// capacity is not set or nothing was reported). Steering skips a node at or above
    /// the service's `max_load_percent`.
    #[serde(default)]
    pub load_percent: u8,
}

/// What an edge node needs: the services it serves and the nodes it may fill from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct EdgeSnapshot {
    pub services: Vec<Service>,
    pub sites: Vec<Site>,
    pub nodes: Vec<NodeInfo>,
    /// Recent purges, oldest first.
    #[serde(default)]
    pub purges: Vec<Purge>,
    /// `purges` holds every purge issued after this version: a node whose cache reflects
    /// an older version than this may have missed one and must drop its whole cache.
    #[serde(default)]
    pub purges_complete_after: u64,
    /// Which addresses an origin (or a parent) may resolve to: checked again at connect
    /// time, after name resolution, so DNS rebinding cannot reach the platform.
    #[serde(default)]
    pub origin_policy: crate::OriginPolicy,
    /// Services whose origin is a bucket, with the credential that reads it.
    #[serde(default)]
    pub bucket_origins: Vec<BucketOrigin>,
    /// The S3 gateways' addresses (healthy, not drained `s3` nodes) that bucket origins
    /// are read from.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub s3_gateways: Vec<std::net::SocketAddr>,
    /// Traffic defence rules in force (manual and detected; expired ones left out, and
    /// an edge also ignores a rule once its `expires_ms` has passed).
    #[serde(default)]
    pub defence_rules: Vec<crate::defence::DefenceRule>,
    /// Thresholds learned per service (services that learn and have enough history).
    #[serde(default)]
    pub defence_learned: Vec<crate::defence::LearnedThresholds>,
    /// The platform's artefact relay (edge AI models travel through the edges): none when
    /// the control plane has no relay upstream configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_relay: Option<ArtifactRelay>,
}

/// How an edge reads the bucket a service is served from: a platform credential the S3
/// gateways accept only for `GetObject` and `HeadObject` in that bucket, and only while
/// the bucket belongs to the service's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BucketOrigin {
    pub service: String,
    pub bucket: String,
    pub access_key: String,
    pub secret: String,
}

/// What a GSLB DNS server needs: the zone, the classification tables and the candidates.
/// Services carry no TLS keys here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct DnsSnapshot {
    /// The platform zone, e.g. `cdn.lingjing.test.`.
    pub zone: String,
    pub regions: Vec<Region>,
    pub lines: Vec<Line>,
    pub prefixes: Vec<LinePrefix>,
    pub sites: Vec<Site>,
    pub pools: Vec<IpPool>,
    pub nodes: Vec<NodeInfo>,
    pub services: Vec<Service>,
    /// The operator's static records under the zone.
    #[serde(default)]
    pub records: Vec<crate::DnsRecord>,
}

/// A node's liveness as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
pub struct NodeStatus {
    /// First registration of the node's agent (RFC 3339).
    pub registered_at: Option<String>,
    /// Last heartbeat (RFC 3339).
    pub last_heartbeat: Option<String>,
    /// Snapshot version applied, per role.
    pub applied: std::collections::BTreeMap<String, u64>,
    /// The agent's software version.
    pub agent: Option<String>,
    /// Whether the node passes its health probes (`None`: not probed yet).
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Since when it is in that state (RFC 3339).
    #[serde(default)]
    pub health_since: Option<String>,
    /// Why it changed last (e.g. `2 failed checks: probe 127.0.1.1:9090: connection refused`).
    #[serde(default)]
    pub health_reason: Option<String>,
    /// Traffic served over the last report, in Mbit/s.
    #[serde(default)]
    pub load_mbps: Option<u64>,
    /// That traffic as a share of the node's capacity, in percent.
    #[serde(default)]
    pub load_percent: Option<u8>,
}

/// What object storage needs: storage nodes get the cluster token and the node list;
/// S3 gateways also get every tenant's S3 keys (their secrets: SigV4 needs them), which
/// no other role sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageSnapshot {
    /// The bearer token gateways present to storage nodes (generated by the control
    /// plane once; storage nodes accept only it).
    pub cluster_token: String,
    /// How blocks are kept (copies, erasure code).
    #[serde(flatten)]
    pub policy: StoragePolicy,
    /// The nodes with the `storage` role (the block API on `ports.http`).
    pub nodes: Vec<NodeInfo>,
    /// Tenants' S3 access keys (empty in the `storage` role's snapshot).
    #[serde(default)]
    pub s3_keys: Vec<S3Credential>,
    /// The applied cluster layout: each node's share of new blocks (version 0: equal).
    #[serde(default)]
    pub layout: crate::storage_layout::StorageLayout,
}

/// How object storage keeps blocks: set on the control plane (`--storage-replicas`,
/// `--storage-erasure`), carried to the S3 gateways in their snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoragePolicy {
    /// Copies kept of each replicated block.
    pub replicas: u32,
    /// Blocks of at least `erasure_min_bytes` are erasure-coded with this code, when the
    /// cluster has more storage nodes than its data shards; smaller blocks are replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "4+2")]
    pub erasure: Option<ErasureCode>,
    #[serde(default = "default_erasure_min_bytes")]
    pub erasure_min_bytes: u64,
}

/// Blocks smaller than this are replicated even when an erasure code is set: a few KiB
/// cut into shards costs more requests than the disk it saves.
pub const DEFAULT_ERASURE_MIN_BYTES: u64 = 128 * 1024;

fn default_erasure_min_bytes() -> u64 {
    DEFAULT_ERASURE_MIN_BYTES
}

impl Default for StoragePolicy {
    /// Three copies, nothing coded.
    fn default() -> Self {
        StoragePolicy {
            replicas: 3,
            erasure: None,
            erasure_min_bytes: DEFAULT_ERASURE_MIN_BYTES,
        }
    }
}

/// An S3 access key with its secret and tenant, as gateways need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct S3Credential {
    pub access_key: String,
    pub secret: String,
    pub tenant: String,
    /// A platform credential for a bucket origin: it may only read (`GetObject`,
    /// `HeadObject`) this bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_bucket: Option<String>,
}

/// How edges carry the platform's artefacts (`GET /v1/artifacts/sha256/{digest}`) to its
/// nodes: requests with this Host are served from the cache, filled from the parent tier
/// or the control plane with the edge's own node credential, and answered only to the
/// platform's nodes (no tenant, no client of the internet reads a model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactRelay {
    /// The Host nodes send, e.g. `artifacts.cdn.lingjing.test` (under the platform zone,
    /// which no tenant may hold).
    pub hostname: String,
    /// The control plane's API, the relay's origin, e.g. `https://127.0.0.1:7700`.
    pub upstream: String,
    /// PEM of the CA its certificate is checked against, besides the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<String>,
    /// The addresses of the platform's nodes: the only clients the relay answers.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub clients: Vec<IpAddr>,
}

/// A storage node's disk, reported with its heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageReport {
    /// Bytes of blocks held.
    pub used_bytes: u64,
    /// Bytes free on the blocks' file system.
    pub free_bytes: u64,
    /// Blocks held.
    pub blocks: u64,
    /// When its last scrub pass finished, in ms since the Unix epoch (none yet: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scrub_ms: Option<u64>,
    /// A scrub pass is running now.
    #[serde(default)]
    pub scrub_running: bool,
    /// Corrupt copies or shards its scrubs found (quarantined, for repair to rewrite)
    /// since it started.
    #[serde(default)]
    pub corrupt_found: u64,
}

/// A storage node as `GET /v1/storage/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageNodeStatus {
    pub node: NodeInfo,
    /// Its last disk report (none before its first heartbeat).
    pub report: Option<StorageReport>,
    /// When that report came (RFC 3339).
    pub reported_at: Option<String>,
}

/// What a storage node answered when asked to scrub (`POST /v1/storage/scrub`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScrubAsked {
    pub node: String,
    /// A pass started now (`false`: one was already running, or see `error`).
    pub started: bool,
    /// Why the node could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a data plane's agent gets a storage report to send with each heartbeat.
pub trait StorageReportSource: Send + Sync + 'static {
    fn report(&self) -> StorageReport;
}

/// What an agent reports on register and on every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub role: Role,
    /// The snapshot version the data plane has applied (0: none yet).
    #[serde(default)]
    pub applied_version: u64,
    #[serde(default)]
    pub agent: Option<String>,
    /// Traffic served since the last acknowledged report, per service.
    #[serde(default)]
    pub usage: Vec<UsageSample>,
    /// The report's sequence number, so a report resent after a lost answer is counted
    /// once (0: no usage report).
    #[serde(default)]
    pub usage_seq: u64,
    /// Traffic per service and 5-minute interval, for metering and billing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<MeterReport>,
    /// A storage node's disk.
    #[serde(default)]
    pub storage: Option<StorageReport>,
    /// An S3 gateway's traffic per bucket since its last acknowledged report (counted
    /// once, with `usage_seq`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bucket_traffic: Vec<BucketTraffic>,
    /// What buckets hold, sampled by an S3 gateway on 5-minute boundaries (a sample
    /// received twice is stored once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bucket_stored: Vec<BucketStored>,
    /// An edge node's accounts of attacks it found (sent at once when one starts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defence: Vec<crate::defence::DefenceReport>,
    /// An edge node's busiest seconds per service and minute, for learned thresholds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub defence_baseline: Vec<crate::defence::BaselineSample>,
    /// An edge AI node's model slots: what each serves and where a new version is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aiot: Vec<crate::aiot::SlotReport>,
    /// An edge's or DNS server's running totals of what it answered and how much of it
    /// failed (the platform's error-rate alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answers: Option<AnswerCounts>,
}

/// A data plane's totals since it started: requests (edge) or queries (DNS) answered,
/// and of them those that failed (edge: the upstream failed and the client got an
/// error; DNS: SERVFAIL). `run` is random per start, so totals that start again from
/// zero are told apart from totals that went backwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnswerCounts {
    pub run: u64,
    pub answered: u64,
    pub failed: u64,
}

/// Where a data plane's agent gets its [`AnswerCounts`] for each heartbeat.
pub trait AnswerCountSource: Send + Sync + 'static {
    fn answer_counts(&self) -> AnswerCounts;
}

/// A data plane's running [`AnswerCounts`], counted lock-free.
#[derive(Debug, Default)]
pub struct AnswerTotals {
    run: u64,
    answered: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
}

impl AnswerTotals {
    /// Totals of one run (`run`: random per start).
    pub fn new(run: u64) -> AnswerTotals {
        AnswerTotals {
            run,
            ..AnswerTotals::default()
        }
    }

    /// Counts `answered` answers, `failed` of them failures.
    pub fn add(&self, answered: u64, failed: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.answered.fetch_add(answered, Relaxed);
        self.failed.fetch_add(failed, Relaxed);
    }
}

impl AnswerCountSource for AnswerTotals {
    fn answer_counts(&self) -> AnswerCounts {
        use std::sync::atomic::Ordering::Relaxed;
        // Failed first: a failure counted between the two reads is never more than the
        // answers read after it.
        let failed = self.failed.load(Relaxed);
        AnswerCounts {
            run: self.run,
            answered: self.answered.load(Relaxed).max(failed),
            failed,
        }
    }
}

/// One bucket's traffic through one S3 gateway over a reporting interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketTraffic {
    pub bucket: String,
    pub tenant: String,
    pub requests: u64,
    /// Request bodies received (uploads).
    pub bytes_in: u64,
    /// Response bodies sent (egress).
    pub bytes_out: u64,
}

/// What one bucket holds at one moment (a 5-minute boundary), for billing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketStored {
    pub bucket: String,
    pub tenant: String,
    /// The sample's time, ms since the Unix epoch (a multiple of 5 minutes).
    pub at_ms: u64,
    /// Versions kept (current and older, not delete markers) and parts of unfinished
    /// multipart uploads.
    pub objects: u64,
    /// Their bytes, as the tenant sent them: what storage is billed by.
    pub stored_bytes: u64,
    /// The disk they take on the storage nodes: copies, data and parity shards.
    pub raw_bytes: u64,
    /// Of `raw_bytes`, erasure-coding parity.
    pub parity_bytes: u64,
}

/// A bucket's usage over a window, as `GET /v1/storage/usage` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BucketUsage {
    pub bucket: String,
    pub tenant: String,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The last sample of what it holds in the window, if any.
    pub stored: Option<BucketStored>,
    /// Stored-bytes samples in the window (to average over a month: byte-hours).
    pub samples: u64,
    /// The mean of `stored_bytes` over those samples.
    pub mean_stored_bytes: u64,
}

/// Where an S3 gateway's agent gets its per-bucket usage, to report with heartbeats.
pub trait BucketUsageSource: Send + Sync + 'static {
    /// Takes (and resets) the traffic counted and the stored samples made since the last
    /// call.
    fn take(&self) -> (Vec<BucketTraffic>, Vec<BucketStored>);
}

/// Where an edge's agent gets the defence reports to send (implemented by the edge).
pub trait DefenceSource: Send + Sync + 'static {
    /// Takes the reports waiting to be sent.
    fn take(&self) -> Vec<crate::defence::DefenceReport>;
    /// Takes the per-minute samples of finished minutes.
    fn take_baseline(&self) -> Vec<crate::defence::BaselineSample>;
}

/// Traffic of one service on one node over a reporting interval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageSample {
    pub service: String,
    /// The node's own address the clients reached it on (its line is the line of the
    /// pool the address is from); absent: not told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub address: Option<std::net::IpAddr>,
    pub requests: u64,
    /// Response body bytes sent to clients.
    pub bytes_out: u64,
    /// Of `requests`, those answered from the cache (fresh, stale or revalidated).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hit_requests: u64,
    /// Of `bytes_out`, those of cache hits.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hit_bytes_out: u64,
    /// Of `requests`, cache misses (fetched upstream to be cached). The rest passed
    /// through uncached or failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub miss_requests: u64,
    /// Of `bytes_out`, those of cache misses.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub miss_bytes_out: u64,
    /// Body bytes received for the service: request bodies from clients, and response
    /// bodies from upstream (cache fills and passed-through responses).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_in: u64,
}

impl UsageSample {
    /// Adds `other`'s counts (same service) to these (the address stays).
    pub fn add(&mut self, other: &UsageSample) {
        self.requests = self.requests.saturating_add(other.requests);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.hit_requests = self.hit_requests.saturating_add(other.hit_requests);
        self.hit_bytes_out = self.hit_bytes_out.saturating_add(other.hit_bytes_out);
        self.miss_requests = self.miss_requests.saturating_add(other.miss_requests);
        self.miss_bytes_out = self.miss_bytes_out.saturating_add(other.miss_bytes_out);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.requests == 0 && self.bytes_out == 0 && self.bytes_in == 0
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The length of a metering interval: samples are kept per wall-clock 5 minutes.
pub const METER_INTERVAL_MS: u64 = 300_000;

/// Most samples one heartbeat may carry in its metering report (~250 bytes each: a
/// full report stays well under the API's 1 MiB body limit).
pub const MAX_METER_SAMPLES: usize = 2_000;

/// A data plane's metering: per service and wall-clock 5-minute interval, what it counted
/// so far in that interval since its counters started (`epoch`). Totals, not increments:
/// the control plane keeps the largest it has seen per (node, epoch, service, interval),
/// so a report resent, repeated or arriving late is counted exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterReport {
    /// Names this run of the node's counters (random at start, below 2^63): a restarted
    /// node's counts of an interval add to those of its previous run.
    pub epoch: u64,
    /// At most [`MAX_METER_SAMPLES`].
    pub samples: Vec<MeterSample>,
}

/// One service's traffic on one node in one 5-minute interval (so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterSample {
    /// The interval's start, ms since the Unix epoch (a multiple of 300,000).
    pub start_ms: u64,
    pub usage: UsageSample,
}

/// Where a data plane's agent gets the traffic it served, to report with heartbeats
/// (implemented by the edge; a trait here so the data planes need not depend on the agent).
pub trait UsageSource: Send + Sync + 'static {
    /// Takes (and resets) what was counted since the last call.
    fn take(&self) -> Vec<UsageSample>;
}

/// A service's traffic over a window, as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceUsage {
    pub service: String,
    pub requests: u64,
    pub bytes_out: u64,
    /// Per minute (RFC 3339 start of the minute), oldest first.
    pub minutes: Vec<UsageMinute>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageMinute {
    pub minute: String,
    pub requests: u64,
    pub bytes_out: u64,
}
