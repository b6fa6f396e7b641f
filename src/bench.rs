//! `fused-loss bench`: GPU against the CPU reference per loss and size, after checking
//! that they agree; effective bandwidth next to the same adapter's plain-copy bandwidth.
//!
//! Effective bytes of a call: every input read once (input, target or labels, weights)
//! plus every gradient element written once. GPU times include submit and a wait for the
//! device (`device.poll(wait)`), after warm-up, median of repeated calls; pipelines and
//! buffers are made before timing. The plain copy moves the same number of bytes
//! (half read, half written) with `copy_buffer_to_buffer`, timed the same way.

use std::time::{Duration, Instant};

use serde::Serialize;
use wgpu::util::DeviceExt;

use crate::check::{self, Case};
use crate::launch::Launch;
use crate::{cpu, Bindings, DType, Gpu, Loss, LossStats, Reduction, Result, Shape};

/// Shapes of `cargo bench`: elementwise lengths and row-wise (N, C).
pub const CRITERION_ELEMENTWISE: &[&[usize]] = &[&[1 << 16], &[1 << 20], &[1 << 23]];
/// Row-wise shapes of `cargo bench`.
pub const CRITERION_ROWS: &[&[usize]] = &[&[4096, 10], &[1024, 1000], &[64, 32_768], &[16, 131_072]];

/// Which sizes to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Sizes a software adapter runs in about a minute.
    Default,
    /// Real-GPU sizes (elementwise up to 1e8, vocabulary-sized cross-entropy,
    /// segmentation).
    Large,
}

/// The (loss, shape, element type) rows of a suite: every registry loss in f32, and in
/// bf16 and f16 at each loss's largest size (default suite) or in bf16 at every size
/// (large suite, whose f16 rows would double a real GPU's run for little news).
pub fn suite(suite: Suite) -> Vec<(Loss, Vec<usize>, DType)> {
    let (elementwise, rows): (&[&[usize]], &[&[usize]]) = match suite {
        Suite::Default => {
            (&[&[1 << 16], &[1 << 20], &[1 << 22]], &[&[4096, 10], &[1024, 1000], &[64, 32_768], &[16, 131_072]])
        }
        Suite::Large => (
            &[&[1_000_000], &[10_000_000], &[100_000_000]],
            &[&[8192, 32_768], &[8192, 131_072], &[16_384, 131_072], &[16, 21, 512, 512]],
        ),
    };
    let mut out = Vec::new();
    for loss in crate::registry() {
        let shapes: Vec<&[usize]> = if loss.spec().is_row_wise() { rows } else { elementwise }
            .iter()
            .copied()
            .filter(|dims| applies(&loss, dims))
            .collect();
        for (i, dims) in shapes.iter().enumerate() {
            out.push((loss.clone(), dims.to_vec(), DType::F32));
            match suite {
                Suite::Large => out.push((loss.clone(), dims.to_vec(), DType::BF16)),
                Suite::Default if i + 1 == shapes.len() => {
                    out.extend([DType::BF16, DType::F16].map(|dtype| (loss.clone(), dims.to_vec(), dtype)))
                }
                Suite::Default => {}
            }
        }
    }
    out
}

