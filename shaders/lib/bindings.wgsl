// Bindings every loss pass shares. Binding 0 (the pass's own `params`), 2 (target or
// labels), 5 (weight) and 8+ are declared by the importing shader.
//   IN_PLACE: no gradient binding; the gradient overwrites the input (each word is read
//   before the same invocation overwrites it).
//   UPSTREAM_SCALAR / UPSTREAM_ELEMENTWISE: the upstream gradient (one value, or one per
//   element / row); REDUCTION_NONE: the per-element (per-row) losses.

#import lib/elem
#import lib/reduce

#if IN_PLACE
@group(0) @binding(1) var<storage, read_write> input: array<Elem>;
#else
@group(0) @binding(1) var<storage, read> input: array<Elem>;
@group(0) @binding(3) var<storage, read_write> grad: array<Elem>;
#endif
@group(0) @binding(4) var<storage, read_write> partials: array<Partial>;
#if UPSTREAM_SCALAR || UPSTREAM_ELEMENTWISE
@group(0) @binding(6) var<storage, read> upstream: array<f32>;
#endif
#if REDUCTION_NONE
@group(0) @binding(7) var<storage, read_write> losses: array<f32>;
#endif

// Element i of the input.
fn input_at(i: u32) -> f32 {
    return elem_unpack(input[i / PACK], i % PACK);
}

// Stores word w of the gradient.
fn grad_store_word(w: u32, word: Elem) {
#if IN_PLACE
    input[w] = word;
#else
    grad[w] = word;
#endif
}
