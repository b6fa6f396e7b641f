//! What every family's GPU path shares: the caller's [`Bindings`], the [`LossStats`]
//! block, the [`Plan`] that records a call, and the checks on caller buffers.

use wgpu::util::DeviceExt;

use super::{Loss, Reduction, Shape, Spec};
use crate::context::Gpu;
use crate::error::{Error, Result};
#[cfg(test)]
use crate::shader::Defines;
use crate::DType;

/// Threads per workgroup; must match `WG_SIZE` in `shaders/lib/reduce.wgsl`.
pub(crate) const WG_SIZE: u32 = 256;
/// Workgroups per chunk at most: enough to fill a large GPU, few enough partials for
/// one `finalize` workgroup. The kernels' grid-stride loops cover the rest.
pub(crate) const MAX_GROUPS: u32 = 1024;
/// Loop iterations one invocation may run, all its loops together (nested ones and loop
/// entries counted). llvmpipe (Mesa's software adapter, lavapipe and GL alike: gallivm's
/// `LP_MAX_TGSI_LOOP_ITERATIONS`, one counter per invocation) silently leaves every loop
/// of an invocation once it has counted 65 535 iterations in all, measured on Mesa 22.3;
/// planners split the work so that no invocation comes within a quarter of that.
pub(crate) const LOOP_BUDGET: u64 = 49_152;
/// Bytes of one element of every operand (f32, i32).
pub(crate) const ELEM_BYTES: u64 = 4;
/// Bytes of one `Partial` (`shaders/lib/reduce.wgsl`).
pub(crate) const PARTIAL_BYTES: u64 = 32;

/// The binding of a loss's own parameters (`loss_params` in `shaders/lib/pointwise.wgsl`
/// and `shaders/lib/rows.wgsl`, a `LossParams` struct the loss file declares), passed to
/// the shader as the define `LOSS_PARAMS_BINDING`.
pub(crate) const LOSS_PARAMS_BINDING: u32 = 10;

/// The parameters a loss's kernel reads from its `LossParams`, in declaration order: all
/// but `ignore_index`, which every label loss has and the host hands to the rows driver
/// and the label pre-pass in their own uniforms.
pub(crate) fn kernel_params(loss: &Loss) -> Vec<super::definition::Param> {
    loss.definition().params().into_iter().filter(|p| p.name != "ignore_index").collect()
}

/// The defines that bind a loss's parameters, none for a loss without any, and the
/// loss's own flags ([`super::definition::Definition::defines`]).
pub(crate) fn loss_param_defines(loss: &Loss) -> crate::shader::Defines {
    let mut defines: crate::shader::Defines =
        loss.definition().defines().into_iter().map(|flag| (flag.to_string(), String::new())).collect();
    if !kernel_params(loss).is_empty() {
        defines.insert("LOSS_PARAMS".into(), String::new());
        defines.insert("LOSS_PARAMS_BINDING".into(), LOSS_PARAMS_BINDING.to_string());
    }
    defines
}

/// The `LossParams` uniform of a loss, none for a loss without parameters: one 32-bit
/// field per parameter, in declaration order, padded to 16 bytes (a uniform binding's
/// granule).
pub(crate) fn loss_params_buffer(gpu: &Gpu, loss: &Loss) -> Option<wgpu::Buffer> {
    let params = kernel_params(loss);
    if params.is_empty() {
        return None;
    }
    let mut words: Vec<u32> = params.iter().map(|p| p.value.bits()).collect();
    words.resize(words.len().div_ceil(4) * 4, 0);
    Some(gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("fused-loss loss params"),
        contents: bytemuck::cast_slice(&words),
        usage: wgpu::BufferUsages::UNIFORM,
    }))
}

/// The 32-byte statistics block that `finalize` writes into the caller's `stats`
/// buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[non_exhaustive]
pub struct LossStats {
    /// The reduced loss (`none`: the sum of the per-element or per-row losses).
    pub value: f32,
    /// Elements whose input or target was NaN or infinite (row-wise losses: logits).
    pub nonfinite: u32,
    /// Elements outside the loss's domain (labels out of range, BCE probabilities
    /// outside [0, 1]). When non-zero the loss value is not meaningful, and the call
    /// has written zeros instead of its gradient, target gradient, per-element (per-row)
    /// losses and log-sum-exp, so that an update recorded after it is a no-op.
    pub invalid: u32,
    /// The denominator of `mean` (N, or the summed weight of non-ignored rows), 1 for
    /// `sum`/`none`.
    pub denominator: f32,
    /// Rows whose argmax equals the label, when accuracy was asked for; else 0.
    pub correct: u32,
    /// Rows that count in the loss: for losses with one label per row, the rows whose
    /// label is neither ignored nor out of range (so accuracy is `correct / kept`);
    /// otherwise every row (elementwise losses: every element).
    pub kept: u32,
    /// Reserved, 0.
    pub reserved: [u32; 2],
}

