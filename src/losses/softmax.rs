//! GPU side of the row-wise losses (`shaders/lib/rows.wgsl` and the files that import
//! it): the softmax family (`classification/softmax_rows`, imported by each loss's file:
//! cross-entropy with labels or probabilities, its label functions, NLL) and the margin
//! losses (`classification/margin`).
//!
//! Per call: a label pre-pass (one workgroup over the N·S labels, never the logits)
//! that finds the mean's denominator and counts labels out of range; one dispatch per
//! chunk of whole batch items; `finalize`. Soft targets need no pre-pass.
//!
//! Rows of at most [`ROW_PER_THREAD_MAX_CLASSES`] classes are walked by one invocation
//! each; longer rows by a workgroup each, with an online softmax (running max and sum)
//! over the row and a second sweep, from cache, that writes the gradient once.

use super::plan::{
    bind_group, check_per_element, loss_param_defines, loss_params_buffer, partials_buffer, stats_binding, sub,
    sub_typed, uniform, Bindings, Dispatch, FinalizeParams, KernelShape, Plan, PlanRequest, Required, ShapePlan,
    SliceChecks, ELEM_BYTES, LOOP_BUDGET, LOSS_PARAMS_BINDING, WG_SIZE,
};
use super::{unsupported, Reduction};
#[cfg(test)]
use super::{Loss, Spec};
use crate::context::Gpu;
use crate::error::{Error, Result};
use crate::launch::{Launch, PassKind, LANES};
use crate::shader::Defines;
use crate::DType;

/// Bytes of the label pre-pass's `Denoms` (`shaders/lib/denoms.wgsl`).
const DENOMS_BYTES: u64 = 16;

/// Loop iterations of a block besides its rows: the block loop, the lanes' fold and the
/// workgroup reduction.
const BLOCK_OVERHEAD: u64 = 32;

/// Rows with at most this many classes get one invocation each. The threshold fixes the
/// order of a row's sum (one invocation in class order, or lanes folded by a tree), so
/// it is part of the result and not tuned.
pub const ROW_PER_THREAD_MAX_CLASSES: usize = 32;

/// Classes per row up to which `multilabel_margin` takes lists of any length: each
/// invocation keeps a bitmap of its row's listed classes (`LISTED_WORDS` words in
/// `shaders/lib/rows.wgsl`). Longer rows take lists of at most
/// [`multilabel_margin_list_limit`] entries.
pub const MULTILABEL_MARGIN_MAX_CLASSES: usize = 1024;

/// The longest list `multilabel_margin` takes in rows of `classes` classes: `None` (any)
/// up to [`MULTILABEL_MARGIN_MAX_CLASSES`]; above, a workgroup counts each list entry's
/// active hinges in workgroup atomics (at most 256 entries) while each of its invocations
/// walks the list four times per class it holds, so the list is also bounded by the loop
/// budget (94 entries at 32 768 classes, 10 at 262 144). A longer list is an
/// out-of-domain label, on the GPU and the CPU alike.
pub fn multilabel_margin_list_limit(classes: usize) -> Option<usize> {
    if classes <= MULTILABEL_MARGIN_MAX_CLASSES {
        return None;
    }
    let per_lane = (classes as u64).div_ceil(WG_SIZE as u64);
    let fixed = RowKernel::PerWorkgroup.loop_cost(Variant::HardLabels, classes as u64) + 64;
    let by_budget = (LOOP_BUDGET.saturating_sub(fixed) / (4 * per_lane)).saturating_sub(1);
    Some(by_budget.min(WG_SIZE as u64) as usize)
}

/// Which kind of row-wise loss: how the host binds its targets and reduces it (the
/// loss file defines the matching shader variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// A function of the label's probability (cross-entropy and its robust and focal
    /// relatives) against integer labels.
    HardLabels,
    /// Cross-entropy against probabilities.
    SoftTargets,
    /// NLL of log-probabilities against integer labels.
    Nll,
    /// `torch.nn.MultiMarginLoss` against integer labels (no `ignore_index`).
    MultiMargin,
    /// `torch.nn.MultiLabelSoftMarginLoss` against per-class targets.
    MultiLabelSoftMargin,
    /// `torch.nn.MultiLabelMarginLoss` against C class indices per row (a list ended by −1).
    MultiLabelMargin,
}

