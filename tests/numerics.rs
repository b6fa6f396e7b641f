//! Reproductions of f32 accuracy failures (issue 12), each against float64 formulas
//! written out here, on the GPU and on the CPU fast path alike: the row-wise losses'
//! log-sum-exp kept as max and ln s, BCE's `pos_weight` gradient without its
//! cancellation, and NaN inputs that reach the loss.

mod common;

use fused_loss::{cpu, Inputs, Loss, Output, Reduction};

/// The result on every path that computes in f32: the GPU (when there is an adapter) and
/// the CPU fast path, named.
fn f32_paths(test: &str, loss: &Loss, reduction: Reduction, inputs: &Inputs) -> Vec<(&'static str, Output)> {
    let mut out = vec![("cpu fast path", cpu::compute_fast(loss, reduction, inputs).unwrap())];
    if let Some(gpu) = common::gpu(test) {
        out.push(("gpu", gpu.compute(loss, reduction, inputs).unwrap()));
    }
    out
}

/// Cross-entropy of one row in float64, from the formula: (loss, gradient) with label
/// smoothing `eps`, `sum` reduction.
fn cross_entropy_f64(logits: &[f64], label: usize, eps: f64) -> (f64, Vec<f64>) {
    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let log_s = logits.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    let log_p: Vec<f64> = logits.iter().map(|x| (x - m) - log_s).collect();
    let c = logits.len() as f64;
    let loss = -(1.0 - eps) * log_p[label] - eps / c * log_p.iter().sum::<f64>();
    let grad =
        log_p.iter().enumerate().map(|(k, lp)| lp.exp() - (1.0 - eps) * (k == label) as u8 as f64 - eps / c).collect();
    (loss, grad)
}

fn relative_error(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(f64::MIN_POSITIVE)
}

#[test]
fn cross_entropy_gradient_is_as_accurate_as_pytorch_when_p_y_nears_one() {
    // The reproduction: the folded lse gave gradient[0] = -1.7033637e-2 (relative
    // error 3.4e-5); PyTorch's f32 kernel gives -1.7034173e-2 (2.6e-6).
    let logits = [8.282094f32, 4.1779146, 1.1030558, -1.383111];
    let wide: Vec<f64> = logits.iter().map(|&v| v as f64).collect();
    let (want_loss, want_grad) = cross_entropy_f64(&wide, 0, 0.0);
    let pytorch_f32_error = relative_error(-1.7034173e-2, want_grad[0]);
    assert!(pytorch_f32_error > 2e-6, "the reference itself is off: {pytorch_f32_error}");
    let inputs = Inputs::labels(&logits, &[0]).shape(&[1, 4]);
    for (path, out) in f32_paths("ce_p_y_near_one", &Loss::cross_entropy().into(), Reduction::Sum, &inputs) {
        let error = relative_error(out.grad[0] as f64, want_grad[0]);
        assert!(error <= pytorch_f32_error, "{path}: gradient[0] {} relative error {error:e}", out.grad[0]);
        for (k, (&g, &w)) in out.grad.iter().zip(&want_grad).enumerate() {
            assert!(relative_error(g as f64, w) < 2e-6, "{path}: gradient[{k}] {g} against {w}");
        }
        assert!(relative_error(out.value as f64, want_loss) < 2e-6, "{path}: loss {} against {want_loss}", out.value);
    }
}

