// Per-class breakdown of an elementwise loss over (…, C): per_class[c] = Σ loss[i] over
// the elements i with i mod C = c. A workgroup per class: invocation l sums the class's
// elements l, l + WG_SIZE, ... (in order), then the fixed tree of lib/reduce adds the 256
// sums, so the result is the same bits on every run and no invocation loops more than
// n / (C · WG_SIZE) times. One dispatch per chunk of the loss pass; a chunk after the
// first adds to what the previous ones wrote.

#import lib/reduce

struct ColumnParams {
    // Losses in this chunk.
    len: u32,
    columns: u32,
    // Class of the chunk's first element.
    first_class: u32,
    // 1: add to per_class (not the first chunk).
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> params: ColumnParams;
@group(0) @binding(1) var<storage, read> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> per_class: array<f32>;

@compute @workgroup_size(WG_SIZE)
fn column_sums(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let cols = params.columns;
    for (var c = wid.x; c < cols; c += groups.x) {
        // The chunk's first element of class c, then every cols-th: n of them (counted
        // rather than stepped past the end, which could overflow u32).
        let first = (c + cols - params.first_class) % cols;
        let n = select(0u, (params.len - first + cols - 1u) / cols, first < params.len);
        var own = partial_zero();
        for (var k = lid.x; k < n; k += WG_SIZE) {
            own.sum += losses[first + k * cols];
        }
        let total = workgroup_reduce(lid.x, own);
        if (lid.x == 0u) {
            per_class[c] = select(0.0, per_class[c], params.accumulate != 0u) + total.sum;
        }
    }
}
