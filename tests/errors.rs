//! Each bad input gets its specific error, and a failed call changes nothing.

mod common;

use fused_loss::{cpu, Bindings, DType, Error, Gpu, Inputs, Loss, LossStats, Options, Reduction, Shape, WeightLayout};
use wgpu::util::DeviceExt;

const X: [f32; 4] = [0.1, 0.2, 0.3, 0.4];
const Y: [f32; 4] = [0.0, 1.0, 1.0, 0.0];

/// The error from both the CPU reference and (when there is one) the GPU.
fn both(gpu: Option<&Gpu>, loss: impl Into<Loss>, reduction: Reduction, inputs: &Inputs) -> Vec<Error> {
    let loss = loss.into();
    let mut errors = vec![cpu::compute(&loss, reduction, inputs).expect_err("CPU accepted bad input")];
    if let Some(gpu) = gpu {
        errors.push(gpu.compute(&loss, reduction, inputs).expect_err("GPU accepted bad input"));
    }
    errors
}

#[test]
fn host_argument_errors() {
    let gpu = common::gpu("host_argument_errors");
    let gpu = gpu.as_ref();
    for e in both(gpu, Loss::mse(), Reduction::Mean, &Inputs::new(&X, &Y[..3])) {
        assert!(matches!(e, Error::LengthMismatch { argument: "target", actual: 3, .. }), "{e}");
    }
    for e in both(gpu, Loss::mse(), Reduction::Mean, &Inputs::new(&X, &Y).shape(&[3, 2])) {
        assert!(matches!(e, Error::LengthMismatch { argument: "input", actual: 4, .. }), "{e}");
    }
    for e in both(gpu, Loss::l1(), Reduction::Mean, &Inputs::new(&[], &[])) {
        assert!(matches!(e, Error::EmptyInput { loss: "l1", reduction: "mean" }), "{e}");
    }
    for e in both(gpu, Loss::huber().delta(-1.0), Reduction::Sum, &Inputs::new(&X, &Y)) {
        assert!(matches!(e, Error::InvalidParameter { loss: "huber", name: "delta", .. }), "{e}");
    }
    for e in both(gpu, Loss::huber().delta(0.0), Reduction::Sum, &Inputs::new(&X, &Y)) {
        assert!(matches!(e, Error::InvalidParameter { name: "delta", .. }), "{e}");
    }
    for e in both(gpu, Loss::smooth_l1().beta(f32::NAN), Reduction::Sum, &Inputs::new(&X, &Y)) {
        assert!(matches!(e, Error::InvalidParameter { loss: "smooth_l1", name: "beta", .. }), "{e}");
    }
    for e in both(gpu, Loss::mse(), Reduction::Sum, &Inputs::new(&X, &Y).weight(&X)) {
        assert!(matches!(e, Error::UnsupportedArgument { loss: "mse", argument: "weight" }), "{e}");
    }
    for e in both(gpu, Loss::bce(), Reduction::Sum, &Inputs::new(&X, &Y).pos_weight(&[1.0])) {
        assert!(matches!(e, Error::UnsupportedArgument { loss: "bce", argument: "pos_weight" }), "{e}");
    }
    for e in both(
        gpu,
        Loss::bce_with_logits(),
        Reduction::Sum,
        &Inputs::new(&X, &Y).shape(&[2, 2]).pos_weight(&[1.0, 2.0, 3.0]),
    ) {
        assert!(matches!(e, Error::LengthMismatch { argument: "pos_weight", actual: 3, .. }), "{e}");
    }
    for e in both(gpu, Loss::bce(), Reduction::Sum, &Inputs::new(&X, &Y).shape(&[2, 2]).weight(&[1.0, 2.0, 3.0])) {
        assert!(matches!(e, Error::LengthMismatch { argument: "weight", actual: 3, .. }), "{e}");
    }
    // BCE's target is not differentiable here (PyTorch has no BCELoss target gradient).
    for e in both(gpu, Loss::bce(), Reduction::Sum, &Inputs::new(&X, &Y).with_target_grad()) {
        assert!(
            matches!(e, Error::UnsupportedArgument { loss: "bce", argument } if argument.contains("target")),
            "{e}"
        );
    }
    for e in both(gpu, Loss::mse(), Reduction::Mean, &Inputs::new(&X, &Y).upstream(&X)) {
        assert!(matches!(e, Error::LengthMismatch { argument: "upstream", actual: 4, .. }), "{e}");
    }
    // Probabilities outside [0, 1]: counted on the GPU, reported with the count.
    let bad = [0.5, 1.5, -0.1, f32::NAN];
    for e in both(gpu, Loss::bce(), Reduction::Mean, &Inputs::new(&bad, &Y)) {
        assert!(matches!(e, Error::OutOfDomain { argument: "input", count: 3, .. }), "{e}");
    }
}

