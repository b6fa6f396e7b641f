//! The references themselves: the CPU twins against central finite differences, and
//! CPU and GPU against constants PyTorch produced in float64
//! (`tests/data/gen_torch_constants.py` → `torch_constants.json` for the elementwise
//! losses, `tests/data/gen_torch_softmax.py` → `torch_softmax.json` for cross-entropy,
//! NLL and KL divergence), and the GPU's worst errors on those cases against PyTorch
//! float32's on the same inputs (`tests/data/torch_f32_error.py` →
//! `torch_f32_error.json`).

mod common;

use fused_loss::cpu;
use fused_loss::{registry, Domain, Inputs, Loss, Reduction, Target};
use rand::{Rng, SeedableRng};
use serde_json::Value;

#[test]
fn elementwise_twins_match_central_differences() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    for loss in registry().into_iter().flat_map(fused_loss::check::variations) {
        let spec = loss.spec();
        if spec.is_row_wise() {
            continue;
        }
        let f = |x: f64, y: f64, pos_weight: f64| cpu::element(&loss, x, y, pos_weight).unwrap();
        let mut draw = |domain: Domain| -> f64 {
            match domain {
                Domain::Probability => rng.random_range(0.01..0.99),
                Domain::LogProbability => rng.random_range(-8.0..-0.01),
                Domain::Sign => {
                    if rng.random_bool(0.5) {
                        1.0
                    } else {
                        -1.0
                    }
                }
                _ => rng.random_range(-8.0..8.0),
            }
        };
        let mut checked = 0;
        while checked < 500 {
            let (x, y) = (draw(spec.input_domain), draw(spec.target_domain));
            if cpu::near_kink(&loss, x, y) {
                continue;
            }
            let pos_weight = if spec.takes_pos_weight { 0.2 + 3.8 * (checked as f64 / 500.0) } else { 1.0 };
            let h = 1e-5 * x.abs().max(1.0);
            let numeric = (f(x + h, y, pos_weight).value - f(x - h, y, pos_weight).value) / (2.0 * h);
            let analytic = f(x, y, pos_weight).grad;
            assert!(
                (numeric - analytic).abs() <= 1e-6 * analytic.abs() + 1e-8,
                "{}: x={x} y={y}: analytic {analytic}, central difference {numeric}",
                spec.name
            );
            checked += 1;
        }
    }
}

