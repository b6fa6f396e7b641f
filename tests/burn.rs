//! fused-loss from burn (feature `burn`): every registry loss on burn's default wgpu
//! backend (fusion on) through burn's autodiff, against the f64 CPU reference; the burn
//! path against the embedding path bit for bit in every element type; against burn's own
//! cross-entropy; and the errors. The plain (un-fused) backend is tested in
//! `src/burn/mod.rs`.

use burn::backend::wgpu::WgpuDevice;
use burn::tensor::{Device, Int, Tensor, TensorData};
use fused_loss::burn::FusedLoss;
use fused_loss::check::{compare, standard_cases, Case, CaseData, WeightKind};
use fused_loss::{cpu, DType, Error, Loss, Output, Reduction};

fn device() -> Device {
    fused_loss::burn::device(WgpuDevice::default()).expect("lavapipe through burn's wgpu runtime")
}

/// The labels of a case as burn gives them (i64 on the host; burn stores its int type).
fn labels<const L: usize>(data: &CaseData, dims: &[usize], device: &Device) -> Tensor<L, Int> {
    let values: Vec<i64> = data.labels.iter().map(|&l| l as i64).collect();
    Tensor::from_data(TensorData::new(values, dims.to_vec()), device)
}

fn floats<const D: usize>(values: &[f32], dims: &[usize], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values.to_vec(), dims.to_vec()), device)
}

fn host(tensor: Tensor<1>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_to_vec::<f32>().expect("f32 data")
}

/// The call a case describes, with its weights.
fn call<const D: usize>(case: &Case, data: &CaseData, device: &Device) -> FusedLoss {
    let mut call = FusedLoss::new(case.loss.clone()).reduction(case.reduction);
    if let Some(weight) = &data.weight {
        call = match case.weight {
            WeightKind::PerElement => call.weight(floats::<D>(weight, &case.dims, device)),
            _ => call.weight(floats::<1>(weight, &[weight.len()], device)),
        };
    }
    if let Some(pos_weight) = &data.pos_weight {
        call = call.pos_weight(floats::<1>(pos_weight, &[pos_weight.len()], device));
    }
    call
}

/// The case on an autodiff device: forward, the upstream gradient (when the case has one)
/// applied by burn, `backward()`, the gradients read back.
fn through_autodiff<const D: usize>(case: &Case, data: &CaseData, device: &Device) -> Result<Output, Error> {
    let spec = case.loss.spec();
    let dims = &case.dims;
    let input = floats::<D>(&data.input, dims, device).require_grad();
    let call = call::<D>(case, data, device);
    let labels_per_row = spec.labels_per_row(fused_loss::Shape::new(dims).classes());
    let mut target_leaf = None;
    let loss = if labels_per_row == 1 {
        let mut rows = dims.clone();
        rows.remove(1);
        match rows.len() {
            1 => call.forward(input.clone(), labels::<1>(data, &rows, device))?,
            2 => call.forward(input.clone(), labels::<2>(data, &rows, device))?,
            3 => call.forward(input.clone(), labels::<3>(data, &rows, device))?,
            _ => unreachable!("the cases' shapes"),
        }
    } else if labels_per_row > 1 {
        call.forward(input.clone(), labels::<D>(data, dims, device))?
    } else {
        let target = floats::<D>(&data.target, dims, device);
        let target = if case.target_grad { target.require_grad() } else { target };
        target_leaf = Some(target.clone());
        call.forward(input.clone(), target)?
    };
    let values = host(loss.clone());
    let objective = match &data.upstream {
        Some(upstream) => (loss * floats::<1>(upstream, &[upstream.len()], device)).sum(),
        None => loss.sum(),
    };
    let grads = objective.backward();
    let grad = input.grad(&grads).expect("the input's gradient");
    let mut output = Output::new(values.iter().sum(), host(grad.flatten(0, D - 1)));
    if case.reduction == Reduction::None {
        output.per_element = Some(values);
    } else {
        output.value = values[0];
    }
    if case.target_grad {
        let target = target_leaf.expect("a float target");
        output.target_grad = Some(host(target.grad(&grads).expect("the target's gradient").flatten(0, D - 1)));
    }
    Ok(output)
}

fn run(case: &Case, device: &Device) -> Result<Output, Error> {
    let data = case.data();
    match case.dims.len() {
        1 => through_autodiff::<1>(case, &data, device),
        2 => through_autodiff::<2>(case, &data, device),
        3 => through_autodiff::<3>(case, &data, device),
        4 => through_autodiff::<4>(case, &data, device),
        _ => unreachable!("the cases' shapes"),
    }
}

