// Binary cross-entropy on probabilities, torch.nn.BCELoss:
//   l = -(y max(log x, -100) + (1 - y) max(log(1 - x), -100))   (log x as log1p(x - 1) above 1/2)
//   dl/dx = (x - y) / max(x (1 - x), 1e-12)      (PyTorch's backward, finite at 0 and 1)
// x outside [0, 1] (or NaN) is counted as invalid.
fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    // Near 1, log x from log1p of x - 1 (exact there): `log` itself has an absolute,
    // not relative, error bound, which is most of log x as x -> 1.
    let log_x = max(select(log(x), log1p_(x - 1.0), x > 0.5), -100.0);
    let log_1mx = max(log1p_(-x), -100.0);
    let value = -(y * log_x + (1.0 - y) * log_1mx);
    let grad = (x - y) / max(x * (1.0 - x), 1e-12);
    return LossGrad(value, grad, !(x >= 0.0 && x <= 1.0));
}
#import lib/pointwise