#[test]
fn empty_input_is_fine_where_defined() {
    let out = cpu::compute(Loss::mse(), Reduction::Sum, &Inputs::new(&[], &[])).unwrap();
    assert_eq!(out.value, 0.0);
    if let Some(gpu) = common::gpu("empty_input_is_fine_where_defined") {
        let out = gpu.compute(Loss::mse(), Reduction::None, &Inputs::new(&[], &[])).unwrap();
        assert_eq!((out.value, out.grad.len(), out.per_element.map(|v| v.len())), (0.0, 0, Some(0)));
    }
}

/// Caller buffers for `n` elements; `grad` starts as a sentinel pattern.
struct Buffers {
    input: wgpu::Buffer,
    target: wgpu::Buffer,
    grad: wgpu::Buffer,
    stats: wgpu::Buffer,
    plain: wgpu::Buffer,
}

const SENTINEL: f32 = 12345.0;

fn buffers(gpu: &Gpu, n: usize) -> Buffers {
    let d = gpu.device();
    let make = |usage, value: f32| {
        d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: None,
            contents: bytemuck::cast_slice(&vec![value; n + 64]),
            usage,
        })
    };
    let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
    Buffers {
        input: make(storage, 0.25),
        target: make(storage, 0.5),
        grad: make(storage, SENTINEL),
        stats: make(storage, SENTINEL),
        plain: make(wgpu::BufferUsages::COPY_SRC, 0.0),
    }
}

