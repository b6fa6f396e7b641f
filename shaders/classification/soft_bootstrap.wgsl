// Soft bootstrapping (Reed et al. 2015): the target is β onehot(y) + (1 - β) p with p
// not detached, l = β (-ln p_y) + (1 - β) H with the row's entropy H (ROW_ENTROPY).
struct LossParams {
    beta: f32,
}

#define HARD_LABELS
#define ROW_ENTROPY

fn label_term(log_p: f32) -> vec2<f32> {
    return vec2(loss_params.beta * -log_p, loss_params.beta);
}

fn entropy_share() -> f32 {
    return 1.0 - loss_params.beta;
}

#import classification/softmax_rows
