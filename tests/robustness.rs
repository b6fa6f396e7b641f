//! Hostile input through the public API: every call returns `Err` with the specific
//! error instead of panicking, touches no caller buffer when it refuses, and (on the
//! embedding path) leaves a zero gradient when it finds invalid data on the GPU.

mod common;

use fused_loss::wgpu::util::DeviceExt;
use fused_loss::{cpu, registry, Bindings, Error, Gpu, Inputs, Loss, Options, Reduction, Shape};

const SENTINEL: f32 = 12345.0;
const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC);

fn filled(gpu: &Gpu, n: usize, value: f32) -> wgpu::Buffer {
    gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&vec![value; n]),
        usage: STORAGE,
    })
}

/// Encodes `bindings` for `plan`, then finishes and submits the encoder whatever
/// happened: an `Err` must leave an encoder that finishes (nothing recorded), and an
/// `Ok` one that wgpu accepts.
fn encode_and_submit(gpu: &Gpu, plan: &fused_loss::Plan, bindings: &Bindings) -> fused_loss::Result<()> {
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let result = plan.encode(&mut encoder, bindings);
    gpu.queue().submit([encoder.finish()]);
    gpu.device().poll(wgpu::PollType::wait_indefinitely()).unwrap();
    result
}

#[test]
fn aliased_outputs_are_refused_by_name() {
    let Some(gpu) = common::gpu("aliased_outputs_are_refused_by_name") else { return };
    let n = 256;
    let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
    let plan = gpu.plan(Loss::mse(), Reduction::Sum, &Shape::elementwise(n)).unwrap();
    let none = gpu.plan(Loss::mse(), Reduction::None, &Shape::elementwise(n)).unwrap();
    let rows = Shape::new(&[8, 32]);
    let ce = gpu.plan_for(Loss::cross_entropy(), Reduction::None, &rows, &Options::new().lse()).unwrap();
    let input = filled(&gpu, n, 0.25);
    let target = filled(&gpu, n, 0.5);
    let grad = filled(&gpu, n, SENTINEL);
    let stats = filled(&gpu, n, SENTINEL);
    let labels = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&[1i32; 8]),
        usage: STORAGE,
    });
    let big = filled(&gpu, 4 * n, SENTINEL);
    let aliased = |result: fused_loss::Result<()>, first: &str, second: &str| match result {
        Err(Error::Aliased { first: a, second: b, .. }) => {
            assert!((a, b) == (first, second) || (a, b) == (second, first), "named {a} and {b}")
        }
        other => panic!("{first}/{second}: expected Error::Aliased, got {other:?}"),
    };
    // The gradient over the input without in_place().
    let b =
        Bindings::new().input(input.slice(..)).target(target.slice(..)).grad(input.slice(..)).stats(stats.slice(..));
    aliased(encode_and_submit(&gpu, &plan, &b), "input", "grad");
    // stats inside grad, and inside the input.
    let b = Bindings::new().input(input.slice(..)).target(target.slice(..)).grad(grad.slice(..)).stats(grad.slice(..));
    aliased(encode_and_submit(&gpu, &plan, &b), "grad", "stats");
    let b = Bindings::new().input(input.slice(..)).target(target.slice(..)).grad(grad.slice(..)).stats(input.slice(..));
    aliased(encode_and_submit(&gpu, &plan, &b), "input", "stats");
    // grad and per_element on the same range.
    let b = Bindings::new()
        .input(input.slice(..))
        .target(target.slice(..))
        .grad(big.slice(..))
        .stats(stats.slice(..))
        .per_element(big.slice(..));
    aliased(encode_and_submit(&gpu, &none, &b), "grad", "per_element");
    // lse overlapping per_element (row-wise), one aligned offset apart.
    let b = Bindings::new()
        .input(big.slice(..))
        .labels(labels.slice(..))
        .grad(grad.slice(..))
        .stats(stats.slice(..))
        .per_element(input.slice(..))
        .lse(input.slice(align.min(16)..));
    let result = encode_and_submit(&gpu, &ce, &b);
    if align <= 16 {
        aliased(result, "per_element", "lse");
    }
    // The same check, with disjoint ranges of one buffer, passes: outputs may share a
    // buffer where they do not overlap.
    let shared = filled(&gpu, 4 * n + 2 * align as usize, SENTINEL);
    let grad_end = (n as u64 * 4).div_ceil(align) * align;
    let b = Bindings::new()
        .input(input.slice(..))
        .target(target.slice(..))
        .grad(shared.slice(..grad_end))
        .stats(shared.slice(grad_end..));
    encode_and_submit(&gpu, &plan, &b).unwrap();
    let out = common::read_floats(&gpu, &shared);
    assert!(out[..n].iter().all(|&g| g == -0.5), "gradient of sum (0.25 - 0.5)^2 is -0.5");
    // Input and target may be the same range: both are only read.
    let b = Bindings::new().input(input.slice(..)).target(input.slice(..)).grad(grad.slice(..)).stats(stats.slice(..));
    encode_and_submit(&gpu, &plan, &b).unwrap();
}