#[test]
fn buffer_errors_record_nothing() {
    let Some(gpu) = common::gpu("buffer_errors_record_nothing") else {
        return;
    };
    let n = 100;
    let b = buffers(&gpu, n);
    let bytes = (n * 4) as u64;
    let plan = gpu.plan(Loss::mse(), Reduction::Mean, &Shape::elementwise(n)).unwrap();
    let none_plan = gpu.plan(Loss::mse(), Reduction::None, &Shape::elementwise(n)).unwrap();
    let stats = || b.stats.slice(..LossStats::SIZE);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());

    // Buffers are bound by name; a missing one, or a gradient sent to two places, is named.
    let full = || Bindings::new().input(b.input.slice(..)).target(b.target.slice(..)).stats(stats());
    let e = plan.encode(&mut encoder, &Bindings::new().target(b.target.slice(..)).grad(b.grad.slice(..))).unwrap_err();
    assert!(matches!(e, Error::MissingArgument { argument: "input", .. }), "{e}");
    let e = plan.encode(&mut encoder, &full()).unwrap_err();
    assert!(matches!(e, Error::MissingArgument { argument: "grad", .. }), "{e}");
    let e = plan.encode(&mut encoder, &full().grad(b.grad.slice(..)).in_place()).unwrap_err();
    assert!(matches!(e, Error::UnsupportedArgument { .. }), "{e}");
    let e =
        plan.encode(&mut encoder, &Bindings::new().input(b.input.slice(..)).target(b.target.slice(..))).unwrap_err();
    assert!(matches!(e, Error::MissingArgument { argument: "stats", .. }), "{e}");

    let e = plan
        .encode(
            &mut encoder,
            &Bindings::new().input(b.plain.slice(..)).target(b.target.slice(..)).grad(b.grad.slice(..)).stats(stats()),
        )
        .unwrap_err();
    assert!(matches!(e, Error::BufferUsage { argument: "input", .. }), "{e}");
    let e = plan
        .encode(
            &mut encoder,
            &Bindings::new()
                .input(b.input.slice(..))
                .target(b.target.slice(..bytes - 4))
                .grad(b.grad.slice(..))
                .stats(stats()),
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::BufferTooSmall { argument: "target", required, actual } if required == bytes && actual == bytes - 4),
        "{e}"
    );
    let e = plan
        .encode(
            &mut encoder,
            &Bindings::new()
                .input(b.input.slice(..))
                .target(b.target.slice(..))
                .grad(b.grad.slice(..))
                .stats(b.stats.slice(..16)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::BufferTooSmall { argument: "stats", required: 32, actual: 16 }), "{e}");
    let e = plan
        .encode(
            &mut encoder,
            &Bindings::new().input(b.input.slice(4..)).target(b.target.slice(..)).grad(b.grad.slice(..)).stats(stats()),
        )
        .unwrap_err();
    assert!(matches!(e, Error::MisalignedOffset { argument: "input", offset: 4, .. }), "{e}");
    let e = none_plan
        .encode(
            &mut encoder,
            &Bindings::new().input(b.input.slice(..)).target(b.target.slice(..)).grad(b.grad.slice(..)).stats(stats()),
        )
        .unwrap_err();
    assert!(matches!(e, Error::MissingArgument { argument: "per_element", .. }), "{e}");
    let e = plan
        .encode(
            &mut encoder,
            &Bindings::new()
                .input(b.input.slice(..))
                .target(b.target.slice(..))
                .grad(b.grad.slice(..))
                .stats(stats())
                .weight(b.input.slice(..)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::NotPlanned { operand: "weight", declared: false }), "{e}");
    let weighted = Options::new().weight(WeightLayout::PerElement);
    let e = gpu.plan_for(Loss::mse(), Reduction::Mean, &Shape::elementwise(n), &weighted).err().expect("planned");
    assert!(matches!(e, Error::UnsupportedArgument { loss: "mse", argument: "weight" }), "{e}");
    // Declared when planning but not bound.
    let weighted = gpu.plan_for(Loss::bce(), Reduction::Mean, &Shape::elementwise(n), &weighted).unwrap();
    let e = weighted.encode(&mut encoder, &full().grad(b.grad.slice(..))).unwrap_err();
    assert!(matches!(e, Error::NotPlanned { operand: "weight", declared: true }), "{e}");
    assert!(matches!(
        gpu.plan(Loss::huber().delta(-0.5), Reduction::Mean, &Shape::elementwise(n)),
        Err(Error::InvalidParameter { name: "delta", .. })
    ));
    assert!(matches!(gpu.plan(Loss::mse(), Reduction::Mean, &Shape::new(&[0, 3])), Err(Error::EmptyInput { .. })));

    // Every call above failed: submitting the encoder must leave the caller's grad and
    // stats exactly as they were.
    gpu.queue().submit([encoder.finish()]);
    assert!(common::read_floats(&gpu, &b.grad).iter().all(|&g| g == SENTINEL), "a failed encode wrote the gradient");
    assert!(common::read_floats(&gpu, &b.stats).iter().all(|&g| g == SENTINEL), "a failed encode wrote the stats");
}

const LOGITS: [f32; 6] = [0.5, -1.0, 2.0, 0.0, 1.0, -3.0];

