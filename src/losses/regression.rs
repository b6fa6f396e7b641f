//! Regression losses: `d = x − y` of a prediction `x` and a target `y`, element by
//! element; the target's gradient is the input's negated (asked for with
//! `Inputs::with_target_grad` / `Bindings::target_grad`, written in the same pass).
//! Shaders `shaders/regression/*.wgsl`, twins `src/cpu/regression.rs`.

use super::definition::{define_loss, pointwise_twin, Definition, Twin};
use super::{Loss, Spec, TargetGrad};

define_loss! {
    /// `d²`, gradient `2d`. `torch.nn.MSELoss`.
    Mse, mse {}
}

impl Definition for Mse {
    fn spec(&self) -> Spec {
        Spec { target_grad: TargetGrad::Negated, ..Spec::pointwise("mse", "torch.nn.MSELoss", "regression/mse") }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
}

define_loss! {
    /// `|d|`, gradient `sign(d)` (0 at 0, PyTorch's subgradient). `torch.nn.L1Loss`.
    L1, l1 {}
}

impl Definition for L1 {
    fn spec(&self) -> Spec {
        Spec { target_grad: TargetGrad::Negated, ..Spec::pointwise("l1", "torch.nn.L1Loss", "regression/l1") }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn near_kink(&self, x: f64, y: f64) -> bool {
        (x - y).abs() < 1e-3
    }
}

define_loss! {
    /// `d²/2` for `|d| ≤ δ`, else `δ(|d| − δ/2)`; gradient `clamp(d, −δ, δ)`.
    /// `torch.nn.HuberLoss(delta)`.
    Huber, huber {
        /// Threshold between the quadratic and linear parts, > 0 (PyTorch's default 1).
        delta: f32 = 1.0, "finite and > 0", |v| v.is_finite() && v > 0.0;
    }
}

impl Definition for Huber {
    fn spec(&self) -> Spec {
        Spec {
            target_grad: TargetGrad::Negated,
            ..Spec::pointwise("huber", "torch.nn.HuberLoss(delta)", "regression/huber")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn near_kink(&self, x: f64, y: f64) -> bool {
        ((x - y).abs() - self.delta as f64).abs() < 1e-3
    }
}

define_loss! {
    /// `d²/(2β)` for `|d| < β`, else `|d| − β/2` (β = 0 is L1).
    /// `torch.nn.SmoothL1Loss(beta)`.
    SmoothL1, smooth_l1 {
        /// Threshold between the quadratic and linear parts, ≥ 0 (PyTorch's default 1).
        beta: f32 = 1.0, "finite and >= 0", |v| v.is_finite() && v >= 0.0;
    }
}

impl Definition for SmoothL1 {
    fn spec(&self) -> Spec {
        Spec {
            target_grad: TargetGrad::Negated,
            ..Spec::pointwise("smooth_l1", "torch.nn.SmoothL1Loss(beta)", "regression/smooth_l1")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn near_kink(&self, x: f64, y: f64) -> bool {
        let a = (x - y).abs();
        a < 1e-3 || (a - self.beta as f64).abs() < 1e-3
    }
}

define_loss! {
    /// `ln cosh(d)`, gradient `tanh(d)`. `optax.log_cosh` (optax leaves it unreduced;
    /// `mean`/`sum` reduce it as the others).
    LogCosh, log_cosh {}
}

impl Definition for LogCosh {
    fn spec(&self) -> Spec {
        Spec {
            target_grad: TargetGrad::Negated,
            ..Spec::pointwise("log_cosh", "optax.log_cosh", "regression/log_cosh")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
}

/// The family's registry entries.
pub(super) fn registry() -> Vec<Loss> {
    vec![
        Loss::mse().into(),
        Loss::l1().into(),
        Loss::huber().delta(0.5).into(),
        Loss::smooth_l1().beta(0.25).into(),
        Loss::log_cosh().into(),
    ]
}
