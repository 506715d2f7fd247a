//! The slot state machine with a stand-in engine (its "model" bytes say how it behaves):
//! probation commits after its inferences; a version that fails on probation goes back to
//! the committed one; a newer target takes over from one on probation; a rollback to a
//! version committed before needs no probation; version 0 empties a slot; a restart on
//! probation counts as a failure and the committed version serves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lingjing_aiot::backend::{Backend, Runner, Tensor};
use lingjing_aiot::disk::Disk;
use lingjing_aiot::metrics::Metrics;
use lingjing_aiot::runtime::{InferFailure, Owned, Runtime, RuntimeConfig};
use lingjing_model::aiot::{
    AiotSnapshot, ColorOrder, InputSpec, Layout, ModelVersion, OutputSpec, Probation, Resize,
    SlotReport, SlotStage, SlotTarget,
};
use sha2::{Digest, Sha256};

/// Model bytes: `ok N` answers [N, 0]; `broken` fails every run.
struct Stand;

struct StandRunner(Option<f32>);

impl Backend for Stand {
    fn name(&self) -> &'static str {
        "stand-in"
    }
    fn load(&self, onnx: &[u8], _shape: &[usize]) -> Result<Arc<dyn Runner>, String> {
        let text = String::from_utf8_lossy(onnx);
        match text.strip_prefix("ok ") {
            Some(n) => Ok(Arc::new(StandRunner(Some(
                n.trim().parse().map_err(|_| "bad stand-in")?,
            )))),
            None if text == "broken" => Ok(Arc::new(StandRunner(None))),
            None => Err("not a stand-in model".into()),
        }
    }
}

impl Runner for StandRunner {
    fn run(&self, _input: Tensor) -> Result<Tensor, String> {
        match self.0 {
            Some(n) => Tensor::new(vec![1, 2], vec![n, 0.0]),
            None => Err("the stand-in model is broken".into()),
        }
    }
}

const NODE: &str = "ai-1";
const SLOT: &str = "m";

/// Keeps `bytes` on the node as an artefact; its digest.
fn keep(disk: &Disk, bytes: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(bytes));
    let part = disk.partial_path(&digest);
    std::fs::write(&part, bytes).expect("write");
    disk.commit_artifact(&digest, &part).expect("commit");
    digest
}

fn version(disk: &Disk, n: u32, model: &str) -> ModelVersion {
    ModelVersion {
        model: SLOT.into(),
        version: n,
        artifact: keep(disk, model.as_bytes()),
        format: Default::default(),
        input: InputSpec {
            shape: vec![1, 3, 2, 2],
            layout: Layout::Nchw,
            color: ColorOrder::Rgb,
            resize: Resize::Stretch,
            pad_value: 0.0,
            scale: 1.0,
            mean: vec![0.0],
            std: vec![1.0],
        },
        output: OutputSpec::Classifier {
            labels: vec!["yes".into(), "no".into()],
            softmax: false,
        },
        self_test: None,
        notes: None,
    }
}

fn probation(min_inferences: u32, max_error_percent: u8) -> Probation {
    Probation {
        min_inferences,
        min_seconds: 3600,
        max_error_percent,
        max_p95_ms: 60_000,
    }
}

fn snapshot(v: &ModelVersion, revision: u64, p: Probation) -> AiotSnapshot {
    AiotSnapshot {
        targets: vec![SlotTarget {
            node: NODE.into(),
            slot: SLOT.into(),
            version: v.version,
            revision,
            probation: p,
        }],
        versions: vec![v.clone()],
        ..Default::default()
    }
}

async fn open(dir: &std::path::Path) -> (Arc<Runtime>, Disk) {
    let disk = Disk::open(dir).expect("disk");
    let runtime = Runtime::open(
        RuntimeConfig {
            node: NODE.into(),
            workers_per_slot: 1,
            pause_at: None,
            control: None,
        },
        disk.clone(),
        Arc::new(Stand),
        Arc::new(Metrics::default()),
        "",
        None,
    )
    .await;
    (runtime, disk)
}

fn report(runtime: &Runtime) -> Option<SlotReport> {
    runtime.reports().into_iter().find(|r| r.slot == SLOT)
}

/// Waits until the slot reports `stage` for `version`.
async fn until(runtime: &Runtime, version: u32, stage: SlotStage) -> SlotReport {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = report(runtime)
            && r.version == version
            && r.stage == stage
        {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "not v{version} {stage:?}: {:?}",
            report(runtime)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn infer(runtime: &Runtime) -> Result<u32, InferFailure> {
    let tensor = serde_json::json!({"shape": [1, 3, 2, 2], "data": vec![0.0_f32; 12]}).to_string();
    runtime
        .infer(SLOT, Owned::Json(tensor.into()))
        .await
        .map(|i| i.version)
}

/// A runtime whose slot committed v1 (after one inference).
async fn with_v1(dir: &std::path::Path) -> (Arc<Runtime>, Disk, ModelVersion) {
    let (runtime, disk) = open(dir).await;
    let v1 = version(&disk, 1, "ok 1");
    runtime.apply(&snapshot(&v1, 10, probation(1, 0)));
    until(&runtime, 1, SlotStage::Probation).await;
    assert_eq!(infer(&runtime).await.ok(), Some(1));
    until(&runtime, 1, SlotStage::Committed).await;
    (runtime, disk, v1)
}

#[tokio::test]
async fn a_new_version_serves_on_probation_and_commits_after_its_inferences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, disk) = open(dir.path()).await;
    assert!(matches!(
        infer(&runtime).await,
        Err(InferFailure::UnknownSlot)
    ));
    let v1 = version(&disk, 1, "ok 1");
    runtime.apply(&snapshot(&v1, 10, probation(3, 0)));
    let r = until(&runtime, 1, SlotStage::Probation).await;
    assert_eq!((r.serving, r.committed, r.revision), (Some(1), None, 10));
    for _ in 0..2 {
        assert_eq!(infer(&runtime).await.ok(), Some(1));
    }
    let r = report(&runtime).expect("report");
    assert_eq!(r.stage, SlotStage::Probation);
    assert_eq!(r.probation.map(|p| p.inferences), Some(2));
    assert_eq!(infer(&runtime).await.ok(), Some(1));
    let r = until(&runtime, 1, SlotStage::Committed).await;
    assert_eq!((r.serving, r.committed), (Some(1), Some(1)));
    // The same revision again changes nothing.
    runtime.apply(&snapshot(&v1, 10, probation(3, 0)));
    assert_eq!(
        report(&runtime).map(|r| r.stage),
        Some(SlotStage::Committed)
    );
}

