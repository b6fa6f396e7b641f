// Absolute error: l = |x - y|, dl/dx = sign(x - y) (0 at 0, as PyTorch). torch.nn.L1Loss.
fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let d = x - y;
    return LossGrad(abs(d), sign(d), false);
}
#import lib/pointwise
