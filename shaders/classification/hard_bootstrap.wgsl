// Hard bootstrapping (Reed et al. 2015): β of the target on the label, 1 - β on the
// row's argmax k (ARGMAX_SHARE): l = β (-ln p_y) + (1 - β)(-ln p_k).
struct LossParams {
    beta: f32,
}

#define HARD_LABELS
#define ARGMAX_SHARE

fn label_term(log_p: f32) -> vec2<f32> {
    return vec2(loss_params.beta * -log_p, 1.0);
}

fn argmax_share() -> f32 {
    return 1.0 - loss_params.beta;
}

#import classification/softmax_rows
