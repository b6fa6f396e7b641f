//! Twins of `shaders/binary/*.wgsl`, generic over the float type.

use num_traits::Float;

use super::{Element, LossGrad, PointwiseLoss};

/// `ln(1 + e^x)` without overflow.
pub(crate) fn softplus<F: Float>(x: F) -> F {
    x.max(F::zero()) + (-x.abs()).exp().ln_1p()
}

/// `1 / (1 + e^{-x})` without overflow.
pub(crate) fn sigmoid<F: Float>(x: F) -> F {
    if x >= F::zero() {
        F::one() / (F::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (F::one() + e)
    }
}

/// BCE on probabilities; log clamped at -100 and the gradient's denominator at 1e-12
/// (the f32 value PyTorch uses), as `torch.nn.BCELoss`.
pub struct Bce;
impl PointwiseLoss for Bce {
    fn eval<F: Float>(x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let floor = F::from(-100.0).unwrap();
        let one = F::one();
        let log_x = x.ln().max(floor);
        let log_1mx = (-x).ln_1p().max(floor);
        let value = -(y * log_x + (one - y) * log_1mx);
        let grad = (x - y) / (x * (one - x)).max(F::from(1e-12f32).unwrap());
        LossGrad { value, grad, invalid: !(x >= F::zero() && x <= one) }
    }
}

/// BCE on logits with `pos_weight`; zero-coefficient terms dropped (limit 0 at ±inf).
pub struct BceWithLogits;
impl PointwiseLoss for BceWithLogits {
    fn eval<F: Float>(x: F, y: F, e: &Element<F>) -> LossGrad<F> {
        let one = F::one();
        let py = e.pos_weight * y;
        let positive = if py != F::zero() { py * softplus(-x) } else { F::zero() };
        let negative = if y != one { (one - y) * softplus(x) } else { F::zero() };
        let grad = (py + one - y) * sigmoid(x) - py;
        LossGrad::valid(positive + negative, grad)
    }
}

/// `softplus(-y x)`, `-y sigmoid(-y x)`.
pub struct SoftMargin;
impl PointwiseLoss for SoftMargin {
    fn eval<F: Float>(x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let m = -y * x;
        LossGrad::valid(softplus(m), -y * sigmoid(m))
    }
}
