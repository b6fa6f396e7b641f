//! GPU side of the elementwise losses (`shaders/lib/pointwise.wgsl` and the files that
//! import it).
//!
//! Per call: one dispatch per chunk of at most [`Gpu::max_binding_bytes`] bytes per
//! operand, then one `finalize` dispatch.

use super::plan::{
    bind_group, check_per_element, loss_param_defines, loss_params_buffer, partials_buffer, stats_binding, sub,
    sub_typed, uniform, Bindings, Dispatch, FinalizeParams, KernelShape, Plan, PlanRequest, Required, ShapePlan,
    SliceChecks, ELEM_BYTES, LOOP_BUDGET, LOSS_PARAMS_BINDING, MAX_GROUPS,
};
use super::{unsupported, Reduction, Shape, WeightLayout};
#[cfg(test)]
use super::{Loss, Spec};
use crate::context::Gpu;
use crate::error::{Error, Result};
use crate::launch::{Launch, PassKind, LANES};
use crate::shader::Defines;
use crate::DType;

/// Words each lane of a block sums (`WORDS_PER_LANE` in `shaders/lib/pointwise.wgsl`):
/// a block of the elementwise pass is `LANES` · this many words, one partial each.
const WORDS_PER_LANE: u64 = 16;
/// Words of one block.
const BLOCK_WORDS: u64 = LANES as u64 * WORDS_PER_LANE;

/// Blocks one invocation of `launch` may walk within LOOP_BUDGET: per block it loops
/// over its lanes' words and their elements, then folds its lanes and the workgroup.
fn blocks_per_invocation(launch: Launch, per_word: u64) -> u64 {
    let per_block = WORDS_PER_LANE * (launch.lanes_per_invocation() * (per_word + 2) + 1) + 2 * 9 + 8;
    LOOP_BUDGET / per_block
}

/// Chunks start on multiples of this many elements, keeping bound offsets aligned (and
/// bf16 words whole).
const CHUNK_ALIGN_ELEMS: u64 = 1024;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ChunkParams {
    len: u32,
    chunk_start: u32,
    partial_base: u32,
    last_dim: u32,
    grad_scale: f32,
    _pad: [u32; 3],
}

/// The binding of the target gradient (`target_grad`, under TARGET_GRAD), passed as the
/// define `TARGET_GRAD_BINDING`.
const TARGET_GRAD_BINDING: u32 = 11;

/// The defines of the target-gradient variant of `spec`'s kernel.
fn target_grad_defines(spec: &super::Spec) -> Defines {
    let mut defines = Defines::new();
    defines.insert("TARGET_GRAD".into(), String::new());
    defines.insert("TARGET_GRAD_BINDING".into(), TARGET_GRAD_BINDING.to_string());
    if spec.target_grad == super::TargetGrad::Negated {
        defines.insert("TARGET_GRAD_NEGATED".into(), String::new());
    }
    defines
}

/// Uniforms of `shaders/column_sums.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ColumnParams {
    len: u32,
    columns: u32,
    first_class: u32,
    accumulate: u32,
}

/// Uniforms of `shaders/zero_on_invalid.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ZeroParams {
    words: u32,
    half_word: u32,
    losses: u32,
    _pad: u32,
}

/// Workgroups of the zeroing pass: it only reads one word unless the call was invalid,
/// when a grid-stride loop zeros the chunk (speed does not matter then).
const ZERO_GROUPS: u32 = 64;

struct Chunk {
    start: u64,
    len: u64,
    groups: u32,
    params: wgpu::Buffer,
    // The chunk's per-class breakdown pass (shaders/column_sums).
    column_params: wgpu::Buffer,
    // The chunk's zeroing pass (shaders/zero_on_invalid), for losses with a domain.
    zero_params: wgpu::Buffer,
}

