//! Twins of `shaders/regression/*.wgsl`. `d = x - y` throughout.

use super::{Element, LossGrad};

/// `d²`, `2d`.
pub fn mse(x: f64, y: f64, _: &Element) -> LossGrad {
    let d = x - y;
    LossGrad::valid(d * d, 2.0 * d)
}

/// `|d|`, `sign(d)` with sign(0) = 0 (PyTorch's subgradient).
pub fn l1(x: f64, y: f64, _: &Element) -> LossGrad {
    let d = x - y;
    LossGrad::valid(d.abs(), sign(d))
}

/// Huber with `delta = params[0]`.
pub fn huber(x: f64, y: f64, e: &Element) -> LossGrad {
    let delta = e.params[0];
    let d = x - y;
    let a = d.abs();
    let value = if a <= delta { 0.5 * d * d } else { delta * (a - 0.5 * delta) };
    LossGrad::valid(value, d.clamp(-delta, delta))
}

/// Smooth L1 with `beta = params[0]`; beta = 0 is L1.
pub fn smooth_l1(x: f64, y: f64, e: &Element) -> LossGrad {
    let beta = e.params[0];
    let d = x - y;
    let a = d.abs();
    if a < beta {
        LossGrad::valid(0.5 * d * d / beta, d / beta)
    } else {
        LossGrad::valid(a - 0.5 * beta, sign(d))
    }
}

/// `ln cosh d = |d| + ln(1 + e^{-2|d|}) - ln 2`, `tanh d`.
pub fn log_cosh(x: f64, y: f64, _: &Element) -> LossGrad {
    let d = x - y;
    let a = d.abs();
    // Near 0 the difference below cancels; ln cosh d = ln(1 + 2 sinh²(d/2)) does not.
    let value = if a < 0.5 {
        (2.0 * (0.5 * d).sinh().powi(2)).ln_1p()
    } else {
        a + (-2.0 * a).exp().ln_1p() - std::f64::consts::LN_2
    };
    LossGrad::valid(value, d.tanh())
}

/// WGSL's `sign`: 0 at 0.
pub(crate) fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}
