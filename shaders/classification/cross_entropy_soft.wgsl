// Cross-entropy against probability targets, torch.nn.CrossEntropyLoss with a float target.
struct LossParams {
    label_smoothing: f32,
}

#define SOFT_TARGETS
#define TARGET_VALUES
#define LABEL_SMOOTHING

fn label_smoothing() -> f32 {
    return loss_params.label_smoothing;
}

#import classification/softmax_rows
