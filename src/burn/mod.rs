//! Every registry loss on burn tensors (feature `burn`, burn 0.22 on its wgpu backend).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use burn::backend::wgpu::WgpuDevice;
//! # use burn::tensor::{Int, Tensor};
//! let device = fused_loss::burn::device(WgpuDevice::default())?.autodiff(); // once, before burn uses it
//! # let logits = Tensor::<2>::zeros([4, 3], &device).require_grad();
//! # let labels = Tensor::<1, Int>::zeros([4], &device);
//! let loss = fused_loss::burn::cross_entropy(logits, labels)?; // a Tensor<1>, as burn's
//! let grads = loss.backward();
//! # Ok(())
//! # }
//! ```
//!
//! - **One pass.** The call records the fused kernel into burn's queue, after burn's
//!   pending work (a flush, no CPU sync), on burn's own buffers (pooled: operands may
//!   share one `wgpu::Buffer`, [`crate::Options::shared_buffers`]). The value and the
//!   gradient are computed together; on an autodiff device the gradient is kept for the
//!   backward, which multiplies it by the upstream gradient on the GPU: nothing is
//!   recomputed and nothing read back. A float target of a loss that differentiates it
//!   (JSD, KL, soft-target cross-entropy, ...) gets its gradient too when it requires one.
//! - **Backends.** burn's default `Wgpu` (fusion on: the call is an opaque custom
//!   operation of burn's lazy stream) and the plain `CubeBackend`, with and without
//!   `Autodiff`. The feature turns on burn's `fusion` (burn's default); the un-fused
//!   implementation is the same code, tested directly on `CubeBackend`.
//! - **Element types.** f32, f16 and bf16 inputs (f16 needs the adapter's `SHADER_F16`).
//!   A float target is cast to the input's type, weights to f32, int labels to i32, on the
//!   device. The loss is f32 whatever the input's type.
//! - **Errors.** Every check (device, element type, shapes, parameters, limits) runs
//!   before anything is recorded and comes back as [`crate::Error`]. Invalid *values*
//!   (labels out of range, probabilities outside [0, 1]) are found on the GPU: the call
//!   then writes a zero gradient and counts them in the [`Stats`] of
//!   [`FusedLoss::compute`] (reading them is a sync, so the plain calls do not).
//! - **Devices.** fused-loss needs the `wgpu::Device` behind a burn device, which burn
//!   does not hand out: create the device through [`device`] (or [`register`] a
//!   `WgpuSetup` you made yourself) before burn first uses it.

mod ops;

use std::sync::{Arc, Mutex};

