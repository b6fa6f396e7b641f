// Driver shared by every elementwise loss: one pass over words of PACK elements
// (lib/elem) that reads each input once, writes each gradient word once, and leaves one
// `Partial` per block of LANES · WORDS_PER_LANE words, summed in an order that depends on
// the length alone (lib/reduce), whatever the launch.
//
// The loss file that imports this defines
//     fn pointwise(x: f32, y: f32, index: u32) -> LossGrad
// giving the loss of one element and its derivative with respect to x. `index` is the
// element's position in the whole tensor (not the chunk), for broadcast operands. A loss
// with parameters declares them as `struct LossParams { name: f32, ... }`, one field per
// parameter of its definition, by name and in order (a test checks them against the
// definition), and reads them from `loss_params` (the host sets LOSS_PARAMS).
//
// Variants (host defines): HAS_WEIGHT (per-element weight, chunked like the input),
// HAS_WEIGHT_BROADCAST (weight over the last dimension), UPSTREAM_SCALAR (mean/sum:
// gradient times upstream[0]), UPSTREAM_ELEMENTWISE (none: times upstream[i]),
// REDUCTION_NONE (write per-element losses), STORE_LOSSES (write them for another
// reduction too: the per-class breakdown sums them, shaders/column_sums), ELEM_F16 / ELEM_BF16 (element type of
// input, target and gradient), IN_PLACE (gradient over the input), TARGET_GRAD (also write
// d(loss)/d(target) into `target_grad`, in the element type: `-grad` with
// TARGET_GRAD_NEGATED, a loss of x - y, else the loss file's
//     fn pointwise_target(x: f32, y: f32, index: u32) -> f32).

#import lib/elem
#import lib/numerics
#import lib/reduce

// Words each lane of a block sums (a block is LANES · WORDS_PER_LANE words).
const WORDS_PER_LANE: u32 = 16u;

struct LossGrad {
    value: f32,
    grad: f32,
    // The input lies outside the loss's domain (counted, reported as an error).
    invalid: bool,
}

struct Params {
    // Elements in this chunk (bf16: the chunk's words hold len rounded up to even).
    len: u32,
    // Index of the chunk's first element in the whole tensor.
    chunk_start: u32,
    // Where this chunk's workgroups write their partials.
    partial_base: u32,
    // Size of the last dimension, the period of broadcast operands.
    last_dim: u32,
    // 1/N for mean, 1 for sum and none.
    grad_scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if LOSS_PARAMS
@group(0) @binding(LOSS_PARAMS_BINDING) var<uniform> loss_params: LossParams;
#endif
#if TARGET_GRAD
@group(0) @binding(TARGET_GRAD_BINDING) var<storage, read_write> target_grad: array<Elem>;
#endif
#import lib/bindings
@group(0) @binding(2) var<storage, read> labels: array<Elem>;
#if HAS_WEIGHT || HAS_WEIGHT_BROADCAST
@group(0) @binding(5) var<storage, read> weight: array<f32>;
#endif
// Binding 8 is reserved for a loss file's own broadcast operand (pos_weight).

// The elements of word w: their losses into `acc`, their gradients stored.
fn word_pass(w: u32, grad_scale: f32, totals: Partial) -> Partial {
    var acc = totals;
    let x_word = input[w];
    let y_word = labels[w];
    // A bf16 chunk of odd length stores 0 in the unused half of its last word.
    var g = array<f32, PACK>();
#if TARGET_GRAD
    var g_target = array<f32, PACK>();
#endif
    for (var k = 0u; k < PACK; k++) {
        let i = w * PACK + k;
        if (i >= params.len) {
            break;
        }
        let x = elem_unpack(x_word, k);
        let y = elem_unpack(y_word, k);
        let r = pointwise(x, y, params.chunk_start + i);
        var weight_i = 1.0;
#if HAS_WEIGHT
        weight_i = weight[i];
#endif
#if HAS_WEIGHT_BROADCAST
        weight_i = weight[(params.chunk_start + i) % params.last_dim];
#endif
        g[k] = r.grad * weight_i * grad_scale;
#if UPSTREAM_ELEMENTWISE
        g[k] *= upstream[i];
#endif
#if TARGET_GRAD && TARGET_GRAD_NEGATED
        g_target[k] = -g[k];
#endif
#if TARGET_GRAD && !TARGET_GRAD_NEGATED
        g_target[k] = pointwise_target(x, y, params.chunk_start + i) * weight_i * grad_scale;
#if UPSTREAM_ELEMENTWISE
        g_target[k] *= upstream[i];
#endif
#endif
        let value = r.value * weight_i;
#if REDUCTION_NONE || STORE_LOSSES
        losses[i] = value;
#endif
        acc.sum += value;
        // Every operand the loss reads counts: a NaN weight is as much bad data.
        var finite = is_finite(x) && is_finite(y) && is_finite(weight_i);
#if HAS_POS_WEIGHT
        finite = finite && is_finite(pos_weight[(params.chunk_start + i) % params.last_dim]);
#endif
        acc.nonfinite += select(1u, 0u, finite);
        acc.invalid += select(0u, 1u, r.invalid);
    }
    grad_store_word(w, elem_pack(g));
#if TARGET_GRAD
    target_grad[w] = elem_pack(g_target);
#endif
    return acc;
}

// Blocks of LANES · WORDS_PER_LANE words (lib/reduce): lane l of a block sums its words
// l, l + LANES, ... in order, the lanes are folded by the fixed tree, and the block's
// partial goes to slot partial_base + block. Workgroups take blocks wid, wid + groups, ...
@compute @workgroup_size(WG_SIZE)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
#if SUBGROUPS
    subgroup_ids: SubgroupIds,
#endif
) {
#if SUBGROUPS
    subgroup_setup(subgroup_ids);
#endif
    var grad_scale = params.grad_scale;
#if UPSTREAM_SCALAR
    grad_scale = grad_scale * upstream[0];
#endif
    let words = (params.len + PACK - 1u) / PACK;
    let block_words = LANES * WORDS_PER_LANE;
    let blocks = (words + block_words - 1u) / block_words;
    let first_lane = position(lid.x) * LANES_PER_INVOCATION;
    for (var b = wid.x; b < blocks; b += groups.x) {
        var lanes: array<Partial, LANES_PER_INVOCATION>;
        for (var j = 0u; j < LANES_PER_INVOCATION; j++) {
            lanes[j] = partial_zero();
        }
        for (var k = 0u; k < WORDS_PER_LANE; k++) {
            let first = b * block_words + k * LANES + first_lane;
            if (first >= words) {
                break;
            }
            for (var j = 0u; j < LANES_PER_INVOCATION; j++) {
                if (first + j < words) {
                    lanes[j] = word_pass(first + j, grad_scale, lanes[j]);
                }
            }
        }
        lanes_fold(&lanes);
        let total = workgroup_reduce(lid.x, lanes[0]);
        if (lid.x == 0u) {
            partials[params.partial_base + b] = total;
        }
    }
}
