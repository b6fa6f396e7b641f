//! The losses, the registry, and the vocabulary shared by the GPU and CPU paths.
//!
//! A loss is one `define_loss!` (its typed parameters: the struct, defaults, rules,
//! builders and `Loss::name()` constructor) and one `impl Definition` beside it, in the
//! family's file (`regression.rs`, `binary.rs`, `distribution.rs`, `classification.rs`);
//! the definition names its shader (`shaders/<family>/<name>.wgsl`) and its CPU twin
//! (`src/cpu/<family>.rs`). Tests, benchmarks and the CLI reach every loss through
//! [`registry`].

mod binary;
mod classification;
pub(crate) mod definition;
mod distribution;
pub(crate) mod plan;
pub(crate) mod pointwise;
mod regression;
pub(crate) mod softmax;

pub use binary::{Bce, BceWithLogits, Hinge, HingeEmbedding, SigmoidFocal, SoftMargin, SquaredHinge};
pub use classification::{
    CrossEntropy, CrossEntropySoft, Focal, GeneralizedCrossEntropy, HardBootstrap, MultiLabelMargin,
    MultiLabelSoftMargin, MultiMargin, Nll, Poly1CrossEntropy, SoftBootstrap, SymmetricCrossEntropy,
};
pub use definition::Loss;
pub use distribution::{Jsd, KlDiv};
pub use plan::{Bindings, LossStats, Options, Plan};
pub use regression::{Huber, LogCosh, Mse, SmoothL1, L1};

use crate::error::{Error, Result};
use crate::DType;

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
    /// Element by element (`shaders/lib/pointwise.wgsl`).
    Pointwise,
    /// Row by row over the class dimension (`shaders/lib/rows.wgsl`).
    Softmax(softmax::Variant),
}

/// How an elementwise loss's gradient with respect to its target is formed, when the
/// target is differentiable (PyTorch's autograd gives it there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TargetGrad {
    /// Not differentiable in the target (labels, signs, or no target gradient in PyTorch).
    None,
    /// `−dl/dx`: a loss of `d = x − y` (the driver negates the input gradient).
    Negated,
    /// Its own: the loss file's `fn pointwise_target(x, y, index) -> f32` and the twin's
    /// `PointwiseLoss::eval_target`.
    Own,
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
    pub(crate) ignore_index: i32,
    /// Label losses: `mean` divides by the kept rows even with a class weight (the
    /// weight is focal's α as torchvision-style ports, kornia and MONAI apply it),
    /// instead of by the summed weight of the kept rows (PyTorch's weighted mean).
    pub(crate) unweighted_mean: bool,
    pub(crate) target_grad: TargetGrad,
    pub(crate) family: Family,
    /// The kernel shape that plans and records the loss on the GPU.
    pub(crate) kernel: &'static dyn plan::KernelShape,
}

impl Spec {
    pub(crate) fn pointwise(name: &'static str, reference: &'static str, shader: &'static str) -> Self {
        Self::family(name, reference, shader, Family::Pointwise, &pointwise::POINTWISE)
    }

    pub(crate) fn softmax(
        name: &'static str,
        reference: &'static str,
        shader: &'static str,
        variant: softmax::Variant,
    ) -> Self {
        Self::row_wise(name, reference, shader, variant)
    }

    pub(crate) fn row_wise(
        name: &'static str,
        reference: &'static str,
        shader: &'static str,
        variant: softmax::Variant,
    ) -> Self {
        Spec {
            input_domain: if variant == softmax::Variant::Nll { Domain::LogProbability } else { Domain::Real },
            target_domain: if variant == softmax::Variant::SoftTargets { Domain::Distribution } else { Domain::Label },
            takes_weight: true,
            ..Self::family(name, reference, shader, Family::Softmax(variant), &softmax::ROWS)
        }
    }

    /// A label function of the softmax family with integer labels and `ignore_index`.
    pub(crate) fn labels(name: &'static str, reference: &'static str, shader: &'static str, ignore_index: i32) -> Self {
        Spec {
            ignore_index,
            invalid_means: Some(("labels", "[0, C) or ignore_index")),
            ..Self::softmax(name, reference, shader, softmax::Variant::HardLabels)
        }
    }