impl LossStats {
    /// Size in bytes of the block.
    pub const SIZE: u64 = std::mem::size_of::<LossStats>() as u64;
}

/// The caller's buffers for one recorded call, each set by name:
/// `Bindings::new().input(x).target(y).grad(g).stats(s)` (`.labels(l)` names the target of
/// a loss with integer labels), then the optional operands and outputs. Slices may start
/// at any offset that is a multiple of the adapter's `min_storage_buffer_offset_alignment`
/// (256 at most) and may be longer than needed; every buffer needs `STORAGE` usage.
/// [`Plan::encode`] refuses a call that lacks `input`, `target`, `stats`, or the gradient
/// (`grad`, or `in_place()`).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Bindings<'a> {
    input: Option<wgpu::BufferSlice<'a>>,
    target: Option<wgpu::BufferSlice<'a>>,
    grad: Option<wgpu::BufferSlice<'a>>,
    in_place: bool,
    stats: Option<wgpu::BufferSlice<'a>>,
    /// Optional weight: elementwise losses take exactly `last_dim` f32 (broadcast) or
    /// one per element; row-wise losses one per class.
    pub weight: Option<wgpu::BufferSlice<'a>>,
    /// Optional `pos_weight`, `last_dim` f32.
    pub pos_weight: Option<wgpu::BufferSlice<'a>>,
    /// Optional upstream gradient: 1 f32 for reduced losses; for `none` one per
    /// element (row-wise: per row).
    pub upstream: Option<wgpu::BufferSlice<'a>>,
    /// Per-element (row-wise: per-row) losses; required for reduction `none`.
    pub per_element: Option<wgpu::BufferSlice<'a>>,
    /// Row-wise losses: receives each row's log-sum-exp (one f32 per row).
    pub lse: Option<wgpu::BufferSlice<'a>>,
    /// Row-wise losses with labels: count rows whose argmax is the label into
    /// [`LossStats::correct`].
    pub accuracy: bool,
    /// Elementwise losses: receives the per-class breakdown, `last_dim` f32: column sums
    /// `Σ_n loss[n, c]` of the (weighted) element losses over the leading dimensions, in a
    /// fixed order. Needs `per_element` too, for any reduction: the losses are stored
    /// there first.
    pub per_class: Option<wgpu::BufferSlice<'a>>,
    /// Elementwise losses with a differentiable target
    /// ([`Spec::target_differentiable`]): receives d(loss)/d(target), one element per
    /// input element in the plan's element type, written by the same pass.
    pub target_grad: Option<wgpu::BufferSlice<'a>>,
}

/// Builder methods that set a `Bindings` slot to a slice, one per named slot.
macro_rules! slice_setters {
    ($($(#[$doc:meta])* $slot:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $slot(mut self, slice: wgpu::BufferSlice<'a>) -> Self {
                self.$slot = Some(slice);
                self
            }
        )*
    };
}

impl<'a> Bindings<'a> {
    slice_setters! {
        /// The input, one element per input element in the plan's [`DType`].
        input;
        /// The target: one element per input element (in the plan's [`DType`]).
        target;
        /// Receives d(loss)/d(input), one element per input element, in the plan's element
        /// type.
        grad;
        /// Receives a [`LossStats`] (32 bytes).
        stats;
        /// Sets `weight`.
        weight;
        /// Sets `pos_weight`.
        pos_weight;
        /// Sets the upstream gradient.
        upstream;
        /// Sets the per-element (per-row) loss output of reduction `none`.
        per_element;
        /// Sets the per-row log-sum-exp output.
        lse;
        /// Sets the target-gradient output (losses whose [`Spec::target_differentiable`]).
        target_grad;
        /// Sets the per-class breakdown output (and needs [`Bindings::per_element`]).
        per_class;
    }

