//! CPU reference of every loss, in f64, written in the shape of the shaders: the same
//! per-element function, the same driver loop, so a disagreement points at one line.
//!
//! Inputs are the same f32 values the GPU reads, widened to f64; the result is the
//! exact-as-f64 answer the GPU's f32 arithmetic is compared with.

pub mod binary;
pub mod distribution;
mod pointwise;
pub mod regression;
mod softmax;

pub use pointwise::PointwiseFn;

use crate::error::Result;
use crate::losses::{Family, Inputs, Loss, Reduction};

/// Loss, derivative and domain check of one element; the twin of the WGSL `LossGrad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossGrad {
    /// The element's loss.
    pub value: f64,
    /// Its derivative with respect to the input.
    pub grad: f64,
    /// The input is outside the loss's domain.
    pub invalid: bool,
}

impl LossGrad {
    pub(crate) fn valid(value: f64, grad: f64) -> Self {
        LossGrad { value, grad, invalid: false }
    }
}

/// What one element's function sees besides `x` and `y`: the loss's parameters and the
/// broadcast operands at that element.
#[derive(Clone, Copy, Debug)]
pub struct Element {
    /// Loss parameters (`delta`, `beta`, ...), as the shader's `params.p0`, `p1`.
    pub params: [f64; 2],
    /// `pos_weight` at this element (1 when absent).
    pub pos_weight: f64,
}

/// The reference result: the f64 twin of [`crate::Output`].
#[derive(Clone, Debug, PartialEq)]
pub struct CpuOutput {
    /// Reduced loss (for `none`, the sum of the per-element losses).
    pub value: f64,
    /// d(loss)/d(input).
    pub grad: Vec<f64>,
    /// Per-element losses, for reduction `none`.
    pub per_element: Option<Vec<f64>>,
    /// Elements whose input or target is not finite (row-wise: logits).
    pub nonfinite: u64,
    /// Row-wise losses: each row's log-sum-exp, when asked for.
    pub lse: Option<Vec<f64>>,
    /// Row-wise losses with labels: rows whose argmax is the label, when asked for.
    pub correct: Option<u64>,
}

/// Computes `loss` on the CPU. Same validation and errors as the GPU path.
pub fn compute(loss: &Loss, reduction: Reduction, inputs: &Inputs) -> Result<CpuOutput> {
    let spec = crate::losses::check_inputs(loss, reduction, inputs)?;
    match spec.family {
        Family::Pointwise(_) => pointwise::run(&spec, reduction, inputs),
        Family::Softmax(variant) => softmax::run(&spec, variant, reduction, inputs),
    }
}