#[test]
fn buffers_wgpu_would_refuse_are_errors_not_panics() {
    let Some(adapter) = common::adapter("buffers_wgpu_would_refuse_are_errors_not_panics") else { return };
    let (device, queue) = common::device(&adapter, Gpu::wanted_limits(&adapter));
    let gpu = Gpu::from_device(device, queue);
    let (other, _other_queue) = common::device(&adapter, Gpu::wanted_limits(&adapter));
    let n = 64;
    let plan = gpu.plan(Loss::mse(), Reduction::Sum, &Shape::elementwise(n)).unwrap();
    let input = filled(&gpu, n, 0.25);
    let target = filled(&gpu, n, 0.5);
    let grad = filled(&gpu, n, SENTINEL);
    let stats = filled(&gpu, 8, SENTINEL);
    let state = |result: fused_loss::Result<()>, argument: &str| match result {
        Err(Error::BufferState { argument: a, .. }) => assert_eq!(a, argument),
        other => panic!("{argument}: expected Error::BufferState, got {other:?}"),
    };
    // A destroyed target.
    let destroyed = filled(&gpu, n, 0.5);
    destroyed.destroy();
    let b =
        Bindings::new().input(input.slice(..)).target(destroyed.slice(..)).grad(grad.slice(..)).stats(stats.slice(..));
    state(encode_and_submit(&gpu, &plan, &b), "target");
    // A gradient buffer of another device on the same adapter.
    let foreign = other.create_buffer(&wgpu::BufferDescriptor {
        label: Some("other device's grad"),
        size: n as u64 * 4,
        usage: STORAGE,
        mapped_at_creation: false,
    });
    let b =
        Bindings::new().input(input.slice(..)).target(target.slice(..)).grad(foreign.slice(..)).stats(stats.slice(..));
    state(encode_and_submit(&gpu, &plan, &b), "grad");
    // An input still mapped from creation.
    let mapped = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("mapped input"),
        size: n as u64 * 4,
        usage: STORAGE,
        mapped_at_creation: true,
    });
    let b =
        Bindings::new().input(mapped.slice(..)).target(target.slice(..)).grad(grad.slice(..)).stats(stats.slice(..));
    state(encode_and_submit(&gpu, &plan, &b), "input");
    mapped.unmap();
    // The refusals wrote nothing.
    assert!(common::read_floats(&gpu, &grad).iter().all(|&g| g == SENTINEL));
    assert!(common::read_floats(&gpu, &stats).iter().all(|&g| g == SENTINEL));
    // And the same call with good buffers works on the same encoder path.
    let b = Bindings::new().input(input.slice(..)).target(target.slice(..)).grad(grad.slice(..)).stats(stats.slice(..));
    encode_and_submit(&gpu, &plan, &b).unwrap();
    assert!(common::read_floats(&gpu, &grad).iter().all(|&g| g == -0.5));
}