    /// No buffers yet; set them by name.
    pub fn new() -> Self {
        Self::default()
    }

    /// The target of a loss with integer labels: one `i32` per row (multi-label margin:
    /// C per row). The same slot as [`Bindings::target`], named for the reader.
    pub fn labels(self, slice: wgpu::BufferSlice<'a>) -> Self {
        self.target(slice)
    }

    /// Instead of [`Bindings::grad`]: the gradient overwrites `input`, as Liger-Kernel
    /// does, saving one input-sized buffer. The caller must not need the inputs
    /// afterwards (a backward pass that reads them again, a second loss on the same
    /// logits). The input buffer needs `STORAGE` usage with write access, as any
    /// gradient buffer.
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// Counts correct predictions into [`LossStats::correct`].
    pub fn accuracy(mut self) -> Self {
        self.accuracy = true;
        self
    }

    /// The required buffers, or the error naming the first missing; also refuses a
    /// gradient sent both to `grad` and over the input.
    fn required(&self) -> Result<Required<'a>> {
        let missing = |argument, why| Error::MissingArgument { argument, why };
        let input = self.input.ok_or(missing("input", "every call reads an input"))?;
        let target = self.target.ok_or(missing("target", "every call reads a target (or labels)"))?;
        let stats = self.stats.ok_or(missing("stats", "every call writes its LossStats"))?;
        match (&self.grad, self.in_place) {
            (Some(_), true) => Err(Error::UnsupportedArgument {
                loss: "any",
                argument: "both grad and in_place (the gradient goes to one place)",
            }),
            (None, false) => {
                Err(missing("grad", "every call writes a gradient (or set in_place() to overwrite the input)"))
            }
            (grad, _) => Ok(Required { input, target, grad: *grad, stats }),
        }
    }
}

/// What a planned call will bind besides its required buffers, and its element type:
/// declared when planning ([`Gpu::plan_for`]) so that `plan` compiles every pipeline the
/// call needs and [`Plan::encode`] compiles nothing and blocks on nothing. `encode`
/// refuses bindings that differ from the declaration ([`Error::NotPlanned`]).
///
/// `Options::new().weight(WeightLayout::PerClass).upstream()`; the default is f32 with
/// no optional operand and the gradient in `grad`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Options {
    /// Element type of input, target values and gradient (see [`Gpu::plan_with`]).
    pub dtype: DType,
    /// A `weight` operand and how it lines up with the input ([`Bindings::weight`]).
    pub weight: Option<super::WeightLayout>,
    /// A `pos_weight` operand ([`Bindings::pos_weight`]).
    pub pos_weight: bool,
    /// An upstream gradient ([`Bindings::upstream`]).
    pub upstream: bool,
    /// The per-class breakdown ([`Bindings::per_class`]).
    pub per_class: bool,
    /// The per-row log-sum-exp ([`Bindings::lse`]).
    pub lse: bool,
    /// The accuracy count ([`Bindings::accuracy`]).
    pub accuracy: bool,
    /// The target gradient ([`Bindings::target_grad`]).
    pub target_grad: bool,
    /// The gradient over the input ([`Bindings::in_place`]).
    pub in_place: bool,
    /// Operands may share one `wgpu::Buffer` at disjoint ranges, inputs and outputs
    /// alike, as pooled allocators (burn's) place tensors: every storage binding of the
    /// call's kernels is declared `read_write`, since wgpu refuses one buffer bound
    /// read-only and read-write in one dispatch. Overlapping ranges stay an error.
    pub shared_buffers: bool,
}

impl Options {
    /// f32, no optional operand.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the element type.
    pub fn dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Declares a `weight` operand laid out as `layout`.
    pub fn weight(mut self, layout: super::WeightLayout) -> Self {
        self.weight = Some(layout);
        self
    }

    /// Declares a `pos_weight` operand.
    pub fn pos_weight(mut self) -> Self {
        self.pos_weight = true;
        self
    }

    /// Declares an upstream gradient.
    pub fn upstream(mut self) -> Self {
        self.upstream = true;
        self
    }

    /// Declares the per-class breakdown output.
    pub fn per_class(mut self) -> Self {
        self.per_class = true;
        self
    }

    /// Declares the per-row log-sum-exp output.
    pub fn lse(mut self) -> Self {
        self.lse = true;
        self
    }

