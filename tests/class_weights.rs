//! Class weights from data on the GPU against the f64 twin, the running (EMA) state over
//! several steps, and the weights buffer used directly as cross-entropy's class weight;
//! BCE's per-class pos_weight from multi-hot targets likewise.

mod common;

use fused_loss::{
    cpu, Bindings, Error, Inputs, Loss, LossStats, Options, Reduction, Shape, WeightLayout, WeightScheme,
};
use wgpu::util::DeviceExt;

const SCHEMES: [WeightScheme; 4] = [
    WeightScheme::InverseFrequency,
    WeightScheme::InverseSqrt,
    WeightScheme::EffectiveNumber { beta: 0.999 },
    WeightScheme::EffectiveNumber { beta: 0.0 },
];

/// Skewed labels: class c drawn about twice as often as class c + 1, every 7th ignored,
/// a few out of range (skipped, not counted).
fn labels(rows: usize, classes: usize, seed: u32) -> Vec<i32> {
    (0..rows as u32)
        .map(|r| {
            let h = r.wrapping_mul(0x9E37_79B1).wrapping_add(seed.wrapping_mul(0x85EB_CA77)) >> 7;
            match r % 97 {
                0 => -1,
                1 => classes as i32,
                _ if r % 7 == 3 => -100,
                _ => (h.trailing_zeros() as usize % classes) as i32,
            }
        })
        .collect()
}

/// A storage buffer holding `data`.
fn storage_buffer(gpu: &fused_loss::Gpu, data: &[u8]) -> wgpu::Buffer {
    gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: data,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
    })
}

/// Submits `encoder` with a copy of the `LossStats` in `stats` appended, and reads it back.
fn submit_and_read_stats(gpu: &fused_loss::Gpu, mut encoder: wgpu::CommandEncoder, stats: &wgpu::Buffer) -> LossStats {
    let readback = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: LossStats::SIZE,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_buffer_to_buffer(stats, 0, &readback, 0, LossStats::SIZE);
    gpu.queue().submit([encoder.finish()]);
    let slice = readback.slice(..);
    slice.map_async(wgpu::MapMode::Read, |r| r.unwrap());
    gpu.device().poll(wgpu::PollType::wait_indefinitely()).unwrap();
    bytemuck::pod_read_unaligned(&slice.get_mapped_range().unwrap())
}

fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (c, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g as f64 - w).abs() <= 1e-5 * w.abs() + 1e-7, "{what}: class {c}: {g} vs {w}");
    }
}

#[test]
fn weights_from_a_batch_match_the_reference() {
    let Some(gpu) = common::gpu("weights_from_a_batch_match_the_reference") else { return };
    // 2000 classes: past the workgroup-local histogram (1024 bins); 1 class; no rows.
    for (rows, classes) in [(0, 3), (1, 1), (257, 6), (70_000, 6), (5000, 1000), (20_000, 2000)] {
        let labels = labels(rows, classes, rows as u32);
        for scheme in SCHEMES {
            let plan = gpu.class_weights(rows, classes, -100, scheme, None).unwrap();
            let got = plan.compute(&labels, None).unwrap();
            let want = cpu::class_weights(&labels, classes, -100, scheme, None);
            assert_close(&got, &want, &format!("{rows} rows, {classes} classes, {scheme:?}"));
        }
    }
}

#[test]
fn running_weights_follow_the_reference_over_steps() {
    let Some(gpu) = common::gpu("running_weights_follow_the_reference_over_steps") else { return };
    let (rows, classes, momentum) = (3000, 6, 0.9);
    let plan =
        gpu.class_weights(rows, classes, -100, WeightScheme::EffectiveNumber { beta: 0.99 }, Some(momentum)).unwrap();
    let (mut state, mut reference) = (vec![0.0f32; classes], vec![0.0f64; classes]);
    for step in 0..4 {
        let labels = labels(rows, classes, 17 + step);
        let got = plan.compute(&labels, Some(&mut state)).unwrap();
        let want = cpu::class_weights(
            &labels,
            classes,
            -100,
            WeightScheme::EffectiveNumber { beta: 0.99 },
            Some((&mut reference, momentum as f64)),
        );
        assert_close(&got, &want, &format!("step {step} weights"));
        assert_close(&state, &reference, &format!("step {step} running counts"));
    }
}