use burn::backend::wgpu::{graphics::AutoGraphicsApi, RuntimeOptions, WgpuDevice, WgpuSetup};
use burn::backend::DispatchDevice;
use burn::tensor::{DType as BurnDType, Device, Float, Int, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::{Gpu, Loss, LossStats, Options, Plan, Reduction, Shape, WeightLayout};
use ops::{Call, FusedLossOps, Operand, WeightsCall};

/// A burn device fused-loss can reach, with its plans.
struct Registered {
    device: WgpuDevice,
    gpu: Gpu,
    plans: Vec<(PlanKey, Arc<Plan>)>,
}

#[derive(PartialEq)]
struct PlanKey {
    loss: Loss,
    reduction: Reduction,
    dims: Vec<usize>,
    options: Options,
}

/// Plans kept per device: a training loop calls a few shapes over and over.
const PLANS_PER_DEVICE: usize = 64;

static REGISTERED: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<Registered>> {
    // A panic elsewhere while the lock was held leaves the list itself intact.
    REGISTERED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets up `device` in burn's wgpu runtime (burn's `init_setup`, with the adapter's
/// limits and features as burn requests them) and makes it reachable for fused-loss.
/// Call it before burn first uses the device (burn sets a device up lazily, and then
/// keeps its `wgpu::Device` to itself); calling it again for the same device returns it.
///
/// ```no_run
/// # fn main() -> Result<(), fused_loss::Error> {
/// # use burn::backend::wgpu::WgpuDevice;
/// # use burn::tensor::Tensor;
/// let device = fused_loss::burn::device(WgpuDevice::default())?;
/// let x = Tensor::<2>::zeros([4, 3], &device);
/// # Ok(())
/// # }
/// ```
pub fn device(device: WgpuDevice) -> Result<Device> {
    // One setup at a time: two threads asking for one device must not both set it up.
    static SETTING_UP: Mutex<()> = Mutex::new(());
    let _one_at_a_time = SETTING_UP.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if registry().iter().any(|r| r.device == device) {
        return Ok(Device::from(device));
    }
    let setup =
        burn::backend::wgpu::try_init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default()).map_err(|e| {
            Error::BurnSetup(format!("{e} (fused_loss::burn::device must run before burn first uses {device:?})"))
        })?;
    Ok(register(&setup, device))
}

/// Makes a device you set up yourself reachable: `setup` is the `WgpuSetup` you gave
/// burn's `init_device` (or got from `init_setup`), `device` what burn returned for it.
/// Registering the same device again replaces nothing.
pub fn register(setup: &WgpuSetup, device: WgpuDevice) -> Device {
    let mut registered = registry();
    if !registered.iter().any(|r| r.device == device) {
        let gpu = Gpu::from_device(setup.device.clone(), setup.queue.clone());
        registered.push(Registered { device: device.clone(), gpu, plans: Vec::new() });
    }
    Device::from(device)
}

/// The fused-loss [`Gpu`] of a burn device set up by [`device`] or [`register`]: the
/// embedding path (`Gpu::plan`, `Plan::encode`) on burn's device and queue.
pub fn gpu(device: &Device) -> Result<Gpu> {
    let wgpu_device = wgpu_device_of("device", device)?;
    gpu_of_wgpu("device", &wgpu_device)
}

fn wgpu_device_of(argument: &'static str, device: &Device) -> Result<WgpuDevice> {
    let mut dispatch = device.as_dispatch();
    if let DispatchDevice::Autodiff(inner) = dispatch {
        dispatch = inner;
    }
    match dispatch {
        DispatchDevice::Cube(burn::cubecl::Device::Wgpu(wgpu_device)) => Ok(wgpu_device.clone()),
        #[allow(unreachable_patterns)]
        other => Err(Error::Device { argument, why: format!("{other:?} is not a wgpu device") }),
    }
}

fn gpu_of_wgpu(argument: &'static str, device: &WgpuDevice) -> Result<Gpu> {
    registry().iter().find(|r| r.device == *device).map(|r| r.gpu.clone()).ok_or_else(|| Error::Device {
        argument,
        why: format!(
            "{device:?} was not set up for fused-loss: create it with fused_loss::burn::device(..) \
             or pass its WgpuSetup to fused_loss::burn::register(..) before burn uses it"
        ),
    })
}

/// The registered `Gpu` of a cube device (for the backend operation).
fn gpu_of_cube(device: &burn::cubecl::Device) -> Result<Gpu> {
    match device {
        burn::cubecl::Device::Wgpu(wgpu_device) => gpu_of_wgpu("input", wgpu_device),
        #[allow(unreachable_patterns)]
        other => Err(Error::Device { argument: "input", why: format!("{other:?} is not a wgpu device") }),
    }
}

fn cached_plan(device: &WgpuDevice, key: PlanKey) -> Result<Arc<Plan>> {
    let gpu = {
        let registered = registry();
        let entry = registered.iter().find(|r| r.device == *device).expect("checked by gpu_of_wgpu");
        if let Some((_, plan)) = entry.plans.iter().find(|(k, _)| *k == key) {
            return Ok(plan.clone());
        }
        entry.gpu.clone()
    };
    // Planning compiles pipelines on first use: not under the lock.
    let plan = Arc::new(gpu.plan_for(key.loss.clone(), key.reduction, &Shape::new(&key.dims), &key.options)?);
    let mut registered = registry();
    if let Some(entry) = registered.iter_mut().find(|r| r.device == *device) {
        if entry.plans.len() >= PLANS_PER_DEVICE {
            entry.plans.remove(0);
        }
        entry.plans.push((key, plan.clone()));
    }
    Ok(plan)
}

/// A burn tensor of any rank and kind, as the call sees it.
#[derive(Clone)]
struct Captured {
    tensor: burn::backend::DispatchTensor,
    dims: Vec<usize>,
    dtype: BurnDType,
    device: Device,
    float: bool,
    requires_grad: bool,
}

/// A loss's target: a float tensor (values, distributions) or an int tensor (labels), of
/// any rank.
pub trait Target: sealed::Sealed {
    #[doc(hidden)]
    fn capture(self) -> CapturedTarget;
}

/// A target as the call sees it (opaque).
#[doc(hidden)]
pub struct CapturedTarget(Captured);

mod sealed {
    pub trait Sealed {}
    impl<const D: usize> Sealed for burn::tensor::Tensor<D, burn::tensor::Float> {}
    impl<const D: usize> Sealed for burn::tensor::Tensor<D, burn::tensor::Int> {}
}

impl<const D: usize> Target for Tensor<D, Float> {
    fn capture(self) -> CapturedTarget {
        CapturedTarget(capture_float(self))
    }
}

impl<const D: usize> Target for Tensor<D, Int> {
    fn capture(self) -> CapturedTarget {
        CapturedTarget(Captured {
            dims: self.dims().to_vec(),
            dtype: self.dtype(),
            device: self.device(),
            float: false,
            requires_grad: false,
            tensor: self.into_dispatch(),
        })
    }
}

fn capture_float<const D: usize>(tensor: Tensor<D>) -> Captured {
    Captured {
        dims: tensor.dims().to_vec(),
        dtype: tensor.dtype(),
        device: tensor.device(),
        float: true,
        requires_grad: tensor.is_require_grad(),
        tensor: tensor.into_dispatch(),
    }
}

/// A weight: a constant of the call (no gradient flows into it, as PyTorch's `weight`).
fn capture_constant<const D: usize>(tensor: Tensor<D>) -> Captured {
    Captured { requires_grad: false, ..capture_float(tensor) }
}

/// A float tensor cast to `dtype` on its device (autodiff-aware: burn's own cast).
fn cast_float(captured: Captured, dtype: BurnDType) -> Captured {
    if captured.dtype == dtype {
        return captured;
    }
    // burn's own cast on the primitive: elementwise, on the device, autodiff-aware.
    use burn::backend::ops::FloatTensorOps;
    let tensor = burn::backend::Dispatch::float_cast(captured.tensor, float_dtype(dtype));
    Captured { tensor, dtype, ..captured }
}

fn float_dtype(dtype: BurnDType) -> burn::tensor::FloatDType {
    match dtype {
        BurnDType::F16 => burn::tensor::FloatDType::F16,
        BurnDType::BF16 => burn::tensor::FloatDType::BF16,
        _ => burn::tensor::FloatDType::F32,
    }
}

/// A loss call on burn tensors, with the options of the core API: the loss, the
/// reduction (`mean` unless set), a class or element weight and a `pos_weight`.
///
/// ```no_run
/// # fn main() -> Result<(), fused_loss::Error> {
/// # use burn::backend::wgpu::WgpuDevice;
/// # use burn::tensor::{Int, Tensor};
/// # use fused_loss::{burn::FusedLoss, Loss};
/// # let device = fused_loss::burn::device(WgpuDevice::default())?;
/// # let (logits, labels) = (Tensor::<2>::zeros([4, 3], &device), Tensor::<1, Int>::zeros([4], &device));
/// # let class_weights = Tensor::<1>::ones([3], &device);
/// let loss = FusedLoss::new(Loss::focal().gamma(2.0)).weight(class_weights).forward(logits, labels)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FusedLoss {
    loss: Loss,
    reduction: Reduction,
    weight: Option<Captured>,
    pos_weight: Option<Captured>,
}

