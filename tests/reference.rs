//! The references themselves: the CPU twins against central finite differences, and
//! CPU and GPU against constants PyTorch produced in float64
//! (`tests/data/gen_torch_constants.py` wrote `tests/data/torch_constants.json`).

mod common;

use fused_loss::cpu::{self, Element};
use fused_loss::{registry, Inputs, Loss, Reduction};
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Distance of `d = x - y` from the loss's kinks, where the derivative jumps.
fn near_kink(loss: &Loss, x: f64, y: f64) -> bool {
    let d = x - y;
    let near = |k: f64| (d.abs() - k).abs() < 1e-3;
    match *loss {
        Loss::L1 => near(0.0),
        Loss::Huber { delta } => near(delta as f64),
        Loss::SmoothL1 { beta } => near(0.0) || near(beta as f64),
        _ => false,
    }
}

#[test]
fn cpu_gradients_match_central_differences() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2024);
    for loss in registry() {
        let spec = loss.spec();
        let f = spec.cpu_element();
        let params = spec.params().map(f64::from);
        let mut checked = 0;
        while checked < 500 {
            let x: f64 = match spec.input_domain {
                fused_loss::Domain::Probability => rng.random_range(0.01..0.99),
                _ => rng.random_range(-8.0..8.0),
            };
            let y: f64 = match spec.target_domain {
                fused_loss::Domain::Probability => rng.random_range(0.0..1.0),
                fused_loss::Domain::Sign => {
                    if rng.random_bool(0.5) {
                        1.0
                    } else {
                        -1.0
                    }
                }
                fused_loss::Domain::Real => rng.random_range(-8.0..8.0),
            };
            if near_kink(&loss, x, y) {
                continue;
            }
            let element = Element {
                params,
                pos_weight: if spec.takes_pos_weight {
                    rng.random_range(0.2..4.0)
                } else {
                    1.0
                },
            };
            let h = 1e-5 * x.abs().max(1.0);
            let numeric = (f(x + h, y, &element).value - f(x - h, y, &element).value) / (2.0 * h);
            let analytic = f(x, y, &element).grad;
            assert!(
                (numeric - analytic).abs() <= 1e-6 * analytic.abs() + 1e-8,
                "{}: x={x} y={y}: analytic {analytic}, central difference {numeric}",
                spec.name
            );
            checked += 1;
        }
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(a) => a.iter().map(|x| x.as_f64().unwrap()).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

fn loss_of(case: &Value) -> Loss {
    let param = |name: &str| case["params"][name].as_f64().unwrap() as f32;
    match case["loss"].as_str().unwrap() {
        "mse" => Loss::Mse,
        "l1" => Loss::L1,
        "huber" => Loss::Huber {
            delta: param("delta"),
        },
        "smooth_l1" => Loss::SmoothL1 {
            beta: param("beta"),
        },
        "log_cosh" => Loss::LogCosh,
        "bce" => Loss::Bce,
        "bce_with_logits" => Loss::BceWithLogits,
        "soft_margin" => Loss::SoftMargin,
        other => panic!("unknown loss {other}"),
    }
}

fn reduction_of(case: &Value) -> Reduction {
    match case["reduction"].as_str().unwrap() {
        "none" => Reduction::None,
        "mean" => Reduction::Mean,
        "sum" => Reduction::Sum,
        other => panic!("unknown reduction {other}"),
    }
}

/// `got` within rel 1e-5 of PyTorch's `want`, with an absolute floor of 1e-7 of the
/// quantity's scale (1/N for mean gradients): PyTorch's values include subnormal
/// results (3.7e-44) that f32 flushes to zero.
fn close(got: f64, want: f64, scale: f64) -> bool {
    (got - want).abs() <= 1e-5 * want.abs() + 1e-7 * scale
}

fn torch_cases() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/torch_constants.json"
    ))
    .unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

/// Runs every PyTorch case through `compute` (value, per-element values, grad, all
/// f64) and returns the mismatches.
fn against_torch(
    compute: impl Fn(&Loss, Reduction, &Inputs) -> (Vec<f64>, Vec<f64>),
) -> Vec<String> {
    let mut failures = Vec::new();
    let cases = torch_cases();
    let mut covered = std::collections::BTreeSet::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let loss = loss_of(case);
        let reduction = reduction_of(case);
        covered.insert(loss.name());
        let input = floats(&case["input"]);
        let target = floats(&case["target"]);
        let weight = case["weight"].is_array().then(|| floats(&case["weight"]));
        let pos_weight = case["pos_weight"]
            .is_array()
            .then(|| floats(&case["pos_weight"]));
        let dims: Vec<usize> = case["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let mut inputs = Inputs::new(&input, &target).shape(&dims);
        inputs.weight = weight.as_deref();
        inputs.pos_weight = pos_weight.as_deref();
        let (value, grad) = compute(&loss, reduction, &inputs);
        let want_value = f64s(&case["value"]);
        let want_grad = f64s(&case["grad"]);
        let n = input.len() as f64;
        let grad_scale = if reduction == Reduction::Mean {
            1.0 / n
        } else {
            1.0
        };
        let value_scale = if reduction == Reduction::Sum { n } else { 1.0 };
        if value.len() != want_value.len()
            || value
                .iter()
                .zip(&want_value)
                .any(|(g, w)| !close(*g, *w, value_scale))
        {
            failures.push(format!("{name}: value {value:?} vs torch {want_value:?}"));
        }
        if grad.len() != want_grad.len()
            || grad
                .iter()
                .zip(&want_grad)
                .any(|(g, w)| !close(*g, *w, grad_scale))
        {
            failures.push(format!("{name}: grad {grad:?} vs torch {want_grad:?}"));
        }
    }
    for loss in registry() {
        assert!(
            covered.contains(loss.name()),
            "no PyTorch constants for {}",
            loss.name()
        );
    }
    eprintln!("{} PyTorch cases compared", cases.len());
    failures
}

#[test]
fn cpu_matches_pytorch_constants() {
    let failures = against_torch(|loss, reduction, inputs| {
        let out = cpu::compute(loss, reduction, inputs).unwrap();
        (out.per_element.unwrap_or_else(|| vec![out.value]), out.grad)
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn gpu_matches_pytorch_constants() {
    let Some(gpu) = common::gpu("gpu_matches_pytorch_constants") else {
        return;
    };
    let failures = against_torch(|loss, reduction, inputs| {
        let out = gpu.compute(loss, reduction, inputs).unwrap();
        let value = out.per_element.unwrap_or_else(|| vec![out.value]);
        (
            value.iter().map(|&v| v as f64).collect(),
            out.grad.iter().map(|&g| g as f64).collect(),
        )
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