#[test]
fn gpu_weights_feed_cross_entropy_without_a_round_trip() {
    // Histogram, weights and the weighted loss recorded into one encoder, the weights
    // never leaving the GPU; compared with the CPU loss under the CPU weights.
    let Some(gpu) = common::gpu("gpu_weights_feed_cross_entropy_without_a_round_trip") else { return };
    let (rows, classes) = (500, 6);
    let labels = labels(rows, classes, 5)
        .into_iter()
        .map(|l| if (0..classes as i32).contains(&l) { l } else { -100 })
        .collect::<Vec<_>>();
    let logits: Vec<f32> = (0..rows * classes).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
    let device = gpu.device();
    let buffer = |data: &[u8]| storage_buffer(&gpu, data);
    let (logits_b, labels_b) = (buffer(bytemuck::cast_slice(&logits)), buffer(bytemuck::cast_slice(&labels)));
    let (weights_b, grad_b) = (buffer(&vec![0; classes * 4]), buffer(&vec![0; rows * classes * 4]));
    let stats_b = buffer(&[0; LossStats::SIZE as usize]);
    let scheme = WeightScheme::InverseSqrt;
    let weigh = gpu.class_weights(rows, classes, -100, scheme, None).unwrap();
    let options = Options::new().weight(WeightLayout::PerClass);
    let loss = gpu.plan_for(Loss::cross_entropy(), Reduction::Mean, &Shape::new(&[rows, classes]), &options).unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    weigh.encode(&mut encoder, labels_b.slice(..), None, weights_b.slice(..)).unwrap();
    let bindings = Bindings::new()
        .input(logits_b.slice(..))
        .labels(labels_b.slice(..))
        .grad(grad_b.slice(..))
        .stats(stats_b.slice(..))
        .weight(weights_b.slice(..));
    loss.encode(&mut encoder, &bindings).unwrap();
    let stats = submit_and_read_stats(&gpu, encoder, &stats_b);
    let weights: Vec<f32> =
        cpu::class_weights(&labels, classes, -100, scheme, None).into_iter().map(|w| w as f32).collect();
    let want = cpu::compute(
        Loss::cross_entropy(),
        Reduction::Mean,
        &Inputs::labels(&logits, &labels).shape(&[rows, classes]).weight(&weights),
    )
    .unwrap()
    .value;
    assert!((stats.value as f64 - want).abs() <= 1e-5 * want.abs(), "{} vs {want}", stats.value);
}

#[test]
fn bad_class_weight_requests_are_named() {
    let Some(gpu) = common::gpu("bad_class_weight_requests_are_named") else { return };
    let e = gpu.class_weights(10, 3, -100, WeightScheme::EffectiveNumber { beta: 1.0 }, None).err().unwrap();
    assert!(matches!(e, Error::InvalidParameter { name: "beta", .. }), "{e}");
    let e = gpu.class_weights(10, 3, -100, WeightScheme::InverseSqrt, Some(1.5)).err().unwrap();
    assert!(matches!(e, Error::InvalidParameter { name: "momentum", .. }), "{e}");
    let e = gpu.class_weights(10, 0, -100, WeightScheme::InverseSqrt, None).err().unwrap();
    assert!(matches!(e, Error::InvalidShape { .. }), "{e}");
    let plan = gpu.class_weights(10, 3, -100, WeightScheme::InverseSqrt, Some(0.9)).unwrap();
    let e = plan.compute(&[0; 10], None).unwrap_err();
    assert!(matches!(e, Error::MissingArgument { argument: "frequencies", .. }), "{e}");
    let e = plan.compute(&[0; 9], Some(&mut [0.0; 3])).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { argument: "labels", actual: 9, .. }), "{e}");
    let positive = gpu.positive_weights(10, 3, WeightScheme::InverseSqrt, Some(0.9)).unwrap();
    let e = positive.compute_positive(&[0.0; 30], Some(&mut [0.0; 3])).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { argument: "frequencies", actual: 3, .. }), "{e}");
    let e = positive.compute_positive(&[0.0; 10], Some(&mut [0.0; 6])).unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { argument: "targets", actual: 10, .. }), "{e}");
    let e = positive.compute(&[0; 10], None).unwrap_err();
    assert!(matches!(e, Error::UnsupportedArgument { .. }), "{e}");
}

