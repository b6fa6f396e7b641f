//! The backend side of [`super`]: one burn backend extension, `fused_loss`, implemented on
//! burn's wgpu `CubeBackend` (the fused kernels on burn's own buffers), generated for
//! `Fusion<CubeBackend>` (burn's default: the call joins burn's lazy stream as an opaque
//! custom operation) and written by hand for `Autodiff<B>` (the gradient of the forward
//! pass kept as the backward's state and scaled there by the upstream gradient).
//!
//! Everything the caller can get wrong is checked before this point, by the tensor-level
//! functions of [`super`] and by [`crate::Gpu::plan_for`]: what remains here cannot fail
//! on tensors burn allocated, so a failure is a bug and panics with the core's message
//! (burn's backend operations have no `Result`).

use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::{FloatTensorOps, IntTensorOps};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::{AutoCompiler, CubeBackend, CubeTensor};
use burn::backend::{backend_extension, AutodiffBackend, Backend, ExtensionType, TensorMetadata};
use burn::cubecl::wgpu::WgpuServer;
use burn::tensor::{DType, FloatDType, IntDType, Shape};

use crate::{Bindings, LossStats, Plan, Reduction};

/// An operand that may be absent, a float tensor or an int tensor.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub enum Operand<B: Backend> {
    /// Not passed.
    Absent,
    /// A float tensor (values, weights).
    Float(FloatTensor<B>),
    /// An int tensor (labels).
    Int(IntTensor<B>),
}

/// What one call produces.
#[derive(ExtensionType)]
#[extension_type(fusion)]
pub struct Computed<B: Backend> {
    /// The reduced loss (`[1]`, f32), or the per-element (per-row) losses for `none`
    /// (f32, flattened).
    pub loss: FloatTensor<B>,
    /// The [`LossStats`] block, 8 words as i32 (the value's f32 bits first).
    pub stats: IntTensor<B>,
    /// d(loss)/d(input): the input's shape and element type.
    pub grad: FloatTensor<B>,
    /// d(loss)/d(target) when the call asked for it: the target's shape and type.
    #[extension_type]
    pub target_grad: Operand<B>,
}

/// The host side of one call: the validated plan and what the outputs look like.
#[derive(Clone)]
pub struct Call {
    pub(super) plan: Arc<Plan>,
    /// The shape of the per-element (per-row) losses of `none` (flattened in the output).
    pub(super) unreduced: Vec<usize>,
    /// The shape the upstream gradient takes before it multiplies the kept gradients:
    /// all ones for a reduced loss, the per-element shape for an elementwise `none`,
    /// `(N, 1, d1, ...)` for a row-wise `none`.
    pub(super) upstream_shape: Vec<usize>,
    /// Whether the call writes the target's gradient.
    pub(super) target_grad: bool,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("loss", &self.plan.loss().name())
            .field("reduction", &self.plan.reduction())
            .field("shape", &self.plan.shape().dims())
            .field("dtype", &self.plan.dtype())
            .field("target_grad", &self.target_grad)
            .finish()
    }
}

impl Call {
    fn loss_shape(&self) -> Shape {
        match self.plan.reduction() {
            Reduction::None => Shape::new([self.unreduced.iter().product::<usize>()]),
            _ => Shape::new([1]),
        }
    }
}

fn computed_meta(
    input: &TensorSpec,
    target: &OperandMetadata,
    _weight: &OperandMetadata,
    _pos_weight: &OperandMetadata,
    call: &Call,
) -> ComputedMetadata {
    let target_grad = match target {
        OperandMetadata::Float(spec) if call.target_grad => OperandMetadata::Float(spec.clone()),
        _ => OperandMetadata::Absent,
    };
    ComputedMetadata {
        loss: TensorSpec::new(call.loss_shape(), DType::F32),
        stats: TensorSpec::new(Shape::new([8]), DType::I32),
        grad: input.clone(),
        target_grad,
    }
}

/// A planned class-weights computation ([`crate::ClassWeights`]).
#[derive(Clone)]
pub struct WeightsCall {
    pub(super) plan: Arc<crate::ClassWeights>,
    pub(super) classes: usize,
}

impl fmt::Debug for WeightsCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeightsCall").field("classes", &self.classes).finish()
    }
}

fn weights_meta(_labels: &TensorSpec, call: &WeightsCall) -> TensorSpec {
    TensorSpec::new(Shape::new([call.classes]), DType::F32)
}