pub(crate) struct PointwisePlan {
    gpu: Gpu,
    launch: Launch,
    dtype: DType,
    chunks: Vec<Chunk>,
    partials: wgpu::Buffer,
    finalize_params: wgpu::Buffer,
    // The loss's own parameters (none: the loss has none).
    loss_params: Option<wgpu::Buffer>,
    // Compiled in `new` for the declared options: the loss pass, finalize, and the
    // per-class breakdown's column sums when declared.
    pipeline: wgpu::ComputePipeline,
    finalize: wgpu::ComputePipeline,
    column_sums: Option<wgpu::ComputePipeline>,
    // Losses whose inputs have a domain: zeros the outputs of a call that found
    // invalid elements.
    zero_on_invalid: Option<wgpu::ComputePipeline>,
}

/// 1 / the reduction's denominator (1 for `sum` and `none`), and that denominator.
fn mean_scale(reduction: Reduction, shape: &Shape) -> (f64, f64) {
    let denominator = match reduction {
        Reduction::Mean => shape.len() as f64,
        Reduction::BatchMean => shape.batch() as f64,
        Reduction::Sum | Reduction::None => 1.0,
    };
    (1.0 / denominator, denominator)
}

/// Whether the plan reads and writes vec4 words (the length is a multiple of their
/// elements and the handle allows it).
fn vectorised(gpu: &Gpu, shape: &Shape, dtype: DType) -> bool {
    gpu.vector_loads() && (shape.len() as u64).is_multiple_of(dtype.per_word(true))
}

/// The loss pass's defines for the declared options, refusing those the loss does not
/// take.
fn kernel_defines(request: &PlanRequest) -> Result<Defines> {
    let PlanRequest { gpu, loss, spec, reduction, shape, options } = *request;
    let len = shape.len() as u64;
    let last_dim = shape.last_dim() as u64;
    if options.lse || options.accuracy {
        return Err(unsupported(spec, "log-sum-exp or accuracy outputs"));
    }
    let mut defines = loss_param_defines(loss);
    let mut flag = |name: &str| defines.insert(name.to_string(), String::new());
    if let Some(d) = options.dtype.define() {
        flag(d);
    }
    if options.in_place {
        flag("IN_PLACE");
    }
    if vectorised(gpu, shape, options.dtype) {
        flag("VEC4");
    }
    if gpu.subgroups() {
        flag("SUBGROUPS");
    }
    match options.weight {
        Some(_) if !spec.takes_weight => return Err(unsupported(spec, "weight")),
        // A per-class weight of a 1-D input is one per element.
        Some(WeightLayout::PerClass) if last_dim != len => flag("HAS_WEIGHT_BROADCAST"),
        Some(_) => flag("HAS_WEIGHT"),
        None => None,
    };
    if options.pos_weight {
        if !spec.takes_pos_weight {
            return Err(unsupported(spec, "pos_weight"));
        }
        flag("HAS_POS_WEIGHT");
    }
    let none = reduction == Reduction::None;
    if options.upstream {
        flag(if none { "UPSTREAM_ELEMENTWISE" } else { "UPSTREAM_SCALAR" });
    }
    if none {
        flag("REDUCTION_NONE");
    } else if options.per_class {
        flag("STORE_LOSSES");
    }
    if options.target_grad {
        if !spec.target_differentiable() {
            return Err(unsupported(spec, "target_grad (its target is not differentiable)"));
        }
        defines.extend(target_grad_defines(spec));
    }
    if options.per_class && (shape.dims().len() < 2 || last_dim * ELEM_BYTES > gpu.max_binding_bytes()) {
        return Err(Error::InvalidShape {
            shape: shape.dims().to_vec(),
            why: "the per-class breakdown needs (..., C) with at least two dimensions and C within one binding \
                  (for 1-D inputs, reduction `none` gives each element's loss)"
                .into(),
        });
    }
    let broadcasts = options.pos_weight || options.weight == Some(WeightLayout::PerClass);
    if broadcasts && last_dim * ELEM_BYTES > gpu.max_binding_bytes() {
        return Err(Error::InvalidShape {
            shape: shape.dims().to_vec(),
            why: format!("a broadcast operand of {last_dim} elements (the last dimension) exceeds the binding limit"),
        });
    }
    Ok(defines)
}

/// The elementwise kernel shape.
pub(crate) struct Pointwise;

