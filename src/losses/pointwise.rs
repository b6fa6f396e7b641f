//! GPU side of the elementwise losses: a [`Plan`] fixed at creation (loss, reduction,
//! shape, chunking, uniform buffers, scratch) records into the caller's encoder.
//!
//! Per call: one dispatch per chunk of at most [`Gpu::max_binding_bytes`] bytes per
//! operand, then one `finalize` dispatch. Nothing is submitted or read back.

use wgpu::util::DeviceExt;

use super::{check_problem, unsupported, Loss, Reduction, Shape, Spec, WeightLayout};
use crate::context::Gpu;
use crate::error::{Error, Result};
use crate::shader::Defines;

/// Threads per workgroup; must match `WG_SIZE` in `shaders/lib/reduce.wgsl`.
const WG_SIZE: u32 = 256;
/// Workgroups per chunk at most: enough to fill a large GPU, few enough partials for
/// one `finalize` workgroup. The kernel's grid-stride loop covers the rest.
const MAX_GROUPS: u32 = 1024;
/// Bytes of one element of every operand (f32).
const ELEM_BYTES: u64 = 4;
/// Chunks start on multiples of this many elements, keeping bound offsets aligned.
const CHUNK_ALIGN_ELEMS: u64 = 1024;

/// The 16-byte statistics block that `finalize` writes into the caller's `stats`
/// buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LossStats {
    /// The reduced loss (`none`: the sum of the per-element losses).
    pub value: f32,
    /// Elements whose input or target was NaN or infinite.
    pub nonfinite: u32,
    /// Elements outside the loss's domain (e.g. BCE probabilities outside [0, 1]);
    /// when non-zero the gradient and loss are not meaningful.
    pub invalid: u32,
    /// The denominator of `mean` (N), 1 for `sum`/`none`.
    pub denominator: f32,
}

impl LossStats {
    /// Size in bytes of the block.
    pub const SIZE: u64 = std::mem::size_of::<LossStats>() as u64;
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ChunkParams {
    len: u32,
    chunk_start: u32,
    partial_base: u32,
    last_dim: u32,
    grad_scale: f32,
    p0: f32,
    p1: f32,
    _pad: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FinalizeParams {
    count: u32,
    scale: f32,
    denominator: f32,
    _pad: u32,
}

struct Chunk {
    start: u64,
    len: u64,
    groups: u32,
    params: wgpu::Buffer,
}

/// The caller's buffers for one recorded call. Slices may start at any offset that is
/// a multiple of the adapter's `min_storage_buffer_offset_alignment` (256 at most) and
/// may be longer than needed; every buffer needs `STORAGE` usage.
#[derive(Clone, Debug)]
pub struct Bindings<'a> {
    /// The input, N f32.
    pub input: wgpu::BufferSlice<'a>,
    /// The target, N f32.
    pub target: wgpu::BufferSlice<'a>,
    /// Receives d(loss)/d(input), N f32. May not alias `input` (yet).
    pub grad: wgpu::BufferSlice<'a>,
    /// Receives a [`LossStats`] (16 bytes).
    pub stats: wgpu::BufferSlice<'a>,
    /// Optional weight: exactly `last_dim` f32 (broadcast), else N f32 (per element).
    pub weight: Option<wgpu::BufferSlice<'a>>,
    /// Optional `pos_weight`, `last_dim` f32.
    pub pos_weight: Option<wgpu::BufferSlice<'a>>,
    /// Optional upstream gradient: 1 f32 for `mean`/`sum`, N f32 for `none`.
    pub upstream: Option<wgpu::BufferSlice<'a>>,
    /// Per-element losses, N f32; required for reduction `none`, refused otherwise.
    pub per_element: Option<wgpu::BufferSlice<'a>>,
}

impl<'a> Bindings<'a> {
    /// The four operands every call has.
    pub fn new(
        input: wgpu::BufferSlice<'a>,
        target: wgpu::BufferSlice<'a>,
        grad: wgpu::BufferSlice<'a>,
        stats: wgpu::BufferSlice<'a>,
    ) -> Self {
        Bindings {
            input,
            target,
            grad,
            stats,
            weight: None,
            pos_weight: None,
            upstream: None,
            per_element: None,
        }
    }

