//! The data-plane agent loop, shared by the edge, the DNS server and later data planes.
//!
//! On start it hands the data plane the last good snapshot kept on disk (so a node serves
//! even when the control plane is down, also after its own restart), then long-polls for
//! newer versions. Each newer snapshot goes to the data plane's `apply`; only when that
//! succeeds is it written to disk (atomically: temp file, fsync, rename) and acknowledged
//! by a heartbeat. Versions only move forward: an older or equal version is never applied.
//!
//! A node authenticates with its own credential ([`node_credential`]: exchanged once for
//! a join token, then kept 0600 in its state directory, which is 0700), and never sends it
//! in plain HTTP to a control plane off this host unless told `insecure`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lingjing_model::aiot::SlotReportSource;
use lingjing_model::defence::{BaselineSample, DefenceReport};
use lingjing_model::snapshot::{
    AnswerCountSource, BucketStored, BucketTraffic, BucketUsageSource, DefenceSource, Heartbeat,
    Role, Snapshot, StorageReportSource, UsageSample, UsageSource,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::ClientError;
use crate::rest::Client;

/// How an agent reaches the control plane and where it keeps its state.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub endpoint: String,
    /// The node's credential (or, in tests, the operator token).
    pub token: String,
    /// A CA file (PEM) to trust for an `https://` endpoint beside the system's roots.
    pub ca: Option<PathBuf>,
    /// Allow plain `http://` to a control plane that is not on this host.
    pub insecure: bool,
    /// This node's id in the inventory.
    pub node: String,
    pub role: Role,
    /// Where the last good snapshot is kept.
    pub state_dir: PathBuf,
    pub heartbeat_every: Duration,
    /// How long one long-poll waits at the control plane.
    pub poll_wait: Duration,
}

impl AgentConfig {
    pub fn new(endpoint: &str, token: &str, node: &str, role: Role, state_dir: &Path) -> Self {
        AgentConfig {
            endpoint: endpoint.to_owned(),
            token: token.to_owned(),
            ca: None,
            insecure: false,
            node: node.to_owned(),
            role,
            state_dir: state_dir.to_owned(),
            heartbeat_every: Duration::from_secs(2),
            poll_wait: Duration::from_secs(30),
        }
    }

    /// The file holding the last good snapshot.
    pub fn snapshot_path(&self) -> PathBuf {
        self.state_dir
            .join(format!("{}-{}.snapshot.json", self.node, self.role))
    }
}

/// The agent, not yet running.
pub struct Agent {
    config: AgentConfig,
    client: Client,
    usage: Option<Arc<dyn UsageSource>>,
    storage: Option<Arc<dyn StorageReportSource>>,
    buckets: Option<Arc<dyn BucketUsageSource>>,
    defence: Option<(Arc<dyn DefenceSource>, Arc<Notify>)>,
    aiot: Option<(Arc<dyn SlotReportSource>, Arc<Notify>)>,
    answers: Option<Arc<dyn AnswerCountSource>>,
}

/// A running agent.
pub struct AgentHandle {
    applied: Arc<AtomicU64>,
    applied_changed: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl AgentHandle {
    /// The version the data plane has applied (0: none).
    pub fn applied_version(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Waits until the applied version is at least `version`.
    pub async fn wait_applied(&self, version: u64) {
        loop {
            let notified = self.applied_changed.notified();
            if self.applied_version() >= version {
                return;
            }
            notified.await;
        }
    }

    /// Stops the agent (the data plane keeps what it has).
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reads the last good snapshot kept at `path`, if there is a readable one.
pub fn load_snapshot<T: DeserializeOwned>(path: &Path) -> Option<Snapshot<T>> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable snapshot file");
            None
        }
    }
}

/// Writes `snapshot` to `path` (0600, in a 0700 directory) so that a crash leaves either
/// the old or the new file.
pub fn save_snapshot<T: Serialize>(path: &Path, snapshot: &Snapshot<T>) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::fs::ensure_private_dir(dir)?;
    }
    let bytes = serde_json::to_vec(snapshot).map_err(std::io::Error::other)?;
    crate::fs::write_private(path, &bytes)
}

/// Refuses to send a node's credential in plain HTTP to a control plane that is not on
/// this host (loopback), unless `insecure`.
pub fn check_endpoint(endpoint: &str, insecure: bool) -> Result<(), ClientError> {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Ok(());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback || insecure {
        return Ok(());
    }
    Err(ClientError::Config(format!(
        "refusing to send this node's credential in plain HTTP to the control plane at {endpoint}, which is not on this host: use an https:// endpoint (with --ca FILE for a private CA), or pass --insecure if the network in between is trusted"
    )))
}

/// The file holding `node`'s credential in `state_dir`.
pub fn credential_path(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join(format!("{node}.credential"))
}