/// The standard matrix's options (weights, pos_weight, upstream, target gradients) on
/// shapes that reach both row kernels and a strided class dimension, f32.
#[test]
fn every_registry_loss_through_burn_autodiff_matches_the_cpu_reference() {
    let device = device().autodiff();
    let cases: Vec<Case> = standard_cases(&[&[257], &[33, 7]], &[&[257, 3], &[4, 33], &[2, 5, 3, 3]])
        .into_iter()
        .filter(|c| c.dtype == DType::F32 && !c.in_place && !c.row_outputs)
        .collect();
    assert!(cases.len() > 200, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let data = case.data();
        let want = cpu::compute(&case.loss, case.reduction, &data.inputs(case)).expect("the reference");
        match run(case, &device) {
            Ok(got) => {
                let agreement = compare(case, &data, &got, &want);
                if !agreement.passes() {
                    failures.push(format!("{}: {agreement:?}", case.test_name()));
                }
            }
            Err(error) => failures.push(format!("{}: {error}", case.test_name())),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// `FusedLoss::compute` (no autodiff) is the embedding path on burn's buffers: the same
/// kernels, so the same bits, in every element type the adapter stores.
#[test]
fn burn_path_equals_the_embedding_path_bit_for_bit() {
    let device = device();
    let gpu = fused_loss::burn::gpu(&device).expect("registered");
    let mut compared = 0;
    for loss in fused_loss::registry() {
        let spec = loss.spec();
        let dims: &[usize] = if spec.is_row_wise() { &[67, 5] } else { &[3, 41] };
        for dtype in DType::ALL {
            let burn_dtype = match dtype {
                DType::F32 => burn::tensor::DType::F32,
                DType::F16 => burn::tensor::DType::F16,
                DType::BF16 => burn::tensor::DType::BF16,
            };
            if !fused_loss::burn::stores(&device, burn_dtype) {
                // burn cannot make the tensor here: the call must say so.
                let input = floats::<2>(&[0.0; 10], &[2, 5], &device).cast(burn_dtype);
                let error = FusedLoss::new(Loss::mse()).forward(input.clone(), input).unwrap_err();
                assert!(matches!(error, Error::ElementType { argument: "input", .. }), "{error}");
                continue;
            }
            if dtype == DType::F16 && !gpu.features().contains(fused_loss::wgpu::Features::SHADER_F16) {
                continue;
            }
            for reduction in [Reduction::Mean, Reduction::None] {
                let mut case = Case::new(loss.clone(), reduction, dims, 7);
                case.dtype = dtype;
                let data = case.data();
                let want = gpu.compute(&loss, reduction, &data.inputs(&case)).expect("embedding path");
                let input = floats::<2>(&data.input, dims, &device).cast(burn_dtype);
                let call = FusedLoss::new(loss.clone()).reduction(reduction);
                let labels_per_row = spec.labels_per_row(dims[1]);
                let got = if labels_per_row == 1 {
                    call.compute(input, labels::<1>(&data, &dims[..1], &device))
                } else if labels_per_row > 1 {
                    call.compute(input, labels::<2>(&data, dims, &device))
                } else {
                    call.compute(input, floats::<2>(&data.target, dims, &device).cast(burn_dtype))
                }
                .expect("burn path");
                let name = format!("{} {} {}", loss.name(), reduction.name(), dtype.name());
                let grad = host(got.grad.flatten(0, 1));
                let value_bits = match reduction {
                    Reduction::None => host(got.loss).iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    _ => vec![host(got.loss)[0].to_bits()],
                };
                let want_bits = match reduction {
                    Reduction::None => want.per_element.as_ref().expect("none").iter().map(|v| v.to_bits()).collect(),
                    _ => vec![want.value.to_bits()],
                };
                assert_eq!(value_bits, want_bits, "{name}: loss");
                let grad_bits: Vec<u32> = grad.iter().map(|v| v.to_bits()).collect();
                let want_grad: Vec<u32> = want.grad.iter().map(|v| v.to_bits()).collect();
                assert_eq!(grad_bits, want_grad, "{name}: gradient");
                let stats = got.stats.read().expect("stats");
                assert_eq!(stats.value.to_bits(), want.value.to_bits(), "{name}: stats value");
                assert_eq!(stats.nonfinite, want.nonfinite, "{name}: nonfinite");
                compared += 1;
            }
        }
    }
    assert!(compared >= 2 * 2 * fused_loss::registry().len());
}

/// burn's own `CrossEntropyLoss` and fused-loss's agree on the loss and the gradient.
#[test]
fn cross_entropy_equals_burns_own() {
    let device = device().autodiff();
    let (n, c) = (37, 11);
    let logits: Vec<f32> = (0..n * c).map(|i| ((i * 7919) % 97) as f32 / 13.0 - 3.5).collect();
    let labels: Vec<i64> = (0..n).map(|i| ((i * 5) % c) as i64).collect();
    let run = |fused: bool| {
        let x = floats::<2>(&logits, &[n, c], &device).require_grad();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), &device);
        let loss = if fused {
            fused_loss::burn::cross_entropy(x.clone() * 2.0, y).expect("fused")
        } else {
            burn::nn::loss::CrossEntropyLossConfig::new().init(&device).forward(x.clone() * 2.0, y)
        };
        let grads = (loss.clone() * 3.0).backward();
        (host(loss)[0], host(x.grad(&grads).expect("grad").flatten(0, 1)))
    };
    let (fused_value, fused_grad) = run(true);
    let (burn_value, burn_grad) = run(false);
    assert!((fused_value - burn_value).abs() <= 1e-5 * burn_value.abs(), "{fused_value} vs {burn_value}");
    for (i, (f, b)) in fused_grad.iter().zip(&burn_grad).enumerate() {
        assert!((f - b).abs() <= 1e-6 + 1e-4 * b.abs(), "gradient {i}: {f} vs {b}");
    }
}

/// A float target that requires a gradient gets one for losses that differentiate it
/// (JSD's teacher), and none is made for a target that does not require one.
#[test]
fn a_differentiable_target_is_registered_as_a_second_parent() {
    let device = device().autodiff();
    let dims = [5, 4];
    let mut case = Case::new(Loss::jsd(), Reduction::BatchMean, &dims, 3);
    case.target_grad = true;
    let data = case.data();
    let want = cpu::compute(&case.loss, case.reduction, &data.inputs(&case)).expect("reference");
    let got = through_autodiff::<2>(&case, &data, &device).expect("burn");
    assert!(compare(&case, &data, &got, &want).passes());
    let student = floats::<2>(&data.input, &dims, &device).require_grad();
    let teacher = floats::<2>(&data.target, &dims, &device);
    let loss = fused_loss::burn::loss(Loss::jsd(), Reduction::BatchMean, student.clone(), teacher.clone()).unwrap();
    let grads = loss.backward();
    assert!(student.grad(&grads).is_some());
    assert!(teacher.grad(&grads).is_none());
}

/// Labels out of range: no error on the host (they are only seen on the GPU), a zero
/// gradient, and the count in the stats.
#[test]
fn invalid_labels_leave_a_zero_gradient_and_are_counted() {
    let device = device();
    let x = floats::<2>(&[0.5, -1.0, 2.0, 0.0, 1.0, 3.0], &[2, 3], &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 7], [2]), &device);
    let got = FusedLoss::new(Loss::cross_entropy()).compute(x, y).unwrap();
    assert!(host(got.grad.flatten(0, 1)).iter().all(|&g| g == 0.0));
    let stats = got.stats.read().unwrap();
    assert_eq!(stats.invalid, 1);
}

