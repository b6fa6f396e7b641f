//! The convenience path for inputs larger than one buffer: the batch is cut into parts of
//! whole batch items, computed one after the other with their own buffers (so memory
//! stays at one part's operands and gradient), and joined on the host.
//!
//! A part is a `sum` call whose upstream gradient is the whole call's scale (upstream ×
//! 1/denominator, the denominator computed on the host as the kernels compute it), so
//! every gradient element is the one a single call would give up to the rounding of
//! that scale; the loss is the parts' sums added in f64, then divided.

use crate::error::{Error, Result};
use crate::losses::{Inputs, Loss, Reduction, Shape, Spec, Target};
use crate::{Gpu, Output};

/// Batch items per part: all of them when every operand fits one buffer of `gpu`.
pub(crate) fn items_per_part(gpu: &Gpu, shape: &Shape) -> usize {
    let item_elems = (shape.len() / shape.batch().max(1)).max(1) as u64;
    // Sized for the widest per-element operand (f32 weights and losses).
    ((gpu.max_buffer_bytes() / (item_elems * 4)).max(1) as usize).min(shape.batch().max(1))
}

/// The whole call's denominator of `mean` / `batchmean` (1 otherwise), as the kernels
/// compute it: the summed class weight of non-ignored labels, rows for soft targets,
/// elements for elementwise losses. Labels must be in range.
pub(crate) fn denominator(spec: &Spec, reduction: Reduction, inputs: &Inputs) -> f64 {
    let shape = inputs.resolved_shape();
    match (reduction, inputs.target) {
        (Reduction::Mean, Target::Labels(labels)) if spec.mean_over_label_weights() => labels
            .iter()
            .filter(|&&l| Some(l) != spec.ignore())
            .map(|&l| inputs.weight.filter(|_| !spec.unweighted_mean()).map_or(1.0, |w| w[l as usize] as f64))
            .sum(),
        (Reduction::Mean, _) if spec.is_row_wise() => shape.rows() as f64,
        (Reduction::Mean, _) => shape.len() as f64,
        (Reduction::BatchMean, _) => shape.batch() as f64,
        (Reduction::Sum | Reduction::None, _) => 1.0,
    }
}

pub(crate) async fn compute_in_parts(
    gpu: &Gpu,
    loss: &Loss,
    spec: &Spec,
    reduction: Reduction,
    inputs: &Inputs<'_>,
    items_per_part: usize,
) -> Result<Output> {
    let shape = inputs.resolved_shape();
    let batch = shape.batch();
    let item = shape.len() / batch;
    let row_wise = spec.is_row_wise();
    // Per-row operands and outputs (upstream for `none`, losses, log-sum-exp) per item.
    let outputs_per_item = if row_wise { shape.inner() } else { item };
    if let Target::Labels(labels) = inputs.target {
        // Counted here, over the whole call, as the label pre-pass counts them per call.
        let classes = shape.classes() as i32;
        let bad = labels.iter().filter(|&&l| Some(l) != spec.ignore() && !(0..classes).contains(&l)).count();
        if bad > 0 {
            let (argument, domain) = spec.invalid_means.unwrap_or(("labels", "[0, C)"));
            return Err(Error::OutOfDomain { argument, count: bad as u64, domain });
        }
    }
    let denominator = denominator(spec, reduction, inputs);
    let none = reduction == Reduction::None;
    let part_reduction = if none { Reduction::None } else { Reduction::Sum };
    let upstream_scalar = inputs.upstream.filter(|_| !none).map_or(1.0, |u| u[0] as f64);
    let scale = [(upstream_scalar / denominator) as f32];
    // Operands that follow the elements: a per-element weight, and in a 1-D call (where
    // the last dimension is the batch dimension) the broadcast ones too.
    let one_d = shape.dims().len() == 1;
    let per_element_weight = !row_wise && inputs.weight.is_some_and(|w| w.len() == shape.len());

    let mut joined = Output {
        value: 0.0,
        grad: Vec::with_capacity(shape.len()),
        per_element: none.then(Vec::new),
        nonfinite: 0,
        lse: inputs.want_lse.then(Vec::new),
        correct: inputs.want_accuracy.then_some(0),
        per_class: None,
        target_grad: inputs.want_target_grad.then(Vec::new),
    };
    // Parts are whole batch items, so their breakdowns line up class for class.
    let mut per_class = inputs.want_per_class.then(|| vec![0.0f64; shape.last_dim()]);
    let (mut sum, mut invalid) = (0.0f64, 0u64);
    let mut first = 0;
    while first < batch {
        let items = items_per_part.min(batch - first);
        let (elements, outputs) =
            (first * item..(first + items) * item, first * outputs_per_item..(first + items) * outputs_per_item);
        let mut dims = shape.dims().to_vec();
        dims[0] = items;
        let mut part = inputs.clone().shape(&dims);
        part.input = &inputs.input[elements.clone()];
        part.target = match inputs.target {
            Target::Values(t) => Target::Values(&t[elements.clone()]),
            Target::Labels(l) => {
                let per_row = spec.labels_per_row(shape.classes());
                Target::Labels(&l[outputs.start * per_row..outputs.end * per_row])
            }
        };
        if per_element_weight || (one_d && !row_wise) {
            part.weight = inputs.weight.map(|w| &w[elements.clone()]);
        }
        if one_d {
            part.pos_weight = inputs.pos_weight.map(|p| &p[elements.clone()]);
        }
        part.upstream = if none { inputs.upstream.map(|u| &u[outputs.clone()]) } else { Some(&scale[..]) };
        match gpu.compute_one_buffer(loss, spec, part_reduction, &part).await {
            Ok(out) => {
                sum += out.value as f64;
                joined.grad.extend(out.grad);
                joined.nonfinite += out.nonfinite;
                if let (Some(all), Some(part)) = (joined.per_element.as_mut(), out.per_element) {
                    all.extend(part);
                }
                if let (Some(all), Some(part)) = (joined.lse.as_mut(), out.lse) {
                    all.extend(part);
                }
                if let (Some(all), Some(part)) = (joined.target_grad.as_mut(), out.target_grad) {
                    all.extend(part);
                }
                if let (Some(all), Some(part)) = (joined.correct.as_mut(), out.correct) {
                    *all += part;
                }
                if let (Some(all), Some(part)) = (per_class.as_mut(), out.per_class) {
                    all.iter_mut().zip(part).for_each(|(sum, v)| *sum += v as f64);
                }
            }
            // Domain errors found on the GPU are counted over every part.
            Err(Error::OutOfDomain { count, .. }) => invalid += count,
            Err(e) => return Err(e),
        }
        first += items;
    }
    if invalid > 0 {
        let (argument, domain) = spec.invalid_means.unwrap_or(("input", "the loss's domain"));
        return Err(Error::OutOfDomain { argument, count: invalid, domain });
    }
    joined.value = (sum / denominator) as f32;
    joined.per_class = per_class.map(|sums| sums.into_iter().map(|v| v as f32).collect());
    Ok(joined)
}
