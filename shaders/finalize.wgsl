// Last pass of every loss: one workgroup folds all partials, in a fixed order, into
// the 32-byte `LossStats` the caller reads.
//
// Variant DENOMS: the mean's denominator and the invalid count come from the label
// pre-pass (`shaders/classification/labels.wgsl`) instead of the host.

#import lib/reduce

struct FinalizeParams {
    // Number of partials written by the loss pass (all chunks).
    count: u32,
    // Multiplies the summed loss: 1/N for mean, 1 otherwise (unused under DENOMS+mean).
    scale: f32,
    // Reported denominator (N for mean of elementwise losses, 1 otherwise).
    denominator: f32,
    // 1 when the reduction is mean and the denominator is on the GPU.
    mean_from_denoms: u32,
    // Rows (elements) that count, when the host knows them.
    kept: u32,
    // 1 when the kept rows are those the label pre-pass counted (ignore_index skipped).
    kept_from_denoms: u32,
    _pad0: u32,
    _pad1: u32,
}

struct LossStats {
    value: f32,
    nonfinite: u32,
    invalid: u32,
    denominator: f32,
    correct: u32,
    kept: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: FinalizeParams;
@group(0) @binding(1) var<storage, read> partials: array<Partial>;
@group(0) @binding(2) var<storage, read_write> stats: LossStats;
#if DENOMS
#import lib/denoms
@group(0) @binding(3) var<storage, read> denoms: Denoms;
#endif

@compute @workgroup_size(WG_SIZE)
fn finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = partial_zero();
    for (var i = lid.x; i < params.count; i += WG_SIZE) {
        acc = partial_add(acc, partials[i]);
    }
    let total = workgroup_reduce(lid.x, acc);
    if (lid.x == 0u) {
        var scale = params.scale;
        var denominator = params.denominator;
        var invalid = total.invalid;
        var kept = params.kept;
#if DENOMS
        invalid += denoms.invalid;
        if (params.kept_from_denoms != 0u) {
            kept = denoms.count;
        }
        if (params.mean_from_denoms != 0u) {
            denominator = denoms.weight_sum;
            scale = 1.0 / denominator;
        }
#endif
        stats = LossStats(total.sum * scale, total.nonfinite, invalid, denominator, total.count, kept, 0u, 0u);
    }
}
