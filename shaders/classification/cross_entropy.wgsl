// The softmax family, fused forward + backward over rows of C logits.
//
// Layout as PyTorch: input (N, C, S) with S = d1·…·dk (S = 1 for (N, C)); row r = (n, s)
// holds classes at n·C·S + c·S + s. Variants (host defines):
//   HARD_LABELS   torch.nn.CrossEntropyLoss with integer labels, class weight w,
//                 ignore_index, label_smoothing ε:
//                 l = (1-ε) w_y (lse - x_y) + ε/C (W lse - Σ_c w_c x_c),  W = Σ_c w_c
//                 dl/dx_c = (1-ε) w_y (p_c - [c = y]) + ε/C (W p_c - w_c)
//   SOFT_TARGETS  CrossEntropyLoss with probabilities t, t' = (1-ε) t + ε/C:
//                 l = lse Σ_c w_c t'_c - Σ_c w_c t'_c x_c,  dl/dx_c = p_c Σ_k w_k t'_k - w_c t'_c
//   NLL           torch.nn.NLLLoss on log-probabilities: l = -w_y x_y, dl/dx_c = -w_y [c = y]
// With HARD_LABELS, one of these replaces -ln p_y by another function of the label's
// probability p = p_y (a = params.fn_a, b = params.fn_b, c = params.fn_c); each gives
// dl/dx_c = w_y G (p_c - [c = y]) with G = -p dl/dp:
//   (none)        cross-entropy   l = -ln p                      G = 1
//   LABEL_FOCAL   focal, γ = a    l = (1-p)^γ (-ln p)             G = (1-p)^γ - γ (1-p)^(γ-1) p ln p
//   LABEL_GCE     GCE, q = a      l = (1 - p^q) / q               G = p^q
//   LABEL_SCE     SCE, α β A      l = α (-ln p) - β A (1 - p)     G = α - β A p
//   LABEL_POLY1   poly-1, ε = a   l = -ln p + ε (1 - p)           G = 1 + ε p
//   LABEL_BOOT_SOFT  soft bootstrapping (Reed et al. 2015), β = a: the target is
//                 β onehot(y) + (1 - β) p, p not detached, i.e. l = β (-ln p) + (1 - β) H
//                 with the row's entropy H = lse - Σ p_c x_c (ROW_ENTROPY accumulates
//                 Σ e^(x - m) x), dH/dx_c = -p_c (x_c - lse + H).
//   LABEL_BOOT_HARD  hard bootstrapping (Reed et al. 2015), β = a: the target is β on
//                 the label and 1 - β on the row's argmax k (first maximum, not
//                 differentiated): l = β (-ln p) + (1 - β)(-ln p_k), and the gradient
//                 w_y (p_c - β [c = y] - (1 - β) [c = k]).
// 1 - p is -expm1(ln p) and p^q is exp(q ln p), so nothing cancels as p -> 1 or q -> 0.
// Cross-entropy's LLM options (Liger-Kernel semantics): Z_LOSS adds z lse² to every kept
// row (gradient 2 z lse p_c); SOFTCAP reads every logit as cap · tanh(x / cap) and
// multiplies each gradient element by 1 - tanh² = 1 - (capped / cap)².
// Driver, options and entry points: lib/rows (targets: labels, or TARGET_VALUES for
// SOFT_TARGETS).

#import lib/rows

fn logit(row: Row, c: u32) -> f32 {
    let x = input_at(row.base + c * params.inner);
#if SOFTCAP
    return params.softcap * tanh_(x / params.softcap);
#else
    return x;
#endif
}

fn smoothed_target(row: Row, c: u32) -> f32 {
    return (1.0 - params.smoothing) * target_value(row, c) + params.smoothing / f32(params.classes);
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

// The label function at ln p_y: (loss, G), see the top of the file.
fn label_term(log_p: f32) -> vec2<f32> {
    let p = exp(log_p);
    let one_minus_p = -expm1_(log_p);
#if LABEL_FOCAL
    let gamma = params.fn_a;
    if (gamma == 0.0) {
        return vec2(-log_p, 1.0);
    }
    // At p = 1 both terms vanish (m^(γ-1) ln p -> 0); pow(0, ·) is undefined in WGSL.
    if (one_minus_p <= 0.0) {
        return vec2(0.0, 0.0);
    }
    let focus = pow(one_minus_p, gamma);
    return vec2(focus * -log_p, focus - gamma * pow(one_minus_p, gamma - 1.0) * p * log_p);
#else
#if LABEL_GCE
    let q = params.fn_a;
    let p_q = exp(q * log_p);
    return vec2(-expm1_(q * log_p) / q, p_q);
#else
#if LABEL_SCE
    let alpha = params.fn_a;
    let beta = params.fn_b;
    let log_zero = params.fn_c;
    return vec2(alpha * -log_p - beta * log_zero * one_minus_p, alpha - beta * log_zero * p);
#else
#if LABEL_POLY1
    let epsilon = params.fn_a;
    return vec2(-log_p + epsilon * one_minus_p, 1.0 + epsilon * p);
#else
#if LABEL_BOOT_HARD
    // The argmax's share is added in row_loss and class_grad.
    return vec2(params.fn_a * -log_p, 1.0);
#else
#if LABEL_BOOT_SOFT
    // The entropy's share is added in row_loss and class_grad.
    return vec2(params.fn_a * -log_p, params.fn_a);
#else
    return vec2(-log_p, 1.0);
#endif
#endif
#endif
#endif
#endif
#endif
}

// The row's softmax entropy H = lse - Σ p_c x_c (LABEL_BOOT_SOFT).
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
#if LABEL_BOOT_HARD
    hit = params.fn_a * hit + (1.0 - params.fn_a) * select(0.0, 1.0, c == acc.best_class);
#endif
#if NLL
    return -row.label_weight * hit * row.scale;
#else
    let x = logit(row, c);
    let p = exp(x - lse);
#if SOFT_TARGETS
    return (p * acc.wt - weight_of(c) * smoothed_target(row, c)) * row.scale;
#else
    let eps = params.smoothing;
    var g = (1.0 - eps) * row.label_weight * label_g * (p - hit)
        + eps / f32(params.classes) * (class_weight_sum() * p - weight_of(c));
#if LABEL_BOOT_SOFT
    g += (1.0 - eps) * row.label_weight * (1.0 - params.fn_a) * -p * (x - lse + row_entropy(acc, lse));
#endif
#if Z_LOSS
    g += 2.0 * params.z_loss * lse * p;
#endif
#if SOFTCAP
    let t = x / params.softcap;
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
    let eps = params.smoothing;
    var loss = weighted_term(1.0 - eps, row.label_weight * label_term(row.label_logit - lse).x)
        + weighted_term(eps / f32(params.classes), class_weight_sum() * lse - acc.wx);
#if LABEL_BOOT_HARD
    loss += weighted_term(1.0 - eps, row.label_weight * (1.0 - params.fn_a) * (lse - acc.best));
#endif
#if LABEL_BOOT_SOFT
    loss += weighted_term(1.0 - eps, row.label_weight * (1.0 - params.fn_a) * row_entropy(acc, lse));
#endif
#if Z_LOSS
    loss += params.z_loss * lse * lse;
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
