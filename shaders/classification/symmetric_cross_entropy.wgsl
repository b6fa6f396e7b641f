// Symmetric cross-entropy (Wang et al. 2019): f(p) = α (-ln p) - β A (1 - p),
// G = α - β A p, with A = log_zero.
struct LossParams {
    alpha: f32,
    beta: f32,
    log_zero: f32,
}

#define HARD_LABELS

fn label_term(log_p: f32) -> vec2<f32> {
    let alpha = loss_params.alpha;
    let beta_a = loss_params.beta * loss_params.log_zero;
    return vec2(alpha * -log_p + beta_a * expm1_(log_p), alpha - beta_a * exp(log_p));
}

#import classification/softmax_rows
