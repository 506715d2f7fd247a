//! The node's slots at run time: what each serves, and the state machine that moves a
//! slot to the version the control plane assigns it:
//!
//! fetching -> verifying -> loading -> self-test -> staged -> probation -> committed,
//! or failed (the slot keeps serving its committed version).
//!
//! Each stage is written to the slot's state file before it starts (see `disk`), so after
//! a `kill -9` the node starts on its committed version: an attempt cut short before
//! probation starts again from the top (its artefacts are checked again), one cut short
//! on probation counts as failed (Mender's rule: a version that did not prove itself is
//! not kept). A version this node committed before (a rollback) goes straight back to
//! serving after its self-test. Nothing here needs the control plane: a node that starts
//! while it is unreachable serves its committed versions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use lingjing_client::Client;
use lingjing_model::Validate;
use lingjing_model::aiot::{
    AiotSnapshot, ModelVersion, Probation, SlotReport, SlotReportSource, SlotStage, SlotTarget,
};
use lingjing_model::artifact::MAX_ARTIFACT_BYTES;
use tokio::sync::{Notify, Semaphore};

use crate::backend::Backend;
use crate::disk::{Attempt, Disk, Installed, SlotState};
use crate::fetch::Source;
use crate::loaded::{InferError, Inference, Input, LoadedVersion};
use crate::metrics::{Metrics, OutcomeLabels, SlotLabels, VersionLabels};
use crate::probation::{Figures, Verdict, judge};

/// Inferences that may wait for a slot's workers before more are turned away.
pub const MAX_QUEUED: usize = 64;
/// Largest self-test input read from disk.
const MAX_SELF_TEST_INPUT: u64 = 64 << 20;

/// How the runtime is set up.
#[derive(Clone)]
pub struct RuntimeConfig {
    pub node: String,
    /// Inferences a slot runs at once (the rest queue, up to [`MAX_QUEUED`]).
    pub workers_per_slot: usize,
    /// For tests of crash safety: stop (forever) when an attempt reaches this stage.
    pub pause_at: Option<SlotStage>,
    /// The control plane's API: artefacts are fetched from it after any source the
    /// snapshot lists.
    pub control: Option<String>,
}

/// A loaded version a slot serves.
pub struct Serving {
    pub loaded: LoadedVersion,
    pub revision: u64,
}

struct ProbationRun {
    /// The attempt it belongs to.
    revision: u64,
    policy: Probation,
    started: Instant,
    figures: Figures,
}

/// One slot.
struct Slot {
    state: Mutex<SlotState>,
    serving: RwLock<Option<Arc<Serving>>>,
    /// The committed version, kept loaded while a new one is on probation.
    committed: RwLock<Option<Arc<Serving>>>,
    probation: Mutex<Option<ProbationRun>>,
    gate: Arc<Semaphore>,
    queued: AtomicUsize,
    /// Set while a task works on this slot's attempt.
    busy: Mutex<bool>,
}

/// Why an inference was not answered.
#[derive(Debug)]
pub enum InferFailure {
    /// No such slot on this node.
    UnknownSlot,
    /// The slot has no version to serve (yet).
    NothingServing,
    /// The queue is full.
    Busy,
    BadInput(String),
    Failed {
        version: u32,
        message: String,
    },
}

/// The node's slots.
pub struct Runtime {
    config: RuntimeConfig,
    disk: Disk,
    backend: Arc<dyn Backend>,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
    metrics: Arc<Metrics>,
    /// Notified when a slot changes stage (the agent sends a heartbeat at once).
    pub changed: Arc<Notify>,
    /// Clients of the artefact sources in the newest snapshot.
    sources: Mutex<Vec<Source>>,
    credential: String,
    ca: Option<std::path::PathBuf>,
    /// The newest snapshot, looked at again when a slot's task finishes.
    latest: Mutex<Option<AiotSnapshot>>,
}

/// Longest reason kept (it travels in every heartbeat).
const MAX_REASON: usize = 1024;

