//! # fused-loss
//!
//! Loss functions as WGSL compute kernels run through wgpu. Each loss produces its
//! value **and** its gradient in one fused pass over memory, deterministically, and has
//! an f64 CPU twin ([`cpu`]) that the GPU is tested against.
//!
//! Two ways in:
//! - **Embed** in a GPU training step: [`Gpu::plan`] once, then [`Plan::encode`] records
//!   into your `CommandEncoder`, reading your buffers and writing the gradient into
//!   your buffer and a [`LossStats`] into a 16-byte buffer. No submit, no readback.
//! - **Compute once**: [`Gpu::compute`] takes host slices and returns an [`Output`].
//!
//! Every loss is listed once in [`registry`]; see [`Loss`] for formulas and their
//! PyTorch equivalents.
//!
//! Semantics: reductions as PyTorch (`mean` divides by the number of elements, even
//! with `weight`); the gradient of `none` is that of the sum of the per-element losses,
//! times the upstream gradient when one is given; an upstream gradient for `mean`/`sum`
//! is one f32 read on the GPU, so gradients chain without a CPU round trip.
//! Operands are f32. Accumulation is f32 in a fixed-order tree (per-workgroup
//! partials, then one `finalize` workgroup): same inputs on the same adapter give the
//! same bits.

pub use wgpu;

pub mod check;
mod context;
pub mod cpu;
mod error;
pub mod losses;
pub mod shader;

pub use context::{Gpu, WANTED_FEATURES};
pub use error::{Error, Result};
pub use losses::pointwise::{shader_variants, Bindings, LossStats, Plan};
pub use losses::{registry, Domain, Inputs, Loss, Reduction, Shape, Spec};

use wgpu::util::DeviceExt;

/// The result of [`Gpu::compute`].
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The reduced loss (for `none`, the sum of the per-element losses).
    pub value: f32,
    /// d(loss)/d(input), one per element.
    pub grad: Vec<f32>,
    /// Per-element losses, for reduction `none`.
    pub per_element: Option<Vec<f32>>,
    /// Elements whose input or target was NaN or infinite (not an error: the loss may
    /// still be finite, e.g. BCE-with-logits at ±inf).
    pub nonfinite: u32,
}

impl Gpu {
    /// Computes `loss` on host data: uploads, records, submits, reads back (blocking).
    pub fn compute(&self, loss: &Loss, reduction: Reduction, inputs: &Inputs) -> Result<Output> {
        pollster::block_on(self.compute_async(loss, reduction, inputs))
    }

    /// Async form of [`Gpu::compute`]. Polls the device itself.
    pub async fn compute_async(
        &self,
        loss: &Loss,
        reduction: Reduction,
        inputs: &Inputs<'_>,
    ) -> Result<Output> {
        let spec = losses::check_inputs(loss, reduction, inputs)?;
        let shape = inputs.resolved_shape();
        let len = shape.len();
        if len == 0 {
            let per_element = (reduction == Reduction::None).then(Vec::new);
            return Ok(Output {
                value: 0.0,
                grad: Vec::new(),
                per_element,
                nonfinite: 0,
            });
        }
        let plan = self.plan(loss, reduction, &shape)?;
        let device = self.device();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let upload = |label: &str, data: &[f32]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(data),
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
        let bytes = (len * 4) as u64;
        let input = upload("input", inputs.input);
        let target = upload("target", inputs.target);
        let weight = inputs.weight.map(|w| upload("weight", w));
        let pos_weight = inputs.pos_weight.map(|w| upload("pos_weight", w));
        let upstream = inputs.upstream.map(|w| upload("upstream", w));
        let grad = output("grad", bytes);
        let stats = output("stats", LossStats::SIZE);
        let per_element = (reduction == Reduction::None).then(|| output("per_element", bytes));

        let mut bindings = Bindings::new(
            input.slice(..),
            target.slice(..),
            grad.slice(..),
            stats.slice(..),
        );
        bindings.weight = weight.as_ref().map(|b| b.slice(..));
        bindings.pos_weight = pos_weight.as_ref().map(|b| b.slice(..));
        bindings.upstream = upstream.as_ref().map(|b| b.slice(..));
        bindings.per_element = per_element.as_ref().map(|b| b.slice(..));

        let mut encoder = device.create_command_encoder(&Default::default());
        plan.encode(&mut encoder, &bindings)?;
        // One readback buffer: stats, then grad, then per-element losses.
        let readback_len = LossStats::SIZE + bytes * if per_element.is_some() { 2 } else { 1 };
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: readback_len,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        encoder.copy_buffer_to_buffer(&stats, 0, &readback, 0, LossStats::SIZE);
        encoder.copy_buffer_to_buffer(&grad, 0, &readback, LossStats::SIZE, bytes);
        if let Some(losses) = &per_element {
            encoder.copy_buffer_to_buffer(losses, 0, &readback, LossStats::SIZE + bytes, bytes);
        }
        self.queue().submit([encoder.finish()]);
        if let Some(error) = scope.pop().await {
            return Err(Error::Wgpu(error.to_string()));
        }
        let data = read_back(device, &readback).await?;
        let stats: LossStats = bytemuck::pod_read_unaligned(&data[..LossStats::SIZE as usize]);
        if stats.invalid > 0 {
            let (argument, domain) = spec.invalid_means.unwrap_or(("input", "the loss's domain"));
            return Err(Error::OutOfDomain {
                argument,
                count: stats.invalid as u64,
                domain,
            });
        }
        let floats = |range: std::ops::Range<u64>| -> Vec<f32> {
            bytemuck::pod_collect_to_vec(&data[range.start as usize..range.end as usize])
        };
        let grad = floats(LossStats::SIZE..LossStats::SIZE + bytes);
        let per_element = per_element.map(|_| floats(LossStats::SIZE + bytes..readback_len));
        Ok(Output {
            value: stats.value,
            grad,
            per_element,
            nonfinite: stats.nonfinite,
        })
    }
}

/// Maps `buffer` (MAP_READ) and copies its bytes out.
pub(crate) async fn read_back(device: &wgpu::Device, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
    device.poll(wgpu::PollType::wait_indefinitely())?;
    match receiver.receive().await {
        Some(result) => result?,
        None => return Err(Error::Wgpu("map callback dropped".into())),
    }
    let data = buffer
        .slice(..)
        .get_mapped_range()
        .map_err(|e| Error::Wgpu(e.to_string()))?
        .to_vec();
    buffer.unmap();
    Ok(data)
}