impl Variant {
    /// Integer targets (and the label pre-pass), rather than one value per element.
    pub(crate) fn has_labels(self) -> bool {
        !matches!(self, Variant::SoftTargets | Variant::MultiLabelSoftMargin)
    }

    /// Integer targets per row: 1, or C (a list of classes) for multi-label margin.
    pub(crate) fn labels_per_row(self, classes: usize) -> usize {
        if self == Variant::MultiLabelMargin {
            classes
        } else {
            1
        }
    }

    /// `mean` divides by the summed class weight of the kept rows (PyTorch's weighted
    /// cross-entropy and NLL); otherwise by the number of rows.
    pub(crate) fn mean_over_label_weights(self) -> bool {
        matches!(self, Variant::HardLabels | Variant::Nll)
    }

    /// Whether the variant has a per-row log-sum-exp to return.
    pub(crate) fn has_lse(self) -> bool {
        matches!(self, Variant::HardLabels | Variant::SoftTargets | Variant::Nll)
    }

    /// Whether rows have one label an argmax can be compared with.
    pub(crate) fn has_row_label(self) -> bool {
        matches!(self, Variant::HardLabels | Variant::Nll | Variant::MultiMargin)
    }

    /// PyTorch takes only (N, C) (or (C)) for the margin losses.
    pub(crate) fn two_dimensional(self) -> bool {
        matches!(self, Variant::MultiMargin | Variant::MultiLabelSoftMargin | Variant::MultiLabelMargin)
    }

