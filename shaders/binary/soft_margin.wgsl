// Soft margin, y in {-1, 1}: l = softplus(-y x), dl/dx = -y sigmoid(-y x).
// torch.nn.SoftMarginLoss.
fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let m = -y * x;
    return LossGrad(softplus(m), -y * sigmoid(m), false);
}
#import lib/pointwise
