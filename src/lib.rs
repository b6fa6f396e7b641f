//! # fused-loss
//!
//! Loss functions as WGSL compute kernels run through wgpu. Each loss produces its
//! value **and** its gradient in one fused pass over memory, deterministically, and has
//! an f64 CPU twin ([`cpu`]) that the GPU is tested against.
//!
//! Two ways in:
//! - **Embed** in a GPU training step: [`Gpu::plan`] once, then [`Plan::encode`] records
//!   into your `CommandEncoder`, reading your buffers and writing the gradient into
//!   your buffer and a [`LossStats`] into a 32-byte buffer. No submit, no readback.
//! - **Compute once**: [`Gpu::compute`] takes host slices and returns an [`Output`].
//!
//! Every loss is listed once in [`registry`]; each constructor (`Loss::huber()`, ...)
//! returns the loss's parameter struct ([`losses::Huber`], ...), whose doc gives the
//! formula, the shapes and the PyTorch equivalent.
//!
//! Semantics: reductions as PyTorch (`mean` divides by the number of elements, even
//! with `weight`); the gradient of `none` is that of the sum of the per-element losses,
//! times the upstream gradient when one is given; an upstream gradient for `mean`/`sum`
//! is one f32 read on the GPU, so gradients chain without a CPU round trip.
//! Operands are f32. Accumulation is f32 in a fixed-order tree (per-workgroup
//! partials, then one `finalize` workgroup): same inputs on the same adapter give the
//! same bits.

pub use wgpu;

// The README's code is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "cli")]
pub mod bench;
#[cfg(all(feature = "cli", feature = "burn"))]
pub mod bench_burn;
#[cfg(feature = "burn")]
pub mod burn;
#[cfg(feature = "cli")]
pub mod check;
pub mod class_weights;
mod context;
pub mod cpu;
mod dtype;
mod error;
pub mod launch;
pub mod losses;
pub(crate) mod shader;
mod split;

pub use class_weights::{ClassWeights, WeightScheme};
pub use context::{Gpu, WANTED_FEATURES};
pub use dtype::DType;
pub use error::{Error, Result};
pub use half;
pub use launch::{Launch, PassKind};
pub use losses::softmax::{multilabel_margin_list_limit, RowKernel, MULTILABEL_MARGIN_MAX_CLASSES};
pub use losses::{
    registry, Bindings, Domain, Inputs, Loss, LossStats, Options, Plan, Reduction, Shape, Spec, Target, WeightLayout,
};

use wgpu::util::DeviceExt;

/// The result of [`Gpu::compute`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Output {
    /// The reduced loss (for `none`, the sum of the per-element losses).
    pub value: f32,
    /// d(loss)/d(input), one per element: in the input's element type, widened to f32
    /// (exactly).
    pub grad: Vec<f32>,
    /// Per-element losses, for reduction `none`.
    pub per_element: Option<Vec<f32>>,
    /// Elements whose input or target was NaN or infinite (not an error: the loss may
    /// still be finite, e.g. BCE-with-logits at ±inf).
    pub nonfinite: u32,
    /// Row-wise losses: each row's log-sum-exp, when asked for ([`Inputs::with_lse`]).
    pub lse: Option<Vec<f32>>,
    /// Row-wise losses: rows whose argmax is the label, when asked for
    /// ([`Inputs::with_accuracy`]).
    pub correct: Option<u32>,
    /// Elementwise losses: `Σ_n loss[n, c]` per class of the last dimension, when asked
    /// for ([`Inputs::with_per_class`]).
    pub per_class: Option<Vec<f32>>,
    /// d(loss)/d(target), one per element, in the input's element type widened to f32,
    /// when asked for ([`Inputs::with_target_grad`]).
    pub target_grad: Option<Vec<f32>>,
}

impl Output {
    /// A result with `value` and `grad` and no optional output (for callers that join
    /// results from other paths, such as the burn tests, and compare them with
    /// [`check::compare`](crate::check)).
    pub fn new(value: f32, grad: Vec<f32>) -> Self {
        Output {
            value,
            grad,
            per_element: None,
            nonfinite: 0,
            lse: None,
            correct: None,
            per_class: None,
            target_grad: None,
        }
    }
}

impl Gpu {
    /// Computes `loss` on host data: uploads, records, submits, reads back (blocking).
    pub fn compute(&self, loss: impl Into<Loss>, reduction: Reduction, inputs: &Inputs) -> Result<Output> {
        pollster::block_on(self.compute_async(loss, reduction, inputs))
    }