/// Operands of a loss on `shape`, valid, as host vectors: input, f32 target or labels.
fn valid_operands(loss: &Loss, shape: &Shape) -> (Vec<f32>, Vec<f32>, Vec<i32>) {
    let spec = loss.spec();
    let len = shape.len();
    let value = |domain: fused_loss::Domain, i: usize| match domain {
        fused_loss::Domain::Probability => 0.1 + 0.8 * ((i * 7919) % 101) as f32 / 100.0,
        fused_loss::Domain::Sign => [1.0, -1.0][i % 2],
        fused_loss::Domain::LogProbability => -0.5 - (i % 5) as f32,
        fused_loss::Domain::Distribution => 1.0 / shape.classes() as f32,
        _ => ((i * 7919) % 101) as f32 / 25.0 - 2.0,
    };
    let input = (0..len).map(|i| value(spec.input_domain, i)).collect();
    let classes = shape.classes();
    let per_row = spec.labels_per_row(classes);
    if per_row > 0 {
        let labels = (0..shape.rows() * per_row)
            .map(|i| {
                if per_row == 1 {
                    (i % classes) as i32
                } else if i % per_row == 0 {
                    1
                } else {
                    -1
                }
            })
            .collect();
        (input, Vec::new(), labels)
    } else {
        (input, (0..len).map(|i| value(spec.target_domain, i + 3)).collect(), Vec::new())
    }
}

#[test]
fn invalid_input_leaves_zero_gradient_and_outputs() {
    let Some(gpu) = common::gpu("invalid_input_leaves_zero_gradient_and_outputs") else { return };
    let mut checked = 0;
    for loss in registry() {
        let spec = loss.spec();
        let Some((argument, _)) = spec.checked_domain() else { continue };
        // Odd sizes: a bf16 gradient ends in half a word.
        for (dims, dtype) in [(&[5usize, 7][..], fused_loss::DType::F32), (&[3, 5][..], fused_loss::DType::BF16)] {
            let shape = Shape::new(dims);
            for reduction in Reduction::ALL {
                let (mut input, mut target, mut labels) = valid_operands(&loss, &shape);
                match argument {
                    "input" => input[4] = 1.5,
                    "target" => target[4] = -0.5,
                    "labels" => labels[0] = shape.classes() as i32 + 3,
                    other => panic!("{}: no invalid value for {other}", spec.name),
                }
                let mut options = Options::new().dtype(dtype);
                if spec.target_differentiable() {
                    options = options.target_grad();
                }
                let plan = gpu.plan_for(loss.clone(), reduction, &shape, &options).unwrap();
                let typed = |v: &[f32]| -> Vec<u8> {
                    match dtype {
                        fused_loss::DType::BF16 => {
                            let mut bytes: Vec<u8> =
                                v.iter().flat_map(|&x| fused_loss::half::bf16::from_f32(x).to_le_bytes()).collect();
                            bytes.resize(bytes.len().div_ceil(4) * 4, 0);
                            bytes
                        }
                        _ => bytemuck::cast_slice(v).to_vec(),
                    }
                };
                let upload = |bytes: &[u8]| {
                    gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: None,
                        contents: bytes,
                        usage: STORAGE,
                    })
                };
                let input_buffer = upload(&typed(&input));
                let target_buffer =
                    if labels.is_empty() { upload(&typed(&target)) } else { upload(bytemuck::cast_slice(&labels)) };
                let outputs = if spec.is_row_wise() { shape.rows() } else { shape.len() };
                let grad = filled(&gpu, shape.len(), SENTINEL);
                let target_grad = filled(&gpu, shape.len(), SENTINEL);
                let per_element = filled(&gpu, outputs, SENTINEL);
                let stats = filled(&gpu, 8, SENTINEL);
                let mut b = Bindings::new()
                    .input(input_buffer.slice(..))
                    .target(target_buffer.slice(..))
                    .grad(grad.slice(..))
                    .stats(stats.slice(..));
                if reduction == Reduction::None {
                    b = b.per_element(per_element.slice(..));
                }
                if spec.target_differentiable() {
                    b = b.target_grad(target_grad.slice(..));
                }
                encode_and_submit(&gpu, &plan, &b).unwrap();
                let what = format!("{} {} {:?} {dtype:?}", spec.name, reduction.name(), shape.dims());
                let stats: fused_loss::LossStats =
                    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&common::read_floats(&gpu, &stats)));
                assert!(stats.invalid >= 1, "{what}: invalid count {}", stats.invalid);
                let typed_words = (shape.len() * dtype.size() as usize) / 4;
                let zero_words = |buffer: &wgpu::Buffer, name: &str| {
                    let words: Vec<u32> = bytemuck::cast_slice(&common::read_floats(&gpu, buffer)).to_vec();
                    assert!(words[..typed_words].iter().all(|&w| w == 0), "{what}: {name} not zeroed: {words:x?}");
                    if !(shape.len() * dtype.size() as usize).is_multiple_of(4) {
                        assert_eq!(words[typed_words] & 0xffff, 0, "{what}: {name}'s last half word");
                    }
                };
                zero_words(&grad, "grad");
                if spec.target_differentiable() {
                    zero_words(&target_grad, "target_grad");
                }
                if reduction == Reduction::None {
                    assert!(
                        common::read_floats(&gpu, &per_element)[..outputs].iter().all(|&l| l == 0.0),
                        "{what}: per_element"
                    );
                }
                // The CPU path refuses the same call by name.
                let inputs =
                    if labels.is_empty() { Inputs::new(&input, &target) } else { Inputs::labels(&input, &labels) }
                        .shape(dims);
                assert!(
                    matches!(cpu::compute(loss.clone(), reduction, &inputs), Err(Error::OutOfDomain { argument: a, .. }) if a == argument),
                    "{what}: the CPU path accepts it"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 5 * 3 * 2, "only {checked} calls with invalid input checked");
}

