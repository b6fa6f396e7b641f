// Poly-1 cross-entropy (Leng et al. 2022): f(p) = -ln p + ε (1 - p), G = 1 + ε p.
struct LossParams {
    epsilon: f32,
}

#define HARD_LABELS

fn label_term(log_p: f32) -> vec2<f32> {
    let epsilon = loss_params.epsilon;
    return vec2(-log_p - epsilon * expm1_(log_p), 1.0 + epsilon * exp(log_p));
}

#import classification/softmax_rows