/// The operations: a loss's value, gradient and statistics; class weights from labels.
#[backend_extension(Cube, Fusion, Autodiff)]
pub trait FusedLossOps: Backend {
    /// Records `call` on the operands; see [`Computed`].
    #[fusion(meta = computed_meta)]
    fn fused_loss(
        input: FloatTensor<Self>,
        #[extension_type] target: Operand<Self>,
        #[extension_type] weight: Operand<Self>,
        #[extension_type] pos_weight: Operand<Self>,
        call: Call,
    ) -> Computed<Self>;

    /// Per-class weights (`[C]`, f32) from the labels' histogram.
    #[fusion(meta = weights_meta)]
    fn fused_class_weights(labels: IntTensor<Self>, call: WeightsCall) -> FloatTensor<Self>;
}

/// A tensor's storage, as wgpu sees it, contiguous and aligned for binding.
struct Bound {
    tensor: CubeTensor,
    buffer: burn::cubecl::wgpu::WgpuResource,
}

/// The wgpu buffer range of `tensor`, made contiguous first; copied when burn placed it at
/// an offset wgpu cannot bind, and padded by one element when a 16-bit tensor of odd
/// length ends flush with its buffer (the kernels read whole 32-bit words).
fn bind(tensor: CubeTensor, alignment: u64) -> Bound {
    let resource = |t: &CubeTensor| {
        t.client
            .get_resource::<WgpuServer<AutoCompiler>>(t.handle.clone())
            .expect("a tensor of burn's wgpu runtime has a wgpu resource")
            .resource()
            .clone()
    };
    let mut tensor = burn_cubecl::kernel::into_contiguous(tensor);
    let elements = tensor.meta.shape().num_elements();
    let needed = match tensor.dtype {
        DType::F16 | DType::BF16 => crate::DType::bytes(core_dtype(tensor.dtype), elements as u64),
        dtype => (dtype.size() * elements) as u64,
    }
    .max(4);
    for _ in 0..2 {
        let buffer = resource(&tensor);
        let aligned = buffer.offset.is_multiple_of(alignment);
        let fits = buffer.offset + needed <= buffer.buffer.size();
        if aligned && fits {
            return Bound { tensor, buffer };
        }
        tensor = if fits {
            // A view at an unaligned offset: burn's copy places it in a fresh allocation.
            tensor.copy()
        } else {
            let device = tensor.device.clone();
            let dtype = float_dtype(tensor.dtype);
            let flat = CubeBackend::float_reshape(tensor, Shape::new([elements]));
            let pad = CubeBackend::float_zeros(Shape::new([1]), &device, dtype);
            CubeBackend::float_cat(vec![flat, pad], 0)
        };
    }
    let buffer = resource(&tensor);
    assert!(
        buffer.offset.is_multiple_of(alignment) && buffer.offset + needed <= buffer.buffer.size(),
        "burn placed a fresh tensor at byte {} of a {}-byte buffer, which wgpu cannot bind (alignment {alignment})",
        buffer.offset,
        buffer.buffer.size()
    );
    Bound { tensor, buffer }
}

fn slice(bound: &Bound, bytes: u64) -> wgpu::BufferSlice<'_> {
    let start = bound.buffer.offset;
    bound.buffer.buffer.slice(start..start + bytes.max(4))
}

fn empty(like: &CubeTensor, shape: Shape, dtype: DType) -> CubeTensor {
    let bytes = crate::DType::bytes(core_dtype(dtype), shape.num_elements() as u64).max(4);
    let handle = like.client.empty(bytes as usize);
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), shape, handle, dtype)
}

/// The core's element type of a burn float type the tensor-level checks admitted.
pub(super) fn core_dtype(dtype: DType) -> crate::DType {
    match dtype {
        DType::F16 => crate::DType::F16,
        DType::BF16 => crate::DType::BF16,
        _ => crate::DType::F32,
    }
}

fn float_dtype(dtype: DType) -> FloatDType {
    match dtype {
        DType::F16 => FloatDType::F16,
        DType::BF16 => FloatDType::BF16,
        _ => FloatDType::F32,
    }
}

impl FusedLossOps for CubeBackend {
    fn fused_class_weights(labels: IntTensor<Self>, call: WeightsCall) -> FloatTensor<Self> {
        class_weights_on_gpu(labels, &call)
    }

