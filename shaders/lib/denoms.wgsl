// What the label pre-pass tells the loss pass and `finalize`.
struct Denoms {
    // Sum over non-ignored rows of the label's class weight (their count without
    // weights): the denominator of PyTorch's weighted mean.
    weight_sum: f32,
    // Non-ignored rows.
    count: u32,
    // Labels that are neither ignore_index nor in [0, C).
    invalid: u32,
    // Sum of all class weights (C without weights), for label smoothing.
    class_weight_sum: f32,
}
