// Cross-entropy, torch.nn.CrossEntropyLoss with integer labels: f(p) = -ln p, G = 1.
struct LossParams {
    label_smoothing: f32,
    z_loss: f32,
    softcap: f32,
}

#define HARD_LABELS
#define LABEL_SMOOTHING

fn label_smoothing() -> f32 {
    return loss_params.label_smoothing;
}

fn label_term(log_p: f32) -> vec2<f32> {
    return vec2(-log_p, 1.0);
}

#import classification/softmax_rows
