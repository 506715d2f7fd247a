//! Edge AI models (EdgeAIoT): a model's versions, each naming its ONNX artefact, how an
//! image becomes the input tensor, how the output is read (labels, or boxes), and the
//! self-test a node runs before a version may serve. Versions are immutable once
//! registered.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::artifact::check_digest;
use crate::ident::check_id;
use crate::validate::{Validate, ValidationError};

/// Most elements an input tensor may have (a 3 x 2048 x 2048 image).
pub const MAX_INPUT_ELEMENTS: u64 = 3 * 2048 * 2048;
/// Most labels or classes a model may name.
pub const MAX_LABELS: usize = 10_000;
/// Most values a self-test may expect.
pub const MAX_EXPECTED: usize = 100_000;

/// A registered version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelVersion {
    /// The model's id (e.g. `road-distress`).
    pub model: String,
    /// 1, 2, 3, ...: a newer version has a greater number.
    pub version: u32,
    /// The SHA-256 of the ONNX file, kept as an artefact (`PUT /v1/artifacts/sha256/...`).
    pub artifact: String,
    #[serde(default)]
    pub format: ModelFormat,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// Run by a node after loading, before the version may serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_test: Option<SelfTest>,
    /// What changed, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// The file format of a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    #[default]
    Onnx,
}

/// How an image becomes the model's input tensor: resized to the tensor's height and
/// width as `resize` says, channels in `color` order, each value
/// `(pixel * scale - mean[c]) / std[c]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Four dimensions, batch first (e.g. `[1, 3, 48, 192]`).
    pub shape: Vec<u32>,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default)]
    pub color: ColorOrder,
    #[serde(default)]
    pub resize: Resize,
    /// What pads the area the image does not cover (after normalising).
    #[serde(default)]
    pub pad_value: f32,
    /// Pixel values (0..=255) are multiplied by this first (e.g. 1/255).
    #[serde(default = "one")]
    pub scale: f32,
    /// Per channel; one value for all, or one per channel.
    #[serde(default = "zeros")]
    pub mean: Vec<f32>,
    /// Per channel, non-zero; one value for all, or one per channel.
    #[serde(default = "ones")]
    pub std: Vec<f32>,
}

fn one() -> f32 {
    1.0
}
fn zeros() -> Vec<f32> {
    vec![0.0]
}
fn ones() -> Vec<f32> {
    vec![1.0]
}

/// Where the channels are in the tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    #[default]
    Nchw,
    Nhwc,
}

/// The order of an image's colour channels in the tensor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColorOrder {
    #[default]
    Rgb,
    Bgr,
}

/// How an image is fitted to the tensor's height and width.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// To exactly the height and width (the aspect ratio is not kept).
    #[default]
    Stretch,
    /// Scaled to fit, placed at the top-left, the rest padded (detectors, as ddddocr).
    Letterbox,
    /// Scaled to the height, the width capped and padded on the right (text lines).
    PadRight,
}

/// How the output tensor is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputSpec {
    /// One score per label, in order.
    Classifier {
        labels: Vec<String>,
        /// The scores are logits: apply softmax (false: they are probabilities).
        #[serde(default)]
        softmax: bool,
    },
    /// Boxes with a class and a score.
    Detector {
        classes: Vec<String>,
        /// Boxes scoring below this are dropped (0 to 1).
        score_threshold: f32,
        /// Boxes overlapping a better one more than this are dropped (0 to 1).
        #[serde(default = "default_iou")]
        iou_threshold: f32,
        #[serde(default)]
        decoding: BoxDecoding,
    },
}

fn default_iou() -> f32 {
    0.45
}

/// How a detector's raw output holds its boxes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BoxDecoding {
    /// YOLOX: per anchor `[cx, cy, w, h, objectness, class scores...]` on strides 8, 16
    /// and 32, offsets and log sizes relative to the grid.
    #[default]
    Yolox,
}