#[test]
fn overflowing_and_oversized_shapes_are_errors() {
    let gpu = common::gpu("overflowing_and_oversized_shapes_are_errors");
    let invalid = |result: fused_loss::Result<()>, what: &str| match result {
        Err(Error::InvalidShape { .. }) => {}
        other => panic!("{what}: expected Error::InvalidShape, got {other:?}"),
    };
    let huge = [1usize << 32, 1 << 32];
    let wide = [1usize << 42, 1 << 22];
    let empty_wide = [0usize, 1 << 40];
    let inputs = Inputs::new(&[], &[]).shape(&huge);
    invalid(cpu::compute(Loss::mse(), Reduction::Sum, &inputs).map(drop), "cpu mse 2^32 x 2^32");
    let inputs = Inputs::new(&[], &[]).shape(&empty_wide).with_per_class();
    invalid(cpu::compute(Loss::bce_with_logits(), Reduction::Sum, &inputs).map(drop), "cpu per_class (0, 2^40)");
    if let Some(gpu) = gpu {
        invalid(gpu.plan(Loss::mse(), Reduction::Sum, &Shape::new(&huge)).map(drop), "plan mse 2^32 x 2^32");
        invalid(gpu.plan(Loss::cross_entropy(), Reduction::Sum, &Shape::new(&wide)).map(drop), "plan ce 2^42 x 2^22");
        let inputs = Inputs::new(&[], &[]).shape(&huge);
        invalid(gpu.compute(Loss::mse(), Reduction::Sum, &inputs).map(drop), "compute mse 2^32 x 2^32");
        let inputs = Inputs::new(&[], &[]).shape(&empty_wide).with_per_class();
        invalid(gpu.compute(Loss::bce_with_logits(), Reduction::Sum, &inputs).map(drop), "compute per_class (0, 2^40)");
    }
}

