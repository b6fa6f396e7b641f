//! GPU-vs-CPU agreement: seeded random operands drawn from each loss's domain, and the
//! comparison with the tolerances of the design (f32 GPU against the f64 reference).
//! The test suite and `fused-loss check` both use it, so they judge alike.

use rand::{Rng, SeedableRng};

use crate::cpu::{self, CpuOutput};
use crate::losses::{Domain, Inputs, Loss, Reduction, Target};
use crate::{DType, Error, Gpu, Output, Result};

/// Relative tolerance of values and gradients.
pub const REL_TOL: f64 = 1e-5;
/// Relative tolerance of gradients stored in f16 or bf16 (bf16 rounding alone is up to
/// 2^-9 ≈ 0.2%). Loss values are still summed in f32 and held to [`REL_TOL`].
pub const HALF_REL_TOL: f64 = 1e-2;
/// Absolute tolerance of a gradient element, in units of the gradient's scale
/// (`1/N` for mean, times |upstream| and the largest weight): terms like
/// sums of several terms of both signs (smoothing's `W p_c - w_c`, soft targets'
/// `p_c Σ w t' - w_c t'_c`, the focal slope) cancel, and f32 rounding of the terms then
/// leaves an absolute error of a few ulps of their magnitude. (BCE's and cross-entropy's
/// own `σ(x) - 1` and `p_y - 1` no longer cancel: `tests/numerics.rs`.)
pub const GRAD_ABS_TOL: f64 = 1e-6;
/// Absolute tolerance of a loss value, in units of the number of summed terms times
/// the largest weight and the magnitude of the terms (for the same reason).
pub const VALUE_ABS_TOL: f64 = 1e-7;

/// How an optional weight operand is laid out in a case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightKind {
    /// No weight.
    None,
    /// One weight per element.
    PerElement,
    /// One weight per entry of the last dimension.
    LastDim,
    /// One weight per class (row-wise losses).
    PerClass,
}

/// One GPU-vs-CPU comparison.
#[derive(Clone, Debug)]
pub struct Case {
    /// The loss.
    pub loss: Loss,
    /// The reduction.
    pub reduction: Reduction,
    /// Input dimensions.
    pub dims: Vec<usize>,
    /// Weight layout (only for losses that take one).
    pub weight: WeightKind,
    /// Whether to pass `pos_weight`.
    pub pos_weight: bool,
    /// Whether to pass an upstream gradient.
    pub upstream: bool,
    /// The optional outputs: row-wise losses' log-sum-exp and (with a label per row)
    /// accuracy; elementwise losses' per-class breakdown.
    pub row_outputs: bool,
    /// RNG seed of the operands.
    pub seed: u64,
    /// Element type of input, target and gradient.
    pub dtype: DType,
    /// Gradient written over the input (GPU).
    pub in_place: bool,
    /// Also the gradient with respect to the target (losses whose target is
    /// differentiable).
    pub target_grad: bool,
}

impl Case {
    /// A case with no optional operands.
    pub fn new(loss: impl Into<Loss>, reduction: Reduction, dims: &[usize], seed: u64) -> Self {
        Case {
            loss: loss.into(),
            reduction,
            dims: dims.to_vec(),
            weight: WeightKind::None,
            pos_weight: false,
            upstream: false,
            row_outputs: false,
            seed,
            dtype: DType::F32,
            in_place: false,
            target_grad: false,
        }
    }
}

impl Case {
    /// A name for the case as a test: `loss::{params}::reduction::dtype::dims[::options]::seed`,
    /// e.g. `huber::{delta:0.5}::mean::f32::257::upstream::seed24337`. No spaces, so that a
    /// test filter can name any prefix of it.
    pub fn test_name(&self) -> String {
        let debug = format!("{:?}", self.loss);
        let params = debug.find('{').map_or(String::new(), |i| format!("::{}", debug[i..].replace(' ', "")));
        let dims: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        let mut name =
            format!("{}{params}::{}::{}::{}", self.loss.name(), self.reduction.name(), self.dtype, dims.join("x"));
        let mut option = |o: &str| {
            name += "::";
            name += o;
        };
        match self.weight {
            WeightKind::None => {}
            WeightKind::PerElement => option("weight"),
            WeightKind::LastDim => option("weight_last"),
            WeightKind::PerClass => option("weight_class"),
        }
        if self.pos_weight {
            option("pos_weight");
        }
        if self.upstream {
            option("upstream");
        }
        if self.row_outputs {
            option(if self.loss.spec().is_row_wise() { "lse_accuracy" } else { "per_class" });
        }
        if self.in_place {
            option("in_place");
        }
        if self.target_grad {
            option("target_grad");
        }
        format!("{name}::seed{}", self.seed)
    }
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {} {:?}", self.loss, self.reduction.name(), self.dims)?;
        match self.weight {
            WeightKind::None => {}
            WeightKind::PerElement => write!(f, " +weight")?,
            WeightKind::LastDim => write!(f, " +weight[last]")?,
            WeightKind::PerClass => write!(f, " +weight[class]")?,
        }
        if self.pos_weight {
            write!(f, " +pos_weight")?;
        }
        if self.upstream {
            write!(f, " +upstream")?;
        }
        if self.row_outputs {
            write!(f, "{}", if self.loss.spec().is_row_wise() { " +lse/acc" } else { " +per-class" })?;
        }
        if self.dtype != DType::F32 {
            write!(f, " {}", self.dtype)?;
        }
        if self.in_place {
            write!(f, " in-place")?;
        }
        if self.target_grad {
            write!(f, " +target-grad")?;
        }
        write!(f, " seed={}", self.seed)
    }
}

