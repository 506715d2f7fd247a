//! One model version loaded and ready: its ONNX model optimised by a [`Backend`] for the
//! version's input shape, checked against its output spec, able to run its self-test and
//! to answer inferences (an image or a JSON tensor in, labels or boxes out). Inputs that
//! are the client's fault ([`InferError::BadInput`]) are told apart from the model's own
//! failures ([`InferError::Failed`]), which count against a version on probation.
//!
//! Loading and inference are CPU-bound: call them off the async runtime.

use std::fmt;
use std::sync::Arc;

use lingjing_model::Validate;
use lingjing_model::aiot::{ModelVersion, OutputSpec};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Runner, Tensor, elements};
use crate::decode::{Decoded, decode, yolox_anchors};
use crate::preprocess::{Fit, Geometry, image_to_tensor, tensor_from_json};

/// A model version loaded by a backend, ready to infer. Cheap to share (`Arc` it).
pub struct LoadedVersion {
    version: ModelVersion,
    runner: Arc<dyn Runner>,
    backend: &'static str,
}

impl fmt::Debug for LoadedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedVersion")
            .field("model", &self.version.model)
            .field("version", &self.version.version)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// What a client sends to infer.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A JPEG or PNG image.
    Image(&'a [u8]),
    /// A tensor: `{"shape": [...], "data": [...]}`, the shape the model's input shape.
    Json(&'a [u8]),
}

/// An inference's answer: `{"model": .., "version": .., "kind": "classifier", "labels": [..]}`
/// or `{.., "kind": "detector", "boxes": [..]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inference {
    pub model: String,
    pub version: u32,
    #[serde(flatten)]
    pub result: Decoded,
    /// The image's width and height (upright, as the model saw it); none for a tensor.
    #[serde(skip)]
    pub frame_size: Option<(u32, u32)>,
}

/// Why an inference gave no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InferError {
    /// The client's input is unusable (422); not counted against the version.
    #[error("{0}")]
    BadInput(String),
    /// The model failed (an error running it, an output that does not fit its spec);
    /// counted against the version.
    #[error("{0}")]
    Failed(String),
}

/// Checks a model's output shape, as the backend knows it at load, against the spec.
fn check_output_shape(
    shape: &[usize],
    spec: &OutputSpec,
    geometry: Geometry,
) -> Result<(), String> {
    match spec {
        OutputSpec::Classifier { labels, .. } => {
            let scores = elements(shape).unwrap_or(usize::MAX);
            if scores != labels.len() {
                return Err(format!(
                    "the model's output has shape {shape:?} ({scores} scores); the version names {} labels",
                    labels.len()
                ));
            }
        }
        OutputSpec::Detector { classes, .. } => {
            let anchors = yolox_anchors(geometry.width, geometry.height);
            let per_anchor = 5 + classes.len();
            let fits = match shape {
                [1, n, k] | [n, k] => *n == anchors && *k == per_anchor,
                _ => false,
            };
            if !fits {
                return Err(format!(
                    "the model's output has shape {shape:?}; a YOLOX head for a {} x {} input and {} classes gives [1, {anchors}, {per_anchor}]",
                    geometry.width,
                    geometry.height,
                    classes.len()
                ));
            }
        }
    }
    Ok(())
}

impl LoadedVersion {
    /// Loads `onnx` (the version's artefact, already verified) with `backend` for the
    /// version's input shape, and checks the model's output against the version's output
    /// spec where the backend knows the output shape.
    pub fn load(
        backend: &dyn Backend,
        version: ModelVersion,
        onnx: &[u8],
    ) -> Result<LoadedVersion, String> {
        version
            .validate()
            .map_err(|e| format!("the version is not valid: {e}"))?;
        let geometry = Geometry::of(&version.input)?;
        let shape = geometry.shape(version.input.layout);
        let runner = backend.load(onnx, &shape)?;
        if let Some(output) = runner.output_shape() {
            check_output_shape(&output, &version.output, geometry)?;
        }
        Ok(LoadedVersion {
            version,
            runner,
            backend: backend.name(),
        })
    }

