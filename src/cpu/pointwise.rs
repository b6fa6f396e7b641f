//! Twin of `shaders/lib/pointwise.wgsl`, generic over the float type.

use num_traits::Float;

use super::{CpuOutput, Element, PointwiseFn, PointwiseLoss};
use crate::error::{Error, Result};
use crate::losses::{weight_layout, Inputs, Reduction, Spec, Target, WeightLayout};

/// A whole-call function of one instantiation.
type RunFn<F> = fn(&Spec, Reduction, &Inputs) -> Result<CpuOutput<F>>;

/// One elementwise loss's CPU functions, monomorphised per loss so that the element
/// function inlines into its loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PointwiseKernels {
    /// The f64 element function (finite-difference tests differentiate it).
    pub element: PointwiseFn,
    /// The f64 reference.
    pub reference: RunFn<f64>,
    /// The f32 fast path.
    pub fast: RunFn<f32>,
}

/// The CPU functions of loss `L`.
pub(crate) fn kernels<L: PointwiseLoss>() -> PointwiseKernels {
    PointwiseKernels { element: L::eval::<f64>, reference: run::<L, f64>, fast: run::<L, f32> }
}

fn run<L: PointwiseLoss, F: Float + Send + Sync>(
    spec: &Spec,
    reduction: Reduction,
    inputs: &Inputs,
) -> Result<CpuOutput<F>> {
    let shape = inputs.resolved_shape();
    let len = shape.len();
    let last_dim = shape.last_dim();
    let Target::Values(target) = inputs.target else { unreachable!("checked: an f32 target") };
    let of = |v: f32| F::from(v).unwrap();
    let scale = match reduction {
        Reduction::Mean => 1.0 / len as f64,
        Reduction::BatchMean => 1.0 / shape.batch() as f64,
        _ => 1.0,
    };
    let upstream_scalar = match (reduction, inputs.upstream) {
        (Reduction::None, _) | (_, None) => 1.0,
        (_, Some(u)) => u[0] as f64,
    };
    let grad_scale = F::from(scale * upstream_scalar).unwrap();
    let weight = match inputs.weight {
        Some(w) => Some((w, weight_layout("weight", w.len(), &shape)?)),
        None => None,
    };
    let params = spec.params.map(of);
    let mut grad = vec![F::zero(); len];
    let mut per_element = (reduction == Reduction::None).then(|| vec![F::zero(); len]);
    let mut jobs = Vec::new();
    let mut losses = per_element.as_mut().map(|v| v.chunks_mut(super::BLOCK_ELEMENTS));
    for (block, grads) in grad.chunks_mut(super::BLOCK_ELEMENTS).enumerate() {
        jobs.push((block * super::BLOCK_ELEMENTS, grads, losses.as_mut().and_then(|l| l.next())));
    }
    // Each block: (loss sum in f64, non-finite count, invalid count).
    let blocks = super::parallel(jobs, |(start, grads, mut losses)| {
        let (mut sum, mut nonfinite, mut invalid) = (0.0f64, 0u64, 0u64);
        for (offset, g_out) in grads.iter_mut().enumerate() {
            let i = start + offset;
            let (x, y) = (inputs.input[i], target[i]);
            let element = Element { params, pos_weight: inputs.pos_weight.map_or(F::one(), |p| of(p[i % last_dim])) };
            let r = L::eval(of(x), of(y), &element);
            let w = match weight {
                None => F::one(),
                Some((w, WeightLayout::PerElement)) => of(w[i]),
                Some((w, WeightLayout::LastDim)) => of(w[i % last_dim]),
            };
            let mut g = r.grad * w * grad_scale;
            if let (Reduction::None, Some(u)) = (reduction, inputs.upstream) {
                g = g * of(u[i]);
            }
            *g_out = g;
            let value = r.value * w;
            if let Some(losses) = losses.as_mut() {
                losses[offset] = value;
            }
            sum += value.to_f64().unwrap_or(f64::NAN);
            nonfinite += u64::from(!(x.is_finite() && y.is_finite()));
            invalid += u64::from(r.invalid);
        }
        (sum, nonfinite, invalid)
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
    Ok(CpuOutput { value: sum * scale, grad, per_element, nonfinite, lse: None, correct: None })
}
