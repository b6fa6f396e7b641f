// Bindings every loss pass shares. Binding 0 (the pass's own `params`), 2 (target or
// labels), 5 (weight) and 8+ are declared by the importing shader.
//   UPSTREAM_SCALAR / UPSTREAM_ELEMENTWISE: the upstream gradient (one value, or one per
//   element / row); REDUCTION_NONE: the per-element (per-row) losses.

#import lib/elem
#import lib/reduce

@group(0) @binding(1) var<storage, read> input: array<Elem>;
@group(0) @binding(3) var<storage, read_write> grad: array<Elem>;
@group(0) @binding(4) var<storage, read_write> partials: array<Partial>;
#if UPSTREAM_SCALAR || UPSTREAM_ELEMENTWISE
@group(0) @binding(6) var<storage, read> upstream: array<f32>;
#endif
#if REDUCTION_NONE
@group(0) @binding(7) var<storage, read_write> losses: array<f32>;
#endif