#[test]
fn batchmean_needs_the_shape() {
    let gpu = common::gpu("batchmean_needs_the_shape");
    let (x, y) = ([-1.0f32, -2.0, -0.5, -3.0], [0.25f32, 0.25, 0.25, 0.25]);
    let missing = Inputs::new(&x, &y);
    let given = Inputs::new(&x, &y).shape(&[2, 2]);
    fn refused<T: std::fmt::Debug>(result: fused_loss::Result<T>) {
        assert!(matches!(result, Err(Error::MissingArgument { argument: "shape", .. })), "{result:?}")
    }
    refused(cpu::compute(Loss::kl_div(), Reduction::BatchMean, &missing));
    let want = cpu::compute(Loss::kl_div(), Reduction::BatchMean, &given).unwrap();
    let sum = cpu::compute(Loss::kl_div(), Reduction::Sum, &given).unwrap();
    assert!((want.value - sum.value / 2.0).abs() < 1e-12, "batchmean is the sum over the batch of 2");
    if let Some(gpu) = gpu {
        refused(gpu.compute(Loss::kl_div(), Reduction::BatchMean, &missing));
        let got = gpu.compute(Loss::kl_div(), Reduction::BatchMean, &given).unwrap();
        assert!((got.value as f64 - want.value).abs() <= 1e-6 * want.value.abs());
    }
}

#[test]
fn large_valid_row_shapes_plan() {
    let Some(gpu) = common::gpu("large_valid_row_shapes_plan") else { return };
    // One segmentation crop, and four: each batch fits one binding, so no chunk needs
    // an aligned start.
    for dims in [&[1usize, 21, 513, 513][..], &[4, 21, 511, 511]] {
        let shape = Shape::new(dims);
        gpu.plan(Loss::cross_entropy(), Reduction::Mean, &shape).unwrap_or_else(|e| panic!("{dims:?}: {e}"));
    }
}

#[test]
fn a_device_with_default_limits() {
    let Some(adapter) = common::adapter("a_device_with_default_limits") else { return };
    let (device, queue) = common::device(&adapter, wgpu::Limits::default());
    let gpu = Gpu::from_device(device, queue);
    assert_eq!(gpu.limits().min_storage_buffer_offset_alignment, 256);
    // Rows wider than the alignment allows whole chunks of: refused before, valid.
    for (dims, dtype) in [([1usize, 600001], fused_loss::DType::F32), ([2, 300001], fused_loss::DType::BF16)] {
        let logits: Vec<f32> = (0..dims[0] * dims[1]).map(|i| ((i * 7919) % 1009) as f32 / 100.0 - 5.0).collect();
        let labels: Vec<i32> = (0..dims[0] as i32).map(|r| r * 1000 + 7).collect();
        let inputs = Inputs::labels(&logits, &labels).shape(&dims).dtype(dtype);
        let got =
            gpu.compute(Loss::cross_entropy(), Reduction::Mean, &inputs).unwrap_or_else(|e| panic!("{dims:?}: {e}"));
        let want = cpu::compute(Loss::cross_entropy(), Reduction::Mean, &inputs).unwrap();
        assert!(
            (got.value as f64 - want.value).abs() <= 1e-5 * want.value.abs(),
            "{dims:?}: {} vs {}",
            got.value,
            want.value
        );
    }
    // Nine storage buffers on a device that allows eight: refused at plan time, by name.
    let shape = Shape::new(&[8, 10]);
    let options = Options::new().weight(fused_loss::WeightLayout::PerClass).upstream().lse();
    match gpu.plan_for(Loss::cross_entropy(), Reduction::None, &shape, &options) {
        Err(Error::DeviceLimit { limit: "max_storage_buffers_per_shader_stage", needed: 9, available: 8, .. }) => {}
        other => panic!("expected Error::DeviceLimit, got {:?}", other.map(drop)),
    }
    // The same call on a device with the limits the crate asks the adapter for.
    let (device, queue) = common::device(&adapter, Gpu::wanted_limits(&adapter));
    let full = Gpu::from_device(device, queue);
    if full.limits().max_storage_buffers_per_shader_stage >= 9 {
        full.plan_for(Loss::cross_entropy(), Reduction::None, &shape, &options).unwrap();
    }
}