    /// Declares the accuracy count.
    pub fn accuracy(mut self) -> Self {
        self.accuracy = true;
        self
    }

    /// Declares the target-gradient output.
    pub fn target_grad(mut self) -> Self {
        self.target_grad = true;
        self
    }

    /// Declares that the gradient overwrites the input.
    pub fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// Lets operands share buffers at disjoint ranges ([`Options::shared_buffers`]).
    pub fn shared_buffers(mut self) -> Self {
        self.shared_buffers = true;
        self
    }

    /// Whether `bindings` bind what was declared, or the error naming the first
    /// difference.
    fn check(&self, bindings: &Bindings, required: &Required) -> Result<()> {
        let pairs = [
            ("weight", self.weight.is_some(), bindings.weight.is_some()),
            ("pos_weight", self.pos_weight, bindings.pos_weight.is_some()),
            ("upstream", self.upstream, bindings.upstream.is_some()),
            ("per_class", self.per_class, bindings.per_class.is_some()),
            ("lse", self.lse, bindings.lse.is_some()),
            ("accuracy", self.accuracy, bindings.accuracy),
            ("target_grad", self.target_grad, bindings.target_grad.is_some()),
            ("in_place", self.in_place, required.grad.is_none()),
        ];
        match pairs.into_iter().find(|(_, declared, bound)| declared != bound) {
            Some((operand, declared, _)) => Err(Error::NotPlanned { operand, declared }),
            None => Ok(()),
        }
    }
}

/// The buffers every call has (and where the gradient goes), taken out of checked
/// [`Bindings`] for the kernel shapes, which read the optional ones from the `Bindings`
/// themselves.
pub(crate) struct Required<'a> {
    pub input: wgpu::BufferSlice<'a>,
    pub target: wgpu::BufferSlice<'a>,
    /// `None`: the gradient overwrites the input.
    pub grad: Option<wgpu::BufferSlice<'a>>,
    pub stats: wgpu::BufferSlice<'a>,
}

/// A validated loss call of a fixed shape, recorded as often as needed with
/// [`Plan::encode`]. Made by [`Gpu::plan`].
///
/// Holds its uniform buffers (written once, at creation, so two recordings in one
/// encoder cannot see each other's parameters) and its scratch (partials); recordings
/// of one plan run in submission order, so they may share it.
pub struct Plan {
    pub(crate) loss: Loss,
    pub(crate) spec: Spec,
    pub(crate) reduction: Reduction,
    pub(crate) shape: Shape,
    pub(crate) dtype: DType,
    pub(crate) options: Options,
    inner: Box<dyn ShapePlan>,
}

/// What a kernel shape plans for: the call `Gpu::plan_for` validated.
#[derive(Clone, Copy)]
pub(crate) struct PlanRequest<'a> {
    pub gpu: &'a Gpu,
    pub loss: &'a Loss,
    pub spec: &'a Spec,
    pub reduction: Reduction,
    pub shape: &'a Shape,
    pub options: &'a Options,
}

impl PlanRequest<'_> {
    /// The pipeline of `shader`'s `entry` under `defines`, in the request's binding mode
    /// (`SHARED_BUFFERS`: every storage binding `read_write`, see `shader::assemble`).
    pub(crate) fn pipeline(
        &self,
        shader: &'static str,
        entry: &'static str,
        defines: &crate::shader::Defines,
    ) -> Result<wgpu::ComputePipeline> {
        if !self.options.shared_buffers {
            return self.gpu.pipeline(shader, entry, defines);
        }
        let mut defines = defines.clone();
        defines.insert(SHARED_BUFFERS.into(), String::new());
        self.gpu.pipeline(shader, entry, &defines)
    }
}

/// The define that declares every storage binding `read_write` ([`Options::shared_buffers`]).
pub(crate) const SHARED_BUFFERS: &str = "SHARED_BUFFERS";

/// A kernel shape: how a family of losses walks memory on the GPU (element by element,
/// rows over a class dimension). A new shape (a two-pass reduction, grouped rows, a
/// matmul stage) is a module with one static implementing this, which its losses' specs
/// name ([`Spec::kernel`]); `Plan` and the existing shapes do not change.
pub(crate) trait KernelShape: Sync {
    /// Its name, for debugging.
    fn name(&self) -> &'static str;
    /// Prepares a call on `shape`: chunking, uniforms, scratch, and the pipelines the
    /// declared `options` need, compiled now. Refuses options the loss does not take.
    fn plan(&self, request: &PlanRequest) -> Result<Box<dyn ShapePlan>>;
    /// Every shader variant a plan of `loss` can compile, for validation without a GPU.
    #[cfg(test)]
    fn shader_variants(&self, loss: &Loss, spec: &Spec) -> Vec<(&'static str, &'static str, Defines)>;
}

