//! A training loop that owns everything: the wgpu device, the buffers, the encoder and
//! a kernel of its own. A linear softmax classifier on the iris data set (150 flowers,
//! 4 features, 3 species, shipped by `linfa-datasets`):
//!
//!   forward (this file's WGSL)  logits = x W + b
//!   loss    (fused-loss)        cross-entropy, recorded into the same encoder; writes
//!                               d(loss)/d(logits) into this file's buffer
//!   update  (this file's WGSL)  W -= lr xᵀ g,  b -= lr Σ g
//!
//! One submit per step; the loss and accuracy are read back only every 50 steps.
//!
//! Run: `cargo run --release --example embed_training_step`

use fused_loss::{Bindings, Gpu, Loss, LossStats, Reduction, Shape};
use wgpu::util::DeviceExt;

const FEATURES: usize = 4;
const CLASSES: usize = 3;
const STEPS: usize = 300;
const REPORT_EVERY: usize = 50;
const LEARNING_RATE: f32 = 0.5;

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

// One invocation per parameter; the gradient of a mean is already divided by N.
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

/// One split of the data on the GPU, with its own forward/update bind group.
struct Split {
    rows: usize,
    labels: wgpu::Buffer,
    logits: wgpu::Buffer,
    grad: wgpu::Buffer,
    group: wgpu::BindGroup,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The caller's own device (WGPU_BACKEND picks the backend, as for any wgpu program).
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&Default::default()))?;
    println!("adapter: {} ({:?})", adapter.get_info().name, adapter.get_info().backend);
    let gpu = Gpu::from_device(device.clone(), queue.clone());

    // Iris, standardised, split 120 / 30 by a fixed shuffle.
    let iris = linfa_datasets::iris();
    let rows = iris.records.nrows();
    let mut x: Vec<f32> = iris.records.iter().map(|&v| v as f32).collect();
    for f in 0..FEATURES {
        let column: Vec<f32> = (0..rows).map(|n| x[n * FEATURES + f]).collect();
        let mean = column.iter().sum::<f32>() / rows as f32;
        let std = (column.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / rows as f32).sqrt();
        for n in 0..rows {
            x[n * FEATURES + f] = (x[n * FEATURES + f] - mean) / std;
        }
    }
    let labels: Vec<i32> = iris.targets.iter().map(|&t| t as i32).collect();
    let mut order: Vec<usize> = (0..rows).collect();
    let mut state = 0x2545F491u32;
    for i in (1..rows).rev() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        order.swap(i, state as usize % (i + 1));
    }
    let (train, test) = order.split_at(120);

    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buffer = |label: &str, bytes: &[u8]| {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: storage,
        })
    };
    let w = buffer("w", bytemuck::cast_slice(&[0.0f32; FEATURES * CLASSES]));
    let b = buffer("b", bytemuck::cast_slice(&[0.0f32; CLASSES]));
    let stats = buffer("stats", &[0; LossStats::SIZE as usize]);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("model"),
        source: wgpu::ShaderSource::Wgsl(MODEL.into()),
    });
    // One explicit layout, so one bind group per split serves both kernels.
    let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
        count: None,
    };
    let read_only = wgpu::BufferBindingType::Storage { read_only: true };
    let read_write = wgpu::BufferBindingType::Storage { read_only: false };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("model"),
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
        label: Some("model"),
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
    let (forward, update) = (pipeline("forward"), pipeline("update"));
    let split = |indices: &[usize]| -> Split {
        let n = indices.len();
        let xs: Vec<f32> = indices.iter().flat_map(|&i| x[i * FEATURES..(i + 1) * FEATURES].to_vec()).collect();
        let ys: Vec<i32> = indices.iter().map(|&i| labels[i]).collect();
        let dims =
            Dims { rows: n as u32, features: FEATURES as u32, classes: CLASSES as u32, learning_rate: LEARNING_RATE };
        let dims = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("dims"),
            contents: bytemuck::bytes_of(&dims),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let xs = buffer("x", bytemuck::cast_slice(&xs));
        let logits = buffer("logits", &vec![0; n * CLASSES * 4]);
        let grad = buffer("grad", &vec![0; n * CLASSES * 4]);
        let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: dims.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: xs.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: w.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: b.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 4, resource: logits.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 5, resource: grad.as_entire_binding() },
            ],
        });
        Split { rows: n, labels: buffer("labels", bytemuck::cast_slice(&ys)), logits, grad, group }
    };
    let (train, test) = (split(train), split(test));

    // Validated and prepared once; recorded every step.
    let plan_for = |split: &Split| gpu.plan(&Loss::CROSS_ENTROPY, Reduction::Mean, &Shape::new(&[split.rows, CLASSES]));
    let (train_plan, test_plan) = (plan_for(&train)?, plan_for(&test)?);
    fn bindings<'a>(split: &'a Split, stats: &'a wgpu::Buffer) -> Bindings<'a> {
        Bindings::new(split.logits.slice(..), split.labels.slice(..), split.grad.slice(..), stats.slice(..)).accuracy()
    }
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: LossStats::SIZE,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let read_stats = || -> Result<LossStats, Box<dyn std::error::Error>> {
        readback.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
        device.poll(wgpu::PollType::wait_indefinitely())?;
        let stats = bytemuck::pod_read_unaligned(&readback.slice(..).get_mapped_range()?);
        readback.unmap();
        Ok(stats)
    };
    let dispatch =
        |encoder: &mut wgpu::CommandEncoder, pipeline: &wgpu::ComputePipeline, split: &Split, threads: usize| {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &split.group, &[]);
            pass.dispatch_workgroups(threads.div_ceil(64) as u32, 1, 1);
        };

    println!("step   train loss   train accuracy");
    for step in 0..=STEPS {
        let mut encoder = device.create_command_encoder(&Default::default());
        dispatch(&mut encoder, &forward, &train, train.rows * CLASSES);
        train_plan.encode(&mut encoder, &bindings(&train, &stats))?;
        dispatch(&mut encoder, &update, &train, (FEATURES + 1) * CLASSES);
        let report = step % REPORT_EVERY == 0;
        if report {
            encoder.copy_buffer_to_buffer(&stats, 0, &readback, 0, LossStats::SIZE);
        }
        queue.submit([encoder.finish()]);
        if report {
            let s = read_stats()?;
            println!("{step:>4}   {:>10.4}   {:>6.1}%", s.value, 100.0 * s.correct as f32 / train.rows as f32);
        }
    }

    // Held-out split: forward and loss only.
    let mut encoder = device.create_command_encoder(&Default::default());
    dispatch(&mut encoder, &forward, &test, test.rows * CLASSES);
    test_plan.encode(&mut encoder, &bindings(&test, &stats))?;
    encoder.copy_buffer_to_buffer(&stats, 0, &readback, 0, LossStats::SIZE);
    queue.submit([encoder.finish()]);
    let s = read_stats()?;
    println!(
        "held-out ({} flowers): loss {:.4}, accuracy {:.1}%",
        test.rows,
        s.value,
        100.0 * s.correct as f32 / test.rows as f32
    );
    Ok(())
}
