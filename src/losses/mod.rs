//! Loss specifications, the registry, and operands shared by the GPU and CPU paths.
//!
//! A loss is one [`Loss`] variant plus one arm in [`Loss::spec`], which names its
//! shader (`shaders/<family>/<name>.wgsl`) and its CPU twin (`src/cpu/<family>.rs`).
//! Tests, benchmarks and the CLI reach every loss through [`registry`].

pub(crate) mod plan;
pub mod pointwise;
pub mod softmax;

pub use plan::{Bindings, LossStats, Plan};

use crate::cpu::{self, binary, distribution, kernels, regression, PointwiseKernels};
use crate::error::{Error, Result};
use crate::DType;
use softmax::LabelFn;

/// How per-element losses are combined, as PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// One loss per element; the gradient is that of their sum (times the upstream
    /// gradient, element by element, when one is given).
    None,
    /// The mean over all elements (PyTorch's default). Undefined on empty input.
    #[default]
    Mean,
    /// The sum over all elements (0 on empty input).
    Sum,
    /// The sum divided by the first dimension (the batch size), as `KLDivLoss`'s
    /// `batchmean`; only losses whose [`Spec::takes_batchmean`] accept it.
    BatchMean,
}

impl Reduction {
    /// The reductions every loss takes, for iteration.
    pub const ALL: [Reduction; 3] = [Reduction::None, Reduction::Mean, Reduction::Sum];

    /// PyTorch's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
            Reduction::BatchMean => "batchmean",
        }
    }
}

