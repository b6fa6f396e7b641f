//! A linear softmax classifier written as the caller's own wgpu code, shared by the
//! examples: `logits = x W + b` (forward kernel) and `W -= lr xᵀ g, b -= lr Σ g` (update
//! kernel, g = d loss / d logits as fused-loss writes it). The model's buffers live here;
//! the loss is recorded by fused-loss into the same encoder.
#![allow(dead_code)]

use wgpu::util::DeviceExt;

const MODEL: &str = r#"
struct Dims { rows: u32, features: u32, classes: u32, learning_rate: f32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // rows x features
@group(0) @binding(2) var<storage, read_write> w: array<f32>;    // features x classes
@group(0) @binding(3) var<storage, read_write> b: array<f32>;    // classes
@group(0) @binding(4) var<storage, read_write> logits: array<f32>; // rows x classes
@group(0) @binding(5) var<storage, read> grad: array<f32>;       // d loss / d logits

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= dims.rows * dims.classes) { return; }
    let n = i / dims.classes;
    let c = i % dims.classes;
    var z = b[c];
    for (var f = 0u; f < dims.features; f++) {
        z += x[n * dims.features + f] * w[f * dims.classes + c];
    }
    logits[i] = z;
}

// One invocation per parameter; a mean's gradient is already divided by its denominator.
@compute @workgroup_size(64)
fn update(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    let weights = dims.features * dims.classes;
    if (i < weights) {
        let f = i / dims.classes;
        let c = i % dims.classes;
        var dw = 0.0;
        for (var n = 0u; n < dims.rows; n++) {
            dw += x[n * dims.features + f] * grad[n * dims.classes + c];
        }
        w[i] -= dims.learning_rate * dw;
    } else if (i < weights + dims.classes) {
        let c = i - weights;
        var db = 0.0;
        for (var n = 0u; n < dims.rows; n++) {
            db += grad[n * dims.classes + c];
        }
        b[c] -= dims.learning_rate * db;
    }
}
"#;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    rows: u32,
    features: u32,
    classes: u32,
    learning_rate: f32,
}

/// The model's parameters and kernels.
pub struct Linear {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub features: usize,
    pub classes: usize,
    w: wgpu::Buffer,
    b: wgpu::Buffer,
    layout: wgpu::BindGroupLayout,
    forward: wgpu::ComputePipeline,
    update: wgpu::ComputePipeline,
}

/// One set of rows on the GPU, with its labels, logits and gradient buffers.
pub struct Batch {
    pub rows: usize,
    pub labels: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    pub grad: wgpu::Buffer,
    group: wgpu::BindGroup,
}

pub const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

impl Linear {
    /// Zero-initialised parameters.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, features: usize, classes: usize) -> Self {
        let zeros = |label: &str, n: usize| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &vec![0u8; n * 4],
                usage: STORAGE,
            })
        };
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("linear model"),
            source: wgpu::ShaderSource::Wgsl(MODEL.into()),
        });
        // One explicit layout, so one bind group per batch serves both kernels.
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let read_only = wgpu::BufferBindingType::Storage { read_only: true };
        let read_write = wgpu::BufferBindingType::Storage { read_only: false };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("linear model"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Uniform),
                entry(1, read_only),
                entry(2, read_write),
                entry(3, read_write),
                entry(4, read_write),
                entry(5, read_only),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("linear model"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = |entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        Linear {
            device: device.clone(),
            queue: queue.clone(),
            features,
            classes,
            w: zeros("w", features * classes),
            b: zeros("b", classes),
            forward: pipeline("forward"),
            update: pipeline("update"),
            layout,
        }
    }

    /// Parameters back to zero.
    pub fn reset(&self) {
        self.queue.write_buffer(&self.w, 0, &vec![0u8; self.features * self.classes * 4]);
        self.queue.write_buffer(&self.b, 0, &vec![0u8; self.classes * 4]);
    }

    /// Uploads rows `x` (rows × features) with `labels`, trained at `learning_rate`.
    pub fn batch(&self, x: &[f32], labels: &[i32], learning_rate: f32) -> Batch {
        let device = &self.device;
        let rows = labels.len();
        let buffer = |label: &str, bytes: &[u8]| {
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytes,
                usage: STORAGE,
            })
        };
        let dims =
            Dims { rows: rows as u32, features: self.features as u32, classes: self.classes as u32, learning_rate };
        let dims = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dims"),
            contents: bytemuck::bytes_of(&dims),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let xs = buffer("x", bytemuck::cast_slice(x));
        let logits = buffer("logits", &vec![0; rows * self.classes * 4]);
        let grad = buffer("grad", &vec![0; rows * self.classes * 4]);
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: dims.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: xs.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: self.w.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: self.b.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 4, resource: logits.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 5, resource: grad.as_entire_binding() },
            ],
        });
        Batch { rows, labels: buffer("labels", bytemuck::cast_slice(labels)), logits, grad, group }
    }

    fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        batch: &Batch,
        threads: usize,
    ) {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &batch.group, &[]);
        pass.dispatch_workgroups(threads.div_ceil(64) as u32, 1, 1);
    }

    /// Records `logits = x W + b`.
    pub fn forward(&self, encoder: &mut wgpu::CommandEncoder, batch: &Batch) {
        self.dispatch(encoder, &self.forward, batch, batch.rows * self.classes);
    }

    /// Records one gradient step from `batch.grad`.
    pub fn update(&self, encoder: &mut wgpu::CommandEncoder, batch: &Batch) {
        self.dispatch(encoder, &self.update, batch, (self.features + 1) * self.classes);
    }

    /// Reads `buffer` (MAP-able copy made here) back as `T`s; blocks.
    pub fn read<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer) -> Vec<T> {
        let size = buffer.size();
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &readback, 0, size);
        self.queue.submit([encoder.finish()]);
        readback.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        let data = bytemuck::pod_collect_to_vec(&readback.slice(..).get_mapped_range().expect("mapped"));
        readback.unmap();
        data
    }
}

/// Standardises each of the `features` columns of `x` (rows × features) in place.
pub fn standardise(x: &mut [f32], features: usize) {
    let rows = x.len() / features;
    for f in 0..features {
        let mean = (0..rows).map(|n| x[n * features + f]).sum::<f32>() / rows as f32;
        let var = (0..rows).map(|n| (x[n * features + f] - mean).powi(2)).sum::<f32>() / rows as f32;
        let std = var.sqrt().max(1e-12);
        for n in 0..rows {
            x[n * features + f] = (x[n * features + f] - mean) / std;
        }
    }
}

/// A fixed pseudo-random permutation of 0..n (xorshift, seeded).
pub fn shuffled(n: usize, seed: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = seed.max(1);
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        order.swap(i, state as usize % (i + 1));
    }
    order
}