/// The node's credential: the one kept in `state_dir`, or one exchanged for `join_token`
/// (then kept there, 0600). With both, the join token is tried first (an operator
/// re-issues one after a revocation); if the control plane refuses it (already used,
/// expired) or cannot be reached, the kept credential is used.
pub async fn node_credential(
    endpoint: &str,
    ca: Option<&Path>,
    insecure: bool,
    node: &str,
    state_dir: &Path,
    join_token: Option<&str>,
) -> Result<String, ClientError> {
    check_endpoint(endpoint, insecure)?;
    let path = credential_path(state_dir, node);
    let io = |e: std::io::Error, what: &str| {
        ClientError::Config(format!("cannot {what} {}: {e}", path.display()))
    };
    crate::fs::ensure_private_dir(state_dir).map_err(|e| io(e, "create the state directory of"))?;
    crate::fs::tighten_file(&path).map_err(|e| io(e, "tighten the mode of"))?;
    let kept = match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        Ok(_) => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e, "read")),
    };
    let Some(join_token) = join_token.map(str::trim).filter(|t| !t.is_empty()) else {
        return kept.ok_or_else(|| {
            ClientError::Config(format!(
                "node `{node}` has no credential in {}: start it once with --join-token TOKEN (the operator issues one with `lingjing node join-token {node}`)",
                state_dir.display()
            ))
        });
    };
    let client = Client::with_ca(endpoint, "", ca)?;
    match client.exchange_join_token(node, join_token).await {
        Ok(credential) => {
            crate::fs::write_private(&path, format!("{credential}\n").as_bytes())
                .map_err(|e| io(e, "keep the node credential in"))?;
            tracing::info!(node, path = %path.display(), "exchanged the join token for this node's credential");
            Ok(credential)
        }
        Err(e) => match kept {
            Some(k) => {
                tracing::info!(node, reason = %e, "the join token was not exchanged; using the credential kept in the state directory");
                Ok(k)
            }
            None => Err(e),
        },
    }
}

impl Agent {
    pub fn new(config: AgentConfig) -> Result<Agent, ClientError> {
        check_endpoint(&config.endpoint, config.insecure)?;
        let client = Client::with_ca(&config.endpoint, &config.token, config.ca.as_deref())?;
        Ok(Agent {
            config,
            client,
            usage: None,
            storage: None,
            answers: None,
            buckets: None,
            defence: None,
            aiot: None,
        })
    }

    /// Sends the data plane's answer totals with every heartbeat (error-rate alerts).
    pub fn with_answer_counts(mut self, source: Arc<dyn AnswerCountSource>) -> Agent {
        self.answers = Some(source);
        self
    }

    /// Reports `usage` with every heartbeat, each batch exactly once.
    pub fn with_usage(mut self, usage: Arc<dyn UsageSource>) -> Agent {
        self.usage = Some(usage);
        self
    }

    /// Reports an S3 gateway's per-bucket traffic and stored samples with the heartbeats,
    /// each batch exactly once.
    pub fn with_bucket_usage(mut self, source: Arc<dyn BucketUsageSource>) -> Agent {
        self.buckets = Some(source);
        self
    }

    /// Sends an edge's defence reports: at once when `wake` is notified (an attack was
    /// found), else with the next heartbeat.
    pub fn with_defence(mut self, source: Arc<dyn DefenceSource>, wake: Arc<Notify>) -> Agent {
        self.defence = Some((source, wake));
        self
    }

    /// Sends an edge AI node's slots with every heartbeat, and at once when `wake` is
    /// notified (a slot changed stage).
    pub fn with_slots(mut self, source: Arc<dyn SlotReportSource>, wake: Arc<Notify>) -> Agent {
        self.aiot = Some((source, wake));
        self
    }

    /// Sends a storage node's disk report with every heartbeat.
    pub fn with_storage_report(mut self, source: Arc<dyn StorageReportSource>) -> Agent {
        self.storage = Some(source);
        self
    }

