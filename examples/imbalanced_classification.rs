//! Which classification loss for skewed classes and for noisy labels, on real data: the
//! red wine quality set shipped by `linfa-datasets` (1599 wines, 11 measurements, quality
//! 3..8 as six classes of 10, 53, 681, 638, 199 and 18 wines).
//!
//! A linear softmax classifier (examples/common/linear.rs) is trained on the GPU, full
//! batch, from zero weights, with each loss in turn, on the same 75% of the wines (a fixed
//! shuffle); the other 25% are held out with their true labels. Part A compares losses for
//! the skew: cross-entropy, weighted cross-entropy (inverse frequency, computed on the GPU
//! from the labels), softmax focal (γ = 2) and focal with effective-number weights as α
//! (β = 0.999). Part B flips 30% of the training labels to another class at random and
//! compares cross-entropy with the noise-robust losses: generalized cross-entropy
//! (q = 0.7), symmetric cross-entropy (α = 0.1, β = 1, A = −4), and soft (β = 0.95) and
//! hard (β = 0.8) bootstrapping.
//!
//! Printed: per-class recall, macro-F1 and accuracy on the held-out wines, and the loss
//! curves as an SVG (the path given as the first argument, default
//! `target/imbalanced_classification.svg`).
//!
//! Run: `cargo run --release --example imbalanced_classification`

#[path = "common/linear.rs"]
mod linear;

use fused_loss::{Bindings, Gpu, Loss, LossStats, Options, Reduction, Shape, WeightLayout, WeightScheme};
use wgpu::util::DeviceExt;

const FEATURES: usize = 11;
const CLASSES: usize = 6;
const STEPS: usize = 1500;
const CURVE_EVERY: usize = 25;
const LEARNING_RATE: f32 = 0.5;
const FLIPPED: f64 = 0.3;

/// How one run weights its classes.
#[derive(Clone, Copy)]
enum Weights {
    None,
    /// Computed on the GPU from the training labels.
    FromLabels(WeightScheme),
}

struct Run {
    name: &'static str,
    loss: Loss,
    weights: Weights,
}

struct Outcome {
    name: &'static str,
    curve: Vec<(usize, f32)>,
    recall: [f64; CLASSES],
    macro_f1: f64,
    accuracy: f64,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let svg = std::env::args().nth(1).unwrap_or("target/imbalanced_classification.svg".into());
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))?;
    println!("adapter: {} ({:?})", adapter.get_info().name, adapter.get_info().backend);
    let gpu = Gpu::from_device(device.clone(), queue.clone());

    let wine = linfa_datasets::winequality();
    let mut x: Vec<f32> = wine.records.iter().map(|&v| v as f32).collect();
    linear::standardise(&mut x, FEATURES);
    let labels: Vec<i32> = wine.targets.iter().map(|&q| q as i32 - 3).collect();
    let order = linear::shuffled(labels.len(), 0x5eed_0001);
    let (train, test) = order.split_at(labels.len() * 3 / 4);
    let rows_of = |indices: &[usize]| -> Vec<f32> {
        indices.iter().flat_map(|&i| x[i * FEATURES..(i + 1) * FEATURES].to_vec()).collect()
    };
    let (x_train, x_test) = (rows_of(train), rows_of(test));
    let y_train: Vec<i32> = train.iter().map(|&i| labels[i]).collect();
    let y_test: Vec<i32> = test.iter().map(|&i| labels[i]).collect();
    // 30% of the training labels moved to another class, uniformly, from a fixed seed.
    let mut noisy = y_train.clone();
    let mut state = 0x9e37_79b9u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut flipped = 0;
    for label in noisy.iter_mut() {
        if (next() % 1_000_000) as f64 / 1e6 < FLIPPED {
            *label = ((*label as u64 + 1 + next() % (CLASSES as u64 - 1)) % CLASSES as u64) as i32;
            flipped += 1;
        }
    }
    let count = |ys: &[i32]| (0..CLASSES).map(|c| ys.iter().filter(|&&y| y == c as i32).count()).collect::<Vec<_>>();
    println!(
        "train {} wines per class {:?}, held out {} {:?}",
        y_train.len(),
        count(&y_train),
        y_test.len(),
        count(&y_test)
    );
    println!("part B: {flipped} of {} training labels flipped", y_train.len());

    let model = linear::Linear::new(&device, &queue, FEATURES, CLASSES);
    let test_batch = model.batch(&x_test, &y_test, LEARNING_RATE);
    let stats = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("stats"),
        contents: &[0; LossStats::SIZE as usize],
        usage: linear::STORAGE,
    });
    let weights = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("class weights"),
        contents: &[0; CLASSES * 4],
        usage: linear::STORAGE,
    });
    let ce: Loss = Loss::cross_entropy().into();
    let focal: Loss = Loss::focal().gamma(2.0).into();
    let part_a = [
        Run { name: "cross-entropy", loss: ce.clone(), weights: Weights::None },
        Run {
            name: "weighted CE (1/n)",
            loss: ce.clone(),
            weights: Weights::FromLabels(WeightScheme::InverseFrequency),
        },
        Run { name: "focal γ=2", loss: focal.clone(), weights: Weights::None },
        Run {
            name: "focal γ=2 + eff. number",
            loss: focal.clone(),
            weights: Weights::FromLabels(WeightScheme::EffectiveNumber { beta: 0.999 }),
        },
    ];
    let part_b = [
        Run { name: "cross-entropy (noisy)", loss: ce.clone(), weights: Weights::None },
        Run {
            name: "GCE q=0.7 (noisy)",
            loss: Loss::generalized_cross_entropy().q(0.7).into(),
            weights: Weights::None,
        },
        Run {
            name: "SCE α=0.1 β=1 (noisy)",
            loss: Loss::symmetric_cross_entropy().alpha(0.1).beta(1.0).log_zero(-4.0).into(),
            weights: Weights::None,
        },
        Run {
            name: "soft bootstrap β=0.95 (noisy)",
            loss: Loss::soft_bootstrap().beta(0.95).into(),
            weights: Weights::None,
        },
        Run {
            name: "hard bootstrap β=0.8 (noisy)",
            loss: Loss::hard_bootstrap().beta(0.8).into(),
            weights: Weights::None,
        },
    ];

    let mut outcomes = Vec::new();
    for (runs, y) in [(&part_a[..], &y_train), (&part_b[..], &noisy)] {
        let train_batch = model.batch(&x_train, y, LEARNING_RATE);
        for run in runs {
            model.reset();
            let shape = Shape::new(&[train_batch.rows, CLASSES]);
            // The class weights are declared when planning, so the plan compiles that variant.
            let options = match run.weights {
                Weights::None => Options::new(),
                _ => Options::new().weight(WeightLayout::PerClass),
            };
            let plan = gpu.plan_for(&run.loss, Reduction::Mean, &shape, &options)?;
            let mut encoder = device.create_command_encoder(&Default::default());
            if let Weights::FromLabels(scheme) = run.weights {
                let weigh = gpu.class_weights(train_batch.rows, CLASSES, -100, scheme, None)?;
                weigh.encode(&mut encoder, train_batch.labels.slice(..), None, weights.slice(..))?;
            }
            queue.submit([encoder.finish()]);
            let bindings = || {
                let b = Bindings::new()
                    .input(train_batch.logits.slice(..))
                    .labels(train_batch.labels.slice(..))
                    .grad(train_batch.grad.slice(..))
                    .stats(stats.slice(..));
                if matches!(run.weights, Weights::None) {
                    b
                } else {
                    b.weight(weights.slice(..))
                }
            };
            let mut curve = Vec::new();
            for step in 0..=STEPS {
                let mut encoder = device.create_command_encoder(&Default::default());
                model.forward(&mut encoder, &train_batch);
                plan.encode(&mut encoder, &bindings())?;
                model.update(&mut encoder, &train_batch);
                queue.submit([encoder.finish()]);
                if step % CURVE_EVERY == 0 {
                    curve.push((step, model.read::<LossStats>(&stats)[0].value));
                }
            }
            let mut encoder = device.create_command_encoder(&Default::default());
            model.forward(&mut encoder, &test_batch);
            queue.submit([encoder.finish()]);
            let logits: Vec<f32> = model.read(&test_batch.logits);
            outcomes.push(score(run.name, curve, &logits, &y_test));
        }
    }

    println!();
    println!("| loss | recall q3 | q4 | q5 | q6 | q7 | q8 | macro-F1 | accuracy |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let recall: Vec<String> = o.recall.iter().map(|r| format!("{:.2}", r)).collect();
        println!("| {} | {} | {:.3} | {:.3} |", o.name, recall.join(" | "), o.macro_f1, o.accuracy);
    }
    plot(&outcomes, &svg)?;
    println!("\nloss curves: {svg}");
    Ok(())
}

