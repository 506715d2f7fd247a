//! The command line, as clap parses it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lingjing",
    version,
    about = "Lingjing: an open edge cloud platform (CDN, GSLB DNS, ...)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Control plane URL (default: the one `lingjing up` wrote to DATA_DIR/endpoint, else
    /// https://127.0.0.1:7700).
    #[arg(long, global = true, env = "LINGJING_ENDPOINT")]
    pub endpoint: Option<String>,
    /// CA certificate (PEM) to trust for the control plane's TLS certificate beside the
    /// system's roots (default: DATA_DIR/ca.pem, made by `lingjing up`, when present).
    #[arg(long, global = true, env = "LINGJING_CA")]
    pub ca: Option<PathBuf>,
    /// Operator token or tenant API key (default: the `up` data dir's operator.token).
    #[arg(long, global = true, env = "LINGJING_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data directory of `lingjing up` (used for its token, CA and endpoint when not given).
    #[arg(
        long,
        global = true,
        env = "LINGJING_DATA_DIR",
        default_value = "lingjing-data"
    )]
    pub data_dir: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format of servers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole platform on this machine (control plane and demo origin, with a demo
    /// topology), on SQLite in --data-dir.
    Up(UpArgs),
    /// Run the control plane alone.
    Control(ControlArgs),
    /// Run an edge node (caching reverse proxy) fed by the control plane, or standalone
    /// from a snapshot file.
    Edge(EdgeArgs),
    /// Run a GSLB DNS server fed by the control plane, or explain an answer
    /// (`lingjing dns explain NAME --client IP`).
    Dns(DnsArgs),
    /// Run a storage node: keeps the content-addressed, checksummed blocks of objects for
    /// the S3 gateways (`/v1/blocks/{sha256}`, cluster token required).
    Storage(StorageArgs),
    /// Run an S3 gateway over storage nodes (the S3 API for aws-cli, boto3, rclone).
    S3(S3Args),
    /// Run an edge AI node: the model versions the control plane assigns its slots,
    /// verified, self-tested and on probation before they commit; `POST /v1/infer/SLOT`.
    Aiot(AiotArgs),
    /// Regions: the country > province > city > county tree.
    #[command(subcommand)]
    Region(ResourceCmd<RegionAdd>),
    /// Lines: client networks (carriers) and their prefix tables.
    #[command(subcommand)]
    Line(LineCmd),
    /// Sites: data centres and edge PoPs.
    #[command(subcommand)]
    Site(ResourceCmd<SiteAdd>),
    /// Nodes: servers at sites.
    #[command(subcommand)]
    Node(NodeCmd),
    /// IP pools and address allocation (IPAM).
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Tenants and their API keys.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Services (CDN properties) of tenants.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Static DNS records: the operator's own names under the platform zone.
    #[command(subcommand)]
    Record(ResourceCmd<RecordAdd>),
    /// Purge cached content from every edge node.
    #[command(subcommand)]
    Purge(PurgeCmd),
    /// Uptime against a target: what fell below it, by how much, and the downtime.
    #[command(subcommand)]
    Sla(SlaCmd),
    /// Traffic defence: rules (allow, block, limit) and the attacks edge nodes detected.
    #[command(subcommand)]
    Defence(DefenceCmd),
    /// Metered traffic (requests and bytes by cache hit or miss, bytes in and out) per
    /// service, node, site or tenant over a time range.
    Usage(UsageArgs),
    /// Price plans, and which plan each tenant is on.
    #[command(subcommand)]
    Plan(PlanCmd),
    /// Billing runs: a month's invoices for every tenant on a plan.
    #[command(subcommand)]
    Bill(BillCmd),
    /// Invoices, drafts and credit notes.
    #[command(subcommand)]
    Invoice(InvoiceCmd),
    /// Colocation cabinets: rack units, power, tenants' assignments and cross-connects.
    #[command(subcommand)]
    Cabinet(CabinetCmd),
    /// The operator's costs per site (bandwidth contracts, cabinets, power, fixed costs).
    #[command(subcommand)]
    Cost(CostCmd),
    /// IDC monitoring: sensors at site -> room -> cabinet, and their readings.
    #[command(subcommand)]
    Sensor(SensorCmd),
    /// IDC monitoring: where alerts are sent (signed webhooks).
    #[command(subcommand)]
    Receiver(ResourceCmd<ReceiverAdd>),
    /// IDC monitoring: silences (alerts matching every matcher notify nobody for a while).
    #[command(subcommand)]
    Silence(ResourceCmd<SilenceAdd>),
    /// IDC monitoring: alerts (list, acknowledge).
    #[command(subcommand)]
    Alert(AlertCmd),
    /// Recorded outages of sites' uplinks (colocation SLA).
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Reports: `report segments --month`.
    #[command(subcommand)]
    Report(ReportCmd),
    /// Edge AI models: push a version (its ONNX file and spec), list, show.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Fleet rollouts of a model version to the edge AI nodes: a canary, then growing
    /// groups, each only after enough of the one before committed; pause, resume, abort.
    #[command(subcommand)]
    Rollout(RolloutCmd),
    /// Road inspection: patrol cameras (devices) and road crews, the tenant's policy,
    /// runs, the defects found, their work orders (dispatch, start, fix, reopen, cancel,
    /// duplicate) and the weekly report.
    #[command(subcommand)]
    Inspect(InspectCmd),
}