/// The losses. Each variant's doc gives the per-element formula; `x` is the input
/// (prediction, probability or logit), `y` the target, `d = x - y`. Shapes: input,
/// target and gradient have the same number of elements; see [`Shape`] for broadcast
/// operands. The gradient returned is with respect to the input only; for the
/// regression losses the gradient with respect to the target is its negation.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Loss {
    /// `d²`. `torch.nn.MSELoss`.
    Mse,
    /// `|d|`, gradient `sign(d)` (0 at 0). `torch.nn.L1Loss`.
    L1,
    /// `d²/2` for `|d| ≤ δ`, else `δ(|d| − δ/2)`; `delta > 0`. `torch.nn.HuberLoss(delta)`.
    Huber {
        /// Threshold between the quadratic and linear parts, > 0.
        delta: f32,
    },
    /// `d²/(2β)` for `|d| < β`, else `|d| − β/2`; `beta ≥ 0` (0 is L1).
    /// `torch.nn.SmoothL1Loss(beta)`.
    SmoothL1 {
        /// Threshold between the quadratic and linear parts, ≥ 0.
        beta: f32,
    },
    /// Binary cross-entropy on probabilities `x ∈ [0, 1]`:
    /// `−w (y max(ln x, −100) + (1 − y) max(ln(1 − x), −100))`, gradient as PyTorch's
    /// `(x − y) / max(x(1 − x), 1e-12)`. Takes `weight`. `torch.nn.BCELoss`.
    /// Inputs outside [0, 1] are an [`Error::OutOfDomain`].
    Bce,
    /// Binary cross-entropy on logits: `w (p y softplus(−x) + (1 − y) softplus(x))`
    /// with `pos_weight` `p` broadcast over the last dimension. Takes `weight` and
    /// `pos_weight`. Finite at logits of ±1e4; at ±inf with the matching hard label it
    /// gives the limit 0 where PyTorch gives NaN. `torch.nn.BCEWithLogitsLoss`.
    BceWithLogits,
    /// `ln(1 + exp(−y x))` for `y ∈ {−1, 1}`. `torch.nn.SoftMarginLoss`.
    SoftMargin,
    /// Hinge embedding: `x` for `y = 1`, `max(0, margin − x)` for `y = −1` (other y: both
    /// terms, as PyTorch); derivative 0 at `x = margin`. `torch.nn.HingeEmbeddingLoss`.
    HingeEmbedding {
        /// The margin (PyTorch's default is 1).
        margin: f32,
    },
    /// Sigmoid focal loss (Lin et al. 2017) on logits and targets in [0, 1]:
    /// `a_t (1 − p_t)^γ BCEWithLogits(x, y)` with `p = σ(x)`, `p_t = p y + (1 − p)(1 − y)`,
    /// `a_t = α y + (1 − α)(1 − y)`, or `a_t = 1` when `alpha < 0`; `gamma = 0` is BCE with
    /// logits. Takes `weight`. `torchvision.ops.sigmoid_focal_loss(alpha, gamma)`.
    SigmoidFocal {
        /// Weight of positives in [0, 1]; negative disables the weighting.
        alpha: f32,
        /// Focusing exponent, ≥ 0.
        gamma: f32,
    },
    /// `ln cosh(d)`, gradient `tanh(d)`. `optax.log_cosh` (optax leaves it
    /// unreduced; `mean`/`sum` reduce it as the others).
    LogCosh,
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
    CrossEntropy {
        /// Label value whose rows are skipped (PyTorch's default is -100).
        ignore_index: i32,
        /// Label smoothing ε in [0, 1].
        label_smoothing: f32,
        /// Scale of the z-loss `lse²` term, ≥ 0 (0: off; PaLM used 1e-4).
        z_loss: f32,
        /// Logit soft-cap, ≥ 0 (0: off; Gemma 2 used 30).
        softcap: f32,
    },
    /// Cross-entropy of logits against probability targets of the input's shape:
    /// `−Σ_c w_c t'_c log_softmax(x)_c` with `t' = (1−ε) t + ε/C`; `mean` divides by
    /// the number of rows. `torch.nn.CrossEntropyLoss` with a float target.
    CrossEntropySoft {
        /// Label smoothing ε in [0, 1].
        label_smoothing: f32,
    },
    /// Focal loss on softmax logits (Lin et al. 2017), multi-class: `α_y (1 − p_y)^γ
    /// (−ln p_y)` with `p = softmax(x)` and the per-class `α` given as `weight`;
    /// `ignore_index` and `mean` (÷ Σ α_y of kept rows) as cross-entropy, which `gamma = 0`
    /// is exactly. Layouts as [`Loss::CrossEntropy`]. No PyTorch builtin: checked against
    /// the formula with autograd in float64.
    Focal {
        /// Focusing exponent, ≥ 0.
        gamma: f32,
        /// Label value whose rows are skipped.
        ignore_index: i32,
    },
    /// Generalized cross-entropy (Zhang & Sabuncu 2018), robust to label noise:
    /// `w_y (1 − p_y^q) / q`, `q ∈ (0, 1]`: MAE (up to a factor) at 1, cross-entropy as
    /// `q → 0`. Weights, `ignore_index`, `mean` as cross-entropy.
    GeneralizedCrossEntropy {
        /// The exponent q in (0, 1] (0.7 in the paper).
        q: f32,
        /// Label value whose rows are skipped.
        ignore_index: i32,
    },
    /// Symmetric cross-entropy (Wang et al. 2019): `w_y (α CE + β RCE)` with the reverse
    /// cross-entropy `RCE = −Σ_c p_c ln onehot_c = −A (1 − p_y)`, `ln 0` clamped to
    /// `log_zero = A < 0`. Weights, `ignore_index`, `mean` as cross-entropy.
    SymmetricCrossEntropy {
        /// Weight of cross-entropy, ≥ 0.
        alpha: f32,
        /// Weight of reverse cross-entropy, ≥ 0.
        beta: f32,
        /// `A`, the value taken for `ln 0`, < 0 (−4 in the paper).
        log_zero: f32,
        /// Label value whose rows are skipped.
        ignore_index: i32,
    },
    /// Poly-1 cross-entropy (Leng et al. 2022): `w_y (−ln p_y + ε (1 − p_y))`, optax's
    /// `poly_loss_cross_entropy` with one-hot labels. Weights, `ignore_index`, `mean` as
    /// cross-entropy.
    Poly1CrossEntropy {
        /// ε ≥ −1 (optax's default is 2).
        epsilon: f32,
        /// Label value whose rows are skipped.
        ignore_index: i32,
    },
    /// Hard bootstrapping (Reed et al. 2015), robust to label noise: the target puts `beta`
    /// on the label and `1 − beta` on the row's own argmax k (not differentiated):
    /// `w_y (β (−ln p_y) + (1 − β)(−ln p_k))`. Weights, `ignore_index`, `mean` as
    /// cross-entropy; `beta = 1` is cross-entropy.
    HardBootstrap {
        /// Weight of the given label, in [0, 1] (0.8 in the paper).
        beta: f32,
        /// Label value whose rows are skipped.
        ignore_index: i32,
    },
    /// Soft bootstrapping (Reed et al. 2015): the target is `β onehot(y) + (1 − β) p` with
    /// the prediction p not detached, i.e. `w_y (β (−ln p_y) + (1 − β) H(p))` with the
    /// row's softmax entropy H. Weights, `ignore_index`, `mean` as cross-entropy.
    SoftBootstrap {
        /// Weight of the given label, in [0, 1] (0.95 in the paper).
        beta: f32,
        /// Label value whose rows are skipped.
        ignore_index: i32,
    },
    /// Negative log-likelihood of log-probabilities (N, C, d1…dk) and integer labels:
    /// `−w_y x_y`; `mean` as cross-entropy. `torch.nn.NLLLoss`.
    Nll {
        /// Label value whose rows are skipped (PyTorch's default is -100).
        ignore_index: i32,
    },
    /// KL divergence of an input of log-probabilities from a target:
    /// `y (ln y − x)` (0 where y = 0; y < 0 is out of domain), or with `log_target`
    /// `e^y (y − x)`. Takes `batchmean`. `torch.nn.KLDivLoss`.
    KlDiv {
        /// The target holds log-probabilities.
        log_target: bool,
    },
    /// Generalised Jensen-Shannon divergence for distillation, Liger-Kernel's `LigerJSD`:
    /// input `x` = the student's log-probabilities, target `y` = the teacher's, per element
    /// `β p (y − ln m) + (1 − β) q (x − ln m)` with `p = e^y`, `q = e^x`, `m = β p + (1 − β) q`
    /// (β = ½ is the Jensen-Shannon divergence); as in Liger, `beta = 0` is forward KL
    /// `p (y − x)` and `beta = 1` reverse KL `q (x − y)`. Liger reduces with `batchmean`
    /// (÷ rows of a `(BT, V)` input); every reduction is accepted. Shapes as the input;
    /// log-probabilities of −inf contribute their limit 0.
    ///
    /// The gradient is the student's. The loss is unchanged when input and target swap and
    /// β becomes 1 − β, so the teacher's gradient (training both) is the gradient of
    /// [`Loss::jsd_teacher_side`] on `(teacher, student)`: a second call.
    Jsd {
        /// Weight of the teacher's distribution in the mixture, in [0, 1].
        beta: f32,
    },
    /// Multi-class hinge on scores (N, C) and integer labels (N):
    /// `w_y / C Σ_{c≠y} max(0, margin − x_y + x_c)^p`, p ∈ {1, 2}, the class weight applied
    /// after the power (as PyTorch's kernel; its docs put it inside). `mean` divides by N.
    /// Every label must be a class (no `ignore_index`, as PyTorch). Takes class `weight`.
    /// `torch.nn.MultiMarginLoss(p, margin, weight)`.
    MultiMargin {
        /// The exponent, 1 or 2.
        p: u32,
        /// The margin (PyTorch's default is 1).
        margin: f32,
    },
    /// Multi-label one-versus-all logistic loss on logits (N, C) and targets (N, C) in
    /// [0, 1]: `1/C Σ_c w_c (y_c softplus(−x_c) + (1 − y_c) softplus(x_c))` per row;
    /// `mean` divides by N. Takes class `weight`. `torch.nn.MultiLabelSoftMarginLoss`.
    MultiLabelSoftMargin,
    /// Multi-label hinge on scores (N, C) against C class indices per row (N, C, `i32`),
    /// read up to the first −1 (the row's list; a class listed twice counts twice, as
    /// PyTorch): `1/C Σ_j Σ_{i not listed} max(0, 1 − x_{y_j} + x_i)` per row; `mean`
    /// divides by N. Every entry, also after the −1, must be in [−1, C), as PyTorch checks.
    /// Not in place. `torch.nn.MultiLabelMarginLoss`.
    MultiLabelMargin,
}