    fn family(
        name: &'static str,
        reference: &'static str,
        shader: &'static str,
        family: Family,
        kernel: &'static dyn plan::KernelShape,
    ) -> Self {
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
            ignore_index: -100,
            unweighted_mean: false,
            target_grad: TargetGrad::None,
            family,
            kernel,
        }
    }

    /// The shader's path under `shaders/`, without extension.
    pub fn shader_name(&self) -> &'static str {
        self.shader
    }

    /// The operand whose values the GPU checks against a domain and that domain in
    /// words (BCE's probabilities, labels in range), none when every value is valid.
    /// A call that finds values outside it counts them ([`LossStats::invalid`]) and
    /// writes zeros instead of its gradient and per-element outputs.
    pub fn checked_domain(&self) -> Option<(&'static str, &'static str)> {
        self.invalid_means
    }

    /// The row-wise kind of the loss, none for other shapes.
    pub(crate) fn row_variant(&self) -> Option<softmax::Variant> {
        match self.family {
            Family::Softmax(variant) => Some(variant),
            Family::Pointwise => None,
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

    /// True when the loss can return its gradient with respect to the target too, in the
    /// same pass ([`Inputs::with_target_grad`], [`Bindings::target_grad`]).
    pub fn target_differentiable(&self) -> bool {
        self.target_grad != TargetGrad::None
    }

    /// True when `mean` divides by a sum over the kept rows (those whose label is not
    /// ignored) of their label's class weight (cross-entropy, its label functions, NLL),
    /// false when by the number of rows or elements. With [`Spec::unweighted_mean`] each
    /// kept row counts 1 whatever its weight.
    pub fn mean_over_label_weights(&self) -> bool {
        matches!(self.family, Family::Softmax(v) if v.mean_over_label_weights())
    }

    /// True when `mean` counts each kept row once even with a class weight (focal with
    /// `weight_as_alpha`: the weight is α as torchvision-style ports, kornia and MONAI
    /// apply it), instead of PyTorch's weighted mean (÷ Σ w_y over kept rows).
    pub fn unweighted_mean(&self) -> bool {
        self.unweighted_mean
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
}

/// Every loss, once, with representative parameters. Tests, benchmarks and the CLI
/// iterate this list; each family's definitions file lists its own.
pub fn registry() -> Vec<Loss> {
    [regression::registry(), binary::registry(), distribution::registry(), classification::registry()].concat()
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

    /// Number of elements; `usize::MAX` when the product overflows (every call refuses
    /// such a shape: [`Shape::checked_len`] tells it apart).
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(usize::MAX)
    }

    /// Number of elements, or `None` when the product of the dimensions overflows.
    pub fn checked_len(&self) -> Option<usize> {
        product(&self.dims)
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

    /// Class stride S = d1·…·dk of a row-wise layout (`usize::MAX` on overflow).
    pub fn inner(&self) -> usize {
        product(self.dims.get(2..).unwrap_or(&[])).unwrap_or(usize::MAX)
    }

    /// Rows N·S of a row-wise layout: one label, loss and log-sum-exp each
    /// (`usize::MAX` on overflow).
    pub fn rows(&self) -> usize {
        self.batch().saturating_mul(self.inner())
    }
}

/// The product of `dims`, or `None` when it overflows. A zero anywhere makes it 0 even
/// when the others alone would overflow (the tensor is empty either way).
fn product(dims: &[usize]) -> Option<usize> {
    if dims.contains(&0) {
        return Some(0);
    }
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
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
/// reference ([`crate::cpu::compute`]). Made by [`Inputs::new`] or [`Inputs::labels`] and
/// the builders.
#[derive(Clone, Debug)]
#[non_exhaustive]
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
    /// Elementwise losses with a differentiable target
    /// ([`Spec::target_differentiable`]): also return d(loss)/d(target), computed in the
    /// same pass.
    pub want_target_grad: bool,
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
            want_target_grad: false,
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

    /// Asks for the gradient with respect to the target too (losses whose
    /// [`Spec::target_differentiable`]).
    pub fn with_target_grad(mut self) -> Self {
        self.want_target_grad = true;
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

/// How a `weight` operand lines up with the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightLayout {
    /// One weight per input element (elementwise losses).
    PerElement,
    /// One weight per class: for elementwise losses along the last dimension (as PyTorch
    /// broadcasts a 1-D weight against `(N, C)`), for row-wise losses along the class
    /// dimension, as their `weight` always is.
    PerClass,
}

/// Checks a loss, reduction and shape that every path shares.
pub(crate) fn check_problem(loss: &Loss, reduction: Reduction, shape: &Shape) -> Result<Spec> {
    let spec = loss.validate()?;
    let invalid_shape = |why: String| Error::InvalidShape { shape: shape.dims().to_vec(), why };
    // The kernels index elements, rows, classes and inner positions in u32.
    if let Some(&dim) = shape.dims().iter().find(|&&d| d > u32::MAX as usize) {
        return Err(invalid_shape(format!("dimension {dim} exceeds the kernels' u32 indexing")));
    }
    let Some(len) = shape.checked_len() else {
        return Err(invalid_shape("the number of elements overflows usize".into()));
    };
    if spec.is_row_wise() && shape.inner().checked_mul(shape.classes()).is_none() {
        return Err(invalid_shape("the elements of one batch item overflow usize".into()));
    }
    if reduction == Reduction::BatchMean && !spec.takes_batchmean {
        return Err(Error::UnsupportedReduction { loss: spec.name, reduction: reduction.name() });
    }
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
        Ok(WeightLayout::PerClass)
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
    let spec = check_problem(loss, reduction, &shape)?;
    if reduction == Reduction::BatchMean && inputs.shape.is_none() {
        // Without a shape the input is 1-D and its batch is every element: `batchmean`
        // would silently be `mean`.
        return Err(Error::MissingArgument {
            argument: "shape",
            why: "reduction `batchmean` divides by the first dimension; give the shape (Inputs::shape)",
        });
    }
    let len = shape.len();
    let mismatch = |argument, actual: usize, expected: String| Error::LengthMismatch { argument, expected, actual };
    if inputs.input.len() != len {
        return Err(mismatch("input", inputs.input.len(), format!("{len} (shape {:?})", shape.dims())));
    }
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
    if inputs.want_target_grad && !spec.target_differentiable() {
        return Err(unsupported(&spec, "a target gradient (its target is not differentiable)"));
    }
    if inputs.in_place && matches!(spec.family, Family::Softmax(v) if !v.allows_in_place()) {
        return Err(unsupported(&spec, "an in-place gradient (it reads other classes' inputs while writing)"));
    }
    Ok(spec)
}
