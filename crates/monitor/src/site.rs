//! The monitor of a node: which site it watches (the snapshot's `monitors`), the site's
//! [`Engine`], and what each input leaves on disk, in this order, before the input is
//! acknowledged (to the broker, or the HTTP client):
//!
//! 1. the readings and alert transitions appended to the outbox to the control plane
//!    (`outbox/`, one fsync for the lot);
//! 2. transitions to notify appended to the notices' outbox (`notices/`);
//! 3. when a transition happened, the engine's state (`state-{site}.json`, temp file,
//!    fsync, rename).
//!
//! A crash between 1 and 3 makes the node compute the same transition again from the
//! input sent again: it has the same [`AlertEvent::id`] (times in transitions come from
//! readings and rules, never from when they were noticed), and the control plane and
//! the notifier keep one per id. Readings that change no phase are saved with the state
//! every [`SAVE_EVERY`] (a crash loses at most that much of a rise's window).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lingjing_client::outbox::{Outbox, is_full};
use lingjing_model::monitor::{
    AlertEvent, AlertState, MonitorConfig, MonitorEvent, MonitorRecord, Receiver, Telemetry,
};
use tokio::sync::Notify;

use crate::engine::{Engine, State};
use crate::metrics::Metrics;

/// How often the engine's state is saved when only readings changed it.
pub const SAVE_EVERY: Duration = Duration::from_secs(10);
/// How often time is passed to the engine (`for` windows, silent sensors, escalations).
pub const TICK_EVERY: Duration = Duration::from_secs(1);

/// Why an input was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// This node watches no site (yet).
    NoSite,
    /// The device reports no sensor of the site.
    UnknownDevice,
    /// The outbox is at its cap (507).
    Full(String),
    /// The outbox or the state could not be written (503).
    Failed(String),
    /// The input is not acceptable (400): what is wrong.
    Invalid(String),
}

/// How far ahead of the node's clock a reading's `at_ms` may be.
pub const MAX_CLOCK_AHEAD_MS: i64 = 24 * 3600 * 1000;

/// What an input did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Took {
    pub kept: usize,
    pub dropped: usize,
    pub alerts: Vec<String>,
}

struct Running {
    engine: Engine,
    /// The configuration it runs (to rebuild it from the saved state after a failed
    /// write, so that what was not kept is computed again).
    config: MonitorConfig,
    dirty: bool,
    saved: Instant,
}

/// A node's monitor.
pub struct Monitor {
    node: String,
    dir: PathBuf,
    running: tokio::sync::Mutex<Option<Running>>,
    receivers: Mutex<Vec<Receiver>>,
    outbox: Arc<Outbox<MonitorRecord>>,
    notices: Arc<Outbox<MonitorRecord>>,
    forward_wake: Arc<Notify>,
    notify_wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    /// The last snapshot's monitoring part, applied by the ticker when it changed.
    config: Mutex<Option<MonitorConfig>>,
}

fn open_outbox(dir: &Path) -> std::io::Result<Outbox<MonitorRecord>> {
    Outbox::open(dir)
}

