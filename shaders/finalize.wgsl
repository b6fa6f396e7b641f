// Second pass of every loss: one workgroup folds all partials, in a fixed order, into
// the 16-byte `LossStats` the caller reads (value, non-finite count, invalid count,
// denominator).

#import lib/reduce

struct FinalizeParams {
    // Number of partials written by the first pass (all chunks).
    count: u32,
    // Multiplies the summed loss: 1/N for mean, 1 otherwise.
    scale: f32,
    // Reported denominator (N for mean of elementwise losses, 1 otherwise).
    denominator: f32,
    _pad: u32,
}

struct LossStats {
    value: f32,
    nonfinite: u32,
    invalid: u32,
    denominator: f32,
}

@group(0) @binding(0) var<uniform> params: FinalizeParams;
@group(0) @binding(1) var<storage, read> partials: array<Partial>;
@group(0) @binding(2) var<storage, read_write> stats: LossStats;

@compute @workgroup_size(WG_SIZE)
fn finalize(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = partial_zero();
    for (var i = lid.x; i < params.count; i += WG_SIZE) {
        acc = partial_add(acc, partials[i]);
    }
    let total = workgroup_reduce(lid.x, acc);
    if (lid.x == 0u) {
        stats = LossStats(total.sum * params.scale, total.nonfinite, total.invalid, params.denominator);
    }
}