    fn fused_loss(
        input: FloatTensor<Self>,
        target: Operand<Self>,
        weight: Operand<Self>,
        pos_weight: Operand<Self>,
        call: Call,
    ) -> Computed<Self> {
        let plan = &call.plan;
        let gpu = super::gpu_of_cube(&input.device).expect("the tensor-level call checked the device");
        let alignment = gpu.limits().min_storage_buffer_offset_alignment as u64;
        let dtype = input.dtype;
        let elements = input.meta.shape().num_elements() as u64;
        let typed_bytes = core_dtype(dtype).bytes(elements);

        let input_shape = input.meta.shape().clone();
        let input = bind(input, alignment);
        let (target, target_is_float) = match target {
            Operand::Float(t) => (bind(t, alignment), true),
            Operand::Int(t) => {
                let t = if t.dtype == DType::I32 { t } else { CubeBackend::int_cast(t, IntDType::I32) };
                (bind(t, alignment), false)
            }
            Operand::Absent => unreachable!("every loss has a target"),
        };
        let target_shape = target.tensor.meta.shape().clone();
        let target_bytes = if target_is_float {
            core_dtype(target.tensor.dtype).bytes(target_shape.num_elements() as u64)
        } else {
            4 * target_shape.num_elements() as u64
        };
        let f32_operand = |operand: Operand<Self>| match operand {
            Operand::Float(t) => {
                let t = if t.dtype == DType::F32 { t } else { CubeBackend::float_cast(t, FloatDType::F32) };
                Some(bind(t, alignment))
            }
            _ => None,
        };
        let weight = f32_operand(weight);
        let pos_weight = f32_operand(pos_weight);

        let grad = bind(empty(&input.tensor, input_shape, dtype), alignment);
        let stats = bind(empty(&input.tensor, Shape::new([8]), DType::I32), alignment);
        let none = plan.reduction() == Reduction::None;
        // `none`: the per-element losses. A reduced loss is the stats block's first word,
        // a [1] f32 view of the block's storage (a copy would be from a pooled buffer
        // into itself, which wgpu refuses).
        let loss = if none {
            bind(empty(&input.tensor, call.loss_shape(), DType::F32), alignment).tensor
        } else {
            let block = &stats.tensor;
            CubeTensor::new_contiguous(
                block.client.clone(),
                block.device.clone(),
                Shape::new([1]),
                block.handle.clone(),
                DType::F32,
            )
        };
        let target_grad = (call.target_grad && target_is_float)
            .then(|| bind(empty(&input.tensor, target_shape.clone(), target.tensor.dtype), alignment));

        // burn's pending work is submitted first, so that this call reads what it wrote;
        // burn's later work is submitted after this call on the same queue.
        input.tensor.client.flush().expect("flushing burn's pending work");

        let mut bindings = Bindings::new()
            .input(slice(&input, typed_bytes))
            .grad(slice(&grad, typed_bytes))
            .stats(slice(&stats, LossStats::SIZE));
        bindings = if target_is_float {
            bindings.target(slice(&target, target_bytes))
        } else {
            bindings.labels(slice(&target, target_bytes))
        };
        bindings.weight = weight.as_ref().map(|w| slice(w, 4 * w.tensor.meta.shape().num_elements() as u64));
        bindings.pos_weight = pos_weight.as_ref().map(|w| slice(w, 4 * w.tensor.meta.shape().num_elements() as u64));
        let per_element = none.then(|| bind(loss.clone(), alignment));
        let loss_elements = call.loss_shape().num_elements() as u64;
        bindings.per_element = per_element.as_ref().map(|p| slice(p, 4 * loss_elements));
        bindings.target_grad = target_grad.as_ref().map(|t| slice(t, target_bytes));

        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("fused-loss from burn") });
        if let Err(error) = plan.encode(&mut encoder, &bindings) {
            panic!("fused-loss: {error}");
        }
        gpu.queue().submit([encoder.finish()]);

        Computed {
            loss,
            stats: stats.tensor,
            grad: grad.tensor,
            target_grad: match target_grad {
                Some(t) => Operand::Float(t.tensor),
                None => Operand::Absent,
            },
        }
    }
}

fn class_weights_on_gpu(labels: CubeTensor, call: &WeightsCall) -> CubeTensor {
    let gpu = super::gpu_of_cube(&labels.device).expect("the tensor-level call checked the device");
    let alignment = gpu.limits().min_storage_buffer_offset_alignment as u64;
    let labels = if labels.dtype == DType::I32 { labels } else { CubeBackend::int_cast(labels, IntDType::I32) };
    let rows = labels.meta.shape().num_elements() as u64;
    let labels = bind(labels, alignment);
    let weights = bind(empty(&labels.tensor, Shape::new([call.classes]), DType::F32), alignment);
    labels.tensor.client.flush().expect("flushing burn's pending work");
    let mut encoder = gpu
        .device()
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("fused-loss class weights from burn") });
    if let Err(error) =
        call.plan.encode(&mut encoder, slice(&labels, 4 * rows), None, slice(&weights, 4 * call.classes as u64))
    {
        panic!("fused-loss: {error}");
    }
    gpu.queue().submit([encoder.finish()]);
    weights.tensor
}

