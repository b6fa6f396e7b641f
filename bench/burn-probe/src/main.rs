//! Probe for issue 13: burn 0.22.1 tensors on its default (fusion) wgpu backend into
//! fused-loss cross-entropy through `backend_extension(Cube, Fusion, Autodiff)`, on burn's
//! pooled buffers (`Options::shared_buffers`), the gradient of the forward pass kept for
//! the backward and scaled by the upstream gradient. Compared with burn's own
//! `CrossEntropyLoss` (loss and gradient). Not the feature: see issue 13's notes.
use std::sync::Mutex;

use burn::backend::autodiff::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn::backend::fusion::custom::TensorSpec;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::{AutoCompiler, CubeBackend, CubeTensor, WgpuDevice, WgpuSetup};
use burn::backend::{backend_extension, Backend, Dispatch};
use burn::cubecl::wgpu::WgpuServer;
use burn::tensor::{Device, Int, Shape, Tensor};

static GPUS: Mutex<Vec<(WgpuDevice, wgpu::Device, wgpu::Queue)>> = Mutex::new(Vec::new());

fn register(setup: &WgpuSetup, device: WgpuDevice) {
    GPUS.lock().unwrap().push((device, setup.device.clone(), setup.queue.clone()));
}

fn gpu_of(t: &CubeTensor) -> (wgpu::Device, wgpu::Queue) {
    let want = match &t.device {
        burn::cubecl::Device::Wgpu(d) => d.clone(),
        other => panic!("not a wgpu tensor: {other:?}"),
    };
    let gpus = GPUS.lock().unwrap();
    let (_, d, q) = gpus.iter().find(|(dev, _, _)| *dev == want).expect("device not registered");
    (d.clone(), q.clone())
}

