//! Binary and margin losses on one score per element: probabilities, logits or scores
//! against targets in [0, 1] or ±1. Shaders `shaders/binary/*.wgsl`, twins
//! `src/cpu/binary.rs`.

use super::definition::{define_loss, pointwise_twin, Definition, Twin};
use super::{Domain, Loss, Spec};

define_loss! {
    /// Binary cross-entropy on probabilities `x ∈ [0, 1]`:
    /// `−w (y max(ln x, −100) + (1 − y) max(ln(1 − x), −100))`, gradient as PyTorch's
    /// `(x − y) / max(x(1 − x), 1e-12)`. Takes `weight`. `torch.nn.BCELoss`.
    /// Inputs outside [0, 1] are an [`crate::Error::OutOfDomain`].
    Bce, bce {}
}

impl Definition for Bce {
    fn spec(&self) -> Spec {
        Spec {
            input_domain: Domain::Probability,
            target_domain: Domain::Probability,
            takes_weight: true,
            invalid_means: Some(("input", "[0, 1]")),
            ..Spec::pointwise("bce", "torch.nn.BCELoss", "binary/bce")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
}

define_loss! {
    /// Binary cross-entropy on logits: `w (p y softplus(−x) + (1 − y) softplus(x))` with
    /// `pos_weight` `p` broadcast over the last dimension. Takes `weight` and
    /// `pos_weight`. Finite at logits of ±1e4; at ±inf with the matching hard label it
    /// gives the limit 0 where PyTorch gives NaN. The gradient is formed as
    /// `(1 − y) σ(x) − p y σ(−x)`, which does not cancel as σ(x) → 1 (PyTorch's
    /// `(p y + 1 − y) σ(x) − p y` does). `torch.nn.BCEWithLogitsLoss`.
    BceWithLogits, bce_with_logits {}
}

impl Definition for BceWithLogits {
    fn spec(&self) -> Spec {
        Spec {
            target_domain: Domain::Probability,
            takes_weight: true,
            takes_pos_weight: true,
            ..Spec::pointwise("bce_with_logits", "torch.nn.BCEWithLogitsLoss", "binary/bce_with_logits")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
}

define_loss! {
    /// `ln(1 + exp(−y x))` for `y ∈ {−1, 1}`. `torch.nn.SoftMarginLoss`.
    SoftMargin, soft_margin {}
}

impl Definition for SoftMargin {
    fn spec(&self) -> Spec {
        Spec {
            target_domain: Domain::Sign,
            ..Spec::pointwise("soft_margin", "torch.nn.SoftMarginLoss", "binary/soft_margin")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
}

define_loss! {
    /// Hinge embedding: `x` for `y = 1`, `max(0, margin − x)` for `y = −1` (other y: both
    /// terms, as PyTorch); derivative 0 at `x = margin`. `torch.nn.HingeEmbeddingLoss`.
    HingeEmbedding, hinge_embedding {
        /// The margin (PyTorch's default 1).
        margin: f32 = 1.0, "finite", |v| v.is_finite();
    }
}

impl Definition for HingeEmbedding {
    fn spec(&self) -> Spec {
        Spec {
            target_domain: Domain::Sign,
            ..Spec::pointwise("hinge_embedding", "torch.nn.HingeEmbeddingLoss", "binary/hinge_embedding")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn near_kink(&self, x: f64, _y: f64) -> bool {
        // The kink is at x = margin, whatever y.
        (x - self.margin as f64).abs() < 1e-3
    }
}

define_loss! {
    /// Sigmoid focal loss (Lin et al. 2017) on logits and targets in [0, 1]:
    /// `a_t (1 − p_t)^γ BCEWithLogits(x, y)` with `p = σ(x)`, `p_t = p y + (1 − p)(1 − y)`,
    /// `a_t = α y + (1 − α)(1 − y)`, or `a_t = 1` when `alpha < 0`; `gamma = 0` is BCE with
    /// logits. Takes `weight`. `torchvision.ops.sigmoid_focal_loss(alpha, gamma)`.
    SigmoidFocal, sigmoid_focal {
        /// Weight of positives in [0, 1]; negative disables the weighting (torchvision's
        /// default 0.25).
        alpha: f32 = 0.25, "finite (negative: no weighting)", |v| v.is_finite();
        /// Focusing exponent, ≥ 0 (torchvision's default 2).
        gamma: f32 = 2.0, "finite and >= 0", |v| v.is_finite() && v >= 0.0;
    }
}

impl Definition for SigmoidFocal {
    fn spec(&self) -> Spec {
        Spec {
            target_domain: Domain::Probability,
            takes_weight: true,
            ..Spec::pointwise("sigmoid_focal", "torchvision.ops.sigmoid_focal_loss", "binary/sigmoid_focal")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        // No alpha weighting with a fractional gamma (m^(gamma-1) grows as m -> 0), and
        // gamma = 0 (BCE with logits times alpha_t).
        vec![self.into(), self.alpha(-1.0).gamma(0.5).into(), self.alpha(0.25).gamma(0.0).into()]
    }
}

define_loss! {
    /// Hinge loss on scores and targets `y ∈ {−1, 1}`: `max(0, 1 − y x)`, derivative `−y`
    /// where `y x < 1` and 0 at and beyond the kink (as `relu`; JAX splits the tie ½–½).
    /// `optax.hinge_loss`.
    Hinge, hinge {}
}

impl Definition for Hinge {
    fn spec(&self) -> Spec {
        Spec { target_domain: Domain::Sign, ..Spec::pointwise("hinge", "optax.hinge_loss", "binary/hinge") }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
    fn near_kink(&self, x: f64, y: f64) -> bool {
        (1.0 - x * y).abs() < 1e-3
    }
}

define_loss! {
    /// Squared hinge loss on scores and targets `y ∈ {−1, 1}`: `max(0, 1 − y x)²`,
    /// derivative `−2 y max(0, 1 − y x)`. optax's `hinge_loss` squared (Keras'
    /// `SquaredHinge` with ±1 targets).
    SquaredHinge, squared_hinge {}
}

impl Definition for SquaredHinge {
    fn spec(&self) -> Spec {
        Spec {
            target_domain: Domain::Sign,
            ..Spec::pointwise("squared_hinge", "optax.hinge_loss squared", "binary/squared_hinge")
        }
    }
    fn twin(&self) -> Twin<Self> {
        pointwise_twin()
    }
}

/// The family's registry entries.
pub(super) fn registry() -> Vec<Loss> {
    vec![
        Loss::bce().into(),
        Loss::bce_with_logits().into(),
        Loss::soft_margin().into(),
        Loss::sigmoid_focal().into(),
        Loss::hinge_embedding().into(),
        Loss::hinge().into(),
        Loss::squared_hinge().into(),
    ]
}
