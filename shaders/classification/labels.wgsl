// Label pre-pass of the softmax family: one workgroup reads the labels (N·S i32,
// never the logits) and writes the denominators the loss pass needs before it can
// scale a single gradient element, plus the count of out-of-range labels.
// One workgroup keeps the order of the sum fixed (deterministic) without another pass.

#import lib/numerics
#import lib/reduce
#import lib/denoms
#import lib/class_weight

struct LabelParams {
    rows: u32,
    classes: u32,
    ignore_index: i32,
    // 0: no label is skipped (every one must be a class).
    has_ignore: u32,
    // 1: add to the previous pass's counts (labels in several bindings, one pass each).
    accumulate: u32,
    // Lists of labels (passes of whole rows of `classes` entries, each a list ended by
    // -1): a list longer than this is one invalid label (0xffffffff: any length).
    list_limit: u32,
    _pad0: u32,
    _pad1: u32,
}

// Whether the entry at r, position list_limit of its row, continues a list of more than
// list_limit entries.
fn list_too_long(r: u32) -> bool {
    if (params.list_limit == 0xffffffffu || r % params.classes != params.list_limit || labels[r] < 0) {
        return false;
    }
    for (var j = r - params.list_limit; j < r; j++) {
        if (labels[j] < 0) {
            return false;
        }
    }
    return true;
}

@group(0) @binding(0) var<uniform> params: LabelParams;
@group(0) @binding(1) var<storage, read> labels: array<i32>;
@group(0) @binding(2) var<storage, read_write> denoms: Denoms;


@compute @workgroup_size(WG_SIZE)
fn count_labels(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = partial_zero();
    // One invocation sums up to LOOP_BUDGET label weights: compensated (Neumaier), so
    // that the mean's denominator keeps f32 precision over millions of rows.
    var compensation = 0.0;
    for (var r = lid.x; r < params.rows; r += WG_SIZE) {
        let label = labels[r];
        if (params.has_ignore != 0u && label == params.ignore_index) {
            continue;
        }
        if (label < 0 || u32(label) >= params.classes || list_too_long(r)) {
            acc.invalid += 1u;
        } else {
            acc.count += 1u;
            let w = weight_of(u32(label));
            let t = acc.sum + w;
            compensation += select((w - t) + acc.sum, (acc.sum - t) + w, abs(acc.sum) >= abs(w));
            acc.sum = t;
        }
    }
    // An infinite weight makes the compensation NaN; the sum is then inf as it is.
    acc.sum += select(compensation, 0.0, !is_finite(acc.sum));
    for (var c = lid.x; c < params.classes; c += WG_SIZE) {
        acc.weight += weight_of(c);
    }
    let total = workgroup_reduce(lid.x, acc);
    if (lid.x == 0u) {
#if HAS_WEIGHT && !UNWEIGHTED_MEAN
        let weight_sum = total.sum;
#else
        let weight_sum = f32(total.count);
#endif
        var counted = Denoms(weight_sum, total.count, total.invalid, total.weight);
        if (params.accumulate != 0u) {
            counted.weight_sum += denoms.weight_sum;
            counted.count += denoms.count;
            counted.invalid += denoms.invalid;
            counted.class_weight_sum = denoms.class_weight_sum;
        }
        denoms = counted;
    }
}