#[test]
fn row_wise_twins_match_central_differences() {
    // The CPU reference takes f32 operands, so each input is moved by a step that is
    // exact in f32 and the difference quotient uses the step actually taken.
    let case_dims: [&[usize]; 2] = [&[4, 5], &[2, 3, 2]];
    for registered in registry().into_iter().filter(|l| l.spec().is_row_wise()) {
        for loss in fused_loss::check::variations(registered) {
            let spec = loss.spec();
            for dims in case_dims.into_iter().filter(|d| !spec.two_dimensional() || d.len() == 2) {
                for reduction in [Reduction::Sum, Reduction::Mean] {
                    let case = fused_loss::check::Case {
                        weight: if spec.takes_weight {
                            fused_loss::check::WeightKind::PerClass
                        } else {
                            fused_loss::check::WeightKind::None
                        },
                        ..fused_loss::check::Case::new(&loss, reduction, dims, 99)
                    };
                    let data = case.data();
                    let at = |input: &[f32]| {
                        let mut inputs = data.inputs(&case);
                        inputs.input = input;
                        cpu::compute(&loss, reduction, &inputs).unwrap()
                    };
                    let analytic = at(&data.input).grad;
                    for i in 0..data.input.len() {
                        let (mut plus, mut minus) = (data.input.clone(), data.input.clone());
                        plus[i] += 1.0 / 1024.0;
                        minus[i] -= 1.0 / 1024.0;
                        let step = plus[i] as f64 - minus[i] as f64;
                        let numeric = (at(&plus).value - at(&minus).value) / step;
                        assert!(
                            (numeric - analytic[i]).abs() <= 1e-5 * analytic[i].abs() + 1e-7,
                            "{case} element {i}: analytic {}, central difference {numeric}",
                            analytic[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn fast_cpu_path_agrees_with_reference() {
    // The f32 path benchmarks time must meet the GPU's tolerance against the f64 one.
    // f32 cases only: it reads f32 operands, and a 16-bit case differs only in inputs
    // rounded before it runs and a looser gradient tolerance.
    use fused_loss::check;
    let cases = check::standard_cases(check::ELEMENTWISE_DIMS, check::ROW_DIMS);
    let large = check::standard_cases(&[], &[&[3, 131_072], &[70_000, 3]]);
    let mut failures = Vec::new();
    for case in cases.iter().chain(&large).filter(|c| c.dtype == fused_loss::DType::F32 && !c.in_place) {
        let data = case.data();
        let inputs = data.inputs(case);
        let want = cpu::compute(&case.loss, case.reduction, &inputs).unwrap();
        let got = cpu::compute_fast(&case.loss, case.reduction, &inputs).unwrap();
        let agreement = check::compare(case, &data, &got, &want);
        if !agreement.passes() {
            failures.push(format!("{case}: {agreement:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- PyTorch constants -------------------------------------------------------------

/// A number from the JSON; `null` stands for -inf (JSON has no infinities).
fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NEG_INFINITY)
}

fn f64s(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(number).collect(),
        other => vec![number(other)],
    }
}

fn floats(v: &Value) -> Vec<f32> {
    f64s(v).into_iter().map(|x| x as f32).collect()
}

/// `tests/data/gen_torch_softmax.py`'s input generator, bit for bit.
fn mix(seed: u32, i: u32) -> u32 {
    let mut x = i.wrapping_mul(0x9E3779B1).wrapping_add(seed.wrapping_mul(0x85EBCA77)).wrapping_add(0x165667B1);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2C1B3C6D);
    x ^= x >> 12;
    x = x.wrapping_mul(0x297A2D39);
    x ^= x >> 15;
    x
}

/// One PyTorch case with its operands materialised.
struct TorchCase {
    name: String,
    loss: Loss,
    reduction: Reduction,
    dims: Vec<usize>,
    input: Vec<f32>,
    target: Vec<f32>,
    labels: Vec<i32>,
    weight: Option<Vec<f32>>,
    pos_weight: Option<Vec<f32>>,
    value: Vec<f64>,
    /// (flat index, value) of every stored gradient element.
    grad: Vec<(usize, f64)>,
    grad_sum_abs: Option<f64>,
    /// Torch's autograd with respect to the target, for losses whose target the crate
    /// differentiates (asked for in the same call).
    grad_target: Option<Vec<f64>>,
}

impl TorchCase {
    fn inputs(&self) -> Inputs<'_> {
        let mut inputs = Inputs::labels(&self.input, &self.labels).shape(&self.dims);
        if self.labels.is_empty() {
            inputs.target = Target::Values(&self.target);
        }
        inputs.weight = self.weight.as_deref();
        inputs.pos_weight = self.pos_weight.as_deref();
        inputs.want_target_grad = self.grad_target.is_some();
        inputs
    }
}

fn parse(case: &Value) -> TorchCase {
    // The loss by its name and its parameters by theirs, from its definition.
    let name = case["loss"].as_str().unwrap();
    let mut loss = Loss::from_name(name).unwrap_or_else(|| panic!("unknown loss {name}"));
    for (param, value) in case["params"].as_object().into_iter().flatten() {
        let number = value.as_f64().or(value.as_bool().map(|b| b as u8 as f64)).unwrap();
        loss = loss.with_parameter(param, number).unwrap_or_else(|| panic!("{name} has no parameter {param}"));
    }
    let reduction = match case["reduction"].as_str().unwrap() {
        "none" => Reduction::None,
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        "batchmean" => Reduction::BatchMean,
        other => panic!("unknown reduction {other}"),
    };
    let dims: Vec<usize> = case["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let shape = fused_loss::Shape::new(&dims);
    let array = |key: &str| case.get(key).filter(|v| v.is_array()).map(floats);
    let (input, target, labels, weight);
    if let Some(generated) = case.get("generated").filter(|g| g.is_object()) {
        let seed = generated["seed"].as_u64().unwrap() as u32;
        let classes = shape.classes() as u32;
        input = (0..shape.len() as u32).map(|i| ((mix(seed, i) >> 12) as i32 - (1 << 19)) as f32 / 65536.0).collect();
        let ignore = case["params"]["ignore_index"].as_i64().unwrap_or(-100) as i32;
        let soft = case["loss"] == "cross_entropy_soft";
        labels = if soft {
            Vec::new()
        } else {
            (0..shape.rows() as u32)
                .map(|r| if mix(seed + 1, r).is_multiple_of(10) { ignore } else { (mix(seed + 2, r) % classes) as i32 })
                .collect()
        };
        target = if soft {
            (0..shape.len() as u32).map(|i| (mix(seed + 3, i) >> 24) as f32 / 256.0).collect()
        } else {
            Vec::new()
        };
        weight = case["has_weight"]
            .as_bool()
            .unwrap()
            .then(|| (0..classes).map(|c| 0.25 + (mix(seed + 4, c) >> 24) as f32 / 128.0).collect());
    } else {
        input = array("input").unwrap();
        target = array("target").unwrap_or_default();
        labels = case
            .get("labels")
            .and_then(Value::as_array)
            .map(|l| l.iter().map(|v| v.as_i64().unwrap() as i32).collect())
            .unwrap_or_default();
        weight = array("weight");
    }
    let grad = match case.get("grad").filter(|g| g.is_array()) {
        Some(g) => f64s(g).into_iter().enumerate().collect(),
        None => case["grad_samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap()))
            .collect(),
    };
    TorchCase {
        name: case["name"].as_str().unwrap().to_string(),
        loss,
        reduction,
        dims,
        input,
        target,
        labels,
        weight,
        pos_weight: array("pos_weight"),
        value: f64s(&case["value"]),
        grad,
        grad_sum_abs: case.get("grad_sum_abs").and_then(Value::as_f64),
        grad_target: case.get("grad_target").filter(|g| g.is_array()).map(f64s),
    }
}

fn torch_cases() -> Vec<TorchCase> {
    let mut cases = Vec::new();
    for file in ["torch_constants.json", "torch_softmax.json"] {
        let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        cases.extend(json["cases"].as_array().unwrap().iter().map(parse));
    }
    cases
}

/// `got` within rel 1e-5 of PyTorch's `want`, or within an absolute floor of `floor`:
/// PyTorch's values include subnormal results (3.7e-44) that f32 flushes to zero, and
/// gradients like `p - 1` that cancel to far below the magnitude of their terms.
fn close(got: f64, want: f64, floor: f64) -> bool {
    got == want || (got - want).abs() <= 1e-5 * want.abs() + floor
}

/// `got`'s error in units of [`close`]'s tolerance (≤ 1 passes): 0 when equal, infinite
/// for NaN.
fn ratio(got: f64, want: f64, floor: f64) -> f64 {
    let err = (got - want).abs();
    if got == want {
        0.0
    } else if err.is_nan() {
        f64::INFINITY
    } else {
        err / (1e-5 * want.abs() + floor)
    }
}

/// The absolute floors (value, gradient element) of a case. A gradient element's is
/// 1e-6 of one term's gradient scale: the reduction's denominator and the weights. A
/// value's is 1e-7 of the terms' magnitude (the largest input and weight), times the
/// terms over the denominator for a reduced value.
fn floors(case: &TorchCase) -> (f64, f64) {
    let spec = case.loss.spec();
    let shape = fused_loss::Shape::new(&case.dims);
    let terms = if spec.is_row_wise() { shape.rows() } else { shape.len() } as f64;
    let max_weight = case.weight.iter().flatten().fold(1.0f64, |m, &w| m.max(w as f64));
    let denominator = match case.reduction {
        Reduction::Mean if spec.mean_over_label_weights() => {
            let weight_of = |l: i32| case.weight.as_ref().map_or(1.0, |w| w[l as usize] as f64);
            case.labels.iter().filter(|&&l| Some(l) != spec.ignore()).map(|&l| weight_of(l)).sum()
        }
        Reduction::Mean => terms,
        Reduction::BatchMean => shape.batch() as f64,
        _ => 1.0,
    };
    let largest = case.input.iter().fold(1.0f64, |m, &x| if x.is_finite() { m.max(x.abs() as f64) } else { m });
    let grad_floor = 1e-6 * max_weight / denominator;
    let value_floor = 1e-7 * max_weight * largest * if case.value.len() == 1 { terms / denominator } else { 1.0 };
    (value_floor, grad_floor)
}

/// The worst errors (value, gradient) of a path's result on a case, in units of the
/// tolerance: over the values, and over the stored gradient elements, the target's
/// gradient and sum |grad| (as [`against_torch`] checks them).
fn errors(case: &TorchCase, (value, grad, grad_target): &Computed) -> (f64, f64) {
    let (value_floor, grad_floor) = floors(case);
    let worst = |got: &[f64], want: &[f64], floor: f64| {
        if got.len() != want.len() {
            return f64::INFINITY;
        }
        got.iter().zip(want).map(|(&g, &w)| ratio(g, w, floor)).fold(0.0, f64::max)
    };
    let value_error = worst(value, &case.value, value_floor);
    let mut grad_error = case
        .grad
        .iter()
        .map(|&(i, want)| grad.get(i).map_or(f64::INFINITY, |&got| ratio(got, want, grad_floor)))
        .fold(0.0, f64::max);
    if let Some(want) = &case.grad_target {
        grad_error = grad_error.max(worst(grad_target.as_deref().unwrap_or_default(), want, grad_floor));
    }
    if let Some(want) = case.grad_sum_abs {
        let got: f64 = grad.iter().map(|g| g.abs()).sum();
        grad_error = grad_error.max(ratio(got, want, grad_floor * grad.len() as f64));
    }
    (value_error, grad_error)
}

/// What a path computed for a case, in f64: per-element or reduced values, the gradient,
/// and the target's gradient when the case asked for it.
type Computed = (Vec<f64>, Vec<f64>, Option<Vec<f64>>);

/// Runs every PyTorch case through `compute` and returns the mismatches.
fn against_torch(compute: impl Fn(&TorchCase) -> Computed) -> Vec<String> {
    let mut failures = Vec::new();
    let cases = torch_cases();
    let mut covered = std::collections::BTreeSet::new();
    let mut targets_checked = 0;
    for case in &cases {
        covered.insert(case.loss.name());
        let (value, grad, grad_target) = compute(case);
        let (value_floor, grad_floor) = floors(case);
        if value.len() != case.value.len() || value.iter().zip(&case.value).any(|(g, w)| !close(*g, *w, value_floor)) {
            failures.push(format!("{}: value {value:?} vs torch {:?}", case.name, case.value));
        }
        let bad: Vec<String> = case
            .grad
            .iter()
            .filter(|&&(i, want)| grad.get(i).is_none_or(|&got| !close(got, want, grad_floor)))
            .take(5)
            .map(|&(i, want)| format!("[{i}] {:?} vs torch {want}", grad.get(i)))
            .collect();
        if !bad.is_empty() {
            failures.push(format!("{}: grad {}", case.name, bad.join(", ")));
        }
        if let Some(want) = &case.grad_target {
            let got = grad_target.unwrap_or_default();
            let bad: Vec<String> = want
                .iter()
                .enumerate()
                .filter(|&(i, &w)| got.get(i).is_none_or(|&g| !close(g, w, grad_floor)))
                .take(5)
                .map(|(i, w)| format!("[{i}] {:?} vs torch {w}", got.get(i)))
                .collect();
            if got.len() != want.len() || !bad.is_empty() {
                failures.push(format!("{}: target gradient {}", case.name, bad.join(", ")));
            }
            targets_checked += 1;
        }
        if let Some(want) = case.grad_sum_abs {
            let got: f64 = grad.iter().map(|g| g.abs()).sum();
            if !close(got, want, grad_floor * grad.len() as f64) {
                failures.push(format!("{}: sum |grad| {got} vs torch {want}", case.name));
            }
        }
    }
    for loss in registry() {
        assert!(covered.contains(loss.name()), "no PyTorch constants for {}", loss.name());
    }
    assert!(targets_checked >= 30, "only {targets_checked} cases with a target gradient");
    eprintln!("{} PyTorch cases compared, {targets_checked} with the target's gradient", cases.len());
    failures
}

#[test]
fn cpu_matches_pytorch_constants() {
    let failures = against_torch(|case| {
        let out = cpu::compute(&case.loss, case.reduction, &case.inputs()).unwrap();
        (out.per_element.unwrap_or_else(|| vec![out.value]), out.grad, out.target_grad)
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fast_cpu_path_matches_pytorch_constants() {
    // The extremes (logits ±1e4, -inf, probabilities at 0 and 1) through the f32 path and
    // its polynomial exponential.
    let failures = against_torch(|case| {
        let out = cpu::compute_fast(&case.loss, case.reduction, &case.inputs()).unwrap();
        let value = out.per_element.unwrap_or_else(|| vec![out.value]);
        let widen = |v: &[f32]| v.iter().map(|&g| g as f64).collect::<Vec<_>>();
        (widen(&value), widen(&out.grad), out.target_grad.as_deref().map(widen))
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The GPU's result on a case, widened to f64.
fn on_gpu(gpu: &fused_loss::Gpu, case: &TorchCase) -> Computed {
    let out = gpu.compute(&case.loss, case.reduction, &case.inputs()).unwrap();
    let value = out.per_element.unwrap_or_else(|| vec![out.value]);
    let widen = |v: &[f32]| v.iter().map(|&g| g as f64).collect::<Vec<_>>();
    (widen(&value), widen(&out.grad), out.target_grad.as_deref().map(widen))
}

#[test]
fn gpu_matches_pytorch_constants() {
    let Some(gpu) = common::gpu("gpu_matches_pytorch_constants") else { return };
    let failures = against_torch(|case| on_gpu(&gpu, case));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// PyTorch float32's errors on one case, from `tests/data/torch_f32_error.py`.
struct Torch32 {
    /// The loss, or `cross_entropy+z_loss/softcap` (a formula, not PyTorch's kernel).
    group: String,
    value: f64,
    grad: f64,
    value_floor: f64,
    grad_floor: f64,
}

/// `tests/data/torch_f32_error.json`: per group its source (kernel or formula), per case
/// PyTorch f32's errors.
fn torch_f32_errors() -> (std::collections::BTreeMap<String, String>, std::collections::HashMap<String, Torch32>) {
    let path = format!("{}/tests/data/torch_f32_error.json", env!("CARGO_MANIFEST_DIR"));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // null is an infinite ratio (PyTorch's f32 result was not finite).
    let ratio = |v: &Value| v.as_f64().unwrap_or(f64::INFINITY);
    let sources = json["losses"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(group, g)| (group.clone(), g["source"].as_str().unwrap().to_string()))
        .collect();
    let cases = json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let torch = Torch32 {
                group: c["group"].as_str().unwrap().to_string(),
                value: ratio(&c["value"]),
                grad: ratio(&c["grad"]),
                value_floor: c["value_floor"].as_f64().unwrap(),
                grad_floor: c["grad_floor"].as_f64().unwrap(),
            };
            (c["name"].as_str().unwrap().to_string(), torch)
        })
        .collect();
    (sources, cases)
}

/// How far (in units of the tolerance) our worst error may exceed PyTorch f32's and still
/// count as no less accurate: two ulps of the result, 2 · 2^-23 relative (0.024 units).
/// Two f32 implementations that round in different orders (tree sums against PyTorch's
/// cascade, the device's `exp`/`log` within their Vulkan ulp bounds against glibc's) land
/// a couple of ulps apart on the same inputs, either way round; without this, losses
/// whose worst errors are both a few ulps "lose" by 0.0004 to 0.019 units.
const ROUNDING_SLACK: f64 = 2.0 * f32::EPSILON as f64 / 1e-5;

#[test]
fn gpu_is_no_less_accurate_than_pytorch_f32() {
    // On every PyTorch float64 case, the GPU's f32 value and gradient are within
    // tolerance, and per loss the worst error (in units of the tolerance) is no larger
    // than PyTorch float32's on the same inputs (`tests/data/torch_f32_error.py`: its
    // kernel where it has one, else the generator's formula in f32). Value and gradient
    // are compared separately, with one allowance: [`ROUNDING_SLACK`].
    let Some(gpu) = common::gpu("gpu_is_no_less_accurate_than_pytorch_f32") else { return };
    let (sources, torch32) = torch_f32_errors();
    let cases = torch_cases();
    assert_eq!(cases.len(), torch32.len(), "torch_f32_error.json is stale: rerun tests/data/torch_f32_error.py");
    // Per group: (worst value, its case), (worst gradient, its case), cases, cases where we are worse.
    type Worst = ((f64, String), (f64, String));
    let mut ours: std::collections::BTreeMap<&str, Worst> = Default::default();
    let mut theirs: std::collections::BTreeMap<&str, Worst> = Default::default();
    let mut counts: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    let keep = |w: &mut (f64, String), r: f64, name: &str| {
        if r > w.0 || w.1.is_empty() {
            *w = (r, name.to_string());
        }
    };
    let mut failures = Vec::new();
    // Cases where ours is worse than PyTorch f32's by more than rounding (reported; the
    // bar is per loss).
    let mut behind = Vec::new();
    for case in &cases {
        let name = case.name.as_str();
        let torch = torch32.get(name).unwrap_or_else(|| panic!("{name}: not in torch_f32_error.json (stale)"));
        let (value_floor, grad_floor) = floors(case);
        let same = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs();
        assert!(
            same(value_floor, torch.value_floor) && same(grad_floor, torch.grad_floor),
            "{name}: floors ({value_floor:e}, {grad_floor:e}) differ from torch_f32_error.py's ({:e}, {:e})",
            torch.value_floor,
            torch.grad_floor
        );
        let (value, grad) = errors(case, &on_gpu(&gpu, case));
        if value > 1.0 || grad > 1.0 {
            failures.push(format!("{name}: outside tolerance: value {value:.3}, gradient {grad:.3}"));
        }
        let group = torch.group.as_str();
        let (o, t) = (ours.entry(group).or_default(), theirs.entry(group).or_default());
        keep(&mut o.0, value, name);
        keep(&mut o.1, grad, name);
        keep(&mut t.0, torch.value, name);
        keep(&mut t.1, torch.grad, name);
        let count = counts.entry(group).or_default();
        count.0 += 1;
        let excess = (value - torch.value).max(grad - torch.grad);
        if excess > ROUNDING_SLACK {
            count.1 += 1;
            behind.push((
                excess,
                format!("{name}: value {value:.3e} vs {:.3e}, gradient {grad:.3e} vs {:.3e}", torch.value, torch.grad),
            ));
        }
    }
    let show = |r: f64| if r.is_finite() { format!("{r:.3e}") } else { "inf".to_string() };
    println!(
        "Worst error on the PyTorch float64 cases, in units of the tolerance (<= 1 passes; ours may exceed \
         PyTorch f32's by {ROUNDING_SLACK:.3} units of rounding; 'worse': cases where ours is larger by more than that)"
    );
    println!(
        "{:<30} {:<15} {:>5} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "loss", "PyTorch f32", "cases", "ours val", "torch val", "ours grad", "torch grad", "worse"
    );
    let mut overall: Worst = Default::default();
    let mut overall_torch: Worst = Default::default();
    for (group, o) in &ours {
        let t = &theirs[group];
        let (n, worse) = counts[group];
        println!(
            "{group:<30} {:<15} {n:>5} {:>10} {:>10} {:>10} {:>10} {worse:>6}",
            sources[*group],
            show(o.0 .0),
            show(t.0 .0),
            show(o.1 .0),
            show(t.1 .0)
        );
        for (kind, ours, torch) in [("value", &o.0, &t.0), ("gradient", &o.1, &t.1)] {
            if ours.0 > torch.0 + ROUNDING_SLACK {
                failures.push(format!(
                    "{group}: worst {kind} error {} ({}) exceeds PyTorch f32's {} ({}) by more than rounding",
                    show(ours.0),
                    ours.1,
                    show(torch.0),
                    torch.1
                ));
            }
        }
        keep(&mut overall.0, o.0 .0, &o.0 .1);
        keep(&mut overall.1, o.1 .0, &o.1 .1);
        keep(&mut overall_torch.0, t.0 .0, &t.0 .1);
        keep(&mut overall_torch.1, t.1 .0, &t.1 .1);
    }
    println!(
        "overall value:    ours {} ({}), PyTorch f32 {} ({})",
        show(overall.0 .0),
        overall.0 .1,
        show(overall_torch.0 .0),
        overall_torch.0 .1
    );
    println!(
        "overall gradient: ours {} ({}), PyTorch f32 {} ({})",
        show(overall.1 .0),
        overall.1 .1,
        show(overall_torch.1 .0),
        overall_torch.1 .1
    );
    behind.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("{} cases where ours is worse than PyTorch f32's by more than rounding; the largest:", behind.len());
    for (_, line) in behind.iter().take(10) {
        println!("  {line}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn focal_with_gamma_zero_is_cross_entropy() {
    // gamma = 0 and no alpha: sigmoid focal is BCE with logits, element for element, in
    // the f64 reference and on the GPU (whose f32 arithmetic differs only in rounding).
    let x: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) * 0.037).chain([1e4, -1e4, 0.0]).collect();
    let y: Vec<f32> = (0..x.len()).map(|i| [0.0, 1.0, 0.3, 0.85][i % 4]).collect();
    let focal = Loss::sigmoid_focal().alpha(-1.0).gamma(0.0);
    let inputs = Inputs::new(&x, &y);
    let a = cpu::compute(focal, Reduction::None, &inputs).unwrap();
    let b = cpu::compute(Loss::bce_with_logits(), Reduction::None, &inputs).unwrap();
    let close = |u: f64, v: f64| (u - v).abs() <= 1e-12 * v.abs().max(1e-300);
    for (i, ((la, lb), (ga, gb))) in
        a.per_element.unwrap().iter().zip(b.per_element.unwrap()).zip(a.grad.iter().zip(&b.grad)).enumerate()
    {
        assert!(close(*la, lb) && close(*ga, *gb), "x={} y={}: focal ({la}, {ga}) vs bce ({lb}, {gb})", x[i], y[i]);
    }
    let Some(gpu) = common::gpu("focal_with_gamma_zero_is_cross_entropy") else { return };
    let a = gpu.compute(focal, Reduction::Mean, &inputs).unwrap();
    let b = gpu.compute(Loss::bce_with_logits(), Reduction::Mean, &inputs).unwrap();
    assert!((a.value - b.value).abs() <= 1e-6 * b.value.abs(), "{} vs {}", a.value, b.value);
    for (ga, gb) in a.grad.iter().zip(&b.grad) {
        assert!((ga - gb).abs() <= 1e-6 * gb.abs() + 1e-9, "{ga} vs {gb}");
    }
}

#[test]
fn softmax_focal_with_gamma_zero_is_cross_entropy_and_gce_tends_to_it() {
    // Focal with gamma = 0 runs cross-entropy's arithmetic exactly: equal bit for bit on
    // the GPU and to 1e-12 in the f64 reference. GCE approaches cross-entropy as q -> 0,
    // with a gap of about q ln²p / 2 per row.
    let (rows, classes) = (257, 33);
    let logits: Vec<f32> = (0..rows * classes).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 80.0).collect();
    let labels: Vec<i32> = (0..rows).map(|r| if r % 10 == 3 { -100 } else { (r * 13 % classes) as i32 }).collect();
    let weight: Vec<f32> = (0..classes).map(|c| 0.5 + c as f32 / 16.0).collect();
    let inputs = Inputs::labels(&logits, &labels).shape(&[rows, classes]).weight(&weight);
    let ce = Loss::cross_entropy();
    let focal = Loss::focal().gamma(0.0).ignore_index(-100);
    let (a, b) =
        (cpu::compute(focal, Reduction::None, &inputs).unwrap(), cpu::compute(ce, Reduction::None, &inputs).unwrap());
    for (u, v) in a.grad.iter().zip(&b.grad).chain(a.per_element.iter().flatten().zip(b.per_element.iter().flatten())) {
        assert!((u - v).abs() <= 1e-12 * v.abs().max(1e-300), "{u} vs {v}");
    }
    let gap = |q: f32| {
        let gce = Loss::generalized_cross_entropy().q(q);
        let g = cpu::compute(gce, Reduction::Mean, &inputs).unwrap().value;
        let c = cpu::compute(ce, Reduction::Mean, &inputs).unwrap().value;
        (g - c).abs() / c
    };
    let (coarse, fine) = (gap(1e-2), gap(1e-4));
    assert!(fine < 1e-3 && fine < coarse / 50.0, "GCE gap to cross-entropy: q=1e-2 {coarse:e}, q=1e-4 {fine:e}");
    let Some(gpu) = common::gpu("softmax_focal_with_gamma_zero_is_cross_entropy_and_gce_tends_to_it") else { return };
    for kernel in [fused_loss::RowKernel::PerThread, fused_loss::RowKernel::PerWorkgroup] {
        let gpu = gpu.with_row_kernel(kernel);
        let a = gpu.compute(focal, Reduction::Mean, &inputs).unwrap();
        let b = gpu.compute(ce, Reduction::Mean, &inputs).unwrap();
        assert_eq!(a, b, "{kernel:?}: focal with gamma = 0 differs from cross-entropy");
    }
}