/// An input and the output the model must give for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelfTest {
    /// The SHA-256 of the input: an image (JPEG or PNG), kept as an artefact.
    pub input: String,
    /// The raw output tensor's values, in order.
    pub expected: Vec<f32>,
    /// Largest difference allowed for any value.
    pub tolerance: f32,
}

fn finite(field: &str, v: f32) -> Result<(), ValidationError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ValidationError::new(field, "must be a finite number"))
    }
}

fn unit(field: &str, v: f32) -> Result<(), ValidationError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(ValidationError::new(field, "must be from 0 to 1"))
    }
}

fn names(field: &str, list: &[String]) -> Result<(), ValidationError> {
    if list.is_empty() || list.len() > MAX_LABELS {
        return Err(ValidationError::new(
            field,
            format!("name 1 to {MAX_LABELS}"),
        ));
    }
    for (i, l) in list.iter().enumerate() {
        if l.is_empty() || l.len() > 128 || l.chars().any(char::is_control) {
            return Err(ValidationError::new(
                format!("{field}[{i}]"),
                "1 to 128 characters, no control characters",
            ));
        }
    }
    Ok(())
}

impl InputSpec {
    /// Colour channels the tensor holds (1 or 3).
    pub fn channels(&self) -> u32 {
        match self.layout {
            Layout::Nchw => self.shape.get(1).copied().unwrap_or(0),
            Layout::Nhwc => self.shape.get(3).copied().unwrap_or(0),
        }
    }
}

impl Validate for InputSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.shape.len() != 4 || self.shape.contains(&0) {
            return Err(ValidationError::new(
                "shape",
                "four dimensions, none 0, batch first (e.g. [1, 3, 48, 192])",
            ));
        }
        if self.shape[0] != 1 {
            return Err(ValidationError::new("shape[0]", "the batch is 1"));
        }
        let elements: u64 = self.shape.iter().map(|&d| u64::from(d)).product();
        if elements > MAX_INPUT_ELEMENTS {
            return Err(ValidationError::new(
                "shape",
                format!("at most {MAX_INPUT_ELEMENTS} elements"),
            ));
        }
        let channels = self.channels();
        if channels != 1 && channels != 3 {
            return Err(ValidationError::new(
                "shape",
                format!("{channels} channels: an image has 1 or 3 (is the layout right?)"),
            ));
        }
        finite("scale", self.scale)?;
        finite("pad_value", self.pad_value)?;
        for (field, values) in [("mean", &self.mean), ("std", &self.std)] {
            if values.len() != 1 && values.len() != channels as usize {
                return Err(ValidationError::new(
                    field,
                    format!("one value, or one per channel ({channels})"),
                ));
            }
            for (i, v) in values.iter().enumerate() {
                finite(&format!("{field}[{i}]"), *v)?;
            }
        }
        if self.std.contains(&0.0) {
            return Err(ValidationError::new("std", "must not be 0"));
        }
        Ok(())
    }
}

impl Validate for OutputSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            OutputSpec::Classifier { labels, .. } => names("labels", labels),
            OutputSpec::Detector {
                classes,
                score_threshold,
                iou_threshold,
                ..
            } => {
                names("classes", classes)?;
                unit("score_threshold", *score_threshold)?;
                unit("iou_threshold", *iou_threshold)
            }
        }
    }
}

impl Validate for SelfTest {
    fn validate(&self) -> Result<(), ValidationError> {
        check_digest("input", &self.input)?;
        if self.expected.is_empty() || self.expected.len() > MAX_EXPECTED {
            return Err(ValidationError::new(
                "expected",
                format!("1 to {MAX_EXPECTED} values"),
            ));
        }
        for (i, v) in self.expected.iter().enumerate() {
            finite(&format!("expected[{i}]"), *v)?;
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(ValidationError::new(
                "tolerance",
                "must be a number, 0 or more",
            ));
        }
        Ok(())
    }
}

