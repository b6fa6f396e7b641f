// Kullback-Leibler divergence, torch.nn.KLDivLoss: x = log q (input), y = target.
//   log_target = 0: l = y ln y - y x (0 ln 0 = 0), dl/dx = -y;  y < 0 is invalid
//   log_target = 1: l = e^y (y - x),                 dl/dx = -e^y
struct LossParams {
    // A bool: 0 or 1.
    log_target: u32,
}

fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let log_target = loss_params.log_target != 0u;
    // The target as a probability, and its p ln p.
    let p = select(y, exp(y), log_target);
    let p_ln_p = select(select(0.0, y * log(y), y > 0.0), p * y, log_target);
    return LossGrad(p_ln_p - p * x, -p, !log_target && y < 0.0);
}
#import lib/pointwise
