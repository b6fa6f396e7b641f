// Margin losses over rows of C scores (input (N, C), PyTorch semantics), fused forward
// + backward on the row driver (lib/rows). Each loss has a file of its own
// (classification/<loss>.wgsl) that declares its `LossParams`, defines its variant and
// imports this one. Variants, with w = weight:
//   MULTI_MARGIN    torch.nn.MultiMarginLoss(p, margin = a, weight), label y, p ∈ {1, 2}:
//                   h_c = a - x_y + x_c,  l = w_y / C Σ_{c≠y} [h_c > 0] h_c^p
//                   dl/dx_c = w_y / C [h_c > 0] p h_c^(p-1) (c ≠ y), dl/dx_y = -Σ_{c≠y} dl/dx_c
//   ML_SOFT_MARGIN  torch.nn.MultiLabelSoftMarginLoss(weight), targets t_c (TARGET_VALUES):
//                   l = 1/C Σ_c w_c (t_c softplus(-x_c) + (1 - t_c) softplus(x_c))
//                   dl/dx_c = w_c (σ(x_c) (1 - t_c) - σ(-x_c) t_c) / C (σ(x) - t without
//                   its cancellation as σ(x) -> 1 with t = 1)
//   ML_MARGIN       torch.nn.MultiLabelMarginLoss (LABEL_LISTS): the row's C labels are
//                   class indices read up to the first -1, the list y_1..y_k (a class listed
//                   twice counts twice, as PyTorch), T its set:
//                   l = 1/C Σ_j Σ_{i∉T} max(0, 1 - x_{y_j} + x_i)
//                   dl/dx_i = 1/C Σ_j [1 - x_{y_j} + x_i > 0] (i ∉ T),
//                   dl/dx_c = -1/C (times c listed) Σ_{i∉T} [1 - x_c + x_i > 0] (c ∈ T)
// The first sweep accumulates the row's loss in acc.wx (and MULTI_MARGIN's Σ slopes in
// acc.wt); there is no softmax, so `lse` is unused. ML_MARGIN's work per class is O(k)
// (an unlisted class against the list) or O(C) (a listed class against the unlisted
// ones), O(C·(C + k)) per row up to 32·LISTED_WORDS classes (the row's bitmap); longer
// rows take short lists (see wg_active). The host bounds the rows per invocation
// (LOOP_BUDGET).

#import lib/rows

fn logit(row: Row, c: u32) -> f32 {
    return input_at(row.base + c * params.inner);
}

#if MULTI_MARGIN
// (h^p, d h^p / dh) of the hinge of class c, (0, 0) when it is inactive.
fn hinge(row: Row, x: f32) -> vec2<f32> {
    let h = loss_params.margin - row.label_logit + x;
    if (!(h > 0.0)) {
        return vec2(0.0, 0.0);
    }
    return select(vec2(h, 1.0), vec2(h * h, 2.0 * h), loss_params.p == 2u);
}
#endif

#if ML_MARGIN
// Rows of more than 32·LISTED_WORDS classes (row_per_workgroup only, lists of at most
// WG_SIZE entries: the host's multilabel_margin_list_limit, checked by the pre-pass):
// membership walks the list, and the first sweep counts each list entry's active hinges
// in workgroup integer atomics (exact, so the counts do not depend on the order).
const LIST_SLOTS: u32 = 256u;
var<workgroup> wg_active: array<atomic<u32>, LIST_SLOTS>;

fn bitmap_rows() -> bool {
    return params.classes <= 32u * LISTED_WORDS;
}

fn label_at(row: Row, j: u32) -> u32 {
    return u32(labels[row.labels_base + j]);
}

// How many times class c is listed (a class listed twice counts twice, as PyTorch).
fn times_listed(row: Row, c: u32) -> u32 {
    var times = 0u;
    for (var j = 0u; j < row.listed; j++) {
        times += select(0u, 1u, label_at(row, j) == c);
    }
    return times;
}

// The first position of class c in the list (k when unlisted).
fn first_listing(row: Row, c: u32) -> u32 {
    for (var j = 0u; j < row.listed; j++) {
        if (label_at(row, j) == c) {
            return j;
        }
    }
    return row.listed;
}

// O(1) from the invocation's bitmap of the row (row_setup), so that no invocation's work
// grows with C·k·k (llvmpipe ends an invocation's loops after 65535 iterations in all);
// a walk of the short list in longer rows.
fn is_listed(row: Row, c: u32) -> bool {
    if (bitmap_rows()) {
        return (listed_words[c / 32u] & (1u << (c % 32u))) != 0u;
    }
    return first_listing(row, c) < row.listed;
}