#[test]
fn non_finite_weights_are_counted() {
    let gpu = common::gpu("non_finite_weights_are_counted");
    let x = [0.3f32, -1.2, 2.0, 0.7, -0.1, 1.5];
    let y = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0];
    let shape = [2usize, 3];
    for bad in [f32::NAN, f32::INFINITY] {
        let weight = [1.0f32, bad, 0.5];
        let pos_weight = [2.0f32, 1.0, bad];
        for (what, inputs, want) in [
            ("weight", Inputs::new(&x, &y).shape(&shape).weight(&weight), 2),
            ("pos_weight", Inputs::new(&x, &y).shape(&shape).pos_weight(&pos_weight), 2),
        ] {
            let cpu = cpu::compute(Loss::bce_with_logits(), Reduction::Sum, &inputs).unwrap();
            assert_eq!(cpu.nonfinite, want, "cpu {what} {bad}");
            if let Some(gpu) = &gpu {
                let got = gpu.compute(Loss::bce_with_logits(), Reduction::Sum, &inputs).unwrap();
                assert_eq!(got.nonfinite as u64, want, "gpu {what} {bad}");
                assert_eq!(got.value.is_nan(), cpu.value.is_nan(), "{what} {bad}: {} vs {}", got.value, cpu.value);
            }
        }
    }
}

/// Input, f32 target and labels of one generated case.
type Operands = (Vec<f32>, Vec<f32>, Vec<i32>);

fn inputs_of<'a>((x, t, l): &'a Operands, dims: &[usize]) -> Inputs<'a> {
    let inputs = if l.is_empty() { Inputs::new(x, t) } else { Inputs::labels(x, l) };
    inputs.shape(dims)
}

/// A seeded xorshift, so that the generated cases are the same on every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// What every refused call must show: the error it expects, on the CPU and the GPU
/// convenience path alike.
fn refused_alike(
    gpu: Option<&Gpu>,
    loss: &Loss,
    reduction: Reduction,
    inputs: &Inputs,
    ok: &dyn Fn(&Error) -> bool,
    what: &str,
) {
    match cpu::compute(loss.clone(), reduction, inputs) {
        Err(e) => assert!(ok(&e), "{what}: CPU gave {e}"),
        Ok(_) => panic!("{what}: CPU accepted it"),
    }
    if let Some(gpu) = gpu {
        match gpu.compute(loss.clone(), reduction, inputs) {
            Err(e) => assert!(ok(&e), "{what}: GPU gave {e}"),
            Ok(_) => panic!("{what}: GPU accepted it"),
        }
    }
}

