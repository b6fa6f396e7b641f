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
// acc.wt); there is no softmax, so `lse` is unused. ML_MARGIN in row_per_workgroup also
// counts, in that sweep, the active hinges of each of the first WG_SIZE list entries
// (workgroup integer atomics: the counts do not depend on the order), so a listed class's
// gradient reads its count instead of walking the row in one invocation.

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
// Active hinges per list entry j: #{i not listed : 1 - x_{y_j} + x_i > 0}.
var<workgroup> wg_active: array<atomic<u32>, WG_SIZE>;
// Set in row_per_workgroup: the row is shared by the workgroup, wg_active is counted.
var<private> cooperative: bool;

// How many times class c is listed among the first k labels.
fn times_listed(row: Row, k: u32, c: u32) -> u32 {
    return listing(row, k, c).x;
}

// (times class c is listed among the first k labels, position of its first listing).
fn listing(row: Row, k: u32, c: u32) -> vec2<u32> {
    var found = vec2(0u, k);
    for (var j = 0u; j < k; j++) {
        if (u32(labels[row.labels_base + j]) == c) {
            found.y = min(found.y, j);
            found.x += 1u;
        }
    }
    return found;
}

// Σ_j max(0, 1 - x_{y_j} + x) and Σ_j [1 - x_{y_j} + x > 0] over the list; with `count`,
// each active hinge of the first WG_SIZE entries is also counted in wg_active.
fn hinges_against_list(row: Row, k: u32, x: f32, count: bool) -> vec2<f32> {
    var total = vec2(0.0, 0.0);
    for (var j = 0u; j < k; j++) {
        let z = 1.0 - logit(row, u32(labels[row.labels_base + j])) + x;
        if (z > 0.0) {
            total += vec2(z, 1.0);
            if (count && j < WG_SIZE) {
                atomicAdd(&wg_active[j], 1u);
            }
        }
    }
    return total;
}

// Σ_{i∉T} [1 - x_c + x_i > 0]: over every class, less the listed ones (each once).
fn active_against(row: Row, k: u32, x_c: f32) -> f32 {
    var count = 0.0;
    for (var i = 0u; i < params.classes; i++) {
        count += select(0.0, 1.0, 1.0 - x_c + logit(row, i) > 0.0);
    }
    for (var j = 0u; j < k; j++) {
        let listed = u32(labels[row.labels_base + j]);
        if (times_listed(row, j, listed) == 0u) {
            count -= select(0.0, 1.0, 1.0 - x_c + logit(row, listed) > 0.0);
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
    let k = row.listed;
    if (times_listed(row, k, c) == 0u) {
        r.wx += hinges_against_list(row, k, x, cooperative).x;
    }
#endif
    return r;
}

fn row_begin(lid: u32, row: Row) {
#if ML_MARGIN
    cooperative = true;
    // The previous row's gradient sweep has read its counts.
    workgroupBarrier();
    atomicStore(&wg_active[lid], 0u);
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
    let k = row.listed;
    let listed = listing(row, k, c);
    if (listed.x == 0u) {
        return hinges_against_list(row, k, x, false).y * per_class * row.scale;
    }
    var hinges = 0.0;
    if (cooperative && listed.y < WG_SIZE) {
        hinges = f32(atomicLoad(&wg_active[listed.y]));
    } else {
        hinges = active_against(row, k, x);
    }
    return -f32(listed.x) * hinges * per_class * row.scale;
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