impl Loss {
    /// `CrossEntropy` with PyTorch's defaults (`ignore_index = -100`, no smoothing).
    pub const CROSS_ENTROPY: Loss =
        Loss::CrossEntropy { ignore_index: -100, label_smoothing: 0.0, z_loss: 0.0, softcap: 0.0 };
    /// `Nll` with PyTorch's default `ignore_index = -100`.
    pub const NLL: Loss = Loss::Nll { ignore_index: -100 };

    /// For [`Loss::Jsd`]: the same divergence seen from the teacher's side, whose input
    /// gradient on `(input = teacher, target = student)` is the teacher's gradient (β
    /// becomes 1 − β; `None` for every other loss).
    pub fn jsd_teacher_side(&self) -> Option<Loss> {
        match *self {
            Loss::Jsd { beta } => Some(Loss::Jsd { beta: 1.0 - beta }),
            _ => None,
        }
    }
}

/// Where a loss's inputs or targets live; tests and the CLI draw random data from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Any real number.
    Real,
    /// A probability in [0, 1].
    Probability,
    /// −1 or +1.
    Sign,
    /// A log-probability (≤ 0).
    LogProbability,
    /// A class label in [0, C), or the loss's `ignore_index`.
    Label,
    /// One row of probabilities over the class dimension.
    Distribution,
    /// C class indices per row, a list ended by −1 (the rest in [−1, C) too).
    LabelList,
}

/// How a loss walks its input; decides its kernels, CPU twin and operands.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Family {
    /// Element by element (`shaders/lib/pointwise.wgsl`), with its CPU twin.
    Pointwise(PointwiseKernels),
    /// Row by row over the class dimension (`shaders/classification/cross_entropy.wgsl`).
    Softmax(softmax::Variant),
}

/// Everything the rest of the crate needs to know about one loss.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Short name, as in the CLI and the registry.
    pub name: &'static str,
    /// The PyTorch (or optax) equivalent.
    pub reference: &'static str,
    /// Domain of the input.
    pub input_domain: Domain,
    /// Domain of the target.
    pub target_domain: Domain,
    /// Whether a `weight` operand is accepted (per element, or broadcast over the
    /// last dimension).
    pub takes_weight: bool,
    /// Whether a `pos_weight` operand is accepted (broadcast over the last dimension).
    pub takes_pos_weight: bool,
    /// Whether [`Reduction::BatchMean`] is accepted.
    pub takes_batchmean: bool,
    /// What the GPU's invalid count means: (operand, valid domain in words).
    pub(crate) invalid_means: Option<(&'static str, &'static str)>,
    pub(crate) shader: &'static str,
    // [0], [1]: the elementwise kernels' p0, p1; row-wise: [1] label smoothing, [0], [2],
    // [3] the label function's parameters (`fn_a`, `fn_b`, `fn_c` in the shader), [4]
    // cross-entropy's z-loss scale, [5] its logit soft-cap (0: off).
    pub(crate) params: [f32; 6],
    pub(crate) constraints: &'static [Constraint],
    pub(crate) ignore_index: i32,
    pub(crate) family: Family,
}

impl Spec {
    fn new(name: &'static str, reference: &'static str, shader: &'static str, cpu: PointwiseKernels) -> Self {
        Self::family(name, reference, shader, Family::Pointwise(cpu))
    }

    fn softmax(name: &'static str, reference: &'static str, variant: softmax::Variant) -> Self {
        Self::row_wise(name, reference, "classification/cross_entropy", variant)
    }

    fn row_wise(name: &'static str, reference: &'static str, shader: &'static str, variant: softmax::Variant) -> Self {
        Spec {
            input_domain: if variant == softmax::Variant::Nll { Domain::LogProbability } else { Domain::Real },
            target_domain: if variant == softmax::Variant::SoftTargets { Domain::Distribution } else { Domain::Label },
            takes_weight: true,
            ..Self::family(name, reference, shader, Family::Softmax(variant))
        }
    }

    /// A label function of the softmax family with integer labels and `ignore_index`.
    fn labels(name: &'static str, reference: &'static str, label_fn: LabelFn, ignore_index: i32) -> Self {
        Spec {
            ignore_index,
            invalid_means: Some(("labels", "[0, C) or ignore_index")),
            ..Self::softmax(name, reference, softmax::Variant::HardLabels(label_fn))
        }
    }

    fn family(name: &'static str, reference: &'static str, shader: &'static str, family: Family) -> Self {
        Spec {
            name,
            reference,
            input_domain: Domain::Real,
            target_domain: Domain::Real,
            takes_weight: false,
            takes_pos_weight: false,
            takes_batchmean: false,
            invalid_means: None,
            shader,
            params: [0.0; 6],
            constraints: &[],
            ignore_index: -100,
            family,
        }
    }