impl Monitor {
    /// Opens the monitor's directory (`outbox/`, `notices/`, states).
    pub fn open(node: &str, dir: &Path, metrics: Arc<Metrics>) -> std::io::Result<Arc<Monitor>> {
        lingjing_client::fs::ensure_private_dir(dir)?;
        let outbox = open_outbox(&dir.join("outbox"))?;
        let notices = open_outbox(&dir.join("notices"))?;
        Ok(Arc::new(Monitor {
            node: node.to_owned(),
            dir: dir.to_owned(),
            running: tokio::sync::Mutex::new(None),
            receivers: Mutex::new(Vec::new()),
            outbox: Arc::new(outbox),
            notices: Arc::new(notices),
            forward_wake: Arc::new(Notify::new()),
            notify_wake: Arc::new(Notify::new()),
            metrics,
            config: Mutex::new(None),
        }))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn outbox(&self) -> &Arc<Outbox<MonitorRecord>> {
        &self.outbox
    }

    pub fn notices(&self) -> &Arc<Outbox<MonitorRecord>> {
        &self.notices
    }

    pub fn forward_wake(&self) -> &Arc<Notify> {
        &self.forward_wake
    }

    pub fn notify_wake(&self) -> &Arc<Notify> {
        &self.notify_wake
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The receivers of the last snapshot.
    pub fn receivers(&self) -> Vec<Receiver> {
        self.receivers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes a snapshot's monitoring part (applied at once if the engine is free, else
    /// by the next tick).
    pub fn set_config(&self, config: &MonitorConfig) {
        *self.receivers.lock().unwrap_or_else(|e| e.into_inner()) = config.receivers.clone();
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = Some(config.clone());
        if let Ok(mut running) = self.running.try_lock() {
            self.reconfigure(&mut running);
        }
    }

    fn state_path(&self, site: &str) -> PathBuf {
        self.dir.join(format!("state-{site}.json"))
    }

    /// Applies a pending configuration: the site may have changed (its state saved,
    /// the new one's loaded).
    fn reconfigure(&self, running: &mut Option<Running>) {
        let Some(config) = self.config.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let site = config.site_of(&self.node).map(str::to_owned);
        match (running.as_mut(), site) {
            (Some(r), Some(site)) if r.engine.site() == site => {
                r.engine.configure(&config);
                r.config = config;
            }
            (current, site) => {
                if let Some(r) = current {
                    self.save(r);
                }
                *running = site.map(|site| {
                    let state = self.load(&site);
                    let engine = Engine::new(&site, &config, state);
                    let (sensors, rules) = engine.size();
                    tracing::info!(site = %site, sensors, rules, "watching the site's sensors");
                    Running {
                        engine,
                        config: config.clone(),
                        dirty: false,
                        saved: Instant::now(),
                    }
                });
            }
        }
        if let Some(r) = running.as_ref() {
            let (sensors, rules) = r.engine.size();
            self.metrics.sensors.set(sensors as i64);
            self.metrics.rules.set(rules as i64);
        }
    }

    fn load(&self, site: &str) -> State {
        let path = self.state_path(site);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "the saved alert state is not readable: starting from none (alerts firing are raised again)");
                    State::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the saved alert state: starting from none");
                State::default()
            }
        }
    }