/// Whether a suite's shape suits the loss: the margin losses take (N, C) only.
pub fn applies(loss: &Loss, dims: &[usize]) -> bool {
    !loss.spec().two_dimensional() || dims.len() == 2
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Loss name.
    pub loss: String,
    /// Input dimensions.
    pub dims: Vec<usize>,
    /// Element type of input, target and gradient.
    pub dtype: String,
    /// Bytes of the GPU buffers a call uses with a separate gradient buffer (operands,
    /// gradient, stats; the plan's scratch is under 33 KiB).
    pub buffer_bytes: u64,
    /// The same with the gradient written over the input.
    pub in_place_buffer_bytes: u64,
    /// Effective bytes of one call.
    pub bytes: u64,
    /// "pass", "FAIL: ..." (not timed) or "skipped: ...".
    pub status: String,
    /// The fast CPU path (f32, f64 sums, all cores), median ms.
    pub cpu_ms: Option<f64>,
    /// GPU forward + backward, median ms.
    pub gpu_ms: Option<f64>,
    /// cpu_ms / gpu_ms.
    pub speedup: Option<f64>,
    /// Effective GB/s of the GPU call.
    pub gpu_gbps: Option<f64>,
    /// Plain-copy GB/s of the same bytes on the same adapter.
    pub copy_gbps: Option<f64>,
    /// gpu_gbps / copy_gbps, in percent.
    pub percent_of_copy: Option<f64>,
    /// GB/s of a compute kernel copying the same bytes under its best launch (shader
    /// execution's ceiling, [`KernelCopy`]).
    pub kernel_copy_gbps: Option<f64>,
    /// That best copy launch, `workgroups x size`.
    pub kernel_copy_launch: Option<String>,
    /// gpu_gbps / kernel_copy_gbps, in percent.
    pub percent_of_kernel_copy: Option<f64>,
    /// The launch the loss pass took (`pass workgroups x size`), tuned for the adapter
    /// unless pinned.
    pub launch: Option<String>,
    /// PyTorch forward + backward ms for the same loss and shape, when a
    /// `bench/torch_compare.py` JSON was given.
    pub torch_ms: Option<f64>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Adapter name, backend, driver.
    pub adapter: String,
    /// Backend.
    pub backend: String,
    /// Driver and version.
    pub driver: String,
    /// UTC date of the run.
    pub date: String,
    /// Suite name.
    pub suite: String,
    /// Cores the CPU reference used.
    pub cpu_threads: usize,
    /// An empty dispatch plus wait, median ms: the floor of every GPU call.
    pub floor_ms: f64,
    /// One row per loss and size.
    pub rows: Vec<Row>,
}

/// Median of `f`'s duration over repeated calls: `warmup` unmeasured calls, then until
/// `budget` has passed (at least 3, at most 50 calls).
fn time(f: impl FnMut(), warmup: usize, budget: Duration) -> f64 {
    time_at_least(f, warmup, budget, 3)
}

/// As [`time`], with at least `min_samples` calls.
fn time_at_least(mut f: impl FnMut(), warmup: usize, budget: Duration, min_samples: usize) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < min_samples || (start.elapsed() < budget && samples.len() < 50) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn wait(gpu: &Gpu) {
    gpu.device().poll(wgpu::PollType::wait_indefinitely()).expect("device lost");
}

/// An empty compute dispatch plus wait: the floor under every GPU call.
pub struct EmptyDispatch {
    gpu: Gpu,
    pipeline: wgpu::ComputePipeline,
}

impl EmptyDispatch {
    /// Compiles the empty kernel.
    pub fn new(gpu: &Gpu) -> Self {
        let device = gpu.device();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("empty"),
            source: wgpu::ShaderSource::Wgsl("@compute @workgroup_size(1) fn main() {}".into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("empty"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        EmptyDispatch { gpu: gpu.clone(), pipeline }
    }

    /// One dispatch, submitted and waited for.
    pub fn run(&self) {
        let mut encoder = self.gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipeline);
            pass.dispatch_workgroups(1, 1, 1);
        }
        self.gpu.queue().submit([encoder.finish()]);
        wait(&self.gpu);
    }
}

fn floor_ms(gpu: &Gpu) -> f64 {
    let empty = EmptyDispatch::new(gpu);
    time(|| empty.run(), 3, Duration::from_millis(300))
}

/// GB/s of a buffer-to-buffer copy moving `bytes` (half read, half written).
fn copy_gbps(gpu: &Gpu, bytes: u64) -> f64 {
    let half = (bytes / 2).div_ceil(4) * 4;
    let device = gpu.device();
    let make = |usage| {
        device.create_buffer(&wgpu::BufferDescriptor { label: None, size: half, usage, mapped_at_creation: false })
    };
    let (src, dst) = (make(wgpu::BufferUsages::COPY_SRC), make(wgpu::BufferUsages::COPY_DST));
    let ms = time(
        || {
            let mut encoder = device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, half);
            gpu.queue().submit([encoder.finish()]);
            wait(gpu);
        },
        2,
        Duration::from_millis(300),
    );
    (2 * half) as f64 / (ms * 1e6)
}

/// The kernel-copy yardstick, tuned: a compute kernel that copies `bytes / 2` bytes in
/// vec4 words (grid-stride), timed under every workgroup size of [`Launch`] and counts
/// from 1 to 65 536 workgroups in powers of four; the best launch is the ceiling of what
/// the adapter's shader execution moves, as opposed to its transfer engine. Cached per
/// size class (powers of four of bytes), so a suite tunes each class once.
pub struct KernelCopy {
    gpu: Gpu,
    pipelines: Vec<(u32, wgpu::ComputePipeline)>,
    best: std::cell::RefCell<std::collections::HashMap<u32, (f64, Launch)>>,
}

