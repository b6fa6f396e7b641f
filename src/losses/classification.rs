//! Row-wise classification losses over a class dimension: the softmax family
//! (cross-entropy, its label functions, NLL; `shaders/classification/softmax_rows.wgsl`)
//! and the margin losses (`shaders/classification/margin.wgsl`), on the rows driver
//! `shaders/lib/rows.wgsl`. Twins `src/cpu/softmax.rs`, `src/cpu/margin.rs`.
//!
//! Layouts: logits (N, C, d1…dk) with classes on dimension 1, integer labels (N, d1…dk)
//! as `i32` (PyTorch's int64 converted; negative `ignore_index` as −100 fits). Each loss's
//! shader file `shaders/classification/<loss>.wgsl` declares its parameters as a
//! `LossParams` struct (the fields of its definition, by name and in order) and its
//! arithmetic; its twin is its `LabelFunction` (`MarginLoss`) impl.

use super::definition::{define_loss, margin_twin, softmax_twin, Definition, Twin};
use super::softmax::Variant;
use super::{Domain, Loss, Spec};

const LABELS: Option<(&str, &str)> = Some(("labels", "[0, C) or ignore_index"));

define_loss! {
    /// Cross-entropy of logits (N, C, d1…dk) against integer labels (N, d1…dk, `i32`):
    /// `(1−ε) w_y (lse − x_y) + ε/C (W lse − Σ_c w_c x_c)` with class `weight` w
    /// (W = Σ w_c), `label_smoothing` ε ∈ [0, 1]; rows whose label is `ignore_index`
    /// count for nothing. `mean` divides by the summed weight of the non-ignored rows
    /// (NaN when all are ignored, as PyTorch). `torch.nn.CrossEntropyLoss`.
    ///
    /// Two options of LLM training, Liger-Kernel's semantics: `z_loss` adds
    /// `z_loss · lse²` to every kept row (PaLM's auxiliary loss; unweighted, reduced
    /// with the same denominator), and `softcap` > 0 replaces every logit by
    /// `softcap · tanh(x / softcap)` first (Gemma 2), the gradient flowing through it.
    /// With a soft-cap, infinite logits become finite and are not counted as non-finite.
    CrossEntropy, cross_entropy {
        /// Label value whose rows are skipped (PyTorch's default −100).
        ignore_index: i32 = -100, "any i32", |_v| true;
        /// Label smoothing ε in [0, 1] (default 0).
        label_smoothing: f32 = 0.0, "in [0, 1]", |v| (0.0..=1.0).contains(&v);
        /// Scale of the z-loss `lse²` term, ≥ 0 (0: off; PaLM used 1e-4).
        z_loss: f32 = 0.0, "finite and >= 0", |v| v.is_finite() && v >= 0.0;
        /// Logit soft-cap, ≥ 0 (0: off; Gemma 2 used 30).
        softcap: f32 = 0.0, "finite and >= 0 (0: off)", |v| v.is_finite() && v >= 0.0;
    }
}