impl std::fmt::Debug for dyn KernelShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One dispatch of a recorded call: pipeline, bind group, workgroups.
pub(crate) type Dispatch = (wgpu::ComputePipeline, wgpu::BindGroup, u32);

/// A planned call of one kernel shape.
pub(crate) trait ShapePlan: Send + Sync {
    /// The device it was planned on.
    fn gpu(&self) -> &Gpu;
    /// Dispatches one `encode` records.
    fn dispatch_count(&self) -> usize;
    /// The tuned pass's kind and launch (none: the plan has no tuned pass).
    fn launch(&self) -> Option<(crate::launch::PassKind, crate::launch::Launch)> {
        None
    }
    /// Checks the caller's buffers through `checks` (ending with
    /// [`SliceChecks::refuse_overlaps`]) and makes the bind groups of the call's
    /// dispatches, in order; `Plan::encode` records them. Nothing is compiled here.
    fn bind<'a>(
        &self,
        plan: &Plan,
        bindings: &Bindings<'a>,
        required: &Required<'a>,
        checks: &mut SliceChecks<'a>,
    ) -> Result<Vec<Dispatch>>;
}

impl Gpu {
    /// Validates `loss` for `reduction` on `shape` and prepares everything that does
    /// not depend on the caller's buffers: chunking, uniforms, scratch, and the compiled
    /// pipelines (cached on the `Gpu`, so a second plan of the same variant compiles
    /// nothing). For f32 operands and no optional operand; [`Gpu::plan_for`] declares
    /// others.
    pub fn plan(&self, loss: impl Into<Loss>, reduction: Reduction, shape: &Shape) -> Result<Plan> {
        self.plan_for(loss, reduction, shape, &Options::new())
    }

    /// [`Gpu::plan`] for operands of element type `dtype` (input, target values and
    /// gradient; everything else stays f32). f16 needs the device feature
    /// `SHADER_F16`; without it this is [`Error::MissingFeature`].
    pub fn plan_with(&self, loss: impl Into<Loss>, reduction: Reduction, shape: &Shape, dtype: DType) -> Result<Plan> {
        self.plan_for(loss, reduction, shape, &Options::new().dtype(dtype))
    }

    /// [`Gpu::plan`] for a call that binds the optional operands `options` declares, in
    /// its element type. An operand the loss does not take is refused here.
    pub fn plan_for(
        &self,
        loss: impl Into<Loss>,
        reduction: Reduction,
        shape: &Shape,
        options: &Options,
    ) -> Result<Plan> {
        let loss = loss.into();
        let dtype = options.dtype;
        let spec = super::check_problem(&loss, reduction, shape)?;
        if dtype == DType::F16 && !self.features().contains(wgpu::Features::SHADER_F16) {
            return Err(Error::MissingFeature {
                what: format!("{} on f16 operands", spec.name),
                feature: "SHADER_F16",
                adapter: self.adapter_info().name.clone(),
            });
        }
        let request = PlanRequest { gpu: self, loss: &loss, spec: &spec, reduction, shape, options };
        let inner = spec.kernel.plan(&request)?;
        Ok(Plan { loss, spec, reduction, shape: shape.clone(), dtype, options: *options, inner })
    }
}

impl Plan {
    /// The loss the plan was made for.
    pub fn loss(&self) -> &Loss {
        &self.loss
    }

    /// The loss's spec.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The shape the plan was made for.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The element type the plan was made for.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The reduction the plan was made for.
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The optional operands the plan was made for.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Number of dispatches one `encode` records.
    pub fn dispatch_count(&self) -> usize {
        self.inner.dispatch_count()
    }

    /// The kind and launch of the plan's loss pass (see [`Gpu::with_launch`]): the
    /// adapter's tuned choice unless the handle pins one. `None` for plans without a
    /// tuned pass.
    pub fn launch(&self) -> Option<(crate::launch::PassKind, crate::launch::Launch)> {
        self.inner.launch()
    }

