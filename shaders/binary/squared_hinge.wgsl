// Squared hinge loss, y in {-1, 1}: h = max(0, 1 - y x), l = h^2, dl/dx = -2 y h.
// optax.hinge_loss squared (Keras' SquaredHinge with +-1 targets).
// (A select, not max(): a NaN stays NaN.)
fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let gap = 1.0 - y * x;
    let hinge = select(gap, 0.0, gap <= 0.0);
    return LossGrad(hinge * hinge, -2.0 * y * hinge, false);
}
#import lib/pointwise