impl Validate for ModelVersion {
    fn validate(&self) -> Result<(), ValidationError> {
        check_id("model", &self.model)?;
        if self.version == 0 {
            return Err(ValidationError::new("version", "versions start at 1"));
        }
        check_digest("artifact", &self.artifact)?;
        self.input.validate().map_err(|e| e.within("input"))?;
        self.output.validate().map_err(|e| e.within("output"))?;
        if let Some(t) = &self.self_test {
            t.validate().map_err(|e| e.within("self_test"))?;
        }
        if self
            .notes
            .as_ref()
            .is_some_and(|n| n.len() > 4096 || n.chars().any(|c| c.is_control() && c != '\n'))
        {
            return Err(ValidationError::new(
                "notes",
                "at most 4096 characters, no control characters but newlines",
            ));
        }
        Ok(())
    }
}

/// How long a new version serves on probation before a node commits it, and what it must
/// do meanwhile. It commits after `min_inferences` inferences or `min_seconds` seconds,
/// whichever comes first, if its errors and latency stayed within budget; it is rolled
/// back at once when they did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Probation {
    pub min_inferences: u32,
    pub min_seconds: u32,
    /// Share of inferences (percent) that may fail.
    pub max_error_percent: u8,
    /// The 95th-percentile latency allowed, in ms.
    pub max_p95_ms: u32,
}

impl Default for Probation {
    fn default() -> Self {
        Probation {
            min_inferences: 100,
            min_seconds: 60,
            max_error_percent: 5,
            max_p95_ms: 2_000,
        }
    }
}

impl Validate for Probation {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.max_error_percent > 100 {
            return Err(ValidationError::new(
                "max_error_percent",
                "a share from 0 to 100",
            ));
        }
        if self.min_seconds > 86_400 {
            return Err(ValidationError::new("min_seconds", "at most a day (86400)"));
        }
        if self.max_p95_ms == 0 {
            return Err(ValidationError::new("max_p95_ms", "more than 0"));
        }
        Ok(())
    }
}

/// What the control plane wants one node's slot to run. A slot is named after its model
/// (`POST /v1/infer/{slot}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotTarget {
    pub node: String,
    pub slot: String,
    pub version: u32,
    /// Grows each time this node's slot is given something to do (a rollback is a new
    /// revision too): a node acts on a revision once and reports on it.
    pub revision: u64,
    /// A version the node committed before goes straight back to serving (a rollback);
    /// a new one serves on probation first.
    #[serde(default)]
    pub probation: Probation,
}

/// What edge AI nodes need: each node's slot targets, the versions they name, and where
/// artefacts are fetched from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct AiotSnapshot {
    pub targets: Vec<SlotTarget>,
    /// Every version a target names.
    pub versions: Vec<ModelVersion>,
    /// Base URLs that serve `/v1/artifacts/sha256/{digest}` with the node's credential,
    /// in the order to try them, for every node (the node checks digest and size itself).
    #[serde(default)]
    pub artifact_sources: Vec<String>,
    /// Per node, the edges to fetch artefacts through first (its site's, healthy), sent
    /// with `Host: relay_host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relays: Vec<NodeRelays>,
    /// The Host of the edges' artefact relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_host: Option<String>,
    /// The tenants' patrol cameras whose frames nodes take (road inspection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<crate::inspect::PatrolDevice>,
    /// IDC monitoring: which node watches which site, the sensors, receivers, silences
    /// and acknowledgements.
    #[serde(default)]
    pub monitor: crate::monitor::MonitorConfig,
}

/// The edges one node fetches artefacts through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRelays {
    pub node: String,
    /// Base URLs (`http://ADDR:PORT`), best first.
    pub edges: Vec<String>,
    /// The node's own address, to connect from (the relay answers the platform's nodes
    /// by their addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub source: Option<std::net::IpAddr>,
}

/// Where a version is on a node's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotStage {
    Fetching,
    Verifying,
    Loading,
    SelfTest,
    Staged,
    /// Serving, not yet committed.
    Probation,
    Committed,
    /// A step or probation failed: the slot serves its previous committed version.
    Failed,
}