/// The operands of a case, owned.
#[derive(Clone, Debug)]
pub struct CaseData {
    /// Input.
    pub input: Vec<f32>,
    /// f32 target (empty when the loss takes labels).
    pub target: Vec<f32>,
    /// Labels (empty unless the loss takes them).
    pub labels: Vec<i32>,
    /// Weight.
    pub weight: Option<Vec<f32>>,
    /// pos_weight.
    pub pos_weight: Option<Vec<f32>>,
    /// Upstream gradient.
    pub upstream: Option<Vec<f32>>,
}

impl CaseData {
    /// Borrowed operands with the case's shape and requests.
    pub fn inputs<'a>(&'a self, case: &Case) -> Inputs<'a> {
        let spec = case.loss.spec();
        let target = if matches!(spec.target_domain, Domain::Label | Domain::LabelList) {
            Target::Labels(&self.labels)
        } else {
            Target::Values(&self.target)
        };
        let mut inputs = Inputs::labels(&self.input, &[]).shape(&case.dims);
        inputs.target = target;
        inputs.weight = self.weight.as_deref();
        inputs.pos_weight = self.pos_weight.as_deref();
        inputs.upstream = self.upstream.as_deref();
        inputs.want_lse = case.row_outputs && spec.has_row_outputs();
        inputs.want_per_class = case.row_outputs && !spec.is_row_wise();
        inputs.want_accuracy = case.row_outputs && spec.target_domain == Domain::Label;
        inputs.dtype = case.dtype;
        inputs.in_place = case.in_place;
        inputs.want_target_grad = case.target_grad;
        inputs
    }
}

fn draw(rng: &mut impl Rng, domain: Domain) -> f32 {
    match domain {
        Domain::Real => rng.random_range(-4.0..4.0),
        Domain::Probability => {
            // Exact zeros matter for KL (0 ln 0) and are valid for every probability.
            if rng.random_bool(0.05) {
                0.0
            } else {
                rng.random_range(0.001..0.999)
            }
        }
        Domain::LogProbability => rng.random_range(-8.0..0.0),
        Domain::Sign => {
            if rng.random_bool(0.5) {
                1.0
            } else {
                -1.0
            }
        }
        // Row-shaped domains are drawn in `Case::data`.
        Domain::Label | Domain::Distribution | Domain::LabelList => unreachable!("drawn per row"),
    }
}