    fn save(&self, r: &mut Running) -> bool {
        let path = self.state_path(r.engine.site());
        let bytes = match serde_json::to_vec(r.engine.state()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the alert state");
                return false;
            }
        };
        match lingjing_client::fs::write_private(&path, &bytes) {
            Ok(()) => {
                r.dirty = false;
                r.saved = Instant::now();
                true
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot save the alert state");
                false
            }
        }
    }

    /// The site watched now, if any.
    pub async fn site(&self) -> Option<String> {
        let mut running = self.running.lock().await;
        self.reconfigure(&mut running);
        running.as_ref().map(|r| r.engine.site().to_owned())
    }

    /// Takes `device`'s telemetry (of `site`, as its topic says, for MQTT).
    pub async fn telemetry(
        &self,
        site: Option<&str>,
        device: &str,
        msg: &Telemetry,
        now_ms: i64,
    ) -> Result<Took, Refused> {
        if let Some(at) = msg.at_ms
            && (at <= 0 || at > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS))
        {
            return Err(Refused::Invalid(format!(
                "at_ms {at} is before 1970 or more than a day ahead of this node's clock ({now_ms})"
            )));
        }
        let mut guard = self.running.lock().await;
        self.reconfigure(&mut guard);
        let Some(r) = guard.as_mut() else {
            return Err(Refused::NoSite);
        };
        if site.is_some_and(|s| s != r.engine.site()) || !r.engine.knows_device(device) {
            return Err(Refused::UnknownDevice);
        }
        let taken = r.engine.telemetry(device, msg, now_ms);
        let site = r.engine.site().to_owned();
        let mut records = Vec::new();
        if !taken.values.is_empty() {
            records.push(MonitorRecord {
                seq: 0,
                site: site.clone(),
                event: MonitorEvent::Readings {
                    at_ms: taken.at_ms,
                    values: taken.values.clone(),
                },
            });
        }
        let took = Took {
            kept: taken.values.len(),
            dropped: taken.dropped,
            alerts: taken.events.iter().map(AlertEvent::id).collect(),
        };
        self.metrics.readings("kept", taken.values.len());
        self.metrics.readings("dropped", taken.dropped);
        self.commit(r, &site, records, taken.events).await?;
        Ok(took)
    }

    /// A device's status (`online` or `offline`, from its retained message or last will).
    pub async fn status(
        &self,
        site: &str,
        device: &str,
        online: bool,
        now_ms: i64,
    ) -> Result<Took, Refused> {
        let mut guard = self.running.lock().await;
        self.reconfigure(&mut guard);
        let Some(r) = guard.as_mut() else {
            return Err(Refused::NoSite);
        };
        if site != r.engine.site() || !r.engine.knows_device(device) {
            return Err(Refused::UnknownDevice);
        }
        let events = r.engine.device_status(device, online, now_ms);
        let site = site.to_owned();
        let took = Took {
            kept: 0,
            dropped: 0,
            alerts: events.iter().map(AlertEvent::id).collect(),
        };
        self.commit(r, &site, Vec::new(), events).await?;
        Ok(took)
    }

    /// Passes time to the engine; saves its state when due.
    pub async fn tick(&self, now_ms: i64) -> Result<usize, Refused> {
        let mut guard = self.running.lock().await;
        self.reconfigure(&mut guard);
        let Some(r) = guard.as_mut() else {
            return Ok(0);
        };
        let events = r.engine.tick(now_ms);
        let n = events.len();
        let site = r.engine.site().to_owned();
        self.commit(r, &site, Vec::new(), events).await?;
        if r.dirty && r.saved.elapsed() >= SAVE_EVERY {
            self.save(r);
        }
        Ok(n)
    }

    /// The alerts pending or firing, with their phase.
    pub async fn active(&self) -> Vec<(String, lingjing_alerts::Phase)> {
        let guard = self.running.lock().await;
        guard
            .as_ref()
            .map(|r| r.engine.active())
            .unwrap_or_default()
    }

    /// Steps 1 to 3 of the module's docs.
    async fn commit(
        &self,
        r: &mut Running,
        site: &str,
        mut records: Vec<MonitorRecord>,
        events: Vec<AlertEvent>,
    ) -> Result<(), Refused> {
        if records.is_empty() && events.is_empty() {
            return Ok(());
        }
        let notify: Vec<MonitorRecord> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.state,
                    AlertState::Firing | AlertState::Resolved | AlertState::Escalated
                )
            })
            .map(|e| MonitorRecord {
                seq: 0,
                site: site.to_owned(),
                event: MonitorEvent::Alert(e.clone()),
            })
            .collect();
        for e in &events {
            self.metrics.alert(e.state.as_str());
            tracing::info!(alert = %e.key, state = e.state.as_str(), severity = ?e.severity, silenced = e.silenced, "alert");
        }
        let transitions = !events.is_empty();
        records.extend(events.into_iter().map(|e| MonitorRecord {
            seq: 0,
            site: site.to_owned(),
            event: MonitorEvent::Alert(e),
        }));
        let outbox = self.outbox.clone();
        let notices = self.notices.clone();
        let has_notices = !notify.is_empty();
        let written = tokio::task::spawn_blocking(move || {
            outbox.append_all(records)?;
            if !notify.is_empty() {
                notices.append_all(notify)?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|x| x);
        if let Err(e) = written {
            // Nothing of it was kept: go back to the saved state, so that the input,
            // sent again, makes the same transitions again.
            let site = r.engine.site().to_owned();
            r.engine = Engine::new(&site, &r.config, self.load(&site));
            return Err(if is_full(&e) {
                Refused::Full(e.to_string())
            } else {
                Refused::Failed(e.to_string())
            });
        }
        self.forward_wake.notify_one();
        if has_notices {
            self.notify_wake.notify_one();
        }
        self.metrics.outbox_depth.set(self.outbox.depth() as i64);
        r.dirty = true;
        if transitions && !self.save(r) {
            return Err(Refused::Failed(
                "cannot save the alert state (see the log)".into(),
            ));
        }
        Ok(())
    }

    /// Saves the state now (at shutdown).
    pub async fn flush(&self) {
        let mut guard = self.running.lock().await;
        if let Some(r) = guard.as_mut() {
            self.save(r);
        }
    }
}

/// Runs the ticker until aborted.
pub fn spawn_ticker(monitor: Arc<Monitor>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = monitor.tick(now_ms()).await {
                tracing::error!(error = ?e, "alerts found by time passing could not be kept; trying again");
            }
        }
    })
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
