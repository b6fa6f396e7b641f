// Hinge loss, optax.hinge_loss, y in {-1, 1}: l = max(0, 1 - y x), dl/dx = -y where
// 1 - y x > 0, else 0 (0 at the kink, as relu; JAX splits that tie 1/2-1/2). Selects
// on `gap <= 0` rather than max(): a NaN gap stays NaN (WGSL's max may drop it).
fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let gap = 1.0 - y * x;
    let flat = gap <= 0.0;
    return LossGrad(select(gap, 0.0, flat), select(-y, 0.0, flat), false);
}
#import lib/pointwise