    /// Records the loss into `encoder`: reads the caller's operands, writes the
    /// gradient into `bindings.grad`, the [`LossStats`] into `bindings.stats` and the
    /// optional outputs. No submit, no readback, no CPU synchronisation.
    ///
    /// All checks happen before anything is recorded: on error the encoder is as it
    /// was.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder, bindings: &Bindings) -> Result<()> {
        let required = &bindings.required()?;
        self.options.check(bindings, required)?;
        let gpu = self.inner.gpu();
        let mut checks = SliceChecks::new(gpu);
        checks.shared_buffers = self.options.shared_buffers;
        // Bind groups are made first, in an error scope: a buffer wgpu refuses
        // (destroyed, another device's) is an error here, not a panic at the caller's
        // submit, and nothing has been recorded.
        let scope = gpu.device().push_error_scope(wgpu::ErrorFilter::Validation);
        let dispatches = self.inner.bind(self, bindings, required, &mut checks);
        let refused = pollster::block_on(scope.pop());
        let dispatches = dispatches?;
        if let Some(error) = refused {
            return Err(refused_buffer(gpu, &checks, &error));
        }
        let dispatches: Vec<_> = dispatches.iter().map(|(p, g, n)| (p, g, *n)).collect();
        record(encoder, self.spec.name, &dispatches);
        Ok(())
    }

    /// Every variant of this plan's loss's shaders that `encode` can ask for, as
    /// `(shader, entry point, defines)`, for validation ahead of time.
    #[cfg(test)]
    pub(crate) fn shader_variants(loss: &Loss) -> Vec<(&'static str, &'static str, Defines)> {
        let spec = &loss.spec();
        let variants = spec.kernel.shader_variants(loss, spec);
        // Every loss kernel also with subgroup reductions (devices with SUBGROUP); the
        // single-workgroup passes (labels, finalize) always use the workgroup tree.
        let with_subgroups = variants.iter().filter(|(shader, _, _)| *shader == spec.shader).map(|(s, e, d)| {
            let mut defines = d.clone();
            defines.insert("SUBGROUPS".into(), String::new());
            (*s, *e, defines)
        });
        // And in the shared-buffer binding mode (every storage binding read_write).
        let shared = variants.iter().filter(|(shader, _, _)| *shader == spec.shader).map(|(s, e, d)| {
            let mut defines = d.clone();
            defines.insert(SHARED_BUFFERS.into(), String::new());
            (*s, *e, defines)
        });
        // And built for the smallest tuned workgroup (four lanes per invocation), with
        // and without subgroups.
        let narrow = variants.iter().filter(|(shader, _, _)| *shader == spec.shader).flat_map(|(s, e, d)| {
            [false, true].map(|subgroups| {
                let mut defines = d.clone();
                defines.extend([crate::launch::Launch::new(64, 1).expect("a valid launch").define()]);
                if subgroups {
                    defines.insert("SUBGROUPS".into(), String::new());
                }
                (*s, *e, defines)
            })
        });
        let extra: Vec<_> = with_subgroups.chain(shared).chain(narrow).collect();
        variants.into_iter().chain(extra).collect()
    }
}

/// The caller's buffers of one call as they are checked, each with the byte range the
/// call binds of it, so that overlaps can be refused once all are known.
pub(crate) struct SliceChecks<'a> {
    gpu: &'a Gpu,
    used: Vec<Used<'a>>,
    /// Every binding is `read_write` ([`Options::shared_buffers`]): an input may share a
    /// buffer with an output where they do not overlap.
    pub(crate) shared_buffers: bool,
}

struct Used<'a> {
    argument: &'static str,
    buffer: &'a wgpu::Buffer,
    range: std::ops::Range<u64>,
    written: bool,
}

impl<'a> SliceChecks<'a> {
    pub(crate) fn new(gpu: &'a Gpu) -> Self {
        SliceChecks { gpu, used: Vec::new(), shared_buffers: false }
    }

    /// Checks an operand the call only reads (`required` bytes of it).
    pub(crate) fn read(&mut self, argument: &'static str, slice: &wgpu::BufferSlice<'a>, required: u64) -> Result<()> {
        self.add(argument, slice, required, false)
    }

    /// Checks an operand the call writes (`required` bytes of it).
    pub(crate) fn write(&mut self, argument: &'static str, slice: &wgpu::BufferSlice<'a>, required: u64) -> Result<()> {
        self.add(argument, slice, required, true)
    }

