//! Twin of `shaders/classification/softmax_rows.wgsl` and its label pre-pass, row by
//! row, generic over the float type (f64 reference, f32 fast path); sums over rows in f64.
//! Each loss's own arithmetic (its shader file's `label_term` and options) is its
//! [`LabelFunction`] impl below.

use super::{with_best_isa, CpuOutput, Real};
use crate::error::{Error, Result};
use crate::losses::softmax::Variant;
use crate::losses::{Inputs, Reduction, Spec, Target};

/// `coefficient * term`, 0 when the coefficient is 0 (as the shader's `weighted_term`).
#[inline(always)]
fn weighted_term<F: Real>(coefficient: F, term: F) -> F {
    if coefficient == F::zero() {
        F::zero()
    } else {
        coefficient * term
    }
}

/// Σ_c e^{row_c - max} into `exps`, summed in `LANES` accumulators then in f64: a loop
/// LLVM vectorises, in an order fixed by the row alone.
#[inline(always)]
fn exp_sum<F: Real>(row: &[F], max: F, exps: &mut [F]) -> f64 {
    const LANES: usize = 16;
    let mut lanes = [F::zero(); LANES];
    let mut row_chunks = row.chunks_exact(LANES);
    let mut exp_chunks = exps.chunks_exact_mut(LANES);
    for (xs, es) in (&mut row_chunks).zip(&mut exp_chunks) {
        for lane in 0..LANES {
            es[lane] = (xs[lane] - max).fast_exp();
            lanes[lane] = lanes[lane] + es[lane];
        }
    }
    for (lane, (&x, e)) in row_chunks.remainder().iter().zip(exp_chunks.into_remainder()).enumerate() {
        *e = (x - max).fast_exp();
        lanes[lane] = lanes[lane] + *e;
    }
    lanes.iter().map(|s| s.to_f64().unwrap_or(f64::NAN)).sum()
}

/// The largest logit, NaN ignored (-inf when there is none), in `LANES` running maxima so
/// that the loop vectorises.
#[inline(always)]
fn row_max<F: Real>(row: &[F]) -> F {
    const LANES: usize = 16;
    let mut lanes = [F::neg_infinity(); LANES];
    let mut chunks = row.chunks_exact(LANES);
    for xs in &mut chunks {
        for lane in 0..LANES {
            lanes[lane] = if xs[lane] > lanes[lane] { xs[lane] } else { lanes[lane] };
        }
    }
    for (lane, &x) in chunks.remainder().iter().enumerate() {
        lanes[lane] = if x > lanes[lane] { x } else { lanes[lane] };
    }
    lanes.iter().fold(F::neg_infinity(), |m, &v| if v > m { v } else { m })
}

/// Writes `gradient(c, e^{x_c - max})` for every class of a row whose classes are
/// `stride` apart in `out` (contiguous rows get a loop that vectorises).
#[inline(always)]
fn write_row<F: Real>(out: &mut [F], stride: usize, exps: &[F], gradient: impl Fn(usize, F) -> F) {
    if stride == 1 {
        for (c, (g, &e)) in out.iter_mut().zip(exps).enumerate() {
            *g = gradient(c, e);
        }
    } else {
        for (c, &e) in exps.iter().enumerate() {
            out[c * stride] = gradient(c, e);
        }
    }
}

/// A loss of the softmax family, as its twin sees it: the twin of its shader file
/// (`shaders/classification/<loss>.wgsl`), implemented on its parameter struct.
pub(crate) trait LabelFunction {
    /// The label function at `ln p_y`: (loss f, G = −p f'(p)), the shader's `label_term`
    /// (cross-entropy's `(−ln p, 1)` by default).
    #[inline(always)]
    fn label_term<F: Real>(&self, log_p: F) -> (F, F) {
        (-log_p, F::one())
    }
    /// Label smoothing ε (the shader's `label_smoothing()`).
    fn label_smoothing(&self) -> f32 {
        0.0
    }
    /// Cross-entropy's z-loss scale and logit soft-cap (0: off).
    fn z_loss(&self) -> f32 {
        0.0
    }
    fn softcap(&self) -> f32 {
        0.0
    }
    /// The share of the target moved to the row's argmax (`ARGMAX_SHARE`), if any.
    fn argmax_share(&self) -> Option<f32> {
        None
    }
    /// The weight of the row's entropy (`ROW_ENTROPY`), if any.
    fn entropy_share(&self) -> Option<f32> {
        None
    }
}

