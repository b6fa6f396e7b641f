//! Twin of `shaders/classification/margin.wgsl` (multi-margin, multi-label soft margin,
//! multi-label margin), row by row in the shader's shape, generic over the float type;
//! row sums in f64 (the shader's tree-ordered f32 sums are compared with them).

use super::binary::{sigmoid, softplus};
use super::{CpuOutput, Real};
use crate::error::{Error, Result};
use crate::losses::softmax::{multilabel_margin_list_limit, Variant};
use crate::losses::{Inputs, Reduction, Spec, Target};

/// A margin loss, as its twin sees it: the parameters its shader file reads.
pub(crate) trait MarginLoss {
    /// Multi-margin's margin and exponent p (1 or 2).
    fn margin(&self) -> (f32, u32) {
        (1.0, 1)
    }
}

impl MarginLoss for crate::losses::MultiMargin {
    fn margin(&self) -> (f32, u32) {
        (self.margin, self.p)
    }
}

impl MarginLoss for crate::losses::MultiLabelSoftMargin {}

impl MarginLoss for crate::losses::MultiLabelMargin {}

/// The margin-family twin of `loss`.
pub(crate) fn run<L: MarginLoss, F: Real>(
    loss: &L,
    spec: &Spec,
    reduction: Reduction,
    inputs: &Inputs,
) -> Result<CpuOutput<F>> {
    let variant = spec.row_variant().expect("a row-wise loss");
    let shape = inputs.resolved_shape();
    let (rows, classes) = (shape.rows(), shape.classes());
    let of = |v: f64| F::from(v).unwrap();
    let wide = |v: F| v.to_f64().unwrap_or(f64::NAN);
    let weight = |c: usize| inputs.weight.map_or(F::one(), |w| F::from(w[c]).unwrap());
    let (zero, one) = (F::zero(), F::one());
    let per_class = one / of(classes as f64);
    let (margin, power) = loss.margin();
    let (margin, power) = (of(margin as f64), power as f32);

    // Label pre-pass: every entry a class, or the list end −1 for multi-label margin.
    if let Target::Labels(labels) = inputs.target {
        let ignore = spec.ignore();
        let mut invalid = labels.iter().filter(|&&l| Some(l) != ignore && !(0..classes as i32).contains(&l)).count();
        // Lists longer than the kernel takes in long rows: one invalid label each.
        if let (Variant::MultiLabelMargin, Some(limit)) = (variant, multilabel_margin_list_limit(classes)) {
            invalid +=
                labels.chunks(classes.max(1)).filter(|row| row.iter().take_while(|&&l| l >= 0).count() > limit).count();
        }
        if invalid > 0 {
            let (argument, domain) = spec.invalid_means.unwrap_or(("labels", "[0, C)"));
            return Err(Error::OutOfDomain { argument, count: invalid as u64, domain });
        }
    }
    let mut scale = if reduction == Reduction::Mean { 1.0 / rows as f64 } else { 1.0 };
    if let (Some(u), false) = (inputs.upstream, reduction == Reduction::None) {
        scale *= u[0] as f64;
    }

    let mut grad = vec![zero; shape.len()];
    let mut per_row = vec![zero; rows];
    let (mut sum, mut correct) = (0.0f64, 0u64);
    let mut nonfinite = super::nonfinite_class_weights(inputs.weight);
    for r in 0..rows {
        let x: Vec<F> = inputs.input[r * classes..(r + 1) * classes].iter().map(|&v| of(v as f64)).collect();
        let row_scale = match (reduction, inputs.upstream) {
            (Reduction::None, Some(u)) => of(scale * u[r] as f64),
            _ => of(scale),
        };
        nonfinite += x.iter().filter(|v| !v.is_finite()).count() as u64;
        let out = &mut grad[r * classes..(r + 1) * classes];
        let loss =
            match (variant, inputs.target) {
                (Variant::MultiMargin, Target::Labels(labels)) => {
                    let y = labels[r] as usize;
                    // (h^p, d h^p / dh) of class c's hinge, (0, 0) when inactive.
                    let hinge = |xc: F| {
                        let h = margin - x[y] + xc;
                        match (h > zero, power == 2.0) {
                            (false, _) => (zero, zero),
                            (true, true) => (h * h, (one + one) * h),
                            (true, false) => (h, one),
                        }
                    };
                    let (mut loss, mut slopes) = (0.0f64, 0.0f64);
                    for (c, &xc) in x.iter().enumerate() {
                        if c != y {
                            let (value, slope) = hinge(xc);
                            loss += wide(value);
                            slopes += wide(slope);
                            out[c] = weight(y) * per_class * slope * row_scale;
                        }
                    }
                    out[y] = weight(y) * per_class * -of(slopes) * row_scale;
                    // The first maximum, as the shader's accumulator (none if all are -inf/NaN).
                    let best = x.iter().enumerate().fold((usize::MAX, of(f32::MIN as f64)), |(bc, b), (c, &v)| {
                        if v > b {
                            (c, v)
                        } else {
                            (bc, b)
                        }
                    });
                    correct += u64::from(best.0 == y);
                    weight(y) * of(loss / classes as f64)
                }
                (Variant::MultiLabelSoftMargin, Target::Values(t)) => {
                    let mut loss = 0.0f64;
                    for (c, &xc) in x.iter().enumerate() {
                        let t = of(t[r * classes + c] as f64);
                        let positive = if t != zero { t * softplus(-xc) } else { zero };
                        let negative = if t != one { (one - t) * softplus(xc) } else { zero };
                        loss += wide(weight(c) * (positive + negative));
                        out[c] = weight(c) * (sigmoid(xc) * (one - t) - sigmoid(-xc) * t) * per_class * row_scale;
                    }
                    of(loss / classes as f64)
                }
                (Variant::MultiLabelMargin, Target::Labels(labels)) => {
                    let row_labels = &labels[r * classes..(r + 1) * classes];
                    let list: Vec<usize> = row_labels.iter().take_while(|&&l| l >= 0).map(|&l| l as usize).collect();
                    let mut times_listed = vec![0usize; classes];
                    for &l in &list {
                        if let Some(times) = times_listed.get_mut(l) {
                            *times += 1;
                        }
                    }
                    let listed = |c: usize| times_listed[c];
                    let mut loss = 0.0f64;
                    for (i, &xi) in x.iter().enumerate() {
                        let times = listed(i);
                        if times == 0 {
                            let (mut hinges, mut active) = (zero, zero);
                            for &y in &list {
                                let z = one - x[y] + xi;
                                if z > zero {
                                    hinges = hinges + z;
                                    active = active + one;
                                }
                            }
                            loss += wide(hinges);
                            out[i] = active * per_class * row_scale;
                        } else {
                            let active = (0..classes).filter(|&k| listed(k) == 0 && one - xi + x[k] > zero).count();
                            out[i] = -of((times * active) as f64) * per_class * row_scale;
                        }
                    }
                    of(loss / classes as f64)
                }
                _ => unreachable!("check_inputs matched the target to the variant"),
            };
        per_row[r] = loss;
        sum += wide(loss);
    }
    let value = if reduction == Reduction::Mean { sum / rows as f64 } else { sum };
    Ok(CpuOutput {
        value,
        grad,
        per_element: (reduction == Reduction::None).then_some(per_row),
        nonfinite,
        lse: None,
        correct: inputs.want_accuracy.then_some(correct),
        per_class: None,
        target_grad: None,
    })
}
