//! Twins of `shaders/distribution/*.wgsl`, generic over the float type.

use super::{Element, LossGrad, PointwiseLoss, Real};

/// KL divergence term of input x = ln q and target y; `params[0] = 1` when y is a
/// log-probability.
pub struct KlDiv;
impl PointwiseLoss for KlDiv {
    #[inline(always)]
    fn eval<F: Real>(x: F, y: F, e: &Element<F>) -> LossGrad<F> {
        if e.params[0] != F::zero() {
            let p = y.exp();
            return LossGrad::valid(p * (y - x), -p);
        }
        let entropy_term = if y > F::zero() { y * y.ln() } else { F::zero() };
        LossGrad { value: entropy_term - y * x, grad: -y, invalid: y < F::zero() }
    }
}