// Σ_j max(0, 1 - x_{y_j} + x) and Σ_j [1 - x_{y_j} + x > 0] over the list (an unlisted
// class's hinges and its gradient count); with `count`, each active hinge is counted in
// wg_active too.
fn hinges_against_list(row: Row, x: f32, count: bool) -> vec2<f32> {
    var total = vec2(0.0, 0.0);
    for (var j = 0u; j < row.listed; j++) {
        let z = 1.0 - logit(row, label_at(row, j)) + x;
        if (z > 0.0) {
            total += vec2(z, 1.0);
            if (count) {
                atomicAdd(&wg_active[min(j, LIST_SLOTS - 1u)], 1u);
            }
        }
    }
    return total;
}

// Σ_{i∉T} [1 - x_c + x_i > 0]: a listed class's active hinges.
fn active_against(row: Row, x_c: f32) -> f32 {
    var count = 0.0;
    for (var i = 0u; i < params.classes; i++) {
        if (!is_listed(row, i) && 1.0 - x_c + logit(row, i) > 0.0) {
            count += 1.0;
        }
    }
    return count;
}
#endif

fn row_push(a: RowAcc, row: Row, c: u32) -> RowAcc {
    let x = logit(row, c);
    var r = row_acc_push_plain(a, x, c);
#if MULTI_MARGIN
    if (c != row.label) {
        let h = hinge(row, x);
        r.wx += h.x;
        r.wt += h.y;
    }
#endif
#if ML_SOFT_MARGIN
    let t = target_value(row, c);
    // A term whose coefficient is 0 is dropped (limit 0 at ±inf), as BCE with logits.
    let positive = select(t * softplus(-x), 0.0, t == 0.0);
    let negative = select((1.0 - t) * softplus(x), 0.0, t == 1.0);
    r.wx += weight_of(c) * (positive + negative);
#endif
#if ML_MARGIN
    if (!is_listed(row, c)) {
        r.wx += hinges_against_list(row, x, !bitmap_rows()).x;
    }
#endif
    return r;
}

fn row_begin(lid: u32, row: Row) {
#if ML_MARGIN
    // The previous row's gradient sweep has read its counts.
    workgroupBarrier();
    for (var i = lid; i < LIST_SLOTS; i += WG_SIZE) {
        atomicStore(&wg_active[i], 0u);
    }
    workgroupBarrier();
#endif
}

fn label_factor(row: Row, acc: RowAcc, lse: f32) -> f32 {
    return 1.0 / f32(params.classes);
}

// d(row loss)/dx_c times the row's scale; `per_class` is 1/C.
fn class_grad(row: Row, acc: RowAcc, lse: f32, per_class: f32, c: u32) -> f32 {
    if (row.ignored) {
        return 0.0;
    }
    let x = logit(row, c);
#if MULTI_MARGIN
    let slope = select(hinge(row, x).y, -acc.wt, c == row.label);
    return row.label_weight * per_class * slope * row.scale;
#endif
#if ML_SOFT_MARGIN
    let t = target_value(row, c);
    return weight_of(c) * (sigmoid(x) * (1.0 - t) - sigmoid(-x) * t) * per_class * row.scale;
#endif
#if ML_MARGIN
    // Long rows walk the list once for the first listing, which is also membership.
    var listed = false;
    var first = 0u;
    if (bitmap_rows()) {
        listed = is_listed(row, c);
    } else {
        first = first_listing(row, c);
        listed = first < row.listed;
    }
    if (!listed) {
        return hinges_against_list(row, x, false).y * per_class * row.scale;
    }
    var active_hinges = 0.0;
    if (bitmap_rows()) {
        active_hinges = active_against(row, x);
    } else {
        active_hinges = f32(atomicLoad(&wg_active[min(first, LIST_SLOTS - 1u)]));
    }
    return -f32(times_listed(row, c)) * active_hinges * per_class * row.scale;
#endif
}

fn row_loss(row: Row, acc: RowAcc, lse: f32) -> f32 {
    if (row.ignored) {
        return 0.0;
    }
#if MULTI_MARGIN
    return row.label_weight * acc.wx / f32(params.classes);
#else
    return acc.wx / f32(params.classes);
#endif
}

fn row_nonfinite(row: Row, acc: RowAcc) -> u32 {
    return acc.nonfinite;
}

fn needs_sweep() -> bool {
    return true;
}
