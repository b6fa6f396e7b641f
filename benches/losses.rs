//! CPU reference vs GPU, per registry loss, forward + backward in one call.
//!
//! GPU timings: record into an encoder, submit, wait for the device; buffers and the
//! plan (pipelines) are made before timing. Throughput counts the bytes every call
//! must move: input and target read once, gradient written once.
//!
//! `cargo bench --bench losses` (set `WGPU_BACKEND` to pick the adapter).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fused_loss::check::{Case, WeightKind};
use fused_loss::{cpu, registry, Bindings, Gpu, Reduction, Shape};
use wgpu::util::DeviceExt;

const SIZES: [usize; 2] = [1 << 16, 1 << 20];

fn case(loss: fused_loss::Loss, n: usize) -> Case {
    Case {
        loss,
        reduction: Reduction::Mean,
        dims: vec![n],
        weight: WeightKind::None,
        pos_weight: false,
        upstream: false,
        seed: 1,
    }
}

fn cpu_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu");
    for loss in registry() {
        for n in SIZES {
            let case = case(loss, n);
            let data = case.data();
            group.throughput(Throughput::Bytes((n * 12) as u64));
            group.bench_with_input(BenchmarkId::new(loss.name(), n), &n, |b, _| {
                b.iter(|| cpu::compute(&loss, Reduction::Mean, &data.inputs(&case)).unwrap())
            });
        }
    }
    group.finish();
}

fn gpu_group(c: &mut Criterion) {
    let gpu = match Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("SKIP gpu benches: {e}");
            return;
        }
    };
    let device = gpu.device();
    let mut group = c.benchmark_group("gpu");
    for loss in registry() {
        for n in SIZES {
            let data = case(loss, n).data();
            let usage = wgpu::BufferUsages::STORAGE;
            let init = |v: &[f32]| {
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(v),
                    usage,
                })
            };
            let (input, target, grad, stats) = (
                init(&data.input),
                init(&data.target),
                init(&data.input),
                init(&[0.0; 4]),
            );
            let plan = gpu
                .plan(&loss, Reduction::Mean, &Shape::elementwise(n))
                .unwrap();
            let bindings = Bindings::new(
                input.slice(..),
                target.slice(..),
                grad.slice(..),
                stats.slice(..),
            );
            group.throughput(Throughput::Bytes((n * 12) as u64));
            group.bench_with_input(BenchmarkId::new(loss.name(), n), &n, |b, _| {
                b.iter(|| {
                    let mut encoder = device.create_command_encoder(&Default::default());
                    plan.encode(&mut encoder, &bindings).unwrap();
                    gpu.queue().submit([encoder.finish()]);
                    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = cpu_group, gpu_group
}
criterion_main!(benches);