/// The backward of a call with `N` differentiable operands (the input; the target too
/// when the call wrote its gradient): each kept gradient times the upstream gradient.
#[derive(Debug)]
struct FusedBackward<const N: usize>;

/// The kept gradients, in parent order, and the shape the upstream takes.
#[derive(Clone, Debug)]
struct Kept<B: Backend> {
    grads: Vec<FloatTensor<B>>,
    upstream_shape: Vec<usize>,
}

impl<B: Backend, const N: usize> Backward<B, N> for FusedBackward<N> {
    type State = Kept<B>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let upstream = grads.consume::<B>(&ops.node);
        let upstream = B::float_reshape(upstream, Shape::from(ops.state.upstream_shape.clone()));
        for (parent, kept) in ops.parents.into_iter().zip(ops.state.grads) {
            let Some(parent) = parent else { continue };
            let dtype = kept.dtype();
            let upstream = if upstream.dtype() == dtype {
                upstream.clone()
            } else {
                B::float_cast(upstream.clone(), float_dtype(dtype))
            };
            grads.register::<B>(parent.id, B::float_mul(kept, upstream));
        }
    }
}

impl<B: Backend + FusedLossOps, C: CheckpointStrategy> FusedLossOps for Autodiff<B, C> {
    fn fused_class_weights(labels: IntTensor<Self>, call: WeightsCall) -> FloatTensor<Self> {
        // Weights are constants (PyTorch's `weight`): no graph.
        <Self as AutodiffBackend>::from_inner(B::fused_class_weights(labels, call))
    }

    fn fused_loss(
        input: FloatTensor<Self>,
        target: Operand<Self>,
        weight: Operand<Self>,
        pos_weight: Operand<Self>,
        call: Call,
    ) -> Computed<Self> {
        let constant = |operand: Operand<Self>| match operand {
            Operand::Float(t) => Operand::Float(t.into_primitive()),
            Operand::Int(t) => Operand::Int(t),
            Operand::Absent => Operand::Absent,
        };
        let (weight, pos_weight) = (constant(weight), constant(pos_weight));
        let upstream_shape = call.upstream_shape.clone();
        let finish = |computed: Computed<B>, loss: FloatTensor<Self>| Computed {
            loss,
            stats: computed.stats,
            grad: <Self as AutodiffBackend>::from_inner(computed.grad),
            target_grad: match computed.target_grad {
                Operand::Float(t) => Operand::Float(<Self as AutodiffBackend>::from_inner(t)),
                _ => Operand::Absent,
            },
        };
        match target {
            Operand::Float(target) if call.target_grad => {
                let prep = FusedBackward::<2>.prepare::<C>([input.node(), target.node()]).compute_bound().stateful();
                let computed = B::fused_loss(
                    input.into_primitive(),
                    Operand::Float(target.into_primitive()),
                    weight,
                    pos_weight,
                    call,
                );
                match prep {
                    OpsKind::Tracked(prep) => {
                        let target_grad = match &computed.target_grad {
                            Operand::Float(t) => t.clone(),
                            _ => unreachable!("the call asked for the target's gradient"),
                        };
                        let kept = Kept { grads: vec![computed.grad.clone(), target_grad], upstream_shape };
                        let loss = prep.finish(kept, computed.loss.clone());
                        finish(computed, loss)
                    }
                    OpsKind::UnTracked(prep) => {
                        let loss = prep.finish(computed.loss.clone());
                        finish(computed, loss)
                    }
                }
            }
            target => {
                let prep = FusedBackward::<1>.prepare::<C>([input.node()]).compute_bound().stateful();
                let computed = B::fused_loss(input.into_primitive(), constant(target), weight, pos_weight, call);
                match prep {
                    OpsKind::Tracked(prep) => {
                        let kept = Kept { grads: vec![computed.grad.clone()], upstream_shape };
                        let loss = prep.finish(kept, computed.loss.clone());
                        finish(computed, loss)
                    }
                    OpsKind::UnTracked(prep) => {
                        let loss = prep.finish(computed.loss.clone());
                        finish(computed, loss)
                    }
                }
            }
        }
    }
}
