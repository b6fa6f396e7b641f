//! `fused-loss bench --peer burn` (features `cli` and `burn`): on one burn wgpu device,
//! the same shapes timed three ways, forward + backward + the input's gradient + a device
//! sync, median after warm-up:
//! - **burn**: burn's own loss (`burn::nn::loss`), `backward()`, the gradient;
//! - **fused from burn**: `fused_loss::burn` on the same tensors, `backward()`, the gradient;
//! - **fused embedded**: the embedding path (`Plan::encode` into an encoder of our own) on
//!   burn's device and queue, the kernel alone.
//!
//! Each burn-side path is first checked against the f64 CPU reference (value and
//! gradient, [`check::compare`]); a path that disagrees is marked wrong and not timed.
//! Memory: burn's pool bytes in use while a step's loss and gradients are alive, less
//! those in use before it (burn's `Device::memory_pool_usage`); the embedded path's
//! buffers are its operands, gradient and stats.

use std::time::{Duration, Instant};

use burn::nn::loss::{
    BinaryCrossEntropyLossConfig, CrossEntropyLossConfig, HuberLossConfig, MseLoss, Reduction as BurnReduction,
};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

use crate::check::{self, Case, CaseData};
use crate::{cpu, DType, Gpu, Loss, Output, Reduction, Result};

/// One shape of one loss.
#[derive(Clone, Debug, Serialize)]
pub struct PeerRow {
    /// Loss name (fused-loss's).
    pub loss: String,
    /// Input dimensions.
    pub dims: Vec<usize>,
    /// burn's own loss: median ms, or none when wrong.
    pub burn_ms: Option<f64>,
    /// "pass" or what disagreed with the reference.
    pub burn_status: String,
    /// burn pool bytes a step of burn's loss allocates.
    pub burn_bytes: Option<u64>,
    /// fused-loss called from burn: median ms.
    pub fused_burn_ms: Option<f64>,
    /// "pass" or what disagreed.
    pub fused_burn_status: String,
    /// burn pool bytes a step of fused-loss from burn allocates.
    pub fused_burn_bytes: Option<u64>,
    /// The embedding path on the same device: median ms.
    pub embedded_ms: Option<f64>,
    /// The embedding path's buffers (operands, gradient, stats).
    pub embedded_bytes: u64,
}

/// The run.
#[derive(Clone, Debug, Serialize)]
pub struct PeerReport {
    /// Adapter name and backend.
    pub adapter: String,
    /// Driver.
    pub driver: String,
    /// UTC date.
    pub date: String,
    /// burn's version.
    pub burn: String,
    /// Rows.
    pub rows: Vec<PeerRow>,
}

/// The losses burn ships that fused-loss has, and the shapes of the comparison (the
/// elementwise sizes straddle 2^18, above which burn's full-tensor `sum` is wrong on
/// lavapipe).
pub fn shapes() -> Vec<(Loss, Vec<usize>)> {
    let elementwise: [&[usize]; 3] = [&[1 << 16], &[1 << 20], &[1 << 22]];
    let rows: [&[usize]; 4] = [&[4096, 10], &[1024, 1000], &[64, 32_768], &[16, 131_072]];
    let mut out = Vec::new();
    for loss in [Loss::mse().into(), Loss::huber().into(), Loss::bce_with_logits().into()] {
        out.extend(elementwise.iter().map(|d| (Loss::clone(&loss), d.to_vec())));
    }
    out.extend(rows.iter().map(|d| (Loss::cross_entropy().into(), d.to_vec())));
    out
}

fn time(mut f: impl FnMut(), warmup: usize, budget: Duration) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 3 || (start.elapsed() < budget && samples.len() < 30) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Which path computes the loss.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Burn,
    Fused,
}

/// One step on `path`: the loss tensor and the input leaf.
fn step(path: Path, loss: &Loss, x: &Tensor<2>, target: &Tensor<2>, labels: &Tensor<1, Int>) -> (Tensor<1>, Tensor<2>) {
    let device = x.device();
    let x = x.clone().require_grad();
    let value = match (path, loss.name()) {
        (Path::Burn, "mse") => MseLoss::new().forward(x.clone(), target.clone(), BurnReduction::Mean),
        (Path::Burn, "huber") => {
            HuberLossConfig::new(1.0).init().forward(x.clone(), target.clone(), BurnReduction::Mean)
        }
        (Path::Burn, "bce_with_logits") => {
            BinaryCrossEntropyLossConfig::new().with_logits(true).init(&device).forward(x.clone(), target.clone().int())
        }
        (Path::Burn, _) => CrossEntropyLossConfig::new().init(&device).forward(x.clone(), labels.clone()),
        (Path::Fused, "cross_entropy") => {
            crate::burn::loss(loss.clone(), Reduction::Mean, x.clone(), labels.clone()).expect("validated")
        }
        (Path::Fused, _) => {
            crate::burn::loss(loss.clone(), Reduction::Mean, x.clone(), target.clone()).expect("validated")
        }
    };
    (value, x)
}

fn as_2d(dims: &[usize]) -> [usize; 2] {
    if dims.len() == 2 {
        [dims[0], dims[1]]
    } else {
        [1, dims[0]]
    }
}

fn in_use(device: &Device) -> Option<u64> {
    device.memory_pool_usage().map(|u| u.bytes_in_use)
}

