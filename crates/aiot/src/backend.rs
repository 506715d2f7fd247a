//! The inference backend seam: a [`Backend`] turns an ONNX model into a [`Runner`] for one
//! fixed input shape, and a runner turns an input [`Tensor`] into the model's first output.
//! tract ([`crate::tract_backend::TractBackend`]) is the default; another engine (e.g.
//! onnxruntime) plugs in behind the same two traits. Everything here speaks `f32` tensors
//! and `String` errors, so no engine's types leak into the rest of the crate.

use std::sync::Arc;

/// A dense `f32` tensor, row-major: `data.len()` is the product of `shape`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor, once `data` holds exactly as many values as `shape` says.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor, String> {
        let Some(elements) = elements(&shape) else {
            return Err(format!("shape {shape:?} has too many elements"));
        };
        if elements != data.len() {
            return Err(format!(
                "shape {shape:?} needs {elements} values, the data holds {}",
                data.len()
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// The number of elements `shape` says the tensor has (none: it overflows).
    pub fn elements(&self) -> Option<usize> {
        elements(&self.shape)
    }
}

/// The product of the dimensions, or none when it overflows.
pub(crate) fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// An inference engine. Loading and running are CPU-bound and may take a while (seconds
/// for a large model's optimisation): call them off the async runtime
/// (`tokio::task::spawn_blocking`).
pub trait Backend: Send + Sync + 'static {
    /// A short name for logs and metrics (e.g. `tract`).
    fn name(&self) -> &'static str;

    /// Parses and optimises an ONNX model for a fixed input shape. Unsupported operators
    /// are an error naming them: `unsupported ONNX operators: DynamicQuantizeLSTM`.
    fn load(&self, onnx: &[u8], input_shape: &[usize]) -> Result<Arc<dyn Runner>, String>;
}

/// A model loaded for one input shape, shareable across threads.
pub trait Runner: Send + Sync + 'static {
    /// Runs one input; returns the first output.
    fn run(&self, input: Tensor) -> Result<Tensor, String>;

    /// The shape of the first output, when the backend knows it without running the
    /// model (used to check a version's output spec at load).
    fn output_shape(&self) -> Option<Vec<usize>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tensor_holds_as_many_values_as_its_shape_says() {
        assert!(Tensor::new(vec![1, 2, 3], vec![0.0; 6]).is_ok());
        assert!(Tensor::new(vec![], vec![1.0]).is_ok(), "a scalar");
        let short = Tensor::new(vec![1, 2, 3], vec![0.0; 5]).expect_err("short");
        assert_eq!(short, "shape [1, 2, 3] needs 6 values, the data holds 5");
        let huge = Tensor::new(vec![usize::MAX, 2], vec![]).expect_err("overflow");
        assert!(huge.contains("too many elements"), "{huge}");
    }
}
