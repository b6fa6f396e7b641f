//! GPU side of the softmax family (`shaders/classification/cross_entropy.wgsl`):
//! cross-entropy with labels or probabilities, and NLL.
//!
//! Per call: a label pre-pass (one workgroup over the N·S labels, never the logits)
//! that finds the mean's denominator and counts labels out of range; one dispatch per
//! chunk of whole batch items; `finalize`. Soft targets need no pre-pass.
//!
//! Rows of at most [`ROW_PER_THREAD_MAX_CLASSES`] classes are walked by one invocation
//! each; longer rows by a workgroup each, with an online softmax (running max and sum)
//! over the row and a second sweep, from cache, that writes the gradient once.

use super::plan::{
    bind_group, check_per_element, check_slice, partials_buffer, record, stats_binding, sub, sub_typed, uniform,
    Bindings, FinalizeParams, Plan, ELEM_BYTES, MAX_GROUPS, WG_SIZE,
};
use super::{unsupported, Reduction, Shape, Spec};
use crate::context::Gpu;
use crate::error::{Error, Result};
use crate::shader::Defines;
use crate::DType;

/// Rows with at most this many classes get one invocation each.
pub const ROW_PER_THREAD_MAX_CLASSES: usize = 32;

/// Which loss of the family; a preprocessor variant of the one shader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// A function of the label's probability (cross-entropy and its robust and focal
    /// relatives) against integer labels.
    HardLabels(LabelFn),
    /// Cross-entropy against probabilities.
    SoftTargets,
    /// NLL of log-probabilities against integer labels.
    Nll,
}

/// The function of the label's probability `p` a [`Variant::HardLabels`] loss takes
/// instead of `−ln p` (see `shaders/classification/cross_entropy.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelFn {
    /// `−ln p`.
    CrossEntropy,
    /// `(1 − p)^γ (−ln p)`.
    Focal,
    /// `(1 − p^q) / q`.
    Generalized,
    /// `α (−ln p) − β A (1 − p)`.
    Symmetric,
    /// `−ln p + ε (1 − p)`.
    Poly1,
    /// `β (−ln p) + (1 − β)(−ln p_argmax)`.
    HardBootstrap,
    /// `β (−ln p) + (1 − β) H(softmax)`.
    SoftBootstrap,
}

impl LabelFn {
    /// Its shader define (none for cross-entropy).
    pub(crate) fn define(self) -> Option<&'static str> {
        match self {
            LabelFn::CrossEntropy => None,
            LabelFn::Focal => Some("LABEL_FOCAL"),
            LabelFn::Generalized => Some("LABEL_GCE"),
            LabelFn::Symmetric => Some("LABEL_SCE"),
            LabelFn::Poly1 => Some("LABEL_POLY1"),
            LabelFn::HardBootstrap => Some("LABEL_BOOT_HARD"),
            LabelFn::SoftBootstrap => Some("LABEL_BOOT_SOFT"),
        }
    }
}

impl Variant {
    fn define(self) -> &'static str {
        match self {
            Variant::HardLabels(_) => "HARD_LABELS",
            Variant::SoftTargets => "SOFT_TARGETS",
            Variant::Nll => "NLL",
        }
    }

    /// The shader defines of the variant (and of its label function).
    fn defines(self) -> Vec<&'static str> {
        let label_fn = match self {
            Variant::HardLabels(f) => f.define(),
            _ => None,
        };
        // Soft bootstrapping needs the row's entropy from the accumulator.
        let entropy = (self == Variant::HardLabels(LabelFn::SoftBootstrap)).then_some("ROW_ENTROPY");
        std::iter::once(self.define()).chain(label_fn).chain(entropy).collect()
    }

    fn has_labels(self) -> bool {
        self != Variant::SoftTargets
    }
}

/// Which kernel walks the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKernel {
    /// One invocation per row.
    PerThread,
    /// One workgroup per row.
    PerWorkgroup,
}