    fn add(
        &mut self,
        argument: &'static str,
        slice: &wgpu::BufferSlice<'a>,
        required: u64,
        written: bool,
    ) -> Result<()> {
        check_slice(self.gpu, argument, slice, required)?;
        let start = slice.offset();
        self.used.push(Used { argument, buffer: slice.buffer(), range: start..start + required, written });
        Ok(())
    }

    /// Refuses bindings that clash: two outputs that overlap would overwrite each other;
    /// an output over an input would change what later workgroups read; and an input
    /// only read in the same buffer as an output, even apart, is a usage wgpu refuses
    /// only when the encoder is finished, by panicking in the caller's code. Inputs may
    /// share and overlap, and outputs may share a buffer where they do not overlap.
    pub(crate) fn refuse_overlaps(&self) -> Result<()> {
        for (i, a) in self.used.iter().enumerate() {
            for b in &self.used[i + 1..] {
                if a.buffer != b.buffer || !(a.written || b.written) {
                    continue;
                }
                let (start, end) = (a.range.start.max(b.range.start), a.range.end.min(b.range.end));
                let why = if start < end {
                    format!("overlap (bytes {start}..{end}); an output may not overlap another operand")
                } else if a.written != b.written && !self.shared_buffers {
                    "one is only read while the other is written: wgpu refuses one buffer bound read-only and \
                     read-write in one dispatch; use separate buffers, or plan with Options::shared_buffers"
                        .to_string()
                } else {
                    continue;
                };
                return Err(Error::Aliased { first: a.argument, second: b.argument, why });
            }
        }
        Ok(())
    }

    /// The checked buffers, for finding which one wgpu refuses.
    pub(crate) fn buffers(&self) -> impl Iterator<Item = (&'static str, &'a wgpu::Buffer)> + '_ {
        self.used.iter().map(|u| (u.argument, u.buffer))
    }
}

/// Which of `checks`' buffers wgpu refuses to bind on `gpu`'s device (destroyed, or
/// created on another device), as the error naming it. Run only after binding failed:
/// it binds each buffer alone.
pub(crate) fn refused_buffer(gpu: &Gpu, checks: &SliceChecks, error: &wgpu::Error) -> Error {
    let device = gpu.device();
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("fused-loss buffer probe"),
        entries: &[wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: true },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        }],
    });
    for (argument, buffer) in checks.buffers() {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let _probe = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("fused-loss buffer probe"),
            layout: &layout,
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: buffer.as_entire_binding() }],
        });
        if let Some(refused) = pollster::block_on(scope.pop()) {
            return Error::BufferState { argument, why: format!("wgpu refuses it on this device: {refused}") };
        }
    }
    Error::Wgpu(error.to_string())
}

/// Checks one operand's buffer: usage, alignment, size, not mapped. Errors name the
/// operand.
pub(crate) fn check_slice(gpu: &Gpu, argument: &'static str, slice: &wgpu::BufferSlice, required: u64) -> Result<()> {
    // A mapped buffer makes the caller's submit fail (wgpu has no map-state query; a
    // mapped range can be viewed only while mapped).
    let buffer = slice.buffer();
    if buffer.size() >= 4 && buffer.slice(0..4).get_mapped_range().is_ok() {
        return Err(Error::BufferState { argument, why: "it is mapped (unmap it before recording)".into() });
    }
    let has = slice.buffer().usage();
    if !has.contains(wgpu::BufferUsages::STORAGE) {
        return Err(Error::BufferUsage { argument, missing: wgpu::BufferUsages::STORAGE, has });
    }
    let alignment = gpu.limits().min_storage_buffer_offset_alignment;
    if slice.offset() % alignment as u64 != 0 {
        return Err(Error::MisalignedOffset { argument, offset: slice.offset(), alignment });
    }
    if slice.size() < required {
        return Err(Error::BufferTooSmall { argument, required, actual: slice.size() });
    }
    Ok(())
}

/// `elems` f32 or i32 elements of a caller's slice from element `start`.
pub(crate) fn sub<'a>(slice: &wgpu::BufferSlice<'a>, start: u64, elems: u64) -> wgpu::BufferBinding<'a> {
    sub_typed(slice, start, elems, DType::F32)
}

