//! The tract backend (pure Rust, `tract-onnx` 0.23.9): parses an ONNX model, refuses one
//! that uses operators tract does not implement (naming them), fixes its input to the
//! version's shape, optimises it into a plan and runs that plan, one thread per call.
//! A panic inside tract while loading or running is caught and becomes an error.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use tract_onnx::prelude::{
    DatumExt, Framework, InferenceModelExt, IntoRunnable, TVec, TypedRunnableModel, tvec,
};

use crate::backend::{Backend, Runner, Tensor, elements};

/// The tract ONNX backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct TractBackend;

/// A model optimised by tract for one input shape.
struct TractRunner {
    plan: Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
    output_shape: Option<Vec<usize>>,
}

/// Runs `f`, turning a panic into an error that says what was being done.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            Err(format!("{what}: tract panicked: {message}"))
        }
    }
}

/// The operator type of an op tract could not map (`Unimplemented(Foo)` is `Foo`).
fn unimplemented_op(op_name: &str) -> Option<&str> {
    op_name
        .strip_prefix("Unimplemented(")
        .and_then(|rest| rest.strip_suffix(')'))
}

fn load(onnx: &[u8], input_shape: &[usize]) -> Result<TractRunner, String> {
    if input_shape.is_empty() || input_shape.contains(&0) || elements(input_shape).is_none() {
        return Err(format!(
            "input shape {input_shape:?} is not a tensor's shape"
        ));
    }
    let model = tract_onnx::onnx()
        .model_for_read(&mut &onnx[..])
        .map_err(|e| format!("not an ONNX model tract can read: {e:#}"))?;
    // tract reads operators it lacks as placeholders and only fails while optimising,
    // with a message about output counts or typing: name them here instead.
    let missing: BTreeSet<String> = model
        .nodes()
        .iter()
        .filter_map(|n| unimplemented_op(&n.op.name()).map(str::to_string))
        .collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.into_iter().collect();
        return Err(format!("unsupported ONNX operators: {}", list.join(", ")));
    }
    let inputs = model.inputs.len();
    if inputs != 1 {
        return Err(format!("the model has {inputs} inputs; one is supported"));
    }
    if model.outputs.is_empty() {
        return Err("the model has no outputs".to_string());
    }
    let typed = model
        .with_input_fact(0, f32::fact(input_shape).into())
        .and_then(|m| m.into_optimized())
        .map_err(|e| format!("optimising the model for input {input_shape:?}: {e:#}"))?;
    let output_shape = typed
        .output_fact(0)
        .ok()
        .and_then(|f| f.shape.as_concrete().map(<[usize]>::to_vec));
    let plan = typed
        .into_runnable()
        .map_err(|e| format!("planning the model: {e:#}"))?;
    Ok(TractRunner {
        plan,
        input_shape: input_shape.to_vec(),
        output_shape,
    })
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn load(&self, onnx: &[u8], input_shape: &[usize]) -> Result<Arc<dyn Runner>, String> {
        let runner = guarded("loading the model", || load(onnx, input_shape))?;
        Ok(Arc::new(runner))
    }
}

impl TractRunner {
    fn run_unguarded(&self, input: Tensor) -> Result<Tensor, String> {
        let input = tract_onnx::prelude::Tensor::from_shape(&input.shape, &input.data)
            .map_err(|e| format!("input tensor: {e:#}"))?;
        let outputs: TVec<_> = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| format!("running the model: {e:#}"))?;
        let first = outputs
            .first()
            .ok_or_else(|| "the model gave no output".to_string())?;
        let shape = first.shape().to_vec();
        let values = first
            .cast_to::<f32>()
            .map_err(|e| format!("the output is not numbers: {e:#}"))?;
        let data = values
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("reading the output: {e:#}"))?
            .iter()
            .copied()
            .collect();
        Tensor::new(shape, data).map_err(|e| format!("the output: {e}"))
    }
}

impl Runner for TractRunner {
    fn run(&self, input: Tensor) -> Result<Tensor, String> {
        if input.shape != self.input_shape {
            return Err(format!(
                "input shape {:?}; the model was loaded for {:?}",
                input.shape, self.input_shape
            ));
        }
        if input.elements() != Some(input.data.len()) {
            return Err(format!(
                "input shape {:?} and {} values disagree",
                input.shape,
                input.data.len()
            ));
        }
        guarded("running the model", || self.run_unguarded(input))
    }

    fn output_shape(&self) -> Option<Vec<usize>> {
        self.output_shape.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unimplemented_ops_are_named() {
        assert_eq!(
            unimplemented_op("Unimplemented(DynamicQuantizeLSTM)"),
            Some("DynamicQuantizeLSTM")
        );
        assert_eq!(unimplemented_op("Conv"), None);
    }

    #[test]
    fn garbage_is_not_a_model() {
        let err = TractBackend
            .load(b"definitely not protobuf \xff\xff\xff", &[1, 3, 8, 8])
            .err()
            .expect("refused");
        assert!(err.starts_with("not an ONNX model"), "{err}");
        let err = TractBackend
            .load(b"", &[0, 3])
            .err()
            .expect("bad shape refused");
        assert!(err.contains("not a tensor's shape"), "{err}");
    }

    /// Why the scan for placeholders: tract reads the model and only fails while
    /// optimising it, with a message that does not say the operator is missing.
    #[test]
    fn tract_itself_reads_an_unsupported_operator_and_fails_later() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/unsupported-op.onnx"
        );
        let bytes = std::fs::read(path).expect("fixture");
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .expect("tract reads it");
        let err = model
            .with_input_fact(0, f32::fact([3, 1, 4]).into())
            .and_then(|m| m.into_optimized())
            .expect_err("optimising fails");
        let err = format!("{err:#}");
        assert!(err.contains("Unimplemented(DynamicQuantizeLSTM)"), "{err}");
        let err = TractBackend
            .load(&bytes, &[3, 1, 4])
            .err()
            .expect("refused");
        assert_eq!(err, "unsupported ONNX operators: DynamicQuantizeLSTM");
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let err = guarded::<()>("testing", || panic!("boom")).expect_err("caught");
        assert_eq!(err, "testing: tract panicked: boom");
    }
}