/// Multi-hot targets with skewed label frequencies: label c is on about 1 row in 2^(c+1),
/// the last label never, the one before it always (no negatives).
fn multi_hot(rows: usize, classes: usize, seed: u32) -> Vec<f32> {
    (0..rows * classes)
        .map(|i| {
            let c = i % classes;
            let h = (i as u32).wrapping_mul(0x9E37_79B1).wrapping_add(seed.wrapping_mul(0x85EB_CA77)) >> 5;
            let on = match c {
                _ if c + 1 == classes => false,
                _ if c + 2 == classes => true,
                _ => h.trailing_zeros() as usize > c % 12,
            };
            if on {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

#[test]
fn positive_weights_from_multi_hot_targets_match_the_reference() {
    let Some(gpu) = common::gpu("positive_weights_from_multi_hot_targets_match_the_reference") else { return };
    // 1100 labels: past the workgroup-local histogram.
    for (rows, classes) in [(1, 3), (257, 6), (5000, 13), (300, 1100)] {
        let targets = multi_hot(rows, classes, rows as u32);
        for scheme in SCHEMES {
            let plan = gpu.positive_weights(rows, classes, scheme, None).unwrap();
            let got = plan.compute_positive(&targets, None).unwrap();
            let want = cpu::positive_weights(&targets, classes, scheme, None);
            assert_close(&got, &want, &format!("{rows} rows, {classes} labels, {scheme:?}"));
        }
    }
    // Inverse frequency is PyTorch's recipe, negatives over positives.
    // Label 0 on one row of four, label 1 on three.
    let targets = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
    let got =
        gpu.positive_weights(4, 2, WeightScheme::InverseFrequency, None).unwrap().compute_positive(&targets, None);
    assert_eq!(got.unwrap(), vec![3.0, 1.0 / 3.0]);
    // Running counts over steps.
    let (rows, classes, momentum) = (400, 5, 0.8);
    let plan = gpu.positive_weights(rows, classes, WeightScheme::InverseSqrt, Some(momentum)).unwrap();
    let (mut state, mut reference) = (vec![0.0f32; 2 * classes], vec![0.0f64; 2 * classes]);
    for step in 0..3 {
        let targets = multi_hot(rows, classes, 31 + step);
        let got = plan.compute_positive(&targets, Some(&mut state)).unwrap();
        let want = cpu::positive_weights(
            &targets,
            classes,
            WeightScheme::InverseSqrt,
            Some((&mut reference, momentum as f64)),
        );
        assert_close(&got, &want, &format!("step {step} weights"));
        assert_close(&state, &reference, &format!("step {step} running counts"));
    }
}

#[test]
fn gpu_positive_weights_feed_bce_without_a_round_trip() {
    // Multi-label BCE with logits whose pos_weight comes from the same batch's targets,
    // histogram and loss in one encoder; against the CPU loss under the CPU weights.
    let Some(gpu) = common::gpu("gpu_positive_weights_feed_bce_without_a_round_trip") else { return };
    let (rows, classes) = (700, 9);
    let targets = multi_hot(rows, classes, 3);
    let logits: Vec<f32> = (0..rows * classes).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
    let device = gpu.device();
    let buffer = |data: &[u8]| storage_buffer(&gpu, data);
    let (logits_b, targets_b) = (buffer(bytemuck::cast_slice(&logits)), buffer(bytemuck::cast_slice(&targets)));
    let (weights_b, grad_b) = (buffer(&vec![0; classes * 4]), buffer(&vec![0; rows * classes * 4]));
    let stats_b = buffer(&[0; LossStats::SIZE as usize]);
    let scheme = WeightScheme::InverseFrequency;
    let weigh = gpu.positive_weights(rows, classes, scheme, None).unwrap();
    let options = Options::new().pos_weight();
    let loss = gpu.plan_for(Loss::bce_with_logits(), Reduction::Mean, &Shape::new(&[rows, classes]), &options).unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    weigh.encode(&mut encoder, targets_b.slice(..), None, weights_b.slice(..)).unwrap();
    let bindings = Bindings::new()
        .input(logits_b.slice(..))
        .target(targets_b.slice(..))
        .grad(grad_b.slice(..))
        .stats(stats_b.slice(..))
        .pos_weight(weights_b.slice(..));
    loss.encode(&mut encoder, &bindings).unwrap();
    let stats = submit_and_read_stats(&gpu, encoder, &stats_b);
    let pos_weight: Vec<f32> =
        cpu::positive_weights(&targets, classes, scheme, None).into_iter().map(|w| w as f32).collect();
    let inputs = Inputs::new(&logits, &targets).shape(&[rows, classes]).pos_weight(&pos_weight);
    let want = cpu::compute(Loss::bce_with_logits(), Reduction::Mean, &inputs).unwrap().value;
    assert!((stats.value as f64 - want).abs() <= 1e-5 * want.abs(), "{} vs {want}", stats.value);
}
