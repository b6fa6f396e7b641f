//! Twin of `shaders/lib/pointwise.wgsl`, generic over the float type.
//!
//! The loop is shaped for the compiler as much as for the reader: the broadcast operands
//! are a type parameter (so the common no-weight call has no per-element branches), and
//! each block sums its losses in `LANES` independent accumulators over fixed sub-blocks
//! before adding them to an f64 total, which lets LLVM vectorise the loop while the
//! summation order stays fixed by the input alone.

use num_traits::Float;

use super::{with_best_isa, CpuOutput, Element, PointwiseLoss, Real};
use crate::error::{Error, Result};
use crate::losses::{weight_layout, Inputs, Reduction, Spec, Target, WeightLayout};

/// Independent loss accumulators per block (one vector register of f32 on AVX-512).
const LANES: usize = 16;
/// Elements summed in the lane accumulators before they are added to the f64 total.
const SUB_BLOCK: usize = 1024;

/// The broadcast operands at element `i`.
trait Operands<F>: Sync {
    fn weight(&self, i: usize) -> F;
    fn pos_weight(&self, i: usize) -> F;
    /// The elementwise upstream gradient (reduction `none`), else 1.
    fn upstream(&self, i: usize) -> F;
}

/// No weight, no `pos_weight`, no elementwise upstream: all ones, folded away.
struct Plain;
impl<F: Float> Operands<F> for Plain {
    #[inline(always)]
    fn weight(&self, _: usize) -> F {
        F::one()
    }
    #[inline(always)]
    fn pos_weight(&self, _: usize) -> F {
        F::one()
    }
    #[inline(always)]
    fn upstream(&self, _: usize) -> F {
        F::one()
    }
}

/// Any combination of the optional operands.
struct General<'a> {
    weight: Option<(&'a [f32], WeightLayout)>,
    pos_weight: Option<&'a [f32]>,
    upstream: Option<&'a [f32]>,
    last_dim: usize,
}
impl<F: Float> Operands<F> for General<'_> {
    #[inline(always)]
    fn weight(&self, i: usize) -> F {
        match self.weight {
            None => F::one(),
            Some((w, WeightLayout::PerElement)) => F::from(w[i]).unwrap(),
            Some((w, WeightLayout::PerClass)) => F::from(w[i % self.last_dim]).unwrap(),
        }
    }
    #[inline(always)]
    fn pos_weight(&self, i: usize) -> F {
        self.pos_weight.map_or(F::one(), |p| F::from(p[i % self.last_dim]).unwrap())
    }
    #[inline(always)]
    fn upstream(&self, i: usize) -> F {
        self.upstream.map_or(F::one(), |u| F::from(u[i]).unwrap())
    }
}

/// What one block of work sees.
struct Block<'a, F> {
    start: usize,
    grads: &'a mut [F],
    losses: Option<&'a mut [F]>,
    target_grads: Option<&'a mut [F]>,
}

/// A block's (loss sum in f64, non-finite count, invalid count).
type BlockSums = (f64, u64, u64);