impl LabelFunction for crate::losses::CrossEntropy {
    fn label_smoothing(&self) -> f32 {
        self.label_smoothing
    }
    fn z_loss(&self) -> f32 {
        self.z_loss
    }
    fn softcap(&self) -> f32 {
        self.softcap
    }
}

impl LabelFunction for crate::losses::CrossEntropySoft {
    fn label_smoothing(&self) -> f32 {
        self.label_smoothing
    }
}

impl LabelFunction for crate::losses::Nll {}

impl LabelFunction for crate::losses::Focal {
    #[inline(always)]
    fn label_term<F: Real>(&self, log_p: F) -> (F, F) {
        let (zero, one) = (F::zero(), F::one());
        let gamma = F::from(self.gamma).unwrap();
        let one_minus_p = -log_p.exp_m1();
        if gamma == zero {
            (-log_p, one)
        } else if one_minus_p <= zero {
            (zero, zero)
        } else {
            let focus = one_minus_p.powf(gamma);
            (focus * -log_p, focus - gamma * one_minus_p.powf(gamma - one) * log_p.exp() * log_p)
        }
    }
}

impl LabelFunction for crate::losses::GeneralizedCrossEntropy {
    #[inline(always)]
    fn label_term<F: Real>(&self, log_p: F) -> (F, F) {
        let q = F::from(self.q).unwrap();
        (-(q * log_p).exp_m1() / q, (q * log_p).exp())
    }
}

impl LabelFunction for crate::losses::SymmetricCrossEntropy {
    #[inline(always)]
    fn label_term<F: Real>(&self, log_p: F) -> (F, F) {
        let alpha = F::from(self.alpha).unwrap();
        let beta_a = F::from(self.beta).unwrap() * F::from(self.log_zero).unwrap();
        (alpha * -log_p + beta_a * log_p.exp_m1(), alpha - beta_a * log_p.exp())
    }
}

impl LabelFunction for crate::losses::Poly1CrossEntropy {
    #[inline(always)]
    fn label_term<F: Real>(&self, log_p: F) -> (F, F) {
        let epsilon = F::from(self.epsilon).unwrap();
        (-log_p - epsilon * log_p.exp_m1(), F::one() + epsilon * log_p.exp())
    }
}

impl LabelFunction for crate::losses::HardBootstrap {
    #[inline(always)]
    fn label_term<F: Real>(&self, log_p: F) -> (F, F) {
        (F::from(self.beta).unwrap() * -log_p, F::one())
    }
    fn argmax_share(&self) -> Option<f32> {
        Some(1.0 - self.beta)
    }
}

impl LabelFunction for crate::losses::SoftBootstrap {
    #[inline(always)]
    fn label_term<F: Real>(&self, log_p: F) -> (F, F) {
        let beta = F::from(self.beta).unwrap();
        (beta * -log_p, beta)
    }
    fn entropy_share(&self) -> Option<f32> {
        Some(1.0 - self.beta)
    }
}

