// Binary cross-entropy on logits with optional pos_weight p (broadcast over the last
// dimension), torch.nn.BCEWithLogitsLoss:
//   l = p y softplus(-x) + (1 - y) softplus(x)
//   dl/dx = (1 - y) sigmoid(x) - p y sigmoid(-x)
// (PyTorch's (p y + 1 - y) sigmoid(x) - p y cancels as sigmoid(x) -> 1 with y = 1; this
// form is a difference of two non-negative terms only for soft targets.)
// A term whose coefficient is 0 is dropped rather than multiplied, so a logit of +-inf
// with the matching hard label gives the limit 0 instead of 0 * inf = NaN. The test is
// `== 0` (ordered: false for NaN), never `!= 0`, which naga emits ordered too and which
// would drop a NaN target's or pos_weight's term.

#if HAS_POS_WEIGHT
@group(0) @binding(8) var<storage, read> pos_weight: array<f32>;
#endif

fn pointwise(x: f32, y: f32, index: u32) -> LossGrad {
    var p = 1.0;
#if HAS_POS_WEIGHT
    p = pos_weight[index % params.last_dim];
#endif
    let py = p * y;
    let positive = select(py * softplus(-x), 0.0, py == 0.0);
    let negative = select((1.0 - y) * softplus(x), 0.0, y == 1.0);
    let grad = (1.0 - y) * sigmoid(x) - py * sigmoid(-x);
    return LossGrad(positive + negative, grad, false);
}
#import lib/pointwise