/// What elementwise losses' specs name.
pub(crate) static POINTWISE: Pointwise = Pointwise;

impl KernelShape for Pointwise {
    fn name(&self) -> &'static str {
        "pointwise"
    }
    fn plan(&self, request: &PlanRequest) -> Result<Box<dyn ShapePlan>> {
        Ok(Box::new(PointwisePlan::new(request)?))
    }
    #[cfg(test)]
    fn shader_variants(&self, loss: &Loss, spec: &Spec) -> Vec<(&'static str, &'static str, Defines)> {
        shader_variants(spec, loss)
    }
}

impl PointwisePlan {
    pub(crate) fn new(request: &PlanRequest) -> Result<Self> {
        let PlanRequest { gpu, loss, spec, reduction, shape, options } = *request;
        let dtype = options.dtype;
        let launch = gpu.launch(PassKind::Pointwise, dtype.bytes(shape.len() as u64));
        let mut defines = kernel_defines(request)?;
        defines.extend([launch.define()]);
        let pipeline = request.pipeline(spec.shader, "main", &defines)?;
        let finalize = request.pipeline("finalize", "finalize", &Defines::new())?;
        let column_sums = if options.per_class {
            Some(request.pipeline("column_sums", "column_sums", &Defines::new())?)
        } else {
            None
        };
        let zero_on_invalid = match spec.invalid_means {
            Some(_) => {
                let mut defines = Defines::new();
                if reduction == Reduction::None || options.per_class {
                    defines.insert("LOSSES".into(), String::new());
                }
                if options.target_grad {
                    defines.insert("TARGET_GRAD".into(), String::new());
                }
                Some(request.pipeline("zero_on_invalid", "zero_on_invalid", &defines)?)
            }
            None => None,
        };
        let len = shape.len() as u64;
        // Sized for the f32 operands (weight, per-element losses); typed ones are smaller.
        // Chunks and blocks follow from the shape and the binding limit, never from the
        // launch, so the sums' order does not either.
        let chunk_elems = (gpu.max_binding_bytes() / ELEM_BYTES) / CHUNK_ALIGN_ELEMS * CHUNK_ALIGN_ELEMS;
        let (scale, denominator) = mean_scale(reduction, shape);
        let vector = vectorised(gpu, shape, dtype);
        let per_word = dtype.per_word(vector);
        let mut chunks = Vec::new();
        let mut partial_base = 0u32;
        let mut start = 0u64;
        while start < len {
            let chunk_len = chunk_elems.min(len - start);
            let words = chunk_len.div_ceil(per_word);
            let blocks = words.div_ceil(BLOCK_WORDS).max(1);
            let groups = launch.workgroups(blocks, blocks_per_invocation(launch, per_word));
            let params = ChunkParams {
                len: chunk_len as u32,
                chunk_start: start as u32,
                partial_base,
                last_dim: shape.last_dim().max(1) as u32,
                grad_scale: scale as f32,
                _pad: [0; 3],
            };
            let params = uniform(gpu, "fused-loss chunk params", &params);
            let columns = shape.last_dim().max(1) as u64;
            let column_params = ColumnParams {
                len: chunk_len as u32,
                columns: columns as u32,
                first_class: (start % columns) as u32,
                accumulate: (start > 0) as u32,
            };
            let column_params = uniform(gpu, "fused-loss column params", &column_params);
            let typed_bytes = chunk_len * dtype.size();
            let zero = ZeroParams {
                words: (typed_bytes / 4) as u32,
                half_word: !typed_bytes.is_multiple_of(4) as u32,
                losses: chunk_len as u32,
                _pad: 0,
            };
            let zero_params = uniform(gpu, "fused-loss zero params", &zero);
            chunks.push(Chunk { start, len: chunk_len, groups, params, column_params, zero_params });
            partial_base += blocks as u32;
            start += chunk_len;
        }
        let finalize_values = FinalizeParams {
            count: partial_base,
            scale: scale as f32,
            denominator: denominator as f32,
            mean_from_denoms: 0,
            kept: len as u32,
            kept_from_denoms: 0,
            _pad: [0; 2],
        };
        Ok(PointwisePlan {
            gpu: gpu.clone(),
            launch,
            dtype,
            chunks,
            partials: partials_buffer(gpu, partial_base),
            finalize_params: uniform(gpu, "fused-loss finalize params", &finalize_values),
            loss_params: loss_params_buffer(gpu, loss),
            pipeline,
            finalize,
            column_sums,
            zero_on_invalid,
        })
    }
}

