// The softmax family, fused forward + backward over rows of C logits. Each loss has a
// file of its own (classification/<loss>.wgsl) that declares its `LossParams`, sets its
// variant and imports this one.
//
// Layout as PyTorch: input (N, C, S) with S = d1·…·dk (S = 1 for (N, C)); row r = (n, s)
// holds classes at n·C·S + c·S + s. Variants (defined by the loss file):
//   HARD_LABELS   integer labels, class weight w, ignore_index, label smoothing ε:
//                 l = (1-ε) w_y f(p_y) + ε/C (W lse - Σ_c w_c x_c),  W = Σ_c w_c
//                 dl/dx_c = (1-ε) w_y G (p_c - [c = y]) + ε/C (W p_c - w_c)
//                 where the loss file's label function
//                     fn label_term(log_p: f32) -> vec2<f32>    (f(p), G = -p f'(p)) at ln p
//                 gives f (cross-entropy: f = -ln p, G = 1).
//   SOFT_TARGETS  CrossEntropyLoss with probabilities t, t' = (1-ε) t + ε/C:
//                 l = lse Σ_c w_c t'_c - Σ_c w_c t'_c x_c,  dl/dx_c = p_c Σ_k w_k t'_k - w_c t'_c
//   NLL           torch.nn.NLLLoss on log-probabilities: l = -w_y x_y, dl/dx_c = -w_y [c = y]
// Optional parts a loss file switches on by defining them:
//   LABEL_SMOOTHING  with `fn label_smoothing() -> f32` (ε; 0 otherwise);
//   ARGMAX_SHARE     with `fn argmax_share() -> f32`: a share s of the target moves to the
//                    row's argmax k (first maximum, not differentiated), adding
//                    s w_y (-ln p_k) to the loss and replacing [c = y] by
//                    (1 - s)[c = y] + s [c = k] in the gradient (hard bootstrapping);
//   ROW_ENTROPY      with `fn entropy_share() -> f32`: adds s w_y H, the row's softmax
//                    entropy H = lse - Σ p_c x_c (the accumulator sums Σ e^(x - m) x),
//                    dH/dx_c = -p_c (x_c - lse + H) (soft bootstrapping).
// Cross-entropy's LLM options (Liger-Kernel semantics, host flags when on): Z_LOSS adds
// z lse² to every kept row (gradient 2 z lse p_c); SOFTCAP reads every logit as
// cap · tanh(x / cap) and multiplies each gradient element by 1 - tanh² = 1 - (capped / cap)².
// Both read `loss_params.z_loss` / `loss_params.softcap`.
// Driver, options and entry points: lib/rows (targets: labels, or TARGET_VALUES for
// SOFT_TARGETS).

#import lib/rows

#if !LABEL_SMOOTHING
fn label_smoothing() -> f32 {
    return 0.0;
}
#endif

fn logit(row: Row, c: u32) -> f32 {
    let x = input_at(row.base + c * params.inner);
#if SOFTCAP
    return loss_params.softcap * tanh_(x / loss_params.softcap);
#else
    return x;
#endif
}

fn smoothed_target(row: Row, c: u32) -> f32 {
    return (1.0 - label_smoothing()) * target_value(row, c) + label_smoothing() / f32(params.classes);
}

fn row_push(a: RowAcc, row: Row, c: u32) -> RowAcc {
    let x = logit(row, c);
    var r = row_acc_push_logit(a, x, c);
#if SOFT_TARGETS
    let wt = weight_of(c) * smoothed_target(row, c);
    r.wt += wt;
    r.wx += wt * x;
#else
    r.wx += weight_of(c) * x;
#endif
    return r;
}

fn class_weight_sum() -> f32 {
#if SOFT_TARGETS
    return 0.0;
#else
    return denoms.class_weight_sum;
#endif
}

// The row's softmax entropy H = lse - Σ p_c x_c (ROW_ENTROPY).
fn row_entropy(acc: RowAcc, lse: f32) -> f32 {
    return lse - acc.px / acc.s;
}

// d(row loss)/d(x_c), times the row's scale. `lse` is unused by NLL; `label_g` is the
// label function's G (1 for cross-entropy).
fn class_grad(row: Row, acc: RowAcc, lse: f32, label_g: f32, c: u32) -> f32 {
    if (row.ignored) {
        return 0.0;
    }
    var hit = select(0.0, 1.0, c == row.label);
#if ARGMAX_SHARE
    hit = (1.0 - argmax_share()) * hit + argmax_share() * select(0.0, 1.0, c == acc.best_class);
#endif
#if NLL
    return -row.label_weight * hit * row.scale;
#else
    let x = logit(row, c);
    let p = exp(x - lse);
#if SOFT_TARGETS
    return (p * acc.wt - weight_of(c) * smoothed_target(row, c)) * row.scale;
#else
    let eps = label_smoothing();
    var g = (1.0 - eps) * row.label_weight * label_g * (p - hit)
        + eps / f32(params.classes) * (class_weight_sum() * p - weight_of(c));
#if ROW_ENTROPY
    g += (1.0 - eps) * row.label_weight * entropy_share() * -p * (x - lse + row_entropy(acc, lse));
#endif
#if Z_LOSS
    g += 2.0 * loss_params.z_loss * lse * p;
#endif
#if SOFTCAP
    let t = x / loss_params.softcap;
    g *= 1.0 - t * t;
#endif
    return g * row.scale;
#endif
#endif
}

// G of the label function at the row's label (1 without one), for class_grad.
fn label_factor(row: Row, acc: RowAcc, lse: f32) -> f32 {
#if HARD_LABELS
    return label_term(row.label_logit - lse).y;
#else
    return 1.0;
#endif
}

// coefficient * term, but 0 when the coefficient is 0: a -inf logit makes the unused
// smoothing sum infinite, and PyTorch's loss without smoothing is finite there.
fn weighted_term(coefficient: f32, term: f32) -> f32 {
    return select(coefficient * term, 0.0, coefficient == 0.0);
}

fn row_loss(row: Row, acc: RowAcc, lse: f32) -> f32 {
    if (row.ignored) {
        return 0.0;
    }
#if NLL
    return -row.label_weight * row.label_logit;
#else
#if SOFT_TARGETS
    return lse * acc.wt - acc.wx;
#else
    let eps = label_smoothing();
    var loss = weighted_term(1.0 - eps, row.label_weight * label_term(row.label_logit - lse).x)
        + weighted_term(eps / f32(params.classes), class_weight_sum() * lse - acc.wx);
#if ARGMAX_SHARE
    loss += weighted_term(1.0 - eps, row.label_weight * argmax_share() * (lse - acc.best));
#endif
#if ROW_ENTROPY
    loss += weighted_term(1.0 - eps, row.label_weight * entropy_share() * row_entropy(acc, lse));
#endif
#if Z_LOSS
    loss += loss_params.z_loss * lse * lse;
#endif
    return loss;
#endif
#endif
}

fn row_nonfinite(row: Row, acc: RowAcc) -> u32 {
#if NLL
    // NLL reads only the label's log-probability, so only that one is counted.
    return select(0u, 1u, !row.ignored && !is_finite(row.label_logit));
#else
    return acc.nonfinite;
#endif
}

fn row_begin(lid: u32, row: Row) {}

// The first sweep (max, sum, linear sums) is needed by everything but plain NLL.
fn needs_sweep() -> bool {
#if NLL && !ACCURACY && !WRITE_LSE
    return false;
#else
    return true;
#endif
}
