//! The CPU side of every loss, written in the shape of the shaders: the same
//! per-element function, the same driver loop, so a disagreement points at one line.
//!
//! Each loss's function is generic over the float type and instantiated twice:
//! - f64, the **reference** ([`compute`]): inputs are the same f32 values the GPU reads,
//!   widened to f64; the exact-as-f64 answer the GPU's f32 arithmetic is compared with;
//! - f32, the **fast CPU path** ([`compute_fast`]): f32 arithmetic and gradients, loss
//!   sums accumulated in f64 per block, all cores. This is what benchmarks time.

pub mod binary;
pub mod distribution;
mod pointwise;
pub mod regression;
mod softmax;

pub use num_traits::Float;
pub(crate) use pointwise::{kernels, PointwiseKernels};

use crate::error::Result;
use crate::losses::{Family, Inputs, Loss, Reduction};

/// Loss, derivative and domain check of one element; the twin of the WGSL `LossGrad`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossGrad<F = f64> {
    /// The element's loss.
    pub value: F,
    /// Its derivative with respect to the input.
    pub grad: F,
    /// The input is outside the loss's domain.
    pub invalid: bool,
}

impl<F: Float> LossGrad<F> {
    pub(crate) fn valid(value: F, grad: F) -> Self {
        LossGrad { value, grad, invalid: false }
    }
}

/// What one element's function sees besides `x` and `y`: the loss's parameters and the
/// broadcast operands at that element.
#[derive(Clone, Copy, Debug)]
pub struct Element<F = f64> {
    /// Loss parameters (`delta`, `beta`, ...), as the shader's `params.p0`, `p1`.
    pub params: [F; 2],
    /// `pos_weight` at this element (1 when absent).
    pub pos_weight: F,
}

/// One elementwise loss: the twin of a shader's `pointwise`, for any float type.
pub trait PointwiseLoss {
    /// Loss and d(loss)/dx of one element.
    fn eval<F: Float>(x: F, y: F, element: &Element<F>) -> LossGrad<F>;
}

/// The f64 instantiation of one loss's element function.
pub type PointwiseFn = fn(f64, f64, &Element<f64>) -> LossGrad<f64>;

/// WGSL's `sign`: 0 at 0.
pub(crate) fn sign<F: Float>(v: F) -> F {
    if v > F::zero() {
        F::one()
    } else if v < F::zero() {
        -F::one()
    } else {
        F::zero()
    }
}

/// A CPU result. `CpuOutput` (f64) is the reference, the twin of [`crate::Output`].
#[derive(Clone, Debug, PartialEq)]
pub struct CpuOutput<F = f64> {
    /// Reduced loss (for `none`, the sum of the per-element losses), summed in f64.
    pub value: f64,
    /// d(loss)/d(input).
    pub grad: Vec<F>,
    /// Per-element losses, for reduction `none`.
    pub per_element: Option<Vec<F>>,
    /// Elements whose input or target is not finite (row-wise: logits).
    pub nonfinite: u64,
    /// Row-wise losses: each row's log-sum-exp, when asked for.
    pub lse: Option<Vec<F>>,
    /// Row-wise losses with labels: rows whose argmax is the label, when asked for.
    pub correct: Option<u64>,
}

/// Elements per block of parallel CPU work. Blocks are fixed by the input, not by the
/// number of threads, and their partial sums are added in block order, so the result is
/// the same on any machine.
pub(crate) const BLOCK_ELEMENTS: usize = 1 << 16;

/// Runs `work` on every job, on all cores, and returns the results in job order.
pub(crate) fn parallel<J: Send, T: Send>(jobs: Vec<J>, work: impl Fn(J) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
    if threads <= 1 {
        return jobs.into_iter().map(work).collect();
    }
    let count = jobs.len();
    let queue = std::sync::Mutex::new(jobs.into_iter().enumerate());
    let done = std::sync::Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some((index, job)) = queue.lock().unwrap().next() else { break };
                let result = work(job);
                done.lock().unwrap().push((index, result));
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

/// Computes `loss` on the CPU in f64: the reference. Same validation and errors as
/// the GPU path.
pub fn compute(loss: &Loss, reduction: Reduction, inputs: &Inputs) -> Result<CpuOutput> {
    let spec = crate::losses::check_inputs(loss, reduction, inputs)?;
    match spec.family {
        Family::Pointwise(k) => (k.reference)(&spec, reduction, inputs),
        Family::Softmax(variant) => softmax::run::<f64>(&spec, variant, reduction, inputs),
    }
}

/// Computes `loss` on the CPU in f32 with f64 sums, on all cores: the fast CPU path,
/// returning what the GPU returns. Same validation and errors as the other paths.
pub fn compute_fast(loss: &Loss, reduction: Reduction, inputs: &Inputs) -> Result<crate::Output> {
    let spec = crate::losses::check_inputs(loss, reduction, inputs)?;
    let out = match spec.family {
        Family::Pointwise(k) => (k.fast)(&spec, reduction, inputs)?,
        Family::Softmax(variant) => softmax::run::<f32>(&spec, variant, reduction, inputs)?,
    };
    Ok(crate::Output {
        value: out.value as f32,
        grad: out.grad,
        per_element: out.per_element,
        nonfinite: out.nonfinite as u32,
        lse: out.lse,
        correct: out.correct.map(|c| c as u32),
    })
}
