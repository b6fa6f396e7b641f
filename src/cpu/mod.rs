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

/// Computes `loss` on the CPU. Same validation and errors as the GPU path.
pub fn compute(loss: &Loss, reduction: Reduction, inputs: &Inputs) -> Result<CpuOutput> {
    let spec = crate::losses::check_inputs(loss, reduction, inputs)?;
    match spec.family {
        Family::Pointwise(_) => pointwise::run(&spec, reduction, inputs),
        Family::Softmax(variant) => softmax::run(&spec, variant, reduction, inputs),
    }
}