impl Case {
    /// Draws the operands from the loss's domains with the case's seed.
    pub fn data(&self) -> CaseData {
        let spec = self.loss.spec();
        let shape = crate::Shape::new(&self.dims);
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let len = shape.len();
        let input: Vec<f32> = (0..len).map(|_| draw(&mut rng, spec.input_domain)).collect();
        let (mut target, mut labels) = (Vec::new(), Vec::new());
        match spec.target_domain {
            Domain::Label => {
                // About 10% ignored, never row 0 (a mean over no rows is NaN, tested
                // on its own); kept rows never carry an ignore_index that is a class.
                let classes = shape.classes() as i32;
                let ignore = spec.ignore();
                let real_classes: Vec<i32> = (0..classes).filter(|&c| Some(c) != ignore || classes == 1).collect();
                labels = (0..shape.rows())
                    .map(|r| match ignore {
                        Some(ignore) if r > 0 && rng.random_bool(0.1) => ignore,
                        _ => real_classes[rng.random_range(0..real_classes.len())],
                    })
                    .collect();
            }
            Domain::LabelList => {
                // Per row up to four classes (repeats allowed, as PyTorch counts them), then
                // -1, then anything in [-1, C), which must not be read.
                let classes = shape.classes();
                for _ in 0..shape.rows() {
                    let listed = rng.random_range(0..=classes.min(4));
                    for k in 0..classes {
                        labels.push(match k.cmp(&listed) {
                            std::cmp::Ordering::Less => rng.random_range(0..classes as i32),
                            std::cmp::Ordering::Equal => -1,
                            std::cmp::Ordering::Greater => rng.random_range(-1..classes as i32),
                        });
                    }
                }
            }
            Domain::Distribution => {
                // Positive weights normalised along the class dimension.
                let (classes, inner) = (shape.classes(), shape.inner());
                target = (0..len).map(|_| rng.random_range(0.0f32..1.0).powi(3)).collect();
                for r in 0..shape.rows() {
                    let (n, s) = (r / inner, r % inner);
                    let index = |c: usize| n * classes * inner + c * inner + s;
                    let total: f32 = (0..classes).map(|c| target[index(c)]).sum();
                    for c in 0..classes {
                        target[index(c)] /= total.max(f32::MIN_POSITIVE);
                    }
                }
            }
            domain => target = (0..len).map(|_| draw(&mut rng, domain)).collect(),
        }
        let mut positive = |n: usize, hi: f32| (0..n).map(|_| rng.random_range(0.25..hi)).collect::<Vec<f32>>();
        let weight = match self.weight {
            WeightKind::None => None,
            WeightKind::PerElement => Some(positive(len, 2.0)),
            WeightKind::LastDim => Some(positive(shape.last_dim(), 2.0)),
            WeightKind::PerClass => Some(positive(shape.classes(), 2.0)),
        };
        let pos_weight = self.pos_weight.then(|| positive(shape.last_dim(), 3.0));
        let upstream = self.upstream.then(|| {
            let n = match self.reduction {
                Reduction::None if spec.is_row_wise() => shape.rows(),
                Reduction::None => len,
                _ => 1,
            };
            (0..n).map(|_| rng.random_range(0.5..2.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 }).collect()
        });
        CaseData { input, target, labels, weight, pos_weight, upstream }
    }
}

/// The largest errors of one comparison, as multiples of the allowed error (≤ 1 passes).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Agreement {
    /// Error of the reduced value (or worst per-element value for `none`), / allowed.
    pub value: f64,
    /// Worst gradient element error, / allowed.
    pub grad: f64,
    /// Worst log-sum-exp error, / allowed (0 when not asked for).
    pub lse: f64,
    /// Worst per-class breakdown error, / allowed (0 when not asked for).
    pub per_class: f64,
    /// Worst target-gradient element error, / allowed (0 when not asked for).
    pub target_grad: f64,
    /// Whether the accuracy counts and non-finite counts are equal.
    pub counts_equal: bool,
}

impl Agreement {
    /// True when everything is within tolerance (NaN never passes).
    pub fn passes(&self) -> bool {
        self.value <= 1.0
            && self.grad <= 1.0
            && self.lse <= 1.0
            && self.per_class <= 1.0
            && self.target_grad <= 1.0
            && self.counts_equal
    }
}

fn ratio(got: f64, want: f64, abs_tol: f64) -> f64 {
    ratio_rel(got, want, REL_TOL, abs_tol)
}

fn ratio_rel(got: f64, want: f64, rel_tol: f64, abs_tol: f64) -> f64 {
    let err = (got - want).abs();
    let allowed = rel_tol * want.abs() + abs_tol;
    if got == want {
        0.0 // also equal infinities
    } else if err.is_nan() {
        f64::INFINITY
    } else {
        err / allowed
    }
}

fn worst(got: &[f32], want: &[f64], abs_tol: f64) -> f64 {
    worst_rel(got, want, REL_TOL, abs_tol)
}

fn worst_rel(got: &[f32], want: &[f64], rel_tol: f64, abs_tol: f64) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter().zip(want).map(|(&g, &w)| ratio_rel(g as f64, w, rel_tol, abs_tol)).fold(0.0, f64::max)
}

