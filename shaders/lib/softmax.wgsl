// Online softmax over one row: a running max `m` and the sum s of exp(x - m), merged
// pairwise in a fixed tree, so a row of any length is read once for its log-sum-exp.
// The row also carries the linear sums the losses need (`wx`, `wt`), its argmax, and
// its count of non-finite logits.
//
// The log-sum-exp is kept as its two parts, m and ln s, never folded into one f32
// (m + ln s rounds to half an ulp of the row maximum, which then cancels in p_y - 1 and
// in lse - x_y as p_y -> 1, and loses everything for logits near 1e6): log-probabilities
// are (x - m) - ln s, as PyTorch forms them, and the linear sums are taken about the
// running max, Σ c (x - m), rescaled when the max moves. s is kept as s - 1 (`rest`, the
// terms other than the max's own e^0), so that ln s = log1p(rest) keeps its relative
// precision as p_y -> 1 (WGSL's log near 1 promises only an absolute 2^-21).

#import lib/numerics
#import lib/reduce

// Start value of the running max: the most negative finite f32, so that exp(x - m) of
// a -inf logit is 0, never exp(-inf + inf) = NaN.
const LOWEST: f32 = -3.4028234663852886e38;

struct RowAcc {
    m: f32,
    // s - 1: Σ exp(x - m) less the max's own 1 (-1 when empty: s = 0).
    rest: f32,
    // Σ c (x - m) and Σ c over the classes pushed with coefficients c
    // (row_acc_push_linear); the margin losses use both as plain sums (m stays LOWEST).
    wx: f32,
    wt: f32,
    best: f32,
    best_class: u32,
    nonfinite: u32,
    // ROW_ENTROPY: Σ e^(x - m) (x - m), rescaled with m like s, so Σ p (x - m) = px / s.
    px: f32,
}

// A sum Σ c (x - m_old) with Σ c = weight, about a new max m_new = m_old - delta. Skipped
// when there is nothing to move (no weight yet, or the same max), so that an empty
// accumulator's LOWEST never meets a large logit in a product.
fn shifted(sum: f32, weight: f32, delta: f32) -> f32 {
    return select(sum, sum + weight * delta, weight != 0.0 && delta != 0.0);
}

fn row_acc_empty() -> RowAcc {
    return RowAcc(LOWEST, -1.0, 0.0, 0.0, LOWEST, 0xffffffffu, 0u, 0.0);
}

// Adds logit x of class c to the running max and sum.
fn row_acc_push_logit(a: RowAcc, x: f32, c: u32) -> RowAcc {
    var r = a;
    if (x > r.m) {
        let rescale = exp(r.m - x);
#if ROW_ENTROPY
        // The new logit's own term e^0 (x - x) is 0.
        r.px = shifted(r.px, row_acc_sum(r), r.m - x) * rescale;
#endif
        // The old max's 1 becomes an ordinary term; the new max brings its own 1.
        r.rest = (r.rest + 1.0) * rescale;
        r.m = x;
    } else {
        let e = exp(x - r.m);
        r.rest += e;
#if ROW_ENTROPY
        // A -inf logit adds nothing (not 0 · -inf).
        r.px += select(0.0, e * (x - r.m), e > 0.0);
#endif
    }
    // First occurrence wins ties, as torch.argmax.
    if (x > r.best) {
        r.best = x;
        r.best_class = c;
    }
    r.nonfinite += select(1u, 0u, is_finite(x));
    return r;
}

// Adds coefficient `coef` times logit x, about the running max, to the linear sums,
// after row_acc_push_logit moved the max from m_before to a.m.
fn row_acc_push_linear(a: RowAcc, m_before: f32, coef: f32, x: f32) -> RowAcc {
    var r = a;
    // The max itself adds 0 whatever its coefficient (an infinite class weight: not NaN).
    r.wx = shifted(r.wx, r.wt, m_before - r.m) + select(coef * (x - r.m), 0.0, x == r.m);
    r.wt += coef;
    return r;
}

// Adds input x of class c to the argmax and the non-finite count only (losses that need
// no softmax; their running sum stays 0 and the max at LOWEST).
fn row_acc_push_plain(a: RowAcc, x: f32, c: u32) -> RowAcc {
    var r = a;
    if (x > r.best) {
        r.best = x;
        r.best_class = c;
    }
    r.nonfinite += select(1u, 0u, is_finite(x));
    return r;
}

fn row_acc_merge(a: RowAcc, b: RowAcc) -> RowAcc {
    let m = max(a.m, b.m);
    var r = a;
    r.m = m;
    let ea = exp(a.m - m);
    let eb = exp(b.m - m);
    // s = s_a e_a + s_b e_b as s - 1: the side holding the max keeps its 1 out of the
    // sum; equal maxima add symmetrically, so the merge stays commutative bit for bit.
    if (a.m > b.m) {
        r.rest = a.rest + (b.rest + 1.0) * eb;
    } else if (b.m > a.m) {
        r.rest = b.rest + (a.rest + 1.0) * ea;
    } else {
        r.rest = (a.rest + b.rest) + 1.0;
    }
#if ROW_ENTROPY
    r.px = shifted(a.px, row_acc_sum(a), a.m - m) * ea + shifted(b.px, row_acc_sum(b), b.m - m) * eb;
#endif
    r.wx = shifted(a.wx, a.wt, a.m - m) + shifted(b.wx, b.wt, b.m - m);
    r.wt = a.wt + b.wt;
    let b_wins = b.best > a.best || (b.best == a.best && b.best_class < a.best_class);
    r.best = select(a.best, b.best, b_wins);
    r.best_class = select(a.best_class, b.best_class, b_wins);
    r.nonfinite = a.nonfinite + b.nonfinite;
    return r;
}

