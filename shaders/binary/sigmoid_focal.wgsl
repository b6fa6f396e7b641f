// Sigmoid focal loss (Lin et al. 2017) on logits x and targets y in [0, 1], as
// torchvision.ops.sigmoid_focal_loss; alpha (< 0: no alpha weighting), gamma >= 0:
//   ce = y softplus(-x) + (1 - y) softplus(x),  p = sigmoid(x),  q = sigmoid(-x)
//   m  = 1 - p_t = p (1 - y) + q y     (p_t = p y + (1 - p)(1 - y); this form does not
//                                       cancel as p_t -> 1)
//   l  = a_t m^gamma ce,  a_t = alpha y + (1 - alpha)(1 - y)
//   dl/dx = a_t (m^gamma (p - y) + gamma m^(gamma - 1) p q (1 - 2y) ce)
// with p - y formed as p (1 - y) - q y, which does not cancel as p -> 1 with y = 1.
// gamma = 0 is BCE with logits (times a_t). At m = 0 (a saturated correct logit) the
// second term is 0: ce vanishes faster than m^(gamma - 1) grows.

struct LossParams {
    alpha: f32,
    gamma: f32,
}

fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let alpha = loss_params.alpha;
    let gamma = loss_params.gamma;
    let p = sigmoid(x);
    let q = sigmoid(-x);
    // Terms dropped on `== 0` / `== 1` (false for NaN), as BCE with logits.
    let ce = select(y * softplus(-x), 0.0, y == 0.0) + select((1.0 - y) * softplus(x), 0.0, y == 1.0);
    let m = p * (1.0 - y) + q * y;
    var modulating = 1.0;
    var slope = 0.0;
    if (gamma != 0.0) {
        // pow(0, gamma) is left undefined by WGSL; m = 0 gives 0 and no slope.
        modulating = select(0.0, pow(m, gamma), m > 0.0);
        slope = select(0.0, gamma * pow(m, gamma - 1.0) * p * q * (1.0 - 2.0 * y), m > 0.0);
    }
    let a_t = select(1.0, alpha * y + (1.0 - alpha) * (1.0 - y), alpha >= 0.0);
    return LossGrad(a_t * modulating * ce, a_t * (modulating * (p * (1.0 - y) - q * y) + slope * ce), false);
}
#import lib/pointwise