    /// Sets `weight`.
    pub fn weight(mut self, slice: wgpu::BufferSlice<'a>) -> Self {
        self.weight = Some(slice);
        self
    }

    /// Sets `pos_weight`.
    pub fn pos_weight(mut self, slice: wgpu::BufferSlice<'a>) -> Self {
        self.pos_weight = Some(slice);
        self
    }

    /// Sets the upstream gradient.
    pub fn upstream(mut self, slice: wgpu::BufferSlice<'a>) -> Self {
        self.upstream = Some(slice);
        self
    }

    /// Sets the per-element loss output (reduction `none`).
    pub fn per_element(mut self, slice: wgpu::BufferSlice<'a>) -> Self {
        self.per_element = Some(slice);
        self
    }
}

/// A validated, compiled loss call of a fixed shape, recorded as often as needed.
///
/// Holds its uniform buffers (written once, at creation) and its partials scratch; two
/// recordings of one plan in one encoder are fine because the dispatches run in order.
pub struct Plan {
    gpu: Gpu,
    spec: Spec,
    reduction: Reduction,
    shape: Shape,
    chunks: Vec<Chunk>,
    partials: wgpu::Buffer,
    finalize_params: wgpu::Buffer,
}

impl Gpu {
    /// Validates `loss` for `reduction` on `shape` and prepares everything that does
    /// not depend on the caller's buffers. Compiles nothing until the first `encode`
    /// of a variant; compiled pipelines are cached on the `Gpu`.
    pub fn plan(&self, loss: &Loss, reduction: Reduction, shape: &Shape) -> Result<Plan> {
        let spec = check_problem(loss, reduction, shape)?;
        let len = shape.len() as u64;
        let chunk_elems =
            (self.max_binding_bytes() / ELEM_BYTES) / CHUNK_ALIGN_ELEMS * CHUNK_ALIGN_ELEMS;
        let grad_scale = if reduction == Reduction::Mean {
            1.0 / len as f64
        } else {
            1.0
        };
        let device = self.device();
        let mut chunks = Vec::new();
        let mut partial_base = 0u32;
        let mut start = 0u64;
        while start < len {
            let chunk_len = chunk_elems.min(len - start);
            let groups = chunk_len.div_ceil(WG_SIZE as u64).min(MAX_GROUPS as u64) as u32;
            let params = ChunkParams {
                len: chunk_len as u32,
                chunk_start: start as u32,
                partial_base,
                last_dim: shape.last_dim().max(1) as u32,
                grad_scale: grad_scale as f32,
                p0: spec.params[0],
                p1: spec.params[1],
                _pad: 0.0,
            };
            let params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("fused-loss chunk params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            chunks.push(Chunk {
                start,
                len: chunk_len,
                groups,
                params,
            });
            partial_base += groups;
            start += chunk_len;
        }
        let partials = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fused-loss partials"),
            size: (partial_base.max(1) as u64) * 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let denominator = if reduction == Reduction::Mean {
            len as f32
        } else {
            1.0
        };
        let finalize_params = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("fused-loss finalize params"),
            contents: bytemuck::bytes_of(&FinalizeParams {
                count: partial_base,
                scale: grad_scale as f32,
                denominator,
                _pad: 0,
            }),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        Ok(Plan {
            gpu: self.clone(),
            spec,
            reduction,
            shape: shape.clone(),
            chunks,
            partials,
            finalize_params,
        })
    }
}

/// Every variant of `spec`'s shader that [`Plan::encode`] can ask for, for validation
/// ahead of time (the `shaders` test assembles and validates each with naga).
pub fn shader_variants(spec: &Spec) -> Vec<Defines> {
    let weights: &[Option<&str>] = if spec.takes_weight {
        &[None, Some("HAS_WEIGHT"), Some("HAS_WEIGHT_BROADCAST")]
    } else {
        &[None]
    };
    let pos_weights: &[bool] = if spec.takes_pos_weight {
        &[false, true]
    } else {
        &[false]
    };
    let mut variants = Vec::new();
    for reduction in Reduction::ALL {
        let none = reduction == Reduction::None;
        for upstream in [
            None,
            Some(if none {
                "UPSTREAM_ELEMENTWISE"
            } else {
                "UPSTREAM_SCALAR"
            }),
        ] {
            for weight in weights {
                for &pos_weight in pos_weights {
                    let flags = [
                        none.then_some("REDUCTION_NONE"),
                        upstream,
                        *weight,
                        pos_weight.then_some("HAS_POS_WEIGHT"),
                    ];
                    variants.push(
                        flags
                            .into_iter()
                            .flatten()
                            .map(|f| (f.to_string(), String::new()))
                            .collect(),
                    );
                }
            }
        }
    }
    variants
}