#[test]
fn softmax_losses_are_shift_invariant() {
    // Adding a constant to every logit of a row changes nothing; f32 must show that for
    // shifts where it can represent the inputs. The offsets are rounded so that
    // shift + offset is exact in f32 (multiples of 8 at 1e8), and the float64 answer is
    // computed on the offsets alone.
    let base = [0.5f64, -1.25, 2.0, 0.0, -3.5, 1.0, 0.25];
    let classes = base.len();
    let labels = [2i32, 0, 6];
    for shift in [0.0f64, 1e4, 1e6, 1e8] {
        // The f32 spacing at the shift; offsets are whole multiples of it (at least 1/16).
        let f = shift as f32;
        let spacing = ((f32::from_bits(f.to_bits() + 1) - f) as f64).max(1.0 / 16.0);
        let offsets: Vec<f64> = (0..labels.len())
            .flat_map(|row| base.iter().map(move |b| (b * (row + 1) as f64 * 4.0).round() * spacing))
            .collect();
        let logits: Vec<f32> = offsets.iter().map(|o| (shift + o) as f32).collect();
        for (&l, &o) in logits.iter().zip(&offsets) {
            assert_eq!(l as f64, shift + o, "input {o} + {shift} is not exact in f32");
        }
        let inputs = Inputs::labels(&logits, &labels).shape(&[labels.len(), classes]);
        for eps in [0.0f64, 0.1] {
            let (mut want_loss, mut want_grad) = (0.0, Vec::new());
            for (row, &label) in labels.iter().enumerate() {
                let (loss, grad) = cross_entropy_f64(&offsets[row * classes..(row + 1) * classes], label as usize, eps);
                want_loss += loss;
                want_grad.extend(grad);
            }
            let loss: Loss = Loss::cross_entropy().label_smoothing(eps as f32).into();
            for (path, out) in f32_paths("shift_invariance", &loss, Reduction::Sum, &inputs) {
                let context = format!("{path}, shift {shift:e}, smoothing {eps}");
                assert!(
                    (out.value as f64 - want_loss).abs() <= 1e-5 * want_loss.abs() + 1e-6,
                    "{context}: loss {} against {want_loss}",
                    out.value
                );
                for (k, (&g, &w)) in out.grad.iter().zip(&want_grad).enumerate() {
                    assert!((g as f64 - w).abs() <= 1e-5 * w.abs() + 1e-7, "{context}: gradient[{k}] {g} against {w}");
                }
            }
        }
        // The other softmax losses through their twins' float64 on the offsets.
        let offsets_f32: Vec<f32> = offsets.iter().map(|&o| o as f32).collect();
        let unshifted = Inputs::labels(&offsets_f32, &labels).shape(&[labels.len(), classes]);
        for loss in [
            Loss::focal().into(),
            Loss::generalized_cross_entropy().into(),
            Loss::symmetric_cross_entropy().into(),
            Loss::poly1_cross_entropy().into(),
            Loss::hard_bootstrap().into(),
            Loss::soft_bootstrap().into(),
        ] {
            let loss: Loss = loss;
            let want = cpu::compute(&loss, Reduction::Sum, &unshifted).unwrap();
            for (path, out) in f32_paths("shift_invariance", &loss, Reduction::Sum, &inputs) {
                let context = format!("{} on {path}, shift {shift:e}", loss.name());
                let scale = want.grad.iter().fold(0.0f64, |a, g| a.max(g.abs())).max(1.0);
                assert!(
                    (out.value as f64 - want.value).abs() <= 1e-5 * want.value.abs() + 1e-6,
                    "{context}: loss {} against {}",
                    out.value,
                    want.value
                );
                for (k, (&g, &w)) in out.grad.iter().zip(&want.grad).enumerate() {
                    assert!((g as f64 - w).abs() <= 1e-5 * scale, "{context}: gradient[{k}] {g} against {w}");
                }
            }
        }
    }
}

#[test]
fn equal_huge_logits_give_log_c() {
    // Folded, 1e6 gave a loss of 1.125 and 1e8 a loss of 0.
    for value in [1e4f32, 1e6, 1e8] {
        let logits = [value; 3];
        let inputs = Inputs::labels(&logits, &[1]).shape(&[1, 3]);
        for (path, out) in f32_paths("equal_huge_logits", &Loss::cross_entropy().into(), Reduction::Sum, &inputs) {
            assert!(relative_error(out.value as f64, 3f64.ln()) < 1e-6, "{path} at {value}: loss {}", out.value);
            for (k, &g) in out.grad.iter().enumerate() {
                let want = 1.0 / 3.0 - (k == 1) as u8 as f64;
                assert!(relative_error(g as f64, want) < 1e-6, "{path} at {value}: gradient[{k}] {g}");
            }
        }
    }
}

#[test]
fn bce_pos_weight_gradient_does_not_cancel() {
    // (p y + 1 − y) σ(x) − p y gave −4.6038628e-3 against float64's −4.6042230e-3 (as
    // PyTorch's f32 does); (1 − y) σ(x) − p y σ(−x) is exact to rounding.
    let (x, y, p) = (6.4778295f32, 1.0f32, 2.9999154f32);
    let want = -(p as f64) / (1.0 + (x as f64).exp());
    let (inputs_x, inputs_y, pos_weight) = ([x], [y], [p]);
    let inputs = Inputs::new(&inputs_x, &inputs_y).pos_weight(&pos_weight);
    for (path, out) in f32_paths("bce_pos_weight", &Loss::bce_with_logits().into(), Reduction::Sum, &inputs) {
        let error = relative_error(out.grad[0] as f64, want);
        assert!(error < 1e-6, "{path}: gradient {} against {want}, relative error {error:e}", out.grad[0]);
    }
    // The same cancellation in the sigmoid focal loss (gamma = 0 is BCE) and the
    // multi-label soft margin (the gradient of one class is σ(x) − t over C).
    let inputs = Inputs::new(&inputs_x, &inputs_y);
    let want = -1.0 / (1.0 + (x as f64).exp());
    let focal = Loss::sigmoid_focal().gamma(0.0).alpha(-1.0).into();
    for (path, out) in f32_paths("sigmoid_focal_gamma0", &focal, Reduction::Sum, &inputs) {
        let error = relative_error(out.grad[0] as f64, want);
        assert!(error < 1e-6, "sigmoid focal on {path}: gradient {} against {want}", out.grad[0]);
    }
    let margin = Loss::multilabel_soft_margin().into();
    for (path, out) in f32_paths("multilabel_soft_margin", &margin, Reduction::Sum, &inputs.shape(&[1, 1])) {
        let error = relative_error(out.grad[0] as f64, want);
        assert!(error < 1e-6, "multi-label soft margin on {path}: gradient {} against {want}", out.grad[0]);
    }
}