/// Runs a path once against the reference, then times it; (ms, status, bytes).
#[allow(clippy::too_many_arguments)]
fn measure(
    path: Path,
    case: &Case,
    data: &CaseData,
    reference: &cpu::CpuOutput,
    x: &Tensor<2>,
    target: &Tensor<2>,
    labels: &Tensor<1, Int>,
    budget: Duration,
) -> (Option<f64>, String, Option<u64>) {
    let device = x.device();
    device.sync().expect("device");
    let before = in_use(&device);
    let (value, leaf) = step(path, &case.loss, x, target, labels);
    let grads = value.backward();
    let grad = leaf.grad(&grads).expect("the input's gradient");
    device.sync().expect("device");
    let bytes = match (before, in_use(&device)) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let value: f32 = value.into_scalar::<f32>();
    let grad: Vec<f32> = grad.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32");
    let agreement = check::compare(case, data, &Output::new(value, grad), reference);
    if !agreement.passes() {
        let status = if agreement.value > 1.0 {
            format!("wrong: loss {value} vs {:.6}", reference.value)
        } else {
            format!("wrong: gradient {:.1}x the tolerance", agreement.grad)
        };
        return (None, status, bytes);
    }
    let ms = time(
        || {
            let (value, leaf) = step(path, &case.loss, x, target, labels);
            let grads = value.backward();
            let grad = leaf.grad(&grads).expect("gradient");
            device.sync().expect("device");
            drop(grad);
        },
        2,
        budget,
    );
    (Some(ms), "pass".into(), bytes)
}

/// Runs the comparison on `device` (a burn autodiff device set up by
/// [`crate::burn::device`]) for the rows whose loss name contains one of `losses`.
pub fn run(device: &Device, losses: &[String]) -> Result<PeerReport> {
    let gpu: Gpu = crate::burn::gpu(device)?;
    let budget = Duration::from_millis(1500);
    let mut rows = Vec::new();
    for (loss, dims) in shapes() {
        if !losses.is_empty() && !losses.iter().any(|l| loss.name().contains(l.as_str())) {
            continue;
        }
        let case = Case::new(loss.clone(), Reduction::Mean, &dims, 7);
        let mut data = case.data();
        // burn's cross-entropy has no ignore_index: every row keeps its label.
        let classes = *dims.last().expect("a shape");
        for (row, label) in data.labels.iter_mut().enumerate() {
            if *label < 0 {
                *label = (row % classes) as i32;
            }
        }
        if loss.name() == "bce_with_logits" {
            // burn's BCE takes int targets: 0/1 for both.
            data.target.iter_mut().for_each(|t| *t = t.round());
        }
        let reference = cpu::compute(&loss, Reduction::Mean, &data.inputs(&case))?;
        let shape = as_2d(&dims);
        let x = Tensor::<2>::from_data(TensorData::new(data.input.clone(), shape), device);
        let target_values = if data.target.is_empty() { vec![0.0; data.input.len()] } else { data.target.clone() };
        let target = Tensor::<2>::from_data(TensorData::new(target_values, shape), device);
        let label_values: Vec<i64> = data.labels.iter().map(|&l| l as i64).collect();
        let labels = Tensor::<1, Int>::from_data(TensorData::new(label_values.clone(), [label_values.len()]), device);
        let (burn_ms, burn_status, burn_bytes) =
            measure(Path::Burn, &case, &data, &reference, &x, &target, &labels, budget);
        let (fused_burn_ms, fused_burn_status, fused_burn_bytes) =
            measure(Path::Fused, &case, &data, &reference, &x, &target, &labels, budget);
        let call = crate::bench::GpuCall::new(&gpu, loss.clone(), &dims, &data, DType::F32)?;
        let embedded_ms = Some(time(|| call.run(), 2, budget));
        let operand = 4 * data.input.len() as u64;
        let target_bytes = if data.labels.is_empty() { operand } else { 4 * data.labels.len() as u64 };
        rows.push(PeerRow {
            loss: loss.name().into(),
            dims,
            burn_ms,
            burn_status,
            burn_bytes,
            fused_burn_ms,
            fused_burn_status,
            fused_burn_bytes,
            embedded_ms,
            embedded_bytes: 2 * operand + target_bytes + crate::LossStats::SIZE,
        });
    }
    let info = gpu.adapter_info();
    Ok(PeerReport {
        adapter: format!("{} ({:?})", info.name, info.backend),
        driver: format!("{} {}", info.driver, info.driver_info),
        date: crate::bench::today(),
        burn: "0.22.1".into(),
        rows,
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn mib(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| format!("{:.1}", v as f64 / (1u64 << 20) as f64))
}

/// The report as a markdown table.
pub fn table(report: &PeerReport) -> String {
    let mut out = format!(
        "adapter: {} | driver: {} | {} | burn {} (fusion, autotune)\n\n",
        report.adapter, report.driver, report.date, report.burn
    );
    out += "| loss | shape | burn ms | fused from burn ms | fused embedded ms | burn / fused | burn-path overhead | burn MiB/step | fused-from-burn MiB/step | embedded MiB | burn check |\n";
    out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for r in &report.rows {
        let ratio = match (r.burn_ms, r.fused_burn_ms) {
            (Some(b), Some(f)) => format!("{:.2}x", b / f),
            _ => "-".into(),
        };
        let overhead = match (r.fused_burn_ms, r.embedded_ms) {
            (Some(f), Some(e)) => format!("{:+.0}%", 100.0 * (f / e - 1.0)),
            _ => "-".into(),
        };
        let dims: Vec<String> = r.dims.iter().map(|d| d.to_string()).collect();
        let fused = if r.fused_burn_status == "pass" { ms(r.fused_burn_ms) } else { r.fused_burn_status.clone() };
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.loss,
            dims.join("x"),
            ms(r.burn_ms),
            fused,
            ms(r.embedded_ms),
            ratio,
            overhead,
            mib(r.burn_bytes),
            mib(r.fused_burn_bytes),
            mib(Some(r.embedded_bytes)),
            r.burn_status,
        );
    }
    out
}
