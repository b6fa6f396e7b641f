// Driver shared by the row-wise families (classification/softmax_rows, classification/
// margin): rows of C classes of an input (N, C, S), S = d1·…·dk (S = 1 for (N, C));
// row r = (n, s) holds classes at n·C·S + c·S + s. One pass per chunk of rows: a sweep
// that accumulates the row (RowAcc, lib/softmax), then a second sweep that writes each
// gradient element once, then the row's loss into the workgroup's partial.
//
// The loss's own parameters are its file's `struct LossParams`, one field per parameter of
// its definition by name and in order (a test checks them), read from `loss_params` (the
// host sets LOSS_PARAMS when there are any). The family file that imports this defines
// the row's arithmetic:
//     fn logit(row: Row, c: u32) -> f32                 class c's input as the loss reads it
//     fn row_push(a: RowAcc, row: Row, c: u32) -> RowAcc  first sweep, class c
//     fn label_factor(row: Row, acc: RowAcc, lse: f32) -> f32   per-row factor handed to
//     fn class_grad(row: Row, acc: RowAcc, lse: f32, label_g: f32, c: u32) -> f32
//                                                         d(row loss)/dx_c times row.scale
//     fn row_loss(row: Row, acc: RowAcc, lse: f32) -> f32
//     fn row_nonfinite(row: Row, acc: RowAcc) -> u32     non-finite inputs it counts
//     fn needs_sweep() -> bool                            false: no first sweep
//     fn row_begin(lid: u32, row: Row)                    row_per_workgroup only, before the
//                                                         sweep, in uniform control flow
//                                                         (may use barriers)
//
// Targets (the loss file's defines): one i32 label per row (default; the label pre-pass,
// classification/labels, has written `denoms` and the invalid count), TARGET_VALUES (one
// value per input element, in the element type) or LABEL_LISTS (C i32 per row).
// Options: HAS_WEIGHT, UPSTREAM_SCALAR / UPSTREAM_ELEMENTWISE (per row, for none),
// REDUCTION_NONE (per-row losses), WRITE_LSE (per-row log-sum-exp), ACCURACY (argmax
// hits counted in the partials), ELEM_F16 / ELEM_BF16 + HALF_WORD_STORES (inputs, target
// values and gradient in 16 bits), IN_PLACE (gradient over the input).
//
// Entry points: `row_per_thread` (small C: one invocation walks a row) and
// `row_per_workgroup` (large C: the workgroup's invocations take the row's lanes, reduce,
// then a second sweep from cache writes the gradient once). Both sum in an order that
// depends on the input's shape alone, whatever the workgroup size or count (lib/reduce).

#import lib/elem
#import lib/numerics
#import lib/reduce
#import lib/softmax
#import lib/denoms
#import lib/class_weight