/// `elems` elements of type `dtype` from element `start` (which must start a word),
/// rounded up to whole 32-bit words.
pub(crate) fn sub_typed<'a>(
    slice: &wgpu::BufferSlice<'a>,
    start: u64,
    elems: u64,
    dtype: DType,
) -> wgpu::BufferBinding<'a> {
    wgpu::BufferBinding {
        buffer: slice.buffer(),
        offset: slice.offset() + start * dtype.size(),
        size: std::num::NonZeroU64::new(dtype.bytes(elems)),
    }
}

/// A uniform buffer holding `value`, written once at creation.
pub(crate) fn uniform<T: bytemuck::Pod>(gpu: &Gpu, label: &str, value: &T) -> wgpu::Buffer {
    gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// The partials scratch of `count` workgroups.
pub(crate) fn partials_buffer(gpu: &Gpu, count: u32) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("fused-loss partials"),
        size: count.max(1) as u64 * PARTIAL_BYTES,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    })
}

/// Uniforms of `shaders/finalize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct FinalizeParams {
    pub count: u32,
    pub scale: f32,
    pub denominator: f32,
    pub mean_from_denoms: u32,
    pub kept: u32,
    pub kept_from_denoms: u32,
    pub _pad: [u32; 2],
}

/// A bind group from `(binding, buffer range)` pairs.
pub(crate) fn bind_group(
    gpu: &Gpu,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    entries: Vec<(u32, wgpu::BufferBinding)>,
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = entries
        .into_iter()
        .map(|(binding, buffer)| wgpu::BindGroupEntry { binding, resource: wgpu::BindingResource::Buffer(buffer) })
        .collect();
    gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

/// Records `(pipeline, bind group, workgroups)` dispatches, in order, in one compute
/// pass (wgpu orders dispatches within a pass and inserts the barriers between them).
pub(crate) fn record(
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    dispatches: &[(&wgpu::ComputePipeline, &wgpu::BindGroup, u32)],
) {
    let mut pass =
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: None });
    for &(pipeline, group, workgroups) in dispatches {
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, group, &[]);
        pass.dispatch_workgroups(workgroups, 1, 1);
    }
}

/// The caller's 32-byte stats range.
pub(crate) fn stats_binding<'a>(stats: &wgpu::BufferSlice<'a>) -> wgpu::BufferBinding<'a> {
    wgpu::BufferBinding {
        buffer: stats.buffer(),
        offset: stats.offset(),
        size: std::num::NonZeroU64::new(LossStats::SIZE),
    }
}

/// Checks the outputs for reduction `none`: `per_element` of `count` elements is
/// required then (and with a per-class breakdown) and refused otherwise.
pub(crate) fn check_per_element<'a>(
    checks: &mut SliceChecks<'a>,
    spec: &Spec,
    reduction: Reduction,
    slice: &Option<wgpu::BufferSlice<'a>>,
    count: u64,
    per_class: bool,
) -> Result<()> {
    match (slice, reduction == Reduction::None || per_class) {
        (Some(slice), true) => checks.write("per_element", slice, count * ELEM_BYTES),
        (None, true) => Err(Error::MissingArgument {
            argument: "per_element",
            why: "reduction `none` and the per-class breakdown write one loss per element (row-wise losses: per row)",
        }),
        (Some(_), false) => {
            Err(Error::UnsupportedArgument { loss: spec.name, argument: "per_element (reduction is not `none`)" })
        }
        (None, false) => Ok(()),
    }
}

#[cfg(test)]
mod mirrors {
    use super::{FinalizeParams, LossStats, PARTIAL_BYTES, WG_SIZE};
    use crate::shader::{assert_mirrors, reflection};

    #[test]
    fn stats_and_finalize_structs_mirror_the_shader() {
        assert_mirrors!(LossStats, "finalize", "LossStats" {
            value: f32, nonfinite: u32, invalid: u32, denominator: f32, correct: u32, kept: u32,
        });
        assert_mirrors!(FinalizeParams, "finalize", "FinalizeParams" {
            count: u32, scale: f32, denominator: f32, mean_from_denoms: u32, kept: u32, kept_from_denoms: u32,
        });
        assert_eq!(reflection::type_size("finalize", "Partial") as u64, PARTIAL_BYTES);
        assert_eq!(reflection::const_u32("finalize", "WG_SIZE"), WG_SIZE);
    }
}