impl KernelCopy {
    /// Compiles the copy kernel for every workgroup size.
    pub fn new(gpu: &Gpu) -> Self {
        let device = gpu.device();
        let pipelines = Launch::WORKGROUP_SIZES
            .iter()
            .map(|&size| {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some("copy kernel"),
                    source: wgpu::ShaderSource::Wgsl(
                        format!(
                            "@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
                             @group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
                             @compute @workgroup_size({size})
                             fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {{
                                 for (var i = id.x; i < arrayLength(&dst); i += n.x * {size}u) {{ dst[i] = src[i]; }}
                             }}"
                        )
                        .into(),
                    ),
                });
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("copy kernel"),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (size, pipeline)
            })
            .collect();
        KernelCopy { gpu: gpu.clone(), pipelines, best: Default::default() }
    }

    /// The best GB/s of copying `bytes / 2` bytes, and the launch that reached it.
    pub fn gbps(&self, bytes: u64) -> (f64, Launch) {
        let class = crate::launch::size_class(bytes);
        if let Some(&found) = self.best.borrow().get(&class) {
            return found;
        }
        let gpu = &self.gpu;
        let device = gpu.device();
        let words = (bytes / 32).max(1);
        let make = || {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: words * 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let (src, dst) = (make(), make());
        let mut best = (0.0, Launch::DEFAULT);
        for (size, pipeline) in &self.pipelines {
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: src.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: dst.as_entire_binding() },
                ],
            });
            let most = words.div_ceil(*size as u64);
            for count in (0..9).map(|i| 1u64 << (2 * i)).filter(|&c| c < most * 4) {
                let groups = count.min(most).min(65_535) as u32;
                let ms = time_at_least(
                    || {
                        let mut encoder = device.create_command_encoder(&Default::default());
                        {
                            let mut pass = encoder.begin_compute_pass(&Default::default());
                            pass.set_pipeline(pipeline);
                            pass.set_bind_group(0, &group, &[]);
                            pass.dispatch_workgroups(groups, 1, 1);
                        }
                        gpu.queue().submit([encoder.finish()]);
                        wait(gpu);
                    },
                    1,
                    Duration::ZERO,
                    5,
                );
                let gbps = (words * 32) as f64 / (ms * 1e6);
                if gbps > best.0 {
                    best = (gbps, Launch::new(*size, groups).expect("a valid launch"));
                }
            }
        }
        self.best.borrow_mut().insert(class, best);
        best
    }
}

/// Effective bytes of one call on `case`'s operands stored as `dtype`.
pub fn effective_bytes(data: &check::CaseData, dtype: DType) -> u64 {
    let typed = (data.input.len() * 2 + data.target.len()) as u64;
    let extras =
        data.labels.len() + data.weight.as_ref().map_or(0, Vec::len) + data.pos_weight.as_ref().map_or(0, Vec::len);
    typed * dtype.size() + extras as u64 * 4
}

/// One loss call (mean) with its buffers and plans made up front: `run` records, submits
/// and waits, and nothing else. Shared by `fused-loss bench` and `cargo bench`. Operands
/// above one buffer are cut into parts of whole batch items, as `Gpu::compute` cuts them:
/// each part a `sum` plan whose upstream buffer holds 1/denominator, all recorded into
/// one encoder.
pub struct GpuCall {
    gpu: Gpu,
    dtype: DType,
    parts: Vec<PartCall>,
}

/// One part's plan and buffers.
struct PartCall {
    plan: crate::Plan,
    input: wgpu::Buffer,
    target: wgpu::Buffer,
    grad: wgpu::Buffer,
    stats: wgpu::Buffer,
    upstream: Option<wgpu::Buffer>,
}