// The log-sum-exp as one value, for what returns it (the lse output, z-loss); the losses
// use its parts.
fn row_acc_lse(a: RowAcc) -> f32 {
    return a.m + row_acc_log_sum(a);
}

// A +inf maximum: its own term exp(x - m) is exp(inf - inf), NaN, as PyTorch's
// log-softmax gives; the implicit 1 of `rest` would hide it (an inf loss instead).
fn row_acc_inf_max(a: RowAcc) -> bool {
    return a.m > 3.4028235e38;
}

// s = Σ exp(x - m).
fn row_acc_sum(a: RowAcc) -> f32 {
    return select(1.0 + a.rest, bitcast<f32>(0x7fc00000u), row_acc_inf_max(a));
}

// ln s, the log-sum-exp less the row max.
fn row_acc_log_sum(a: RowAcc) -> f32 {
    return select(log1p_(a.rest), bitcast<f32>(0x7fc00000u), row_acc_inf_max(a));
}

// ln softmax(x) at logit x: (x - m) - ln s.
fn row_acc_log_prob(a: RowAcc, x: f32) -> f32 {
    return (x - a.m) - row_acc_log_sum(a);
}

// Struct-of-arrays scratch (see `workgroup_reduce` in reduce.wgsl for why).
var<workgroup> wg_row_sums: array<vec4<f32>, WG_SIZE>;
var<workgroup> wg_row_best: array<vec2<f32>, WG_SIZE>;
var<workgroup> wg_row_counts: array<vec2<u32>, WG_SIZE>;

fn row_store(i: u32, a: RowAcc) {
    wg_row_sums[i] = vec4(a.m, a.rest, a.wx, a.wt);
    wg_row_best[i] = vec2(a.best, a.px);
    wg_row_counts[i] = vec2(a.best_class, a.nonfinite);
}

fn row_load(i: u32) -> RowAcc {
    let f = wg_row_sums[i];
    let c = wg_row_counts[i];
    let b = wg_row_best[i];
    return RowAcc(f.x, f.y, f.z, f.w, b.x, c.x, c.y, b.y);
}

// The subtree of an invocation's lanes (adjacent pairs first, lib/reduce), in lanes[0].
fn row_lanes_fold(lanes: ptr<function, array<RowAcc, LANES_PER_INVOCATION>>) {
    for (var s = 1u; s < LANES_PER_INVOCATION; s = s << 1u) {
        for (var j = 0u; j + s < LANES_PER_INVOCATION; j += 2u * s) {
            (*lanes)[j] = row_acc_merge((*lanes)[j], (*lanes)[j + s]);
        }
    }
}

// The adjacent-pairing tree over the workgroup's positions in workgroup memory
// (lib/reduce), invocation `here` at that position; every invocation gets the merged row.
// Ends with a barrier so the next row may reuse the scratch.
fn plain_row_reduce(here: u32, a: RowAcc) -> RowAcc {
    row_store(here, a);
    workgroupBarrier();
    for (var s = 1u; s < WG_SIZE; s = s << 1u) {
        if ((here & (2u * s - 1u)) == 0u) {
            row_store(here, row_acc_merge(row_load(here), row_load(here + s)));
        }
        workgroupBarrier();
    }
    let total = row_load(0u);
    workgroupBarrier();
    return total;
}

#if SUBGROUPS
// The row's accumulator in lane `lane ^ offset` of this subgroup.
fn row_acc_shuffle_xor(a: RowAcc, offset: u32) -> RowAcc {
    let f = subgroupShuffleXor(vec4(a.m, a.rest, a.wx, a.wt), offset);
    let c = subgroupShuffleXor(vec2(a.best_class, a.nonfinite), offset);
    let b = subgroupShuffleXor(vec2(a.best, a.px), offset);
    return RowAcc(f.x, f.y, f.z, f.w, b.x, c.x, c.y, b.y);
}

// The butterfly over aligned groups of `width` lanes, offsets 1, 2, 4, ... (the tree's
// neighbours; row_acc_merge is commutative bit for bit, so both get the same result).
fn row_acc_butterfly(a: RowAcc, width: u32) -> RowAcc {
    var r = a;
    for (var offset = 1u; offset < width; offset = offset << 1u) {
        r = row_acc_merge(r, row_acc_shuffle_xor(r, offset));
    }
    return r;
}

// The same tree as `plain_row_reduce`, its lower levels a butterfly in each subgroup and
// the subgroups' results folded alike by every subgroup (see `workgroup_reduce` in
// lib/reduce). Ends with a barrier so the next row may reuse the scratch.
fn row_reduce(lid: u32, a: RowAcc) -> RowAcc {
    if (sg_count > 4u * sg_size) {
        return plain_row_reduce(position(lid), a);
    }
    let own = row_acc_butterfly(a, sg_size);
    if (sg_lane == 0u) {
        row_store(sg_id, own);
    }
    workgroupBarrier();
    let per_lane = max(1u, sg_count / sg_size);
    let width = min(sg_count, sg_size);
    var mine = row_acc_empty();
    if (sg_lane < width) {
        let at = sg_lane * per_lane;
        mine = row_load(at);
        if (per_lane >= 2u) {
            mine = row_acc_merge(mine, row_load(at + 1u));
        }
        if (per_lane == 4u) {
            mine = row_acc_merge(mine, row_acc_merge(row_load(at + 2u), row_load(at + 3u)));
        }
    }
    let total = row_acc_butterfly(mine, width);
    workgroupBarrier();
    return total;
}
#else
fn row_reduce(lid: u32, a: RowAcc) -> RowAcc {
    return plain_row_reduce(lid, a);
}
#endif
