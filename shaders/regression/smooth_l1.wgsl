// Smooth L1, beta >= 0: l = d^2 / (2 beta) for |d| < beta, else |d| - beta/2;
// dl/dx = clamp(d / beta, -1, 1). beta = 0 is exactly L1. torch.nn.SmoothL1Loss.
struct LossParams {
    beta: f32,
}

fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let beta = loss_params.beta;
    let d = x - y;
    let a = abs(d);
    if (a < beta) {
        return LossGrad(0.5 * d * d / beta, d / beta, false);
    }
    return LossGrad(a - 0.5 * beta, sign(d), false);
}
#import lib/pointwise
