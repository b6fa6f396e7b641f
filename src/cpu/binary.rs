//! Twins of `shaders/binary/*.wgsl`, generic over the float type.

use super::{Element, LossGrad, PointwiseLoss, Real};
use crate::losses::{Bce, BceWithLogits, Hinge, HingeEmbedding, SigmoidFocal, SoftMargin, SquaredHinge};

/// `ln(1 + e^x)` without overflow.
#[inline(always)]
pub(crate) fn softplus<F: Real>(x: F) -> F {
    x.max(F::zero()) + (-x.abs()).fast_exp().fast_ln_1p()
}

/// `1 / (1 + e^{-x})` without overflow.
#[inline(always)]
pub(crate) fn sigmoid<F: Real>(x: F) -> F {
    let e = (-x.abs()).fast_exp();
    let positive = F::one() / (F::one() + e);
    if x >= F::zero() {
        positive
    } else {
        e * positive
    }
}

/// `(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x))` from one `e^{-|x|}` and one
/// `ln(1 + e^{-|x|})`: the same bits as the four calls, a third of the transcendentals.
#[inline(always)]
pub(crate) fn logistic<F: Real>(x: F) -> (F, F, F, F) {
    let zero = F::zero();
    let e = (-x.abs()).fast_exp();
    let tail = e.fast_ln_1p();
    let big = F::one() / (F::one() + e);
    let small = e * big;
    let (sigmoid_x, sigmoid_neg) = if x >= zero { (big, small) } else { (small, big) };
    // sigmoid(-x) tests -x >= 0, which differs from x >= 0 only at x = 0 (both hold),
    // where big = small.
    let sigmoid_neg = if x == zero { big } else { sigmoid_neg };
    (x.max(zero) + tail, (-x).max(zero) + tail, sigmoid_x, sigmoid_neg)
}

// BCE on probabilities; log clamped at -100 and the gradient's denominator at 1e-12
// (the f32 value PyTorch uses), as `torch.nn.BCELoss`.
impl PointwiseLoss for Bce {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let floor = F::from(-100.0).unwrap();
        let one = F::one();
        // The shader's form: log x as log1p(x − 1) above ½ (x − 1 is exact there).
        let half = F::from(0.5).unwrap();
        let log_x = if x > half { (x - one).ln_1p() } else { x.ln() }.max(floor);
        let log_1mx = (-x).ln_1p().max(floor);
        let value = -(y * log_x + (one - y) * log_1mx);
        let grad = (x - y) / (x * (one - x)).max(F::from(1e-12f32).unwrap());
        LossGrad { value, grad, invalid: !(x >= F::zero() && x <= one) }
    }
}

// BCE on logits with `pos_weight`; zero-coefficient terms dropped (limit 0 at ±inf).
impl PointwiseLoss for BceWithLogits {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, e: &Element<F>) -> LossGrad<F> {
        let one = F::one();
        let py = e.pos_weight * y;
        let (softplus_x, softplus_neg, sigmoid_x, sigmoid_neg) = logistic(x);
        let positive = if py != F::zero() { py * softplus_neg } else { F::zero() };
        let negative = if y != one { (one - y) * softplus_x } else { F::zero() };
        // Not PyTorch's (p y + 1 − y) σ(x) − p y, which cancels as σ(x) → 1.
        let grad = (one - y) * sigmoid_x - py * sigmoid_neg;
        LossGrad::valid(positive + negative, grad)
    }
}

// `softplus(-y x)`, `-y sigmoid(-y x)`.
impl PointwiseLoss for SoftMargin {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let m = -y * x;
        LossGrad::valid(softplus(m), -y * sigmoid(m))
    }
}

// Sigmoid focal loss with `alpha` (< 0: none), `gamma`;
// `m = 1 − p_t` in the form that does not cancel (see the shader).
impl PointwiseLoss for SigmoidFocal {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let (alpha, gamma) = (F::from(self.alpha).unwrap(), F::from(self.gamma).unwrap());
        let (zero, one) = (F::zero(), F::one());
        let (softplus_x, softplus_neg, p, q) = logistic(x);
        let positive = if y != zero { y * softplus_neg } else { zero };
        let negative = if y != one { (one - y) * softplus_x } else { zero };
        let ce = positive + negative;
        let m = p * (one - y) + q * y;
        let (modulating, slope) = match (gamma != zero, m > zero) {
            (false, _) => (one, zero),
            (true, false) => (zero, zero),
            (true, true) => (m.powf(gamma), gamma * m.powf(gamma - one) * p * q * (one - y - y)),
        };
        let a_t = if alpha >= zero { alpha * y + (one - alpha) * (one - y) } else { one };
        // p − y as p (1 − y) − q y: no cancellation as p → 1 with y = 1.
        LossGrad::valid(a_t * modulating * ce, a_t * (modulating * (p * (one - y) - q * y) + slope * ce))
    }
}

// Hinge embedding with `margin`: `x` for y = 1, `max(0, margin − x)` for
// y = −1, both terms for other y (as PyTorch); derivative 0 at the kink.
impl PointwiseLoss for HingeEmbedding {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let (zero, one) = (F::zero(), F::one());
        let gap = F::from(self.margin).unwrap() - x;
        let (not_positive, not_negative) = (y != one, y != -one);
        // A select, not `max` (which drops a NaN input); a NaN target makes the loss NaN.
        let hinge = if gap <= zero { zero } else { gap };
        let value = (if not_positive { hinge } else { zero }) + if not_negative { x } else { zero };
        let value = if y.is_nan() { y } else { value };
        let slope = if gap > zero { -one } else { zero };
        let grad = (if not_positive { slope } else { zero }) + if not_negative { one } else { zero };
        LossGrad::valid(value, grad)
    }
}

// optax's hinge loss: `max(0, 1 − y x)`, derivative `−y` where the hinge is active and
// 0 at and beyond the kink (as `relu`). Selected on `gap <= 0`, as the shader, so that a
// NaN stays NaN (`max` would drop it).
impl PointwiseLoss for Hinge {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let gap = F::one() - y * x;
        let flat = gap <= F::zero();
        LossGrad::valid(if flat { F::zero() } else { gap }, if flat { F::zero() } else { -y })
    }
}

// The squared hinge: `max(0, 1 − y x)²`, derivative `−2 y max(0, 1 − y x)`.
impl PointwiseLoss for SquaredHinge {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let gap = F::one() - y * x;
        let hinge = if gap <= F::zero() { F::zero() } else { gap };
        LossGrad::valid(hinge * hinge, -(y + y) * hinge)
    }
}
