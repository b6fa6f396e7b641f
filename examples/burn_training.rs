//! fused-loss inside a burn training loop: a small MLP classifier on the red wine quality
//! set shipped by `linfa-datasets` (1599 wines, 11 measurements, quality 3..8 as six
//! classes of 10, 53, 681, 638, 199 and 18 wines), trained with burn's Adam on burn's
//! default wgpu backend (fusion and autotune on), through burn's autodiff.
//!
//! Part 1 trains the same initial model twice, once with burn's own `CrossEntropyLoss`
//! and once with `fused_loss::burn::cross_entropy`, and compares the two loss curves step
//! by step: they agree to f32 rounding, so the fused gradient is right end to end. Part 2
//! trains the same model with softmax focal loss (γ = 2) and class weights computed on the
//! GPU from the training labels (effective number of samples, β = 0.999), one line each,
//! and compares per-class recall on the held-out wines with plain cross-entropy.
//!
//! Run: `cargo run --release --features burn-defaults --example burn_training`

use burn::backend::wgpu::WgpuDevice;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use fused_loss::burn::FusedLoss;
use fused_loss::{Loss, WeightScheme};

const FEATURES: usize = 11;
const HIDDEN: usize = 32;
const CLASSES: usize = 6;
const STEPS: usize = 200;
const LEARNING_RATE: f64 = 1e-2;
const PRINT_EVERY: usize = 50;

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    activation: Relu,
    output: Linear,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Mlp {
            hidden: LinearConfig::new(FEATURES, HIDDEN).init(device),
            activation: Relu::new(),
            output: LinearConfig::new(HIDDEN, CLASSES).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output.forward(self.activation.forward(self.hidden.forward(x)))
    }
}

/// Wines as tensors: standardised measurements (train statistics) and quality − 3.
struct Split {
    x: Tensor<2>,
    y: Tensor<1, Int>,
    labels: Vec<i64>,
}

fn splits(device: &Device) -> (Split, Split) {
    let wine = linfa_datasets::winequality();
    let n = wine.targets.len();
    let labels: Vec<i64> = wine.targets.iter().map(|&q| q as i64 - 3).collect();
    // A fixed shuffle (a linear congruential permutation), 75% for training.
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = 0x5eed_0013u64;
    for i in (1..n).rev() {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        order.swap(i, (state >> 33) as usize % (i + 1));
    }
    let (train, test) = order.split_at(n * 3 / 4);
    let records = &wine.records;
    let mut mean = [0.0f64; FEATURES];
    let mut var = [0.0f64; FEATURES];
    for &i in train {
        for f in 0..FEATURES {
            mean[f] += records[[i, f]] / train.len() as f64;
        }
    }
    for &i in train {
        for f in 0..FEATURES {
            var[f] += (records[[i, f]] - mean[f]).powi(2) / train.len() as f64;
        }
    }
    let make = |rows: &[usize]| {
        let x: Vec<f32> = rows
            .iter()
            .flat_map(|&i| (0..FEATURES).map(move |f| ((records[[i, f]] - mean[f]) / var[f].sqrt()) as f32))
            .collect::<Vec<f32>>();
        let y: Vec<i64> = rows.iter().map(|&i| labels[i]).collect();
        Split {
            x: Tensor::from_data(TensorData::new(x, [rows.len(), FEATURES]), device),
            y: Tensor::from_data(TensorData::new(y.clone(), [rows.len()]), device),
            labels: y,
        }
    };
    (make(train), make(test))
}

