//! The CPU side of every loss, written in the shape of the shaders: the same
//! per-element function, the same driver loop, so a disagreement points at one line.
//!
//! Each loss's function is generic over the float type and instantiated twice:
//! - f64, the **reference** ([`compute`]): inputs are the same f32 values the GPU reads,
//!   widened to f64; the exact-as-f64 answer the GPU's f32 arithmetic is compared with;
//! - f32, the **fast CPU path** ([`compute_fast`]): f32 arithmetic and gradients, loss
//!   sums accumulated in f64 per block, all cores. This is what benchmarks time.

mod binary;
mod distribution;
pub(crate) mod margin;
pub(crate) mod pointwise;
mod regression;
pub(crate) mod softmax;

pub(crate) use margin::MarginLoss;
pub(crate) use softmax::LabelFunction;

use num_traits::Float;

use crate::error::Result;
use crate::losses::{Inputs, Loss, Reduction, Target};
use crate::DType;

/// The float types the CPU twins are instantiated for: f64 (the reference) and f32 (the
/// fast path). Adds what `Float` lacks for the fast path: an exponential that vectorises.
pub(crate) trait Real: Float + Send + Sync + 'static {
    /// `e^self`. f64: `f64::exp`, so the reference is as exact as before. f32: a
    /// branch-free Cephes polynomial (under 1 ulp from -87 to 88.7, 0 below -104, inf
    /// above 88.72, NaN kept) that LLVM vectorises, where `f32::exp` is a libm call.
    fn fast_exp(self) -> Self;
    /// `ln(1 + self)`. f64: `f64::ln_1p`. f32: Cephes' `logf` polynomial on `u = 1 + x`
    /// corrected by `x / (u - 1)` (within 2 ulp, tested), branch-free so that LLVM
    /// vectorises the logistic losses' softplus, where `f32::ln_1p` is a libm call.
    fn fast_ln_1p(self) -> Self;
}

impl Real for f64 {
    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
    #[inline(always)]
    fn fast_ln_1p(self) -> f64 {
        self.ln_1p()
    }
}

impl Real for f32 {
    #[inline(always)]
    fn fast_exp(self) -> f32 {
        exp_f32(self)
    }
    #[inline(always)]
    fn fast_ln_1p(self) -> f32 {
        ln_1p_f32(self)
    }
}

/// `ln(1 + x)` in f32 without a libm call. `u = 1 + x` rounds; `ln u · x / (u - 1)`
/// undoes that rounding to first order (Goldberg's trick), and `ln u` is Cephes' `logf`:
/// `u = m 2^e` with m in [√½, √2), `ln m` by a degree-8 polynomial in m - 1, `e ln 2` in
/// two parts. `-1` gives `-inf`, below it NaN, `inf` stays, NaN stays.
#[inline(always)]
fn ln_1p_f32(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let u = 1.0 + x;
    let bits = u.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 126;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    if m < SQRT_HALF {
        e -= 1;
        m = m + m - 1.0;
    } else {
        m -= 1.0;
    }
    let z = m * m;
    let mut p = 7.037_683_6e-2f32;
    p = p * m - 1.151_461e-1;
    p = p * m + 1.167_699_9e-1;
    p = p * m - 1.242_014_1e-1;
    p = p * m + 1.424_932_3e-1;
    p = p * m - 1.666_805_8e-1;
    p = p * m + 2.000_071_4e-1;
    p = p * m - 2.499_999_4e-1;
    p = p * m + 3.333_333e-1;
    let e = e as f32;
    let ln_u = m + (p * m * z - 2.121_944_4e-4 * e - 0.5 * z) + 0.693_359_4 * e;
    let corrected = if u == 1.0 { x } else { ln_u * (x / (u - 1.0)) };
    if x.is_nan() || u < 0.0 {
        f32::NAN
    } else if u == 0.0 {
        f32::NEG_INFINITY
    } else if u == f32::INFINITY {
        f32::INFINITY
    } else {
        corrected
    }
}

/// `e^x` in f32 without a libm call: `x = k ln 2 + r`, `e^r` by Cephes' degree-6
/// polynomial, `2^k` built from exponent bits in two halves so that gradual underflow
/// down to -104 stays right.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    // 1.5 * 2^23: adding it rounds to the nearest integer, without SSE4.1's `roundps`.
    const ROUNDER: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let clamped = x.clamp(-104.0, 88.8);
    let shifted = clamped * std::f32::consts::LOG2_E + ROUNDER;
    let k = shifted - ROUNDER;
    let k_bits = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let r = clamped - k * LN2_HI - k * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let half = k_bits >> 1;
    let two_to = |e: i32| f32::from_bits(((e + 127) << 23) as u32);
    let value = e_r * two_to(half) * two_to(k_bits - half);
    if x > 88.722_83 {
        f32::INFINITY
    } else if x < -104.0 {
        0.0
    } else {
        value
    }
}