/// Held-out per-class recall, macro-F1 over the classes that occur in the held-out truth
/// or the predictions, and accuracy.
fn score(name: &'static str, curve: Vec<(usize, f32)>, logits: &[f32], truth: &[i32]) -> Outcome {
    let predicted: Vec<usize> = logits
        .chunks(CLASSES)
        .map(|row| (0..CLASSES).fold(0, |best, c| if row[c] > row[best] { c } else { best }))
        .collect();
    let mut recall = [0.0; CLASSES];
    let mut f1_sum = 0.0;
    let mut classes_scored = 0;
    for (c, recall_c) in recall.iter_mut().enumerate() {
        let tp = predicted.iter().zip(truth).filter(|&(&p, &t)| p == c && t == c as i32).count() as f64;
        let actual = truth.iter().filter(|&&t| t == c as i32).count() as f64;
        let guessed = predicted.iter().filter(|&&p| p == c).count() as f64;
        if actual == 0.0 && guessed == 0.0 {
            continue;
        }
        classes_scored += 1;
        *recall_c = if actual > 0.0 { tp / actual } else { 0.0 };
        let precision = if guessed > 0.0 { tp / guessed } else { 0.0 };
        if precision + *recall_c > 0.0 {
            f1_sum += 2.0 * precision * *recall_c / (precision + *recall_c);
        }
    }
    let correct = predicted.iter().zip(truth).filter(|&(&p, &t)| p == t as usize).count();
    Outcome {
        name,
        curve,
        recall,
        macro_f1: f1_sum / classes_scored as f64,
        accuracy: correct as f64 / truth.len() as f64,
    }
}

/// Training-loss curves, one line per run (each loss on its own scale, so read their
/// shapes, not their levels against each other).
fn plot(outcomes: &[Outcome], path: &str) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = outcomes.iter().flat_map(|o| o.curve.iter().map(|p| p.1)).fold(0.0f32, f32::max) * 1.05;
    let mut chart = ChartBuilder::on(&root)
        .caption("wine quality: training loss per step (mean over the training wines)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0usize..STEPS, 0f32..max)?;
    chart.configure_mesh().x_desc("step").y_desc("loss").draw()?;
    for (i, o) in outcomes.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(o.curve.iter().copied(), color.stroke_width(2)))?
            .label(o.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