/// `reason`, cut to [`MAX_REASON`] bytes at a character boundary.
fn short(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

impl Runtime {
    /// Opens the node's disk and starts every slot on its committed version (no network
    /// needed). `credential` and `ca` are used to fetch artefacts.
    pub async fn open(
        config: RuntimeConfig,
        disk: Disk,
        backend: Arc<dyn Backend>,
        metrics: Arc<Metrics>,
        credential: &str,
        ca: Option<&std::path::Path>,
    ) -> Arc<Runtime> {
        let runtime = Arc::new(Runtime {
            config,
            disk,
            backend,
            slots: Mutex::new(BTreeMap::new()),
            metrics,
            changed: Arc::new(Notify::new()),
            sources: Mutex::new(Vec::new()),
            credential: credential.to_owned(),
            ca: ca.map(ToOwned::to_owned),
            latest: Mutex::new(None),
        });
        for mut state in runtime.disk.load_slots() {
            if let Some(a) = state.attempt.as_mut()
                && a.stage == SlotStage::Probation
            {
                a.stage = SlotStage::Failed;
                a.reason = Some(format!(
                    "the node restarted while v{} was on probation: back on {}",
                    a.version.version,
                    state
                        .committed
                        .as_ref()
                        .map_or("nothing".to_owned(), |c| format!("v{}", c.version.version))
                ));
                if let Err(e) = runtime.disk.save_slot(&state) {
                    tracing::error!(slot = %state.slot, error = %e, "cannot save the slot's state");
                }
            }
            let serving = match state.committed.clone() {
                Some(c) => match runtime.load(&c.version).await {
                    Ok(loaded) => Some(Arc::new(Serving {
                        loaded,
                        revision: c.revision,
                    })),
                    Err(e) => {
                        tracing::error!(slot = %state.slot, version = c.version.version, error = %e, "cannot load the committed version; fetching it again");
                        // Resumed like an attempt a restart cut short (fetched again if
                        // its file rotted), when its target comes.
                        if state
                            .attempt
                            .as_ref()
                            .is_none_or(|a| a.revision == c.revision)
                        {
                            state.attempt = Some(Attempt {
                                revision: c.revision,
                                version: c.version.clone(),
                                stage: SlotStage::Fetching,
                                reason: Some(short(format!(
                                    "the committed version could not be loaded: {e}"
                                ))),
                                probation: Probation::default(),
                            });
                        }
                        None
                    }
                },
                None => None,
            };
            if let Some(s) = &serving {
                tracing::info!(slot = %state.slot, version = s.loaded.version().version, "serving the committed version kept on disk");
            }
            let slot = runtime.new_slot(state, serving);
            let name = lock(&slot.state).slot.clone();
            lock(&runtime.slots).insert(name, slot);
        }
        runtime
    }

    fn new_slot(&self, state: SlotState, serving: Option<Arc<Serving>>) -> Arc<Slot> {
        Arc::new(Slot {
            state: Mutex::new(state),
            serving: RwLock::new(serving.clone()),
            committed: RwLock::new(serving),
            probation: Mutex::new(None),
            gate: Arc::new(Semaphore::new(self.config.workers_per_slot.max(1))),
            queued: AtomicUsize::new(0),
            busy: Mutex::new(false),
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Reads (verifying) and loads `version` with its self-test run.
    async fn load(&self, version: &ModelVersion) -> Result<LoadedVersion, String> {
        let disk = self.disk.clone();
        let backend = self.backend.clone();
        let version = version.clone();
        tokio::task::spawn_blocking(move || {
            let onnx = disk.read_artifact(&version.artifact, MAX_ARTIFACT_BYTES)?;
            let input = match &version.self_test {
                Some(t) => Some(disk.read_artifact(&t.input, MAX_SELF_TEST_INPUT)?),
                None => None,
            };
            let loaded = LoadedVersion::load(backend.as_ref(), version, &onnx)?;
            if let Some(input) = input {
                loaded.self_test(&input)?;
            }
            Ok(loaded)
        })
        .await
        .map_err(|e| format!("the loader stopped: {e}"))?
    }

    /// Takes a new snapshot: starts work on each of this node's slots whose target is a
    /// revision it has not acted on (or whose attempt a restart cut short).
    pub fn apply(self: &Arc<Self>, snapshot: &AiotSnapshot) {
        *lock(&self.latest) = Some(snapshot.clone());
        // This node's site's edges first (their relay), then the listed sources, then the
        // control plane itself.
        let relayed = snapshot
            .relays
            .iter()
            .filter(|r| r.node == self.config.node)
            .flat_map(|r| r.edges.iter().map(|e| (e, r.source)))
            .filter(|_| snapshot.relay_host.is_some())
            .map(|(base, source)| (base, snapshot.relay_host.clone(), source));
        let direct = snapshot
            .artifact_sources
            .iter()
            .chain(self.config.control.iter())
            .map(|base| (base, None, None));
        let sources: Vec<Source> = relayed
            .chain(direct)
            .filter_map(|(base, host, local)| {
                // The relay answers platform nodes by address (the node connects from
                // its own): the node's credential is not sent to an edge.
                let token = if host.is_some() { "" } else { &self.credential };
                let client = Client::from_address(base, token, self.ca.as_deref(), local)
                    .map_err(
                        |e| tracing::warn!(source = %base, error = %e, "unusable artefact source"),
                    )
                    .ok()?;
                Some(Source { client, host })
            })
            .collect();
        *lock(&self.sources) = sources;
        self.apply_targets(snapshot);
    }

    /// Starts work on this node's targets in `snapshot` (the newest one's sources stay).
    fn apply_targets(self: &Arc<Self>, snapshot: &AiotSnapshot) {
        for target in snapshot
            .targets
            .iter()
            .filter(|t| t.node == self.config.node)
        {
            // The slot names files on disk: only an id is taken.
            if let Err(e) = lingjing_model::ident::check_id("slot", &target.slot) {
                tracing::warn!(slot = %target.slot, error = %e, "a target with an unusable slot name; ignored");
                continue;
            }
            if target.version == 0 {
                self.start(target.clone(), None);
                continue;
            }
            let Some(version) = snapshot
                .versions
                .iter()
                .find(|v| v.model == target.slot && v.version == target.version)
            else {
                tracing::warn!(slot = %target.slot, version = target.version, "the snapshot names a version it does not hold");
                continue;
            };
            if let Err(e) = version.validate() {
                tracing::warn!(slot = %target.slot, version = target.version, error = %e, "the snapshot's version is not valid; ignored");
                continue;
            }
            self.start(target.clone(), Some(version.clone()));
        }
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        lock(&self.slots).get(name).cloned()
    }

    fn start(self: &Arc<Self>, target: SlotTarget, version: Option<ModelVersion>) {
        let slot = {
            let mut slots = lock(&self.slots);
            slots
                .entry(target.slot.clone())
                .or_insert_with(|| self.new_slot(SlotState::new(&target.slot), None))
                .clone()
        };
        {
            let state = lock(&slot.state);
            let resumable = state.attempt.as_ref().is_some_and(|a| {
                a.revision == target.revision
                    && a.stage.in_progress()
                    && a.stage != SlotStage::Probation
            });
            if target.revision <= state.revision() && !resumable {
                return;
            }
            let mut busy = lock(&slot.busy);
            if *busy {
                // The task at work looks at the newest target when it finishes.
                return;
            }
            *busy = true;
        }
        let runtime = self.clone();
        tokio::spawn(async move {
            match version {
                Some(version) => runtime.advance(&slot, target, version).await,
                None => runtime.clear(&slot, target.revision),
            }
            *lock(&slot.busy) = false;
            // A newer target may have come meanwhile.
            let latest = lock(&runtime.latest).clone();
            if let Some(latest) = latest {
                runtime.apply_targets(&latest);
            }
        });
    }

    /// Whether the newest snapshot gives `slot` a revision newer than `revision`.
    fn superseded(&self, slot: &str, revision: u64) -> bool {
        lock(&self.latest).as_ref().is_some_and(|s| {
            s.targets
                .iter()
                .any(|t| t.node == self.config.node && t.slot == slot && t.revision > revision)
        })
    }

    /// Writes the attempt's new stage (before the stage's work starts), if the attempt is
    /// still `revision`; false when it is not (or the state could not be written).
    fn set_stage(
        &self,
        slot: &Slot,
        revision: u64,
        stage: SlotStage,
        reason: Option<String>,
    ) -> bool {
        let mut state = lock(&slot.state);
        match state.attempt.as_mut() {
            Some(a) if a.revision == revision => {
                a.stage = stage;
                a.reason = reason.map(short);
            }
            _ => return false,
        }
        let saved = self.disk.save_slot(&state);
        drop(state);
        self.changed.notify_one();
        match saved {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot save the slot's state");
                false
            }
        }
    }

    async fn pause_if_asked(&self, stage: SlotStage) {
        if self.config.pause_at == Some(stage) {
            tracing::warn!(?stage, "pausing here as asked (LINGJING_AIOT_PAUSE_AT)");
            std::future::pending::<()>().await;
        }
    }

    async fn advance(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        target: SlotTarget,
        version: ModelVersion,
    ) {
        let name = target.slot.clone();
        let revision = target.revision;
        // A version still on probation is given up for the new target.
        if lock(&slot.probation).take().is_some() {
            let committed = read(&slot.committed).clone();
            *write(&slot.serving) = committed;
        }
        let previous = {
            let mut state = lock(&slot.state);
            state.attempt = Some(Attempt {
                revision,
                version: version.clone(),
                stage: SlotStage::Fetching,
                reason: None,
                probation: target.probation,
            });
            state.previous.clone()
        };
        // The version this slot serves as committed: nothing to do.
        let loaded_committed = read(&slot.committed)
            .as_ref()
            .is_some_and(|c| *c.loaded.version() == version);
        if loaded_committed {
            self.set_stage(slot, revision, SlotStage::Committed, None);
            return;
        }
        // A version this node committed before (a rollback, or a committed version that
        // could not be loaded at start): no probation.
        let known = previous.as_ref().is_some_and(|p| p.version == version)
            || lock(&slot.state)
                .committed
                .as_ref()
                .is_some_and(|c| c.version == version);
        if known && self.disk.has_artifact(&version.artifact) {
            self.set_stage(slot, revision, SlotStage::Loading, None);
            match self.load(&version).await {
                Ok(loaded) => self.commit_now(slot, loaded, revision),
                Err(e) => self.fail(slot, revision, e),
            }
            return;
        }
        if !self.set_stage(slot, revision, SlotStage::Fetching, None) {
            return;
        }
        self.pause_if_asked(SlotStage::Fetching).await;
        let mut digests = vec![version.artifact.clone()];
        if let Some(t) = &version.self_test {
            digests.push(t.input.clone());
        }
        let mut backoff = Duration::from_secs(1);
        for digest in &digests {
            loop {
                let sources = lock(&self.sources).clone();
                match crate::fetch::fetch(&sources, &self.disk, digest).await {
                    Ok(()) => break,
                    Err(e) if e.permanent => {
                        self.fail(slot, revision, e.message);
                        return;
                    }
                    Err(e) => {
                        // Unreachable, stalled, or a server error: try again (the
                        // rollout's deadline decides when that is too long).
                        self.set_stage(
                            slot,
                            revision,
                            SlotStage::Fetching,
                            Some(format!(
                                "retrying in {} s: {}",
                                backoff.as_secs(),
                                e.message
                            )),
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                        if self.superseded(&name, revision) {
                            return;
                        }
                    }
                }
            }
        }
        if !self.set_stage(slot, revision, SlotStage::Verifying, None) {
            return;
        }
        self.pause_if_asked(SlotStage::Verifying).await;
        // `load` reads each artefact back and checks its digest, then loads and
        // self-tests; the stages are told apart for the report.
        if !self.set_stage(slot, revision, SlotStage::Loading, None) {
            return;
        }
        self.pause_if_asked(SlotStage::Loading).await;
        let loaded = match self.load(&version).await {
            Ok(l) => l,
            Err(e) => {
                self.fail(slot, revision, e);
                return;
            }
        };
        if !self.set_stage(slot, revision, SlotStage::Staged, None) {
            return;
        }
        self.pause_if_asked(SlotStage::Staged).await;
        // On probation (written first: a restart from here on counts as a failure), it
        // serves; the committed version stays loaded to go back to.
        if !self.set_stage(slot, revision, SlotStage::Probation, None) {
            return;
        }
        *write(&slot.serving) = Some(Arc::new(Serving { loaded, revision }));
        *lock(&slot.probation) = Some(ProbationRun {
            revision,
            policy: target.probation,
            started: Instant::now(),
            figures: Figures::default(),
        });
        tracing::info!(slot = %name, version = version.version, "on probation");
        self.judge(slot);
        self.pause_if_asked(SlotStage::Probation).await;
    }

    /// Empties the slot (its target is version 0): it serves nothing; the version it had
    /// stays on disk as the one to go back to.
    fn clear(&self, slot: &Slot, revision: u64) {
        *lock(&slot.probation) = None;
        *write(&slot.serving) = None;
        *write(&slot.committed) = None;
        let mut state = lock(&slot.state);
        if let Some(c) = state.committed.take() {
            state.previous = Some(c);
        }
        state.attempt = None;
        state.cleared = revision;
        if let Err(e) = self.disk.save_slot(&state) {
            tracing::error!(slot = %state.slot, error = %e, "cannot save the slot's state");
        }
        tracing::info!(slot = %state.slot, revision, "slot emptied");
        drop(state);
        self.changed.notify_one();
    }

    /// Makes `serving` (the attempt `revision`'s version) the committed one: written
    /// first; only once it is on disk does it count. False when the attempt is no longer
    /// `revision` or the state could not be written.
    fn commit(&self, slot: &Slot, serving: Arc<Serving>, revision: u64) -> bool {
        let mut state = lock(&slot.state);
        if state.attempt.as_ref().map(|a| a.revision) != Some(revision) {
            return false;
        }
        let mut next = state.clone();
        next.previous = next.committed.take();
        next.committed = Some(Installed {
            version: serving.loaded.version().clone(),
            revision,
        });
        if let Some(a) = next.attempt.as_mut() {
            a.stage = SlotStage::Committed;
            a.reason = None;
        }
        if let Err(e) = self.disk.save_slot(&next) {
            tracing::error!(slot = %state.slot, error = %e, "cannot save the slot's state: not committed");
            return false;
        }
        *state = next;
        tracing::info!(slot = %state.slot, version = serving.loaded.version().version, "committed");
        *write(&slot.serving) = Some(serving.clone());
        *write(&slot.committed) = Some(serving);
        drop(state);
        self.disk.collect_garbage(&self.all_digests());
        self.changed.notify_one();
        true
    }

    /// Makes `loaded` the committed version at once (a version committed here before).
    fn commit_now(&self, slot: &Slot, loaded: LoadedVersion, revision: u64) {
        let serving = Arc::new(Serving { loaded, revision });
        if !self.commit(slot, serving, revision) {
            self.fail(
                slot,
                revision,
                "the slot's state could not be written".into(),
            );
        }
    }

    /// The attempt `revision` failed: the slot serves its committed version.
    fn fail(&self, slot: &Slot, revision: u64, reason: String) {
        let name = lock(&slot.state).slot.clone();
        tracing::warn!(slot = %name, reason = %reason, "version failed; the slot keeps its committed version");
        self.metrics
            .rollbacks
            .get_or_create(&SlotLabels { slot: name })
            .inc();
        {
            let mut run = lock(&slot.probation);
            if run.as_ref().is_some_and(|r| r.revision == revision) {
                *run = None;
            }
        }
        let serving_it = read(&slot.serving)
            .as_ref()
            .is_some_and(|s| s.revision == revision);
        if serving_it {
            let committed = read(&slot.committed).clone();
            *write(&slot.serving) = committed;
        }
        self.set_stage(slot, revision, SlotStage::Failed, Some(reason));
    }

    /// Judges a slot's probation, committing or rolling back once it is decided (the run
    /// is taken under the lock that judged it: one verdict acts, once).
    fn judge(&self, slot: &Slot) {
        let (verdict, run) = {
            let mut guard = lock(&slot.probation);
            let Some(run) = guard.as_ref() else {
                return;
            };
            let elapsed = run.started.elapsed().as_millis() as u64;
            let verdict = judge(&run.policy, &run.figures.report(elapsed));
            if verdict == Verdict::Continue {
                return;
            }
            (verdict, guard.take())
        };
        let Some(run) = run else {
            return;
        };
        match verdict {
            Verdict::Continue => {}
            Verdict::Fail(why) => self.fail(slot, run.revision, why),
            Verdict::Commit => {
                let serving = read(&slot.serving)
                    .clone()
                    .filter(|s| s.revision == run.revision);
                let Some(serving) = serving else {
                    return;
                };
                if !self.commit(slot, serving, run.revision) {
                    self.fail(
                        slot,
                        run.revision,
                        "the slot's state could not be written".into(),
                    );
                }
            }
        }
    }

    /// Judges every slot on probation (a time-based commit needs no inference).
    pub fn tick(&self) {
        let slots: Vec<_> = lock(&self.slots).values().cloned().collect();
        for slot in slots {
            self.judge(&slot);
        }
    }

    /// Digests any slot may still need (call without holding a slot's state lock).
    fn all_digests(&self) -> std::collections::BTreeSet<String> {
        let slots: Vec<_> = lock(&self.slots).values().cloned().collect();
        let mut keep = std::collections::BTreeSet::new();
        for slot in slots {
            keep.extend(lock(&slot.state).digests());
        }
        keep
    }

    /// Runs one inference on `slot`'s serving version.
    pub async fn infer(&self, slot_name: &str, input: Owned) -> Result<Inference, InferFailure> {
        let slot = self.slot(slot_name).ok_or(InferFailure::UnknownSlot)?;
        let serving = read(&slot.serving)
            .clone()
            .ok_or(InferFailure::NothingServing)?;
        let waiting = Waiting::join(&slot.queued);
        if waiting.ahead >= MAX_QUEUED {
            drop(waiting);
            self.metrics
                .rejected
                .get_or_create(&SlotLabels {
                    slot: slot_name.to_owned(),
                })
                .inc();
            return Err(InferFailure::Busy);
        }
        // Dropped (the client went away) while waiting: the place is given back.
        let permit = slot.gate.clone().acquire_owned().await;
        drop(waiting);
        let permit = permit.map_err(|_| InferFailure::NothingServing)?;
        let started = Instant::now();
        let worker = serving.clone();
        let result = tokio::task::spawn_blocking(move || {
            // Held while the model runs, also if the request is dropped meanwhile.
            let _permit = permit;
            let input = match &input {
                Owned::Image(b) => Input::Image(b),
                Owned::Json(b) => Input::Json(b),
            };
            worker.loaded.infer(input)
        })
        .await
        .unwrap_or_else(|e| Err(InferError::Failed(format!("the inference stopped: {e}"))));
        let latency = started.elapsed();
        let version = serving.loaded.version().version;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(InferError::BadInput(_)) => "bad_input",
            Err(InferError::Failed(_)) => "error",
        };
        let labels = VersionLabels {
            slot: slot_name.to_owned(),
            version: version.to_string(),
        };
        self.metrics
            .inferences
            .get_or_create(&OutcomeLabels {
                slot: labels.slot.clone(),
                version: labels.version.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
        // A bad request says nothing about the model.
        if !matches!(result, Err(InferError::BadInput(_))) {
            self.metrics
                .seconds
                .get_or_create(&labels)
                .observe(latency.as_secs_f64());
            let on_probation = {
                let mut run = lock(&slot.probation);
                match run.as_mut() {
                    Some(r) if r.revision == serving.revision => {
                        r.figures.record(result.is_ok(), latency);
                        true
                    }
                    _ => false,
                }
            };
            if on_probation {
                self.judge(&slot);
            }
        }
        result.map_err(|e| match e {
            InferError::BadInput(m) => InferFailure::BadInput(m),
            InferError::Failed(message) => InferFailure::Failed { version, message },
        })
    }

    /// Every slot's state, as heartbeats report it.
    pub fn reports(&self) -> Vec<SlotReport> {
        let slots: Vec<_> = lock(&self.slots).values().cloned().collect();
        slots
            .iter()
            .map(|slot| {
                let state = lock(&slot.state).clone();
                let serving = read(&slot.serving)
                    .as_ref()
                    .map(|s| s.loaded.version().version);
                let probation = lock(&slot.probation)
                    .as_ref()
                    .map(|r| r.figures.report(r.started.elapsed().as_millis() as u64));
                let (revision, version, stage, reason) = match (&state.attempt, &state.committed) {
                    (Some(a), _) => (a.revision, a.version.version, a.stage, a.reason.clone()),
                    (None, Some(c)) => (c.revision, c.version.version, SlotStage::Committed, None),
                    // Emptied (version 0) as asked: done.
                    (None, None) => (state.cleared, 0, SlotStage::Committed, None),
                };
                SlotReport {
                    slot: state.slot.clone(),
                    revision,
                    version,
                    stage,
                    reason,
                    serving,
                    committed: state.committed.as_ref().map(|c| c.version.version),
                    probation,
                }
            })
            .collect()
    }

    /// Judges probations every `every` (for time-based commits), until dropped.
    pub fn spawn_ticker(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(r) => r.tick(),
                    None => return,
                }
            }
        })
    }
}

/// A place in a slot's queue, given back when dropped.
struct Waiting<'a> {
    queued: &'a AtomicUsize,
    /// Requests waiting before this one joined.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn join(queued: &'a AtomicUsize) -> Waiting<'a> {
        let ahead = queued.fetch_add(1, Ordering::AcqRel);
        Waiting { queued, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An inference request's body, owned.
pub enum Owned {
    Image(bytes::Bytes),
    Json(bytes::Bytes),
}

/// The runtime as the agent's source of slot reports.
pub struct Reports(pub Arc<Runtime>);

impl SlotReportSource for Reports {
    fn slots(&self) -> Vec<SlotReport> {
        self.0.reports()
    }
}
