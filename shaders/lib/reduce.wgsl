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

#if SUBGROUPS
// SUBGROUPS (the device has SUBGROUP): a reduction runs a butterfly inside each
// subgroup, one lane per subgroup writes the result to workgroup memory, and after one
// barrier every subgroup reduces those slots the same way: lane l folds slots l,
// l + size, ... in order, then a second butterfly. Every invocation ends with the same
// bits (the butterfly's order is fixed and its merges commutative), with one barrier
// instead of the tree's eight. No subgroup size is assumed; the entry point hands its
// subgroup builtins to `subgroup_setup` first. Deterministic run after run, but not the
// same bits as the tree below.
struct SubgroupIds {
    @builtin(subgroup_id) id: u32,
    @builtin(num_subgroups) count: u32,
    @builtin(subgroup_size) size: u32,
    @builtin(subgroup_invocation_id) lane: u32,
}

var<private> sg_id: u32;
var<private> sg_count: u32;
var<private> sg_size: u32;
var<private> sg_lane: u32;

fn subgroup_setup(ids: SubgroupIds) {
    sg_id = ids.id;
    sg_count = ids.count;
    sg_size = ids.size;
    sg_lane = ids.lane;
}

fn subgroup_sum(v: vec2<f32>, counts: vec3<u32>) -> Partial {
    var f = v;
    var c = counts;
    for (var offset = sg_size / 2u; offset > 0u; offset = offset >> 1u) {
        f = f + subgroupShuffleXor(f, offset);
        c = c + subgroupShuffleXor(c, offset);
    }
    return Partial(f.x, f.y, c.x, c.y, c.z, 0u, 0u, 0u);
}

fn workgroup_reduce(lid: u32, p: Partial) -> Partial {
    let own = subgroup_sum(vec2(p.sum, p.weight), vec3(p.nonfinite, p.invalid, p.count));
    if (sg_lane == 0u) {
        wg_floats[sg_id] = vec2(own.sum, own.weight);
        wg_counts[sg_id] = vec3(own.nonfinite, own.invalid, own.count);
    }
    workgroupBarrier();
    var f = vec2(0.0);
    var c = vec3(0u);
    for (var s = sg_lane; s < sg_count; s += sg_size) {
        f = f + wg_floats[s];
        c = c + wg_counts[s];
    }
    let total = subgroup_sum(f, c);
    // Lets the caller reduce again without racing these reads.
    workgroupBarrier();
    return total;
}
#else

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
#endif