    /// Starts the agent: first hands `apply` the snapshot kept on disk (if any), then keeps
    /// it up to date. `apply` returns an error to refuse a snapshot (it is then neither
    /// kept nor acknowledged, and is retried later).
    pub fn start<T, F>(self, mut apply: F) -> AgentHandle
    where
        T: DeserializeOwned + Serialize + Send + Sync + 'static,
        F: FnMut(Arc<Snapshot<T>>) -> Result<(), String> + Send + 'static,
    {
        let applied = Arc::new(AtomicU64::new(0));
        let applied_changed = Arc::new(Notify::new());
        let path = self.config.snapshot_path();
        // Kept from before this version, or by hand: only this user may read them.
        if let Err(e) = crate::fs::ensure_private_dir(&self.config.state_dir)
            .and_then(|()| crate::fs::tighten_file(&path))
        {
            tracing::warn!(error = %e, dir = %self.config.state_dir.display(), "cannot make the state directory private");
        }
        if let Some(saved) = load_snapshot::<T>(&path) {
            let version = saved.version;
            match apply(Arc::new(saved)) {
                Ok(()) => {
                    applied.store(version, Ordering::Release);
                    tracing::info!(version, path = %path.display(), "serving the snapshot kept on disk");
                }
                Err(e) => {
                    tracing::warn!(version, error = %e, "the snapshot kept on disk was refused")
                }
            }
        }
        let ack = Arc::new(Notify::new());
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.client.clone(),
            self.config.clone(),
            applied.clone(),
            ack.clone(),
            Sources {
                usage: self.usage,
                storage: self.storage,
                buckets: self.buckets,
                defence: self.defence,
                aiot: self.aiot,
                answers: self.answers,
            },
        ));
        let poll = tokio::spawn(poll_loop(
            self.client,
            self.config,
            applied.clone(),
            applied_changed.clone(),
            ack,
            apply,
        ));
        AgentHandle {
            applied,
            applied_changed,
            tasks: vec![heartbeat, poll],
        }
    }
}

/// What a data plane reports with its heartbeats besides its applied version.
struct Sources {
    usage: Option<Arc<dyn UsageSource>>,
    storage: Option<Arc<dyn StorageReportSource>>,
    buckets: Option<Arc<dyn BucketUsageSource>>,
    defence: Option<(Arc<dyn DefenceSource>, Arc<Notify>)>,
    aiot: Option<(Arc<dyn SlotReportSource>, Arc<Notify>)>,
    answers: Option<Arc<dyn AnswerCountSource>>,
}

/// One batch of counted usage, resent as it is until acknowledged.
#[derive(Default)]
struct Batch {
    services: Vec<UsageSample>,
    traffic: Vec<BucketTraffic>,
    stored: Vec<BucketStored>,
    /// Defence reports (each the latest state of an incident: resending one is harmless).
    defence: Vec<DefenceReport>,
    /// Per-minute busiest seconds (kept as a maximum: resending one is harmless).
    baseline: Vec<BaselineSample>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.traffic.is_empty()
            && self.stored.is_empty()
            && self.defence.is_empty()
            && self.baseline.is_empty()
    }

    /// Whether it holds counted usage (reports with a sequence number).
    fn has_usage(&self) -> bool {
        !(self.services.is_empty() && self.traffic.is_empty() && self.stored.is_empty())
    }
}

/// Adds `taken` to `into`, service by service (addresses summed).
fn merge_usage(into: &mut BTreeMap<String, UsageSample>, taken: Vec<UsageSample>) {
    for t in taken {
        match into.get_mut(&t.service) {
            Some(u) => u.add(&t),
            None => {
                into.insert(t.service.clone(), UsageSample { address: None, ..t });
            }
        }
    }
}

