// Element storage. Inputs, targets and gradients are stored in words of `Elem`, PACK
// elements per word, and computed in f32. Variants (host defines):
//   (none)     f32, one per word;
//   ELEM_F16   f16, one per word (needs SHADER_F16; the host prepends `enable f16;`);
//   ELEM_BF16  bf16, two per u32 (WGSL has no bf16): element 2w in the low half of
//              word w, 2w + 1 in the high half, as in memory on little-endian hosts;
//   VEC4       words of four of the above (vec4<f32>, vec4<f16>, vec4<u32> = 8 bf16),
//              for one 16- or 8-byte load per word; the host asks for it only when the
//              length is a multiple of PACK.
// Loads widen exactly; stores round to nearest, ties to even (bf16: in integer
// arithmetic below; f16: WGSL's conversion).

#if ELEM_F16
alias Scalar = f16;
#else
alias Scalar = f32;
#endif

fn bf16_unpack(word: u32, k: u32) -> f32 {
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

fn bf16_pair(low: f32, high: f32) -> u32 {
    return bf16_bits(low) | (bf16_bits(high) << 16u);
}

#if ELEM_BF16 && VEC4
alias Elem = vec4<u32>;
const PACK: u32 = 8u;

fn elem_unpack(word: Elem, k: u32) -> f32 {
    return bf16_unpack(word[k / 2u], k % 2u);
}

fn elem_pack(v: array<f32, PACK>) -> Elem {
    return Elem(bf16_pair(v[0], v[1]), bf16_pair(v[2], v[3]), bf16_pair(v[4], v[5]), bf16_pair(v[6], v[7]));
}
#endif

#if ELEM_BF16 && !VEC4
alias Elem = u32;
const PACK: u32 = 2u;

fn elem_unpack(word: Elem, k: u32) -> f32 {
    return bf16_unpack(word, k);
}

fn elem_pack(v: array<f32, PACK>) -> Elem {
    return bf16_pair(v[0], v[1]);
}
#endif

#if !ELEM_BF16 && VEC4
alias Elem = vec4<Scalar>;
const PACK: u32 = 4u;

fn elem_unpack(word: Elem, k: u32) -> f32 {
    return f32(word[k]);
}

fn elem_pack(v: array<f32, PACK>) -> Elem {
    return Elem(Scalar(v[0]), Scalar(v[1]), Scalar(v[2]), Scalar(v[3]));
}
#endif

#if !ELEM_BF16 && !VEC4
alias Elem = Scalar;
const PACK: u32 = 1u;

fn elem_unpack(word: Elem, k: u32) -> f32 {
    return f32(word);
}

fn elem_pack(v: array<f32, PACK>) -> Elem {
    return Elem(v[0]);
}
#endif