impl SlotStage {
    /// Still on its way (neither committed nor failed).
    pub fn in_progress(self) -> bool {
        !matches!(self, SlotStage::Committed | SlotStage::Failed)
    }
}

/// Figures of a version on probation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbationFigures {
    pub inferences: u64,
    pub errors: u64,
    /// 95th-percentile latency so far, in ms.
    pub p95_ms: u32,
    /// Time served so far, in ms.
    pub elapsed_ms: u64,
}

/// Where an edge AI node's agent gets its slots' state to send with each heartbeat.
pub trait SlotReportSource: Send + Sync + 'static {
    fn slots(&self) -> Vec<SlotReport>;
}

/// A node's slot as its heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotReport {
    pub slot: String,
    /// The revision last acted on, and its version.
    pub revision: u64,
    pub version: u32,
    /// Where that version is.
    pub stage: SlotStage,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The version serving inferences now (none: the slot serves nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<u32>,
    /// The committed version (kept on disk to go back to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probation: Option<ProbationFigures>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// The text-direction classifier of rapidocr as a version (see docs/aiot-research.md).
    fn text_direction() -> ModelVersion {
        serde_json::from_value(serde_json::json!({
            "model": "text-direction", "version": 1, "artifact": DIGEST,
            "input": {"shape": [1, 3, 48, 192], "color": "bgr", "resize": "pad_right",
                      "scale": 0.003921569, "mean": [0.5], "std": [0.5]},
            "output": {"kind": "classifier", "labels": ["0", "180"]},
        }))
        .expect("reads")
    }

    #[test]
    fn a_version_reads_with_defaults_and_checks() {
        let v = text_direction();
        assert_eq!(v.format, ModelFormat::Onnx);
        assert_eq!(v.input.layout, Layout::Nchw);
        assert_eq!(v.input.channels(), 3);
        assert!(v.validate().is_ok());
        let det: OutputSpec = serde_json::from_value(serde_json::json!(
            {"kind": "detector", "classes": ["crack", "pothole"], "score_threshold": 0.5}
        ))
        .expect("detector");
        assert!(det.validate().is_ok());
        assert!(
            matches!(det, OutputSpec::Detector { iou_threshold, .. } if (iou_threshold - 0.45).abs() < 1e-6)
        );
    }

    #[test]
    fn bad_versions_name_their_field() {
        let field = |f: &dyn Fn(&mut ModelVersion)| {
            let mut v = text_direction();
            f(&mut v);
            v.validate().expect_err("refused").field
        };
        assert_eq!(field(&|v| v.version = 0), "version");
        assert_eq!(field(&|v| v.artifact = "abc".into()), "artifact");
        assert_eq!(field(&|v| v.model = "Road Distress".into()), "model");
        assert_eq!(field(&|v| v.input.shape = vec![1, 3, 48]), "input.shape");
        assert_eq!(
            field(&|v| v.input.shape = vec![2, 3, 48, 192]),
            "input.shape[0]"
        );
        assert_eq!(
            field(&|v| v.input.shape = vec![1, 4, 48, 192]),
            "input.shape"
        );
        assert_eq!(field(&|v| v.input.std = vec![0.0]), "input.std");
        assert_eq!(field(&|v| v.input.mean = vec![0.1, 0.2]), "input.mean");
        assert_eq!(field(&|v| v.input.scale = f32::NAN), "input.scale");
        assert_eq!(
            field(&|v| v.output = OutputSpec::Classifier {
                labels: vec![],
                softmax: false
            }),
            "output.labels"
        );
        assert_eq!(
            field(&|v| {
                v.self_test = Some(SelfTest {
                    input: DIGEST.into(),
                    expected: vec![0.1, f32::INFINITY],
                    tolerance: 0.01,
                })
            }),
            "self_test.expected[1]"
        );
        assert_eq!(
            field(&|v| v.input.shape = vec![1, 3, 4096, 4096]),
            "input.shape",
            "too many elements"
        );
    }
}