impl std::fmt::Debug for FusedLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedLoss")
            .field("loss", &self.loss.name())
            .field("parameters", &self.loss.parameters())
            .field("reduction", &self.reduction)
            .field("weight", &self.weight.as_ref().map(|w| w.dims.clone()))
            .field("pos_weight", &self.pos_weight.as_ref().map(|w| w.dims.clone()))
            .finish()
    }
}

/// What [`FusedLoss::compute`] returns: the loss and the gradients it computed, without
/// autodiff, plus the call's statistics.
#[derive(Clone, Debug)]
pub struct Computed<const D: usize> {
    /// As [`FusedLoss::forward`].
    pub loss: Tensor<1>,
    /// d(loss)/d(input) (for `none`: of the sum of the per-element losses).
    pub grad: Tensor<D>,
    /// d(loss)/d(target), flattened, when the target is a float tensor of a loss that
    /// differentiates it.
    pub target_grad: Option<Tensor<1>>,
    /// The call's [`LossStats`], on the device.
    pub stats: Stats,
}

/// A call's [`LossStats`] block, on the device until read.
#[derive(Clone, Debug)]
pub struct Stats(Tensor<1, Int>);

impl Stats {
    /// Reads the block (a sync with the device).
    pub fn read(self) -> Result<LossStats> {
        let data: TensorData = self.0.into_data();
        let words: Vec<i64> = data.iter::<i64>().collect();
        let mut block = [0u32; 8];
        for (word, value) in block.iter_mut().zip(words) {
            *word = value as u32;
        }
        Ok(bytemuck::cast(block))
    }

