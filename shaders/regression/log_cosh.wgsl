// Log-cosh: l = log(cosh(x - y)), dl/dx = tanh(x - y). optax.log_cosh.
fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let d = x - y;
    return LossGrad(log_cosh(d), tanh_(d), false);
}
#import lib/pointwise