/// Runs `work` compiled for AVX-512 (F, VL), else AVX2 + FMA, when the CPU has them (as PyTorch dispatches its
/// CPU kernels at run time). `work` and what it calls must be `#[inline(always)]` (or
/// small) to be compiled into that instantiation. Rust never contracts `a * b + c` into an
/// FMA on its own, so both instantiations give the same bits.
#[inline(always)]
pub(crate) fn with_best_isa<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        unsafe fn avx512<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl") {
            // SAFETY: the CPU has the features the function was compiled for.
            return unsafe { avx512(work) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features the function was compiled for.
            return unsafe { avx2(work) };
        }
    }
    work()
}

/// The loss and derivative of one element of an elementwise loss, in f64, from its CPU
/// twin (the reference tests differentiate it); `None` for row-wise losses. `pos_weight`
/// is the element's `pos_weight` (1 without one).
pub fn element(loss: &Loss, x: f64, y: f64, pos_weight: f64) -> Option<LossGrad> {
    loss.definition().element(x, y, &Element { pos_weight })
}

/// Whether `(x, y)` is within 1e-3 of a kink of elementwise loss `loss`, where its
/// derivative jumps and finite differences do not measure it (false for row-wise losses).
/// For the finite-difference tests.
#[cfg(feature = "cli")]
pub fn near_kink(loss: &Loss, x: f64, y: f64) -> bool {
    loss.definition().near_kink(x, y)
}

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

/// What one element's function sees besides `x`, `y` and the loss's own parameters:
/// the broadcast operands at that element.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Element<F = f64> {
    /// `pos_weight` at this element (1 when absent).
    pub(crate) pos_weight: F,
}

/// One elementwise loss: the twin of a shader's `pointwise`, for any float type,
/// implemented on the loss's parameter struct (`self.delta` is the shader's
/// `loss_params.delta`).
pub(crate) trait PointwiseLoss {
    /// Loss and d(loss)/dx of one element.
    fn eval<F: Real>(&self, x: F, y: F, element: &Element<F>) -> LossGrad<F>;

    /// d(loss)/dy of one element, for losses whose definition declares a differentiable
    /// target (`TargetGrad`), given `eval`'s result `r`: by default `−r.grad`, the rule of
    /// a loss of `x − y`; losses with a gradient of their own (`TargetGrad::Own`) override
    /// it, as their shader's `pointwise_target`.
    #[inline(always)]
    fn eval_target<F: Real>(&self, _x: F, _y: F, _element: &Element<F>, r: &LossGrad<F>) -> F {
        -r.grad
    }
}

/// WGSL's `sign`: 0 at 0 (and at NaN). Two selects rather than an if-chain, so that
/// loops calling it vectorise.
/// Non-finite entries of a row-wise loss's class weights: counted once per call, as the
/// kernels count them (they reach the loss of every row of their class).
pub(crate) fn nonfinite_class_weights(weight: Option<&[f32]>) -> u64 {
    weight.map_or(0, |w| w.iter().filter(|v| !v.is_finite()).count() as u64)
}

pub(crate) fn sign<F: Float>(v: F) -> F {
    let positive = if v > F::zero() { F::one() } else { F::zero() };
    let negative = if v < F::zero() { F::one() } else { F::zero() };
    positive - negative
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
    /// Elementwise losses: column sums of the element losses over the last dimension,
    /// summed in f64, when asked for.
    pub per_class: Option<Vec<f64>>,
    /// d(loss)/d(target), when asked for.
    pub target_grad: Option<Vec<F>>,
}

/// Elements per block of parallel CPU work. Blocks are fixed by the input, not by the
/// number of threads, and their partial sums are added in block order, so the result is
/// the same on any machine.
pub(crate) const BLOCK_ELEMENTS: usize = 1 << 16;

/// Runs `work` on every job, on all cores (rayon's persistent pool: no thread is
/// spawned per call), and returns the results in job order.
pub(crate) fn parallel<J: Send, T: Send>(jobs: Vec<J>, work: impl Fn(J) -> T + Sync) -> Vec<T> {
    use rayon::prelude::*;
    if jobs.len() <= 1 {
        return jobs.into_iter().map(work).collect();
    }
    jobs.into_par_iter().map(&work).collect()
}

