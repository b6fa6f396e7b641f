// Class weights from the data, on the GPU, so that a training step can weight its loss
// by the batch's (or a running) class distribution without a round trip to the host.
//
// `count_classes` (many workgroups): histogram of the labels into `counts` (cleared by
// the host first); ignored and out-of-range labels are not counted. Integer atomics, so
// the counts are exact and the same in any order. Each workgroup counts into its own
// copy in workgroup memory (classes <= LOCAL_BINS) or straight into `counts`.
//
// `class_weights` (one workgroup): per class, n_c = counts[c], or with EMA first
// f_c <- m f_c + (1 - m) n_c and n_c = f_c (the running per-step count, state in
// `frequencies`, caller-owned); then raw_c by scheme (params.scheme):
//   0 inverse frequency     1 / n_c
//   1 inverse square root   1 / sqrt(n_c)
//   2 effective number      (1 - β) / (1 - β^n_c)          (Cui et al. 2019)
// and w_c = raw_c · K / Σ raw over the K classes present (n_c > 0); absent classes get 0.
// The scale cancels in a `mean` of weighted cross-entropy (÷ Σ w_y); normalising to
// Σ w = K keeps `sum` at the loss's unweighted size, as Cui et al. do.
//
// MULTI_HOT: BCE's per-class `pos_weight` from multi-hot targets (rows × classes f32,
// binding 1): P_c counts the targets >= 0.5 of class c, N_c = rows - P_c (with EMA both
// run, f_c and f_(classes + c)), and w_c = raw(P_c) / raw(N_c), the weight of a positive
// relative to a negative (inverse frequency: N_c / P_c, PyTorch's recipe); 1 when a class
// has no positives or no negatives. Not normalised: pos_weight is a ratio.

#import lib/reduce
#import lib/numerics

struct Params {
    rows: u32,
    classes: u32,
    ignore_index: i32,
    scheme: u32,
    beta: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
}

const LOCAL_BINS: u32 = 1024u;

@group(0) @binding(0) var<uniform> params: Params;
#if MULTI_HOT
@group(0) @binding(1) var<storage, read> targets: array<f32>;
#else
@group(0) @binding(1) var<storage, read> labels: array<i32>;
#endif
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>;
#if EMA
@group(0) @binding(3) var<storage, read_write> frequencies: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> weights: array<f32>;

var<workgroup> local_counts: array<atomic<u32>, LOCAL_BINS>;

@compute @workgroup_size(WG_SIZE)
fn count_classes(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let local = params.classes <= LOCAL_BINS;
#if MULTI_HOT
    // Elements of the (rows, classes) targets; the host keeps their count within u32.
    let count = params.rows * params.classes;
#else
    let count = params.rows;
#endif
    for (var r = gid.x; r < count; r += groups.x * WG_SIZE) {
#if MULTI_HOT
        if (!(targets[r] >= 0.5)) {
            continue;
        }
        let label = i32(r % params.classes);
#else
        let label = labels[r];
        if (label == params.ignore_index || label < 0 || u32(label) >= params.classes) {
            continue;
        }
#endif
        if (local) {
            atomicAdd(&local_counts[u32(label)], 1u);
        } else {
            atomicAdd(&counts[u32(label)], 1u);
        }
    }
    workgroupBarrier();
    if (local) {
        for (var c = lid.x; c < params.classes; c += WG_SIZE) {
            let n = atomicLoad(&local_counts[c]);
            if (n != 0u) {
                atomicAdd(&counts[c], n);
            }
        }
    }
}

fn raw_weight(n: f32) -> f32 {
    if (n <= 0.0) {
        return 0.0;
    }
    if (params.scheme == 0u) {
        return 1.0 / n;
    }
    if (params.scheme == 1u) {
        return 1.0 / sqrt(n);
    }
    // (1 - β) / (1 - β^n) = (1 - β) / -expm1(n ln β), ln β as log1p(β - 1): β is near 1
    // and log(β) would keep only a few digits of it. β = 0 gives 1 for every present class.
    let beta = params.beta;
    if (beta <= 0.0) {
        return 1.0;
    }
    return (1.0 - beta) / -expm1_(n * log1p_(beta - 1.0));
}

fn class_count(c: u32) -> f32 {
    let n = f32(atomicLoad(&counts[c]));
#if EMA
    let f = params.momentum * frequencies[c] + (1.0 - params.momentum) * n;
    return f;
#else
    return n;
#endif
}

#if MULTI_HOT
// Negatives of class c: rows - P_c, or with EMA their running count.
fn negative_count(c: u32) -> f32 {
    let n = f32(params.rows - atomicLoad(&counts[c]));
#if EMA
    return params.momentum * frequencies[params.classes + c] + (1.0 - params.momentum) * n;
#else
    return n;
#endif
}

@compute @workgroup_size(WG_SIZE)
fn class_weights(@builtin(local_invocation_id) lid: vec3<u32>) {
    for (var c = lid.x; c < params.classes; c += WG_SIZE) {
        let positives = class_count(c);
        let negatives = negative_count(c);
        weights[c] = select(1.0, raw_weight(positives) / raw_weight(negatives), positives > 0.0 && negatives > 0.0);
#if EMA
        frequencies[c] = positives;
        frequencies[params.classes + c] = negatives;
#endif
    }
}
#else
@compute @workgroup_size(WG_SIZE)
fn class_weights(@builtin(local_invocation_id) lid: vec3<u32>) {
    // Σ raw and K over the classes, in a fixed order (grid-stride, then the tree).
    var acc = partial_zero();
    for (var c = lid.x; c < params.classes; c += WG_SIZE) {
        let n = class_count(c);
        acc.sum += raw_weight(n);
        acc.count += select(0u, 1u, n > 0.0);
    }
    let total = workgroup_reduce(lid.x, acc);
    let scale = select(0.0, f32(total.count) / total.sum, total.sum > 0.0);
    for (var c = lid.x; c < params.classes; c += WG_SIZE) {
        let n = class_count(c);
        weights[c] = raw_weight(n) * scale;
#if EMA
        frequencies[c] = n;
#endif
    }
}
#endif
