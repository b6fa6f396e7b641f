// Generalized cross-entropy (Zhang & Sabuncu 2018): f(p) = (1 - p^q) / q, G = p^q;
// p^q is exp(q ln p), so nothing cancels as q -> 0.
struct LossParams {
    q: f32,
}

#define HARD_LABELS

fn label_term(log_p: f32) -> vec2<f32> {
    let q = loss_params.q;
    return vec2(-expm1_(q * log_p) / q, exp(q * log_p));
}

#import classification/softmax_rows