impl ShapePlan for PointwisePlan {
    fn launch(&self) -> Option<(PassKind, Launch)> {
        Some((PassKind::Pointwise, self.launch))
    }

    fn dispatch_count(&self) -> usize {
        let per_chunk = 1 + self.zero_on_invalid.is_some() as usize + self.column_sums.is_some() as usize;
        self.chunks.len() * per_chunk + 1
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
        let len = plan.shape.len() as u64;
        let bytes = len * ELEM_BYTES;
        let typed_bytes = self.dtype.bytes(len);
        let last_dim = plan.shape.last_dim() as u64;
        if required.grad.is_some() {
            checks.read("input", &required.input, typed_bytes)?;
        } else {
            checks.write("input", &required.input, typed_bytes)?;
        }
        checks.read("target", &required.target, typed_bytes)?;
        if let Some(grad) = &required.grad {
            checks.write("grad", grad, typed_bytes)?;
        }
        checks.write("stats", &required.stats, super::LossStats::SIZE)?;
        let weight_layout = plan.options.weight;
        // A per-class weight of a 1-D input is one per element.
        let broadcast_weight = weight_layout == Some(WeightLayout::PerClass) && last_dim != len;
        if let Some(slice) = &bindings.weight {
            checks.read("weight", slice, if broadcast_weight { last_dim } else { len } * ELEM_BYTES)?;
        }
        if let Some(slice) = &bindings.pos_weight {
            checks.read("pos_weight", slice, last_dim * ELEM_BYTES)?;
        }
        let none = plan.reduction == Reduction::None;
        if let Some(slice) = &bindings.upstream {
            checks.read("upstream", slice, if none { bytes } else { ELEM_BYTES })?;
        }
        check_per_element(checks, spec, plan.reduction, &bindings.per_element, len, plan.options.per_class)?;
        if let Some(slice) = &bindings.target_grad {
            checks.write("target_grad", slice, typed_bytes)?;
        }
        if let Some(slice) = &bindings.per_class {
            checks.write("per_class", slice, last_dim * ELEM_BYTES)?;
        }
        checks.refuse_overlaps()?;
        let (pipeline, finalize) = (&self.pipeline, &self.finalize);
        let groups: Vec<wgpu::BindGroup> = self
            .chunks
            .iter()
            .map(|chunk| {
                let (s, n) = (chunk.start, chunk.len);
                let mut entries = vec![
                    (0, chunk.params.as_entire_buffer_binding()),
                    (1, sub_typed(&required.input, s, n, self.dtype)),
                    (2, sub_typed(&required.target, s, n, self.dtype)),
                    (4, self.partials.as_entire_buffer_binding()),
                ];
                if let Some(grad) = &required.grad {
                    entries.push((3, sub_typed(grad, s, n, self.dtype)));
                }
                if let Some(slice) = &bindings.weight {
                    entries.push(if broadcast_weight { (5, sub(slice, 0, last_dim)) } else { (5, sub(slice, s, n)) });
                }
                if let Some(slice) = &bindings.upstream {
                    entries.push(if none { (6, sub(slice, s, n)) } else { (6, sub(slice, 0, 1)) });
                }
                if let Some(slice) = &bindings.per_element {
                    entries.push((7, sub(slice, s, n)));
                }
                if let Some(slice) = &bindings.pos_weight {
                    entries.push((8, sub(slice, 0, last_dim)));
                }
                if let Some(slice) = &bindings.target_grad {
                    entries.push((TARGET_GRAD_BINDING, sub_typed(slice, s, n, self.dtype)));
                }
                if let Some(buffer) = &self.loss_params {
                    entries.push((LOSS_PARAMS_BINDING, buffer.as_entire_buffer_binding()));
                }
                bind_group(gpu, spec.name, pipeline, entries)
            })
            .collect();
        let finalize_group = bind_group(
            gpu,
            "fused-loss finalize",
            finalize,
            vec![
                (0, self.finalize_params.as_entire_buffer_binding()),
                (1, self.partials.as_entire_buffer_binding()),
                (2, stats_binding(&required.stats)),
            ],
        );

        // The breakdown: one column-sum dispatch per chunk, after the chunk's loss pass.
        let columns = match (&bindings.per_class, &bindings.per_element, &self.column_sums) {
            (Some(out), Some(losses), Some(pipeline)) => {
                let groups: Vec<_> = self
                    .chunks
                    .iter()
                    .map(|chunk| {
                        let entries = vec![
                            (0, chunk.column_params.as_entire_buffer_binding()),
                            (1, sub(losses, chunk.start, chunk.len)),
                            (2, sub(out, 0, last_dim)),
                        ];
                        bind_group(gpu, "fused-loss per-class breakdown", pipeline, entries)
                    })
                    .collect();
                Some((pipeline, groups, last_dim.min(MAX_GROUPS as u64) as u32))
            }
            _ => None,
        };
        let mut dispatches: Vec<Dispatch> =
            self.chunks.iter().zip(groups).map(|(chunk, group)| (pipeline.clone(), group, chunk.groups)).collect();
        dispatches.push((finalize.clone(), finalize_group, 1));
        if let Some(zero) = &self.zero_on_invalid {
            let grad = required.grad.as_ref().unwrap_or(&required.input);
            for chunk in &self.chunks {
                let (s, n) = (chunk.start, chunk.len);
                let mut entries = vec![
                    (0, chunk.zero_params.as_entire_buffer_binding()),
                    (1, stats_binding(&required.stats)),
                    (2, sub_typed(grad, s, n, self.dtype)),
                ];
                if let Some(slice) = &bindings.per_element {
                    entries.push((3, sub(slice, s, n)));
                }
                if let Some(slice) = &bindings.target_grad {
                    entries.push((4, sub_typed(slice, s, n, self.dtype)));
                }
                let group = bind_group(gpu, "fused-loss zero on invalid", zero, entries);
                dispatches.push((zero.clone(), group, ZERO_GROUPS));
            }
        }
        if let Some((pipeline, groups, workgroups)) = columns {
            dispatches.extend(groups.into_iter().map(|group| (pipeline.clone(), group, workgroups)));
        }
        Ok(dispatches)
    }
}