    /// The block as burn gives it: 8 i32 words, the value's f32 bits first.
    pub fn into_tensor(self) -> Tensor<1, Int> {
        self.0
    }
}

impl FusedLoss {
    /// `loss` with reduction `mean`, no weights.
    pub fn new(loss: impl Into<Loss>) -> Self {
        FusedLoss { loss: loss.into(), reduction: Reduction::Mean, weight: None, pos_weight: None }
    }

    /// Sets the reduction.
    pub fn reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// A weight: for row-wise losses one per class `(C)` (PyTorch's `weight`); for
    /// elementwise losses one per element (the input's shape) or one per last-dimension
    /// class `(C)`, broadcast as PyTorch broadcasts a 1-D weight. Cast to f32.
    pub fn weight<const D: usize>(mut self, weight: Tensor<D>) -> Self {
        self.weight = Some(capture_constant(weight));
        self
    }

    /// BCE-with-logits' `pos_weight`, one per last-dimension class `(C)`. Cast to f32.
    pub fn pos_weight(mut self, pos_weight: Tensor<1>) -> Self {
        self.pos_weight = Some(capture_constant(pos_weight));
        self
    }

    /// The loss: `[1]` for `mean`, `sum` and `batchmean`; for `none` the per-element
    /// (row-wise: per-row) losses, flattened (see [`FusedLoss::forward_unreduced`] for
    /// PyTorch's shape). On an autodiff device the result is tracked.
    pub fn forward<const D: usize>(&self, input: Tensor<D>, target: impl Target) -> Result<Tensor<1>> {
        Ok(self.call(input, target)?.loss)
    }

    /// Reduction `none` with PyTorch's shape: the input's for elementwise losses,
    /// `(N, d1, ...)` for row-wise ones. `R` must be that rank.
    pub fn forward_unreduced<const D: usize, const R: usize>(
        &self,
        input: Tensor<D>,
        target: impl Target,
    ) -> Result<Tensor<R>> {
        let spec = self.loss.validate()?;
        let dims = input.dims().to_vec();
        let shape = unreduced_shape(&spec, &dims);
        if shape.len() != R {
            return Err(Error::InvalidShape {
                shape: dims,
                why: format!("{}'s unreduced losses have rank {}, not {R}", spec.name, shape.len()),
            });
        }
        let loss = self.clone().reduction(Reduction::None).call(input, target)?.loss;
        Ok(loss.reshape::<R, _>(<[usize; R]>::try_from(shape.as_slice()).expect("rank checked")))
    }

    /// The loss, the gradients and the statistics, without autodiff: for training loops
    /// that apply the gradient themselves, and for reading the call's counts.
    pub fn compute<const D: usize>(&self, input: Tensor<D>, target: impl Target) -> Result<Computed<D>> {
        self.call(input, target)
    }