    /// The shader's path under `shaders/`, without extension.
    pub fn shader_name(&self) -> &'static str {
        self.shader
    }

    /// The CPU twin of one element (f64) of an elementwise loss, which the reference
    /// tests differentiate; `None` for row-wise losses.
    pub fn cpu_element(&self) -> Option<cpu::PointwiseFn> {
        match self.family {
            Family::Pointwise(k) => Some(k.element),
            Family::Softmax(_) => None,
        }
    }

    /// True for the softmax family (rows over a class dimension, integer or
    /// distribution targets).
    pub fn is_row_wise(&self) -> bool {
        matches!(self.family, Family::Softmax(_))
    }

    /// The label value whose rows (list entries) are skipped, if the loss has one:
    /// `ignore_index` for the softmax family, −1 (the end of a list) for multi-label
    /// margin, none for multi-margin and losses without labels.
    pub fn ignore(&self) -> Option<i32> {
        match self.family {
            Family::Softmax(softmax::Variant::MultiLabelMargin) => Some(-1),
            Family::Softmax(v) if v.has_labels() && v != softmax::Variant::MultiMargin => Some(self.ignore_index),
            _ => None,
        }
    }

    /// Integer labels per row (1, or C for multi-label margin); 0 for losses without labels.
    pub fn labels_per_row(&self, classes: usize) -> usize {
        match self.family {
            Family::Softmax(v) if v.has_labels() => v.labels_per_row(classes),
            _ => 0,
        }
    }

    /// True when `mean` divides by the summed class weight of the kept rows (cross-entropy,
    /// its label functions, NLL), false when by the number of rows or elements.
    pub fn mean_over_label_weights(&self) -> bool {
        matches!(self.family, Family::Softmax(v) if v.mean_over_label_weights())
    }

    /// True when the gradient may overwrite the input (all but multi-label margin, which
    /// reads other classes' inputs while it writes).
    pub fn allows_in_place(&self) -> bool {
        !matches!(self.family, Family::Softmax(v) if !v.allows_in_place())
    }

    /// True for losses that take only (N, C), as PyTorch's margin losses.
    pub fn two_dimensional(&self) -> bool {
        matches!(self.family, Family::Softmax(v) if v.two_dimensional())
    }

    /// True when the loss returns a per-row log-sum-exp and counts argmax hits on request.
    pub fn has_row_outputs(&self) -> bool {
        matches!(self.family, Family::Softmax(v) if v.has_lse())
    }

    /// The loss's parameters as passed to the kernels: elementwise `p0`, `p1` in [0], [1];
    /// row-wise label smoothing in [1], the label function's in [0], [2], [3], and
    /// cross-entropy's z-loss and soft-cap in [4], [5].
    pub fn params(&self) -> [f32; 6] {
        self.params
    }
}

/// A rule on one loss parameter: `params[index]` must satisfy `ok`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Constraint {
    index: usize,
    name: &'static str,
    requirement: &'static str,
    ok: fn(f32) -> bool,
}

const DELTA_POSITIVE: Constraint =
    Constraint { index: 0, name: "delta", requirement: "finite and > 0", ok: |v| v.is_finite() && v > 0.0 };
const BETA_NON_NEGATIVE: Constraint =
    Constraint { index: 0, name: "beta", requirement: "finite and >= 0", ok: |v| v.is_finite() && v >= 0.0 };

const MARGIN_FINITE: Constraint = Constraint { index: 0, name: "margin", requirement: "finite", ok: f32::is_finite };
const ALPHA_FINITE: Constraint =
    Constraint { index: 0, name: "alpha", requirement: "finite (negative: no weighting)", ok: f32::is_finite };
const GAMMA_NON_NEGATIVE: Constraint =
    Constraint { index: 1, name: "gamma", requirement: "finite and >= 0", ok: |v| v.is_finite() && v >= 0.0 };

const FOCAL_GAMMA: Constraint =
    Constraint { index: 0, name: "gamma", requirement: "finite and >= 0", ok: |v| v.is_finite() && v >= 0.0 };
const GCE_Q: Constraint = Constraint { index: 0, name: "q", requirement: "in (0, 1]", ok: |v| v > 0.0 && v <= 1.0 };
const SCE_ALPHA: Constraint =
    Constraint { index: 0, name: "alpha", requirement: "finite and >= 0", ok: |v| v.is_finite() && v >= 0.0 };
const SCE_BETA: Constraint =
    Constraint { index: 2, name: "beta", requirement: "finite and >= 0", ok: |v| v.is_finite() && v >= 0.0 };
const SCE_LOG_ZERO: Constraint =
    Constraint { index: 3, name: "log_zero", requirement: "finite and < 0", ok: |v| v.is_finite() && v < 0.0 };
const BOOTSTRAP_BETA: Constraint =
    Constraint { index: 0, name: "beta", requirement: "in [0, 1]", ok: |v| (0.0..=1.0).contains(&v) };
const JSD_BETA: Constraint =
    Constraint { index: 0, name: "beta", requirement: "in [0, 1]", ok: |v| (0.0..=1.0).contains(&v) };
const MARGIN_P: Constraint = Constraint { index: 2, name: "p", requirement: "1 or 2", ok: |v| v == 1.0 || v == 2.0 };
const POLY_EPSILON: Constraint =
    Constraint { index: 0, name: "epsilon", requirement: "finite and >= -1", ok: |v| v.is_finite() && v >= -1.0 };

