//! CPU reference vs GPU, per registry loss and size, forward + backward in one call.
//!
//! - `cpu/<loss>/<shape>`: the fast CPU path (f32, f64 sums) on all cores.
//! - `gpu/<loss>/<shape>`: record + submit + wait for the device; pipelines and buffers
//!   are made before timing.
//! - `floor/empty_dispatch`: an empty dispatch + wait, the floor under every GPU call.
//!
//! Throughput is the effective bytes of a call (inputs read once + gradient written
//! once). Each iteration uses the next of several input sets whose total exceeds any
//! last-level cache (64 MiB), so no call finds its inputs cached by the previous one.
//! `cargo bench --bench losses` (set `WGPU_BACKEND` to pick the adapter).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fused_loss::bench::{self, GpuCall, CRITERION_ELEMENTWISE, CRITERION_ROWS};
use fused_loss::check::Case;
use fused_loss::{cpu, registry, DType, Gpu, Loss, Reduction};

/// Bytes the rotating input sets cover together.
const ROTATION_BYTES: u64 = 64 << 20;

fn shapes(loss: &Loss) -> Vec<&'static [usize]> {
    let all = if loss.spec().is_row_wise() { CRITERION_ROWS } else { CRITERION_ELEMENTWISE };
    all.iter().copied().filter(|dims| bench::applies(loss, dims)).collect()
}

/// Input sets for `loss` on `dims`: enough (at least 2, at most 16) to exceed the cache.
fn rotation(loss: &Loss, dims: &[usize]) -> (u64, Vec<fused_loss::check::CaseData>) {
    let first = Case::new(loss, Reduction::Mean, dims, 0).data();
    let bytes = bench::effective_bytes(&first, DType::F32);
    let sets = ROTATION_BYTES.div_ceil(bytes).clamp(2, 16);
    let mut data = vec![first];
    data.extend((1..sets).map(|seed| Case::new(loss, Reduction::Mean, dims, seed).data()));
    (bytes, data)
}

fn label(dims: &[usize]) -> String {
    dims.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
}

fn cpu_group(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu");
    for loss in registry() {
        for dims in shapes(&loss) {
            let (bytes, data) = rotation(&loss, dims);
            let case = Case::new(&loss, Reduction::Mean, dims, 0);
            group.throughput(Throughput::Bytes(bytes));
            let mut next = 0;
            group.bench_function(BenchmarkId::new(loss.name(), label(dims)), |b| {
                b.iter(|| {
                    next = (next + 1) % data.len();
                    cpu::compute_fast(&loss, Reduction::Mean, &data[next].inputs(&case)).unwrap()
                })
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
    let mut floor = c.benchmark_group("floor");
    let empty = bench::EmptyDispatch::new(&gpu);
    floor.bench_function("empty_dispatch", |b| b.iter(|| empty.run()));
    floor.finish();
    let mut group = c.benchmark_group("gpu");
    for loss in registry() {
        for dims in shapes(&loss) {
            let (bytes, data) = rotation(&loss, dims);
            let calls: Vec<GpuCall> =
                data.iter().map(|d| GpuCall::new(&gpu, &loss, dims, d, DType::F32).unwrap()).collect();
            group.throughput(Throughput::Bytes(bytes));
            let mut next = 0;
            group.bench_function(BenchmarkId::new(loss.name(), label(dims)), |b| {
                b.iter(|| {
                    next = (next + 1) % calls.len();
                    calls[next].run()
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = cpu_group, gpu_group
}
criterion_main!(benches);
