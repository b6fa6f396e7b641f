// Huber, delta > 0: l = d^2/2 for |d| <= delta, else delta (|d| - delta/2);
// dl/dx = clamp(d, -delta, delta). torch.nn.HuberLoss.
struct LossParams {
    delta: f32,
}

fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let delta = loss_params.delta;
    let d = x - y;
    let a = abs(d);
    let value = select(delta * (a - 0.5 * delta), 0.5 * d * d, a <= delta);
    return LossGrad(value, clamp(d, -delta, delta), false);
}
#import lib/pointwise