/// Class weights from `labels` (ignored and out-of-range labels skipped), the f64 twin of
/// [`crate::ClassWeights`]: per class the count `n_c`, or with `ema = Some((state, m))`
/// first `f_c ← m f_c + (1 − m) n_c` (state updated) and `n_c = f_c`; then
/// `raw_c · K / Σ raw` over the K present classes, absent classes 0.
pub fn class_weights(
    labels: &[i32],
    classes: usize,
    ignore_index: i32,
    scheme: crate::WeightScheme,
    ema: Option<(&mut [f64], f64)>,
) -> Vec<f64> {
    let mut counts = vec![0.0f64; classes];
    for &label in labels {
        if label != ignore_index && label >= 0 && (label as usize) < classes {
            counts[label as usize] += 1.0;
        }
    }
    if let Some((state, momentum)) = ema {
        run_counts(state, &mut counts, momentum);
    }
    let raw: Vec<f64> = counts.iter().map(|&n| scheme.raw(n)).collect();
    let present = counts.iter().filter(|&&n| n > 0.0).count() as f64;
    let total: f64 = raw.iter().sum();
    let scale = if total > 0.0 { present / total } else { 0.0 };
    raw.iter().map(|r| r * scale).collect()
}

/// The running counts of the class-weight twins: `f ← m f + (1 − m) n`, then `n = f`.
fn run_counts(state: &mut [f64], counts: &mut [f64], momentum: f64) {
    for (f, n) in state.iter_mut().zip(counts) {
        *f = momentum * *f + (1.0 - momentum) * *n;
        *n = *f;
    }
}

/// BCE `pos_weight` from multi-hot `targets` (`classes` per row, ≥ 0.5 is a positive),
/// the f64 twin of [`crate::Gpu::positive_weights`]: per class `P_c` positives and
/// `N_c = rows − P_c` negatives, with `ema = Some((state, m))` both running first
/// (`state` holds positives then negatives); `raw(P_c) / raw(N_c)`, 1 when either is 0.
pub fn positive_weights(
    targets: &[f32],
    classes: usize,
    scheme: crate::WeightScheme,
    ema: Option<(&mut [f64], f64)>,
) -> Vec<f64> {
    let rows = targets.len() / classes.max(1);
    let mut positives = vec![0.0f64; classes];
    for (i, &t) in targets.iter().enumerate() {
        if t >= 0.5 {
            positives[i % classes] += 1.0;
        }
    }
    let mut negatives: Vec<f64> = positives.iter().map(|p| rows as f64 - p).collect();
    if let Some((state, momentum)) = ema {
        let (running_positives, running_negatives) = state.split_at_mut(classes);
        run_counts(running_positives, &mut positives, momentum);
        run_counts(running_negatives, &mut negatives, momentum);
    }
    positives
        .iter()
        .zip(&negatives)
        .map(|(&p, &n)| if p > 0.0 && n > 0.0 { scheme.raw(p) / scheme.raw(n) } else { 1.0 })
        .collect()
}

/// Runs `work` on the operands as the GPU stores them: input and target values rounded
/// to `inputs.dtype`.
fn with_stored_values<R>(inputs: &Inputs, work: impl FnOnce(&Inputs) -> R) -> R {
    if inputs.dtype == DType::F32 {
        return work(inputs);
    }
    let round = |values: &[f32]| values.iter().map(|&v| inputs.dtype.round(v)).collect::<Vec<_>>();
    let input = round(inputs.input);
    let target = match inputs.target {
        Target::Values(t) => Some(round(t)),
        Target::Labels(_) => None,
    };
    let mut stored = inputs.clone();
    stored.input = &input;
    if let Some(target) = &target {
        stored.target = Target::Values(target);
    }
    work(&stored)
}

/// Computes `loss` on the CPU in f64: the reference. Same validation and errors as
/// the GPU path. With a half-precision `dtype` it computes from the same rounded input
/// and target the GPU reads, and returns the exact (unrounded) gradient.
pub fn compute(loss: impl Into<Loss>, reduction: Reduction, inputs: &Inputs) -> Result<CpuOutput> {
    let loss = loss.into();
    let spec = crate::losses::check_inputs(&loss, reduction, inputs)?;
    let run = |reduction: Reduction, inputs: &Inputs| {
        with_stored_values(inputs, |inputs| loss.definition().cpu_reference(&spec, reduction, inputs))
    };
    let mut out = run(reduction, inputs)?;
    out.per_class = per_class(inputs, |plain| Ok(run(Reduction::None, plain)?.per_element))?;
    Ok(out)
}

/// The breakdown of [`Inputs::want_per_class`]: the element losses (`element_losses` at
/// reduction `none`, no upstream) summed per class of the last dimension, in f64.
fn per_class<F: Real>(
    inputs: &Inputs,
    element_losses: impl FnOnce(&Inputs) -> Result<Option<Vec<F>>>,
) -> Result<Option<Vec<f64>>> {
    if !inputs.want_per_class {
        return Ok(None);
    }
    let mut plain = inputs.clone();
    plain.upstream = None;
    plain.want_per_class = false;
    let losses = element_losses(&plain)?.unwrap_or_default();
    let columns = inputs.resolved_shape().last_dim().max(1);
    let mut sums = vec![0.0f64; columns];
    for (i, loss) in losses.iter().enumerate() {
        sums[i % columns] += loss.to_f64().unwrap_or(f64::NAN);
    }
    Ok(Some(sums))
}