/// Compares a GPU result with the CPU reference of the same case.
pub fn compare(case: &Case, data: &CaseData, gpu: &Output, cpu: &CpuOutput) -> Agreement {
    let spec = case.loss.spec();
    let shape = crate::Shape::new(&case.dims);
    let max_of = |v: &Option<Vec<f32>>| v.iter().flatten().fold(1.0f64, |m, &w| m.max((w as f64).abs()));
    let max_weight = max_of(&data.weight);
    let max_pos = max_of(&data.pos_weight);
    let upstream = if data.upstream.is_some() { max_of(&data.upstream) } else { 1.0 };
    // Terms are as large as the inputs (row-wise: plus the log-sum-exp's ln C), and
    // terms like y ln y - y x cancel to far less: allow ulps of the terms, not of the result.
    let largest_input = data.input.iter().fold(1.0f64, |m, &x| if x.is_finite() { m.max((x as f64).abs()) } else { m });
    // Label functions multiply ln p_y's rounding by |dl/d ln p_y| (poly-1: up to 1 + ε,
    // SCE: α + β|A|), so their terms' scale is that much larger.
    let sensitivity = case.loss.definition().sensitivity();
    let magnitude = if spec.is_row_wise() { largest_input + (shape.classes() as f64).ln() } else { largest_input };
    let magnitude = magnitude * sensitivity;
    let terms = if spec.is_row_wise() { shape.rows() } else { shape.len() }.max(1) as f64;
    let scale = match case.reduction {
        Reduction::Mean if spec.mean_over_label_weights() => {
            // Divided by the summed weight of the non-ignored rows.
            let weights = data.weight.as_ref().filter(|_| !spec.unweighted_mean());
            let weight_of = |l: i32| weights.map_or(1.0, |w| w[l as usize] as f64);
            let kept: f64 = data.labels.iter().filter(|&&l| Some(l) != spec.ignore()).map(|&l| weight_of(l)).sum();
            1.0 / kept.max(f64::MIN_POSITIVE)
        }
        Reduction::Mean => 1.0 / terms,
        Reduction::BatchMean => 1.0 / shape.batch() as f64,
        _ => 1.0,
    };
    let grad_abs = GRAD_ABS_TOL * scale * upstream * max_weight * max_pos * sensitivity;
    // A gradient beyond the storage type's range is stored as ±inf (BCE's 1e12 at p = 0
    // in f16), as PyTorch's f16 kernels store it.
    let gradient = |gpu: &[f32], cpu: &[f64]| {
        let stored: Vec<f64> = cpu
            .iter()
            .map(|&g| if case.dtype.round(g as f32).is_infinite() { case.dtype.round(g as f32) as f64 } else { g })
            .collect();
        match case.dtype {
            DType::F32 => worst(gpu, cpu, grad_abs),
            // f16's subnormal spacing (2^-24) bounds the absolute error of tiny gradients.
            DType::F16 => worst_rel(gpu, &stored, HALF_REL_TOL, grad_abs.max(2f64.powi(-24))),
            DType::BF16 => worst_rel(gpu, &stored, HALF_REL_TOL, grad_abs),
        }
    };
    let grad = gradient(&gpu.grad, &cpu.grad);
    let target_grad = match (&gpu.target_grad, &cpu.target_grad) {
        (Some(g), Some(c)) => gradient(g, c),
        (None, None) => 0.0,
        _ => f64::INFINITY,
    };
    let term_abs = VALUE_ABS_TOL * max_weight * max_pos * magnitude;
    let value = match (&gpu.per_element, &cpu.per_element) {
        (Some(g), Some(c)) => worst(g, c, term_abs),
        (None, None) => ratio(gpu.value as f64, cpu.value, term_abs * terms * scale.max(1.0 / terms)),
        _ => f64::INFINITY,
    };
    let lse = match (&gpu.lse, &cpu.lse) {
        (Some(g), Some(c)) => worst(g, c, VALUE_ABS_TOL * magnitude),
        (None, None) => 0.0,
        _ => f64::INFINITY,
    };
    // A class's sum has len / C terms.
    let per_class = match (&gpu.per_class, &cpu.per_class) {
        (Some(g), Some(c)) => worst(g, c, term_abs * (shape.len() / shape.last_dim().max(1)) as f64),
        (None, None) => 0.0,
        _ => f64::INFINITY,
    };
    let counts_equal = gpu.correct.map(u64::from) == cpu.correct && u64::from(gpu.nonfinite) == cpu.nonfinite;
    Agreement { value, grad, lse, per_class, target_grad, counts_equal }
}

/// Whether `gpu` must refuse `case` (f16 without `SHADER_F16`) rather than compute it.
pub fn must_refuse(gpu: &Gpu, case: &Case) -> bool {
    case.dtype == DType::F16 && !gpu.features().contains(wgpu::Features::SHADER_F16)
}

/// Whether `error` is the refusal [`must_refuse`] expects.
pub fn is_expected_refusal(error: &Error) -> bool {
    matches!(error, Error::MissingFeature { feature: "SHADER_F16", .. })
}