impl GpuCall {
    /// Uploads `data` as `dtype` and plans `loss` (mean) on `dims`.
    pub fn new(gpu: &Gpu, loss: impl Into<Loss>, dims: &[usize], data: &check::CaseData, dtype: DType) -> Result<Self> {
        let loss = loss.into();
        let device = gpu.device();
        let init = |bytes: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let shape = Shape::new(dims);
        let spec = loss.validate()?;
        let (batch, item) = (shape.batch(), shape.len() / shape.batch().max(1));
        let labels_per_item = data.labels.len() / batch.max(1);
        let per_part = crate::split::items_per_part(gpu, &shape);
        let inputs = if data.labels.is_empty() {
            crate::Inputs::new(&data.input, &data.target)
        } else {
            crate::Inputs::labels(&data.input, &data.labels)
        }
        .shape(dims);
        let scale = 1.0 / crate::split::denominator(&spec, Reduction::Mean, &inputs);
        let mut parts = Vec::new();
        for first in (0..batch).step_by(per_part) {
            let items = per_part.min(batch - first);
            let elements = first * item..(first + items) * item;
            let target = if data.labels.is_empty() {
                dtype.encode(&data.target[elements.clone()])
            } else {
                bytemuck::cast_slice(&data.labels[first * labels_per_item..(first + items) * labels_per_item]).to_vec()
            };
            let mut part_dims = dims.to_vec();
            part_dims[0] = items;
            let whole = items == batch;
            let reduction = if whole { Reduction::Mean } else { Reduction::Sum };
            parts.push(PartCall {
                plan: gpu.plan_for(&loss, reduction, &Shape::new(&part_dims), &{
                    let options = crate::Options::new().dtype(dtype);
                    if whole {
                        options
                    } else {
                        options.upstream()
                    }
                })?,
                input: init(&dtype.encode(&data.input[elements.clone()])),
                target: init(&target),
                grad: device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("grad"),
                    size: dtype.bytes(elements.len() as u64),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                stats: init(&[0; LossStats::SIZE as usize]),
                upstream: (!whole).then(|| init(bytemuck::bytes_of(&(scale as f32)))),
            });
        }
        Ok(GpuCall { gpu: gpu.clone(), dtype, parts })
    }