/// Computes `loss` on the CPU in f32 with f64 sums, on all cores: the fast CPU path,
/// returning what the GPU returns (the gradient rounded to `inputs.dtype`). Same
/// validation and errors as the other paths.
pub fn compute_fast(loss: impl Into<Loss>, reduction: Reduction, inputs: &Inputs) -> Result<crate::Output> {
    let loss = loss.into();
    let spec = crate::losses::check_inputs(&loss, reduction, inputs)?;
    let run = |reduction: Reduction, inputs: &Inputs| {
        with_stored_values(inputs, |inputs| loss.definition().cpu_fast(&spec, reduction, inputs))
    };
    let out = run(reduction, inputs)?;
    let per_class = per_class(inputs, |plain| Ok(run(Reduction::None, plain)?.per_element))?;
    let grad = match inputs.dtype {
        DType::F32 => out.grad,
        dtype => out.grad.into_iter().map(|g| dtype.round(g)).collect(),
    };
    Ok(crate::Output {
        value: out.value as f32,
        grad,
        per_element: out.per_element,
        nonfinite: out.nonfinite as u32,
        lse: out.lse,
        correct: out.correct.map(|c| c as u32),
        per_class: per_class.map(|sums| sums.into_iter().map(|v| v as f32).collect()),
        target_grad: out.target_grad.map(|g| match inputs.dtype {
            DType::F32 => g,
            dtype => g.into_iter().map(|v| dtype.round(v)).collect(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    #[test]
    fn polynomial_ln_1p_is_within_two_ulp_of_exact() {
        // Every 97th f32 from -1 + 2^-24 up to 2^20 (and the softplus range [0, 1]
        // densely): the error against the f64 ln_1p, in ulps of the f32 result.
        let ulps = |x: f32| {
            let got = super::ln_1p_f32(x) as f64;
            let exact = (x as f64).ln_1p();
            let ulp = (exact as f32).abs().max(f32::MIN_POSITIVE) as f64 * f32::EPSILON as f64;
            (got - exact).abs() / ulp
        };
        let mut worst = 0.0f64;
        let start = (-1.0f32 + f32::EPSILON / 2.0).to_bits();
        let mut bits = start;
        while bits > 0x8000_0000 {
            worst = worst.max(ulps(f32::from_bits(bits)));
            bits = bits.saturating_sub(97);
        }
        let mut x = 0.0f32;
        while x < 1_048_576.0 {
            worst = worst.max(ulps(x));
            x = f32::from_bits(x.to_bits() + 97).max(f32::MIN_POSITIVE);
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(super::ln_1p_f32(-1.0), f32::NEG_INFINITY);
        assert!(super::ln_1p_f32(-1.5).is_nan() && super::ln_1p_f32(f32::NAN).is_nan());
        assert_eq!(super::ln_1p_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(super::ln_1p_f32(0.0).to_bits(), 0);
        assert_eq!(super::ln_1p_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn polynomial_exp_is_within_one_ulp_of_exact() {
        // Every 97th f32 from -110 to 89 (about 10 million values).
        let mut worst_ulps = 0.0f64;
        let mut bits = (-110.0f32).to_bits();
        loop {
            let x = f32::from_bits(bits);
            if x >= 89.0 {
                break;
            }
            let exact = (x as f64).exp();
            let got = exp_f32(x);
            let rounded = exact as f32;
            if rounded.is_infinite() {
                assert_eq!(got, f32::INFINITY, "exp({x})");
            } else if rounded >= f32::MIN_POSITIVE {
                worst_ulps = worst_ulps.max((got as f64 - exact).abs() / (rounded as f64 * f32::EPSILON as f64));
            } else {
                // Subnormal results: within two of the smallest subnormal steps.
                assert!((got as f64 - exact).abs() <= 2.0 * 1.4e-45, "exp({x}) = {got}, exact {exact}");
            }
            bits = if x < 0.0 { bits - 97 } else { bits + 97 };
            if x < 0.0 && x > -1e-30 {
                bits = 0;
            }
        }
        assert!(worst_ulps < 1.0, "worst error {worst_ulps} ulp");
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(0.0), 1.0);
        // The largest finite result, and the first overflow.
        assert!(exp_f32(88.72283).is_finite());
        assert_eq!(exp_f32(88.722_84), f32::INFINITY);
    }
}