#[test]
fn hostile_inputs_over_every_loss() {
    let gpu = common::gpu("hostile_inputs_over_every_loss");
    let gpu = gpu.as_ref();
    let mut rng = Seeded(0x5eed_f00d_1234_5678);
    let mut cases = 0usize;
    for loss in registry().into_iter().flat_map(fused_loss::check::variations) {
        let spec = loss.spec();
        let dims: Vec<usize> = vec![3, 5];
        let shape = Shape::new(&dims);
        let (input, target, labels) = valid_operands(&loss, &shape);
        let reduction = Reduction::ALL[rng.below(3)];
        let what = |case: &str| format!("{} {} {case}", spec.name, reduction.name());
        let base = |input: &[f32], target: &[f32], labels: &[i32]| -> Operands {
            (input.to_vec(), target.to_vec(), labels.to_vec())
        };
        // 1. An input one element too long, and one too short.
        for extra in [1usize, 0] {
            let mut ops = base(&input, &target, &labels);
            if extra == 1 {
                ops.0.push(0.5);
            } else {
                ops.0.pop();
            }
            let inputs = inputs_of(&ops, &dims);
            refused_alike(
                gpu,
                &loss,
                reduction,
                &inputs,
                &|e| matches!(e, Error::LengthMismatch { argument: "input", .. }),
                &what("input length"),
            );
            cases += 1;
        }
        // 2. A target of the wrong length.
        let mut ops = base(&input, &target, &labels);
        if ops.2.is_empty() {
            ops.1.push(0.5);
        } else {
            ops.2.push(0);
        }
        let inputs = inputs_of(&ops, &dims);
        refused_alike(
            gpu,
            &loss,
            reduction,
            &inputs,
            &|e| matches!(e, Error::LengthMismatch { .. }),
            &what("target length"),
        );
        cases += 1;
        // 3. Dimensions whose product overflows.
        let ops = base(&input, &target, &labels);
        let huge = [1usize << 33, 1 << 32, 3];
        let inputs = inputs_of(&ops, &huge);
        refused_alike(
            gpu,
            &loss,
            reduction,
            &inputs,
            &|e| matches!(e, Error::InvalidShape { .. }),
            &what("overflowing shape"),
        );
        cases += 1;
        // 4. Each parameter at a value its rule refuses (NaN fails every rule of a float).
        for (name, _) in loss.parameters() {
            for bad in [f64::NAN, -1.0, f64::INFINITY, 1e30] {
                let Some(bad_loss) = loss.with_parameter(name, bad) else { continue };
                if bad_loss.validate().is_ok() {
                    continue;
                }
                let ops = base(&input, &target, &labels);
                let inputs = inputs_of(&ops, &dims);
                refused_alike(
                    gpu,
                    &bad_loss,
                    reduction,
                    &inputs,
                    &|e| matches!(e, Error::InvalidParameter { .. }),
                    &what(&format!("{name} = {bad}")),
                );
                cases += 1;
            }
        }
        // 5. Labels out of range.
        if !labels.is_empty() {
            for bad in [5, 99, -7] {
                let mut ops = base(&input, &target, &labels);
                let at = rng.below(ops.2.len());
                ops.2[at] = bad;
                if Some(bad) == spec.ignore() {
                    continue;
                }
                let inputs = inputs_of(&ops, &dims);
                refused_alike(
                    gpu,
                    &loss,
                    reduction,
                    &inputs,
                    &|e| matches!(e, Error::OutOfDomain { argument: "labels", .. }),
                    &what(&format!("label {bad}")),
                );
                cases += 1;
            }
        }
        // 6. NaN and ±inf in every operand the loss reads: the GPU agrees with the CPU on
        // whether the loss is finite and on the count of non-finite elements.
        let weight_len = if spec.is_row_wise() { 5 } else { shape.len() };
        for operand in ["input", "target", "weight", "pos_weight"] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut ops = base(&input, &target, &labels);
                let mut weight = vec![0.75f32; weight_len];
                let mut pos_weight = vec![1.5f32; 5];
                let at = match operand {
                    "input" | "target" => rng.below(shape.len()),
                    "weight" => rng.below(weight_len),
                    _ => rng.below(5),
                };
                match operand {
                    "input" => ops.0[at] = bad,
                    "target" if ops.2.is_empty() => ops.1[at] = bad,
                    "weight" if spec.takes_weight => weight[at] = bad,
                    "pos_weight" if spec.takes_pos_weight => pos_weight[at] = bad,
                    _ => continue,
                }
                let mut inputs = inputs_of(&ops, &dims);
                if spec.takes_weight && operand == "weight" {
                    inputs = inputs.weight(&weight);
                }
                if spec.takes_pos_weight && operand == "pos_weight" {
                    inputs = inputs.pos_weight(&pos_weight);
                }
                let case = what(&format!("{bad} in {operand} at {at}"));
                let want = match cpu::compute(loss.clone(), reduction, &inputs) {
                    Ok(out) => Ok(out),
                    Err(e) => Err(e.to_string()),
                };
                if let Some(gpu) = gpu {
                    let got = gpu.compute(loss.clone(), reduction, &inputs).map_err(|e| e.to_string());
                    match (&got, &want) {
                        (Ok(g), Ok(w)) => {
                            assert_eq!(g.nonfinite as u64, w.nonfinite, "{case}: non-finite count");
                            let kind = |v: f64| (v.is_nan(), v.is_infinite());
                            assert_eq!(
                                kind(g.value as f64),
                                kind(w.value),
                                "{case}: value {} vs {} ({loss:?}, {ops:?})",
                                g.value,
                                w.value
                            );
                        }
                        (Err(g), Err(w)) => assert_eq!(g, w, "{case}"),
                        _ => panic!(
                            "{case}: GPU {:?} vs CPU {:?}",
                            got.as_ref().map(|o| o.value),
                            want.as_ref().map(|o| o.value)
                        ),
                    }
                }
                cases += 1;
            }
        }
        // 7. Bad buffers on the embedding path: each refused by name, nothing written.
        if let Some(gpu) = gpu {
            let plan = gpu.plan(loss.clone(), Reduction::Sum, &shape).unwrap();
            let input_buffer = filled(gpu, shape.len(), 0.5);
            let target_buffer = if labels.is_empty() {
                filled(gpu, shape.len(), 0.5)
            } else {
                gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: None,
                    contents: bytemuck::cast_slice(&labels),
                    usage: STORAGE,
                })
            };
            let grad = filled(gpu, shape.len() + 128, SENTINEL);
            let stats = filled(gpu, 64, SENTINEL);
            let plain = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 4096,
                usage: wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let small = filled(gpu, 1, SENTINEL);
            let align = gpu.limits().min_storage_buffer_offset_alignment as u64;
            let good = || {
                Bindings::new()
                    .input(input_buffer.slice(..))
                    .target(target_buffer.slice(..))
                    .grad(grad.slice(..))
                    .stats(stats.slice(..32))
            };
            type Expect = fn(&Error) -> bool;
            let mut attempts: Vec<(&str, Bindings, Expect)> = vec![
                ("grad without STORAGE", good().grad(plain.slice(..)), |e| {
                    matches!(e, Error::BufferUsage { argument: "grad", .. })
                }),
                ("grad too small", good().grad(small.slice(..)), |e| {
                    matches!(e, Error::BufferTooSmall { argument: "grad", .. })
                }),
                ("grad over the input", good().grad(input_buffer.slice(..)), |e| matches!(e, Error::Aliased { .. })),
                ("stats inside grad", good().stats(grad.slice(..)), |e| matches!(e, Error::Aliased { .. })),
                (
                    "no stats",
                    Bindings::new().input(input_buffer.slice(..)).target(target_buffer.slice(..)).grad(grad.slice(..)),
                    |e| matches!(e, Error::MissingArgument { argument: "stats", .. }),
                ),
            ];
            if align > 4 {
                attempts.push(("misaligned stats", good().stats(stats.slice(4..)), |e| {
                    matches!(e, Error::MisalignedOffset { argument: "stats", .. })
                }));
            }
            for (case, bindings, ok) in attempts {
                match encode_and_submit(gpu, &plan, &bindings) {
                    Err(e) => assert!(ok(&e), "{}: {e}", what(case)),
                    Ok(()) => panic!("{}: accepted", what(case)),
                }
                cases += 1;
            }
            assert!(
                common::read_floats(gpu, &grad).iter().all(|&g| g == SENTINEL),
                "{}: a refused call wrote the gradient",
                spec.name
            );
            assert!(
                common::read_floats(gpu, &stats).iter().all(|&g| g == SENTINEL),
                "{}: a refused call wrote the stats",
                spec.name
            );
        }
    }
    eprintln!("hostile_inputs_over_every_loss: {cases} cases");
    assert!(cases >= 800, "only {cases} cases");
}
