//! CPU reference vs GPU, per registry loss, forward + backward in one call.
//!
//! GPU timings: record into an encoder, submit, wait for the device; buffers and the
//! plan (pipelines) are made before timing. Throughput counts the bytes every call
//! must move: input and target read once, gradient written once.
//!
//! `cargo bench --bench losses` (set `WGPU_BACKEND` to pick the adapter).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fused_loss::check::Case;
use fused_loss::{cpu, registry, Bindings, Gpu, Reduction, Shape};

/// Bytes one call must move: input and target read once, gradient written once.
fn bytes(case: &Case) -> u64 {
    let data = case.data();
    ((data.input.len() * 2 + data.target.len() + data.labels.len()) * 4) as u64
}
use wgpu::util::DeviceExt;

const SIZES: [usize; 2] = [1 << 16, 1 << 20];

fn case(loss: fused_loss::Loss, n: usize) -> Case {
    // Row-wise losses get rows of 1024 classes.
    let dims = if loss.spec().is_row_wise() { vec![n / 1024, 1024] } else { vec![n] };
    Case::new(loss, Reduction::Mean, &dims, 1)
}

fn cpu_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu");
    for loss in registry() {
        for n in SIZES {
            let case = case(loss, n);
            let data = case.data();
            group.throughput(Throughput::Bytes(bytes(&case)));
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
            let init = |v: &[u8]| {
                device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents: v, usage })
            };
            let target: &[u8] = if data.labels.is_empty() {
                bytemuck::cast_slice(&data.target)
            } else {
                bytemuck::cast_slice(&data.labels)
            };
            let (input, target, grad, stats) = (
                init(bytemuck::cast_slice(&data.input)),
                init(target),
                init(bytemuck::cast_slice(&data.input)),
                init(&[0; 32]),
            );
            let case = case(loss, n);
            let plan = gpu.plan(&loss, Reduction::Mean, &Shape::new(&case.dims)).unwrap();
            let bindings = Bindings::new(input.slice(..), target.slice(..), grad.slice(..), stats.slice(..));
            group.throughput(Throughput::Bytes(bytes(&case)));
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