    /// Async form of [`Gpu::compute`]. Polls the device itself.
    ///
    /// Inputs larger than one buffer ([`Gpu::max_buffer_bytes`], the device's
    /// `max_buffer_size`) are computed in parts of whole batch items, one after the
    /// other, each with its own buffers: a part is a `sum` call whose upstream gradient
    /// carries the whole call's mean scale, and the parts' results are joined on the host.
    pub async fn compute_async(
        &self,
        loss: impl Into<Loss>,
        reduction: Reduction,
        inputs: &Inputs<'_>,
    ) -> Result<Output> {
        let loss = loss.into();
        let loss = &loss;
        let spec = losses::check_inputs(loss, reduction, inputs)?;
        let shape = inputs.resolved_shape();
        let items_per_part = split::items_per_part(self, &shape);
        if shape.batch() > items_per_part && !shape.is_empty() {
            return split::compute_in_parts(self, loss, &spec, reduction, inputs, items_per_part).await;
        }
        self.compute_one_buffer(loss, &spec, reduction, inputs).await
    }

    /// One call whose operands each fit one buffer.
    pub(crate) async fn compute_one_buffer(
        &self,
        loss: &Loss,
        spec: &Spec,
        reduction: Reduction,
        inputs: &Inputs<'_>,
    ) -> Result<Output> {
        let shape = inputs.resolved_shape();
        let len = shape.len();
        // Row-wise losses have one loss (and log-sum-exp) per row, others per element.
        let outputs = if spec.is_row_wise() { shape.rows() } else { len };
        if len == 0 {
            let per_element = (reduction == Reduction::None).then(Vec::new);
            let lse = inputs.want_lse.then(Vec::new);
            let correct = inputs.want_accuracy.then_some(0);
            let per_class = inputs.want_per_class.then(|| vec![0.0; shape.last_dim()]);
            let target_grad = inputs.want_target_grad.then(Vec::new);
            return Ok(Output {
                value: 0.0,
                grad: Vec::new(),
                per_element,
                nonfinite: 0,
                lse,
                correct,
                per_class,
                target_grad,
            });
        }
        let dtype = inputs.dtype;
        let mut options = Options::new().dtype(dtype);
        options.weight = match inputs.weight {
            Some(w)
                if spec.is_row_wise()
                    || losses::weight_layout("weight", w.len(), &shape)? == WeightLayout::PerClass =>
            {
                Some(WeightLayout::PerClass)
            }
            Some(_) => Some(WeightLayout::PerElement),
            None => None,
        };
        options.pos_weight = inputs.pos_weight.is_some();
        options.upstream = inputs.upstream.is_some();
        options.per_class = inputs.want_per_class;
        options.lse = inputs.want_lse;
        options.accuracy = inputs.want_accuracy;
        options.target_grad = inputs.want_target_grad;
        options.in_place = inputs.in_place;
        let plan = self.plan_for(loss, reduction, &shape, &options)?;
        let device = self.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let upload = |label: &str, data: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: data,
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let output = |label: &str, bytes: u64| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let floats = |label: &str, data: &[f32]| upload(label, bytemuck::cast_slice(data));
        let bytes = dtype.bytes(len as u64);
        let out_bytes = (outputs * 4) as u64;
        let input = if inputs.in_place {
            // The gradient comes back from here.
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("input and grad"),
                contents: &dtype.encode(inputs.input),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            })
        } else {
            upload("input", &dtype.encode(inputs.input))
        };
        let target = match inputs.target {
            Target::Values(t) => upload("target", &dtype.encode(t)),
            Target::Labels(l) => upload("labels", bytemuck::cast_slice(l)),
        };
        let weight = inputs.weight.map(|w| floats("weight", w));
        let pos_weight = inputs.pos_weight.map(|w| floats("pos_weight", w));
        let upstream = inputs.upstream.map(|w| floats("upstream", w));
        let grad = (!inputs.in_place).then(|| output("grad", bytes));
        let stats = output("stats", LossStats::SIZE);
        let per_element =
            (reduction == Reduction::None || inputs.want_per_class).then(|| output("per_element", out_bytes));
        let lse = inputs.want_lse.then(|| output("lse", out_bytes));
        let per_class = inputs.want_per_class.then(|| output("per_class", shape.last_dim() as u64 * 4));
        let target_grad = inputs.want_target_grad.then(|| output("target_grad", bytes));

        let mut bindings = match &grad {
            Some(grad) => Bindings::new()
                .input(input.slice(..))
                .target(target.slice(..))
                .grad(grad.slice(..))
                .stats(stats.slice(..)),
            None => Bindings::new().input(input.slice(..)).target(target.slice(..)).stats(stats.slice(..)).in_place(),
        };
        bindings.weight = weight.as_ref().map(|b| b.slice(..));
        bindings.pos_weight = pos_weight.as_ref().map(|b| b.slice(..));
        bindings.upstream = upstream.as_ref().map(|b| b.slice(..));
        bindings.per_element = per_element.as_ref().map(|b| b.slice(..));
        bindings.lse = lse.as_ref().map(|b| b.slice(..));
        bindings.accuracy = inputs.want_accuracy;
        bindings.per_class = per_class.as_ref().map(|b| b.slice(..));
        bindings.target_grad = target_grad.as_ref().map(|b| b.slice(..));

        let mut encoder = device.create_command_encoder(&Default::default());
        plan.encode(&mut encoder, &bindings)?;
        // One readback buffer: stats, grad, then the optional per-row outputs.
        let mut layout = vec![(&stats, LossStats::SIZE), (grad.as_ref().unwrap_or(&input), bytes)];
        layout.extend(per_element.iter().map(|b| (b, out_bytes)));
        layout.extend(lse.iter().map(|b| (b, out_bytes)));
        layout.extend(per_class.iter().map(|b| (b, shape.last_dim() as u64 * 4)));
        layout.extend(target_grad.iter().map(|b| (b, bytes)));
        let readback_len: u64 = layout.iter().map(|(_, n)| n).sum();
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: readback_len,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut offset = 0;
        let mut ranges = Vec::new();
        for (buffer, size) in layout {
            encoder.copy_buffer_to_buffer(buffer, 0, &readback, offset, size);
            ranges.push(offset as usize..(offset + size) as usize);
            offset += size;
        }
        self.queue().submit([encoder.finish()]);
        if let Some(error) = scope.pop().await {
            return Err(Error::Wgpu(error.to_string()));
        }
        let data = read_back(device, &readback).await?;
        let stats: LossStats = bytemuck::pod_read_unaligned(&data[ranges[0].clone()]);
        if stats.invalid > 0 {
            let (argument, domain) = spec.invalid_means.unwrap_or(("input", "the loss's domain"));
            return Err(Error::OutOfDomain { argument, count: stats.invalid as u64, domain });
        }
        let grad = dtype.decode(&data[ranges[1].clone()], len);
        // The target gradient is last, in the element type.
        let (floats, typed) = ranges[2..].split_at(ranges.len() - 2 - target_grad.is_some() as usize);
        let target_grad = typed.first().map(|r| dtype.decode(&data[r.clone()], len));
        let mut rest = floats.iter().map(|r| bytemuck::pod_collect_to_vec::<u8, f32>(&data[r.clone()]));
        // The per-element losses are scratch of the breakdown unless reduction is `none`.
        let per_element = per_element.and_then(|_| rest.next()).filter(|_| reduction == Reduction::None);
        let lse = lse.and_then(|_| rest.next());
        let per_class = per_class.and_then(|_| rest.next());
        let correct = inputs.want_accuracy.then_some(stats.correct);
        Ok(Output {
            value: stats.value,
            grad,
            per_element,
            nonfinite: stats.nonfinite,
            lse,
            correct,
            per_class,
            target_grad,
        })
    }
}