/// The softmax-family twin of `loss`.
pub(crate) fn run<L: LabelFunction + Sync, F: Real>(
    loss: &L,
    spec: &Spec,
    reduction: Reduction,
    inputs: &Inputs,
) -> Result<CpuOutput<F>> {
    let variant = spec.row_variant().expect("a row-wise loss");
    let shape = inputs.resolved_shape();
    let (classes, inner, rows) = (shape.classes(), shape.inner(), shape.rows());
    let of = |v: f64| F::from(v).unwrap();
    // Cross-entropy's soft-cap applies to every logit the kernel reads.
    let softcap = of(loss.softcap() as f64);
    let cap = |v: F| if softcap > F::zero() { softcap * (v / softcap).tanh() } else { v };
    let z_loss = of(loss.z_loss() as f64);
    // Bootstrapping: the share of the target on the argmax, and the weight of the entropy.
    let bootstrap = loss.argmax_share().is_some();
    let argmax_share = of(loss.argmax_share().unwrap_or(0.0) as f64);
    let soft_bootstrap = loss.entropy_share().is_some();
    let entropy_share = of(loss.entropy_share().unwrap_or(0.0) as f64);
    let x = |i: usize| cap(F::from(inputs.input[i]).unwrap());
    let weight = |c: usize| inputs.weight.map_or(F::one(), |w| F::from(w[c]).unwrap());
    let (labels, soft) = match inputs.target {
        Target::Labels(l) => (Some(l), None),
        Target::Values(t) => (None, Some(t)),
    };
    let ignore = spec.ignore_index;
    let eps = of(loss.label_smoothing() as f64);
    let per_class = eps / of(classes as f64);

    // Label pre-pass.
    let (mut weight_sum, mut invalid) = (0.0f64, 0u64);
    if let Some(labels) = labels {
        for &label in labels {
            if label == ignore {
                continue;
            }
            if label < 0 || label as usize >= classes {
                invalid += 1;
            } else {
                weight_sum +=
                    if spec.unweighted_mean { 1.0 } else { weight(label as usize).to_f64().unwrap_or(f64::NAN) };
            }
        }
    }
    if invalid > 0 {
        let (argument, domain) = spec.invalid_means.unwrap_or(("labels", "[0, C)"));
        return Err(Error::OutOfDomain { argument, count: invalid, domain });
    }
    let class_weight_sum = of((0..classes).map(|c| weight(c).to_f64().unwrap_or(f64::NAN)).sum());
    let mut scale = match (reduction, labels.is_some()) {
        (Reduction::Mean, true) => 1.0 / weight_sum,
        (Reduction::Mean, false) => 1.0 / rows as f64,
        _ => 1.0,
    };
    if let (Some(u), false) = (inputs.upstream, reduction == Reduction::None) {
        scale *= u[0] as f64;
    }
    let scale = of(scale);

    let mut grad = vec![F::zero(); shape.len()];
    let mut per_row = vec![F::zero(); rows];
    let mut lses = vec![F::zero(); rows];
    // Blocks of whole batch items: contiguous in the gradient and in the per-row outputs.
    let items_per_block = (super::BLOCK_ELEMENTS / (classes * inner).max(1)).max(1);
    let jobs: Vec<_> = grad
        .chunks_mut(items_per_block * classes * inner)
        .zip(per_row.chunks_mut(items_per_block * inner))
        .zip(lses.chunks_mut(items_per_block * inner))
        .enumerate()
        .map(|(block, ((grad, per_row), lses))| (block * items_per_block * inner, grad, per_row, lses))
        .collect();
    // NLL needs no softmax unless its log-sum-exp or argmax is asked for.
    let needs_sweep = variant != Variant::Nll || inputs.want_lse || inputs.want_accuracy;
    let wide = |v: F| v.to_f64().unwrap_or(f64::NAN);
    // Each block: (loss sum in f64, non-finite count, correct count).
    let blocks = super::parallel(jobs, |(first_row, grad, per_row, lses)| {
        with_best_isa(
            #[inline(always)]
            || {
                let (mut sum, mut nonfinite, mut correct) = (0.0f64, 0u64, 0u64);
                let grad_base = first_row / inner * classes * inner;
                // The row's logits, gathered once from the strided layout, and exp(x - max).
                let (mut row, mut exps) = (vec![F::zero(); classes], vec![F::zero(); classes]);
                for local in 0..per_row.len() {
                    let r = first_row + local;
                    let (n, s) = (r / inner, r % inner);
                    let base = n * classes * inner + s;
                    let label = labels.map(|l| l[r]);
                    let ignored = label == Some(ignore);
                    let y = label.filter(|_| !ignored).map_or(0, |l| l as usize);
                    let row_scale = match (reduction, inputs.upstream) {
                        (Reduction::None, Some(u)) => scale * F::from(u[r]).unwrap(),
                        _ => scale,
                    };
                    let x_y = x(base + y * inner);
                    // The log-sum-exp as the shader keeps it: the max m and ln s apart (their
                    // sum only for the lse output and the z-loss), so that ln p_c is
                    // (x_c − m) − ln s and nothing cancels as p_y → 1 or for large logits.
                    let (mut lse, mut inv_sum, mut m, mut log_sum) = (F::zero(), F::zero(), F::zero(), F::zero());
                    let (mut top_class, mut top_logit) = (usize::MAX, F::neg_infinity());
                    // Soft bootstrapping: the row's entropy ln s − Σ p_c (x_c − m).
                    let mut entropy = F::zero();
                    let (mut wt, mut wtx, mut wx) = (F::zero(), F::zero(), F::zero());
                    if needs_sweep {
                        // First sweep: max, argmax (first occurrence), sum of exponentials and the
                        // linear sums that the variant uses, the sums in f64.
                        if inner == 1 {
                            for (slot, &v) in row.iter_mut().zip(&inputs.input[base..base + classes]) {
                                *slot = cap(F::from(v).unwrap());
                            }
                        } else {
                            for (c, slot) in row.iter_mut().enumerate() {
                                *slot = x(base + c * inner);
                            }
                        }
                        m = row_max(&row);
                        // The first class holding the maximum, none when no logit is above the
                        // lowest finite value (the shader's row accumulator starts there).
                        let argmax = if (inputs.want_accuracy || bootstrap) && m > F::min_value() {
                            row.iter().position(|&v| v == m).unwrap_or(usize::MAX)
                        } else {
                            usize::MAX
                        };
                        (top_class, top_logit) = (argmax, m);
                        let sum_exp = exp_sum(&row, m, &mut exps);
                        if soft_bootstrap {
                            // -inf logits add nothing (not 0 · -inf), as in the shader.
                            let px: f64 = exps
                                .iter()
                                .zip(&row)
                                .map(|(&e, &xc)| if e > F::zero() { wide(e) * (wide(xc) - wide(m)) } else { 0.0 })
                                .sum();
                            entropy = of(sum_exp.ln() - px / sum_exp);
                        }
                        let (mut s_wt, mut s_wtx, mut s_wx) = (0.0, 0.0, 0.0);
                        if let Some(t) = soft {
                            for (c, &xc) in row.iter().enumerate() {
                                let w = wide(weight(c));
                                let t = wide((F::one() - eps) * F::from(t[base + c * inner]).unwrap() + per_class);
                                s_wt += w * t;
                                // The max adds 0 whatever its weight, as the shader's.
                                s_wtx += weighted_term(wide(xc) - wide(m), w * t);
                            }
                        } else if eps != F::zero() {
                            s_wx = row
                                .iter()
                                .enumerate()
                                .map(|(c, &xc)| weighted_term(wide(xc) - wide(m), wide(weight(c))))
                                .sum();
                        }
                        log_sum = of(sum_exp.ln());
                        lse = m + log_sum;
                        inv_sum = of(1.0 / sum_exp);
                        (wt, wtx, wx) = (of(s_wt), of(s_wtx), of(s_wx));
                        if variant != Variant::Nll {
                            nonfinite += row.iter().filter(|v| !v.is_finite()).count() as u64;
                        }
                        correct += u64::from(labels.is_some() && !ignored && argmax == y);
                    }
                    if variant == Variant::Nll {
                        nonfinite += u64::from(!ignored && !x_y.is_finite());
                    }
                    let row_loss = if ignored {
                        F::zero()
                    } else {
                        match variant {
                            Variant::Nll => -weight(y) * x_y,
                            Variant::SoftTargets => log_sum * wt - wtx,
                            Variant::MultiMargin | Variant::MultiLabelSoftMargin | Variant::MultiLabelMargin => {
                                unreachable!("margin losses have their own twin (cpu::margin)")
                            }
                            Variant::HardLabels => {
                                let (mut term, _) = loss.label_term((x_y - m) - log_sum);
                                if bootstrap {
                                    term = term + argmax_share * ((m - top_logit) + log_sum);
                                }
                                if soft_bootstrap {
                                    term = term + entropy_share * entropy;
                                }
                                weighted_term(F::one() - eps, weight(y) * term)
                                    + weighted_term(per_class, class_weight_sum * log_sum - wx)
                                    + z_loss * lse * lse
                            }
                        }
                    };
                    sum += wide(row_loss);
                    per_row[local] = row_loss;
                    lses[local] = lse;
                    // Second sweep: the gradient, written once per class. `grad` starts at zero, so
                    // ignored rows and NLL's other classes need no write.
                    if ignored {
                        continue;
                    }
                    let out = &mut grad[base - grad_base..];
                    match variant {
                        Variant::Nll => out[y * inner] = -row_scale * weight(y),
                        Variant::MultiMargin | Variant::MultiLabelSoftMargin | Variant::MultiLabelMargin => {
                            unreachable!("margin losses have their own twin (cpu::margin)")
                        }
                        Variant::SoftTargets => {
                            let t = soft.expect("soft targets");
                            write_row(out, inner, &exps, |c, e| {
                                let t = (F::one() - eps) * F::from(t[base + c * inner]).unwrap() + per_class;
                                row_scale * (e * inv_sum * wt - weight(c) * t)
                            });
                        }
                        Variant::HardLabels => {
                            let log_p_y = (x_y - m) - log_sum;
                            let w_y = weight(y) * loss.label_term(log_p_y).1;
                            // The label's p_y − 1 as expm1(ln p_y), as the shader.
                            let label_p_minus_one = log_p_y.exp_m1();
                            let two = F::one() + F::one();
                            write_row(out, inner, &exps, |c, e| {
                                let p = e * inv_sum;
                                let mut hit = if c == y { F::one() } else { F::zero() };
                                if bootstrap {
                                    let top = if c == top_class { F::one() } else { F::zero() };
                                    hit = (F::one() - argmax_share) * hit + argmax_share * top;
                                }
                                let p_minus_hit = if c == y && !bootstrap { label_p_minus_one } else { p - hit };
                                let mut g = (F::one() - eps) * w_y * p_minus_hit
                                    + weighted_term(per_class, class_weight_sum * p - weight(c))
                                    + two * z_loss * lse * p;
                                if soft_bootstrap {
                                    g = g
                                        + (F::one() - eps)
                                            * weight(y)
                                            * entropy_share
                                            * -p
                                            * ((row[c] - m) - log_sum + entropy);
                                }
                                // d(capped)/d(raw) = sech²(u) = 4e / (1 + e)², e = e^{−2|u|},
                                // from the raw logit, as the shader.
                                let through_cap = if softcap > F::zero() {
                                    let u = F::from(inputs.input[base + c * inner]).unwrap() / softcap;
                                    let e = (-(u.abs() + u.abs())).exp();
                                    let four = F::from(4.0).unwrap();
                                    four * e / ((F::one() + e) * (F::one() + e))
                                } else {
                                    F::one()
                                };
                                row_scale * g * through_cap
                            });
                        }
                    }
                }
                (sum, nonfinite, correct)
            },
        )
    });
    let (mut sum, mut correct) = (0.0f64, 0u64);
    let mut nonfinite = super::nonfinite_class_weights(inputs.weight);
    for (s, n, c) in blocks {
        sum += s;
        nonfinite += n;
        correct += c;
    }
    let value = match reduction {
        Reduction::Mean if labels.is_some() => sum / weight_sum,
        Reduction::Mean => sum / rows as f64,
        _ => sum,
    };
    Ok(CpuOutput {
        value,
        grad,
        per_element: (reduction == Reduction::None).then_some(per_row),
        nonfinite,
        lse: inputs.want_lse.then_some(lses),
        correct: inputs.want_accuracy.then_some(correct),
        per_class: None,
        target_grad: None,
    })
}
