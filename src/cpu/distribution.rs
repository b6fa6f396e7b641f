//! Twins of `shaders/distribution/*.wgsl`, generic over the float type.

use super::{Element, LossGrad, PointwiseLoss, Real};
use crate::losses::{Jsd, KlDiv};

// KL divergence term of input x = ln q and target y; `log_target` when y is a
// log-probability.
impl PointwiseLoss for KlDiv {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        if self.log_target {
            let p = y.exp();
            return LossGrad::valid(p * (y - x), -p);
        }
        let entropy_term = if y > F::zero() { y * y.ln() } else { F::zero() };
        LossGrad { value: entropy_term - y * x, grad: -y, invalid: y < F::zero() }
    }
}

/// `ln(e^a + e^b)`; `-inf` when both are.
#[inline(always)]
fn log_add_exp<F: Real>(a: F, b: F) -> F {
    if a == b {
        return a + F::from(std::f64::consts::LN_2).unwrap();
    }
    a.max(b) + (-(a - b).abs()).fast_exp().fast_ln_1p()
}

// Liger-Kernel's generalised JSD of student log-probabilities x and teacher y with
// `beta` (0: forward KL, 1: reverse KL); see the shader. Terms are dropped only where
// their probability is exactly 0, so a NaN reaches the loss.
impl PointwiseLoss for Jsd {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let (zero, one, beta) = (F::zero(), F::one(), F::from(self.beta).unwrap());
        let (p, q) = (y.exp(), x.exp());
        if beta == zero {
            return LossGrad::valid(if p == zero { zero } else { p * (y - x) }, -p);
        }
        if beta == one {
            let value = if q == zero { zero } else { q * (x - y) };
            return LossGrad::valid(value, value + q);
        }
        let log_m = log_add_exp(y + beta.ln(), x + (-beta).ln_1p());
        let teacher = if p == zero { zero } else { beta * p * (y - log_m) };
        let student = if q == zero { zero } else { (one - beta) * q * (x - log_m) };
        LossGrad::valid(teacher + student, student)
    }

    // The teacher's gradient, the student's mirrored (β ↔ 1 − β, x ↔ y): β = 0 gives
    // `p (y − x) + p`, β = 1 gives `−q`, otherwise the teacher's term `β p (y − ln m)`.
    #[inline(always)]
    fn eval_target<F: Real>(&self, x: F, y: F, _: &Element<F>, _: &LossGrad<F>) -> F {
        let (zero, one, beta) = (F::zero(), F::one(), F::from(self.beta).unwrap());
        let (p, q) = (y.exp(), x.exp());
        if beta == zero {
            return (if p == zero { zero } else { p * (y - x) }) + p;
        }
        if beta == one {
            return -q;
        }
        let log_m = log_add_exp(y + beta.ln(), x + (-beta).ln_1p());
        if p == zero {
            zero
        } else {
            beta * p * (y - log_m)
        }
    }
}