#[test]
fn row_wise_argument_errors() {
    let gpu = common::gpu("row_wise_argument_errors");
    let gpu = gpu.as_ref();
    let ce = Loss::cross_entropy();
    // Labels out of range: counted on the GPU, reported with the count.
    for e in both(gpu, ce, Reduction::Mean, &Inputs::labels(&LOGITS, &[3, -1]).shape(&[2, 3])) {
        assert!(matches!(e, Error::OutOfDomain { argument: "labels", count: 2, .. }), "{e}");
    }
    for e in both(gpu, Loss::nll(), Reduction::Sum, &Inputs::labels(&LOGITS, &[0, 7]).shape(&[2, 3])) {
        assert!(matches!(e, Error::OutOfDomain { argument: "labels", count: 1, .. }), "{e}");
    }
    for e in both(gpu, ce, Reduction::Mean, &Inputs::labels(&LOGITS, &[0, 1, 2]).shape(&[2, 3])) {
        assert!(matches!(e, Error::LengthMismatch { argument: "labels", actual: 3, .. }), "{e}");
    }
    for e in both(gpu, ce, Reduction::Mean, &Inputs::labels(&LOGITS, &[0, 1]).shape(&[2, 3]).weight(&[1.0, 2.0])) {
        assert!(matches!(e, Error::LengthMismatch { argument: "weight", actual: 2, .. }), "{e}");
    }
    for e in both(gpu, ce, Reduction::Mean, &Inputs::new(&LOGITS, &LOGITS).shape(&[2, 3])) {
        assert!(matches!(e, Error::UnsupportedArgument { loss: "cross_entropy", .. }), "{e}");
    }
    for e in both(gpu, ce, Reduction::Mean, &Inputs::labels(&LOGITS, &[0; 6])) {
        assert!(matches!(e, Error::InvalidShape { .. }), "{e}");
    }
    let smoothing = Loss::cross_entropy().ignore_index(-100).label_smoothing(1.5).z_loss(0.0).softcap(0.0);
    for e in both(gpu, smoothing, Reduction::Mean, &Inputs::labels(&LOGITS, &[0, 1]).shape(&[2, 3])) {
        assert!(matches!(e, Error::InvalidParameter { name: "label_smoothing", .. }), "{e}");
    }
    let soft = Loss::cross_entropy_soft().label_smoothing(0.0);
    for e in both(gpu, soft, Reduction::Mean, &Inputs::new(&LOGITS, &LOGITS).shape(&[2, 3]).with_accuracy()) {
        assert!(matches!(e, Error::UnsupportedArgument { argument: "accuracy (it has no label per row)", .. }), "{e}");
    }
    // The margin losses: (N, C) only; multi-margin has no ignore_index (-100 is out of
    // range); multi-label margin lists are C per row, every entry in [-1, C) (also after
    // the -1, as PyTorch checks), no in-place gradient, no log-sum-exp.
    let multi_margin = Loss::multi_margin().p(1).margin(1.0);
    for e in both(gpu, multi_margin, Reduction::Mean, &Inputs::labels(&LOGITS, &[0, -100]).shape(&[2, 3])) {
        assert!(matches!(e, Error::OutOfDomain { argument: "labels", count: 1, .. }), "{e}");
    }
    for e in both(gpu, multi_margin, Reduction::Mean, &Inputs::labels(&LOGITS, &[0, 1]).shape(&[2, 3, 1])) {
        assert!(matches!(e, Error::InvalidShape { .. }), "{e}");
    }
    for e in both(
        gpu,
        Loss::multi_margin().p(3).margin(1.0),
        Reduction::Sum,
        &Inputs::labels(&LOGITS, &[0, 1]).shape(&[2, 3]),
    ) {
        assert!(matches!(e, Error::InvalidParameter { name: "p", .. }), "{e}");
    }
    for e in both(gpu, multi_margin, Reduction::Sum, &Inputs::labels(&LOGITS, &[0, 1]).shape(&[2, 3]).with_lse()) {
        assert!(matches!(e, Error::UnsupportedArgument { argument: "log-sum-exp (it has no softmax)", .. }), "{e}");
    }
    // The per-class breakdown: elementwise losses over (..., C) only.
    for e in both(gpu, ce, Reduction::Mean, &Inputs::labels(&LOGITS, &[0, 1]).shape(&[2, 3]).with_per_class()) {
        assert!(matches!(e, Error::UnsupportedArgument { loss: "cross_entropy", .. }), "{e}");
    }
    for e in both(gpu, Loss::bce_with_logits(), Reduction::Mean, &Inputs::new(&LOGITS, &LOGITS).with_per_class()) {
        assert!(matches!(e, Error::InvalidShape { .. }), "{e}");
    }
    let lists = Loss::multilabel_margin();
    for e in both(gpu, lists, Reduction::Sum, &Inputs::labels(&LOGITS, &[0, -1, 5, 2, -1, -2]).shape(&[2, 3])) {
        assert!(matches!(e, Error::OutOfDomain { argument: "labels", count: 2, .. }), "{e}");
    }
    for e in both(gpu, lists, Reduction::Sum, &Inputs::labels(&LOGITS, &[0, 1]).shape(&[2, 3])) {
        assert!(matches!(e, Error::LengthMismatch { argument: "labels", actual: 2, .. }), "{e}");
    }
    for e in both(gpu, lists, Reduction::Sum, &Inputs::labels(&LOGITS, &[0, -1, 0, 2, -1, 0]).shape(&[2, 3]).in_place())
    {
        assert!(matches!(e, Error::UnsupportedArgument { loss: "multilabel_margin", .. }), "{e}");
    }
    for e in both(gpu, Loss::mse(), Reduction::BatchMean, &Inputs::new(&X, &Y)) {
        assert!(matches!(e, Error::UnsupportedReduction { loss: "mse", reduction: "batchmean" }), "{e}");
    }
    for e in both(gpu, Loss::kl_div().log_target(false), Reduction::Sum, &Inputs::new(&X, &[0.5, -0.5, 0.0, 1.0])) {
        assert!(matches!(e, Error::OutOfDomain { argument: "target", count: 1, .. }), "{e}");
    }
}