/// The whole call of elementwise loss `loss` in float type `F` (f64: the reference; f32:
/// the fast path).
pub(crate) fn run<L: PointwiseLoss + Sync, F: Real>(
    loss: &L,
    spec: &Spec,
    reduction: Reduction,
    inputs: &Inputs,
) -> Result<CpuOutput<F>> {
    let shape = inputs.resolved_shape();
    let len = shape.len();
    let Target::Values(target) = inputs.target else { unreachable!("checked: an f32 target") };
    let scale = match reduction {
        Reduction::Mean => 1.0 / len as f64,
        Reduction::BatchMean => 1.0 / shape.batch() as f64,
        _ => 1.0,
    };
    let upstream_scalar = match (reduction, inputs.upstream) {
        (Reduction::None, _) | (_, None) => 1.0,
        (_, Some(u)) => u[0] as f64,
    };
    let weight = match inputs.weight {
        Some(w) => Some((w, weight_layout("weight", w.len(), &shape)?)),
        None => None,
    };
    let general = General {
        weight,
        pos_weight: inputs.pos_weight,
        upstream: inputs.upstream.filter(|_| reduction == Reduction::None),
        last_dim: shape.last_dim(),
    };
    let problem = Problem { loss, input: inputs.input, target, grad_scale: F::from(scale * upstream_scalar).unwrap() };
    let mut grad = vec![F::zero(); len];
    let mut per_element = (reduction == Reduction::None).then(|| vec![F::zero(); len]);
    let mut target_grad = inputs.want_target_grad.then(|| vec![F::zero(); len]);
    let mut jobs = Vec::new();
    let mut losses = per_element.as_mut().map(|v| v.chunks_mut(super::BLOCK_ELEMENTS));
    let mut target_grads = target_grad.as_mut().map(|v| v.chunks_mut(super::BLOCK_ELEMENTS));
    for (block, grads) in grad.chunks_mut(super::BLOCK_ELEMENTS).enumerate() {
        let losses = losses.as_mut().and_then(|l| l.next());
        let target_grads = target_grads.as_mut().and_then(|t| t.next());
        jobs.push(Block { start: block * super::BLOCK_ELEMENTS, grads, losses, target_grads });
    }
    let plain = general.weight.is_none() && general.pos_weight.is_none() && general.upstream.is_none();
    let blocks = super::parallel(jobs, |block| {
        // The target gradient is asked for rarely: the general loop only.
        with_best_isa(|| match (plain, block.losses.is_some(), block.target_grads.is_some()) {
            (true, false, false) => problem.block::<_, false, false>(block, &Plain),
            (true, true, false) => problem.block::<_, true, false>(block, &Plain),
            (_, false, false) => problem.block::<_, false, false>(block, &general),
            (_, true, false) => problem.block::<_, true, false>(block, &general),
            (_, losses, true) => match losses {
                false => problem.block::<_, false, true>(block, &general),
                true => problem.block::<_, true, true>(block, &general),
            },
        })
    });
    let (mut sum, mut nonfinite, mut invalid) = (0.0f64, 0u64, 0u64);
    for (s, n, i) in blocks {
        sum += s;
        nonfinite += n;
        invalid += i;
    }
    if invalid > 0 {
        let (argument, domain) = spec.invalid_means.unwrap_or(("input", "the loss's domain"));
        return Err(Error::OutOfDomain { argument, count: invalid, domain });
    }
    Ok(CpuOutput {
        value: sum * scale,
        grad,
        per_element,
        nonfinite,
        lse: None,
        correct: None,
        per_class: None,
        target_grad,
    })
}

/// The call's loss, operands and constants.
struct Problem<'a, L, F> {
    loss: &'a L,
    input: &'a [f32],
    target: &'a [f32],
    grad_scale: F,
}

impl<L: PointwiseLoss, F: Real> Problem<'_, L, F> {
    #[inline(always)]
    fn block<O: Operands<F>, const WRITE_LOSSES: bool, const WRITE_TARGET: bool>(
        &self,
        block: Block<'_, F>,
        operands: &O,
    ) -> BlockSums {
        let Block { start, grads, mut losses, mut target_grads } = block;
        let (mut sum, mut nonfinite, mut invalid) = (0.0f64, 0u64, 0u64);
        for sub in (0..grads.len()).step_by(SUB_BLOCK) {
            let end = (sub + SUB_BLOCK).min(grads.len());
            let mut lane_sums = [F::zero(); LANES];
            let mut lane_nonfinite = [0u32; LANES];
            let mut lane_invalid = [0u32; LANES];
            for offset in sub..end {
                let i = start + offset;
                let (x, y) = (self.input[i], self.target[i]);
                let element = Element { pos_weight: operands.pos_weight(i) };
                let r = self.loss.eval(F::from(x).unwrap(), F::from(y).unwrap(), &element);
                let w = operands.weight(i);
                grads[offset] = r.grad * w * self.grad_scale * operands.upstream(i);
                if WRITE_TARGET {
                    if let Some(target_grads) = target_grads.as_mut() {
                        let dy = self.loss.eval_target(F::from(x).unwrap(), F::from(y).unwrap(), &element, &r);
                        target_grads[offset] = dy * w * self.grad_scale * operands.upstream(i);
                    }
                }
                let value = r.value * w;
                if WRITE_LOSSES {
                    if let Some(losses) = losses.as_mut() {
                        losses[offset] = value;
                    }
                }
                let lane = offset % LANES;
                lane_sums[lane] = lane_sums[lane] + value;
                // Every operand the loss reads counts, as on the GPU.
                let finite = x.is_finite() && y.is_finite() && w.is_finite() && element.pos_weight.is_finite();
                lane_nonfinite[lane] += u32::from(!finite);
                lane_invalid[lane] += u32::from(r.invalid);
            }
            sum += lane_sums.iter().map(|s| s.to_f64().unwrap_or(f64::NAN)).sum::<f64>();
            nonfinite += lane_nonfinite.iter().map(|&n| u64::from(n)).sum::<u64>();
            invalid += lane_invalid.iter().map(|&n| u64::from(n)).sum::<u64>();
        }
        (sum, nonfinite, invalid)
    }
}