#[tokio::test]
async fn a_version_failing_on_probation_goes_back_to_the_committed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, disk, _) = with_v1(dir.path()).await;
    let v2 = version(&disk, 2, "broken");
    runtime.apply(&snapshot(&v2, 11, probation(100, 0)));
    until(&runtime, 2, SlotStage::Probation).await;
    assert!(matches!(
        infer(&runtime).await,
        Err(InferFailure::Failed { version: 2, .. })
    ));
    let r = until(&runtime, 2, SlotStage::Failed).await;
    assert!(
        r.reason
            .as_deref()
            .unwrap_or("")
            .contains("failed on probation"),
        "{r:?}"
    );
    assert_eq!((r.serving, r.committed), (Some(1), Some(1)));
    assert_eq!(infer(&runtime).await.ok(), Some(1));
    // A model that does not load fails before it serves.
    let v3 = version(&disk, 3, "garbage");
    runtime.apply(&snapshot(&v3, 12, probation(1, 0)));
    let r = until(&runtime, 3, SlotStage::Failed).await;
    assert!(
        r.reason.as_deref().unwrap_or("").contains("not a stand-in"),
        "{r:?}"
    );
    assert_eq!(infer(&runtime).await.ok(), Some(1));
}

#[tokio::test]
async fn a_newer_target_takes_over_from_one_on_probation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, disk, _) = with_v1(dir.path()).await;
    let v2 = version(&disk, 2, "ok 2");
    runtime.apply(&snapshot(&v2, 11, probation(100, 0)));
    until(&runtime, 2, SlotStage::Probation).await;
    assert_eq!(infer(&runtime).await.ok(), Some(2));
    let v3 = version(&disk, 3, "ok 3");
    runtime.apply(&snapshot(&v3, 12, probation(1, 0)));
    until(&runtime, 3, SlotStage::Probation).await;
    assert_eq!(infer(&runtime).await.ok(), Some(3));
    let r = until(&runtime, 3, SlotStage::Committed).await;
    assert_eq!((r.serving, r.committed, r.revision), (Some(3), Some(3), 12));
}

#[tokio::test]
async fn a_rollback_to_the_version_committed_before_needs_no_probation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, disk, v1) = with_v1(dir.path()).await;
    let v2 = version(&disk, 2, "ok 2");
    runtime.apply(&snapshot(&v2, 11, probation(1, 0)));
    until(&runtime, 2, SlotStage::Probation).await;
    assert_eq!(infer(&runtime).await.ok(), Some(2));
    until(&runtime, 2, SlotStage::Committed).await;
    // Back to v1 as a new revision (never a rewrite of history).
    runtime.apply(&snapshot(&v1, 13, probation(1000, 0)));
    let r = until(&runtime, 1, SlotStage::Committed).await;
    assert_eq!((r.serving, r.committed, r.revision), (Some(1), Some(1), 13));
    assert_eq!(infer(&runtime).await.ok(), Some(1));
}

#[tokio::test]
async fn version_zero_empties_the_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, _disk, _) = with_v1(dir.path()).await;
    runtime.apply(&AiotSnapshot {
        targets: vec![SlotTarget {
            node: NODE.into(),
            slot: SLOT.into(),
            version: 0,
            revision: 14,
            probation: Probation::default(),
        }],
        versions: Vec::new(),
        ..Default::default()
    });
    let r = until(&runtime, 0, SlotStage::Committed).await;
    assert_eq!((r.serving, r.committed, r.revision), (None, None, 14));
    assert!(matches!(
        infer(&runtime).await,
        Err(InferFailure::NothingServing)
    ));
}

#[tokio::test]
async fn a_restart_on_probation_counts_as_failed_and_the_committed_version_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (runtime, disk, _) = with_v1(dir.path()).await;
        let v2 = version(&disk, 2, "ok 2");
        runtime.apply(&snapshot(&v2, 11, probation(1000, 0)));
        until(&runtime, 2, SlotStage::Probation).await;
        assert_eq!(infer(&runtime).await.ok(), Some(2));
    }
    // What a kill -9 leaves: the state files as they were.
    let (runtime, _) = open(dir.path()).await;
    let r = report(&runtime).expect("report");
    assert_eq!((r.version, r.stage), (2, SlotStage::Failed), "{r:?}");
    assert!(
        r.reason.as_deref().unwrap_or("").contains("restarted"),
        "{r:?}"
    );
    assert_eq!((r.serving, r.committed), (Some(1), Some(1)));
    assert_eq!(infer(&runtime).await.ok(), Some(1));
}