async fn heartbeat_loop(
    client: Client,
    config: AgentConfig,
    applied: Arc<AtomicU64>,
    ack: Arc<Notify>,
    sources: Sources,
) {
    let mut failures = 0u32;
    // A batch is resent with the same sequence number until acknowledged. Sequence
    // numbers start from the clock so they keep growing across restarts.
    let mut pending = Batch::default();
    let mut seq: u64 = 0;
    // What was taken from the data plane and not yet put in a batch, and the metering
    // totals (per 5-minute interval) it also feeds.
    let mut unbatched: BTreeMap<String, UsageSample> = BTreeMap::new();
    let mut meter = crate::meter::Meter::random();
    loop {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if let Some(source) = &sources.usage {
            let taken = source.take();
            meter.add(now_ms, &taken);
            merge_usage(&mut unbatched, taken);
        }
        if pending.is_empty() {
            pending.services = std::mem::take(&mut unbatched).into_values().collect();
            if let Some(source) = &sources.buckets {
                (pending.traffic, pending.stored) = source.take();
            }
            if pending.has_usage() {
                seq = (seq + 1).max(now_ms);
            }
        }
        if let Some((source, _)) = &sources.defence {
            // Newer states of the same incidents replace those still waiting.
            for report in source.take() {
                pending.defence.retain(|r| r.incident != report.incident);
                pending.defence.push(report);
            }
            let over = pending
                .defence
                .len()
                .saturating_sub(lingjing_model::defence::MAX_REPORTS);
            pending.defence.drain(..over);
            // Finished minutes' busiest seconds, for learned thresholds.
            pending.baseline.extend(source.take_baseline());
            let over = pending
                .baseline
                .len()
                .saturating_sub(lingjing_model::defence::MAX_BASELINE_SAMPLES);
            pending.baseline.drain(..over);
        }
        let metered = meter.report(now_ms);
        let beat = Heartbeat {
            role: config.role,
            applied_version: applied.load(Ordering::Acquire),
            agent: Some(format!("lingjing/{}", env!("CARGO_PKG_VERSION"))),
            usage: pending.services.clone(),
            usage_seq: if pending.has_usage() { seq } else { 0 },
            meter: metered.as_ref().map(|(report, _)| report.clone()),
            storage: sources.storage.as_ref().map(|s| s.report()),
            bucket_traffic: pending.traffic.clone(),
            bucket_stored: pending.stored.clone(),
            defence: pending.defence.clone(),
            defence_baseline: pending.baseline.clone(),
            aiot: sources
                .aiot
                .as_ref()
                .map(|(s, _)| s.slots())
                .unwrap_or_default(),
            answers: sources.answers.as_ref().map(|s| s.answer_counts()),
        };
        match client.heartbeat(&config.node, &beat).await {
            Ok(()) => {
                failures = 0;
                pending = Batch::default();
                if let Some((_, sent)) = &metered {
                    meter.acknowledged(sent);
                }
            }
            // Refused as it is (a 4xx: e.g. a report the control plane will never take):
            // resending it would fail forever and keep the heartbeats from landing.
            Err(e)
                if e.status().is_some_and(|s| (400..500).contains(&s)) && !pending.is_empty() =>
            {
                tracing::error!(node = %config.node, error = %e, "usage report refused; dropped");
                pending = Batch::default();
                // Metering totals go only when the control plane refused them (their
                // field named): totals are repeatable, and kept they are sent again.
                if let Some((_, sent)) = &metered
                    && e.field().is_some_and(|f| f.starts_with("meter"))
                {
                    meter.acknowledged(sent);
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(node = %config.node, error = %e, "heartbeat failed");
                }
            }
        }
        // Wake early to acknowledge a newly applied version, or to report an attack.
        let defence_wake = async {
            match &sources.defence {
                Some((_, wake)) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let slots_wake = async {
            match &sources.aiot {
                Some((_, wake)) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        let _ = tokio::time::timeout(config.heartbeat_every, async {
            tokio::select! {
                _ = ack.notified() => {}
                _ = defence_wake => {}
                _ = slots_wake => {}
            }
        })
        .await;
    }
}

async fn poll_loop<T, F>(
    client: Client,
    config: AgentConfig,
    applied: Arc<AtomicU64>,
    applied_changed: Arc<Notify>,
    ack: Arc<Notify>,
    mut apply: F,
) where
    T: DeserializeOwned + Serialize + Send + Sync + 'static,
    F: FnMut(Arc<Snapshot<T>>) -> Result<(), String> + Send + 'static,
{
    let path = config.snapshot_path();
    let mut backoff = Duration::from_millis(200);
    let max_backoff = Duration::from_secs(5);
    loop {
        let after = applied.load(Ordering::Acquire);
        let result = client
            .poll_snapshot::<T>(config.role, &config.node, after, config.poll_wait)
            .await;
        match result {
            Ok(None) => backoff = Duration::from_millis(200),
            Ok(Some(snapshot)) if snapshot.version <= after => {
                tracing::debug!(
                    version = snapshot.version,
                    after,
                    "ignoring a snapshot that is not newer"
                );
            }
            Ok(Some(snapshot)) => {
                let version = snapshot.version;
                let snapshot = Arc::new(snapshot);
                match apply(snapshot.clone()) {
                    Ok(()) => {
                        if let Err(e) = save_snapshot(&path, &snapshot) {
                            tracing::warn!(error = %e, path = %path.display(), "could not keep the snapshot on disk");
                        }
                        applied.store(version, Ordering::Release);
                        applied_changed.notify_waiters();
                        ack.notify_one();
                        tracing::info!(role = %config.role, version, "snapshot applied");
                        backoff = Duration::from_millis(200);
                    }
                    Err(e) => {
                        tracing::error!(version, error = %e, "snapshot refused by the data plane; keeping the previous one");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "snapshot poll failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_endpoint;

    #[test]
    fn plain_http_is_refused_off_this_host_unless_insecure() {
        for ok in [
            "https://192.0.2.1:7700",
            "http://127.0.0.1:7700",
            "http://127.8.9.10:7700/",
            "http://[::1]:7700",
            "http://localhost:7700",
            "http://LOCALHOST",
        ] {
            assert!(check_endpoint(ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://192.0.2.1:7700",
            "http://[2001:db8::1]:7700",
            "http://control.example:7700",
            "http://localhost.example.com",
            "http://127.0.0.1@192.0.2.1:7700",
        ] {
            let err = check_endpoint(refused, false)
                .expect_err(refused)
                .to_string();
            assert!(
                err.contains("--insecure") && err.contains("https://"),
                "{err}"
            );
            assert!(
                check_endpoint(refused, true).is_ok(),
                "{refused} with insecure"
            );
        }
    }
}
