// The softmax family, fused forward + backward over rows of C logits. Each loss has a
// file of its own (classification/<loss>.wgsl) that declares its `LossParams`, sets its
// variant and imports this one.
//
// Layout as PyTorch: input (N, C, S) with S = d1·…·dk (S = 1 for (N, C)); row r = (n, s)
// holds classes at n·C·S + c·S + s. Variants (defined by the loss file):
//   HARD_LABELS   integer labels, class weight w, ignore_index, label smoothing ε:
//                 l = (1-ε) w_y f(p_y) + ε/C Σ_c w_c (lse - x_c),  W = Σ_c w_c
//                 dl/dx_c = (1-ε) w_y G (p_c - [c = y]) + ε/C (W p_c - w_c)
//                 where the loss file's label function
//                     fn label_term(log_p: f32) -> vec2<f32>    (f(p), G = -p f'(p)) at ln p
//                 gives f (cross-entropy: f = -ln p, G = 1).
//   SOFT_TARGETS  CrossEntropyLoss with probabilities t, t' = (1-ε) t + ε/C:
//                 l = Σ_c w_c t'_c (lse - x_c),  dl/dx_c = p_c Σ_k w_k t'_k - w_c t'_c
//   NLL           torch.nn.NLLLoss on log-probabilities: l = -w_y x_y, dl/dx_c = -w_y [c = y]
// Optional parts a loss file switches on by defining them:
//   LABEL_SMOOTHING  with `fn label_smoothing() -> f32` (ε; 0 otherwise);
//   ARGMAX_SHARE     with `fn argmax_share() -> f32`: a share s of the target moves to the
//                    row's argmax k (first maximum, not differentiated), adding
//                    s w_y (-ln p_k) to the loss and replacing [c = y] by
//                    (1 - s)[c = y] + s [c = k] in the gradient (hard bootstrapping);
//   ROW_ENTROPY      with `fn entropy_share() -> f32`: adds s w_y H, the row's softmax
//                    entropy H = ln s - Σ p_c (x_c - m) (the accumulator sums
//                    Σ e^(x - m) (x - m)), dH/dx_c = -p_c (ln p_c + H) (soft bootstrapping).
// lse - x_c is formed as ln s - (x_c - m) and ln p_c as (x_c - m) - ln s (lib/softmax), the
// label's p_y - 1 as expm1(ln p_y), so nothing cancels as p_y -> 1 or for large logits.
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

// Accumulates Σ c (x - m) and Σ c with c = w_c t'_c (soft targets) or w_c (the
// smoothing term of hard labels).
fn row_push(a: RowAcc, row: Row, c: u32) -> RowAcc {
    let x = logit(row, c);
    let r = row_acc_push_logit(a, x, c);
#if SOFT_TARGETS
    let coef = weight_of(c) * smoothed_target(row, c);
#else
    let coef = weight_of(c);
#endif
    return row_acc_push_linear(r, a.m, coef, x);
}

// ln p_y of the row's label, (x_y - m) - ln s, from the logit read before any gradient.
fn label_log_prob(row: Row, acc: RowAcc) -> f32 {
    return row_acc_log_prob(acc, row.label_logit);
}

fn class_weight_sum() -> f32 {
#if SOFT_TARGETS
    return 0.0;
#else
    return denoms.class_weight_sum;
#endif
}

// The row's softmax entropy H = ln s - Σ p_c (x_c - m) (ROW_ENTROPY).
fn row_entropy(acc: RowAcc) -> f32 {
    return row_acc_log_sum(acc) - acc.px / row_acc_sum(acc);
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
    let p = exp(x - acc.m) / row_acc_sum(acc);
#if SOFT_TARGETS
    return (p * acc.wt - weight_of(c) * smoothed_target(row, c)) * row.scale;
#else
    let eps = label_smoothing();
    var p_minus_hit = p - hit;
#if !ARGMAX_SHARE
    // The label's p_y - 1 as expm1(ln p_y): no cancellation as p_y -> 1.
    if (c == row.label) {
        p_minus_hit = expm1_(label_log_prob(row, acc));
    }
#endif
    var g = (1.0 - eps) * row.label_weight * label_g * p_minus_hit
        + weighted_term(eps / f32(params.classes), class_weight_sum() * p - weight_of(c));
#if ROW_ENTROPY
    g += (1.0 - eps) * row.label_weight * entropy_share() * -p * (row_acc_log_prob(acc, x) + row_entropy(acc));
#endif
#if Z_LOSS
    g += 2.0 * loss_params.z_loss * lse * p;
#endif
#if SOFTCAP
    // d(capped)/d(raw) = 1 - tanh²(u) = sech²(u) = 4e / (1 + e)², e = exp(-2|u|), from
    // the raw logit: 1 - (capped / cap)² cancels as |u| grows, and the capped logit's
    // rounding is then most of the difference.
    let e = exp(-2.0 * abs(input_at(row.base + c * params.inner) / loss_params.softcap));
    g *= 4.0 * e / ((1.0 + e) * (1.0 + e));
#endif
    return g * row.scale;
#endif
#endif
}

// G of the label function at the row's label (1 without one), for class_grad.
fn label_factor(row: Row, acc: RowAcc, lse: f32) -> f32 {
#if HARD_LABELS
    return label_term(label_log_prob(row, acc)).y;
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
    return row_acc_log_sum(acc) * acc.wt - acc.wx;
#else
    let eps = label_smoothing();
    var loss = weighted_term(1.0 - eps, row.label_weight * label_term(label_log_prob(row, acc)).x)
        + weighted_term(eps / f32(params.classes), acc.wt * row_acc_log_sum(acc) - acc.wx);
#if ARGMAX_SHARE
    loss += weighted_term(1.0 - eps, row.label_weight * argmax_share() * ((acc.m - acc.best) + row_acc_log_sum(acc)));
#endif
#if ROW_ENTROPY
    loss += weighted_term(1.0 - eps, row.label_weight * entropy_share() * row_entropy(acc));
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
