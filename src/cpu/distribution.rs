//! Twins of `shaders/distribution/*.wgsl`.

use super::{Element, LossGrad};

/// KL divergence term of input x = ln q and target y; `params[0] = 1` when y is a
/// log-probability.
pub fn kl_div(x: f64, y: f64, e: &Element) -> LossGrad {
    if e.params[0] != 0.0 {
        let p = y.exp();
        return LossGrad::valid(p * (y - x), -p);
    }
    let entropy_term = if y > 0.0 { y * y.ln() } else { 0.0 };
    LossGrad { value: entropy_term - y * x, grad: -y, invalid: y < 0.0 }
}
