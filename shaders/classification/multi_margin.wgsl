// Multi-class hinge, torch.nn.MultiMarginLoss(p, margin, weight).
struct LossParams {
    p: u32,
    margin: f32,
}

#define MULTI_MARGIN

#import classification/margin