    fn call<const D: usize>(&self, input: Tensor<D>, target: impl Target) -> Result<Computed<D>> {
        let spec = self.loss.validate()?;
        let input = capture_float(input);
        let CapturedTarget(target) = target.capture();
        if !matches!(input.dtype, BurnDType::F32 | BurnDType::F16 | BurnDType::BF16) {
            return Err(Error::ElementType {
                argument: "input",
                actual: format!("{:?}", input.dtype),
                expected: "f32, f16 or bf16",
            });
        }
        if input.dims.len() > 8 {
            return Err(Error::InvalidShape {
                shape: input.dims.clone(),
                why: "ranks above 8 are not supported".into(),
            });
        }
        let wgpu_device = wgpu_device_of("input", &input.device)?;
        gpu_of_wgpu("input", &wgpu_device)?;
        refuse_unstored_type(&input.device, input.dtype)?;
        let same_device = |argument: &'static str, device: &Device| {
            if *device == input.device {
                Ok(())
            } else {
                Err(Error::Device {
                    argument,
                    why: format!("on {:?}, but the input is on {:?}", device.as_dispatch(), input.device.as_dispatch()),
                })
            }
        };
        same_device("target", &target.device)?;

        // The target: labels or values, of the shape the loss reads.
        let shape = Shape::new(&input.dims);
        let labels_per_row = spec.labels_per_row(shape.classes());
        let wants_labels = labels_per_row > 0;
        let expected_target: Vec<usize> =
            if wants_labels && labels_per_row == 1 { unreduced_shape(&spec, &input.dims) } else { input.dims.clone() };
        match (wants_labels, target.float) {
            (true, true) => {
                return Err(Error::UnsupportedArgument {
                    loss: spec.name,
                    argument: "a float target (it takes int labels)",
                })
            }
            (false, false) => {
                return Err(Error::UnsupportedArgument {
                    loss: spec.name,
                    argument: "int labels (it takes a float target)",
                })
            }
            _ => {}
        }
        if !target.float
            && !matches!(
                target.dtype,
                BurnDType::I32
                    | BurnDType::I64
                    | BurnDType::I16
                    | BurnDType::I8
                    | BurnDType::U32
                    | BurnDType::U16
                    | BurnDType::U8
                    | BurnDType::U64
            )
        {
            return Err(Error::ElementType {
                argument: "labels",
                actual: format!("{:?}", target.dtype),
                expected: "an int type",
            });
        }
        if target.float && !matches!(target.dtype, BurnDType::F32 | BurnDType::F16 | BurnDType::BF16) {
            return Err(Error::ElementType {
                argument: "target",
                actual: format!("{:?}", target.dtype),
                expected: "f32, f16 or bf16",
            });
        }
        if target.dims != expected_target {
            return Err(Error::InvalidShape {
                shape: target.dims.clone(),
                why: format!("{}'s target for input {:?} must have shape {expected_target:?}", spec.name, input.dims),
            });
        }
        let target = if target.float { cast_float(target, input.dtype) } else { target };
        let target_grad = target.float && spec.target_differentiable() && target.requires_grad;

        // Weights: f32, of a shape the loss takes.
        let mut options = Options::new().dtype(ops::core_dtype(input.dtype)).shared_buffers();
        let weight = match &self.weight {
            None => Operand::Absent,
            Some(captured) => {
                let dims = &captured.dims;
                same_device("weight", &captured.device)?;
                let layout = if spec.is_row_wise() {
                    WeightLayout::PerClass
                } else if *dims == input.dims {
                    WeightLayout::PerElement
                } else {
                    WeightLayout::PerClass
                };
                let expected = match layout {
                    WeightLayout::PerElement => input.dims.clone(),
                    WeightLayout::PerClass if spec.is_row_wise() => vec![shape.classes()],
                    WeightLayout::PerClass => vec![shape.last_dim()],
                };
                if *dims != expected {
                    return Err(Error::InvalidShape {
                        shape: dims.clone(),
                        why: format!(
                            "{}'s weight for input {:?} must have shape {expected:?}{}",
                            spec.name,
                            input.dims,
                            if spec.is_row_wise() { "" } else { " or the input's" }
                        ),
                    });
                }
                options = options.weight(layout);
                Operand::Float(f32_constant(captured.clone(), "weight")?)
            }
        };
        let pos_weight = match &self.pos_weight {
            None => Operand::Absent,
            Some(captured) => {
                let dims = &captured.dims;
                same_device("pos_weight", &captured.device)?;
                if *dims != [shape.last_dim()] {
                    return Err(Error::InvalidShape {
                        shape: dims.clone(),
                        why: format!(
                            "{}'s pos_weight for input {:?} must have shape [{}]",
                            spec.name,
                            input.dims,
                            shape.last_dim()
                        ),
                    });
                }
                options = options.pos_weight();
                Operand::Float(f32_constant(captured.clone(), "pos_weight")?)
            }
        };
        if target_grad {
            options = options.target_grad();
        }

