// Generalised Jensen-Shannon divergence, Liger-Kernel's JSD (knowledge distillation):
// x = ln q (the student's log-probabilities, input), y = ln p (the teacher's, target),
// β = beta and m = β p + (1 - β) q. Per element:
//   β = 0: forward KL  l = p (y - x)                                dl/dx = -p
//   β = 1: reverse KL  l = q (x - y)                                dl/dx = l + q
//   else:              l = β p (y - ln m) + (1 - β) q (x - ln m)    dl/dx = (1 - β) q (x - ln m)
// ln m is log_add_exp(y + ln β, x + ln(1 - β)), so m never underflows before its log; a
// term whose probability is exactly 0 (log-probability -inf) is dropped: its limit is 0.
// The test is `== 0`, false for NaN, so a NaN log-probability reaches the loss.
// Swapping input and target and β for 1 - β gives the same loss, hence the gradient with
// respect to the target (see `Jsd::teacher_side`).
struct LossParams {
    beta: f32,
}

fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    let beta = loss_params.beta;
    let p = exp(y);
    let q = exp(x);
    if (beta == 0.0) {
        return LossGrad(select(p * (y - x), 0.0, p == 0.0), -p, false);
    }
    if (beta == 1.0) {
        let value = select(q * (x - y), 0.0, q == 0.0);
        return LossGrad(value, value + q, false);
    }
    let log_m = log_add_exp(y + log(beta), x + log1p_(-beta));
    let teacher = select(beta * p * (y - log_m), 0.0, p == 0.0);
    let student = select((1.0 - beta) * q * (x - log_m), 0.0, q == 0.0);
    return LossGrad(teacher + student, student, false);
}

// The teacher's gradient d/dy, the student's mirrored (β <-> 1 - β, x <-> y):
//   β = 0: p (y - x) + p;   β = 1: -q;   else the teacher's term β p (y - ln m).
fn pointwise_target(x: f32, y: f32, index: u32) -> f32 {
    let beta = loss_params.beta;
    let p = exp(y);
    if (beta == 0.0) {
        return select(p * (y - x), 0.0, p == 0.0) + p;
    }
    if (beta == 1.0) {
        return -exp(x);
    }
    let log_m = log_add_exp(y + log(beta), x + log1p_(-beta));
    return select(beta * p * (y - log_m), 0.0, p == 0.0);
}
#import lib/pointwise