/// Full-batch Adam for `STEPS` steps with `loss`; the loss of every step.
fn train(mut model: Mlp, data: &Split, loss: impl Fn(Tensor<2>, Tensor<1, Int>) -> Tensor<1>) -> (Mlp, Vec<f32>) {
    let mut optimizer = AdamConfig::new().init();
    let mut curve = Vec::with_capacity(STEPS);
    for _ in 0..STEPS {
        let value = loss(model.forward(data.x.clone()), data.y.clone());
        curve.push(value.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(value.backward(), &model);
        model = optimizer.step(LEARNING_RATE, model, grads);
    }
    (model, curve)
}

/// Held-out recall per class and accuracy.
fn evaluate(model: &Mlp, data: &Split) -> ([f64; CLASSES], f64) {
    let predicted: Vec<i64> = model
        .forward(data.x.clone())
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .expect("int predictions");
    let (mut hits, mut totals) = ([0usize; CLASSES], [0usize; CLASSES]);
    for (&p, &y) in predicted.iter().zip(&data.labels) {
        totals[y as usize] += 1;
        hits[y as usize] += usize::from(p == y);
    }
    let recall = std::array::from_fn(|c| if totals[c] == 0 { f64::NAN } else { hits[c] as f64 / totals[c] as f64 });
    let accuracy = hits.iter().sum::<usize>() as f64 / data.labels.len() as f64;
    (recall, accuracy)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The one setup line: burn's device, reachable for fused-loss.
    let device = fused_loss::burn::device(WgpuDevice::default())?.autodiff();
    device.seed(13);
    let (train_set, test_set) = splits(&device);
    let initial = Mlp::new(&device);

    println!("Part 1: the same MLP trained with burn's CrossEntropyLoss and with fused-loss's ({STEPS} Adam steps)");
    let burn_ce = CrossEntropyLossConfig::new().init(&device);
    let (burn_model, burn_curve) = train(initial.clone(), &train_set, |logits, y| burn_ce.forward(logits, y));
    let (fused_model, fused_curve) = train(initial.clone(), &train_set, |logits, y| {
        fused_loss::burn::cross_entropy(logits, y).expect("a valid call")
    });
    println!("| step | burn CrossEntropyLoss | fused-loss cross_entropy |");
    println!("|---:|---:|---:|");
    for step in (0..STEPS).step_by(PRINT_EVERY).chain([STEPS - 1]) {
        println!("| {step} | {:.4} | {:.4} |", burn_curve[step], fused_curve[step]);
    }
    let worst = burn_curve.iter().zip(&fused_curve).map(|(b, f)| ((b - f).abs() / b.abs()) as f64).fold(0.0, f64::max);
    let agree = worst < 1e-4;
    println!("loss curves agree step by step to 1e-4 relative: {}", if agree { "yes" } else { "NO" });
    println!("largest relative difference of a step: {worst:.1e}");

    println!();
    println!("Part 2: focal loss (gamma = 2) with class weights from the GPU (effective number, beta = 0.999)");
    let weights =
        fused_loss::burn::class_weights(train_set.y.clone(), CLASSES, WeightScheme::EffectiveNumber { beta: 0.999 })?;
    let focal = FusedLoss::new(Loss::focal().gamma(2.0)).weight(weights);
    let (focal_model, _) = train(initial, &train_set, |logits, y| focal.forward(logits, y).expect("a valid call"));
    println!("| held-out recall | q3 | q4 | q5 | q6 | q7 | q8 | macro | accuracy |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, model) in [
        ("burn cross-entropy", &burn_model),
        ("fused cross-entropy", &fused_model),
        ("fused focal + weights", &focal_model),
    ] {
        let (recall, accuracy) = evaluate(model, &test_set);
        let present: Vec<f64> = recall.iter().copied().filter(|r| r.is_finite()).collect();
        let macro_recall = present.iter().sum::<f64>() / present.len() as f64;
        let cells: Vec<String> =
            recall.iter().map(|r| if r.is_finite() { format!("{r:.2}") } else { "-".into() }).collect();
        println!("| {name} | {} | {macro_recall:.2} | {accuracy:.3} |", cells.join(" | "));
    }
    if !agree {
        return Err("the fused and burn loss curves disagree".into());
    }
    Ok(())
}
