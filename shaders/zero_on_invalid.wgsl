// After `finalize`, for elementwise losses whose inputs have a domain (BCE's
// probabilities, KL divergence's targets): when the call counted invalid elements
// (stats.invalid > 0), zeros one chunk's gradient, per-element losses and target
// gradient, so that an update recorded next, applied without reading the stats, is a
// no-op. Otherwise every invocation returns at once. Grid-stride over the chunk.
// Variants: LOSSES (per-element losses bound), TARGET_GRAD (target gradient bound).

const WG_SIZE: u32 = 256u;

struct ZeroParams {
    // Whole 32-bit words of the typed gradient (and target gradient) in the chunk.
    words: u32,
    // 1 when the chunk ends in half a word (f16/bf16, odd length): its low half is cleared.
    half_word: u32,
    // f32 per-element losses in the chunk.
    losses: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: ZeroParams;
// The LossStats words the call's finalize wrote; `invalid` is word 2. Only read, but
// bound read_write: the caller's stats may share a buffer with the gradient, and wgpu
// refuses one buffer bound both read-only and read-write in a dispatch.
@group(0) @binding(1) var<storage, read_write> stats: array<u32, 8>;
@group(0) @binding(2) var<storage, read_write> grad: array<atomic<u32>>;
#if LOSSES
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;
#endif
#if TARGET_GRAD
@group(0) @binding(4) var<storage, read_write> target_grad: array<atomic<u32>>;
#endif

@compute @workgroup_size(WG_SIZE)
fn zero_on_invalid(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    if (stats[2] == 0u) {
        return;
    }
    let stride = groups.x * WG_SIZE;
    for (var w = gid.x; w < params.words; w += stride) {
        atomicStore(&grad[w], 0u);
#if TARGET_GRAD
        atomicStore(&target_grad[w], 0u);
#endif
    }
    if (gid.x == 0u && params.half_word != 0u) {
        // The other half is past the tensor, in the caller's memory: kept.
        atomicAnd(&grad[params.words], 0xffff0000u);
#if TARGET_GRAD
        atomicAnd(&target_grad[params.words], 0xffff0000u);
#endif
    }
#if LOSSES
    for (var i = gid.x; i < params.losses; i += stride) {
        losses[i] = 0.0;
    }
#endif
}
