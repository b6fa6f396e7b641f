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
// Options: HAS_WEIGHT, UPSTREAM_SCALAR / UPSTREAM_ELEMENTWISE (per row, for none),
// REDUCTION_NONE (per-row losses), WRITE_LSE (per-row log-sum-exp), ACCURACY (argmax
// hits counted in the partials), ELEM_F16 / ELEM_BF16 + HALF_WORD_STORES (logits, soft
// targets and gradient in 16 bits), IN_PLACE (gradient over the logits).
//
// Entry points: `row_per_thread` (small C: one invocation walks a row) and
// `row_per_workgroup` (large C: 256 invocations stride over a row, online softmax,
// then a second sweep from cache writes the gradient once).

#import lib/elem
#import lib/numerics
#import lib/reduce
#import lib/softmax
#import lib/denoms
#import lib/class_weight

struct Params {
    // Rows (n, s) in this chunk.
    rows: u32,
    // Where this chunk's workgroups write their partials.
    partial_base: u32,
    classes: u32,
    // Class stride S.
    inner: u32,
    ignore_index: i32,
    smoothing: f32,
    // Gradient scale known on the host: 1/rows for soft-target mean, 1 otherwise.
    host_scale: f32,
    // 1 when the scale is 1 / (weighted count of non-ignored rows), from the pre-pass.
    mean_from_denoms: u32,
    // Parameters of the label function (see the top of the file).
    fn_a: f32,
    fn_b: f32,
    fn_c: f32,
    // Cross-entropy's z-loss scale (Z_LOSS) and logit soft-cap (SOFTCAP).
    z_loss: f32,
    softcap: f32,
    _pad0: f32,
    _pad1: f32,
    _pad2: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
#import lib/bindings
#if SOFT_TARGETS
@group(0) @binding(2) var<storage, read> soft_target: array<Elem>;
#else
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(8) var<storage, read> denoms: Denoms;
#endif
#if WRITE_LSE
@group(0) @binding(9) var<storage, read_write> lse_out: array<f32>;
#endif

var<workgroup> wg_abort: u32;

// What a row needs besides its logits.
struct Row {
    base: u32,
    label: u32,
    ignored: bool,
    label_weight: f32,
    // The label's logit, read before any gradient is written (in place, the gradient
    // sweep overwrites it).
    label_logit: f32,
    // d(reduced loss)/d(row loss): the mean's 1/denominator times upstream.
    scale: f32,
}

fn row_setup(r: u32) -> Row {
    let n = r / params.inner;
    let s = r - n * params.inner;
    var row = Row(n * params.classes * params.inner + s, 0u, false, 1.0, 0.0, params.host_scale);
#if !SOFT_TARGETS
    let label = labels[r];
    row.ignored = label == params.ignore_index || label < 0 || u32(label) >= params.classes;
    row.label = select(u32(label), 0u, row.ignored);
    row.label_weight = weight_of(row.label);
    row.label_logit = logit(row, row.label);
    if (params.mean_from_denoms != 0u) {
        row.scale = 1.0 / denoms.weight_sum;
    }
#endif
#if UPSTREAM_SCALAR
    row.scale *= upstream[0];
#endif
#if UPSTREAM_ELEMENTWISE
    row.scale *= upstream[r];
#endif
    return row;
}

fn logit(row: Row, c: u32) -> f32 {
    let x = input_at(row.base + c * params.inner);
#if SOFTCAP
    return params.softcap * tanh_(x / params.softcap);
#else
    return x;
#endif
}

fn smoothed_target(row: Row, c: u32) -> f32 {
#if SOFT_TARGETS
    let i = row.base + c * params.inner;
    let t = elem_unpack(soft_target[i / PACK], i % PACK);
    return (1.0 - params.smoothing) * t + params.smoothing / f32(params.classes);
#else
    return 0.0;
#endif
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

// Writes the row's gradient: classes first, first + stride, ... of it. With bf16 and
// contiguous classes (S = 1) the invocation walks 32-bit words instead, so a word that
// lies inside the row is written whole with one store; only the row's first and last
// words, which it may share with the neighbouring rows, take the atomic half-word path.
fn write_row_gradient(row: Row, acc: RowAcc, lse: f32, first: u32, stride: u32) {
#if HARD_LABELS
    let label_g = label_term(row.label_logit - lse).y;
#else
    let label_g = 1.0;
#endif
#if HALF_WORD_STORES
    if (params.inner == 1u) {
        let end = row.base + params.classes;
        for (var w = row.base / 2u + first; w * 2u < end; w += stride) {
            let low = w * 2u;
            if (low >= row.base && low + 1u < end) {
                let pair = bf16_pair(class_grad(row, acc, lse, label_g, low - row.base), class_grad(row, acc, lse, label_g, low + 1u - row.base));
#if IN_PLACE
                atomicStore(&input[w], pair);
#else
                atomicStore(&grad[w], pair);
#endif
            } else {
                for (var e = max(low, row.base); e < min(low + 2u, end); e++) {
                    grad_store(e, class_grad(row, acc, lse, label_g, e - row.base));
                }
            }
        }
        return;
    }
#endif
    for (var c = first; c < params.classes; c += stride) {
        grad_store(row.base + c * params.inner, class_grad(row, acc, lse, label_g, c));
    }
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

// Loss-pass bookkeeping of one finished row, by one invocation.
fn row_finish(r: u32, row: Row, acc: RowAcc, lse: f32, totals: Partial) -> Partial {
    var t = totals;
    let loss = row_loss(row, acc, lse);
    t.sum += loss;
#if NLL
    // NLL reads only the label's log-probability, so only that one is counted.
    t.nonfinite += select(0u, 1u, !row.ignored && !is_finite(row.label_logit));
#else
    t.nonfinite += acc.nonfinite;
#endif
#if ACCURACY
    t.count += select(0u, 1u, !row.ignored && acc.best_class == row.label);
#endif
#if REDUCTION_NONE
    losses[r] = loss;
#endif
#if WRITE_LSE
    lse_out[r] = lse;
#endif
    return t;
}

// Whether the label pre-pass found labels out of range: then nothing is written, so a
// caller's gradient is never half-written garbage presented as a result.
fn aborted(lid: u32) -> bool {
    if (lid == 0u) {
#if SOFT_TARGETS
        wg_abort = 0u;
#else
        wg_abort = denoms.invalid;
#endif
    }
    return workgroupUniformLoad(&wg_abort) != 0u;
}

// The first sweep (max, sum, linear sums) is needed by everything but plain NLL.
fn needs_sweep() -> bool {
#if NLL && !ACCURACY && !WRITE_LSE
    return false;
#else
    return true;
#endif
}

@compute @workgroup_size(WG_SIZE)
fn row_per_thread(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
#if SUBGROUPS
    subgroup_ids: SubgroupIds,
#endif
) {
#if SUBGROUPS
    subgroup_setup(subgroup_ids);
#endif
    var totals = partial_zero();
    if (!aborted(lid.x)) {
        for (var r = gid.x; r < params.rows; r += groups.x * WG_SIZE) {
            let row = row_setup(r);
            var acc = row_acc_empty();
            if (needs_sweep()) {
                for (var c = 0u; c < params.classes; c++) {
                    acc = row_push(acc, row, c);
                }
            }
            let lse = row_acc_lse(acc);
            write_row_gradient(row, acc, lse, 0u, 1u);
            totals = row_finish(r, row, acc, lse, totals);
        }
    }
    store_workgroup_partial(lid.x, wid.x, totals);
}

@compute @workgroup_size(WG_SIZE)
fn row_per_workgroup(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
#if SUBGROUPS
    subgroup_ids: SubgroupIds,
#endif
) {
#if SUBGROUPS
    subgroup_setup(subgroup_ids);
#endif
    var totals = partial_zero();
    if (!aborted(lid.x)) {
        for (var r = wid.x; r < params.rows; r += groups.x) {
            let row = row_setup(r);
            var acc = row_acc_empty();
            if (needs_sweep()) {
                for (var c = lid.x; c < params.classes; c += WG_SIZE) {
                    acc = row_push(acc, row, c);
                }
                acc = row_reduce(lid.x, acc);
            }
#if IN_PLACE
            // Every invocation has read its logits (and the label's) before any is
            // overwritten; NLL has no sweep, hence no barrier of its own.
            workgroupBarrier();
#endif
            let lse = row_acc_lse(acc);
            write_row_gradient(row, acc, lse, lid.x, WG_SIZE);
            if (lid.x == 0u) {
                totals = row_finish(r, row, acc, lse, totals);
            }
        }
    }
    store_workgroup_partial(lid.x, wid.x, totals);
}