impl Definition for CrossEntropy {
    fn spec(&self) -> Spec {
        Spec::labels("cross_entropy", "torch.nn.CrossEntropyLoss", "classification/cross_entropy", self.ignore_index)
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
    fn defines(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.z_loss != 0.0 {
            flags.push("Z_LOSS");
        }
        if self.softcap != 0.0 {
            flags.push("SOFTCAP");
        }
        flags
    }
    fn variations(&self) -> Vec<Loss> {
        vec![
            Loss::cross_entropy().into(),
            self.into(),
            // A valid class as ignore_index (padding id 0), with stronger smoothing.
            Loss::cross_entropy().ignore_index(0).label_smoothing(0.25).into(),
            // The LLM options: z-loss large enough to matter, a soft-cap inside the logits' range.
            Loss::cross_entropy().label_smoothing(0.1).z_loss(0.01).softcap(3.0).into(),
        ]
    }
}

define_loss! {
    /// Cross-entropy of logits against probability targets of the input's shape:
    /// `−Σ_c w_c t'_c log_softmax(x)_c` with `t' = (1−ε) t + ε/C`; `mean` divides by
    /// the number of rows. `torch.nn.CrossEntropyLoss` with a float target.
    CrossEntropySoft, cross_entropy_soft {
        /// Label smoothing ε in [0, 1] (default 0).
        label_smoothing: f32 = 0.0, "in [0, 1]", |v| (0.0..=1.0).contains(&v);
    }
}

impl Definition for CrossEntropySoft {
    fn spec(&self) -> Spec {
        Spec::softmax(
            "cross_entropy_soft",
            "torch.nn.CrossEntropyLoss (probability target)",
            "classification/cross_entropy_soft",
            Variant::SoftTargets,
        )
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        vec![self.label_smoothing(0.0).into(), self.into()]
    }
}

define_loss! {
    /// Focal loss on softmax logits (Lin et al. 2017), multi-class: `α_y (1 − p_y)^γ
    /// (−ln p_y)` with `p = softmax(x)` and the per-class `α` given as `weight`;
    /// `ignore_index` as cross-entropy, which `gamma = 0` is exactly. Layouts as
    /// [`CrossEntropy`]. No PyTorch builtin: checked against the formula with autograd
    /// in float64.
    ///
    /// `mean`: by default as a weighted cross-entropy, ÷ Σ α_y over the kept rows.
    /// Ports of the paper (torchvision-style code, kornia's `focal_loss`, MONAI's
    /// `FocalLoss` with a per-class weight) apply α and then average over the rows:
    /// `weight_as_alpha(true)` divides by the number of kept rows instead (all rows
    /// when none is ignored), so their losses and gradients are reproduced.
    Focal, focal {
        /// Focusing exponent, ≥ 0 (the paper's 2).
        gamma: f32 = 2.0, "finite and >= 0", |v| v.is_finite() && v >= 0.0;
        /// Label value whose rows are skipped (−100).
        ignore_index: i32 = -100, "any i32", |_v| true;
        /// `mean` over the kept rows instead of over Σ α_y (see above).
        weight_as_alpha: bool = false, "true or false", |_v| true;
    }
}

impl Definition for Focal {
    fn spec(&self) -> Spec {
        Spec {
            unweighted_mean: self.weight_as_alpha,
            ..Spec::labels(
                "focal",
                "Lin et al. 2017 (softmax, per-class alpha as weight)",
                "classification/focal",
                self.ignore_index,
            )
        }
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        // gamma = 0 (cross-entropy exactly) and a fractional gamma, with a real class
        // ignored; α averaged over the rows.
        vec![
            self.into(),
            Loss::focal().gamma(0.0).into(),
            Loss::focal().gamma(0.5).ignore_index(0).into(),
            Loss::focal().weight_as_alpha(true).into(),
        ]
    }
    fn sensitivity(&self) -> f64 {
        1.0 + self.gamma as f64
    }
}

define_loss! {
    /// Generalized cross-entropy (Zhang & Sabuncu 2018), robust to label noise:
    /// `w_y (1 − p_y^q) / q`, `q ∈ (0, 1]`: MAE (up to a factor) at 1, cross-entropy as
    /// `q → 0`. Weights, `ignore_index`, `mean` as cross-entropy.
    GeneralizedCrossEntropy, generalized_cross_entropy {
        /// The exponent q in (0, 1] (0.7 in the paper).
        q: f32 = 0.7, "in (0, 1]", |v| v > 0.0 && v <= 1.0;
        /// Label value whose rows are skipped (−100).
        ignore_index: i32 = -100, "any i32", |_v| true;
    }
}

impl Definition for GeneralizedCrossEntropy {
    fn spec(&self) -> Spec {
        Spec::labels(
            "generalized_cross_entropy",
            "Zhang & Sabuncu 2018",
            "classification/generalized_cross_entropy",
            self.ignore_index,
        )
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        // q near the cross-entropy limit.
        vec![self.into(), self.q(1e-3).ignore_index(0).into()]
    }
}

define_loss! {
    /// Symmetric cross-entropy (Wang et al. 2019): `w_y (α CE + β RCE)` with the reverse
    /// cross-entropy `RCE = −Σ_c p_c ln onehot_c = −A (1 − p_y)`, `ln 0` clamped to
    /// `log_zero = A < 0`. Weights, `ignore_index`, `mean` as cross-entropy.
    SymmetricCrossEntropy, symmetric_cross_entropy {
        /// Weight of cross-entropy, ≥ 0 (the paper's 0.1).
        alpha: f32 = 0.1, "finite and >= 0", |v| v.is_finite() && v >= 0.0;
        /// Weight of reverse cross-entropy, ≥ 0 (the paper's 1).
        beta: f32 = 1.0, "finite and >= 0", |v| v.is_finite() && v >= 0.0;
        /// `A`, the value taken for `ln 0`, < 0 (−4 in the paper).
        log_zero: f32 = -4.0, "finite and < 0", |v| v.is_finite() && v < 0.0;
        /// Label value whose rows are skipped (−100).
        ignore_index: i32 = -100, "any i32", |_v| true;
    }
}

impl Definition for SymmetricCrossEntropy {
    fn spec(&self) -> Spec {
        Spec::labels(
            "symmetric_cross_entropy",
            "Wang et al. 2019",
            "classification/symmetric_cross_entropy",
            self.ignore_index,
        )
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
    fn sensitivity(&self) -> f64 {
        (self.alpha + self.beta * self.log_zero.abs()).max(1.0) as f64
    }
}

define_loss! {
    /// Poly-1 cross-entropy (Leng et al. 2022): `w_y (−ln p_y + ε (1 − p_y))`, optax's
    /// `poly_loss_cross_entropy` with one-hot labels. Weights, `ignore_index`, `mean` as
    /// cross-entropy.
    Poly1CrossEntropy, poly1_cross_entropy {
        /// ε ≥ −1 (optax's default 2).
        epsilon: f32 = 2.0, "finite and >= -1", |v| v.is_finite() && v >= -1.0;
        /// Label value whose rows are skipped (−100).
        ignore_index: i32 = -100, "any i32", |_v| true;
    }
}

impl Definition for Poly1CrossEntropy {
    fn spec(&self) -> Spec {
        Spec::labels(
            "poly1_cross_entropy",
            "optax.poly_loss_cross_entropy",
            "classification/poly1_cross_entropy",
            self.ignore_index,
        )
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        vec![self.into(), self.epsilon(-1.0).ignore_index(0).into()]
    }
    fn sensitivity(&self) -> f64 {
        1.0 + self.epsilon.abs() as f64
    }
}

define_loss! {
    /// Hard bootstrapping (Reed et al. 2015), robust to label noise: the target puts `beta`
    /// on the label and `1 − beta` on the row's own argmax k (not differentiated):
    /// `w_y (β (−ln p_y) + (1 − β)(−ln p_k))`. Weights, `ignore_index`, `mean` as
    /// cross-entropy; `beta = 1` is cross-entropy.
    HardBootstrap, hard_bootstrap {
        /// Weight of the given label, in [0, 1] (0.8 in the paper).
        beta: f32 = 0.8, "in [0, 1]", |v| (0.0..=1.0).contains(&v);
        /// Label value whose rows are skipped (−100).
        ignore_index: i32 = -100, "any i32", |_v| true;
    }
}

impl Definition for HardBootstrap {
    fn spec(&self) -> Spec {
        Spec::labels("hard_bootstrap", "Reed et al. 2015 (hard)", "classification/hard_bootstrap", self.ignore_index)
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
}

define_loss! {
    /// Soft bootstrapping (Reed et al. 2015): the target is `β onehot(y) + (1 − β) p` with
    /// the prediction p not detached, i.e. `w_y (β (−ln p_y) + (1 − β) H(p))` with the
    /// row's softmax entropy H. Weights, `ignore_index`, `mean` as cross-entropy.
    SoftBootstrap, soft_bootstrap {
        /// Weight of the given label, in [0, 1] (0.95 in the paper).
        beta: f32 = 0.95, "in [0, 1]", |v| (0.0..=1.0).contains(&v);
        /// Label value whose rows are skipped (−100).
        ignore_index: i32 = -100, "any i32", |_v| true;
    }
}

impl Definition for SoftBootstrap {
    fn spec(&self) -> Spec {
        Spec::labels("soft_bootstrap", "Reed et al. 2015 (soft)", "classification/soft_bootstrap", self.ignore_index)
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
}

define_loss! {
    /// Negative log-likelihood of log-probabilities (N, C, d1…dk) and integer labels:
    /// `−w_y x_y`; `mean` as cross-entropy. `torch.nn.NLLLoss`.
    Nll, nll {
        /// Label value whose rows are skipped (PyTorch's default −100).
        ignore_index: i32 = -100, "any i32", |_v| true;
    }
}

impl Definition for Nll {
    fn spec(&self) -> Spec {
        Spec {
            ignore_index: self.ignore_index,
            invalid_means: LABELS,
            ..Spec::softmax("nll", "torch.nn.NLLLoss", "classification/nll", Variant::Nll)
        }
    }
    fn twin(&self) -> Twin<Self> {
        softmax_twin()
    }
    fn variations(&self) -> Vec<Loss> {
        vec![Loss::nll().into(), Loss::nll().ignore_index(0).into()]
    }
}

define_loss! {
    /// Multi-class hinge on scores (N, C) and integer labels (N):
    /// `w_y / C Σ_{c≠y} max(0, margin − x_y + x_c)^p`, p ∈ {1, 2}, the class weight applied
    /// after the power (as PyTorch's kernel; its docs put it inside). `mean` divides by N.
    /// Every label must be a class (no `ignore_index`, as PyTorch). Takes class `weight`.
    /// `torch.nn.MultiMarginLoss(p, margin, weight)`.
    MultiMargin, multi_margin {
        /// The exponent, 1 or 2 (PyTorch's default 1).
        p: u32 = 1, "1 or 2", |v| v == 1 || v == 2;
        /// The margin (PyTorch's default 1).
        margin: f32 = 1.0, "finite", |v| v.is_finite();
    }
}

impl Definition for MultiMargin {
    fn spec(&self) -> Spec {
        Spec {
            invalid_means: Some(("labels", "[0, C)")),
            ..Spec::row_wise(
                "multi_margin",
                "torch.nn.MultiMarginLoss(p, margin, weight)",
                "classification/multi_margin",
                Variant::MultiMargin,
            )
        }
    }
    fn twin(&self) -> Twin<Self> {
        margin_twin()
    }
}

define_loss! {
    /// Multi-label one-versus-all logistic loss on logits (N, C) and targets (N, C) in
    /// [0, 1]: `1/C Σ_c w_c (y_c softplus(−x_c) + (1 − y_c) softplus(x_c))` per row;
    /// `mean` divides by N. Takes class `weight`. `torch.nn.MultiLabelSoftMarginLoss`.
    MultiLabelSoftMargin, multilabel_soft_margin {}
}

impl Definition for MultiLabelSoftMargin {
    fn spec(&self) -> Spec {
        Spec {
            target_domain: Domain::Probability,
            ..Spec::row_wise(
                "multilabel_soft_margin",
                "torch.nn.MultiLabelSoftMarginLoss(weight)",
                "classification/multilabel_soft_margin",
                Variant::MultiLabelSoftMargin,
            )
        }
    }
    fn twin(&self) -> Twin<Self> {
        margin_twin()
    }
}

define_loss! {
    /// Multi-label hinge on scores (N, C) against C class indices per row (N, C, `i32`),
    /// read up to the first −1 (the row's list; a class listed twice counts twice, as
    /// PyTorch): `1/C Σ_j Σ_{i not listed} max(0, 1 − x_{y_j} + x_i)` per row; `mean`
    /// divides by N. Every entry, also after the −1, must be in [−1, C), as PyTorch checks.
    /// Not in place. `torch.nn.MultiLabelMarginLoss`.
    MultiLabelMargin, multilabel_margin {}
}

impl Definition for MultiLabelMargin {
    fn spec(&self) -> Spec {
        Spec {
            target_domain: Domain::LabelList,
            takes_weight: false,
            invalid_means: Some((
                "labels",
                "[-1, C) (class indices; -1 ends a row's list; rows of more than 1024 classes take lists of at most multilabel_margin_list_limit(C) entries)",
            )),
            ..Spec::row_wise(
                "multilabel_margin",
                "torch.nn.MultiLabelMarginLoss",
                "classification/multilabel_margin",
                Variant::MultiLabelMargin,
            )
        }
    }
    fn twin(&self) -> Twin<Self> {
        margin_twin()
    }
}

/// The family's registry entries.
pub(super) fn registry() -> Vec<Loss> {
    vec![
        Loss::multi_margin().into(),
        Loss::multilabel_soft_margin().into(),
        Loss::multilabel_margin().into(),
        Loss::cross_entropy().label_smoothing(0.1).into(),
        Loss::cross_entropy_soft().label_smoothing(0.1).into(),
        Loss::focal().into(),
        Loss::generalized_cross_entropy().into(),
        Loss::symmetric_cross_entropy().into(),
        Loss::poly1_cross_entropy().into(),
        Loss::hard_bootstrap().into(),
        Loss::soft_bootstrap().into(),
        Loss::nll().into(),
    ]
}
