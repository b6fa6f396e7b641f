//! Twins of `shaders/binary/*.wgsl`.

use super::{Element, LossGrad};

/// `ln(1 + e^x)` without overflow.
pub(crate) fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `1 / (1 + e^{-x})` without overflow.
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// BCE on probabilities; log clamped at -100 and the gradient's denominator at 1e-12
/// (the f32 value PyTorch uses), as `torch.nn.BCELoss`.
pub fn bce(x: f64, y: f64, _: &Element) -> LossGrad {
    let log_x = x.ln().max(-100.0);
    let log_1mx = (-x).ln_1p().max(-100.0);
    let value = -(y * log_x + (1.0 - y) * log_1mx);
    let grad = (x - y) / (x * (1.0 - x)).max(1e-12f32 as f64);
    LossGrad { value, grad, invalid: !(0.0..=1.0).contains(&x) }
}

/// BCE on logits with `pos_weight`; zero-coefficient terms dropped (limit 0 at ±inf).
pub fn bce_with_logits(x: f64, y: f64, e: &Element) -> LossGrad {
    let py = e.pos_weight * y;
    let positive = if py != 0.0 { py * softplus(-x) } else { 0.0 };
    let negative = if y != 1.0 { (1.0 - y) * softplus(x) } else { 0.0 };
    let grad = (py + 1.0 - y) * sigmoid(x) - py;
    LossGrad::valid(positive + negative, grad)
}

/// `softplus(-y x)`, `-y sigmoid(-y x)`.
pub fn soft_margin(x: f64, y: f64, _: &Element) -> LossGrad {
    let m = -y * x;
    LossGrad::valid(softplus(m), -y * sigmoid(m))
}
