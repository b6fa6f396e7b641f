//! Embedding fused-loss in a GPU loop the caller owns: the caller's device, buffers and
//! encoder; the loss recorded next to the caller's own kernel (an SGD step on the
//! predictions, fed by the gradient buffer); one submit per step; the loss read back
//! only every 25 steps.
//!
//! Run: `cargo run --release --example embed`

use fused_loss::{Bindings, Gpu, Loss, LossStats, Reduction, Shape};
use wgpu::util::DeviceExt;

const SGD: &str = r#"
@group(0) @binding(0) var<storage, read_write> pred: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@compute @workgroup_size(256)
fn step(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&pred)) {
        pred[id.x] -= 200.0 * grad[id.x];   // the gradient of a mean is 1/N per element
    }
}
"#;

fn main() -> Result<(), fused_loss::Error> {
    // The caller's device. Here from fused-loss's adapter choice; any wgpu device works.
    let gpu = Gpu::new()?;
    let (device, queue) = (gpu.device().clone(), gpu.queue().clone());
    let gpu = Gpu::from_device(device.clone(), queue.clone());
    println!("adapter: {}", gpu.adapter_info().name);

    let n = 4096;
    let target: Vec<f32> = (0..n).map(|i| (i as f32 * 0.01).sin()).collect();
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let init = |label, data: &[f32]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(data),
            usage: storage,
        })
    };
    let pred = init("pred", &vec![0.0; n]);
    let target = init("target", &target);
    let grad = init("grad", &vec![0.0; n]);
    // LossStats::SIZE (32) bytes; COPY_SRC so that `read_stats` can copy it out.
    let stats = init("stats", &[0.0; LossStats::SIZE as usize / 4]);

    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("sgd"),
        source: wgpu::ShaderSource::Wgsl(SGD.into()),
    });
    let sgd = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("sgd"),
        layout: None,
        module: &module,
        entry_point: Some("step"),
        compilation_options: Default::default(),
        cache: None,
    });
    let sgd_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &sgd.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: pred.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: grad.as_entire_binding() },
        ],
    });

    // Validate and prepare once; record every step.
    let plan = gpu.plan(Loss::huber().delta(0.5), Reduction::Mean, &Shape::elementwise(n))?;
    for step in 0..=100 {
        let mut encoder = device.create_command_encoder(&Default::default());
        plan.encode(
            &mut encoder,
            &Bindings::new().input(pred.slice(..)).target(target.slice(..)).grad(grad.slice(..)).stats(stats.slice(..)),
        )?;
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&sgd);
            pass.set_bind_group(0, &sgd_group, &[]);
            pass.dispatch_workgroups((n as u32).div_ceil(256), 1, 1);
        }
        queue.submit([encoder.finish()]);
        if step % 25 == 0 {
            // The loss of this step (the stats come before the SGD update in the encoder).
            println!("step {step:>3}: huber loss {:.6}", gpu.read_stats(stats.slice(..))?.value);
        }
    }
    Ok(())
}
