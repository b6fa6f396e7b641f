// Element storage. Inputs, targets and gradients are stored in words of `Elem`, PACK
// elements per word, and computed in f32. Variants (host defines):
//   (none)     f32, one per word;
//   ELEM_F16   f16, one per word (needs SHADER_F16; the host prepends `enable f16;`);
//   ELEM_BF16  bf16, two per u32 (WGSL has no bf16): element 2w in the low half of
//              word w, 2w + 1 in the high half, as in memory on little-endian hosts.
// Loads widen exactly; stores round to nearest, ties to even (bf16: in integer
// arithmetic below; f16: WGSL's conversion).

#if ELEM_BF16
alias Elem = u32;
const PACK: u32 = 2u;

fn elem_unpack(word: u32, k: u32) -> f32 {
    return bitcast<f32>(((word >> (16u * k)) & 0xffffu) << 16u);
}

fn bf16_bits(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        // NaN stays a (quiet) NaN rather than rounding into infinity.
        return (bits >> 16u) | 0x40u;
    }
    return (bits + 0x7fffu + ((bits >> 16u) & 1u)) >> 16u;
}

fn elem_pack(values: array<f32, PACK>) -> u32 {
    return bf16_bits(values[0]) | (bf16_bits(values[1]) << 16u);
}
#else
#if ELEM_F16
alias Elem = f16;
#else
alias Elem = f32;
#endif
const PACK: u32 = 1u;

fn elem_unpack(word: Elem, k: u32) -> f32 {
    return f32(word);
}

fn elem_pack(values: array<f32, PACK>) -> Elem {
    return Elem(values[0]);
}
#endif