#[test]
fn all_rows_ignored_is_nan_mean_and_zero_gradient() {
    // PyTorch: a mean over no rows is NaN; the gradient here is 0 rather than NaN.
    let labels = [-100, -100];
    let inputs = Inputs::labels(&LOGITS, &labels).shape(&[2, 3]);
    let want = cpu::compute(Loss::cross_entropy(), Reduction::Mean, &inputs).unwrap();
    assert!(want.value.is_nan() && want.grad.iter().all(|&g| g == 0.0));
    if let Some(gpu) = common::gpu("all_rows_ignored_is_nan_mean_and_zero_gradient") {
        let got = gpu.compute(Loss::cross_entropy(), Reduction::Mean, &inputs).unwrap();
        assert!(got.value.is_nan() && got.grad.iter().all(|&g| g == 0.0), "{got:?}");
        let sum = gpu.compute(Loss::cross_entropy(), Reduction::Sum, &inputs).unwrap();
        assert_eq!(sum.value, 0.0);
    }
}

#[test]
fn out_of_range_labels_write_a_zero_gradient() {
    let Some(gpu) = common::gpu("out_of_range_labels_write_a_zero_gradient") else { return };
    let (rows, classes) = (300, 40);
    let b = buffers(&gpu, rows * classes);
    let mut labels: Vec<i32> = (0..rows as i32).map(|r| r % classes as i32).collect();
    labels[17] = classes as i32;
    labels[250] = -7;
    let label_buffer = gpu.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&labels),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let plan = gpu.plan(Loss::cross_entropy(), Reduction::Mean, &Shape::new(&[rows, classes])).unwrap();
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    let bindings = Bindings::new()
        .input(b.input.slice(..))
        .labels(label_buffer.slice(..))
        .grad(b.grad.slice(..))
        .stats(b.stats.slice(..LossStats::SIZE));
    plan.encode(&mut encoder, &bindings).unwrap();
    gpu.queue().submit([encoder.finish()]);
    let stats: LossStats =
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(&common::read_floats(&gpu, &b.stats)[..8]));
    assert_eq!(stats.invalid, 2);
    let grad = common::read_floats(&gpu, &b.grad);
    assert!(grad[..rows * classes].iter().all(|&g| g == 0.0), "gradient not zeroed despite invalid labels");
    assert!(grad[rows * classes..].iter().all(|&g| g == SENTINEL), "written past the gradient");
}

#[test]
fn f16_without_the_device_feature_is_refused_by_name() {
    // The test adapter's device without SHADER_F16, as on GL.
    let Some(_) = common::gpu("f16_without_the_device_feature_is_refused_by_name") else { return };
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let bare = Gpu::from_device(device, queue);
    assert!(!bare.features().contains(wgpu::Features::SHADER_F16));
    let refused = |e: Error| {
        assert!(matches!(e, Error::MissingFeature { feature: "SHADER_F16", .. }), "{e}");
        assert!(e.to_string().contains("SHADER_F16") && e.to_string().contains("mse"), "{e}");
    };
    refused(bare.plan_with(Loss::mse(), Reduction::Mean, &Shape::new(&[4]), DType::F16).err().expect("f16 planned"));
    refused(bare.compute(Loss::mse(), Reduction::Mean, &Inputs::new(&X, &Y).dtype(DType::F16)).expect_err("f16 ran"));
    // bf16 needs no feature.
    let out = bare.compute(Loss::mse(), Reduction::Sum, &Inputs::new(&X, &Y).dtype(DType::BF16)).unwrap();
    assert_eq!(out.grad.len(), 4);
}