const Z_LOSS: Constraint =
    Constraint { index: 4, name: "z_loss", requirement: "finite and >= 0", ok: |v| v.is_finite() && v >= 0.0 };
const SOFTCAP: Constraint = Constraint {
    index: 5,
    name: "softcap",
    requirement: "finite and >= 0 (0: off)",
    ok: |v| v.is_finite() && v >= 0.0,
};

const SMOOTHING_UNIT: Constraint =
    Constraint { index: 1, name: "label_smoothing", requirement: "in [0, 1]", ok: |v| (0.0..=1.0).contains(&v) };

impl Loss {
    /// The loss's specification. Parameters are not checked here; see [`Loss::validate`].
    pub fn spec(&self) -> Spec {
        match *self {
            Loss::Mse => Spec::new("mse", "torch.nn.MSELoss", "regression/mse", kernels::<regression::Mse>()),
            Loss::L1 => Spec::new("l1", "torch.nn.L1Loss", "regression/l1", kernels::<regression::L1>()),
            Loss::Huber { delta } => Spec {
                params: [delta, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[DELTA_POSITIVE],
                ..Spec::new("huber", "torch.nn.HuberLoss(delta)", "regression/huber", kernels::<regression::Huber>())
            },
            Loss::SmoothL1 { beta } => Spec {
                params: [beta, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[BETA_NON_NEGATIVE],
                ..Spec::new(
                    "smooth_l1",
                    "torch.nn.SmoothL1Loss(beta)",
                    "regression/smooth_l1",
                    kernels::<regression::SmoothL1>(),
                )
            },
            Loss::LogCosh => {
                Spec::new("log_cosh", "optax.log_cosh", "regression/log_cosh", kernels::<regression::LogCosh>())
            }
            Loss::Bce => Spec {
                input_domain: Domain::Probability,
                target_domain: Domain::Probability,
                takes_weight: true,
                invalid_means: Some(("input", "[0, 1]")),
                ..Spec::new("bce", "torch.nn.BCELoss", "binary/bce", kernels::<binary::Bce>())
            },
            Loss::BceWithLogits => Spec {
                target_domain: Domain::Probability,
                takes_weight: true,
                takes_pos_weight: true,
                ..Spec::new(
                    "bce_with_logits",
                    "torch.nn.BCEWithLogitsLoss",
                    "binary/bce_with_logits",
                    kernels::<binary::BceWithLogits>(),
                )
            },
            Loss::CrossEntropy { ignore_index, label_smoothing, z_loss, softcap } => Spec {
                params: [0.0, label_smoothing, 0.0, 0.0, z_loss, softcap],
                ignore_index,
                constraints: &[SMOOTHING_UNIT, Z_LOSS, SOFTCAP],
                invalid_means: Some(("labels", "[0, C) or ignore_index")),
                ..Spec::softmax(
                    "cross_entropy",
                    "torch.nn.CrossEntropyLoss",
                    softmax::Variant::HardLabels(softmax::LabelFn::CrossEntropy),
                )
            },
            Loss::CrossEntropySoft { label_smoothing } => Spec {
                params: [0.0, label_smoothing, 0.0, 0.0, 0.0, 0.0],
                constraints: &[SMOOTHING_UNIT],
                ..Spec::softmax(
                    "cross_entropy_soft",
                    "torch.nn.CrossEntropyLoss (probability target)",
                    softmax::Variant::SoftTargets,
                )
            },
            Loss::Focal { gamma, ignore_index } => Spec {
                params: [gamma, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[FOCAL_GAMMA],
                ..Spec::labels(
                    "focal",
                    "Lin et al. 2017 (softmax, per-class alpha as weight)",
                    LabelFn::Focal,
                    ignore_index,
                )
            },
            Loss::GeneralizedCrossEntropy { q, ignore_index } => Spec {
                params: [q, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[GCE_Q],
                ..Spec::labels("generalized_cross_entropy", "Zhang & Sabuncu 2018", LabelFn::Generalized, ignore_index)
            },
            Loss::SymmetricCrossEntropy { alpha, beta, log_zero, ignore_index } => Spec {
                params: [alpha, 0.0, beta, log_zero, 0.0, 0.0],
                constraints: &[SCE_ALPHA, SCE_BETA, SCE_LOG_ZERO],
                ..Spec::labels("symmetric_cross_entropy", "Wang et al. 2019", LabelFn::Symmetric, ignore_index)
            },
            Loss::Poly1CrossEntropy { epsilon, ignore_index } => Spec {
                params: [epsilon, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[POLY_EPSILON],
                ..Spec::labels("poly1_cross_entropy", "optax.poly_loss_cross_entropy", LabelFn::Poly1, ignore_index)
            },
            Loss::HardBootstrap { beta, ignore_index } => Spec {
                params: [beta, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[BOOTSTRAP_BETA],
                ..Spec::labels("hard_bootstrap", "Reed et al. 2015 (hard)", LabelFn::HardBootstrap, ignore_index)
            },
            Loss::SoftBootstrap { beta, ignore_index } => Spec {
                params: [beta, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[BOOTSTRAP_BETA],
                ..Spec::labels("soft_bootstrap", "Reed et al. 2015 (soft)", LabelFn::SoftBootstrap, ignore_index)
            },
            Loss::Nll { ignore_index } => Spec {
                ignore_index,
                invalid_means: Some(("labels", "[0, C) or ignore_index")),
                ..Spec::softmax("nll", "torch.nn.NLLLoss", softmax::Variant::Nll)
            },
            Loss::KlDiv { log_target } => Spec {
                params: [if log_target { 1.0 } else { 0.0 }, 0.0, 0.0, 0.0, 0.0, 0.0],
                input_domain: Domain::LogProbability,
                target_domain: if log_target { Domain::LogProbability } else { Domain::Probability },
                takes_batchmean: true,
                invalid_means: Some(("target", "[0, inf) (probabilities)")),
                ..Spec::new("kl_div", "torch.nn.KLDivLoss", "distribution/kl_div", kernels::<distribution::KlDiv>())
            },
            Loss::Jsd { beta } => Spec {
                params: [beta, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[JSD_BETA],
                input_domain: Domain::LogProbability,
                target_domain: Domain::LogProbability,
                takes_batchmean: true,
                ..Spec::new("jsd", "Liger-Kernel LigerJSD(beta)", "distribution/jsd", kernels::<distribution::Jsd>())
            },
            Loss::MultiMargin { p, margin } => Spec {
                // margin in [0] (fn_a), p in [2] (fn_b).
                params: [margin, 0.0, p as f32, 0.0, 0.0, 0.0],
                constraints: &[MARGIN_FINITE, MARGIN_P],
                invalid_means: Some(("labels", "[0, C)")),
                ..Spec::row_wise(
                    "multi_margin",
                    "torch.nn.MultiMarginLoss(p, margin, weight)",
                    "classification/margin",
                    softmax::Variant::MultiMargin,
                )
            },
            Loss::MultiLabelSoftMargin => Spec {
                target_domain: Domain::Probability,
                ..Spec::row_wise(
                    "multilabel_soft_margin",
                    "torch.nn.MultiLabelSoftMarginLoss(weight)",
                    "classification/margin",
                    softmax::Variant::MultiLabelSoftMargin,
                )
            },
            Loss::MultiLabelMargin => Spec {
                target_domain: Domain::LabelList,
                takes_weight: false,
                invalid_means: Some(("labels", "[-1, C) (class indices; -1 ends a row's list)")),
                ..Spec::row_wise(
                    "multilabel_margin",
                    "torch.nn.MultiLabelMarginLoss",
                    "classification/margin",
                    softmax::Variant::MultiLabelMargin,
                )
            },
            Loss::HingeEmbedding { margin } => Spec {
                params: [margin, 0.0, 0.0, 0.0, 0.0, 0.0],
                constraints: &[MARGIN_FINITE],
                target_domain: Domain::Sign,
                ..Spec::new(
                    "hinge_embedding",
                    "torch.nn.HingeEmbeddingLoss",
                    "binary/hinge_embedding",
                    kernels::<binary::HingeEmbedding>(),
                )
            },
            Loss::SigmoidFocal { alpha, gamma } => Spec {
                params: [alpha, gamma, 0.0, 0.0, 0.0, 0.0],
                constraints: &[ALPHA_FINITE, GAMMA_NON_NEGATIVE],
                target_domain: Domain::Probability,
                takes_weight: true,
                ..Spec::new(
                    "sigmoid_focal",
                    "torchvision.ops.sigmoid_focal_loss",
                    "binary/sigmoid_focal",
                    kernels::<binary::SigmoidFocal>(),
                )
            },
            Loss::SoftMargin => Spec {
                target_domain: Domain::Sign,
                ..Spec::new(
                    "soft_margin",
                    "torch.nn.SoftMarginLoss",
                    "binary/soft_margin",
                    kernels::<binary::SoftMargin>(),
                )
            },
        }
    }

    /// The loss's short name.
    pub fn name(&self) -> &'static str {
        self.spec().name
    }

    /// Checks the loss's parameters, returning its spec.
    pub fn validate(&self) -> Result<Spec> {
        let spec = self.spec();
        for rule in spec.constraints {
            let value = spec.params[rule.index];
            if !(rule.ok)(value) {
                return Err(Error::InvalidParameter {
                    loss: spec.name,
                    name: rule.name,
                    value: value as f64,
                    requirement: rule.requirement,
                });
            }
        }
        Ok(spec)
    }
}

/// Every loss, once, with representative parameters. Tests, benchmarks and the CLI
/// iterate this list; a new loss is added here and in [`Loss::spec`], nowhere else.
pub fn registry() -> Vec<Loss> {
    vec![
        Loss::Mse,
        Loss::L1,
        Loss::Huber { delta: 0.5 },
        Loss::SmoothL1 { beta: 0.25 },
        Loss::LogCosh,
        Loss::Bce,
        Loss::BceWithLogits,
        Loss::SoftMargin,
        Loss::SigmoidFocal { alpha: 0.25, gamma: 2.0 },
        Loss::HingeEmbedding { margin: 1.0 },
        Loss::KlDiv { log_target: false },
        Loss::Jsd { beta: 0.5 },
        Loss::MultiMargin { p: 1, margin: 1.0 },
        Loss::MultiLabelSoftMargin,
        Loss::MultiLabelMargin,
        Loss::CrossEntropy { ignore_index: -100, label_smoothing: 0.1, z_loss: 0.0, softcap: 0.0 },
        Loss::CrossEntropySoft { label_smoothing: 0.1 },
        Loss::Focal { gamma: 2.0, ignore_index: -100 },
        Loss::GeneralizedCrossEntropy { q: 0.7, ignore_index: -100 },
        Loss::SymmetricCrossEntropy { alpha: 0.1, beta: 1.0, log_zero: -4.0, ignore_index: -100 },
        Loss::Poly1CrossEntropy { epsilon: 2.0, ignore_index: -100 },
        Loss::HardBootstrap { beta: 0.8, ignore_index: -100 },
        Loss::SoftBootstrap { beta: 0.95, ignore_index: -100 },
        Loss::NLL,
    ]
}

/// The dimensions of the input. Broadcast operands of elementwise losses (`weight` of
/// a per-class size, `pos_weight`) run along the last dimension, as PyTorch broadcasts
/// a 1-D tensor against `(N, C)`. Row-wise losses read `(N, C, d1, …, dk)`: classes on
/// dimension 1, rows `(n, d1…dk)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    dims: Vec<usize>,
}

impl Shape {
    /// A 1-D tensor of `len` elements.
    pub fn elementwise(len: usize) -> Self {
        Shape { dims: vec![len] }
    }

    /// A tensor of the given dimensions (row-major). `&[]` is a scalar.
    pub fn new(dims: &[usize]) -> Self {
        Shape { dims: dims.to_vec() }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the last dimension (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.dims.last().copied().unwrap_or(1)
    }

    /// Size of the first dimension (1 for a scalar): the batch of `batchmean`.
    pub fn batch(&self) -> usize {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Classes C of a row-wise layout (dimension 1).
    pub fn classes(&self) -> usize {
        self.dims.get(1).copied().unwrap_or(1)
    }

    /// Class stride S = d1·…·dk of a row-wise layout.
    pub fn inner(&self) -> usize {
        self.dims.iter().skip(2).product()
    }

    /// Rows N·S of a row-wise layout: one label, loss and log-sum-exp each.
    pub fn rows(&self) -> usize {
        self.batch() * self.inner()
    }
}

/// The target of a loss on host memory.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// One f32 per input element (regression targets, probabilities, soft targets).
    Values(&'a [f32]),
    /// One class label per row (`i32`, so that PyTorch's `ignore_index = -100` fits;
    /// convert PyTorch's int64 labels).
    Labels(&'a [i32]),
}

impl Target<'_> {
    fn len(&self) -> usize {
        match self {
            Target::Values(v) => v.len(),
            Target::Labels(l) => l.len(),
        }
    }
}

/// Host operands for the convenience path ([`crate::Gpu::compute`]) and the CPU
/// reference ([`crate::cpu::compute`]).
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    /// Predictions, probabilities, log-probabilities or logits.
    pub input: &'a [f32],
    /// Targets or labels.
    pub target: Target<'a>,
    /// Dimensions; `None` means 1-D.
    pub shape: Option<Shape>,
    /// Elementwise losses: per-element weight (as many as inputs) or per-last-dimension
    /// weight. Row-wise losses: one weight per class.
    pub weight: Option<&'a [f32]>,
    /// Weight of positive targets, one per entry of the last dimension.
    pub pos_weight: Option<&'a [f32]>,
    /// Upstream gradient: one value for reduced losses, one per element (row-wise:
    /// per row) for `none`.
    pub upstream: Option<&'a [f32]>,
    /// Row-wise losses: also return each row's log-sum-exp.
    pub want_lse: bool,
    /// Row-wise losses with labels: also count rows whose argmax is the label.
    pub want_accuracy: bool,
    /// Elementwise losses: also return the per-class breakdown, `Σ_n loss[n, c]` over the
    /// last dimension's classes (multi-label BCE's per-label losses).
    pub want_per_class: bool,
    /// Element type of input, target values and gradient on the GPU. The f32 values
    /// given are rounded to it first (the CPU paths compute from the same rounded
    /// values); the gradient comes back widened to f32, exactly.
    pub dtype: DType,
    /// Write the gradient over the input buffer instead of a separate one (GPU path;
    /// the result is the same, bit for bit).
    pub in_place: bool,
}

impl<'a> Inputs<'a> {
    /// Input and f32 target, 1-D, no optional operands.
    pub fn new(input: &'a [f32], target: &'a [f32]) -> Self {
        Self::with_target(input, Target::Values(target))
    }

    /// Logits (or log-probabilities) and integer labels; set the shape with
    /// [`Inputs::shape`] (`[N, C]` or `[N, C, d1, …]`).
    pub fn labels(input: &'a [f32], labels: &'a [i32]) -> Self {
        Self::with_target(input, Target::Labels(labels))
    }

    fn with_target(input: &'a [f32], target: Target<'a>) -> Self {
        Inputs {
            input,
            target,
            shape: None,
            weight: None,
            pos_weight: None,
            upstream: None,
            want_lse: false,
            want_accuracy: false,
            want_per_class: false,
            dtype: DType::F32,
            in_place: false,
        }
    }

    /// Sets the dimensions.
    pub fn shape(mut self, dims: &[usize]) -> Self {
        self.shape = Some(Shape::new(dims));
        self
    }

    /// Sets `weight`.
    pub fn weight(mut self, weight: &'a [f32]) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Sets `pos_weight`.
    pub fn pos_weight(mut self, pos_weight: &'a [f32]) -> Self {
        self.pos_weight = Some(pos_weight);
        self
    }

    /// Sets the upstream gradient.
    pub fn upstream(mut self, upstream: &'a [f32]) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// Asks for each row's log-sum-exp (row-wise losses).
    pub fn with_lse(mut self) -> Self {
        self.want_lse = true;
        self
    }

    /// Asks for the count of rows whose argmax equals the label (row-wise losses).
    pub fn with_accuracy(mut self) -> Self {
        self.want_accuracy = true;
        self
    }

    /// Asks for the per-class breakdown (elementwise losses): column sums of the element
    /// losses over the last dimension.
    pub fn with_per_class(mut self) -> Self {
        self.want_per_class = true;
        self
    }

    /// Sets the element type of input, target values and gradient.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Asks for the gradient to overwrite the input on the GPU.
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// The shape, 1-D when none was set.
    pub fn resolved_shape(&self) -> Shape {
        self.shape.clone().unwrap_or_else(|| Shape::elementwise(self.input.len()))
    }
}

/// How a weight operand lines up with the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WeightLayout {
    PerElement,
    LastDim,
}

/// Checks a loss, reduction and shape that every path shares.
pub(crate) fn check_problem(loss: &Loss, reduction: Reduction, shape: &Shape) -> Result<Spec> {
    let spec = loss.validate()?;
    let len = shape.len();
    if reduction == Reduction::BatchMean && !spec.takes_batchmean {
        return Err(Error::UnsupportedReduction { loss: spec.name, reduction: reduction.name() });
    }
    let invalid_shape = |why: String| Error::InvalidShape { shape: shape.dims().to_vec(), why };
    if spec.is_row_wise() && (shape.dims().len() < 2 || shape.classes() == 0) {
        return Err(invalid_shape(format!("{} needs (N, C) or (N, C, d1, ...) with C >= 1", spec.name)));
    }
    if matches!(spec.family, Family::Softmax(v) if v.two_dimensional()) && shape.dims().len() != 2 {
        return Err(invalid_shape(format!("{} needs (N, C), as PyTorch's (reshape a (C) input to (1, C))", spec.name)));
    }
    if len == 0 && matches!(reduction, Reduction::Mean | Reduction::BatchMean) {
        return Err(Error::EmptyInput { loss: spec.name, reduction: reduction.name() });
    }
    if len > u32::MAX as usize {
        return Err(invalid_shape(format!("{len} elements exceed the kernels' u32 indexing")));
    }
    Ok(spec)
}

/// Which layout a weight of `weight_len` elements has, or the error naming it.
pub(crate) fn weight_layout(argument: &'static str, weight_len: usize, shape: &Shape) -> Result<WeightLayout> {
    if weight_len == shape.len() {
        Ok(WeightLayout::PerElement)
    } else if weight_len == shape.last_dim() {
        Ok(WeightLayout::LastDim)
    } else {
        Err(Error::LengthMismatch {
            argument,
            expected: format!("{} (one per element) or {} (last dimension)", shape.len(), shape.last_dim()),
            actual: weight_len,
        })
    }
}

pub(crate) fn unsupported(spec: &Spec, argument: &'static str) -> Error {
    Error::UnsupportedArgument { loss: spec.name, argument }
}

/// Checks host operands against the loss; the CPU and convenience paths both call it.
pub(crate) fn check_inputs(loss: &Loss, reduction: Reduction, inputs: &Inputs) -> Result<Spec> {
    let shape = inputs.resolved_shape();
    let len = shape.len();
    let mismatch = |argument, actual: usize, expected: String| Error::LengthMismatch { argument, expected, actual };
    if inputs.input.len() != len {
        return Err(mismatch("input", inputs.input.len(), format!("{len} (shape {:?})", shape.dims())));
    }
    let spec = check_problem(loss, reduction, &shape)?;
    let wants_labels = matches!(spec.family, Family::Softmax(v) if v.has_labels());
    let (target_name, target_len) = match (inputs.target, wants_labels) {
        (Target::Labels(_), true) => ("labels", shape.rows() * spec.labels_per_row(shape.classes())),
        (Target::Values(_), false) => ("target", len),
        (Target::Labels(_), false) => return Err(unsupported(&spec, "integer labels (it takes an f32 target)")),
        (Target::Values(_), true) => return Err(unsupported(&spec, "an f32 target (it takes integer labels)")),
    };
    if inputs.target.len() != target_len {
        return Err(mismatch(target_name, inputs.target.len(), format!("{target_len} for shape {:?}", shape.dims())));
    }
    let rows = spec.is_row_wise();
    if let Some(weight) = inputs.weight {
        if !spec.takes_weight {
            return Err(unsupported(&spec, "weight"));
        }
        if rows {
            if weight.len() != shape.classes() {
                return Err(mismatch("weight", weight.len(), format!("{} (one per class)", shape.classes())));
            }
        } else {
            weight_layout("weight", weight.len(), &shape)?;
        }
    }
    if let Some(pos_weight) = inputs.pos_weight {
        if !spec.takes_pos_weight {
            return Err(unsupported(&spec, "pos_weight"));
        }
        if pos_weight.len() != shape.last_dim() {
            return Err(mismatch("pos_weight", pos_weight.len(), format!("{} (last dimension)", shape.last_dim())));
        }
    }
    if let Some(upstream) = inputs.upstream {
        let want = match (reduction, rows) {
            (Reduction::None, true) => shape.rows(),
            (Reduction::None, false) => len,
            _ => 1,
        };
        if upstream.len() != want {
            return Err(mismatch("upstream", upstream.len(), format!("{want} for reduction `{}`", reduction.name())));
        }
    }
    if (inputs.want_lse || inputs.want_accuracy) && !rows {
        return Err(unsupported(&spec, "log-sum-exp or accuracy outputs"));
    }
    if inputs.want_per_class && rows {
        return Err(unsupported(&spec, "per_class (a breakdown of elementwise losses)"));
    }
    if inputs.want_per_class && shape.dims().len() < 2 {
        return Err(Error::InvalidShape {
            shape: shape.dims().to_vec(),
            why: "the per-class breakdown needs (..., C) with at least two dimensions (for 1-D inputs, \
                  reduction `none` gives each element's loss)"
                .into(),
        });
    }
    if inputs.want_lse && !spec.has_row_outputs() {
        return Err(unsupported(&spec, "log-sum-exp (it has no softmax)"));
    }
    if inputs.want_accuracy && !matches!(spec.family, Family::Softmax(v) if v.has_row_label()) {
        return Err(unsupported(&spec, "accuracy (it has no label per row)"));
    }
    if inputs.in_place && matches!(spec.family, Family::Softmax(v) if !v.allows_in_place()) {
        return Err(unsupported(&spec, "an in-place gradient (it reads other classes' inputs while writing)"));
    }
    Ok(spec)
}
