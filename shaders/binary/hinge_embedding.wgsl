// Hinge embedding loss, torch.nn.HingeEmbeddingLoss(margin), y in {-1, 1}:
//   l = x for y = 1, max(0, margin - x) for y = -1 (any other y gets both terms, as
//   PyTorch), dl/dx = 1 for y = 1, -1 where margin - x > 0 for y = -1 (0 at the kink, as
//   PyTorch's clamp_min). The hinge is a select, not WGSL's max, which may drop a NaN
//   input; a NaN target makes the loss NaN (PyTorch's where() would hide it).
struct LossParams {
    margin: f32,
}

fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let gap = loss_params.margin - x;
    let hinge = select(gap, 0.0, gap <= 0.0);
    let value = select(select(0.0, hinge, y != 1.0) + select(0.0, x, y != -1.0), y, is_nan_(y));
    let grad = select(0.0, select(0.0, -1.0, gap > 0.0), y != 1.0) + select(0.0, 1.0, y != -1.0);
    return LossGrad(value, grad, false);
}
#import lib/pointwise
