// Per-class breakdown of an elementwise loss over (…, C): per_class[c] = Σ loss[i] over
// the elements i with i mod C = c, one invocation per class, elements in a fixed order
// (deterministic): blocks of BLOCK elements of the class summed in f32, block sums added
// in f32, so the rounding grows with BLOCK + n / BLOCK rather than n. One dispatch per
// chunk of the loss pass; a chunk after the first adds to what the previous ones wrote.

struct ColumnParams {
    // Losses in this chunk.
    len: u32,
    columns: u32,
    // Class of the chunk's first element.
    first_class: u32,
    // 1: add to per_class (not the first chunk).
    accumulate: u32,
}

const BLOCK: u32 = 1024u;

@group(0) @binding(0) var<uniform> params: ColumnParams;
@group(0) @binding(1) var<storage, read> losses: array<f32>;
@group(0) @binding(2) var<storage, read_write> per_class: array<f32>;

@compute @workgroup_size(64)
fn column_sums(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let cols = params.columns;
    for (var c = gid.x; c < cols; c += groups.x * 64u) {
        // The chunk's first element of class c.
        let first = (c + cols - params.first_class) % cols;
        var total = 0.0;
        var block = 0.0;
        var in_block = 0u;
        for (var i = first; i < params.len; i += cols) {
            block += losses[i];
            in_block++;
            if (in_block == BLOCK) {
                total += block;
                block = 0.0;
                in_block = 0u;
            }
        }
        total += block;
        if (params.accumulate != 0u) {
            total = per_class[c] + total;
        }
        per_class[c] = total;
    }
}