        let unreduced = unreduced_shape(&spec, &input.dims);
        let elements: usize = input.dims.iter().product();
        if elements == 0 && matches!(self.reduction, Reduction::Sum | Reduction::None) {
            // Nothing to launch: PyTorch's sum of nothing, and no losses.
            let device = &input.device;
            let length = if self.reduction == Reduction::Sum { 1 } else { 0 };
            let grad: Tensor<D> = Tensor::from_dispatch(input.tensor).zeros_like();
            return Ok(Computed {
                loss: Tensor::zeros([length], device),
                grad,
                target_grad: target_grad.then(|| Tensor::zeros([target.dims.iter().product::<usize>()], device)),
                stats: Stats(Tensor::zeros([8], device)),
            });
        }
        let plan = cached_plan(
            &wgpu_device,
            PlanKey { loss: self.loss.clone(), reduction: self.reduction, dims: input.dims.clone(), options },
        )?;
        let upstream_shape = match self.reduction {
            Reduction::None if spec.is_row_wise() => {
                let mut dims = input.dims.clone();
                dims[1] = 1;
                dims
            }
            Reduction::None => input.dims.clone(),
            _ => vec![1; input.dims.len()],
        };
        let call = Call { plan, unreduced, upstream_shape, target_grad };
        let target_operand = if target.float { Operand::Float(target.tensor) } else { Operand::Int(target.tensor) };
        let computed = <burn::backend::Dispatch as FusedLossOps>::fused_loss(
            input.tensor,
            target_operand,
            weight,
            pos_weight,
            call,
        );
        Ok(Computed {
            loss: Tensor::from_dispatch(computed.loss),
            grad: Tensor::from_dispatch(computed.grad),
            target_grad: match computed.target_grad {
                Operand::Float(t) => {
                    let t: Tensor<D> = Tensor::from_dispatch(t);
                    Some(t.flatten::<1>(0, D - 1))
                }
                _ => None,
            },
            stats: Stats(Tensor::from_dispatch(computed.stats)),
        })
    }
}

/// burn's runtime makes f16 and bf16 tensors only where cubecl can store them (it has no
/// bf16 in WGSL: on lavapipe a bf16 tensor's bytes are not bf16), so such inputs are
/// refused there rather than read as garbage.
fn refuse_unstored_type(device: &Device, dtype: BurnDType) -> Result<()> {
    if device.supports_dtype(dtype) {
        return Ok(());
    }
    Err(Error::ElementType {
        argument: "input",
        actual: format!("{dtype:?}"),
        expected: "burn's wgpu runtime does not store that type on this adapter (its tensors of it are not valid)",
    })
}

/// Whether burn's runtime stores `dtype` on `device` (f16 and bf16 are not everywhere).
pub fn stores(device: &Device, dtype: BurnDType) -> bool {
    refuse_unstored_type(device, dtype).is_ok()
}

/// A weight cast to f32, untracked (weights are constants, as PyTorch's `weight`).
fn f32_constant(captured: Captured, argument: &'static str) -> Result<burn::backend::DispatchTensor> {
    if !matches!(captured.dtype, BurnDType::F32 | BurnDType::F16 | BurnDType::BF16) {
        return Err(Error::ElementType {
            argument,
            actual: format!("{:?}", captured.dtype),
            expected: "f32, f16 or bf16",
        });
    }
    Ok(cast_float(captured, BurnDType::F32).tensor)
}

