//! GPU-vs-CPU agreement: seeded random operands drawn from each loss's domain, and the
//! comparison with the tolerances of the design (f32 GPU against the f64 reference).
//! The test suite and `fused-loss check` both use it, so they judge alike.

use rand::{Rng, SeedableRng};

use crate::cpu::{self, CpuOutput};
use crate::losses::{Domain, Inputs, Loss, Reduction};
use crate::{Gpu, Output, Result};

/// Relative tolerance of values and gradients.
pub const REL_TOL: f64 = 1e-5;
/// Absolute tolerance of a gradient element, in units of the gradient's scale
/// (`1/N` for mean, times |upstream| and the largest weight): terms like
/// `(p y + 1 - y) sigmoid(x) - p y` cancel, and f32 rounding of the terms then leaves
/// an absolute error of a few ulps of their magnitude.
pub const GRAD_ABS_TOL: f64 = 1e-6;
/// Absolute tolerance of a loss value, in units of the number of summed elements
/// times the largest weight (for the same reason).
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
    /// RNG seed of the operands.
    pub seed: u64,
}

impl std::fmt::Display for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {:?}",
            self.loss.name(),
            self.reduction.name(),
            self.dims
        )?;
        match self.weight {
            WeightKind::None => {}
            WeightKind::PerElement => write!(f, " +weight")?,
            WeightKind::LastDim => write!(f, " +weight[last]")?,
        }
        if self.pos_weight {
            write!(f, " +pos_weight")?;
        }
        if self.upstream {
            write!(f, " +upstream")?;
        }
        write!(f, " seed={}", self.seed)
    }
}

/// The operands of a case, owned.
#[derive(Clone, Debug)]
pub struct CaseData {
    /// Input.
    pub input: Vec<f32>,
    /// Target.
    pub target: Vec<f32>,
    /// Weight.
    pub weight: Option<Vec<f32>>,
    /// pos_weight.
    pub pos_weight: Option<Vec<f32>>,
    /// Upstream gradient.
    pub upstream: Option<Vec<f32>>,
}

impl CaseData {
    /// Borrowed operands with the case's shape.
    pub fn inputs<'a>(&'a self, case: &Case) -> Inputs<'a> {
        Inputs {
            input: &self.input,
            target: &self.target,
            shape: Some(crate::Shape::new(&case.dims)),
            weight: self.weight.as_deref(),
            pos_weight: self.pos_weight.as_deref(),
            upstream: self.upstream.as_deref(),
        }
    }
}

fn draw(rng: &mut impl Rng, domain: Domain) -> f32 {
    match domain {
        Domain::Real => rng.random_range(-4.0..4.0),
        Domain::Probability => rng.random_range(0.001..0.999),
        Domain::Sign => {
            if rng.random_bool(0.5) {
                1.0
            } else {
                -1.0
            }
        }
    }
}

impl Case {
    /// Draws the operands from the loss's domains with the case's seed.
    pub fn data(&self) -> CaseData {
        let spec = self.loss.spec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let len: usize = self.dims.iter().product();
        let last = self.dims.last().copied().unwrap_or(1);
        let input = (0..len)
            .map(|_| draw(&mut rng, spec.input_domain))
            .collect();
        let target = (0..len)
            .map(|_| draw(&mut rng, spec.target_domain))
            .collect();
        let mut positive = |n: usize, hi: f32| {
            (0..n)
                .map(|_| rng.random_range(0.25..hi))
                .collect::<Vec<f32>>()
        };
        let weight = match self.weight {
            WeightKind::None => None,
            WeightKind::PerElement => Some(positive(len, 2.0)),
            WeightKind::LastDim => Some(positive(last, 2.0)),
        };
        let pos_weight = self.pos_weight.then(|| positive(last, 3.0));
        let upstream = self.upstream.then(|| {
            let n = if self.reduction == Reduction::None {
                len
            } else {
                1
            };
            (0..n)
                .map(|_| rng.random_range(0.5..2.0) * if rng.random_bool(0.5) { 1.0 } else { -1.0 })
                .collect()
        });
        CaseData {
            input,
            target,
            weight,
            pos_weight,
            upstream,
        }
    }
}