/// Every variant of an elementwise loss's shader that `encode` can ask for.
#[cfg(test)]
pub(crate) fn shader_variants(spec: &super::Spec, loss: &Loss) -> Vec<(&'static str, &'static str, Defines)> {
    let with_params = |flags: &mut dyn Iterator<Item = &str>| -> Defines {
        let mut defines = loss_param_defines(loss);
        defines.extend(flags.map(|f| (f.to_string(), String::new())));
        defines
    };
    let weights: &[Option<&str>] =
        if spec.takes_weight { &[None, Some("HAS_WEIGHT"), Some("HAS_WEIGHT_BROADCAST")] } else { &[None] };
    let pos_weights: &[bool] = if spec.takes_pos_weight { &[false, true] } else { &[false] };
    let mut variants = Vec::new();
    // Element type and in-place vary on their own; the operand flags are crossed with f32
    // out-of-place only (scalar and vec4), which keeps the variant count linear in them.
    for dtype in DType::ALL {
        for in_place in [false, true] {
            for vector in [false, true] {
                let flags = [dtype.define(), in_place.then_some("IN_PLACE"), vector.then_some("VEC4")];
                variants.push((spec.shader, "main", with_params(&mut flags.into_iter().flatten())));
            }
        }
    }
    for none in [false, true] {
        for upstream in [None, Some(if none { "UPSTREAM_ELEMENTWISE" } else { "UPSTREAM_SCALAR" })] {
            for weight in weights {
                for &pos_weight in pos_weights {
                    for vector in [false, true] {
                        let flags = [
                            none.then_some("REDUCTION_NONE"),
                            upstream,
                            *weight,
                            pos_weight.then_some("HAS_POS_WEIGHT"),
                            vector.then_some("VEC4"),
                        ];
                        variants.push((spec.shader, "main", with_params(&mut flags.into_iter().flatten())));
                    }
                }
            }
        }
    }
    for vector in [false, true] {
        let mut flags = ["STORE_LOSSES"].into_iter().chain(vector.then_some("VEC4"));
        variants.push((spec.shader, "main", with_params(&mut flags)));
    }
    if spec.target_differentiable() {
        // The target gradient with every element type and the per-element upstream.
        for dtype in DType::ALL {
            for flags in [&[][..], &["REDUCTION_NONE", "UPSTREAM_ELEMENTWISE"]] {
                for vector in [false, true] {
                    let mut flags = flags.iter().copied().chain(dtype.define()).chain(vector.then_some("VEC4"));
                    let mut defines = with_params(&mut flags);
                    defines.extend(target_grad_defines(spec));
                    variants.push((spec.shader, "main", defines));
                }
            }
        }
    }
    variants.push(("finalize", "finalize", Defines::new()));
    variants.push(("column_sums", "column_sums", Defines::new()));
    if spec.invalid_means.is_some() {
        for flags in [&[][..], &["LOSSES"], &["TARGET_GRAD"], &["LOSSES", "TARGET_GRAD"]] {
            let defines = flags.iter().map(|f| (f.to_string(), String::new())).collect();
            variants.push(("zero_on_invalid", "zero_on_invalid", defines));
        }
    }
    variants
}