    /// The gradient the last [`GpuCall::run`] wrote, all parts, widened to f32: for
    /// checking that the timed path computes what `Gpu::compute` computes.
    pub fn gradient(&self) -> Result<Vec<f32>> {
        let mut gradient = Vec::new();
        for part in &self.parts {
            let len = part.plan.shape().len();
            let bytes = self.dtype.bytes(len as u64);
            let readback = self.gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("gradient readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self.gpu.device().create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&part.grad, 0, &readback, 0, bytes);
            self.gpu.queue().submit([encoder.finish()]);
            let data = pollster::block_on(crate::read_back(self.gpu.device(), &readback))?;
            gradient.extend(self.dtype.decode(&data, len));
        }
        Ok(gradient)
    }

    /// The launch of the call's loss pass, `pass workgroups x size` (none for passes
    /// that are not tuned).
    pub fn launch(&self) -> Option<String> {
        let plan = &self.parts.first()?.plan;
        plan.launch().map(|(kind, launch)| format!("{} {launch}", kind.name()))
    }

    /// Records the call, submits it and waits for the device.
    pub fn run(&self) {
        let device = self.gpu.device();
        let mut encoder = device.create_command_encoder(&Default::default());
        for part in &self.parts {
            let mut bindings = Bindings::new()
                .input(part.input.slice(..))
                .target(part.target.slice(..))
                .grad(part.grad.slice(..))
                .stats(part.stats.slice(..));
            bindings.upstream = part.upstream.as_ref().map(|u| u.slice(..));
            part.plan.encode(&mut encoder, &bindings).expect("validated when planned");
        }
        self.gpu.queue().submit([encoder.finish()]);
        wait(&self.gpu);
    }
}

fn bench_row(
    gpu: &Gpu,
    yardstick: &KernelCopy,
    loss: Loss,
    dims: &[usize],
    dtype: DType,
    budget: Duration,
    large: bool,
) -> Result<Row> {
    let case = Case { dtype, ..Case::new(loss.clone(), Reduction::Mean, dims, 7) };
    let data = case.data();
    let bytes = effective_bytes(&data, dtype);
    let typed = dtype.bytes(data.input.len() as u64);
    let labels = data.labels.len() as u64 * 4;
    let separate = typed * 2 + if data.labels.is_empty() { typed } else { labels } + LossStats::SIZE;
    let mut row = Row {
        loss: loss.name().into(),
        dims: dims.to_vec(),
        dtype: dtype.name().into(),
        buffer_bytes: separate,
        in_place_buffer_bytes: separate - typed,
        bytes,
        status: String::new(),
        cpu_ms: None,
        gpu_ms: None,
        speedup: None,
        gpu_gbps: None,
        copy_gbps: None,
        percent_of_copy: None,
        kernel_copy_gbps: None,
        kernel_copy_launch: None,
        percent_of_kernel_copy: None,
        launch: None,
        torch_ms: None,
    };
    if check::must_refuse(gpu, &case) {
        row.status = "skipped: f16 needs SHADER_F16, which this adapter lacks".into();
        return Ok(row);
    }
    let inputs = data.inputs(&case);
    // Verify first: a row that disagrees is marked, not timed.
    let want = cpu::compute(&loss, Reduction::Mean, &inputs)?;
    let got = gpu.compute(&loss, Reduction::Mean, &inputs)?;
    let agreement = check::compare(&case, &data, &got, &want);
    if !agreement.passes() {
        row.status = format!("FAIL: {agreement:?}");
        return Ok(row);
    }
    row.status = "pass".into();
    // The verification above warmed the CPU path; at large sizes one more call is
    // enough (the f64 reference takes seconds there).
    let (warmup, min_samples) = if large { (0, 1) } else { (1, 3) };
    row.cpu_ms =
        Some(time_at_least(|| drop(cpu::compute_fast(&loss, Reduction::Mean, &inputs)), warmup, budget, min_samples));

    let call = GpuCall::new(gpu, loss, dims, &data, dtype)?;
    let gpu_ms = time(|| call.run(), 2, budget);
    let gbps = bytes as f64 / (gpu_ms * 1e6);
    let copy = copy_gbps(gpu, bytes);
    row.gpu_ms = Some(gpu_ms);
    row.speedup = row.cpu_ms.map(|c| c / gpu_ms);
    row.gpu_gbps = Some(gbps);
    row.copy_gbps = Some(copy);
    row.percent_of_copy = Some(100.0 * gbps / copy);
    let (kernel_copy, copy_launch) = yardstick.gbps(bytes);
    row.kernel_copy_gbps = Some(kernel_copy);
    row.kernel_copy_launch = Some(copy_launch.to_string());
    row.percent_of_kernel_copy = Some(100.0 * gbps / kernel_copy);
    row.launch = call.launch();
    Ok(row)
}

/// Runs a suite, printing progress on stderr: only losses whose name contains one of
/// `losses` and only element types in `dtypes` (empty: all).
pub fn run(gpu: &Gpu, which: Suite, losses: &[String], dtypes: &[DType]) -> Result<Report> {
    let info = gpu.adapter_info();
    let budget = Duration::from_millis(if which == Suite::Large { 1000 } else { 250 });
    let cases: Vec<_> = suite(which)
        .into_iter()
        .filter(|(l, _, d)| {
            (losses.is_empty() || losses.iter().any(|f| l.name().contains(f.as_str())))
                && (dtypes.is_empty() || dtypes.contains(d))
        })
        .collect();
    let floor = floor_ms(gpu);
    let yardstick = KernelCopy::new(gpu);
    let mut rows = Vec::new();
    // A redrawn bar on a terminal; one line per row in a log.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (i, (loss, dims, dtype)) in cases.iter().enumerate() {
        let bar = "#".repeat(20 * i / cases.len().max(1));
        let line = format!("[{bar:<20}] {}/{} {} {:?} {dtype}", i + 1, cases.len(), loss.name(), dims);
        if terminal {
            eprint!("\r{line:<70}");
        } else {
            eprintln!("{line}");
        }
        rows.push(bench_row(gpu, &yardstick, loss.clone(), dims, *dtype, budget, which == Suite::Large)?);
    }
    eprintln!("{}[{}] {} rows done", if terminal { "\r" } else { "" }, "#".repeat(20), cases.len());
    Ok(Report {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        driver: format!("{} {}", info.driver, info.driver_info),
        date: today(),
        suite: format!("{which:?}").to_lowercase(),
        cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        floor_ms: floor,
        rows,
    })
}