#[test]
fn bad_calls_are_errors_before_anything_runs() {
    let device = device();
    let x = floats::<2>(&[0.0; 12], &[4, 3], &device);
    let labels = |n: usize| Tensor::<1, Int>::from_data(TensorData::new(vec![0i64; n], [n]), &device);
    let err = |r: Result<Tensor<1>, Error>| r.expect_err("must be refused").to_string();
    // The labels' shape.
    assert!(err(fused_loss::burn::cross_entropy(x.clone(), labels(5))).contains("must have shape [4]"));
    // A float target for a label loss, labels for a value loss.
    assert!(err(fused_loss::burn::loss(Loss::cross_entropy(), Reduction::Mean, x.clone(), x.clone()))
        .contains("int labels"));
    assert!(err(fused_loss::burn::loss(Loss::mse(), Reduction::Mean, x.clone(), labels(4))).contains("float target"));
    // Weights of the wrong length; batchmean where the loss has none; a bad parameter.
    let weighted = FusedLoss::new(Loss::cross_entropy()).weight(floats::<1>(&[1.0, 2.0], &[2], &device));
    assert!(err(weighted.forward(x.clone(), labels(4))).contains("weight"));
    assert!(matches!(
        fused_loss::burn::loss(Loss::mse(), Reduction::BatchMean, x.clone(), x.clone()),
        Err(Error::UnsupportedReduction { .. })
    ));
    assert!(matches!(fused_loss::burn::huber(x.clone(), x.clone(), -1.0), Err(Error::InvalidParameter { .. })));
    // A mean over nothing.
    let empty = floats::<2>(&[], &[0, 3], &device);
    assert!(matches!(fused_loss::burn::cross_entropy(empty, labels(0)), Err(Error::EmptyInput { .. })));
    // The unreduced rank.
    assert!(FusedLoss::new(Loss::cross_entropy()).forward_unreduced::<2, 2>(x.clone(), labels(4)).is_err());
    let rows = FusedLoss::new(Loss::cross_entropy()).forward_unreduced::<2, 1>(x, labels(4)).unwrap();
    assert_eq!(rows.dims(), [4]);
}

