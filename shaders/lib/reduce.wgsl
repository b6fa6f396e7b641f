// Deterministic reductions whose order is a function of the input alone, never of the
// launch shape (workgroup size, workgroup count, subgroup size).
//
// The loss passes that take a tuned launch (lib/pointwise, lib/rows) fold their items in
// *lanes*: LANES lanes per block, lane l holding the block's items l, l + LANES, ... in
// order, and the lanes combined by an adjacent-pairing tree (lanes 2i and 2i + 1 first,
// then pairs of pairs, ...). A workgroup of WG_SIZE invocations runs it with
// LANES_PER_INVOCATION = LANES / WG_SIZE lanes per invocation, contiguous (invocation p
// holds lanes p·L .. p·L + L - 1): the invocation folds its own lanes' subtree, and the
// workgroup tree (or the subgroup butterfly, whose XOR offsets 1, 2, 4, ... pair the same
// neighbours) folds the invocations' subtrees. Every level adds neighbours of one fixed
// binary tree, so any WG_SIZE and any subgroup size give the same bits. Integer counts
// are exact and ride along.
//
// WG_SIZE is the define LAUNCH_WG_SIZE (tuned passes: 64, 128 or 256), else 256 (the
// single-workgroup passes: finalize, the label pre-pass, class weights, column sums).

#if LAUNCH_WG_SIZE
const WG_SIZE: u32 = LAUNCH_WG_SIZE;
#else
const WG_SIZE: u32 = 256u;
#endif
const LANES: u32 = 256u;
const LANES_PER_INVOCATION: u32 = LANES / WG_SIZE;

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

// The subtree of an invocation's LANES_PER_INVOCATION lane partials (adjacent pairs
// first), in place: the result is in lanes[0].
fn lanes_fold(lanes: ptr<function, array<Partial, LANES_PER_INVOCATION>>) {
    for (var s = 1u; s < LANES_PER_INVOCATION; s = s << 1u) {
        for (var j = 0u; j + s < LANES_PER_INVOCATION; j += 2u * s) {
            (*lanes)[j] = partial_add((*lanes)[j], (*lanes)[j + s]);
        }
    }
}

// Struct-of-arrays scratch: some drivers (Mesa's GL path) compile dynamically indexed
// arrays of structs in workgroup memory extremely slowly.
var<workgroup> wg_floats: array<vec2<f32>, WG_SIZE>;
var<workgroup> wg_counts: array<vec3<u32>, WG_SIZE>;

#if SUBGROUPS
// SUBGROUPS (the device has SUBGROUP): the lower levels of the tree are a butterfly in
// each subgroup. An invocation's position in the tree is subgroup_id · subgroup_size +
// subgroup_invocation_id (`position`), so that the butterfly's neighbours are the tree's
// whatever order the device numbers its invocations in; the entry point hands its
// subgroup builtins to `subgroup_setup` first. No subgroup size is assumed beyond a power
// of two no larger than WG_SIZE.
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

fn position(lid: u32) -> u32 {
    return sg_id * sg_size + sg_lane;
}

// The butterfly over the first `width` lanes of the subgroup (a power of two): offsets
// 1, 2, 4, ... add the tree's neighbours, and lane i's result is the sum of its aligned
// group of `width` lanes (commutative adds: both neighbours get the same bits).
fn subgroup_tree(v: vec2<f32>, counts: vec3<u32>, width: u32) -> Partial {
    var f = v;
    var c = counts;
    for (var offset = 1u; offset < width; offset = offset << 1u) {
        f = f + subgroupShuffleXor(f, offset);
        c = c + subgroupShuffleXor(c, offset);
    }
    return Partial(f.x, f.y, c.x, c.y, c.z, 0u, 0u, 0u);
}

// Slot i of the workgroup scratch.
fn slot_load(i: u32) -> Partial {
    let f = wg_floats[i];
    let c = wg_counts[i];
    return Partial(f.x, f.y, c.x, c.y, c.z, 0u, 0u, 0u);
}

// The tree over the workgroup's positions; every invocation must call it (in uniform
// control flow) and gets the result. Ends with a barrier so the caller may reduce again.
// One butterfly per subgroup, then every subgroup folds the subgroups' sums the same way:
// lane l takes slots l·k .. l·k + k - 1 (k <= 4, in pairs), then a butterfly over the
// first sg_count / k lanes. Subgroups too small for that (more than 4·size slots per
// lane) take the plain tree over the same positions.
fn workgroup_reduce(lid: u32, p: Partial) -> Partial {
    let here = position(lid);
    if (sg_count > 4u * sg_size) {
        return plain_workgroup_reduce(here, p);
    }
    let own = subgroup_tree(vec2(p.sum, p.weight), vec3(p.nonfinite, p.invalid, p.count), sg_size);
    if (sg_lane == 0u) {
        wg_floats[sg_id] = vec2(own.sum, own.weight);
        wg_counts[sg_id] = vec3(own.nonfinite, own.invalid, own.count);
    }
    workgroupBarrier();
    let per_lane = max(1u, sg_count / sg_size);
    let width = min(sg_count, sg_size);
    var mine = partial_zero();
    if (sg_lane < width) {
        let at = sg_lane * per_lane;
        mine = slot_load(at);
        if (per_lane >= 2u) {
            mine = partial_add(mine, slot_load(at + 1u));
        }
        if (per_lane == 4u) {
            mine = partial_add(mine, partial_add(slot_load(at + 2u), slot_load(at + 3u)));
        }
    }
    let total = subgroup_tree(vec2(mine.sum, mine.weight), vec3(mine.nonfinite, mine.invalid, mine.count), width);
    workgroupBarrier();
    return total;
}
#else

fn position(lid: u32) -> u32 {
    return lid;
}

// The tree over the workgroup's positions; every invocation must call it and gets the
// result. Ends with a barrier so the caller may reduce again.
fn workgroup_reduce(lid: u32, p: Partial) -> Partial {
    return plain_workgroup_reduce(lid, p);
}
#endif

// The adjacent-pairing tree in workgroup memory, invocation `here` at that position.
fn plain_workgroup_reduce(here: u32, p: Partial) -> Partial {
    wg_floats[here] = vec2(p.sum, p.weight);
    wg_counts[here] = vec3(p.nonfinite, p.invalid, p.count);
    workgroupBarrier();
    for (var s = 1u; s < WG_SIZE; s = s << 1u) {
        if ((here & (2u * s - 1u)) == 0u) {
            wg_floats[here] = wg_floats[here] + wg_floats[here + s];
            wg_counts[here] = wg_counts[here] + wg_counts[here + s];
        }
        workgroupBarrier();
    }
    let f = wg_floats[0];
    let c = wg_counts[0];
    workgroupBarrier();
    return Partial(f.x, f.y, c.x, c.y, c.z, 0u, 0u, 0u);
}