struct Params {
    // Rows (n, s) in this chunk.
    rows: u32,
    // Where this chunk's workgroups write their partials.
    partial_base: u32,
    classes: u32,
    // Class stride S.
    inner: u32,
    ignore_index: i32,
    // Gradient scale known on the host: 1/rows for a mean over rows, 1 otherwise.
    host_scale: f32,
    // 1 when the scale is 1 / (weighted count of non-ignored rows), from the pre-pass.
    mean_from_denoms: u32,
    // 1 when rows whose label is ignore_index are skipped (0: every label counts).
    has_ignore: u32,
    // Rows per block (a function of the shape alone: it fixes the order of the sum).
    block_rows: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if LOSS_PARAMS
@group(0) @binding(LOSS_PARAMS_BINDING) var<uniform> loss_params: LossParams;
#endif
#import lib/bindings
#if TARGET_VALUES
@group(0) @binding(2) var<storage, read> target_values: array<Elem>;
#else
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(8) var<storage, read> denoms: Denoms;
#endif
#if WRITE_LSE
@group(0) @binding(9) var<storage, read_write> lse_out: array<f32>;
#endif

var<workgroup> wg_abort: u32;

// What a row needs besides its inputs.
struct Row {
    base: u32,
    label: u32,
    ignored: bool,
    label_weight: f32,
    // The label's logit, read before any gradient is written (in place, the gradient
    // sweep overwrites it).
    label_logit: f32,
    // d(reduced loss)/d(row loss): the mean's 1/denominator times upstream.
    scale: f32,
    // LABEL_LISTS: where the row's C labels start, and how many come before the first -1.
    labels_base: u32,
    listed: u32,
}

#if LABEL_LISTS
// The listed classes of the invocation's current row, one bit each (row_setup), for rows
// of up to 32·LISTED_WORDS classes.
const LISTED_WORDS: u32 = 32u;
var<private> listed_words: array<u32, LISTED_WORDS>;
#endif

fn row_setup(r: u32) -> Row {
    let n = r / params.inner;
    let s = r - n * params.inner;
    var row = Row(n * params.classes * params.inner + s, 0u, false, 1.0, 0.0, params.host_scale, r * params.classes, 0u);
#if LABEL_LISTS
    for (var w = 0u; w < LISTED_WORDS; w++) {
        listed_words[w] = 0u;
    }
    while (row.listed < params.classes && labels[row.labels_base + row.listed] >= 0) {
        let c = u32(labels[row.labels_base + row.listed]);
        if (c < 32u * LISTED_WORDS) {
            listed_words[c / 32u] |= 1u << (c % 32u);
        }
        row.listed++;
    }
#endif
#if !TARGET_VALUES && !LABEL_LISTS
    let label = labels[r];
    row.ignored = (params.has_ignore != 0u && label == params.ignore_index) || label < 0
        || u32(label) >= params.classes;
    row.label = select(u32(label), 0u, row.ignored);
    row.label_weight = weight_of(row.label);
    row.label_logit = logit(row, row.label);
    if (params.mean_from_denoms != 0u) {
        row.scale = 1.0 / denoms.weight_sum;
    }
#endif
#if UPSTREAM_SCALAR
    row.scale *= upstream[0];
#endif
#if UPSTREAM_ELEMENTWISE
    row.scale *= upstream[r];
#endif
    return row;
}

// Target value of class c of the row (TARGET_VALUES).
fn target_value(row: Row, c: u32) -> f32 {
#if TARGET_VALUES
    let i = row.base + c * params.inner;
    return elem_unpack(target_values[i / PACK], i % PACK);
#else
    return 0.0;
#endif
}

// Writes the row's gradient: classes first, first + stride, ... of it. With bf16 and
// contiguous classes (S = 1) the invocation walks 32-bit words instead, so a word that
// lies inside the row is written whole with one store; only the row's first and last
// words, which it may share with the neighbouring rows, take the atomic half-word path.
fn write_row_gradient(row: Row, acc: RowAcc, lse: f32, first: u32, stride: u32) {
    let label_g = label_factor(row, acc, lse);
#if HALF_WORD_STORES
    if (params.inner == 1u) {
        let end = row.base + params.classes;
        for (var w = row.base / 2u + first; w * 2u < end; w += stride) {
            let low = w * 2u;
            if (low >= row.base && low + 1u < end) {
                let pair = bf16_pair(class_grad(row, acc, lse, label_g, low - row.base), class_grad(row, acc, lse, label_g, low + 1u - row.base));
#if IN_PLACE
                atomicStore(&input[w], pair);
#else
                atomicStore(&grad[w], pair);
#endif
            } else {
                for (var e = max(low, row.base); e < min(low + 2u, end); e++) {
                    grad_store(e, class_grad(row, acc, lse, label_g, e - row.base));
                }
            }
        }
        return;
    }
#endif
    for (var c = first; c < params.classes; c += stride) {
        grad_store(row.base + c * params.inner, class_grad(row, acc, lse, label_g, c));
    }
}

// Loss-pass bookkeeping of one finished row, by one invocation.
fn row_finish(r: u32, row: Row, acc: RowAcc, lse: f32, totals: Partial) -> Partial {
    var t = totals;
    let loss = row_loss(row, acc, lse);
    t.sum += loss;
    t.nonfinite += row_nonfinite(row, acc);
#if ACCURACY
    t.count += select(0u, 1u, !row.ignored && acc.best_class == row.label);
#endif
#if REDUCTION_NONE
    losses[r] = loss;
#endif
#if WRITE_LSE
    lse_out[r] = lse;
#endif
    return t;
}

// Non-finite class weights, counted once per call (with the first chunk's first block):
// they reach the loss of every row of their class and count as the inputs do.
fn nonfinite_class_weights(lid: u32, block: u32) -> u32 {
    var count = 0u;
#if HAS_WEIGHT
    if (block == 0u && params.partial_base == 0u) {
        for (var c = lid; c < params.classes; c += WG_SIZE) {
            count += select(0u, 1u, !is_finite(weight_of(c)));
        }
    }
#endif
    return count;
}

// Whether the label pre-pass found labels out of range: then the kernel writes zeros
// instead of the gradient and the per-row outputs (`write_zeros`), so that an update a
// caller recorded next, without reading the stats, changes nothing.
fn aborted(lid: u32) -> bool {
    if (lid == 0u) {
#if TARGET_VALUES
        wg_abort = 0u;
#else
        wg_abort = denoms.invalid;
#endif
    }
    return workgroupUniformLoad(&wg_abort) != 0u;
}

// Zeros of an aborted call: invocation `thread` of `threads` writes its share of the
// chunk's gradient and per-row outputs.
fn write_zeros(thread: u32, threads: u32) {
    for (var i = thread; i < params.rows * params.classes; i += threads) {
        grad_store(i, 0.0);
    }
    for (var r = thread; r < params.rows; r += threads) {
#if REDUCTION_NONE
        losses[r] = 0.0;
#endif
#if WRITE_LSE
        lse_out[r] = 0.0;
#endif
    }
}

// One invocation per row. Blocks of params.block_rows = LANES · k rows (lib/reduce; the
// host's k, from 1 to 4, follows from the row's cost): lane l of a
// block takes its rows l, l + LANES, ... in order, the lanes are folded by the fixed
// tree, and the block's partial goes to slot partial_base + block. Workgroups take blocks
// wid, wid + groups, ...; every block's partial is written, aborted or not.
@compute @workgroup_size(WG_SIZE)
fn row_per_thread(
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
    let stop = aborted(lid.x);
    if (stop) {
        write_zeros(wid.x * WG_SIZE + lid.x, groups.x * WG_SIZE);
    }
    let block_rows = params.block_rows;
    let rows_per_lane = block_rows / LANES;
    let blocks = (params.rows + block_rows - 1u) / block_rows;
    let first_lane = position(lid.x) * LANES_PER_INVOCATION;
    for (var b = wid.x; b < blocks; b += groups.x) {
        var lanes: array<Partial, LANES_PER_INVOCATION>;
        for (var j = 0u; j < LANES_PER_INVOCATION; j++) {
            lanes[j] = partial_zero();
        }
        for (var k = 0u; k < rows_per_lane && !stop; k++) {
            let first = b * block_rows + k * LANES + first_lane;
            if (first >= params.rows) {
                break;
            }
            for (var j = 0u; j < LANES_PER_INVOCATION; j++) {
                let r = first + j;
                if (r < params.rows) {
                    let row = row_setup(r);
                    var acc = row_acc_empty();
                    if (needs_sweep()) {
                        for (var c = 0u; c < params.classes; c++) {
                            acc = row_push(acc, row, c);
                        }
                    }
                    let lse = row_acc_lse(acc);
                    write_row_gradient(row, acc, lse, 0u, 1u);
                    lanes[j] = row_finish(r, row, acc, lse, lanes[j]);
                }
            }
        }
        lanes_fold(&lanes);
        lanes[0].nonfinite += nonfinite_class_weights(lid.x, b);
        let total = workgroup_reduce(lid.x, lanes[0]);
        if (lid.x == 0u) {
            partials[params.partial_base + b] = total;
        }
    }
}

// One workgroup per row. Class c of a row is in lane c mod LANES (lib/reduce: the lane
// takes its classes in order, the fixed tree folds the lanes with row_acc_merge), and the
// rows of a block of params.block_rows rows are summed in order by invocation 0; the
// block's partial goes to slot partial_base + block. Workgroups take blocks wid,
// wid + groups, ...; every block's partial is written, aborted or not.
@compute @workgroup_size(WG_SIZE)
fn row_per_workgroup(
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
    let stop = aborted(lid.x);
    if (stop) {
        write_zeros(wid.x * WG_SIZE + lid.x, groups.x * WG_SIZE);
    }
    let blocks = (params.rows + params.block_rows - 1u) / params.block_rows;
    let first_lane = position(lid.x) * LANES_PER_INVOCATION;
    for (var b = wid.x; b < blocks; b += groups.x) {
        var totals = partial_zero();
        let end = min(params.rows, (b + 1u) * params.block_rows);
        for (var r = b * params.block_rows; r < end && !stop; r++) {
            let row = row_setup(r);
            row_begin(lid.x, row);
            var acc = row_acc_empty();
            if (needs_sweep()) {
                var lanes: array<RowAcc, LANES_PER_INVOCATION>;
                for (var j = 0u; j < LANES_PER_INVOCATION; j++) {
                    lanes[j] = row_acc_empty();
                }
                for (var first = first_lane; first < params.classes; first += LANES) {
                    for (var j = 0u; j < LANES_PER_INVOCATION; j++) {
                        if (first + j < params.classes) {
                            lanes[j] = row_push(lanes[j], row, first + j);
                        }
                    }
                }
                row_lanes_fold(&lanes);
                acc = row_reduce(lid.x, lanes[0]);
            }
#if IN_PLACE
            // Every invocation has read its inputs (and the label's) before any is
            // overwritten; a loss without a sweep has no barrier of its own.
            workgroupBarrier();
#endif
            let lse = row_acc_lse(acc);
            write_row_gradient(row, acc, lse, lid.x, WG_SIZE);
            if (lid.x == 0u) {
                totals = row_finish(r, row, acc, lse, totals);
            }
        }
        totals.nonfinite += nonfinite_class_weights(lid.x, b);
        let total = workgroup_reduce(lid.x, totals);
        if (lid.x == 0u) {
            partials[params.partial_base + b] = total;
        }
    }
}