/// The report as a markdown table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "adapter: {} ({}), driver {}; {}; CPU: fast path (f32, f64 sums) on {} threads; empty dispatch + wait: {:.3} ms\n\n",
        report.adapter, report.backend, report.driver, report.date, report.cpu_threads, report.floor_ms
    );
    out += "| loss | shape | type | MB moved | buffers MB (in place) | CPU ms | torch CPU ms | GPU ms | speed-up | GPU GB/s | copy GB/s | % of copy | kernel-copy GB/s (launch) | % of kernel copy | launch | status |\n";
    out += "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n";
    let cell = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in &report.rows {
        let shape = r.dims.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
        out += &format!(
            "| {} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.loss,
            shape,
            r.dtype,
            r.bytes as f64 / 1e6,
            if r.in_place_buffer_bytes < r.buffer_bytes {
                format!("{:.1} ({:.1})", r.buffer_bytes as f64 / 1e6, r.in_place_buffer_bytes as f64 / 1e6)
            } else {
                format!("{:.1}", r.buffer_bytes as f64 / 1e6)
            },
            cell(r.cpu_ms, 3),
            cell(r.torch_ms, 3),
            cell(r.gpu_ms, 3),
            cell(r.speedup, 2),
            cell(r.gpu_gbps, 2),
            cell(r.copy_gbps, 2),
            cell(r.percent_of_copy, 0),
            match (&r.kernel_copy_gbps, &r.kernel_copy_launch) {
                (Some(gbps), Some(launch)) => format!("{gbps:.2} ({launch})"),
                _ => "-".into(),
            },
            cell(r.percent_of_kernel_copy, 0),
            r.launch.as_deref().unwrap_or("-"),
            r.status
        );
    }
    out
}

/// Effective bandwidth against bytes moved, one line per loss, the copy as a dashed
/// black line.
pub fn plot(report: &Report, path: &std::path::Path) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    // One line per loss over its f32 sizes (the half-precision rows are in the table).
    let timed: Vec<&Row> = report.rows.iter().filter(|r| r.gpu_gbps.is_some() && r.dtype == "f32").collect();
    let gbps = || timed.iter().flat_map(|r| [r.gpu_gbps, r.copy_gbps]).flatten();
    let max_gbps = gbps().fold(0.1f64, f64::max) * 1.5;
    let min_gbps = gbps().fold(f64::MAX, f64::min).min(max_gbps) / 1.5;
    let (min_bytes, max_bytes) =
        timed.iter().fold((f64::MAX, 1.0f64), |(lo, hi), r| (lo.min(r.bytes as f64), hi.max(r.bytes as f64)));
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("fused-loss effective bandwidth, {} ({}), {}", report.adapter, report.backend, report.date),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (min_bytes.min(max_bytes) * 0.8..max_bytes * 1.25).log_scale(),
            (min_gbps..max_gbps).log_scale(),
        )?;
    chart.configure_mesh().x_desc("bytes moved per call").y_desc("effective GB/s (log)").draw()?;
    let mut names: Vec<&str> = timed.iter().map(|r| r.loss.as_str()).collect();
    names.dedup();
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> =
            timed.iter().filter(|r| r.loss == *name).map(|r| (r.bytes as f64, r.gpu_gbps.unwrap())).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    let mut copy: Vec<(f64, f64)> = timed.iter().map(|r| (r.bytes as f64, r.copy_gbps.unwrap())).collect();
    copy.sort_by(|a, b| a.0.total_cmp(&b.0));
    copy.dedup_by(|a, b| a.0 == b.0);
    chart
        .draw_series(DashedLineSeries::new(copy, 6, 4, BLACK.stroke_width(2)))?
        .label("plain copy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}

/// Today's UTC date, `YYYY-MM-DD`.
pub(crate) fn today() -> String {
    let days =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Fills `torch_ms` from a `bench/torch_compare.py --json` file (rows matched by loss
/// name and shape; the eager time, or the compiled one when faster). Returns the torch
/// run's description.
pub fn merge_torch(report: &mut Report, json: &str) -> std::result::Result<String, serde_json::Error> {
    let torch: serde_json::Value = serde_json::from_str(json)?;
    let rows = torch["rows"].as_array().cloned().unwrap_or_default();
    for row in &mut report.rows {
        // torch_compare.py times f32.
        let found = rows.iter().find(|t| {
            row.dtype == "f32"
                && t["loss"] == row.loss.as_str()
                && t["dims"]
                    .as_array()
                    .is_some_and(|d| d.iter().map(|v| v.as_u64()).eq(row.dims.iter().map(|&v| Some(v as u64))))
        });
        if let Some(t) = found {
            let times = [t["eager_ms"].as_f64(), t["compile_ms"].as_f64()];
            row.torch_ms = times.into_iter().flatten().reduce(f64::min);
        }
    }
    Ok(format!(
        "PyTorch {} on {} ({} threads, {})",
        torch["torch"].as_str().unwrap_or("?"),
        torch["device"].as_str().unwrap_or("?"),
        torch["threads"],
        torch["date"].as_str().unwrap_or("?")
    ))
}