/// Runs a case on the GPU and on the CPU and compares them.
pub fn run_case(gpu: &Gpu, case: &Case) -> Result<Agreement> {
    let data = case.data();
    let inputs = data.inputs(case);
    let want = cpu::compute(&case.loss, case.reduction, &inputs)?;
    let got = gpu.compute(&case.loss, case.reduction, &inputs)?;
    Ok(compare(case, &data, &got, &want))
}

/// The parameter settings a loss is checked with: the registry's, and for losses whose
/// options change the kernel's arithmetic, the others that matter (from its definition).
pub fn variations(loss: Loss) -> Vec<Loss> {
    loss.definition().variations()
}

/// Elementwise sizes of the standard matrix.
pub const ELEMENTWISE_DIMS: &[&[usize]] = &[&[1], &[255], &[256], &[257], &[100_000], &[333, 7]];
/// Row-wise shapes of the standard matrix: C from 2 to 1000, rows around the
/// workgroup size, the class dimension strided (N, C, d1, d2), and C on both sides of
/// the per-thread/per-workgroup switch.
pub const ROW_DIMS: &[&[usize]] =
    &[&[1, 2], &[257, 3], &[255, 10], &[3, 32], &[4, 33], &[7, 1000], &[2, 5, 7, 3], &[3, 40, 9]];

/// The standard matrix: every registry loss (and its [`variations`]) × reduction × its
/// optional operands, elementwise losses on `elementwise_dims` and row-wise losses on
/// `row_dims`. Seeds are derived from the case's position, so a printed seed
/// reproduces it.
pub fn standard_cases(elementwise_dims: &[&[usize]], row_dims: &[&[usize]]) -> Vec<Case> {
    let mut cases = Vec::new();
    for registered in crate::registry() {
        for loss in variations(registered) {
            let spec = loss.spec();
            let row_wise = spec.is_row_wise();
            // (weight, pos_weight, upstream, row outputs)
            let mut options = vec![(WeightKind::None, false, false, false), (WeightKind::None, false, true, false)];
            if spec.takes_weight && row_wise {
                options.push((WeightKind::PerClass, false, false, true));
            } else if spec.takes_weight {
                options.push((WeightKind::PerElement, false, false, false));
                options.push((WeightKind::LastDim, false, false, false));
            }
            if spec.takes_pos_weight {
                options.push((WeightKind::None, true, false, false));
                options.push((WeightKind::PerElement, true, true, false));
            }
            let mut target_option = None;
            if spec.target_differentiable() {
                // Both gradients from one pass, with an upstream gradient.
                target_option = Some(options.len());
                options.push((WeightKind::None, false, true, false));
            }
            if !row_wise {
                // The per-class breakdown, with the operands multi-label BCE has.
                let weight = if spec.takes_weight { WeightKind::LastDim } else { WeightKind::None };
                options.push((weight, spec.takes_pos_weight, true, true));
            }
            let mut reductions = Reduction::ALL.to_vec();
            if spec.takes_batchmean {
                reductions.push(Reduction::BatchMean);
            }
            let storages = [(DType::F32, false), (DType::F16, false), (DType::BF16, false), (DType::BF16, true)];
            let all_dims = if row_wise { row_dims } else { elementwise_dims };
            for dims in all_dims.iter().filter(|d| !spec.two_dimensional() || d.len() == 2) {
                for &reduction in &reductions {
                    for (o, &(weight, pos_weight, upstream, row_outputs)) in options.iter().enumerate() {
                        if row_outputs && !row_wise && dims.len() < 2 {
                            continue; // the breakdown needs (..., C)
                        }
                        // Half precision and in-place with and without an upstream
                        // gradient (the first two options): the storage path is the
                        // same for every operand combination, and each combination is
                        // a pipeline that GL compiles slowly.
                        let target_grad = target_option == Some(o);
                        // The target gradient in every element type (its own stores), not in place.
                        for &(dtype, in_place) in storages.iter().filter(|&&(d, p)| {
                            (o < 2 || (d, p) == (DType::F32, false) || (target_grad && !p))
                                && (!p || spec.allows_in_place())
                        }) {
                            let seed = 0x5eed + cases.len() as u64;
                            cases.push(Case {
                                weight,
                                pos_weight,
                                upstream,
                                row_outputs,
                                dtype,
                                in_place,
                                target_grad,
                                ..Case::new(loss.clone(), reduction, dims, seed)
                            });
                        }
                    }
                }
            }
        }
    }
    cases
}