    /// Whether the gradient may overwrite the input: multi-label margin reads other
    /// classes' inputs while it writes.
    pub(crate) fn allows_in_place(self) -> bool {
        self != Variant::MultiLabelMargin
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

    /// Loop iterations (entries included) one invocation of a 256-wide workgroup runs
    /// per row it walks, at most: what keeps every invocation under [`LOOP_BUDGET`].
    fn loop_cost(self, variant: Variant, classes: u64) -> u64 {
        self.loop_cost_at(variant, classes, Launch::DEFAULT)
    }

    /// [`RowKernel::loop_cost`] under `launch` (row per workgroup: an invocation holds
    /// 256 / workgroup size lanes of the row).
    fn loop_cost_at(self, variant: Variant, classes: u64, launch: Launch) -> u64 {
        let (per_lane, reductions) = match self {
            RowKernel::PerThread => (classes, 0),
            // Its lanes' classes (with more than one lane, an inner loop's entry at each
            // step), their fold, and a few workgroup reductions of log2(WG_SIZE) steps.
            RowKernel::PerWorkgroup => {
                let lanes = launch.lanes_per_invocation();
                (classes.div_ceil(LANES as u64) * (lanes + (lanes > 1) as u64), 4 * 9 + lanes - 1)
            }
        };
        // Two sweeps over the lane's classes, and the row's setup.
        let plain = 2 * (per_lane + 1) + reductions + 4;
        if variant != Variant::MultiLabelMargin {
            return plain;
        }
        // row_setup clears the bitmap and walks the list of k entries.
        let listed_words = (MULTILABEL_MARGIN_MAX_CLASSES / 32) as u64;
        match multilabel_margin_list_limit(classes as usize) {
            // Each class walks the list (unlisted: its hinges, in both sweeps) or counts
            // its listings and walks the row (listed); k <= C.
            None => plain + (classes + 1) + (listed_words + 1) + per_lane * (2 * (classes + 1) + (classes + 1)),
            // Each class walks the list four times: membership and its hinges in the
            // first sweep; its first listing (membership), then its hinges or its
            // listings, in the second.
            Some(k) => {
                let k = k as u64;
                plain + (k + 1) + (listed_words + 1) + per_lane * 4 * (k + 1)
            }
        }
    }

    /// Which tuned pass it is.
    fn pass(self) -> PassKind {
        match self {
            RowKernel::PerThread => PassKind::RowPerThread,
            RowKernel::PerWorkgroup => PassKind::RowPerWorkgroup,
        }
    }

    /// Rows of one block of `rows` rows of `classes` classes (`params.block_rows` in
    /// `shaders/lib/rows.wgsl`): row per thread, `LANES` times 1, 2 or 4 rows per lane,
    /// as many as an invocation of the default launch may walk within the loop budget;
    /// row per workgroup, a power of two that keeps about a thousand blocks (up to 256
    /// rows, and as many as invocation 0 may sum within the budget). A function of the
    /// shape alone: it fixes the order of the rows' sum.
    fn block_rows(self, variant: Variant, rows: u64, classes: u64) -> u64 {
        let cost = self.loop_cost(variant, classes) + 1;
        let most = match self {
            RowKernel::PerThread => (LOOP_BUDGET.saturating_sub(BLOCK_OVERHEAD) / cost).clamp(1, 4),
            RowKernel::PerWorkgroup => {
                (rows / 1024).min(LOOP_BUDGET.saturating_sub(BLOCK_OVERHEAD) / cost).clamp(1, 256)
            }
        };
        let pow2 = 1 << (63 - most.leading_zeros());
        match self {
            RowKernel::PerThread => LANES as u64 * pow2,
            RowKernel::PerWorkgroup => pow2,
        }
    }

    /// Blocks of `block_rows` rows one invocation of `launch` may walk within
    /// [`LOOP_BUDGET`] (0: not even one).
    fn blocks_per_invocation(self, variant: Variant, classes: u64, block_rows: u64, launch: Launch) -> u64 {
        let rows_per_invocation = match self {
            RowKernel::PerThread => block_rows / LANES as u64 * launch.lanes_per_invocation(),
            RowKernel::PerWorkgroup => block_rows,
        };
        let per_block = rows_per_invocation * (self.loop_cost_at(variant, classes, launch) + 1) + BLOCK_OVERHEAD;
        LOOP_BUDGET / per_block
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
    host_scale: f32,
    mean_from_denoms: u32,
    has_ignore: u32,
    block_rows: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LabelParams {
    rows: u32,
    classes: u32,
    ignore_index: i32,
    has_ignore: u32,
    // 1: add to the denominators of the previous label pass (labels in several bindings).
    accumulate: u32,
    // Lists of labels (rows of `classes` entries): a list longer than this is invalid
    // (u32::MAX: any length).
    list_limit: u32,
    _pad: [u32; 2],
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
    kernel: RowKernel,
    launch: Launch,
    dtype: DType,
    variant: Variant,
    chunks: Vec<Chunk>,
    // (first label, labels, uniforms) of each label pre-pass: one, or one per chunk when
    // the labels exceed one binding (multi-label margin's lists of C per row).
    label_passes: Vec<(u64, u64, wgpu::Buffer)>,
    denoms: wgpu::Buffer,
    partials: wgpu::Buffer,
    finalize_params: wgpu::Buffer,
    // The loss's own parameters (none: the loss has none).
    loss_params: Option<wgpu::Buffer>,
    // Compiled in `new` for the declared options: the row kernel, finalize, and the
    // label pre-pass of losses with labels.
    pipeline: wgpu::ComputePipeline,
    finalize: wgpu::ComputePipeline,
    count_labels: Option<wgpu::ComputePipeline>,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The row-wise kernel shape (both families on `lib/rows.wgsl`).
pub(crate) struct Rows;

/// What row-wise losses' specs name.
pub(crate) static ROWS: Rows = Rows;

impl KernelShape for Rows {
    fn name(&self) -> &'static str {
        "rows"
    }
    fn plan(&self, request: &PlanRequest) -> Result<Box<dyn ShapePlan>> {
        Ok(Box::new(SoftmaxPlan::new(request)?))
    }
    #[cfg(test)]
    fn shader_variants(&self, loss: &Loss, spec: &Spec) -> Vec<(&'static str, &'static str, Defines)> {
        shader_variants(loss, spec, spec.row_variant().expect("a row-wise loss"))
    }
}

impl SoftmaxPlan {
    pub(crate) fn new(request: &PlanRequest) -> Result<Self> {
        let PlanRequest { gpu, loss, spec, reduction, shape, options } = *request;
        let variant = spec.row_variant().expect("a row-wise loss");
        let dtype = options.dtype;
        let kernel = gpu.row_kernel().unwrap_or(RowKernel::for_classes(shape.classes()));
        let (batch, classes, inner) = (shape.batch() as u64, shape.classes() as u64, shape.inner() as u64);
        let rows = batch * inner;
        let invalid_shape = |why: String| Error::InvalidShape { shape: shape.dims().to_vec(), why };
        let max_binding = gpu.max_binding_bytes();
        // Labels beyond one binding are counted by one pre-pass per chunk.
        let label_count = rows * variant.labels_per_row(classes as usize) as u64;
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
        let mut step = a / gcd(a, b) * b;
        if variant.labels_per_row(classes as usize) > 1 {
            // Lists of C labels per row: their chunks start where an f32 item's would.
            let c = step_for(item_bytes);
            step = step / gcd(step, c) * c;
        }
        // Rows per chunk are bounded too (LOOP_BUDGET): at most 65 535 workgroups of the
        // default launch, each walking as many blocks as the budget allows. Chunks,
        // blocks and their sums' order follow from the shape alone, never the launch.
        let block_rows = kernel.block_rows(variant, rows, classes);
        let default_blocks = kernel.blocks_per_invocation(variant, classes, block_rows, Launch::DEFAULT);
        let items_per_budget = 65_535 * default_blocks * block_rows / inner.max(1);
        if items_per_budget == 0 {
            return Err(invalid_shape(format!(
                "one invocation of the {kernel:?} kernel would loop {} times over a batch item's rows of {classes} \
                 classes, more than the {LOOP_BUDGET} that llvmpipe runs right",
                inner.div_ceil(65_535 * block_rows) * kernel.loop_cost(variant, classes)
            )));
        }
        // Only chunks after the first need aligned starts: a batch that fits one binding
        // is one chunk of any size.
        let items_per_chunk = match max_binding.checked_div(item_bytes) {
            None => batch.max(1),
            Some(fit) if fit.min(items_per_budget) >= batch => batch.max(1),
            Some(fit) => fit.min(items_per_budget) / step * step,
        };
        if items_per_chunk == 0 {
            return Err(invalid_shape(format!(
                "{step} batch item(s) of {} elements each exceed the binding limit of {max_binding} bytes",
                classes * inner
            )));
        }
        let mean = reduction == Reduction::Mean;
        let from_denoms = mean && variant.mean_over_label_weights();
        let host_scale = if mean && !from_denoms { 1.0 / rows as f64 } else { 1.0 };
        let ignore = spec.ignore();
        // The launch: the adapter's (or the pinned one) where every chunk fits it, else
        // the default. Multi-label margin's list limit is the default launch's budget.
        let largest_chunk = items_per_chunk.min(batch.max(1)) * inner;
        let fits = |launch: Launch| {
            let per_invocation = kernel.blocks_per_invocation(variant, classes, block_rows, launch);
            per_invocation > 0 && largest_chunk.div_ceil(block_rows).div_ceil(per_invocation) <= 65_535
        };
        let launch = match gpu.launch(kernel.pass(), dtype.bytes(rows * classes)) {
            launch if variant != Variant::MultiLabelMargin && fits(launch) => launch,
            _ => Launch::DEFAULT,
        };
        let (pipeline, finalize, count_labels) = pipelines(request, variant, kernel, launch)?;
        let blocks_per_invocation = kernel.blocks_per_invocation(variant, classes, block_rows, launch);
        let mut chunks = Vec::new();
        let mut partial_base = 0u32;
        let mut first_item = 0u64;
        while first_item < batch {
            let items = items_per_chunk.min(batch - first_item);
            let chunk_rows = items * inner;
            let blocks = chunk_rows.div_ceil(block_rows).max(1);
            let groups = launch.workgroups(blocks, blocks_per_invocation);
            let params = ChunkParams {
                rows: chunk_rows as u32,
                partial_base,
                classes: classes as u32,
                inner: inner as u32,
                ignore_index: ignore.unwrap_or(0),
                host_scale: host_scale as f32,
                mean_from_denoms: from_denoms as u32,
                has_ignore: ignore.is_some() as u32,
                block_rows: block_rows as u32,
                _pad: [0; 3],
            };
            chunks.push(Chunk { first_item, items, groups, params: uniform(gpu, "fused-loss row params", &params) });
            partial_base += blocks as u32;
            first_item += items;
        }
        // Each pre-pass is one workgroup: at most a binding of labels, and few enough per
        // invocation for LOOP_BUDGET (its loops: the labels, the class weights, the
        // reduction); passes after the first add to the counts.
        let lane_budget = LOOP_BUDGET.saturating_sub(classes.div_ceil(WG_SIZE as u64) + 1 + 4 * 9 + 1).max(1);
        // Lists are checked for their length within a pass: passes of whole rows, a
        // multiple of the chunks' step, with up to one more walk of a list per row.
        let list_limit =
            (variant == Variant::MultiLabelMargin).then(|| multilabel_margin_list_limit(classes as usize)).flatten();
        let (unit, lane_budget) = if variant.labels_per_row(classes as usize) > 1 {
            (step * classes, lane_budget / 2)
        } else {
            ((align / ELEM_BYTES).max(1), lane_budget)
        };
        let pass_labels = ((max_binding / ELEM_BYTES).min(lane_budget * WG_SIZE as u64) / unit * unit).max(unit);
        let label_ranges: Vec<(u64, u64)> = if label_count == 0 {
            vec![(0, 0)]
        } else {
            (0..label_count.div_ceil(pass_labels))
                .map(|i| (i * pass_labels, pass_labels.min(label_count - i * pass_labels)))
                .collect()
        };
        let label_passes = label_ranges
            .into_iter()
            .enumerate()
            .map(|(i, (first, count))| {
                let params = LabelParams {
                    rows: count as u32,
                    classes: classes as u32,
                    ignore_index: ignore.unwrap_or(0),
                    has_ignore: ignore.is_some() as u32,
                    accumulate: (i > 0) as u32,
                    list_limit: list_limit.map_or(u32::MAX, |k| k as u32),
                    _pad: [0; 2],
                };
                (first, count, uniform(gpu, "fused-loss label params", &params))
            })
            .collect();
        let finalize_values = FinalizeParams {
            count: partial_base,
            scale: host_scale as f32,
            denominator: if mean && !from_denoms { rows as f32 } else { 1.0 },
            mean_from_denoms: from_denoms as u32,
            kept: rows as u32,
            kept_from_denoms: variant.has_row_label() as u32,
            _pad: [0; 2],
        };
        let denoms = gpu.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("fused-loss denominators"),
            size: DENOMS_BYTES,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Ok(SoftmaxPlan {
            gpu: gpu.clone(),
            kernel,
            launch,
            dtype,
            variant,
            chunks,
            label_passes,
            denoms,
            partials: partials_buffer(gpu, partial_base),
            finalize_params: uniform(gpu, "fused-loss finalize params", &finalize_values),
            loss_params: loss_params_buffer(gpu, loss),
            pipeline,
            finalize,
            count_labels,
        })
    }
}

impl ShapePlan for SoftmaxPlan {
    fn launch(&self) -> Option<(PassKind, Launch)> {
        Some((self.kernel.pass(), self.launch))
    }

    fn dispatch_count(&self) -> usize {
        self.chunks.len() + 1 + if self.variant.has_labels() { self.label_passes.len() } else { 0 }
    }

    fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    fn bind<'a>(
        &self,
        plan: &Plan,
        bindings: &Bindings<'a>,
        required: &Required<'a>,
        checks: &mut SliceChecks<'a>,
    ) -> Result<Vec<Dispatch>> {
        let gpu = &self.gpu;
        let spec = &plan.spec;
        let shape = &plan.shape;
        let (classes, inner) = (shape.classes() as u64, shape.inner() as u64);
        let len = shape.len() as u64;
        let rows = shape.rows() as u64;
        let none = plan.reduction == Reduction::None;
        let labels = self.variant.has_labels();
        let per_row = self.variant.labels_per_row(classes as usize) as u64;
        let dtype = self.dtype;
        if required.grad.is_some() {
            checks.read("input", &required.input, dtype.bytes(len))?;
        } else {
            checks.write("input", &required.input, dtype.bytes(len))?;
        }
        if labels {
            checks.read("labels", &required.target, rows * per_row * ELEM_BYTES)?;
        } else {
            checks.read("target", &required.target, dtype.bytes(len))?;
        }
        if let Some(grad) = &required.grad {
            checks.write("grad", grad, dtype.bytes(len))?;
        }
        checks.write("stats", &required.stats, super::LossStats::SIZE)?;
        if let Some(slice) = &bindings.weight {
            checks.read("weight", slice, classes * ELEM_BYTES)?;
        }
        if let Some(slice) = &bindings.upstream {
            checks.read("upstream", slice, if none { rows } else { 1 } * ELEM_BYTES)?;
        }
        check_per_element(checks, spec, plan.reduction, &bindings.per_element, rows, false)?;
        if let Some(slice) = &bindings.lse {
            checks.write("lse", slice, rows * ELEM_BYTES)?;
        }
        checks.refuse_overlaps()?;
        let (pipeline, finalize) = (&self.pipeline, &self.finalize);
        let count_labels = if let Some(pipeline) = &self.count_labels {
            let groups = self
                .label_passes
                .iter()
                .map(|(first, count, params)| {
                    let mut entries = vec![
                        (0, params.as_entire_buffer_binding()),
                        (1, sub(&required.target, *first, *count)),
                        (2, self.denoms.as_entire_buffer_binding()),
                    ];
                    if let Some(slice) = &bindings.weight {
                        entries.push((5, sub(slice, 0, classes)));
                    }
                    bind_group(gpu, "fused-loss labels", pipeline, entries)
                })
                .collect::<Vec<_>>();
            Some((pipeline, groups))
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
                    (1, sub_typed(&required.input, first, count, dtype)),
                    (4, self.partials.as_entire_buffer_binding()),
                ];
                if let Some(grad) = &required.grad {
                    entries.push((3, sub_typed(grad, first, count, dtype)));
                }
                if labels {
                    entries.push((2, sub(&required.target, first_row * per_row, chunk_rows * per_row)));
                    entries.push((8, self.denoms.as_entire_buffer_binding()));
                } else {
                    entries.push((2, sub_typed(&required.target, first, count, dtype)));
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
                if let Some(buffer) = &self.loss_params {
                    entries.push((LOSS_PARAMS_BINDING, buffer.as_entire_buffer_binding()));
                }
                bind_group(gpu, spec.name, pipeline, entries)
            })
            .collect();
        let mut finalize_entries = vec![
            (0, self.finalize_params.as_entire_buffer_binding()),
            (1, self.partials.as_entire_buffer_binding()),
            (2, stats_binding(&required.stats)),
        ];
        if labels {
            finalize_entries.push((3, self.denoms.as_entire_buffer_binding()));
        }
        let finalize_group = bind_group(gpu, "fused-loss finalize", finalize, finalize_entries);

        let mut dispatches: Vec<Dispatch> = Vec::new();
        if let Some((pipeline, groups)) = count_labels {
            dispatches.extend(groups.into_iter().map(|group| (pipeline.clone(), group, 1)));
        }
        dispatches.extend(self.chunks.iter().zip(groups).map(|(chunk, group)| (pipeline.clone(), group, chunk.groups)));
        dispatches.push((finalize.clone(), finalize_group, 1));
        Ok(dispatches)
    }
}

/// The pipelines of a plan with `options`: the row kernel, finalize and (losses with
/// labels) the label pre-pass; refuses the options the loss does not take.
fn pipelines(
    request: &PlanRequest,
    variant: Variant,
    kernel: RowKernel,
    launch: Launch,
) -> Result<(wgpu::ComputePipeline, wgpu::ComputePipeline, Option<wgpu::ComputePipeline>)> {
    let PlanRequest { gpu, loss, spec, reduction, options, .. } = *request;
    if options.in_place && !variant.allows_in_place() {
        return Err(unsupported(spec, "an in-place gradient (it reads other classes' inputs while writing)"));
    }
    if options.pos_weight {
        return Err(unsupported(spec, "pos_weight"));
    }
    if options.per_class {
        return Err(unsupported(spec, "per_class (a breakdown of elementwise losses)"));
    }
    if options.target_grad {
        return Err(unsupported(spec, "target_grad (its target is not differentiable)"));
    }
    if options.lse && !variant.has_lse() {
        return Err(unsupported(spec, "log-sum-exp (it has no softmax)"));
    }
    if options.accuracy && !variant.has_row_label() {
        return Err(unsupported(spec, "accuracy (it has no label per row)"));
    }
    let mut defines = loss_param_defines(loss);
    let mut flag = |name: &str| defines.insert(name.to_string(), String::new());
    for storage in storage_flags(options.dtype, options.in_place) {
        flag(storage);
    }
    if gpu.subgroups() {
        flag("SUBGROUPS");
    }
    if options.weight.is_some() {
        flag("HAS_WEIGHT");
    }
    let none = reduction == Reduction::None;
    if options.upstream {
        flag(if none { "UPSTREAM_ELEMENTWISE" } else { "UPSTREAM_SCALAR" });
    }
    if none {
        flag("REDUCTION_NONE");
    }
    if options.lse {
        flag("WRITE_LSE");
    }
    if options.accuracy {
        flag("ACCURACY");
    }
    let set = |flags: &[&str]| -> Defines { flags.iter().map(|f| (f.to_string(), String::new())).collect() };
    let labels = variant.has_labels();
    defines.extend([launch.define()]);
    let pipeline = request.pipeline(spec.shader, kernel.entry(), &defines)?;
    let finalize = request.pipeline("finalize", "finalize", &set(if labels { &["DENOMS"] } else { &[] }))?;
    let count_labels = if labels {
        let label_flags: &[&str] = match (options.weight.is_some(), spec.unweighted_mean) {
            (true, true) => &["HAS_WEIGHT", "UNWEIGHTED_MEAN"],
            (true, false) => &["HAS_WEIGHT"],
            (false, _) => &[],
        };
        Some(request.pipeline("classification/labels", "count_labels", &set(label_flags))?)
    } else {
        None
    };
    Ok((pipeline, finalize, count_labels))
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
#[cfg(test)]
pub(crate) fn shader_variants(
    loss: &Loss,
    spec: &Spec,
    variant: Variant,
) -> Vec<(&'static str, &'static str, Defines)> {
    let mut out = Vec::new();
    let set = |flags: &[&str]| -> Defines { flags.iter().map(|f| (f.to_string(), String::new())).collect() };
    let with_loss = |flags: &[&str]| -> Defines {
        let mut defines = loss_param_defines(loss);
        defines.extend(set(flags));
        defines
    };
    // Element types and in-place vary on their own, crossed with the plain call only.
    for entry in ["row_per_thread", "row_per_workgroup"] {
        for dtype in DType::ALL {
            for in_place in [false, true] {
                let storage = storage_flags(dtype, in_place);
                if !storage.is_empty() && (!in_place || variant.allows_in_place()) {
                    out.push((spec.shader, entry, with_loss(&storage)));
                }
            }
        }
    }
    for entry in ["row_per_thread", "row_per_workgroup"] {
        for none in [false, true] {
            for upstream in [false, true] {
                for weight in [false, true] {
                    if weight && !spec.takes_weight {
                        continue;
                    }
                    for extras in [&[][..], &["WRITE_LSE"], &["ACCURACY", "WRITE_LSE"], &["ACCURACY"]] {
                        if (!variant.has_row_label() && extras.contains(&"ACCURACY"))
                            || (!variant.has_lse() && extras.contains(&"WRITE_LSE"))
                        {
                            continue;
                        }
                        let mut flags = Vec::new();
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
                        out.push((spec.shader, entry, with_loss(&flags)));
                    }
                }
            }
        }
    }
    if variant.has_labels() {
        for flags in [&[][..], &["HAS_WEIGHT"], &["HAS_WEIGHT", "UNWEIGHTED_MEAN"]] {
            out.push(("classification/labels", "count_labels", set(flags)));
        }
        out.push(("finalize", "finalize", set(&["DENOMS"])));
    } else {
        out.push(("finalize", "finalize", set(&[])));
    }
    out
}

#[cfg(test)]
mod limits {
    use super::multilabel_margin_list_limit;

    #[test]
    fn multilabel_margin_list_limits_are_the_documented_ones() {
        // The README and the function's docs quote these.
        let limits: Vec<_> = [1024, 1025, 32_768, 262_144].into_iter().map(multilabel_margin_list_limit).collect();
        assert_eq!(limits, [None, Some(256), Some(94), Some(10)]);
    }
}

#[cfg(test)]
mod mirrors {
    use super::{ChunkParams, LabelParams, DENOMS_BYTES, MULTILABEL_MARGIN_MAX_CLASSES};
    use crate::shader::{assert_mirrors, reflection};

    #[test]
    fn uniform_structs_mirror_the_shaders() {
        assert_mirrors!(ChunkParams, "classification/multilabel_soft_margin", "Params" {
            rows: u32, partial_base: u32, classes: u32, inner: u32, ignore_index: i32, host_scale: f32,
            mean_from_denoms: u32, has_ignore: u32, block_rows: u32,
        });
        assert_eq!(reflection::const_u32("classification/multilabel_soft_margin", "LANES"), crate::launch::LANES);
        assert_mirrors!(LabelParams, "classification/labels", "LabelParams" {
            rows: u32, classes: u32, ignore_index: i32, has_ignore: u32, accumulate: u32, list_limit: u32,
        });
        assert_eq!(reflection::type_size("classification/labels", "Denoms") as u64, DENOMS_BYTES);
        let listed_words = reflection::const_u32("classification/multilabel_margin", "LISTED_WORDS");
        assert_eq!(listed_words as usize * 32, MULTILABEL_MARGIN_MAX_CLASSES);
    }
}