#[test]
fn hinge_embedding_keeps_nan() {
    // WGSL's max(NaN, 0) may be 0, and a NaN target selected neither branch's NaN.
    let loss: Loss = Loss::hinge_embedding().into();
    for (x, y) in [(f32::NAN, -1.0f32), (0.5, f32::NAN)] {
        let (xs, ys) = ([x, 0.25], [y, 1.0]);
        let inputs = Inputs::new(&xs, &ys);
        for (path, out) in f32_paths("hinge_embedding_nan", &loss, Reduction::Sum, &inputs) {
            assert!(out.value.is_nan(), "{path}: ({x}, {y}) gave loss {}", out.value);
            assert_eq!(out.nonfinite, 1, "{path}: ({x}, {y})");
        }
        assert!(cpu::compute(&loss, Reduction::Sum, &inputs).unwrap().value.is_nan());
    }
}

#[test]
fn a_nan_operand_reaches_the_loss() {
    // Terms dropped with `select(0, term, c != 0)` hid a NaN on the GPU only (naga's
    // comparisons are ordered); JSD's `p > 0` hid it on both paths.
    let nan = f32::NAN;
    // (loss, input, target, pos_weight)
    type Case = (Loss, [f32; 2], [f32; 2], Option<[f32; 2]>);
    let cases: Vec<Case> = vec![
        (Loss::bce_with_logits().into(), [0.3, -0.2], [nan, 1.0], None),
        (Loss::bce_with_logits().into(), [0.3, -0.2], [1.0, 0.0], Some([nan, 1.0])),
        (Loss::sigmoid_focal().alpha(-1.0).into(), [0.3, -0.2], [nan, 1.0], None),
        (Loss::jsd().beta(1.0).into(), [nan, -0.5], [-0.7, -0.5], None),
        (Loss::jsd().beta(0.0).into(), [-0.7, -0.5], [nan, -0.5], None),
        (Loss::jsd().beta(0.5).into(), [-0.7, -0.5], [nan, -0.5], None),
    ];
    for (loss, x, y, pos_weight) in &cases {
        let mut inputs = Inputs::new(x, y);
        if let Some(p) = pos_weight {
            inputs = inputs.pos_weight(p);
        }
        for (path, out) in f32_paths("nan_reaches_loss", loss, Reduction::Sum, &inputs) {
            assert!(
                out.value.is_nan(),
                "{} on {path}: x {x:?}, y {y:?}, pos_weight {pos_weight:?} gave {}",
                loss.name(),
                out.value
            );
        }
        assert!(cpu::compute(loss, Reduction::Sum, &inputs).unwrap().value.is_nan(), "{} in f64", loss.name());
    }
    // Multi-label soft margin with a NaN target.
    let (x, t) = ([0.3f32, -0.2], [nan, 1.0]);
    let inputs = Inputs::new(&x, &t).shape(&[1, 2]);
    let loss: Loss = Loss::multilabel_soft_margin().into();
    for (path, out) in f32_paths("nan_reaches_loss", &loss, Reduction::Sum, &inputs) {
        assert!(out.value.is_nan(), "multilabel_soft_margin on {path} gave {}", out.value);
    }
}

#[test]
fn an_unused_non_finite_class_weight_leaves_cross_entropy_finite() {
    // Without smoothing, a class no label uses contributes nothing (PyTorch stays finite);
    // eps/C · (W p − w_c) evaluated at eps = 0 made every gradient element NaN.
    let logits = [0.5f32, -1.0, 2.0, 0.0, 1.0, -3.0];
    let labels = [0i32, 1];
    for bad in [f32::NAN, f32::INFINITY] {
        let weight = [1.0f32, 2.0, bad];
        let inputs = Inputs::labels(&logits, &labels).shape(&[2, 3]).weight(&weight);
        let want = cpu::compute(Loss::cross_entropy(), Reduction::Sum, &inputs).unwrap();
        assert!(want.value.is_finite() && want.grad.iter().all(|g| g.is_finite()), "f64 twin with weight {bad}");
        for (path, out) in f32_paths("unused_bad_weight", &Loss::cross_entropy().into(), Reduction::Sum, &inputs) {
            assert!(out.value.is_finite(), "{path}: loss {} with weight {bad}", out.value);
            for (k, (&g, &w)) in out.grad.iter().zip(&want.grad).enumerate() {
                assert!((g as f64 - w).abs() <= 1e-6, "{path}: gradient[{k}] {g} against {w} with weight {bad}");
            }
        }
    }
}