/// The largest errors of one comparison, as multiples of the allowed error (≤ 1 passes).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Agreement {
    /// Error of the reduced value (or worst per-element value for `none`), / allowed.
    pub value: f64,
    /// Worst gradient element error, / allowed.
    pub grad: f64,
}

impl Agreement {
    /// True when both are within tolerance (NaN never passes).
    pub fn passes(&self) -> bool {
        self.value <= 1.0 && self.grad <= 1.0
    }
}

fn ratio(got: f64, want: f64, abs_tol: f64) -> f64 {
    let err = (got - want).abs();
    let allowed = REL_TOL * want.abs() + abs_tol;
    if err.is_nan() {
        f64::INFINITY
    } else {
        err / allowed
    }
}

/// Compares a GPU result with the CPU reference of the same case.
pub fn compare(case: &Case, data: &CaseData, gpu: &Output, cpu: &CpuOutput) -> Agreement {
    let len = data.input.len().max(1) as f64;
    let max_weight = data
        .weight
        .iter()
        .flatten()
        .fold(1.0f64, |m, &w| m.max(w as f64));
    let max_pos = data
        .pos_weight
        .iter()
        .flatten()
        .fold(1.0f64, |m, &w| m.max(w as f64));
    let upstream = data
        .upstream
        .iter()
        .flatten()
        .fold(0.0f64, |m, &u| m.max((u as f64).abs()));
    let upstream = if data.upstream.is_some() {
        upstream
    } else {
        1.0
    };
    let scale = if case.reduction == Reduction::Mean {
        1.0 / len
    } else {
        1.0
    };
    let grad_abs = GRAD_ABS_TOL * scale * upstream * max_weight * max_pos;
    let mut grad = 0.0f64;
    if gpu.grad.len() != cpu.grad.len() {
        grad = f64::INFINITY;
    }
    for (&g, &c) in gpu.grad.iter().zip(&cpu.grad) {
        grad = grad.max(ratio(g as f64, c, grad_abs));
    }
    let value = match (&gpu.per_element, &cpu.per_element) {
        (Some(g), Some(c)) if g.len() == c.len() => g
            .iter()
            .zip(c)
            .map(|(&g, &c)| ratio(g as f64, c, VALUE_ABS_TOL * max_weight * max_pos))
            .fold(0.0, f64::max),
        (None, None) => {
            let summed = if case.reduction == Reduction::Sum {
                len
            } else {
                1.0
            };
            ratio(
                gpu.value as f64,
                cpu.value,
                VALUE_ABS_TOL * summed * max_weight * max_pos,
            )
        }
        _ => f64::INFINITY,
    };
    Agreement { value, grad }
}

/// Runs a case on the GPU and on the CPU and compares them.
pub fn run_case(gpu: &Gpu, case: &Case) -> Result<Agreement> {
    let data = case.data();
    let inputs = data.inputs(case);
    let want = cpu::compute(&case.loss, case.reduction, &inputs)?;
    let got = gpu.compute(&case.loss, case.reduction, &inputs)?;
    Ok(compare(case, &data, &got, &want))
}

/// The standard matrix: every registry loss × reduction × its optional operands, on
/// each of `dims_list`. Seeds are derived from the case's position, so a printed seed
/// reproduces it.
pub fn standard_cases(dims_list: &[Vec<usize>]) -> Vec<Case> {
    let mut cases = Vec::new();
    for loss in crate::registry() {
        let spec = loss.spec();
        let mut options = vec![
            (WeightKind::None, false, false),
            (WeightKind::None, false, true),
        ];
        if spec.takes_weight {
            options.push((WeightKind::PerElement, false, false));
            options.push((WeightKind::LastDim, false, false));
        }
        if spec.takes_pos_weight {
            options.push((WeightKind::None, true, false));
            options.push((WeightKind::PerElement, true, true));
        }
        for dims in dims_list {
            for reduction in Reduction::ALL {
                for &(weight, pos_weight, upstream) in &options {
                    let seed = 0x5eed + cases.len() as u64;
                    cases.push(Case {
                        loss,
                        reduction,
                        dims: dims.clone(),
                        weight,
                        pos_weight,
                        upstream,
                        seed,
                    });
                }
            }
        }
    }
    cases
}