#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Upload an ONNX file (content-addressed, verified by the control plane) and
    /// register it as a version of a model, described by a TOML spec: `[input]` (shape,
    /// layout, color, resize, scale, mean, std), `[output]` (kind = "classifier" with
    /// labels, or "detector" with classes and score_threshold), optionally `[self_test]`
    /// (expected, tolerance; its input image is --self-test-input).
    Push {
        /// The .onnx file.
        file: std::path::PathBuf,
        #[arg(long)]
        model: String,
        /// 1, 2, 3, ...: versions never change once pushed.
        #[arg(long)]
        version: u32,
        /// The TOML spec of the version.
        #[arg(long)]
        spec: std::path::PathBuf,
        /// The image the self-test feeds the model.
        #[arg(long)]
        self_test_input: Option<std::path::PathBuf>,
        /// What changed, for people.
        #[arg(long)]
        notes: Option<String>,
    },
    /// Every model, with its number of versions and the latest.
    List,
    /// A model's versions (newest first), or one version.
    Show {
        model: String,
        #[arg(long)]
        version: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolloutCmd {
    /// Roll VERSION of MODEL out to the edge AI nodes (all of them, or those of --sites
    /// and --regions), sites interleaved: --canary nodes first, then groups up to each of
    /// --percents of the nodes.
    Create(RolloutCreate),
    /// The newest rollouts.
    List,
    /// A rollout's groups and nodes.
    Show {
        id: String,
        /// Refresh every second until it is no longer running.
        #[arg(long)]
        watch: bool,
    },
    /// Pause a running rollout where it is.
    Pause { id: String },
    /// Let a paused rollout go on.
    Resume { id: String },
    /// Stop a rollout for good: every node it touched goes back to its previous version.
    Abort { id: String },
}

#[derive(Debug, Args)]
pub struct RolloutCreate {
    pub model: String,
    pub version: u32,
    /// Nodes in the first group (0: no canary).
    #[arg(long, default_value_t = 1)]
    pub canary: u32,
    /// Cumulative shares of the nodes (percent, ascending) after the canary.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub percents: Vec<u8>,
    /// Only the edge AI nodes of these sites (and of --regions).
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<String>,
    /// Only the edge AI nodes of sites in these regions (or below them).
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Share of a group (percent) that must commit before the next group starts.
    #[arg(long, default_value_t = 100)]
    pub success_percent: u8,
    /// Failed nodes that roll every touched node back.
    #[arg(long, default_value_t = 1)]
    pub error_threshold: u32,
    /// Heartbeating time a node has to commit, e.g. 600, 90s, 10m, 1h.
    #[arg(long, default_value = "10m", value_parser = parse_seconds)]
    pub deadline: u32,
    /// A node silent this long is offline (pending, never failed for it), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = parse_seconds)]
    pub offline_after: u32,
    /// Probation: inferences after which a node commits (default 100).
    #[arg(long)]
    pub probation_inferences: Option<u32>,
    /// Probation: seconds after which a node commits, if fewer inferences came (default 60).
    #[arg(long)]
    pub probation_seconds: Option<u32>,
    /// Probation: share of inferences (percent) that may fail (default 5).
    #[arg(long)]
    pub probation_max_errors: Option<u8>,
    /// Probation: the 95th-percentile latency allowed, in ms (default 2000).
    #[arg(long)]
    pub probation_max_p95_ms: Option<u32>,
    /// Then show its progress, refreshed every second, until it is no longer running.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Subcommand)]
pub enum InspectCmd {
    /// Patrol cameras: register one (and get its credential), list, show, renew its
    /// credential, remove.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Road crews and the areas they work in.
    #[command(subcommand)]
    Crew(CrewCmd),
    /// A tenant's inspection policy: shown as it is, or changed by the flags given (the
    /// others are kept).
    Policy(PolicyArgs),
    /// Inspection runs (patrols), newest first.
    Runs {
        /// Only this tenant's (a tenant key: its own).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// One run: what it covered and how many points its path has.
    Run {
        id: String,
        /// The run's tenant (runs are named per tenant; a tenant key: its own).
        #[arg(long)]
        tenant: Option<String>,
        /// The device whose run it is (when two devices used the name).
        #[arg(long)]
        device: Option<String>,
    },
    /// Defects found, newest first.
    Defects(DefectsArgs),
    /// One defect: where, how bad, its evidence frames (with the URL path of each image)
    /// and its work order.
    Defect { id: String },
    /// Work orders, oldest opened first (a queue).
    Orders(OrdersArgs),
    /// One work order and its full history.
    Order { id: String },
    /// Give a work order to a crew (again: reassign it).
    Dispatch {
        id: String,
        /// The crew (`lingjing inspect crew list`).
        #[arg(long)]
        crew: String,
        #[command(flatten)]
        by: ByArg,
    },
    /// The crew is at work on a work order.
    Start {
        id: String,
        #[command(flatten)]
        by: ByArg,
    },
    /// The crew fixed it: the next patrol over the spot verifies the repair and closes it.
    Fix {
        id: String,
        /// What was done.
        #[arg(long)]
        note: String,
        /// A photo of the repair (its URL).
        #[arg(long)]
        photo: Option<String>,
        #[command(flatten)]
        by: ByArg,
    },
    /// It is not fixed after all.
    Reopen {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        by: ByArg,
    },
    /// Not to be done (its defect is dismissed).
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        by: ByArg,
    },
    /// Another work order covers the same defect.
    Duplicate {
        id: String,
        /// The work order that covers it, e.g. WO-2.
        #[arg(long)]
        of: String,
        #[command(flatten)]
        by: ByArg,
    },
    /// The weekly report: defects found, orders fixed and closed, median time to fix,
    /// overdue and open orders; in total and per class.
    Report {
        /// The tenant (a tenant key: its own).
        #[arg(long)]
        tenant: Option<String>,
        /// Start (RFC 3339; default 7 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// End (RFC 3339, exclusive; default now).
        #[arg(long)]
        to: Option<String>,
    },
}

/// Who acts on a work order, for its history.
#[derive(Debug, Args)]
pub struct ByArg {
    /// The person acting (a crew member, a dispatcher), kept in the order's history.
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Register a camera and issue its credential (printed once).
    Add(DeviceAdd),
    /// The devices (with whether each has a credential yet).
    #[command(alias = "ls")]
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// One device.
    Show { id: String },
    /// Issue a new credential for a device (printed once); the one before stops working.
    Token { id: String },
    /// Remove a device.
    #[command(alias = "rm")]
    Remove { id: String },
}

#[derive(Debug, Args)]
pub struct DeviceAdd {
    /// The device's id (lowercase letters, digits and `-`).
    pub id: String,
    #[arg(long)]
    pub tenant: String,
    /// The model slot on the edge AI node that looks at its frames, e.g. road-distress.
    #[arg(long)]
    pub slot: String,
    /// LABEL=CLASS[@MIN_SCORE]: the model's label LABEL is a defect of class CLASS (d00,
    /// d10, d20, d40 or the tenant's own) from score MIN_SCORE (0 to 1, default 0.5).
    /// Repeat for each label.
    #[arg(
        long = "detect",
        value_name = "LABEL=CLASS[@MIN_SCORE]",
        required = true
    )]
    pub detects: Vec<String>,
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CrewCmd {
    /// Register a crew and where it works.
    Add(CrewAdd),
    /// The crews.
    #[command(alias = "ls")]
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// One crew.
    Show { id: String },
    /// Remove a crew.
    #[command(alias = "rm")]
    Remove { id: String },
}

#[derive(Debug, Args)]
pub struct CrewAdd {
    /// The crew's id (lowercase letters, digits and `-`).
    pub id: String,
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub name: String,
    /// SOUTH,WEST,NORTH,EAST: a box of latitudes and longitudes (degrees) the crew works
    /// in; work orders for defects inside it go to the crew. Repeat for several.
    #[arg(
        long = "area",
        value_name = "SOUTH,WEST,NORTH,EAST",
        required = true,
        allow_hyphen_values = true
    )]
    pub areas: Vec<String>,
    /// The most open work orders it holds at once (default 50).
    #[arg(long)]
    pub capacity: Option<u32>,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    pub tenant: String,
    /// Detections of one class closer than this (metres) are one defect.
    #[arg(long)]
    pub merge_metres: Option<f64>,
    /// A defect opens a work order from this severity (1 to 3).
    #[arg(long)]
    pub open_severity: Option<u8>,
    /// A frame this close to a defect (metres) has seen its place.
    #[arg(long)]
    pub seen_metres: Option<f64>,
    /// Frames without the defect that close a work order being verified.
    #[arg(long)]
    pub verify_frames: Option<u32>,
    /// The tenant's bucket that defects' evidence images move into (`""`: none, they
    /// stay in the control plane's database).
    #[arg(long, value_name = "NAME")]
    pub evidence_bucket: Option<String>,
}

#[derive(Debug, Args)]
pub struct DefectsArgs {
    /// Only this tenant's (a tenant key: its own).
    #[arg(long)]
    pub tenant: Option<String>,
    /// open, dismissed, duplicate or repaired.
    #[arg(long)]
    pub state: Option<String>,
    /// A class code, e.g. D40.
    #[arg(long)]
    pub class: Option<String>,
    /// At most this many (1 to 1000; default 100).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct OrdersArgs {
    /// Only this tenant's (a tenant key: its own).
    #[arg(long)]
    pub tenant: Option<String>,
    /// open, dispatched, in_progress, fixed, verifying, closed, duplicate, cancelled or
    /// reopened.
    #[arg(long)]
    pub state: Option<String>,
    /// Only those of this crew.
    #[arg(long)]
    pub crew: Option<String>,
    /// At most this many (1 to 1000; default 100).
    #[arg(long)]
    pub limit: Option<u32>,
}