#[cfg(test)]
mod mirrors {
    use super::{ChunkParams, ColumnParams, ZeroParams};
    use crate::losses::plan::LOSS_PARAMS_BINDING;
    use crate::shader::{assert_mirrors, reflection};

    #[test]
    fn loss_files_declare_their_definitions_parameters() {
        // Each loss's `LossParams` has its definition's parameters (but ignore_index, see
        // `kernel_params`), by name, in order and of their types; a loss without
        // parameters declares none.
        for loss in crate::registry().into_iter().flat_map(|l| l.definition().variations()) {
            let spec = loss.spec();
            let params = crate::losses::plan::kernel_params(&loss);
            let binding = format!("LOSS_PARAMS_BINDING={LOSS_PARAMS_BINDING}");
            let mut defines: Vec<&str> = loss.definition().defines();
            if !params.is_empty() {
                defines.extend(["LOSS_PARAMS", &binding]);
            }
            let defines = &defines[..];
            let declared = reflection::module(spec.shader, defines)
                .types
                .iter()
                .any(|(_, ty)| ty.name.as_deref() == Some("LossParams"));
            assert_eq!(
                declared,
                !params.is_empty(),
                "{}: LossParams declared {declared}, params {params:?}",
                spec.name
            );
            if params.is_empty() {
                continue;
            }
            let fields: Vec<(&str, usize, &str)> =
                params.iter().enumerate().map(|(i, p)| (p.name, 4 * i, p.value.wgsl_type())).collect();
            reflection::assert_struct(spec.shader, defines, "LossParams", &fields, 4 * params.len());
        }
    }

    #[test]
    fn uniform_structs_mirror_the_shaders() {
        assert_mirrors!(ChunkParams, "regression/mse", "Params" {
            len: u32, chunk_start: u32, partial_base: u32, last_dim: u32, grad_scale: f32,
        });
        assert_eq!(reflection::const_u32("regression/mse", "WORDS_PER_LANE") as u64, super::WORDS_PER_LANE);
        assert_mirrors!(ColumnParams, "column_sums", "ColumnParams" {
            len: u32, columns: u32, first_class: u32, accumulate: u32,
        });
        assert_mirrors!(ZeroParams, "zero_on_invalid", "ZeroParams" {
            words: u32, half_word: u32, losses: u32,
        });
        assert_eq!(reflection::const_u32("zero_on_invalid", "WG_SIZE"), crate::losses::plan::WG_SIZE);
    }
}
