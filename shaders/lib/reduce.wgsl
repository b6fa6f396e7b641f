// Deterministic reductions: every invocation contributes one `Partial`, and the tree
// below combines them in a fixed order, so the same inputs give the same bits.

const WG_SIZE: u32 = 256u;

// What one workgroup reports to `finalize`. `weight` is the denominator some losses
// accumulate (summed class weights); `invalid` counts inputs outside the loss's domain
// (labels out of range, probabilities outside [0, 1]).
struct Partial {
    sum: f32,
    weight: f32,
    nonfinite: u32,
    invalid: u32,
}

fn partial_zero() -> Partial {
    return Partial(0.0, 0.0, 0u, 0u);
}

fn partial_add(a: Partial, b: Partial) -> Partial {
    return Partial(a.sum + b.sum, a.weight + b.weight, a.nonfinite + b.nonfinite, a.invalid + b.invalid);
}

var<workgroup> wg_partials: array<Partial, WG_SIZE>;

// Pairwise tree over the workgroup; every invocation must call it. Result is valid in
// every invocation.
fn workgroup_reduce(lid: u32, p: Partial) -> Partial {
    wg_partials[lid] = p;
    workgroupBarrier();
    for (var stride = WG_SIZE / 2u; stride > 0u; stride = stride >> 1u) {
        if (lid < stride) {
            wg_partials[lid] = partial_add(wg_partials[lid], wg_partials[lid + stride]);
        }
        workgroupBarrier();
    }
    return wg_partials[0];
}
