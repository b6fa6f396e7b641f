// Bindings every loss pass shares. Binding 0 (the pass's own `params`), 2 (target or
// labels), 5 (weight) and 8+ are declared by the importing shader.
//   IN_PLACE: no gradient binding; the gradient overwrites the input (each element is
//   read before it is overwritten; kernels order reads of other elements with barriers).
//   HALF_WORD_STORES (bf16 only): gradients are stored element by element, and the two
//   halves of a word may belong to different invocations (rows of odd length, strided
//   classes), so the word is an atomic and each invocation clears and sets its own half.
//   UPSTREAM_SCALAR / UPSTREAM_ELEMENTWISE: the upstream gradient (one value, or one per
//   element / row); REDUCTION_NONE: the per-element (per-row) losses.

#import lib/elem
#import lib/reduce

#if HALF_WORD_STORES
#if IN_PLACE
@group(0) @binding(1) var<storage, read_write> input: array<atomic<u32>>;
#else
@group(0) @binding(1) var<storage, read> input: array<Elem>;
@group(0) @binding(3) var<storage, read_write> grad: array<atomic<u32>>;
#endif
#else
#if IN_PLACE
@group(0) @binding(1) var<storage, read_write> input: array<Elem>;
#else
@group(0) @binding(1) var<storage, read> input: array<Elem>;
@group(0) @binding(3) var<storage, read_write> grad: array<Elem>;
#endif
#endif
@group(0) @binding(4) var<storage, read_write> partials: array<Partial>;
#if UPSTREAM_SCALAR || UPSTREAM_ELEMENTWISE
@group(0) @binding(6) var<storage, read> upstream: array<f32>;
#endif
#if REDUCTION_NONE || STORE_LOSSES
@group(0) @binding(7) var<storage, read_write> losses: array<f32>;
#endif

// Element i of the input.
fn input_at(i: u32) -> f32 {
#if HALF_WORD_STORES && IN_PLACE
    return elem_unpack(atomicLoad(&input[i / PACK]), i % PACK);
#else
    return elem_unpack(input[i / PACK], i % PACK);
#endif
}

#if HALF_WORD_STORES
// Stores gradient element i into its half of word i / 2.
fn grad_store(i: u32, v: f32) {
    let shift = 16u * (i % 2u);
    let keep = ~(0xffffu << shift);
    let bits = bf16_bits(v) << shift;
#if IN_PLACE
    atomicAnd(&input[i / 2u], keep);
    atomicOr(&input[i / 2u], bits);
#else
    atomicAnd(&grad[i / 2u], keep);
    atomicOr(&grad[i / 2u], bits);
#endif
}
#else
// Stores word w of the gradient.
fn grad_store_word(w: u32, word: Elem) {
#if IN_PLACE
    input[w] = word;
#else
    grad[w] = word;
#endif
}

#if !ELEM_BF16 && !VEC4
// Stores gradient element i (one element per word).
fn grad_store(i: u32, v: f32) {
    grad_store_word(i, elem_pack(array<f32, PACK>(v)));
}
#endif
#endif
