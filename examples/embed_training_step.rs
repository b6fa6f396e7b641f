//! A training loop that owns everything: the wgpu device, the buffers, the encoder and
//! kernels of its own. A linear softmax classifier on the iris data set (150 flowers,
//! 4 features, 3 species, shipped by `linfa-datasets`):
//!
//!   forward (examples/common/linear.rs)  logits = x W + b
//!   loss    (fused-loss)                 cross-entropy, recorded into the same encoder;
//!                                        writes d(loss)/d(logits) into the model's buffer
//!   update  (examples/common/linear.rs)  W -= lr xᵀ g,  b -= lr Σ g
//!
//! One submit per step; the loss and accuracy are read back only every 50 steps.
//!
//! Run: `cargo run --release --example embed_training_step`

#[path = "common/linear.rs"]
mod linear;

use fused_loss::{Bindings, Gpu, Loss, LossStats, Options, Reduction, Shape};
use wgpu::util::DeviceExt;

const FEATURES: usize = 4;
const CLASSES: usize = 3;
const STEPS: usize = 300;
const REPORT_EVERY: usize = 50;
const LEARNING_RATE: f32 = 0.5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The caller's own device (WGPU_BACKEND picks the backend, as for any wgpu program).
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))?;
    println!("adapter: {} ({:?})", adapter.get_info().name, adapter.get_info().backend);
    let gpu = Gpu::from_device(device.clone(), queue.clone());

    // Iris, standardised, split 120 / 30 by a fixed shuffle.
    let iris = linfa_datasets::iris();
    let mut x: Vec<f32> = iris.records.iter().map(|&v| v as f32).collect();
    linear::standardise(&mut x, FEATURES);
    let labels: Vec<i32> = iris.targets.iter().map(|&t| t as i32).collect();
    let order = linear::shuffled(labels.len(), 0x2545F491);
    let (train, test) = order.split_at(120);
    let model = linear::Linear::new(&device, &queue, FEATURES, CLASSES);
    let batch = |indices: &[usize]| {
        let xs: Vec<f32> = indices.iter().flat_map(|&i| x[i * FEATURES..(i + 1) * FEATURES].to_vec()).collect();
        let ys: Vec<i32> = indices.iter().map(|&i| labels[i]).collect();
        model.batch(&xs, &ys, LEARNING_RATE)
    };
    let (train, test) = (batch(train), batch(test));
    let stats = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("stats"),
        contents: &[0; LossStats::SIZE as usize],
        usage: linear::STORAGE,
    });

    // Validated and prepared once; recorded every step.
    // Validated, and its pipelines compiled, once (with the accuracy count the bindings ask for).
    let plan = |batch: &linear::Batch| {
        let shape = Shape::new(&[batch.rows, CLASSES]);
        gpu.plan_for(Loss::cross_entropy(), Reduction::Mean, &shape, &Options::new().accuracy())
    };
    let (train_plan, test_plan) = (plan(&train)?, plan(&test)?);
    fn bindings<'a>(batch: &'a linear::Batch, stats: &'a wgpu::Buffer) -> Bindings<'a> {
        Bindings::new()
            .input(batch.logits.slice(..))
            .labels(batch.labels.slice(..))
            .grad(batch.grad.slice(..))
            .stats(stats.slice(..))
            .accuracy()
    }

    println!("step   train loss   train accuracy");
    for step in 0..=STEPS {
        let mut encoder = device.create_command_encoder(&Default::default());
        model.forward(&mut encoder, &train);
        train_plan.encode(&mut encoder, &bindings(&train, &stats))?;
        model.update(&mut encoder, &train);
        queue.submit([encoder.finish()]);
        if step % REPORT_EVERY == 0 {
            let s = gpu.read_stats(stats.slice(..))?;
            // `kept`: the rows that count (here all; with an ignore_index, the others).
            println!("{step:>4}   {:>10.4}   {:>6.1}%", s.value, 100.0 * s.correct as f32 / s.kept as f32);
        }
    }

    // Held-out split: forward and loss only.
    let mut encoder = device.create_command_encoder(&Default::default());
    model.forward(&mut encoder, &test);
    test_plan.encode(&mut encoder, &bindings(&test, &stats))?;
    queue.submit([encoder.finish()]);
    let s = gpu.read_stats(stats.slice(..))?;
    println!(
        "held-out ({} flowers): loss {:.4}, accuracy {:.1}%",
        s.kept,
        s.value,
        100.0 * s.correct as f32 / s.kept as f32
    );
    Ok(())
}
