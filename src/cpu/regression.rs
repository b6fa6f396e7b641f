//! Twins of `shaders/regression/*.wgsl`, generic over the float type (f64: the
//! reference; f32: the fast CPU path). `d = x - y` throughout.

use super::{sign, Element, LossGrad, PointwiseLoss, Real};
use crate::losses::{Huber, LogCosh, Mse, SmoothL1, L1};

// `d²`, `2d`.
impl PointwiseLoss for Mse {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let d = x - y;
        LossGrad::valid(d * d, d + d)
    }
}

// `|d|`, `sign(d)` with sign(0) = 0 (PyTorch's subgradient).
impl PointwiseLoss for L1 {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let d = x - y;
        LossGrad::valid(d.abs(), sign(d))
    }
}

// Huber with `delta`.
impl PointwiseLoss for Huber {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let delta = F::from(self.delta).unwrap();
        let half = F::from(0.5).unwrap();
        let d = x - y;
        let a = d.abs();
        let value = if a <= delta { half * d * d } else { delta * (a - half * delta) };
        LossGrad::valid(value, d.max(-delta).min(delta))
    }
}

// Smooth L1 with `beta`; beta = 0 is L1.
impl PointwiseLoss for SmoothL1 {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let beta = F::from(self.beta).unwrap();
        let half = F::from(0.5).unwrap();
        let d = x - y;
        let a = d.abs();
        // Both branches computed, then selected: the loop vectorises (beta = 0 never
        // selects the quadratic side, whose 0/0 is discarded).
        let quadratic = a < beta;
        let value = if quadratic { half * d * d / beta } else { a - half * beta };
        let grad = if quadratic { d / beta } else { sign(d) };
        LossGrad::valid(value, grad)
    }
}

// `ln cosh d = |d| + ln(1 + e^{-2|d|}) - ln 2`, `tanh d`.
impl PointwiseLoss for LogCosh {
    #[inline(always)]
    fn eval<F: Real>(&self, x: F, y: F, _: &Element<F>) -> LossGrad<F> {
        let d = x - y;
        let a = d.abs();
        let two = F::from(2.0).unwrap();
        let half = F::from(0.5).unwrap();
        // Near 0 the difference below cancels; ln cosh d = ln(1 + 2 sinh²(d/2)) does not.
        let value = if a < half {
            (two * (half * d).sinh().powi(2)).ln_1p()
        } else {
            a + (-two * a).fast_exp().fast_ln_1p() - F::from(std::f64::consts::LN_2).unwrap()
        };
        LossGrad::valid(value, d.tanh())
    }
}