#[backend_extension(Cube, Fusion, Autodiff)]
pub trait ProbeOps: Backend {
    /// (2·x summed into [1], gradient 2 everywhere) computed by a raw wgpu copy.
    #[fusion(meta = |x, _labels| (TensorSpec::new(Shape::new([1]), x.dtype), x.clone()))]
    fn probe_forward(x: FloatTensor<Self>, labels: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    #[fusion(dtype = x, shape = { Shape::new([1]) })]
    fn probe_loss(x: FloatTensor<Self>, labels: IntTensor<Self>) -> FloatTensor<Self>;
}

static FUSED: Mutex<Vec<(WgpuDevice, fused_loss::Gpu)>> = Mutex::new(Vec::new());

fn fused_gpu(t: &CubeTensor) -> fused_loss::Gpu {
    let want = match &t.device {
        burn::cubecl::Device::Wgpu(d) => d.clone(),
        other => panic!("not a wgpu tensor: {other:?}"),
    };
    let mut cache = FUSED.lock().unwrap();
    if let Some((_, g)) = cache.iter().find(|(d, _)| *d == want) {
        return g.clone();
    }
    let (device, queue) = gpu_of(t);
    let g = fused_loss::Gpu::from_device(device, queue);
    cache.push((want, g.clone()));
    g
}

impl ProbeOps for CubeBackend {
    fn probe_forward(x: FloatTensor<Self>, labels: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        use fused_loss::{Bindings, Loss, LossStats, Options, Reduction};
        let dims = x.meta.shape().clone();
        let n = dims.num_elements();
        let bytes = (n * 4) as u64;
        let client = x.client.clone();
        let grad =
            CubeTensor::new_contiguous(client.clone(), x.device.clone(), dims.clone(), client.empty(n * 4), x.dtype);
        // The loss is the first f32 of the stats block: the [1] tensor is that block.
        let stats = CubeTensor::new_contiguous(
            client.clone(),
            x.device.clone(),
            Shape::new([1]),
            client.empty(LossStats::SIZE as usize),
            x.dtype,
        );
        let rx = client.get_resource::<WgpuServer<AutoCompiler>>(x.handle.clone()).unwrap();
        let rl = client.get_resource::<WgpuServer<AutoCompiler>>(labels.handle.clone()).unwrap();
        let rg = client.get_resource::<WgpuServer<AutoCompiler>>(grad.handle.clone()).unwrap();
        let rs = client.get_resource::<WgpuServer<AutoCompiler>>(stats.handle.clone()).unwrap();
        client.flush().unwrap();
        let gpu = fused_gpu(&x);
        let (ax, al, ag, ast) = (rx.resource(), rl.resource(), rg.resource(), rs.resource());
        eprintln!(
            "x off {} labels off {} grad off {} stats off {}; one buffer: {}",
            ax.offset,
            al.offset,
            ag.offset,
            ast.offset,
            ax.buffer == ag.buffer && ax.buffer == al.buffer && ax.buffer == ast.buffer
        );
        let plan = gpu
            .plan_for(
                Loss::cross_entropy(),
                Reduction::Mean,
                &fused_loss::Shape::new(&[dims[0], dims[1]]),
                &Options::new().shared_buffers(),
            )
            .unwrap();
        let rows = dims[0] as u64;
        let bindings = Bindings::new()
            .input(ax.buffer.slice(ax.offset..ax.offset + bytes))
            .target(al.buffer.slice(al.offset..al.offset + rows * 4))
            .grad(ag.buffer.slice(ag.offset..ag.offset + bytes))
            .stats(ast.buffer.slice(ast.offset..ast.offset + LossStats::SIZE));
        let mut enc = gpu.device().create_command_encoder(&Default::default());
        plan.encode(&mut enc, &bindings).unwrap();
        gpu.queue().submit([enc.finish()]);
        (stats, grad)
    }
    fn probe_loss(x: FloatTensor<Self>, labels: IntTensor<Self>) -> FloatTensor<Self> {
        Self::probe_forward(x, labels).0
    }
}

impl<B: Backend + ProbeOps, C: CheckpointStrategy> ProbeOps for Autodiff<B, C> {
    fn probe_forward(_x: FloatTensor<Self>, _labels: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        unimplemented!("internal")
    }
    fn probe_loss(x: FloatTensor<Self>, labels: IntTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ProbeBackward;
        impl<B: Backend> Backward<B, 1> for ProbeBackward {
            type State = FloatTensor<B>;
            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _c: &mut Checkpointer) {
                let [node] = ops.parents;
                let up = grads.consume::<B>(&ops.node);
                if let Some(node) = node {
                    // The upstream gradient of a reduced loss is [1]: the state's rank for broadcasting.
                    let rank = burn::backend::TensorMetadata::shape(&ops.state).num_dims();
                    let up = B::float_reshape(up, Shape::new_raw(vec![1; rank].into()));
                    grads.register::<B>(node.id, B::float_mul(ops.state, up));
                }
            }
        }
        match ProbeBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (loss, grad) = B::probe_forward(x.primitive().clone(), labels);
                prep.finish(grad, loss)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::probe_loss(x.into_primitive(), labels)),
        }
    }
}

fn probe(x: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    Tensor::from_dispatch(<Dispatch as ProbeOps>::probe_loss(x.into_dispatch(), labels.into_dispatch()))
}

fn main() {
    let wd = WgpuDevice::default();
    let setup =
        burn::backend::wgpu::init_setup::<burn::backend::wgpu::graphics::AutoGraphicsApi>(&wd, Default::default());
    register(&setup, wd.clone());
    let device = Device::from(wd);
    let logits = [[1.0f32, 2.0, 0.5], [3.0, -1.0, 0.25]];
    let x = Tensor::<2>::from_floats(logits, &device);
    let labels = Tensor::<1, Int>::from_data([2, 0], &device);
    let out = probe(x.clone() * 3.0, labels.clone());
    eprintln!("plain: {:?}", out.into_data().to_vec::<f32>().unwrap());
    // burn's own, for comparison
    let ce = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
    eprintln!("burn's: {:?}", ce.forward(x.clone() * 3.0, labels.clone()).into_data().to_vec::<f32>().unwrap());
    let ad = device.clone().autodiff();
    for fused in [true, false] {
        let x = Tensor::<2>::from_floats(logits, &ad).require_grad();
        let labels = Tensor::<1, Int>::from_data([2, 0], &ad);
        let y = if fused { probe(x.clone() * 3.0, labels) } else { ce.forward(x.clone() * 3.0, labels) } * 5.0;
        let grads = y.backward();
        eprintln!(
            "fused {fused}: loss {:?} grad {:?}",
            y.into_data().to_vec::<f32>().unwrap(),
            x.grad(&grads).map(|g| g.into_data().to_vec::<f32>().unwrap())
        );
    }
}