/// Seconds from `600`, `90s`, `10m`, `1h` or `7d`.
pub fn parse_seconds(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u32 = digits
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: give seconds, or e.g. 90s, 10m, 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: the unit is s, m, h or d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("`{s}` is too long"))
}

#[derive(Debug, Subcommand)]
pub enum CabinetCmd {
    #[command(flatten)]
    Resource(ResourceCmd<CabinetAdd>),
    /// Assign a cabinet (or a range of its units) to a tenant from a day on.
    Assign {
        cabinet: String,
        tenant: String,
        /// First-last unit, e.g. 1-10 (default: the whole cabinet).
        #[arg(long)]
        units: Option<String>,
        /// Power billed in watts (default: the cabinet's, shared by units).
        #[arg(long)]
        power_watts: Option<u32>,
        /// First day (YYYY-MM-DD, UTC; default today).
        #[arg(long)]
        from: Option<String>,
        /// The day it ends (exclusive; default open-ended).
        #[arg(long)]
        until: Option<String>,
    },
    /// End a tenant's open assignments of a cabinet on a day (default today).
    Release {
        cabinet: String,
        tenant: String,
        #[arg(long)]
        on: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CabinetAdd {
    #[arg(long)]
    pub site: Option<String>,
    /// The room (data hall), e.g. hall-1.
    #[arg(long)]
    pub room: Option<String>,
    #[arg(long, default_value_t = 42)]
    pub rack_units: u16,
    /// Contracted power in watts (5000 = 5 kW).
    #[arg(long)]
    pub contracted_watts: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum SensorCmd {
    #[command(flatten)]
    Resource(ResourceCmd<SensorAdd>),
    /// A sensor's series: raw readings (--step under 60) or per-step min, max, mean, last.
    Readings {
        id: String,
        /// How far back (e.g. 30m, 6h, 7d; default 1h).
        #[arg(long, default_value = "1h", value_parser = parse_seconds)]
        since: u32,
        /// Seconds per point (default 60; at least 60: whole minutes).
        #[arg(long, default_value_t = 60)]
        step: u32,
    },
}

#[derive(Debug, Args)]
pub struct SensorAdd {
    #[arg(long)]
    pub site: Option<String>,
    /// The room (data hall), e.g. hall-1.
    #[arg(long)]
    pub room: Option<String>,
    /// temperature, humidity, power, smoke, water, door, ups or camera.
    #[arg(long)]
    pub kind: Option<String>,
    /// The device that reports it (MQTT lj/v1/SITE/DEVICE/telemetry).
    #[arg(long)]
    pub device: Option<String>,
    /// The cabinet it is in (a power sensor takes its contract from it).
    #[arg(long)]
    pub cabinet: Option<String>,
    #[arg(long)]
    pub rack_unit: Option<u16>,
    /// Seconds between readings (silent for three raises `silent`).
    #[arg(long, default_value_t = 60)]
    pub interval_s: u32,
    /// For a power sensor, the contract in watts (default: its cabinet's).
    #[arg(long)]
    pub contract_watts: Option<u32>,
    /// The tenant whose equipment it watches.
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReceiverAdd {
    /// A webhook: the URL alerts are POSTed to (with --secret-file).
    #[arg(long, conflicts_with = "email_relay")]
    pub url: Option<String>,
    /// A file holding the webhook's signing secret (16 to 256 characters).
    #[arg(long, value_name = "FILE", requires = "url")]
    pub secret_file: Option<PathBuf>,
    /// Email instead: the SMTP relay, smtp://HOST[:PORT] (with --email-from, --email-to).
    #[arg(long, value_name = "URL")]
    pub email_relay: Option<String>,
    /// The sender, e.g. "Lingjing <alerts@example.org>".
    #[arg(long, requires = "email_relay")]
    pub email_from: Option<String>,
    /// An address to send to (repeat, up to 20).
    #[arg(long = "email-to", requires = "email_relay")]
    pub email_to: Vec<String>,
    /// Require STARTTLS with the relay.
    #[arg(long, requires = "email_relay")]
    pub starttls: bool,
    /// AUTH PLAIN user on the relay (needs --starttls).
    #[arg(long, requires = "starttls")]
    pub email_username: Option<String>,
    /// A file holding that user's password.
    #[arg(long, value_name = "FILE", requires = "email_username")]
    pub email_password_file: Option<PathBuf>,
    /// Only these sites' alerts (repeat; default all).
    #[arg(long = "site")]
    pub sites: Vec<String>,
    /// Only these tenants' alerts (repeat; default all).
    #[arg(long = "tenant")]
    pub tenants: Vec<String>,
    /// warning or critical (default warning: all).
    #[arg(long, default_value = "warning")]
    pub min_severity: String,
}

#[derive(Debug, Args)]
pub struct SilenceAdd {
    /// LABEL=VALUE (or LABEL=VALUE* for a prefix); repeat: all must match. Labels: site,
    /// room, cabinet, sensor, device, rule, kind, tenant, severity.
    #[arg(long = "match", value_name = "LABEL=VALUE")]
    pub matchers: Vec<String>,
    /// How long from now (e.g. 30m, 2h, 1d).
    #[arg(long, default_value = "2h", value_parser = parse_seconds)]
    pub duration: u32,
    /// Who silences (for the record).
    #[arg(long)]
    pub by: Option<String>,
    #[arg(long, default_value = "")]
    pub comment: String,
}

#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// Alerts with their last transition (default: pending and firing).
    #[command(alias = "ls")]
    List {
        /// pending, firing, resolved, cancelled or all.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        site: Option<String>,
    },
    /// Acknowledge a firing alert (it is not escalated).
    Ack {
        /// The alert's key, `RULE/SENSOR`.
        key: String,
        #[arg(long)]
        by: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CostCmd {
    #[command(alias = "ls")]
    List,
    /// Create or replace a cost from a JSON or TOML file (its `id` names it).
    Set {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    Rm {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum IncidentCmd {
    /// Incidents of the last 31 days (or --from/--to).
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// Record a site's uplinks down from --start to --end (RFC 3339).
    Add {
        id: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long)]
        what: String,
    },
    Rm {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Revenue, cost and gross margin per segment and per site.
    Segments {
        /// YYYY-MM (default: this month).
        #[arg(long)]
        month: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// Start (RFC 3339; default 24 hours before --to).
    #[arg(long)]
    pub from: Option<String>,
    /// End (RFC 3339, exclusive; default now).
    #[arg(long)]
    pub to: Option<String>,
    /// service, node, site, line or tenant.
    #[arg(long, default_value = "service")]
    pub group: String,
    /// 5m, 1h, 1d or month.
    #[arg(long, default_value = "1h")]
    pub step: String,
    #[arg(long)]
    pub tenant: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long)]
    pub site: Option<String>,
    #[arg(long)]
    pub line: Option<String>,
    /// Each step on its own line, not only the totals.
    #[arg(long)]
    pub steps: bool,
}

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// List the plans (a tenant: the one it is on).
    #[command(alias = "ls")]
    List,
    /// Show one.
    Show { id: String },
    /// Create one from a JSON or TOML file ("-" for stdin).
    Add {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Replace one from a JSON or TOML file (invoices made keep their prices).
    Replace {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Delete one no tenant is on.
    Rm { id: String },
    /// Put a tenant on a plan (--none: on none, not billed).
    Assign {
        tenant: String,
        #[arg(required_unless_present = "none")]
        plan: Option<String>,
        #[arg(long, conflicts_with = "plan")]
        none: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BillCmd {
    /// Bill a month: an ended one gets final invoices, made once (a rerun changes
    /// nothing); the running one gets drafts. Prints each invoice.
    Run {
        /// YYYY-MM (default: the current month, drafts).
        #[arg(long)]
        month: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum InvoiceCmd {
    /// List invoices, drafts and credit notes.
    #[command(alias = "ls")]
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// YYYY-MM.
        #[arg(long)]
        month: Option<String>,
    },
    /// Show one: as a table, or --format json, csv or html (a printable page).
    Show {
        number: String,
        #[arg(long, default_value = "table")]
        format: String,
        /// Write it to this file instead of the terminal.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Correct a final invoice with a credit note.
    Credit {
        number: String,
        /// How much, in the invoice's currency, e.g. 12.50.
        #[arg(long)]
        amount: String,
        /// Why (printed on the credit note).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DefenceCmd {
    /// Rules in force on every edge node.
    #[command(subcommand)]
    Rule(DefenceRuleCmd),
    /// Attacks the edge nodes detected, newest first: start, end, peak rate, top sources,
    /// the rule applied and requests refused.
    Events {
        /// Only this service's.
        #[arg(long)]
        service: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum DefenceRuleCmd {
    /// Add a rule: e.g. `rule add --service shop --action block --source 198.51.100.0/24
    /// --ttl 3600`, or `--action limit --rate 20 --path /login`.
    Add(Box<DefenceRuleAdd>),
    /// List the rules in force (manual and detected).
    List,
    /// Show one rule.
    Show { id: String },
    /// Remove a rule (a detected one too, to lift a block early).
    Rm { id: String },
}

#[derive(Debug, Args)]
pub struct DefenceRuleAdd {
    /// The service it applies to (leave out for every service: operator only).
    #[arg(long)]
    pub service: Option<String>,
    /// allow (never refused: e.g. your monitoring), block (403) or limit (429 past
    /// --rate requests per second per client).
    #[arg(long, value_parser = ["allow", "block", "limit"])]
    pub action: String,
    /// Client address or prefix (repeat for several).
    #[arg(long = "source")]
    pub sources: Vec<String>,
    /// Request method (repeat for several).
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Path prefix, or a pattern with `*` (`/api/*/login`).
    #[arg(long)]
    pub path: Option<String>,
    /// A header that must contain a value: `NAME:TEXT` (`X-Bot:yes`).
    #[arg(long)]
    pub header: Option<String>,
    /// A fragment of the User-Agent.
    #[arg(long)]
    pub user_agent: Option<String>,
    /// For `limit`: requests per second per client address.
    #[arg(long)]
    pub rate: Option<u32>,
    /// monitor (count only) or enforce.
    #[arg(long, default_value = "enforce", value_parser = ["monitor", "enforce"])]
    pub mode: String,
    /// Seconds until the rule expires by itself (default: never).
    #[arg(long)]
    pub ttl: Option<u64>,
    /// Why (shown in lists).
    #[arg(long)]
    pub note: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SlaCmd {
    /// Availability of nodes, sites and services over a window.
    Report {
        /// Target availability in percent.
        #[arg(long, default_value_t = 99.90)]
        target: f64,
        /// Start (RFC 3339; default 30 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// End (RFC 3339; default now).
        #[arg(long)]
        to: Option<String>,
        /// List everything measured, not only what fell below the target.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PurgeCmd {
    /// Purge exact URLs, e.g. http://www.demo.example/
    Url(PurgeArgs),
    /// Purge every URL under the given prefixes, e.g. http://www.demo.example/assets/
    Prefix(PurgeArgs),
    /// Purge every response tagged (Surrogate-Key / Cache-Tag) with the given tags.
    Tag(PurgeArgs),
    /// Show a purge and which nodes have applied it.
    Show { id: u64 },
    /// List the newest purges.
    List,
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// URLs, prefixes or tags.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// The service (needed for tags; found from the URL otherwise).
    #[arg(long)]
    pub service: Option<String>,
    /// Mark stale instead of removing (stale-while-revalidate may still serve it).
    #[arg(long)]
    pub soft: bool,
    /// Return at once instead of waiting until every node has applied it.
    #[arg(long)]
    pub no_wait: bool,
}

impl Command {
    /// Whether the command runs servers (and so logs at info level by default).
    pub fn is_server(&self) -> bool {
        matches!(
            self,
            Command::Up(_)
                | Command::Control(_)
                | Command::Edge(_)
                | Command::Storage(StorageArgs { command: None, .. })
                | Command::S3(_)
        )
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Control plane REST API address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Demo origin address.
    #[arg(long, default_value = "127.0.0.1:7900")]
    pub origin_listen: SocketAddr,
    /// Platform DNS zone.
    #[arg(long, default_value = lingjing_control::server::DEFAULT_ZONE)]
    pub zone: String,
    /// GSLB DNS address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:5300")]
    pub dns_listen: SocketAddr,
    /// GSLB DNS admin HTTP address (/healthz, /metrics, /explain).
    #[arg(long, default_value = "127.0.0.1:9053")]
    pub dns_admin: SocketAddr,
    /// Port of the edge nodes' HTTP listeners (default: each node's configured port; 0
    /// picks free ports).
    #[arg(long)]
    pub edge_http_port: Option<u16>,
    /// Port of the edge nodes' HTTPS listeners (default: each node's configured port; 0
    /// picks free ports).
    #[arg(long)]
    pub edge_https_port: Option<u16>,
    /// Port of the edge nodes' admin listeners (default: each node's configured port).
    #[arg(long)]
    pub edge_admin_port: Option<u16>,
    /// S3 API address of the gateway `up` runs.
    #[arg(long, default_value = "127.0.0.1:7800")]
    pub s3_listen: SocketAddr,
    /// The S3 gateway's admin address (`/metrics`, `/healthz`).
    #[arg(long, default_value = "127.0.0.1:7801")]
    pub s3_admin: SocketAddr,
    /// Inference API of the edge AI node `up` runs (`POST /v1/infer/SLOT`, `/v1/slots`,
    /// `/metrics`).
    #[arg(long, default_value = "127.0.0.1:7820")]
    pub aiot_listen: SocketAddr,
    /// Run every storage node, and the S3 gateway's listener on its node's own address
    /// (the one edges use), on this port instead of the inventory's (0: any free port; the
    /// inventory is updated to match).
    #[arg(long)]
    pub storage_port: Option<u16>,
    #[command(flatten)]
    pub storage: StoragePolicyArgs,
    #[command(flatten)]
    pub health: HealthArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub dns_abuse: DnsAbuseArgs,
}

/// What tenants may name and point at.
#[derive(Debug, Args, Clone)]
pub struct TrustArgs {
    /// A network (`10.0.0.0/8`) or endpoint (`127.0.0.1:7900`) that tenants' origins may
    /// use although it is not public (repeat for several). Platform addresses stay refused.
    #[arg(long = "allow-origin")]
    pub allow_origins: Vec<String>,
    /// A service id to reserve as a label of the platform zone, besides `www`, `ns*`,
    /// `api` and the like (a trailing `*` reserves a prefix; repeat for several).
    #[arg(long = "reserved-label")]
    pub reserved_labels: Vec<String>,
    /// DNS resolver (`IP:PORT`) asked for `_lingjing-challenge` TXT records when tenants
    /// verify hostnames (default: the system's resolver).
    #[arg(long)]
    pub challenge_resolver: Option<SocketAddr>,
    /// Hours an unverified hostname claim keeps other tenants off the name.
    #[arg(long, default_value_t = 72, value_parser = clap::value_parser!(u64).range(0..=8760))]
    pub pending_claim_hours: u64,
}

impl TrustArgs {
    /// The policy, checked; `extra_allowed` are allowances the command adds itself.
    pub fn policy(
        &self,
        extra_allowed: &[String],
    ) -> anyhow::Result<lingjing_control::TrustPolicy> {
        let mut allow_origins = self.allow_origins.clone();
        allow_origins.extend(extra_allowed.iter().cloned());
        let policy = lingjing_control::TrustPolicy {
            allow_origins,
            reserved_labels: self.reserved_labels.clone(),
            challenge_resolver: self.challenge_resolver,
            pending_ttl: std::time::Duration::from_secs(self.pending_claim_hours * 3600),
        };
        policy.check().map_err(anyhow::Error::msg)?;
        Ok(policy)
    }
}

/// How object storage keeps blocks (the S3 gateways follow a change with their next
/// snapshot).
#[derive(Debug, Args, Clone, Copy)]
pub struct StoragePolicyArgs {
    /// Copies object storage keeps of each replicated block, in different sites first.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub storage_replicas: u32,
    /// Erasure-code blocks as K data + M parity shards (e.g. 4+2: 1.5x the disk, any M
    /// shards may be lost) instead of copying them; shards go to different nodes and
    /// sites. Blocks under --storage-erasure-min-kib, and every block while the cluster
    /// has no more nodes than K, are still replicated.
    #[arg(long, value_name = "K+M")]
    pub storage_erasure: Option<lingjing_model::ErasureCode>,
    /// Blocks smaller than this many KiB are replicated even with --storage-erasure.
    #[arg(long, default_value_t = lingjing_model::snapshot::DEFAULT_ERASURE_MIN_BYTES / 1024,
          value_parser = clap::value_parser!(u64).range(0..=1024 * 1024))]
    pub storage_erasure_min_kib: u64,
}

impl StoragePolicyArgs {
    pub fn policy(&self) -> lingjing_model::snapshot::StoragePolicy {
        lingjing_model::snapshot::StoragePolicy {
            replicas: self.storage_replicas,
            erasure: self.storage_erasure,
            erasure_min_bytes: self.storage_erasure_min_kib * 1024,
        }
    }
}

/// How the control plane checks nodes.
#[derive(Debug, Args, Clone, Copy)]
pub struct HealthArgs {
    /// Milliseconds between health checks of each node.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub probe_interval_ms: u64,
    /// Milliseconds a node's /healthz has to answer.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub probe_timeout_ms: u64,
    /// Failed checks in a row that mark a node down.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub probe_fall: u32,
    /// Passed checks in a row that mark it up again.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub probe_rise: u32,
    /// Seconds without a heartbeat after which a registered node fails its checks
    /// (agents beat every 2 s, so at least 5).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub heartbeat_timeout_s: u64,
}

impl HealthArgs {
    pub fn config(&self) -> lingjing_control::health::HealthConfig {
        use std::time::Duration;
        lingjing_control::health::HealthConfig {
            interval: Duration::from_millis(self.probe_interval_ms),
            timeout: Duration::from_millis(self.probe_timeout_ms),
            fall: self.probe_fall,
            rise: self.probe_rise,
            heartbeat_timeout: Duration::from_secs(self.heartbeat_timeout_s),
        }
    }
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DnsArgs {
    #[command(subcommand)]
    pub explain: Option<DnsSub>,
    /// This DNS node's id in the inventory (to serve).
    #[arg(long)]
    pub node: Option<String>,
    /// Address served over UDP and TCP.
    #[arg(long, default_value = "127.0.0.1:5300")]
    pub listen: Vec<SocketAddr>,
    /// Where the node's credential and last good snapshot are kept (default:
    /// DATA_DIR/dns-NODE).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub join: JoinArgs,
    /// Admin HTTP address: /healthz, /metrics (Prometheus), /explain?name=&client=.
    #[arg(long, default_value = "127.0.0.1:9053")]
    pub admin: SocketAddr,
    /// Log every query (target `lingjing::dns::query`, level INFO).
    #[arg(long)]
    pub query_log: bool,
    #[command(flatten)]
    pub abuse: DnsAbuseArgs,
}

#[derive(Debug, Args)]
pub struct AiotArgs {
    /// This node's id in the inventory (a node with the `aiot` role).
    #[arg(long)]
    pub node: String,
    /// HTTP address of the inference API (`POST /v1/infer/SLOT`, `GET /v1/slots`,
    /// `/metrics`).
    #[arg(long, default_value = "127.0.0.1:7820")]
    pub listen: SocketAddr,
    /// Where models, self-test inputs and slot states are kept (default: the state
    /// directory's `models`).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// Where the node keeps its credential and last snapshot (default:
    /// DATA_DIR/aiot-NODE).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub join: JoinArgs,
    /// Inferences a slot runs at once (default: the CPU cores); up to 64 more wait.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: Option<u64>,
    /// For crash tests: stop when a slot's new version reaches this stage (fetching,
    /// verifying, loading, staged, probation).
    #[arg(long, env = "LINGJING_AIOT_PAUSE_AT", hide = true)]
    pub pause_at: Option<String>,
    /// The site's MQTT broker for patrol cameras' positions and status, and sensors'
    /// telemetry (`mqtt://HOST:PORT`; topics `lj/v1/TENANT/DEVICE/patrol`,
    /// `lj/v1/SITE/DEVICE/telemetry` and `.../status`).
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// A file holding the token devices send with HTTP telemetry
    /// (`POST /v1/telemetry/DEVICE`, `Authorization: Bearer TOKEN`; without it HTTP
    /// telemetry is refused).
    #[arg(long, value_name = "FILE")]
    pub telemetry_token_file: Option<PathBuf>,
    /// The node's username on the broker.
    #[arg(long, requires = "mqtt")]
    pub mqtt_username: Option<String>,
    /// A file holding the node's password on the broker (a trailing newline is ignored).
    #[arg(long, requires = "mqtt_username", value_name = "FILE")]
    pub mqtt_password_file: Option<PathBuf>,
    /// The node's MQTT client id, fixed so that the broker keeps its session
    /// (default: lingjing-aiot-NODE).
    #[arg(long, requires = "mqtt")]
    pub mqtt_client_id: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct StorageArgs {
    #[command(subcommand)]
    pub command: Option<StorageSub>,
    /// This storage node's id in the inventory (a node with the `storage` role).
    #[arg(long)]
    pub node: Option<String>,
    /// HTTP address the gateways reach the node on.
    #[arg(long, default_value = "127.0.0.1:7810")]
    pub listen: SocketAddr,
    /// Where the blocks are kept (default: DATA_DIR/storage-NODE/blocks).
    #[arg(long)]
    pub blocks_dir: Option<PathBuf>,
    /// Run without a control plane, with the cluster token in this file (one line; keep
    /// it 0600). Without it the node joins the control plane, which hands it the token
    /// and to which it reports its disk.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where the node keeps its credential and last snapshot (default:
    /// DATA_DIR/storage-NODE).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub join: JoinArgs,
    /// Largest block accepted, in MiB.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_block_mb: u64,
    /// Hours from one scrub pass (every block re-read and checked; rot quarantined, for
    /// the gateways' repair to write back) to the next; 0: only when asked
    /// (`lingjing storage scrub`).
    #[arg(long, default_value_t = 168, value_parser = clap::value_parser!(u64).range(0..=87_600))]
    pub scrub_interval_hours: u64,
    /// The most MiB a second a scrub pass reads (0: no limit).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub scrub_mib_per_s: u64,
    /// MiB of the disk kept free: a block write that would leave less is refused (507) and
    /// the gateways write it to another node.
    #[arg(long, default_value_t = lingjing_storage::block::DEFAULT_RESERVE_BYTES >> 20,
          value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    pub reserve_mb: u64,
}

impl StorageArgs {
    pub fn scrub(&self) -> lingjing_storage::scrub::ScrubSchedule {
        lingjing_storage::scrub::ScrubSchedule {
            interval: (self.scrub_interval_hours > 0)
                .then(|| std::time::Duration::from_secs(self.scrub_interval_hours * 3600)),
            bytes_per_sec: self.scrub_mib_per_s << 20,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum StorageSub {
    /// The storage nodes (site, health, used and free space, blocks held, from the
    /// control plane) and, from the S3 metadata, objects and under-replicated blocks.
    Status {
        /// The S3 metadata database to count objects and blocks in (default: `up`'s,
        /// DATA_DIR/s3/meta.db, when it exists).
        #[arg(long)]
        meta_url: Option<String>,
    },
    /// Asks every storage node to start a scrub pass now (every block re-read and
    /// checked against its id; rot is quarantined and the gateways' repair writes it
    /// back); `lingjing storage status --json` shows no scrub state yet: see each node's
    /// `GET /v1/status`.
    Scrub,
    /// Per bucket: requests, bytes in and out, and what it holds (stored bytes, raw disk,
    /// parity), as the S3 gateways reported them, for billing.
    Usage {
        /// Only this tenant's buckets.
        #[arg(long)]
        tenant: Option<String>,
        /// Start (RFC 3339); default one hour before `--to`.
        #[arg(long)]
        from: Option<String>,
        /// End (RFC 3339, exclusive); default now.
        #[arg(long)]
        to: Option<String>,
    },
    /// The cluster layout: which storage nodes take new blocks, and their shares.
    Layout {
        #[command(subcommand)]
        command: LayoutSub,
    },
}

#[derive(Debug, Subcommand)]
pub enum LayoutSub {
    /// The layout in effect: its version, and each node's site, capacity and share of new
    /// blocks.
    Show,
    /// Applies the layout in effect with these changes as the next version, and prints
    /// the estimated share of block pieces placed on other nodes from now on.
    Apply {
        /// The version to apply: the one in effect plus one (`layout show` prints it), so
        /// that a change made meanwhile by someone else is not overwritten unseen.
        #[arg(long)]
        version: u64,
        /// NODE=GIB: a storage node's capacity (adds it to the layout; 0: nothing new goes
        /// there). Repeatable.
        #[arg(long = "capacity", value_name = "NODE=GIB")]
        capacity: Vec<String>,
        /// Takes a node out of the layout: nothing new goes there (what it holds stays
        /// readable). Repeatable.
        #[arg(long, value_name = "NODE")]
        remove: Vec<String>,
        /// Only check the change and print the estimate; apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Args)]
pub struct S3Args {
    /// This gateway's id in the inventory (a node with the `s3` role): the control plane
    /// hands it the storage nodes, the cluster token and the tenants' S3 keys.
    #[arg(long, required_unless_present = "storage_nodes")]
    pub node: Option<String>,
    /// Address the S3 API listens on.
    #[arg(long, default_value = "127.0.0.1:7800")]
    pub listen: SocketAddr,
    /// Admin address: Prometheus `/metrics` and `/healthz`.
    #[arg(long, default_value = "127.0.0.1:7801")]
    pub admin: SocketAddr,
    /// Virtual-host domain: BUCKET.DOMAIN addresses a bucket (path style works too).
    #[arg(long, default_value = "s3.lingjing.test")]
    pub domain: String,
    /// Metadata database: sqlite://PATH or postgres://... (default: a SQLite file in
    /// DATA_DIR/s3/meta.db).
    #[arg(long)]
    pub meta_url: Option<String>,
    /// Where the gateway keeps its credential and last snapshot (default: DATA_DIR/s3-NODE).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub join: JoinArgs,
    /// Size objects are cut into, in KiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(4..=16384))]
    pub block_kb: u64,
    /// Without a control plane: a storage node, as ID@SITE=ADDR (repeat for each), e.g.
    /// st-1@wuxi=127.0.0.1:7810.
    #[arg(long = "storage-node", conflicts_with = "node", requires_all = ["token_file", "keys_file"])]
    pub storage_nodes: Vec<String>,
    /// Without a control plane: copies kept of each block (placed in different sites first).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub replicas: u64,
    /// Minutes between garbage-collection passes (unreferenced blocks removed from the
    /// storage nodes; of several gateways on one metadata database, one at a time runs
    /// them); 0: never.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=10_080))]
    pub gc_interval_min: u64,
    /// Minutes between repair passes (copies and shards a node lost, e.g. to a replaced
    /// disk or a failed checksum, written back; one gateway at a time); 0: never.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_080))]
    pub repair_interval_min: u64,
    /// The most MiB a second a repair pass reads, so that requests keep their latency
    /// (0: no limit).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub repair_mib_per_s: u64,
    /// Minutes a storage node may be reported down before its copies and shards are
    /// rebuilt on the nodes left (from the others); it is emptied when it returns.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub repair_gone_after_min: u64,
    /// Hours a block is kept after it was last written, referenced or not: longer than
    /// any upload takes.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=8760))]
    pub gc_grace_hours: u64,
    /// Without a control plane: erasure-code blocks as K data + M parity shards (see
    /// `lingjing control --help`, --storage-erasure).
    #[arg(long, value_name = "K+M", requires = "storage_nodes")]
    pub erasure: Option<lingjing_model::ErasureCode>,
    /// Without a control plane: blocks smaller than this many KiB are replicated even
    /// with --erasure.
    #[arg(long, default_value_t = lingjing_model::snapshot::DEFAULT_ERASURE_MIN_BYTES / 1024,
          value_parser = clap::value_parser!(u64).range(0..=1024 * 1024))]
    pub erasure_min_kib: u64,
    /// Without a control plane: the file holding the cluster token the storage nodes want.
    #[arg(long, requires = "storage_nodes")]
    pub token_file: Option<PathBuf>,
    /// Without a control plane: the file of access keys, one per line: ACCESS_KEY SECRET
    /// TENANT (keep it 0600).
    #[arg(long, requires = "storage_nodes")]
    pub keys_file: Option<PathBuf>,
}

/// How the DNS server limits abusive clients.
#[derive(Debug, Args, Clone, Copy)]
pub struct DnsAbuseArgs {
    /// UDP answers per second per client network (/24, /56) before response rate
    /// limiting drops or truncates them; 0 turns rate limiting off (e.g. for benchmarks).
    #[arg(long, default_value_t = 200)]
    pub dns_rrl_rate: u32,
    /// Answers a client network may get in a burst above the rate.
    #[arg(long, default_value_t = 200)]
    pub dns_rrl_burst: u32,
    /// Every Nth suppressed answer is sent truncated (TC=1) so real clients retry over
    /// TCP; 0 drops them all.
    #[arg(long, default_value_t = 2)]
    pub dns_rrl_slip: u32,
    /// Most TCP connections from one client network (/24 or /56, the rate limiter's prefixes).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub dns_max_tcp_per_client: u64,
}

impl DnsAbuseArgs {
    /// Sets these limits on a DNS server's configuration.
    pub fn apply(&self, config: &mut lingjing_dns::DnsConfig) {
        config.rrl.responses_per_second = self.dns_rrl_rate;
        config.rrl.burst = self.dns_rrl_burst;
        config.rrl.slip = self.dns_rrl_slip;
        config.max_tcp_connections_per_client = self.dns_max_tcp_per_client as usize;
    }
}

#[derive(Debug, Subcommand)]
pub enum DnsSub {
    /// Show how a client is answered for a name, and why (computed from the control
    /// plane's current DNS snapshot, exactly as the DNS servers compute it).
    Explain {
        /// e.g. demo.cdn.lingjing.test
        name: String,
        /// The client's address (its resolver, or the subnet's address with --subnet).
        #[arg(long)]
        client: std::net::IpAddr,
        /// The EDNS Client Subnet prefix length, when the query carries ECS.
        #[arg(long)]
        subnet: Option<u8>,
        /// Explain the AAAA answer instead of A.
        #[arg(long)]
        aaaa: bool,
    },
}

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// This node's id in the inventory.
    #[arg(long)]
    pub node: String,
    /// HTTP listen address (repeat for several).
    #[arg(long = "listen", default_value = "127.0.0.1:8080")]
    pub listen: Vec<SocketAddr>,
    /// HTTPS listen address (repeat for several; none by default): HTTP/1.1 and h2, each
    /// service's certificate chosen by SNI.
    #[arg(long = "listen-https")]
    pub listen_https: Vec<SocketAddr>,
    /// Admin address: /healthz and /metrics.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub admin: SocketAddr,
    /// Memory cache size in MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_cache_mb: u64,
    /// Disk cache directory (kept across restarts); memory only when absent.
    #[arg(long)]
    pub disk_cache_dir: Option<PathBuf>,
    /// Disk cache size in MiB.
    #[arg(long, default_value_t = 10240)]
    pub disk_cache_mb: u64,
    /// Serve this edge snapshot file (JSON) instead of following a control plane.
    #[arg(long)]
    pub standalone: Option<PathBuf>,
    /// Where the node's credential and last good snapshot are kept (default:
    /// DATA_DIR/edge-NODE).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub join: JoinArgs,
    /// Do not log each request.
    #[arg(long)]
    pub no_access_log: bool,
    /// Threads serving the HTTP and HTTPS listeners, each with its own runtime, listening
    /// socket (SO_REUSEPORT) and upstream connections (default: one per CPU; 0: one shared
    /// work-stealing runtime).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep cached bodies on the heap and copy them into the socket, instead of placing
    /// bodies of 32 KiB and more in sealed memfds sent with sendfile(2) (as nginx's
    /// `sendfile off`).
    #[arg(long)]
    pub no_sendfile: bool,
    #[command(flatten)]
    pub limits: EdgeLimitArgs,
    #[command(flatten)]
    pub defence: EdgeDefenceArgs,
}

/// How an edge node defends itself.
#[derive(Debug, Args, Clone, Copy)]
pub struct EdgeDefenceArgs {
    /// Turn traffic defence off on this node: no counting, detection, rules or
    /// per-source connection caps (to measure what it costs).
    #[arg(long)]
    pub no_defence: bool,
    /// Client addresses counted exactly per second; past it traffic is counted under its
    /// /24 (/48), and the metrics and log say so.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub defence_sources: u64,
    /// /24 (/48) prefixes counted exactly per second; past it in a HeavyKeeper sketch.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(16..=16_777_216))]
    pub defence_prefixes: u64,
    /// Most connections open at once from one client address (0: no cap). Generous by
    /// default: many clients may share one address (carrier-grade NAT, proxies).
    #[arg(long, default_value_t = 1024)]
    pub max_conns_per_source: u32,
    /// Most new connections per second from one client address (0: no cap).
    #[arg(long, default_value_t = 1000)]
    pub max_new_conns_per_source: u32,
}

impl EdgeDefenceArgs {
    /// Sets these on an edge node's configuration.
    pub fn apply(&self, config: &mut lingjing_edge::EdgeConfig) {
        let d = &mut config.defence;
        d.enabled = !self.no_defence;
        d.tables.sources = self.defence_sources as usize;
        d.tables.prefixes = self.defence_prefixes as usize;
        d.connections.max_open = self.max_conns_per_source;
        d.connections.max_new_per_second = self.max_new_conns_per_source;
        d.connections.table = self.defence_sources as usize;
    }
}

/// How an edge node bounds its clients and its memory.
#[derive(Debug, Args, Clone, Copy)]
pub struct EdgeLimitArgs {
    /// Most open client connections (HTTP and HTTPS together); more are closed at accept.
    #[arg(long, default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Seconds a client has to send a request head.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_read_timeout_s: u64,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_s: u64,
    /// URLs (path and query) longer than this are passed through, not cached.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub max_cache_url_bytes: u64,
    /// MiB one shared fetch buffers for clients that join it late.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub fill_buffer_mb: u64,
    /// MiB all fetches together may hold to store bodies; past it responses are served
    /// but not stored.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub store_buffer_mb: u64,
}

impl EdgeLimitArgs {
    /// Sets these limits on an edge node's configuration.
    pub fn apply(&self, config: &mut lingjing_edge::EdgeConfig) {
        use std::time::Duration;
        config.limits.max_connections = self.max_connections as usize;
        config.limits.header_read_timeout = Duration::from_secs(self.header_read_timeout_s);
        config.limits.idle_timeout = Duration::from_secs(self.idle_timeout_s);
        config.cache_limits.max_url_bytes = self.max_cache_url_bytes as usize;
        config.cache_limits.fill_buffer_bytes = self.fill_buffer_mb * 1024 * 1024;
        config.cache_limits.store_buffer_bytes = self.store_buffer_mb * 1024 * 1024;
    }
}

/// How a data plane gets and protects its node credential.
#[derive(Debug, Args, Clone)]
pub struct JoinArgs {
    /// One-time join token (`lingjing node join-token ID`), exchanged at first start for
    /// the node's credential, which is kept in the state directory (later starts need no
    /// token).
    #[arg(long, env = "LINGJING_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Allow a plain http:// control plane that is not on this host (the credential then
    /// crosses the network unencrypted).
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Database URL: `sqlite://PATH` or `postgres://USER@HOST/DB`.
    #[arg(long, env = "LINGJING_DB")]
    pub db: String,
    /// REST API address.
    #[arg(long, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// File holding the operator token (else LINGJING_OPERATOR_TOKEN).
    #[arg(long, env = "LINGJING_OPERATOR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate (PEM, server certificate first); needs --tls-key.
    #[arg(long, env = "LINGJING_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "LINGJING_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Let the edges relay artefacts (edge AI models) to the platform's nodes: each edge AI
    /// node fetches through its site's edges first (one fill per region), then from here.
    #[arg(long)]
    pub artifact_relay: bool,
    /// This API's base URL as the edges reach it (default: the address it listens on).
    #[arg(long, requires = "artifact_relay")]
    pub artifact_relay_upstream: Option<String>,
    /// The CA (PEM) that signed --tls-cert, for the edges to trust.
    #[arg(long, requires = "artifact_relay")]
    pub artifact_relay_ca: Option<PathBuf>,
    /// Connections served at once; more are closed at once.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Platform DNS zone.
    #[arg(long, default_value = lingjing_control::server::DEFAULT_ZONE)]
    pub zone: String,
    /// Days metering samples are kept (raw, 5-minute) and a late one is still taken.
    #[arg(long, default_value_t = lingjing_control::server::DEFAULT_METER_RETENTION_DAYS, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub meter_retention_days: u32,
    #[command(flatten)]
    pub storage: StoragePolicyArgs,
    #[command(flatten)]
    pub health: HealthArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// The commands every resource kind has.
#[derive(Debug, Subcommand)]
pub enum ResourceCmd<A: Args> {
    /// List them.
    #[command(alias = "ls")]
    List,
    /// Show one.
    Show { id: String },
    /// Create one from flags, or from a JSON/TOML file with -f.
    Add(AddArgs<A>),
    /// Delete one.
    #[command(alias = "delete")]
    Rm { id: String },
}

#[derive(Debug, Args)]
pub struct AddArgs<A: Args> {
    /// Read the whole resource from a JSON or TOML file instead of flags ("-" for stdin).
    #[arg(short = 'f', long = "file", conflicts_with = "id")]
    pub file: Option<PathBuf>,
    /// The new resource's id (lowercase letters, digits and `-`).
    #[arg(required_unless_present = "file")]
    pub id: Option<String>,
    #[command(flatten)]
    pub fields: A,
}

#[derive(Debug, Args)]
pub struct RegionAdd {
    #[arg(long)]
    pub name: Option<String>,
    /// Enclosing region id (none for a country).
    #[arg(long)]
    pub parent: Option<String>,
    /// country, province, city or county.
    #[arg(long, default_value = "city")]
    pub level: String,
    /// core, regional or edge.
    #[arg(long, default_value = "edge")]
    pub tier: String,
}

#[derive(Debug, Args)]
pub struct RecordAdd {
    /// Owner name relative to the zone: `@` for the apex, `api`, `_acme-challenge.www`.
    #[arg(long)]
    pub name: Option<String>,
    /// A, AAAA, CNAME, TXT or MX.
    #[arg(long = "type")]
    pub rtype: Option<String>,
    /// A value (repeat for several): an address, a target name, a text, or
    /// `PREFERENCE EXCHANGE` for MX. Names without a final dot are relative to the zone.
    #[arg(long = "value")]
    pub values: Vec<String>,
    /// Seconds resolvers may cache it.
    #[arg(long, default_value_t = 300)]
    pub ttl: u32,
}

#[derive(Debug, Args)]
pub struct LineAdd {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LineCmd {
    #[command(flatten)]
    Resource(ResourceCmd<LineAdd>),
    /// Import a `CIDR line [region]` table; each line named in it gets exactly its prefixes.
    Import {
        /// The file ("-" for stdin).
        file: PathBuf,
        /// Refuse lines that do not exist instead of creating them.
        #[arg(long)]
        no_create: bool,
    },
    /// List a line's prefixes.
    Prefixes { id: String },
}

#[derive(Debug, Args)]
pub struct SiteAdd {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    /// Lines the site is connected to, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub lines: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub bandwidth_mbps: u64,
    /// Regional parent site.
    #[arg(long)]
    pub parent: Option<String>,
}

#[derive(Debug, Args)]
pub struct NodeAdd {
    #[arg(long)]
    pub site: Option<String>,
    /// Roles, comma-separated: edge, parent, dns, storage.
    #[arg(long, value_delimiter = ',', default_value = "edge")]
    pub roles: Vec<String>,
    #[arg(long, default_value_t = 0)]
    pub capacity_mbps: u64,
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    #[arg(long, default_value_t = 8443)]
    pub https_port: u16,
    #[arg(long, default_value_t = 9090)]
    pub admin_port: u16,
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    #[command(flatten)]
    Resource(ResourceCmd<NodeAdd>),
    /// Stop handing the node out in DNS; it finishes the work it has.
    Drain { id: String },
    /// Hand the node out again.
    Undrain { id: String },
    /// Issue a one-time join token for the node (start it with --join-token).
    JoinToken {
        id: String,
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
    },
    /// Revoke the node's credential (and its unused join tokens) at once.
    Revoke { id: String },
}

#[derive(Debug, Args)]
pub struct PoolAdd {
    #[arg(long)]
    pub site: Option<String>,
    /// The pool's network, e.g. 10.1.0.0/24.
    #[arg(long)]
    pub cidr: Option<String>,
    #[arg(long)]
    pub line: Option<String>,
    /// Addresses never handed out, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub reserved: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    #[command(flatten)]
    Resource(ResourceCmd<PoolAdd>),
    /// Allocate an address of the pool to a node.
    Allocate {
        pool: String,
        #[arg(long)]
        node: String,
        /// A specific address (default: the lowest free one).
        #[arg(long)]
        address: Option<String>,
    },
    /// Release an allocated address.
    Release { pool: String, address: String },
    /// List the pool's allocations.
    Allocations { pool: String },
}

#[derive(Debug, Args)]
pub struct TenantAdd {
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub contact: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    #[command(flatten)]
    Resource(ResourceCmd<TenantAdd>),
    /// Create an API key for the tenant (the secret is shown once).
    KeyCreate { tenant: String },
    /// List the tenant's API keys.
    Keys { tenant: String },
    /// Revoke an API key.
    KeyRevoke { tenant: String, key: String },
    /// Create an S3 access key for the tenant (the secret is shown once); the S3
    /// gateways accept it with their next snapshot (within seconds).
    S3KeyCreate { tenant: String },
    /// List the tenant's S3 access keys.
    S3Keys { tenant: String },
    /// Revoke an S3 access key: the gateways refuse it from their next snapshot.
    S3KeyRevoke { tenant: String, access_key: String },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    #[command(flatten)]
    Resource(ResourceCmd<ServiceAdd>),
    /// Prove control of the service's pending hostnames: checks the TXT record
    /// `_lingjing-challenge.<hostname>` (`service show` says what to publish).
    Verify {
        id: String,
        /// Operator only: approve every pending hostname without the DNS check.
        #[arg(long)]
        approve: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServiceAdd {
    #[arg(long)]
    pub tenant: Option<String>,
    /// A hostname served (repeat for several).
    #[arg(long = "hostname")]
    pub hostnames: Vec<String>,
    /// An origin `host:port` (repeat for several); options after commas: `backup`,
    /// `weight=N`, `host=NAME` (Host header and TLS name), `tls` (HTTPS to the origin),
    /// `tls-skip-verify` (HTTPS without checking the certificate: tests only).
    #[arg(long = "origin")]
    pub origins: Vec<String>,
    /// A PEM file of CA certificates trusted for this service's TLS origins, besides the
    /// public roots (e.g. a private CA).
    #[arg(long = "origin-ca", value_name = "PEM_FILE")]
    pub origin_ca: Option<std::path::PathBuf>,
    /// DNS answer TTL in seconds.
    #[arg(long)]
    pub ttl: Option<u32>,
    /// Addresses per DNS answer.
    #[arg(long)]
    pub answer_count: Option<u8>,
}