/// A tensor on another device is an error, and so is a device fused-loss was not given.
#[test]
fn tensors_on_other_devices_are_errors() {
    let device = device();
    let other = second_device();
    let x = floats::<2>(&[0.0; 6], &[2, 3], &device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &other);
    let error = fused_loss::burn::cross_entropy(x.clone(), y).unwrap_err();
    assert!(matches!(error, Error::Device { argument: "target", .. }), "{error}");
    let weight = floats::<1>(&[1.0; 3], &[3], &other);
    let y = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
    let error = FusedLoss::new(Loss::cross_entropy()).weight(weight).forward(x, y).unwrap_err();
    assert!(matches!(error, Error::Device { argument: "weight", .. }), "{error}");
}

/// A second device: burn's `Cpu` selector opens its own `wgpu::Device` on the same
/// software adapter (lavapipe) that the default selector found.
fn second_device() -> Device {
    fused_loss::burn::device(WgpuDevice::new(burn::cubecl::wgpu::WgpuDeviceKind::Cpu)).expect("a second device")
}

/// Data-parallel on two devices in one process: each device's shard denominator
/// (Σ class weight over its kept rows, burn ops on that device), the all-reduce (burn's
/// device-to-device transfer and an add), each shard's fused `sum` with burn's autodiff
/// carrying `1/global` back to it: the loss and every gradient row equal the single-device
/// call on the whole batch.
#[test]
fn a_batch_sharded_over_two_devices_equals_the_whole_batch() {
    let devices = [device().autodiff(), second_device().autodiff()];
    let (n, c, split) = (301, 7, 170);
    let logits: Vec<f32> = (0..n * c).map(|i| ((i * 7919) % 101) as f32 / 17.0 - 3.0).collect();
    let labels: Vec<i64> = (0..n).map(|i| if i % 9 == 4 { -100 } else { ((i * 5) % c) as i64 }).collect();
    for weighted in [false, true] {
        let weights: Vec<f32> = (0..c).map(|k| if weighted { 0.5 + k as f32 / 4.0 } else { 1.0 }).collect();
        let call = |device: &Device| {
            let call = FusedLoss::new(Loss::cross_entropy());
            if weighted {
                call.weight(floats::<1>(&weights, &[c], device))
            } else {
                call
            }
        };
        // The whole batch on one device.
        let x = floats::<2>(&logits, &[n, c], &devices[0]).require_grad();
        let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), &devices[0]);
        let whole = call(&devices[0]).forward(x.clone(), y).unwrap();
        let whole_grad = host(x.grad(&whole.clone().backward()).unwrap().flatten(0, 1));
        let whole = host(whole)[0];

        // Shards: rows [0, split) on the first device, the rest on the second.
        let rows = [0..split, split..n];
        let mut leaves = Vec::new();
        let mut sums = Vec::new();
        let mut denominators = Vec::new();
        for (device, rows) in devices.iter().zip(&rows) {
            let x = floats::<2>(&logits[rows.start * c..rows.end * c], &[rows.len(), c], device).require_grad();
            let shard: Vec<i64> = labels[rows.clone()].to_vec();
            let y = Tensor::<1, Int>::from_data(TensorData::new(shard, [rows.len()]), device);
            let kept = y.clone().not_equal_elem(-100).float();
            let weight_of_label = floats::<1>(&weights, &[c], device).select(0, y.clone().clamp(0, c as i64 - 1));
            denominators.push((weight_of_label * kept).sum());
            sums.push(call(device).reduction(Reduction::Sum).forward(x.clone(), y).unwrap());
            leaves.push(x);
        }
        let to_first = |t: Tensor<1>| t.to_device(&devices[0]);
        let [d0, d1] = <[Tensor<1>; 2]>::try_from(denominators).unwrap();
        let global = d0 + to_first(d1);
        let [s0, s1] = <[Tensor<1>; 2]>::try_from(sums).unwrap();
        let total = (s0 + to_first(s1)) / global;
        let grads = total.clone().backward();
        let mut sharded_grad = Vec::new();
        for leaf in &leaves {
            sharded_grad.extend(host(leaf.grad(&grads).expect("each shard's gradient").flatten(0, 1)));
        }
        let total = host(total)[0];
        assert!((total - whole).abs() <= 2e-6 * whole.abs(), "weighted {weighted}: {total} vs {whole}");
        if weighted {
            // The summed weights round in another order: the scale may differ in the last bit.
            for (i, (s, w)) in sharded_grad.iter().zip(&whole_grad).enumerate() {
                assert!((s - w).abs() <= 2e-7 * w.abs().max(1e-3), "gradient {i}: {s} vs {w}");
            }
        } else {
            assert_eq!(
                sharded_grad.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                whole_grad.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "unweighted gradients bit for bit"
            );
        }
    }
}
