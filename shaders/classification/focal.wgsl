// Focal loss (Lin et al. 2017) on softmax: f(p) = (1-p)^γ (-ln p),
// G = (1-p)^γ - γ (1-p)^(γ-1) p ln p. 1 - p is -expm1(ln p), so nothing cancels as p -> 1.
struct LossParams {
    gamma: f32,
    // Read by the host (the label pre-pass's UNWEIGHTED_MEAN), not here.
    weight_as_alpha: u32,
}

#define HARD_LABELS

fn label_term(log_p: f32) -> vec2<f32> {
    let gamma = loss_params.gamma;
    if (gamma == 0.0) {
        return vec2(-log_p, 1.0);
    }
    let one_minus_p = -expm1_(log_p);
    // At p = 1 both terms vanish (m^(γ-1) ln p -> 0); pow(0, ·) is undefined in WGSL.
    if (one_minus_p <= 0.0) {
        return vec2(0.0, 0.0);
    }
    let focus = pow(one_minus_p, gamma);
    return vec2(focus * -log_p, focus - gamma * pow(one_minus_p, gamma - 1.0) * exp(log_p) * log_p);
}

#import classification/softmax_rows