/// PyTorch's shape of the unreduced losses: the input's for elementwise losses,
/// `(N, d1, ...)` for row-wise ones.
fn unreduced_shape(spec: &crate::Spec, dims: &[usize]) -> Vec<usize> {
    if spec.is_row_wise() && dims.len() >= 2 {
        let mut rows = dims.to_vec();
        rows.remove(1);
        rows
    } else {
        dims.to_vec()
    }
}

/// Per-class weights `[classes]` (f32) from int `labels` of any shape, computed on the
/// GPU ([`crate::ClassWeights`]: `scheme` over the batch's histogram, labels equal to
/// −100 or outside `[0, classes)` skipped, absent classes 0, `Σ w` = the classes
/// present). Pass them to [`FusedLoss::weight`]. A constant: no gradient flows into it.
pub fn class_weights<const L: usize>(
    labels: Tensor<L, Int>,
    classes: usize,
    scheme: crate::WeightScheme,
) -> Result<Tensor<1>> {
    let device = labels.device();
    let wgpu_device = wgpu_device_of("labels", &device)?;
    let gpu = gpu_of_wgpu("labels", &wgpu_device)?;
    let rows: usize = labels.dims().iter().product();
    if rows == 0 {
        return Err(Error::InvalidShape {
            shape: labels.dims().to_vec(),
            why: "class weights need at least one label".into(),
        });
    }
    let plan = Arc::new(gpu.class_weights(rows, classes, -100, scheme, None)?);
    let call = WeightsCall { plan, classes };
    let weights = <burn::backend::Dispatch as FusedLossOps>::fused_class_weights(labels.into_dispatch(), call);
    Ok(Tensor::from_dispatch(weights))
}

/// `loss` with `reduction` on `input` and `target`: [`FusedLoss::forward`] in one call.
pub fn loss<const D: usize>(
    loss: impl Into<Loss>,
    reduction: Reduction,
    input: Tensor<D>,
    target: impl Target,
) -> Result<Tensor<1>> {
    FusedLoss::new(loss).reduction(reduction).forward(input, target)
}

/// Cross-entropy over `(N, C)` or `(N, C, d1, ...)` logits with int labels `(N, d1, ...)`,
/// mean over rows: `torch.nn.functional.cross_entropy(logits, labels)`, burn's
/// `CrossEntropyLoss`.
pub fn cross_entropy<const D: usize, const L: usize>(logits: Tensor<D>, labels: Tensor<L, Int>) -> Result<Tensor<1>> {
    loss(Loss::cross_entropy(), Reduction::Mean, logits, labels)
}

/// Mean squared error: `torch.nn.functional.mse_loss`, burn's `MseLoss`.
pub fn mse<const D: usize>(input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
    loss(Loss::mse(), Reduction::Mean, input, target)
}

/// Mean absolute error: `torch.nn.functional.l1_loss`.
pub fn l1<const D: usize>(input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
    loss(Loss::l1(), Reduction::Mean, input, target)
}

/// Huber loss with threshold `delta`: `torch.nn.functional.huber_loss`, burn's `HuberLoss`.
pub fn huber<const D: usize>(input: Tensor<D>, target: Tensor<D>, delta: f32) -> Result<Tensor<1>> {
    loss(Loss::huber().delta(delta), Reduction::Mean, input, target)
}

/// Binary cross-entropy on logits: `torch.nn.functional.binary_cross_entropy_with_logits`,
/// burn's `BinaryCrossEntropyLoss` with `logits = true`.
pub fn bce_with_logits<const D: usize>(logits: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
    loss(Loss::bce_with_logits(), Reduction::Mean, logits, target)
}

/// Binary cross-entropy on probabilities: `torch.nn.functional.binary_cross_entropy`.
pub fn binary_cross_entropy<const D: usize>(probabilities: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
    loss(Loss::bce(), Reduction::Mean, probabilities, target)
}

/// Negative log-likelihood of log-probabilities: `torch.nn.functional.nll_loss`.
pub fn nll<const D: usize, const L: usize>(log_probabilities: Tensor<D>, labels: Tensor<L, Int>) -> Result<Tensor<1>> {
    loss(Loss::nll(), Reduction::Mean, log_probabilities, labels)
}

