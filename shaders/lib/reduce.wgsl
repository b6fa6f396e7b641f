// Deterministic reductions: every invocation contributes one `Partial`, and the tree
// below combines them in a fixed order, so the same inputs give the same bits.

const WG_SIZE: u32 = 256u;

// What one workgroup reports to `finalize` (or what the label pre-pass reduces).
// `sum` is the loss; `weight` a weight sum some passes need; `nonfinite` counts NaN/inf
// inputs; `invalid` inputs outside the loss's domain (labels out of range,
// probabilities outside [0, 1]); `count` a second counter (correct predictions, or
// non-ignored rows in the label pre-pass).
struct Partial {
    sum: f32,
    weight: f32,
    nonfinite: u32,
    invalid: u32,
    count: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

fn partial_zero() -> Partial {
    return Partial(0.0, 0.0, 0u, 0u, 0u, 0u, 0u, 0u);
}

fn partial_add(a: Partial, b: Partial) -> Partial {
    return Partial(
        a.sum + b.sum,
        a.weight + b.weight,
        a.nonfinite + b.nonfinite,
        a.invalid + b.invalid,
        a.count + b.count,
        0u, 0u, 0u,
    );
}

// Struct-of-arrays scratch: some drivers (Mesa's GL path) compile dynamically indexed
// arrays of structs in workgroup memory extremely slowly.
var<workgroup> wg_floats: array<vec2<f32>, WG_SIZE>;
var<workgroup> wg_counts: array<vec3<u32>, WG_SIZE>;

// Pairwise tree over the workgroup; every invocation must call it. Result is valid in
// every invocation.
fn workgroup_reduce(lid: u32, p: Partial) -> Partial {
    wg_floats[lid] = vec2(p.sum, p.weight);
    wg_counts[lid] = vec3(p.nonfinite, p.invalid, p.count);
    workgroupBarrier();
    for (var stride = WG_SIZE / 2u; stride > 0u; stride = stride >> 1u) {
        if (lid < stride) {
            wg_floats[lid] = wg_floats[lid] + wg_floats[lid + stride];
            wg_counts[lid] = wg_counts[lid] + wg_counts[lid + stride];
        }
        workgroupBarrier();
    }
    let f = wg_floats[0];
    let c = wg_counts[0];
    // Lets the caller reduce again (next row) without racing these reads.
    workgroupBarrier();
    return Partial(f.x, f.y, c.x, c.y, c.z, 0u, 0u, 0u);
}
