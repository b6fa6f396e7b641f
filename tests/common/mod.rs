//! The one place GPU tests get their adapter.
#![allow(dead_code)]

use fused_loss::Gpu;

/// The test adapter, or `None` (after a loud SKIP) when there is none. With
/// `FUSED_LOSS_REQUIRE_GPU=1` a missing adapter fails the test instead.
pub fn gpu(test: &str) -> Option<Gpu> {
    match Gpu::new() {
        Ok(gpu) => {
            let info = gpu.adapter_info();
            eprintln!("[{test}] adapter: {} ({:?})", info.name, info.backend);
            Some(gpu)
        }
        Err(e) if std::env::var("FUSED_LOSS_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("[{test}] FUSED_LOSS_REQUIRE_GPU=1 but no adapter: {e}")
        }
        Err(e) => {
            eprintln!(
                "\n*** SKIP [{test}]: no GPU adapter ({e}). Set FUSED_LOSS_REQUIRE_GPU=1 to make this a failure. ***\n"
            );
            None
        }
    }
}

/// The test adapter itself, for tests that open devices of their own (another device on
/// the same adapter, a device with `wgpu::Limits::default()`).
pub fn adapter(test: &str) -> Option<wgpu::Adapter> {
    let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    let instance = wgpu::Instance::new(desc);
    match pollster::block_on(instance.request_adapter(&Default::default())) {
        Ok(adapter) => Some(adapter),
        Err(e) if std::env::var("FUSED_LOSS_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("[{test}] FUSED_LOSS_REQUIRE_GPU=1 but no adapter: {e}")
        }
        Err(e) => {
            eprintln!("\n*** SKIP [{test}]: no GPU adapter ({e}). ***\n");
            None
        }
    }
}

/// A device on `adapter` with the given limits and the crate's wanted features.
pub fn device(adapter: &wgpu::Adapter, limits: wgpu::Limits) -> (wgpu::Device, wgpu::Queue) {
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("test device"),
        required_features: Gpu::wanted_features(adapter),
        required_limits: limits,
        ..Default::default()
    }))
    .expect("device")
}

/// The f32 contents of `buffer` (which needs `COPY_SRC`), after everything submitted so far.
pub fn read_floats(gpu: &Gpu, buffer: &wgpu::Buffer) -> Vec<f32> {
    let d = gpu.device();
    let staging = d.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: buffer.size(),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = d.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, buffer.size());
    gpu.queue().submit([encoder.finish()]);
    staging.slice(..).map_async(wgpu::MapMode::Read, |r| r.unwrap());
    d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let v = bytemuck::pod_collect_to_vec(&staging.slice(..).get_mapped_range().unwrap());
    v
}
