//! Twin of `shaders/lib/pointwise.wgsl`.

use super::{CpuOutput, Element, LossGrad};
use crate::error::{Error, Result};
use crate::losses::{weight_layout, Family, Inputs, Reduction, Spec, Target, WeightLayout};

/// One element's loss and derivative: the twin of a shader's `pointwise`.
pub type PointwiseFn = fn(x: f64, y: f64, element: &Element) -> LossGrad;

pub(crate) fn run(spec: &Spec, reduction: Reduction, inputs: &Inputs) -> Result<CpuOutput> {
    let shape = inputs.resolved_shape();
    let len = shape.len();
    let last_dim = shape.last_dim();
    let Family::Pointwise(pointwise) = spec.family else { unreachable!("a pointwise spec") };
    let Target::Values(target) = inputs.target else { unreachable!("checked: an f32 target") };
    let grad_scale = match reduction {
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
    let params = spec.params.map(f64::from);
    let mut grad = vec![0.0; len];
    let mut per_element = (reduction == Reduction::None).then(|| vec![0.0; len]);
    let mut jobs = Vec::new();
    let mut losses = per_element.as_mut().map(|v| v.chunks_mut(super::BLOCK_ELEMENTS));
    for (block, grads) in grad.chunks_mut(super::BLOCK_ELEMENTS).enumerate() {
        jobs.push((block * super::BLOCK_ELEMENTS, grads, losses.as_mut().and_then(|l| l.next())));
    }
    // Each block: (loss sum, non-finite count, invalid count).
    let blocks = super::parallel(jobs, |(start, grads, mut losses)| {
        let (mut sum, mut nonfinite, mut invalid) = (0.0f64, 0u64, 0u64);
        for (offset, g_out) in grads.iter_mut().enumerate() {
            let i = start + offset;
            let x = inputs.input[i] as f64;
            let y = target[i] as f64;
            let element = Element { params, pos_weight: inputs.pos_weight.map_or(1.0, |p| p[i % last_dim] as f64) };
            let r = pointwise(x, y, &element);
            let w = match weight {
                None => 1.0,
                Some((w, WeightLayout::PerElement)) => w[i] as f64,
                Some((w, WeightLayout::LastDim)) => w[i % last_dim] as f64,
            };
            let mut g = r.grad * w * grad_scale * upstream_scalar;
            if let (Reduction::None, Some(u)) = (reduction, inputs.upstream) {
                g *= u[i] as f64;
            }
            *g_out = g;
            let value = r.value * w;
            if let Some(losses) = losses.as_mut() {
                losses[offset] = value;
            }
            sum += value;
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
    Ok(CpuOutput { value: sum * grad_scale, grad, per_element, nonfinite, lse: None, correct: None })
}