/// Checks one operand's buffer: usage, alignment, size. Returns nothing; errors name
/// the operand.
fn check_slice(
    gpu: &Gpu,
    argument: &'static str,
    slice: &wgpu::BufferSlice,
    required: u64,
) -> Result<()> {
    let has = slice.buffer().usage();
    if !has.contains(wgpu::BufferUsages::STORAGE) {
        return Err(Error::BufferUsage {
            argument,
            missing: wgpu::BufferUsages::STORAGE,
            has,
        });
    }
    let alignment = gpu.limits().min_storage_buffer_offset_alignment;
    if slice.offset() % alignment as u64 != 0 {
        return Err(Error::MisalignedOffset {
            argument,
            offset: slice.offset(),
            alignment,
        });
    }
    if slice.size() < required {
        return Err(Error::BufferTooSmall {
            argument,
            required,
            actual: slice.size(),
        });
    }
    Ok(())
}

/// A sub-range of a caller's slice, in elements.
fn sub<'a>(slice: &wgpu::BufferSlice<'a>, start: u64, len: u64) -> wgpu::BufferBinding<'a> {
    wgpu::BufferBinding {
        buffer: slice.buffer(),
        offset: slice.offset() + start * ELEM_BYTES,
        size: std::num::NonZeroU64::new(len * ELEM_BYTES),
    }
}

impl Plan {
    /// The loss's spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The shape the plan was made for.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Number of dispatches one `encode` records (chunks + finalize).
    pub fn dispatch_count(&self) -> usize {
        self.chunks.len() + 1
    }

    /// Records the loss into `encoder`: reads the caller's operands, writes the
    /// gradient into `bindings.grad`, the [`LossStats`] into `bindings.stats` and, for
    /// `none`, the per-element losses. No submit, no readback, no CPU synchronisation.
    ///
    /// All checks happen before anything is recorded: on error the encoder is as it
    /// was.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, bindings: &Bindings) -> Result<()> {
        let gpu = &self.gpu;
        let spec = &self.spec;
        let len = self.shape.len() as u64;
        let bytes = len * ELEM_BYTES;
        let last_dim = self.shape.last_dim() as u64;
        check_slice(gpu, "input", &bindings.input, bytes)?;
        check_slice(gpu, "target", &bindings.target, bytes)?;
        check_slice(gpu, "grad", &bindings.grad, bytes)?;
        check_slice(gpu, "stats", &bindings.stats, LossStats::SIZE)?;
        let mut defines = Defines::new();
        let weight_layout = match &bindings.weight {
            None => None,
            Some(_) if !spec.takes_weight => return Err(unsupported(spec, "weight")),
            Some(slice) => {
                // Exactly `last_dim` elements means broadcast; anything else must cover N.
                let broadcast = slice.size() == last_dim * ELEM_BYTES && last_dim != len;
                check_slice(
                    gpu,
                    "weight",
                    slice,
                    if broadcast {
                        last_dim * ELEM_BYTES
                    } else {
                        bytes
                    },
                )?;
                let flag = if broadcast {
                    "HAS_WEIGHT_BROADCAST"
                } else {
                    "HAS_WEIGHT"
                };
                defines.insert(flag.into(), String::new());
                Some(if broadcast {
                    WeightLayout::LastDim
                } else {
                    WeightLayout::PerElement
                })
            }
        };
        if let Some(slice) = &bindings.pos_weight {
            if !spec.takes_pos_weight {
                return Err(unsupported(spec, "pos_weight"));
            }
            check_slice(gpu, "pos_weight", slice, last_dim * ELEM_BYTES)?;
            defines.insert("HAS_POS_WEIGHT".into(), String::new());
        }
        let none = self.reduction == Reduction::None;
        if let Some(slice) = &bindings.upstream {
            check_slice(
                gpu,
                "upstream",
                slice,
                if none { bytes } else { ELEM_BYTES },
            )?;
            let flag = if none {
                "UPSTREAM_ELEMENTWISE"
            } else {
                "UPSTREAM_SCALAR"
            };
            defines.insert(flag.into(), String::new());
        }
        match (&bindings.per_element, none) {
            (Some(slice), true) => {
                check_slice(gpu, "per_element", slice, bytes)?;
                defines.insert("REDUCTION_NONE".into(), String::new());
            }
            (None, true) => {
                return Err(Error::MissingArgument {
                    argument: "per_element",
                    why: "reduction `none` writes one loss per element",
                })
            }
            (Some(_), false) => {
                return Err(Error::UnsupportedArgument {
                    loss: spec.name,
                    argument: "per_element (reduction is not `none`)",
                })
            }
            (None, false) => {}
        }
        let broadcasts =
            bindings.pos_weight.is_some() || weight_layout == Some(WeightLayout::LastDim);
        if broadcasts && last_dim * ELEM_BYTES > gpu.max_binding_bytes() {
            return Err(Error::InvalidShape {
                shape: self.shape.dims().to_vec(),
                why: format!("a broadcast operand of {last_dim} elements (the last dimension) exceeds the binding limit"),
            });
        }