impl Gpu {
    /// Reads the [`LossStats`] a recorded call wrote into `stats`, after everything
    /// submitted so far: copies its 32 bytes into a staging buffer, submits that copy
    /// and waits for it (blocking; see [`Gpu::read_stats_async`]). The buffer needs
    /// `COPY_SRC` usage besides `STORAGE`. Meant for reading the loss now and then, as a
    /// training loop logs it; the recorded calls themselves never read anything back.
    pub fn read_stats(&self, stats: wgpu::BufferSlice) -> Result<LossStats> {
        pollster::block_on(self.read_stats_async(stats))
    }

    /// Async form of [`Gpu::read_stats`]. Polls the device itself.
    pub async fn read_stats_async(&self, stats: wgpu::BufferSlice<'_>) -> Result<LossStats> {
        let has = stats.buffer().usage();
        if !has.contains(wgpu::BufferUsages::COPY_SRC) {
            return Err(Error::BufferUsage { argument: "stats", missing: wgpu::BufferUsages::COPY_SRC, has });
        }
        // The storage alignment `encode` already demands (a multiple of the copy's 4).
        let alignment = self.limits().min_storage_buffer_offset_alignment;
        if stats.offset() % alignment as u64 != 0 {
            return Err(Error::MisalignedOffset { argument: "stats", offset: stats.offset(), alignment });
        }
        if stats.size() < LossStats::SIZE {
            return Err(Error::BufferTooSmall { argument: "stats", required: LossStats::SIZE, actual: stats.size() });
        }
        let device = self.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fused-loss stats readback"),
            size: LossStats::SIZE,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(stats.buffer(), stats.offset(), &staging, 0, LossStats::SIZE);
        self.queue().submit([encoder.finish()]);
        if let Some(error) = scope.pop().await {
            return Err(Error::Wgpu(error.to_string()));
        }
        let data = read_back(device, &staging).await?;
        Ok(bytemuck::pod_read_unaligned(&data))
    }
}

/// Maps `buffer` (MAP_READ) and copies its bytes out.
pub(crate) async fn read_back(device: &wgpu::Device, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    buffer.slice(..).map_async(wgpu::MapMode::Read, move |result| {
        let _ = sender.send(result);
    });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    match receiver.receive().await {
        Some(result) => result?,
        None => return Err(Error::Wgpu("map callback dropped".into())),
    }
    let data = buffer.slice(..).get_mapped_range().map_err(|e| Error::Wgpu(e.to_string()))?.to_vec();
    buffer.unmap();
    Ok(data)
}