    pub fn version(&self) -> &ModelVersion {
        &self.version
    }

    /// The backend that loaded it (e.g. `tract`).
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Runs the model on a client's input and reads its output.
    pub fn infer(&self, input: Input<'_>) -> Result<Inference, InferError> {
        let (tensor, fit) = match input {
            Input::Image(bytes) => {
                let (tensor, fit) =
                    image_to_tensor(bytes, &self.version.input).map_err(InferError::BadInput)?;
                (tensor, Some(fit))
            }
            Input::Json(body) => (
                tensor_from_json(body, &self.version.input).map_err(InferError::BadInput)?,
                None,
            ),
        };
        let output = self.run(tensor).map_err(InferError::Failed)?;
        let result = self
            .decode(&output, fit.as_ref())
            .map_err(InferError::Failed)?;
        Ok(Inference {
            model: self.version.model.clone(),
            version: self.version.version,
            result,
            frame_size: fit.map(|f| (f.width, f.height)),
        })
    }

    fn run(&self, tensor: Tensor) -> Result<Tensor, String> {
        self.runner.run(tensor)
    }

    fn decode(&self, output: &Tensor, fit: Option<&Fit>) -> Result<Decoded, String> {
        decode(output, &self.version.output, &self.version.input, fit)
    }

    /// Runs the version's self-test on `input` (the image its `self_test.input` names,
    /// already fetched and verified): every raw output value must be within `tolerance`
    /// of the expected one, and the output must decode as the version says. Ok when the
    /// version has no self-test.
    pub fn self_test(&self, input: &[u8]) -> Result<(), String> {
        let Some(test) = &self.version.self_test else {
            return Ok(());
        };
        let (tensor, fit) = image_to_tensor(input, &self.version.input)
            .map_err(|e| format!("self-test: the input image: {e}"))?;
        let output = self
            .run(tensor)
            .map_err(|e| format!("self-test: running the model: {e}"))?;
        if output.data.len() != test.expected.len() {
            return Err(format!(
                "self-test: the output has {} values (shape {:?}), expected {}",
                output.data.len(),
                output.shape,
                test.expected.len()
            ));
        }
        let off: Vec<usize> = output
            .data
            .iter()
            .zip(&test.expected)
            .enumerate()
            .filter(|(_, (got, want))| {
                let difference = (*got - *want).abs();
                difference.is_nan() || difference > test.tolerance
            })
            .map(|(i, _)| i)
            .collect();
        if let Some(&i) = off.first() {
            let more = match off.len() {
                1 => String::new(),
                n => format!("; {} more values differ", n - 1),
            };
            return Err(format!(
                "self-test: output[{i}] is {}, expected {} (tolerance {}){more}",
                output.data[i], test.expected[i], test.tolerance
            ));
        }
        self.decode(&output, Some(&fit))
            .map_err(|e| format!("self-test: reading the output: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lingjing_model::aiot::{ColorOrder, InputSpec, Layout, Resize, SelfTest};

    /// A backend whose model returns a fixed output, to test everything but tract.
    struct Fixed {
        output: Tensor,
        known_shape: bool,
    }

    struct FixedRunner(Tensor, bool);

    impl Runner for FixedRunner {
        fn run(&self, _input: Tensor) -> Result<Tensor, String> {
            Ok(self.0.clone())
        }
        fn output_shape(&self) -> Option<Vec<usize>> {
            self.1.then(|| self.0.shape.clone())
        }
    }

    impl Backend for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn load(&self, _onnx: &[u8], _shape: &[usize]) -> Result<Arc<dyn Runner>, String> {
            Ok(Arc::new(FixedRunner(self.output.clone(), self.known_shape)))
        }
    }

    fn version(labels: &[&str]) -> ModelVersion {
        ModelVersion {
            model: "m".into(),
            version: 3,
            artifact: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
            format: Default::default(),
            input: InputSpec {
                shape: vec![1, 3, 4, 4],
                layout: Layout::Nchw,
                color: ColorOrder::Rgb,
                resize: Resize::Stretch,
                pad_value: 0.0,
                scale: 1.0,
                mean: vec![0.0],
                std: vec![1.0],
            },
            output: OutputSpec::Classifier {
                labels: labels.iter().map(|l| l.to_string()).collect(),
                softmax: false,
            },
            self_test: None,
            notes: None,
        }
    }

    fn fixed(data: Vec<f32>, known_shape: bool) -> Fixed {
        Fixed {
            output: Tensor::new(vec![1, data.len()], data).expect("tensor"),
            known_shape,
        }
    }

    #[test]
    fn a_known_output_shape_is_checked_at_load() {
        let err = LoadedVersion::load(&fixed(vec![0.5; 3], true), version(&["a", "b"]), b"")
            .expect_err("3 scores, 2 labels");
        assert!(err.contains("2 labels"), "{err}");
        let loaded = LoadedVersion::load(&fixed(vec![0.5; 3], false), version(&["a", "b"]), b"")
            .expect("unknown shape: checked when inferring");
        let json = br#"{"shape":[1,3,4,4],"data":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}"#;
        assert!(matches!(
            loaded.infer(Input::Json(json)),
            Err(InferError::Failed(_))
        ));
        let mut bad = version(&["a"]);
        bad.version = 0;
        let err = LoadedVersion::load(&fixed(vec![1.0], true), bad, b"").expect_err("invalid");
        assert!(
            err.starts_with("the version is not valid: version"),
            "{err}"
        );
    }

    #[test]
    fn inferences_name_model_and_version() {
        let loaded = LoadedVersion::load(&fixed(vec![0.2, 0.8], true), version(&["a", "b"]), b"")
            .expect("loads");
        assert_eq!(loaded.backend(), "fixed");
        let body = serde_json::json!({"shape": [1, 3, 4, 4], "data": vec![0.0; 48]}).to_string();
        let answer = loaded.infer(Input::Json(body.as_bytes())).expect("answers");
        let json = serde_json::to_value(&answer).expect("json");
        assert_eq!(json["model"], "m");
        assert_eq!(json["version"], 3);
        assert_eq!(json["kind"], "classifier");
        assert_eq!(json["labels"][0]["label"], "b");
        assert!(matches!(
            loaded.infer(Input::Image(b"nope")),
            Err(InferError::BadInput(e)) if e == "not a JPEG or PNG image"
        ));
        assert!(format!("{loaded:?}").contains("\"m\""));
    }

    #[test]
    fn self_tests_compare_values() {
        let mut v = version(&["a", "b"]);
        v.self_test = Some(SelfTest {
            input: v.artifact.clone(),
            expected: vec![0.2, 0.8],
            tolerance: 0.01,
        });
        let mut png = Vec::new();
        image::DynamicImage::new_rgb8(4, 4)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        let ok =
            LoadedVersion::load(&fixed(vec![0.2, 0.805], true), v.clone(), b"").expect("loads");
        ok.self_test(&png).expect("within tolerance");
        let off =
            LoadedVersion::load(&fixed(vec![0.25, 0.9], true), v.clone(), b"").expect("loads");
        assert_eq!(
            off.self_test(&png).expect_err("differs"),
            "self-test: output[0] is 0.25, expected 0.2 (tolerance 0.01); 1 more values differ"
        );
        let nan =
            LoadedVersion::load(&fixed(vec![0.2, f32::NAN], true), v.clone(), b"").expect("loads");
        assert!(
            nan.self_test(&png)
                .expect_err("NaN")
                .contains("output[1] is NaN")
        );
        let err = ok.self_test(b"garbage").expect_err("bad image");
        assert_eq!(err, "self-test: the input image: not a JPEG or PNG image");
        v.self_test = None;
        let none = LoadedVersion::load(&fixed(vec![0.0, 0.0], true), v, b"").expect("loads");
        none.self_test(b"anything").expect("no self-test");
    }
}