impl RowKernel {
    fn entry(self) -> &'static str {
        match self {
            RowKernel::PerThread => "row_per_thread",
            RowKernel::PerWorkgroup => "row_per_workgroup",
        }
    }

    /// The kernel chosen for rows of `classes` classes.
    pub fn for_classes(classes: usize) -> Self {
        if classes <= ROW_PER_THREAD_MAX_CLASSES {
            RowKernel::PerThread
        } else {
            RowKernel::PerWorkgroup
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ChunkParams {
    rows: u32,
    partial_base: u32,
    classes: u32,
    inner: u32,
    ignore_index: i32,
    smoothing: f32,
    host_scale: f32,
    mean_from_denoms: u32,
    fn_a: f32,
    fn_b: f32,
    fn_c: f32,
    z_loss: f32,
    softcap: f32,
    _pad: [f32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LabelParams {
    rows: u32,
    classes: u32,
    ignore_index: i32,
    _pad: u32,
}

struct Chunk {
    /// First batch item n of the chunk.
    first_item: u64,
    items: u64,
    groups: u32,
    params: wgpu::Buffer,
}

pub(crate) struct SoftmaxPlan {
    gpu: Gpu,
    dtype: DType,
    variant: Variant,
    kernel: RowKernel,
    chunks: Vec<Chunk>,
    label_params: wgpu::Buffer,
    denoms: wgpu::Buffer,
    partials: wgpu::Buffer,
    finalize_params: wgpu::Buffer,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl SoftmaxPlan {
    pub(crate) fn new(
        gpu: &Gpu,
        spec: &Spec,
        variant: Variant,
        reduction: Reduction,
        shape: &Shape,
        dtype: DType,
    ) -> Result<Self> {
        let (batch, classes, inner) = (shape.batch() as u64, shape.classes() as u64, shape.inner() as u64);
        let rows = batch * inner;
        let invalid_shape = |why: String| Error::InvalidShape { shape: shape.dims().to_vec(), why };
        let max_binding = gpu.max_binding_bytes();
        if variant.has_labels() && rows * ELEM_BYTES > max_binding {
            return Err(invalid_shape(format!("{rows} labels exceed the binding limit of {max_binding} bytes")));
        }
        // Chunks are whole batch items, a multiple of `step` of them so that every
        // operand's chunk starts at an aligned offset: the typed ones (logits, soft
        // targets, gradient) and the f32/i32 per-row ones. Sized for f32 logits.
        let item_bytes = classes * inner * ELEM_BYTES;
        let typed_item_bytes = classes * inner * dtype.size();
        let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
        let step_for = |bytes: u64| {
            if bytes == 0 {
                1
            } else {
                align / gcd(align, bytes)
            }
        };
        let (a, b) = (step_for(typed_item_bytes), step_for(inner * ELEM_BYTES));
        let step = a / gcd(a, b) * b;
        let items_per_chunk = max_binding.checked_div(item_bytes).map_or(batch.max(1), |n| n / step * step);
        if items_per_chunk == 0 {
            return Err(invalid_shape(format!(
                "{step} batch item(s) of {} elements each exceed the binding limit of {max_binding} bytes",
                classes * inner
            )));
        }
        let kernel = gpu.row_kernel().unwrap_or(RowKernel::for_classes(classes as usize));
        let mean = reduction == Reduction::Mean;
        let from_denoms = mean && variant.has_labels();
        let host_scale = if mean && !variant.has_labels() { 1.0 / rows as f64 } else { 1.0 };
        let mut chunks = Vec::new();
        let mut partial_base = 0u32;
        let mut first_item = 0u64;
        while first_item < batch {
            let items = items_per_chunk.min(batch - first_item);
            let chunk_rows = items * inner;
            let groups = match kernel {
                RowKernel::PerThread => chunk_rows.div_ceil(WG_SIZE as u64),
                RowKernel::PerWorkgroup => chunk_rows,
            }
            .clamp(1, MAX_GROUPS as u64) as u32;
            let params = ChunkParams {
                rows: chunk_rows as u32,
                partial_base,
                classes: classes as u32,
                inner: inner as u32,
                ignore_index: spec.ignore_index,
                smoothing: spec.params[1],
                host_scale: host_scale as f32,
                mean_from_denoms: from_denoms as u32,
                fn_a: spec.params[0],
                fn_b: spec.params[2],
                fn_c: spec.params[3],
                z_loss: spec.params[4],
                softcap: spec.params[5],
                _pad: [0.0; 3],
            };
            chunks.push(Chunk { first_item, items, groups, params: uniform(gpu, "fused-loss row params", &params) });
            partial_base += groups;
            first_item += items;
        }
        let label_params =
            LabelParams { rows: rows as u32, classes: classes as u32, ignore_index: spec.ignore_index, _pad: 0 };
        let finalize = FinalizeParams {
            count: partial_base,
            scale: host_scale as f32,
            denominator: if mean && !variant.has_labels() { rows as f32 } else { 1.0 },
            mean_from_denoms: from_denoms as u32,
        };
        let denoms = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("fused-loss denominators"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(SoftmaxPlan {
            gpu: gpu.clone(),
            dtype,
            variant,
            kernel,
            chunks,
            label_params: uniform(gpu, "fused-loss label params", &label_params),
            denoms,
            partials: partials_buffer(gpu, partial_base),
            finalize_params: uniform(gpu, "fused-loss finalize params", &finalize),
        })
    }

    pub(crate) fn dispatch_count(&self) -> usize {
        self.chunks.len() + 1 + usize::from(self.variant.has_labels())
    }

    pub(crate) fn encode(&self, plan: &Plan, encoder: &mut wgpu::CommandEncoder, bindings: &Bindings) -> Result<()> {
        let gpu = &self.gpu;
        let spec = &plan.spec;
        let shape = &plan.shape;
        let (classes, inner) = (shape.classes() as u64, shape.inner() as u64);
        let len = shape.len() as u64;
        let rows = shape.rows() as u64;
        let none = plan.reduction == Reduction::None;
        let labels = self.variant.has_labels();
        let dtype = self.dtype;
        check_slice(gpu, "input", &bindings.input, dtype.bytes(len))?;
        if labels {
            check_slice(gpu, "labels", &bindings.target, rows * ELEM_BYTES)?;
        } else {
            check_slice(gpu, "target", &bindings.target, dtype.bytes(len))?;
        }
        if let Some(grad) = &bindings.grad {
            check_slice(gpu, "grad", grad, dtype.bytes(len))?;
        }
        check_slice(gpu, "stats", &bindings.stats, super::LossStats::SIZE)?;
        let mut defines = Defines::new();
        let mut flag = |name: &str| defines.insert(name.to_string(), String::new());
        for define in self.variant.defines().into_iter().chain(option_flags(spec)) {
            flag(define);
        }
        for storage in storage_flags(dtype, bindings.grad.is_none()) {
            flag(storage);
        }
        if gpu.subgroups() {
            flag("SUBGROUPS");
        }
        if let Some(slice) = &bindings.weight {
            check_slice(gpu, "weight", slice, classes * ELEM_BYTES)?;
            flag("HAS_WEIGHT");
        }
        if bindings.pos_weight.is_some() {
            return Err(unsupported(spec, "pos_weight"));
        }
        if let Some(slice) = &bindings.upstream {
            check_slice(gpu, "upstream", slice, if none { rows } else { 1 } * ELEM_BYTES)?;
            flag(if none { "UPSTREAM_ELEMENTWISE" } else { "UPSTREAM_SCALAR" });
        }
        check_per_element(gpu, spec, plan.reduction, &bindings.per_element, rows)?;
        if none {
            flag("REDUCTION_NONE");
        }
        if let Some(slice) = &bindings.lse {
            check_slice(gpu, "lse", slice, rows * ELEM_BYTES)?;
            flag("WRITE_LSE");
        }
        if bindings.accuracy {
            if !labels {
                return Err(unsupported(spec, "accuracy (it has no labels)"));
            }
            flag("ACCURACY");
        }
        let mut label_defines = Defines::new();
        let mut finalize_defines = Defines::new();
        if bindings.weight.is_some() {
            label_defines.insert("HAS_WEIGHT".into(), String::new());
        }
        if labels {
            finalize_defines.insert("DENOMS".into(), String::new());
        }

        let pipeline = gpu.pipeline(spec.shader, self.kernel.entry(), &defines)?;
        let finalize = gpu.pipeline("finalize", "finalize", &finalize_defines)?;
        let count_labels = if labels {
            let pipeline = gpu.pipeline("classification/labels", "count_labels", &label_defines)?;
            let mut entries = vec![
                (0, self.label_params.as_entire_buffer_binding()),
                (1, sub(&bindings.target, 0, rows)),
                (2, self.denoms.as_entire_buffer_binding()),
            ];
            if let Some(slice) = &bindings.weight {
                entries.push((5, sub(slice, 0, classes)));
            }
            let group = bind_group(gpu, "fused-loss labels", &pipeline, entries);
            Some((pipeline, group))
        } else {
            None
        };
        let item = classes * inner;
        let groups: Vec<wgpu::BindGroup> = self
            .chunks
            .iter()
            .map(|chunk| {
                let (first, count) = (chunk.first_item * item, chunk.items * item);
                let (first_row, chunk_rows) = (chunk.first_item * inner, chunk.items * inner);
                let mut entries = vec![
                    (0, chunk.params.as_entire_buffer_binding()),
                    (1, sub_typed(&bindings.input, first, count, dtype)),
                    (4, self.partials.as_entire_buffer_binding()),
                ];
                if let Some(grad) = &bindings.grad {
                    entries.push((3, sub_typed(grad, first, count, dtype)));
                }
                if labels {
                    entries.push((2, sub(&bindings.target, first_row, chunk_rows)));
                    entries.push((8, self.denoms.as_entire_buffer_binding()));
                } else {
                    entries.push((2, sub_typed(&bindings.target, first, count, dtype)));
                }
                if let Some(slice) = &bindings.weight {
                    entries.push((5, sub(slice, 0, classes)));
                }
                if let Some(slice) = &bindings.upstream {
                    entries.push(if none { (6, sub(slice, first_row, chunk_rows)) } else { (6, sub(slice, 0, 1)) });
                }
                if let Some(slice) = &bindings.per_element {
                    entries.push((7, sub(slice, first_row, chunk_rows)));
                }
                if let Some(slice) = &bindings.lse {
                    entries.push((9, sub(slice, first_row, chunk_rows)));
                }
                bind_group(gpu, spec.name, &pipeline, entries)
            })
            .collect();
        let mut finalize_entries = vec![
            (0, self.finalize_params.as_entire_buffer_binding()),
            (1, self.partials.as_entire_buffer_binding()),
            (2, stats_binding(&bindings.stats)),
        ];
        if labels {
            finalize_entries.push((3, self.denoms.as_entire_buffer_binding()));
        }
        let finalize_group = bind_group(gpu, "fused-loss finalize", &finalize, finalize_entries);

        let mut dispatches = Vec::new();
        if let Some((pipeline, group)) = &count_labels {
            dispatches.push((pipeline, group, 1));
        }
        dispatches.extend(self.chunks.iter().zip(&groups).map(|(chunk, group)| (&pipeline, group, chunk.groups)));
        dispatches.push((&finalize, &finalize_group, 1));
        record(encoder, spec.name, &dispatches);
        Ok(())
    }
}

/// The flags of cross-entropy's options that are on (z-loss, soft-cap).
fn option_flags(spec: &Spec) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if spec.params[4] != 0.0 {
        flags.push("Z_LOSS");
    }
    if spec.params[5] != 0.0 {
        flags.push("SOFTCAP");
    }
    flags
}

/// The shader flags of an element type and gradient placement.
fn storage_flags(dtype: DType, in_place: bool) -> Vec<&'static str> {
    let mut flags: Vec<&str> = dtype.define().into_iter().collect();
    if dtype == DType::BF16 {
        // Row kernels store element by element; see lib/bindings.
        flags.push("HALF_WORD_STORES");
    }
    if in_place {
        flags.push("IN_PLACE");
    }
    flags
}

/// Every variant of the family's shaders that `encode` can ask for.
pub(crate) fn shader_variants(spec: &Spec, variant: Variant) -> Vec<(&'static str, &'static str, Defines)> {
    let options = option_flags(spec);
    let mut out = Vec::new();
    let set = |flags: &[&str]| -> Defines { flags.iter().map(|f| (f.to_string(), String::new())).collect() };
    // Element types and in-place vary on their own, crossed with the plain call only.
    for entry in ["row_per_thread", "row_per_workgroup"] {
        for dtype in DType::ALL {
            for in_place in [false, true] {
                let storage = storage_flags(dtype, in_place);
                if !storage.is_empty() {
                    let mut flags = variant.defines();
                    flags.extend(&options);
                    flags.extend(storage);
                    out.push(("classification/cross_entropy", entry, set(&flags)));
                }
            }
        }
    }
    for entry in ["row_per_thread", "row_per_workgroup"] {
        for none in [false, true] {
            for upstream in [false, true] {
                for weight in [false, true] {
                    for extras in [&[][..], &["WRITE_LSE"], &["ACCURACY", "WRITE_LSE"], &["ACCURACY"]] {
                        if !variant.has_labels() && extras.contains(&"ACCURACY") {
                            continue;
                        }
                        let mut flags = variant.defines();
                        flags.extend(&options);
                        if none {
                            flags.push("REDUCTION_NONE");
                        }
                        if upstream {
                            flags.push(if none { "UPSTREAM_ELEMENTWISE" } else { "UPSTREAM_SCALAR" });
                        }
                        if weight {
                            flags.push("HAS_WEIGHT");
                        }
                        flags.extend_from_slice(extras);
                        out.push(("classification/cross_entropy", entry, set(&flags)));
                    }
                }
            }
        }
    }
    for weight in [false, true] {
        out.push(("classification/labels", "count_labels", if weight { set(&["HAS_WEIGHT"]) } else { set(&[]) }));
    }
    out.push(("finalize", "finalize", set(&["DENOMS"])));
    out
}