/// Softmax focal loss (Lin et al. 2017) with focusing parameter `gamma`, mean over rows.
pub fn focal<const D: usize, const L: usize>(
    logits: Tensor<D>,
    labels: Tensor<L, Int>,
    gamma: f32,
) -> Result<Tensor<1>> {
    loss(Loss::focal().gamma(gamma), Reduction::Mean, logits, labels)
}

/// KL divergence of log-probabilities `input` from probabilities `target`, `batchmean`:
/// `torch.nn.functional.kl_div(input, target, reduction="batchmean")`.
pub fn kl_div<const D: usize>(input: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
    loss(Loss::kl_div(), Reduction::BatchMean, input, target)
}

#[cfg(test)]
mod tests {
    use burn::backend::autodiff::Autodiff;
    use burn::backend::ops::{FloatTensorOps, IntTensorOps};
    use burn::backend::wgpu::CubeBackend;
    use burn::backend::AutodiffBackend;
    use burn::tensor::{read_sync, Int, Tensor, TensorData};

    use super::*;

    fn bits(data: TensorData) -> Vec<u32> {
        data.convert::<f32>().try_to_vec::<f32>().expect("f32").iter().map(|v| v.to_bits()).collect()
    }

    /// The un-fused backend (what `Dispatch` runs in a build without burn's `fusion`) and
    /// `Autodiff` over it give the bits of burn's default (fused) path.
    #[test]
    fn the_plain_cube_backend_gives_the_fused_paths_bits() {
        let wgpu_device = WgpuDevice::default();
        let device = device(wgpu_device.clone()).expect("lavapipe");
        let cube = burn::cubecl::Device::Wgpu(wgpu_device.clone());
        let (n, c) = (33, 7);
        let logits: Vec<f32> = (0..n * c).map(|i| ((i * 31) % 23) as f32 / 5.0 - 2.0).collect();
        let labels: Vec<i32> = (0..n).map(|i| ((i * 3) % c) as i32).collect();
        let labels_i64: Vec<i64> = labels.iter().map(|&l| l as i64).collect();

        let ad = device.autodiff();
        let x = Tensor::<2>::from_data(TensorData::new(logits.clone(), [n, c]), &ad).require_grad();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels_i64, [n]), &ad);
        let loss = cross_entropy(x.clone(), y).expect("fused path");
        let grads = loss.clone().backward();
        let want_loss = bits(loss.into_data());
        let want_grad = bits(x.grad(&grads).expect("gradient").into_data());

        let key = PlanKey {
            loss: Loss::cross_entropy().into(),
            reduction: Reduction::Mean,
            dims: vec![n, c],
            options: Options::new().shared_buffers(),
        };
        let plan = cached_plan(&wgpu_device, key).expect("plan");
        let call = Call { plan, unreduced: vec![n], upstream_shape: vec![1, 1], target_grad: false };
        let data = || TensorData::new(logits.clone(), [n, c]);
        let labels_data = || TensorData::new(labels.clone(), [n]);

        let plain = <CubeBackend as FusedLossOps>::fused_loss(
            CubeBackend::float_from_data(data(), &cube),
            Operand::Int(CubeBackend::int_from_data(labels_data(), &cube)),
            Operand::Absent,
            Operand::Absent,
            call.clone(),
        );
        assert_eq!(bits(read_sync(CubeBackend::float_into_data(plain.loss)).unwrap()), want_loss);
        assert_eq!(bits(read_sync(CubeBackend::float_into_data(plain.grad)).unwrap()), want_grad);

        type Ad = Autodiff<CubeBackend>;
        let x = Ad::float_from_data(data(), &cube).require_grad();
        let out = <Ad as FusedLossOps>::fused_loss(
            x.clone(),
            Operand::Int(CubeBackend::int_from_data(labels_data(), &cube)),
            Operand::Absent,
            Operand::Absent,
            call,
        );
        let grads = Ad::backward(out.loss.clone());
        let grad = Ad::grad(&x, &grads).expect("gradient");
        assert_eq!(bits(read_sync(CubeBackend::float_into_data(Ad::inner(out.loss))).unwrap()), want_loss);
        assert_eq!(bits(read_sync(CubeBackend::float_into_data(grad)).unwrap()), want_grad);
    }
}
