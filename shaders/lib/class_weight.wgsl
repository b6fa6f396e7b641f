// The optional per-class weight of the softmax family (HAS_WEIGHT), at binding 5 in
// every pass that reads it; 1 for every class without it.

#if HAS_WEIGHT
@group(0) @binding(5) var<storage, read> class_weight: array<f32>;
#endif

fn weight_of(c: u32) -> f32 {
#if HAS_WEIGHT
    return class_weight[c];
#else
    return 1.0;
#endif
}