        let pipeline = gpu.pipeline(spec.shader, "main", &defines)?;
        let finalize = gpu.pipeline("finalize", "finalize", &Defines::new())?;
        let device = gpu.device();
        let layout = pipeline.get_bind_group_layout(0);

        let groups: Vec<wgpu::BindGroup> = self
            .chunks
            .iter()
            .map(|chunk| {
                let (s, n) = (chunk.start, chunk.len);
                let mut entries = vec![
                    (0, chunk.params.as_entire_buffer_binding()),
                    (1, sub(&bindings.input, s, n)),
                    (2, sub(&bindings.target, s, n)),
                    (3, sub(&bindings.grad, s, n)),
                    (4, self.partials.as_entire_buffer_binding()),
                ];
                if let Some(slice) = &bindings.weight {
                    entries.push(match weight_layout {
                        Some(WeightLayout::PerElement) => (5, sub(slice, s, n)),
                        _ => (5, sub(slice, 0, last_dim)),
                    });
                }
                if let Some(slice) = &bindings.upstream {
                    entries.push(if none {
                        (6, sub(slice, s, n))
                    } else {
                        (6, sub(slice, 0, 1))
                    });
                }
                if let Some(slice) = &bindings.per_element {
                    entries.push((7, sub(slice, s, n)));
                }
                if let Some(slice) = &bindings.pos_weight {
                    entries.push((8, sub(slice, 0, last_dim)));
                }
                let entries: Vec<wgpu::BindGroupEntry> = entries
                    .into_iter()
                    .map(|(binding, buffer)| wgpu::BindGroupEntry {
                        binding,
                        resource: wgpu::BindingResource::Buffer(buffer),
                    })
                    .collect();
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(spec.name),
                    layout: &layout,
                    entries: &entries,
                })
            })
            .collect();
        let finalize_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("fused-loss finalize"),
            layout: &finalize.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: self.finalize_params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: self.partials.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: bindings.stats.buffer(),
                        offset: bindings.stats.offset(),
                        size: std::num::NonZeroU64::new(LossStats::SIZE),
                    }),
                },
            ],
        });

        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(spec.name),
            timestamp_writes: None,
        });
        pass.set_pipeline(&pipeline);
        for (chunk, group) in self.chunks.iter().zip(&groups) {
            pass.set_bind_group(0, group, &[]);
            pass.dispatch_workgroups(chunk.groups, 1, 1);
        }
        pass.set_pipeline(&finalize);
        pass.set_bind_group(0, &finalize_group, &[]);
        pass.dispatch_workgroups(1, 1, 1);
        Ok(())
    }
}
