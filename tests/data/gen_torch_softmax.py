"""Generate PyTorch float64 reference values/gradients for the softmax-family losses
(cross-entropy with hard labels, cross-entropy with soft targets, NLL, KL-divergence,
Liger-Kernel's generalised JSD written out in torch),
and, from their papers' formulas with autograd (PyTorch has none of them), the label
functions of the same kernel: focal (Lin et al. 2017, multi-class), generalized
cross-entropy (Zhang & Sabuncu 2018), symmetric cross-entropy (Wang et al. 2019) and
poly-1 (Leng et al. 2022, optax's poly_loss_cross_entropy with one-hot labels).

Rerun with:

    pip install torch numpy
    python tests/data/gen_torch_softmax.py

The output, tests/data/torch_softmax.json, is committed to the repository;
rerun this script only when the set of cases changes.

Layout: input has shape (N, C) or (N, C, d1, ..., dk) as in PyTorch (class dim 1).
Integer labels have shape (N, d1, ..., dk); soft targets (and kl_div targets) have
the input's shape.  Flat indices are row-major (C-order).

Every input/target/weight number is exactly representable in float32 (stored as
float32 values widened to float64; the script asserts they round-trip).  Values and
gradients are computed by PyTorch in float64, autograd w.r.t. the input only.  For
reduction "none", "value" is the list of per-row losses (shape (N, d1..dk); for
kl_div, which is elementwise, the input's shape) and the gradient is that of their
sum; otherwise it is d(reduced loss)/d(input).

JSON has no infinities: an input element stored as null means -inf (only the
explicit cross_entropy "-inf" cases have any).  Cases whose torch value or gradient
is not finite are dropped (printed when the script runs).

Small cases store input/labels/target/weight explicitly ("generated": null) and the
full gradient in "grad".  Large cases store "generated": {"seed": s} instead, with
null arrays, and Rust reproduces the inputs bit-exactly with the generator below;
they store "grad_samples", a list of [flat_index, value] pairs (sorted, unique): for
each row (flat index r into the label tensor (N, d1..dk)) the gradient at the label's
position n*C*D + label*D + s (r = n*D + s, D = d1*...*dk) when the label is not
ignored (for cross_entropy_soft, which has no labels: the position of the row's
first largest logit), plus 64 random flat indices (numpy default_rng(seed)).  When a
case has more than MAX_SAMPLE_ROWS rows, only a seeded subset of rows (always
including the first and last) is sampled.  All cases store "grad_sum_abs", the sum of
|grad| over all input elements.

Generator (all arithmetic on unsigned 32-bit integers; mask with & 0xFFFFFFFF after
every multiply/add):

    def mix(seed, i):
        x = (i * 0x9E3779B1 + seed * 0x85EBCA77 + 0x165667B1) & 0xFFFFFFFF
        x ^= x >> 15; x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
        x ^= x >> 12; x = (x * 0x297A2D39) & 0xFFFFFFFF
        x ^= x >> 15
        return x
    logit(seed, i)  = ((mix(seed, i) >> 12) - 2**19) / 2**16        # in [-8, 8), exact in float32; i = flat index into the input tensor
    label(seed, r, C, ignore_index) = ignore_index if mix(seed + 1, r) % 10 == 0 else mix(seed + 2, r) % C    # r = flat index into the target tensor (N, d1..dk)
    soft_target(seed, i) = (mix(seed + 3, i) >> 24) / 256             # in [0, 1), exact; NOT normalised (PyTorch allows that)
    class_weight(seed, c) = 0.25 + (mix(seed + 4, c) >> 24) / 128     # in [0.25, 2.25), exact

A generated case's input is logit(seed, i) for every flat input index i (for nll
these are used directly as the "log-probabilities"); its labels are
label(seed, r, C, ignore_index); its soft targets soft_target(seed, i); and, only
when "has_weight" is true, its class weights class_weight(seed, c), c = 0..C-1.
"""

import json
import math
import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_softmax.json")
RNG = np.random.default_rng(20240612)
M32 = 0xFFFFFFFF
# kl_div "mean" is requested on purpose (mean over all elements)
warnings.filterwarnings("ignore", message="reduction: 'mean' divides")
MAX_SAMPLE_ROWS = 2048
N_RANDOM_SAMPLES = 64

GENERATOR_TEXT = __doc__[__doc__.index("Generator (all"):__doc__.index("A generated case's")].strip()


# ---------------------------------------------------------------- generator
def mix_scalar(seed, i):
    x = (i * 0x9E3779B1 + seed * 0x85EBCA77 + 0x165667B1) & M32
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & M32
    x ^= x >> 12
    x = (x * 0x297A2D39) & M32
    x ^= x >> 15
    return x


def mix(seed, i):
    """Vectorised mix over an array of indices i (uint64 arithmetic, masked to 32 bits)."""
    m = np.uint64(M32)
    i = np.asarray(i, dtype=np.uint64)
    x = ((i * np.uint64(0x9E3779B1)) & m) + np.uint64((seed * 0x85EBCA77) & M32) + np.uint64(0x165667B1)
    x &= m
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x2C1B3C6D)) & m
    x ^= x >> np.uint64(12)
    x = (x * np.uint64(0x297A2D39)) & m
    x ^= x >> np.uint64(15)
    return x


def gen_logits(seed, n):
    return ((mix(seed, np.arange(n)) >> np.uint64(12)).astype(np.int64) - 2 ** 19) / 2.0 ** 16


def gen_labels(seed, n, c, ignore_index):
    r = np.arange(n)
    ign = (mix(seed + 1, r) % np.uint64(10)) == 0
    lab = (mix(seed + 2, r) % np.uint64(c)).astype(np.int64)
    return np.where(ign, np.int64(ignore_index), lab)


def gen_soft_target(seed, n):
    return (mix(seed + 3, np.arange(n)) >> np.uint64(24)).astype(np.float64) / 256.0


def gen_class_weight(seed, c):
    return 0.25 + (mix(seed + 4, np.arange(c)) >> np.uint64(24)).astype(np.float64) / 128.0


# the vectorised generator agrees with the scalar definition
for _s in (0, 1, 7, 12345, 0xFFFFFFF0):
    for _i in (0, 1, 2, 999, 65535, 393215, 2 ** 32 - 1):
        assert int(mix(_s, [_i])[0]) == mix_scalar(_s, _i), (_s, _i)
_probe = gen_logits(3, 100000)
assert _probe.min() >= -8 and _probe.max() < 8
assert np.all(_probe.astype(np.float32).astype(np.float64) == _probe)


# ---------------------------------------------------------------- helpers
def f32(x):
    """float32 array of x, as float64 numpy array (exact)."""
    return np.asarray(np.asarray(x, dtype=np.float64).astype(np.float32), dtype=np.float64)


def t64(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64)


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


def flat_input(a):
    """Flattened input; -inf (the only non-finite input allowed) becomes null."""
    out = []
    for v in np.asarray(a, dtype=np.float64).reshape(-1):
        v = float(v)
        if v == -math.inf:
            out.append(None)
        else:
            assert math.isfinite(v), v
            out.append(v)
    return out


def apply_loss(loss, params, x, tgt, w, reduction):
    if loss == "cross_entropy" and (params.get("z_loss") or params.get("softcap")):
        return llm_cross_entropy(params, x, tgt, w, reduction)
    if loss == "cross_entropy":
        return F.cross_entropy(x, tgt, weight=w, ignore_index=params["ignore_index"],
                               label_smoothing=params["label_smoothing"], reduction=reduction)
    if loss == "cross_entropy_soft":
        return F.cross_entropy(x, tgt, weight=w, label_smoothing=params["label_smoothing"],
                               reduction=reduction)
    if loss == "nll":
        return F.nll_loss(x, tgt, weight=w, ignore_index=params["ignore_index"], reduction=reduction)
    if loss == "kl_div":
        assert w is None
        return F.kl_div(x, tgt, reduction=reduction, log_target=params["log_target"])
    if loss in LABEL_FNS:
        return label_fn_loss(loss, params, x, tgt, w, reduction)
    if loss == "jsd":
        assert w is None
        return jsd_loss(params["beta"], x, tgt, reduction)
    if loss == "multi_margin":
        return F.multi_margin_loss(x, tgt, p=params["p"], margin=params["margin"], weight=w, reduction=reduction)
    if loss == "multilabel_soft_margin":
        return F.multilabel_soft_margin_loss(x, tgt, weight=w, reduction=reduction)
    if loss == "multilabel_margin":
        assert w is None
        return F.multilabel_margin_loss(x, tgt, reduction=reduction)
    raise ValueError(loss)


def jsd_loss(beta, x, y, reduction):
    """Liger-Kernel's generalised JSD, in its own form: x = log q (student), y = log p
    (teacher); beta 0 is forward KL p (y - x), 1 reverse KL q (x - y), otherwise
    beta p y + (1 - beta) q x - m log m with m = beta p + (1 - beta) q, elementwise;
    Liger reduces with batchmean."""
    p, q = y.exp(), x.exp()
    if beta == 0.0:
        per = p * (y - x)
    elif beta == 1.0:
        per = q * (x - y)
    else:
        m = beta * p + (1.0 - beta) * q
        per = beta * p * y + (1.0 - beta) * q * x - torch.xlogy(m, m)
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if reduction == "batchmean":
        return per.sum() / x.shape[0]
    return per.mean()


def llm_cross_entropy(params, x, tgt, w, reduction):
    """Cross-entropy with Liger-Kernel's options: logits soft-capped as cap*tanh(x/cap)
    (autograd through it), plus z_loss * lse^2 of the capped logits for every kept row,
    unweighted, reduced with cross-entropy's denominator (summed w_y of kept rows)."""
    cap, z, ign = params.get("softcap", 0.0), params.get("z_loss", 0.0), params["ignore_index"]
    xc = cap * torch.tanh(x / cap) if cap else x
    per = F.cross_entropy(xc, tgt, weight=w, ignore_index=ign, label_smoothing=params["label_smoothing"],
                          reduction="none")
    keep = tgt != ign
    per = per + torch.where(keep, z * torch.logsumexp(xc, dim=1) ** 2, torch.zeros_like(per))
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    safe = torch.where(keep, tgt, torch.zeros_like(tgt))
    wy = torch.ones_like(per) if w is None else w[safe]
    return per.sum() / torch.where(keep, wy, torch.zeros_like(wy)).sum()


LABEL_FNS = ("focal", "generalized_cross_entropy", "symmetric_cross_entropy", "poly1_cross_entropy",
             "hard_bootstrap", "soft_bootstrap")


def label_fn_loss(loss, params, x, tgt, w, reduction):
    """A function of the label's probability p, per row, times the class weight w_y;
    ignored rows count for nothing; mean divides by the summed w_y of kept rows, as
    weighted cross-entropy does."""
    keep = tgt != params["ignore_index"]
    safe = torch.where(keep, tgt, torch.zeros_like(tgt))
    log_p = F.log_softmax(x, dim=1).gather(1, safe.unsqueeze(1)).squeeze(1)
    p = log_p.exp()
    if loss == "focal":
        per = (1.0 - p) ** params["gamma"] * -log_p
    elif loss == "generalized_cross_entropy":
        per = (1.0 - p ** params["q"]) / params["q"]
    elif loss == "symmetric_cross_entropy":
        # RCE = -sum_c p_c log(one_hot_c), log 0 := A: -A (1 - p_y).
        per = params["alpha"] * -log_p + params["beta"] * -params["log_zero"] * (1.0 - p)
    elif loss == "soft_bootstrap":
        # Reed et al. 2015: target beta onehot + (1 - beta) p, p NOT detached:
        # beta CE + (1 - beta) entropy.
        log_probs = F.log_softmax(x, dim=1)
        entropy = -(log_probs.exp() * log_probs).sum(dim=1)
        per = params["beta"] * -log_p + (1.0 - params["beta"]) * entropy
    elif loss == "hard_bootstrap":
        # Reed et al. 2015: target beta on the label, 1 - beta on the (detached) argmax.
        k = x.detach().argmax(dim=1)
        log_p_k = F.log_softmax(x, dim=1).gather(1, k.unsqueeze(1)).squeeze(1)
        per = params["beta"] * -log_p + (1.0 - params["beta"]) * -log_p_k
    else:
        per = -log_p + params["epsilon"] * (1.0 - p)
    wy = torch.ones_like(per) if w is None else w[safe]
    per = torch.where(keep, per * wy, torch.zeros_like(per))
    if reduction == "none":
        return per
    if reduction == "sum":
        return per.sum()
    if params.get("weight_as_alpha"):
        # Focal as torchvision-style ports, kornia and MONAI average it: alpha applied,
        # then the mean over the kept rows.
        return per.sum() / keep.sum()
    return per.sum() / torch.where(keep, wy, torch.zeros_like(wy)).sum()


def evaluate(loss, params, inp, tgt, w, reduction):
    x = t64(inp).requires_grad_(True)
    if uses_labels(loss):
        t = torch.tensor(np.asarray(tgt, dtype=np.int64), dtype=torch.int64)
    else:
        t = t64(tgt)
    wt = None if w is None else t64(w)
    out = apply_loss(loss, params, x, t, wt, reduction)
    (out.sum() if reduction == "none" else out).backward()
    return out.detach().numpy(), x.grad.detach().numpy()


def uses_labels(loss):
    return loss in ("cross_entropy", "nll", "multi_margin", "multilabel_margin") + LABEL_FNS


def uses_target(loss):
    return loss in ("cross_entropy_soft", "kl_div", "jsd", "multilabel_soft_margin")


def params_for(loss, ignore_index=-100, label_smoothing=0.0, log_target=False, **label_params):
    if loss in LABEL_FNS:
        return {"ignore_index": int(ignore_index), **{k: float(v) for k, v in label_params.items()}}
    if loss == "cross_entropy":
        # z_loss and softcap appear only when set, so older cases keep their JSON.
        extra = {k: float(v) for k, v in label_params.items() if k in ("z_loss", "softcap") and v}
        return {"ignore_index": int(ignore_index), "label_smoothing": float(label_smoothing), **extra}
    if loss == "cross_entropy_soft":
        return {"label_smoothing": float(label_smoothing)}
    if loss == "nll":
        return {"ignore_index": int(ignore_index)}
    if loss == "kl_div":
        return {"log_target": bool(log_target)}
    if loss == "jsd":
        return {"beta": float(label_params["beta"])}
    if loss == "multi_margin":
        return {"p": int(label_params["p"]), "margin": float(label_params["margin"])}
    if loss in ("multilabel_soft_margin", "multilabel_margin"):
        return {}
    raise ValueError(loss)


CASES = []
DROPPED = []
SEEDS = set()


def finite(value, grad):
    return bool(np.all(np.isfinite(value)) and np.all(np.isfinite(grad)))


def add(name, loss, reduction, shape, inp, labels=None, target=None, weight=None, **kw):
    """Explicit case."""
    assert not any(c["name"] == name for c in CASES), name
    params = params_for(loss, **kw)
    shape = [int(d) for d in shape]
    # -inf is allowed in inputs (float32-representable); everything else is finite f32
    inp = np.asarray(inp, dtype=np.float64).reshape(shape)
    fin = np.isfinite(inp)
    assert np.all(fin | (inp == -math.inf))
    inp = np.where(fin, f32(np.where(fin, inp, 0.0)), inp)
    label_shape = shape if loss == "multilabel_margin" else [shape[0]] + shape[2:]
    if uses_labels(loss):
        labels = np.asarray(labels, dtype=np.int64).reshape(label_shape)
        ignore = {"multi_margin": None, "multilabel_margin": -1}.get(loss, params.get("ignore_index"))
        ok = (labels == ignore) | ((labels >= 0) & (labels < shape[1]))
        assert ok.all(), name
        tgt = labels
    else:
        assert labels is None
        target = f32(target).reshape(shape)
        tgt = target
    if weight is not None:
        weight = f32(weight)
        assert weight.shape == (shape[1],), name
    value, grad = evaluate(loss, params, inp, tgt, weight, reduction)
    if not finite(value, grad):
        DROPPED.append(name)
        print(f"dropping {name}: torch value/grad not finite")
        return
    CASES.append({
        "name": name,
        "loss": loss,
        "params": params,
        "reduction": reduction,
        "shape": shape,
        "generated": None,
        "has_weight": weight is not None,
        "input": flat_input(inp),
        "labels": [int(v) for v in labels.reshape(-1)] if uses_labels(loss) else None,
        "target": flat(target) if uses_target(loss) else None,
        "weight": None if weight is None else flat(weight),
        "value": flat(value) if reduction == "none" else float(value),
        "grad": flat(grad),
        "grad_samples": None,
        "grad_sum_abs": float(np.abs(grad).sum()),
    })


def add_generated(name, loss, reduction, shape, seed, has_weight, **kw):
    assert not any(c["name"] == name for c in CASES), name
    # streams seed..seed+4 are used; keep them disjoint between cases
    assert not any(abs(seed - s) <= 4 for s in SEEDS), seed
    SEEDS.add(seed)
    params = params_for(loss, **kw)
    shape = [int(d) for d in shape]
    n_in = int(np.prod(shape))
    C = shape[1]
    D = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    rows = shape[0] * D
    label_shape = [shape[0]] + shape[2:]
    inp = gen_logits(seed, n_in).reshape(shape)
    if uses_labels(loss):
        labels = gen_labels(seed, rows, C, params["ignore_index"])
        tgt = labels.reshape(label_shape)
    else:
        assert loss == "cross_entropy_soft"
        tgt = gen_soft_target(seed, n_in).reshape(shape)
    weight = gen_class_weight(seed, C) if has_weight else None
    for arr in (inp, weight) if weight is not None else (inp,):
        assert np.all(f32(arr) == arr)
    if not uses_labels(loss):
        assert np.all(f32(tgt) == tgt)
    value, grad = evaluate(loss, params, inp, tgt, weight, reduction)
    if not finite(value, grad):
        DROPPED.append(name)
        print(f"dropping {name}: torch value/grad not finite")
        return
    gflat = grad.reshape(-1)
    # per-row sample positions
    rng = np.random.default_rng(seed)
    if rows > MAX_SAMPLE_ROWS:
        pick = rng.choice(np.arange(1, rows - 1), MAX_SAMPLE_ROWS - 2, replace=False)
        sample_rows = np.concatenate([[0, rows - 1], pick])
    else:
        sample_rows = np.arange(rows)
    n_idx, s_idx = sample_rows // D, sample_rows % D
    if uses_labels(loss):
        lab = labels[sample_rows]
        keep = lab != params["ignore_index"]
        pos = n_idx[keep] * C * D + lab[keep] * D + s_idx[keep]
    else:
        am = np.argmax(inp.reshape(shape[0], C, D), axis=1)  # (N, D), first max
        pos = n_idx * C * D + am[n_idx, s_idx] * D + s_idx
    rand_idx = rng.choice(n_in, N_RANDOM_SAMPLES, replace=False)
    idx = np.unique(np.concatenate([pos, rand_idx]).astype(np.int64))
    CASES.append({
        "name": name,
        "loss": loss,
        "params": params,
        "reduction": reduction,
        "shape": shape,
        "generated": {"seed": int(seed)},
        "has_weight": bool(has_weight),
        "input": None,
        "labels": None,
        "target": None,
        "weight": None,
        "value": flat(value) if reduction == "none" else float(value),
        "grad": None,
        "grad_samples": [[int(i), float(gflat[i])] for i in idx],
        "grad_sum_abs": float(np.abs(gflat).sum()),
    })


def rand_logits(shape, scale=2.0):
    return f32(RNG.normal(0.0, scale, shape))


def rand_logprobs(shape):
    """log_softmax (class dim 1) of random float32 logits, rounded to float32."""
    x = torch.tensor(rand_logits(shape), dtype=torch.float64)
    return f32(F.log_softmax(x, dim=1).numpy())


def rand_probs(shape, zero_frac=0.0):
    """Normalised (along dim 1) random probabilities; some exact zeros if asked."""
    p = RNG.uniform(0.0, 1.0, shape)
    if zero_frac:
        p = np.where(RNG.uniform(0.0, 1.0, shape) < zero_frac, 0.0, p)
    return f32(p / p.sum(axis=1, keepdims=True))


def rand_weight(c):
    return f32(RNG.uniform(0.25, 2.0, c))


REDUCTIONS = ("none", "mean", "sum")

# ---------------------------------------------------------------- 1. cross_entropy explicit
# (5, 4): row 0 holds the extreme logits +1e4, -1e4, 0
ce_x = rand_logits([5, 4])
ce_x[0] = [1e4, -1e4, 0.0, 3.5]
ce_w = rand_weight(4)
ce_labels = {-100: [1, -100, 2, 0, -100],   # row 0's label is the -1e4 class
             1: [2, 1, 3, 1, 0]}            # label 1 is ignored (rows 1 and 3)
for ign in (-100, 1):
    for has_w in (False, True):
        for ls in (0.0, 0.1):
            for r in REDUCTIONS:
                add(f"cross_entropy [5, 4] ignore={ign} weight={has_w} smoothing={ls} {r}",
                    "cross_entropy", r, [5, 4], ce_x, labels=ce_labels[ign],
                    weight=ce_w if has_w else None, ignore_index=ign, label_smoothing=ls)

# (2, 3, 3, 2): strided class dim
ce4_x = rand_logits([2, 3, 3, 2])
ce4_w = rand_weight(3)
ce4_labels = np.array([[[0, 2], [1, -100], [2, 2]],
                       [[-100, 1], [0, 0], [1, 2]]])
for has_w in (False, True):
    for ls in (0.0, 0.1):
        for r in REDUCTIONS:
            add(f"cross_entropy [2, 3, 3, 2] weight={has_w} smoothing={ls} {r}",
                "cross_entropy", r, [2, 3, 3, 2], ce4_x, labels=ce4_labels,
                weight=ce4_w if has_w else None, ignore_index=-100, label_smoothing=ls)

# -inf logits at non-label classes (with smoothing the loss is +inf: dropped)
inf_x = rand_logits([4, 4])
inf_x[0] = [-math.inf, 1.25, -math.inf, -2.0]
inf_x[2] = [0.5, -math.inf, 2.0, 1e4]
inf_labels = [1, 3, 3, -100]
inf_w = rand_weight(4)
for has_w in (False, True):
    for ls in (0.0, 0.1):
        for r in REDUCTIONS:
            add(f"cross_entropy -inf [4, 4] weight={has_w} smoothing={ls} {r}",
                "cross_entropy", r, [4, 4], inf_x, labels=inf_labels,
                weight=inf_w if has_w else None, ignore_index=-100, label_smoothing=ls)

# C = 2 and C = 3
for shape, labels in (([6, 2], [0, 1, 1, -100, 0, 1]), ([4, 3], [2, 0, -100, 1])):
    x = rand_logits(shape)
    w = rand_weight(shape[1])
    for has_w, ls in ((False, 0.0), (True, 0.1)):
        for r in REDUCTIONS:
            add(f"cross_entropy {shape} weight={has_w} smoothing={ls} {r}",
                "cross_entropy", r, shape, x, labels=labels,
                weight=w if has_w else None, ignore_index=-100, label_smoothing=ls)

# all labels ignored, reduction sum: value 0, grad 0 (mean would be NaN in torch)
add("cross_entropy all ignored [3, 4] weight=True smoothing=0.1 sum", "cross_entropy", "sum",
    [3, 4], rand_logits([3, 4]), labels=[-100, -100, -100], weight=rand_weight(4),
    ignore_index=-100, label_smoothing=0.1)
assert CASES[-1]["value"] == 0.0 and not any(CASES[-1]["grad"])

# ---------------------------------------------------------------- 2. cross_entropy_soft explicit
for shape in ([5, 4], [2, 3, 4]):
    x = rand_logits(shape)
    if shape == [5, 4]:
        x[0] = [1e4, -1e4, 0.0, 3.5]
    t = rand_probs(shape)
    w = rand_weight(shape[1])
    for has_w in (False, True):
        for ls in (0.0, 0.1):
            for r in REDUCTIONS:
                add(f"cross_entropy_soft {shape} weight={has_w} smoothing={ls} {r}",
                    "cross_entropy_soft", r, shape, x, target=t,
                    weight=w if has_w else None, label_smoothing=ls)

# ---------------------------------------------------------------- 3. nll explicit
nll_x = rand_logprobs([5, 4])
nll_w = rand_weight(4)
nll_labels = {-100: [3, -100, 0, 1, 2], 0: [3, 0, 2, 0, 1]}
for has_w in (False, True):
    for ign in (-100, 0):
        for r in REDUCTIONS:
            add(f"nll [5, 4] weight={has_w} ignore={ign} {r}", "nll", r, [5, 4], nll_x,
                labels=nll_labels[ign], weight=nll_w if has_w else None, ignore_index=ign)
add("nll [2, 3, 5] weight=True mean", "nll", "mean", [2, 3, 5], rand_logprobs([2, 3, 5]),
    labels=[[0, 2, -100, 1, 1], [2, 2, 0, -100, 1]], weight=rand_weight(3), ignore_index=-100)

# ---------------------------------------------------------------- 4. kl_div explicit
kl_x = rand_logprobs([4, 5])
kl_t = {False: rand_probs([4, 5], zero_frac=0.3), True: rand_logprobs([4, 5])}
assert np.any(kl_t[False] == 0.0)
for lt in (False, True):
    for r in ("none", "mean", "sum", "batchmean"):
        add(f"kl_div [4, 5] log_target={lt} {r}", "kl_div", r, [4, 5], kl_x, target=kl_t[lt],
            log_target=lt)
kl3_x = rand_logprobs([2, 3, 4])
kl3_t = {False: rand_probs([2, 3, 4], zero_frac=0.3), True: rand_logprobs([2, 3, 4])}
for lt in (False, True):
    add(f"kl_div [2, 3, 4] log_target={lt} batchmean", "kl_div", "batchmean", [2, 3, 4], kl3_x,
        target=kl3_t[lt], log_target=lt)

# ---------------------------------------------------------------- 5. generated
seed = 1000


def next_seed():
    global seed
    seed += 10
    return seed


for shape in ([33, 1000], [5, 32768], [3, 131072], [70000, 3], [2, 21, 16, 16]):
    reds = ("none", "mean", "sum") if shape == [33, 1000] else ("mean", "sum")
    for has_w, ls in ((False, 0.0), (True, 0.1)):
        for r in reds:
            add_generated(f"cross_entropy generated {shape} weight={has_w} smoothing={ls} {r}",
                          "cross_entropy", r, shape, next_seed(), has_w,
                          ignore_index=-100, label_smoothing=ls)
for shape in ([4, 1000], [2, 32768]):
    add_generated(f"cross_entropy_soft generated {shape} weight=True smoothing=0.1 mean",
                  "cross_entropy_soft", "mean", shape, next_seed(), True, label_smoothing=0.1)
add_generated("nll generated [5, 32768] weight=True mean", "nll", "mean", [5, 32768],
              next_seed(), True, ignore_index=-100)
add_generated("nll generated [70000, 3] sum", "nll", "sum", [70000, 3], next_seed(), False,
              ignore_index=-100)

# ---------------------------------------------------------------- 6. label functions
# Random rows (ignore_index -100 and a real class, with and without class weights), and
# rows with logits far apart (p_y -> 0 and -> 1) where the functions' limits matter.
LABEL_FN_SETTINGS = [
    ("focal", {"gamma": 2.0}), ("focal", {"gamma": 0.0}), ("focal", {"gamma": 0.5}),
    ("generalized_cross_entropy", {"q": 0.7}), ("generalized_cross_entropy", {"q": 0.001}),
    ("symmetric_cross_entropy", {"alpha": 0.1, "beta": 1.0, "log_zero": -4.0}),
    ("poly1_cross_entropy", {"epsilon": 2.0}), ("poly1_cross_entropy", {"epsilon": -1.0}),
]
far_x = np.array([[30.0, 0.0, -30.0, 1.0], [0.0, 1e4, 0.0, 0.0], [-1e4, 0.0, 0.0, 0.0],
                  [2.0, 2.0, 2.0, 2.0], [0.0, -20.0, 20.0, 0.5]])
far_labels = [0, 1, 0, 3, 2]


def add_label_fn_cases(loss, lp, layout_3d=True):
    """A label function's cases at parameters `lp`: random [6, 5] rows with ignore_index
    -100 and a real class, with and without weights, every reduction; the far-logit rows;
    and (unless layout_3d is False) a (N, C, d) layout."""
    tag = " ".join(f"{k}={v}" for k, v in lp.items())
    for ign in (-100, 1):
        x = rand_logits([6, 5])
        labels = RNG.integers(0, 5, 6)
        labels[2] = ign
        for has_w in (False, True):
            w = rand_weight(5) if has_w else None
            for r in ("none", "mean", "sum"):
                add(f"{loss} {tag} [6, 5] ignore={ign} weight={has_w} {r}", loss, r, [6, 5], x,
                    labels=labels, weight=w, ignore_index=ign, **lp)
    for r in ("none", "mean"):
        add(f"{loss} {tag} far logits [5, 4] {r}", loss, r, [5, 4], far_x, labels=far_labels, **lp)
    if layout_3d:
        add(f"{loss} {tag} [2, 3, 4] mean", loss, "mean", [2, 3, 4], rand_logits([2, 3, 4]),
            labels=RNG.integers(0, 3, [2, 4]), **lp)


for loss, lp in LABEL_FN_SETTINGS:
    add_label_fn_cases(loss, lp)

# ---------------------------------------------------------------- 7. LLM options
# z-loss and logit soft-capping (Liger-Kernel semantics), alone and together, with
# weights, smoothing and ignored rows, and with logits far beyond the cap.
for z, cap in ((1e-2, 0.0), (0.0, 3.0), (1e-4, 30.0), (1e-2, 3.0)):
    for has_w, ls in ((False, 0.0), (True, 0.1)):
        x = rand_logits([6, 5], scale=4.0)
        labels = RNG.integers(0, 5, 6)
        labels[4] = -100
        w = rand_weight(5) if has_w else None
        for r in ("none", "mean", "sum"):
            add(f"cross_entropy z_loss={z} softcap={cap} [6, 5] weight={has_w} smoothing={ls} {r}",
                "cross_entropy", r, [6, 5], x, labels=labels, weight=w, ignore_index=-100,
                label_smoothing=ls, z_loss=z, softcap=cap)
    add(f"cross_entropy z_loss={z} softcap={cap} far logits [5, 4] mean", "cross_entropy", "mean", [5, 4],
        far_x, labels=far_labels, z_loss=z, softcap=cap)

# ---------------------------------------------------------------- 8. hard bootstrapping
# As section 6 (beta 1 is cross-entropy, 0 trusts only the model's argmax); the far-logit
# rows include a four-way tie, where the argmax is the first class (torch.argmax).
for lp in ({"beta": 0.8}, {"beta": 0.0}, {"beta": 1.0}):
    add_label_fn_cases("hard_bootstrap", lp, layout_3d=False)

# ---------------------------------------------------------------- 9. soft bootstrapping
for lp in ({"beta": 0.95}, {"beta": 0.0}):
    add_label_fn_cases("soft_bootstrap", lp)

# ---------------------------------------------------------------- 10. JSD (Liger-Kernel)
# Student and teacher log-softmax rows; every reduction at beta 0.5, Liger's special cases
# 0 and 1, a skewed 0.1; rows where one side puts ~all mass on one class and log-
# probabilities down to -1e4 (probabilities that underflow). Then the teacher's gradient:
# torch's autograd d/d(teacher) of JSD_beta(student, teacher), stored as the input
# gradient of JSD_(1 - beta)(teacher, student), which the crate computes for it.
jsd_student, jsd_teacher = rand_logprobs([4, 6]), rand_logprobs([4, 6])
jsd_far_student = f32(np.array([[-1e4, 0.0, -1e4, -60.0], [-30.0, -1e-6, -20.0, -40.0],
                                [-1.3862944, -1.3862944, -1.3862944, -1.3862944]]))
jsd_far_teacher = f32(np.array([[0.0, -1e4, -50.0, -1e4], [-1e-6, -30.0, -40.0, -20.0],
                                [-0.1053605, -2.3025851, -100.0, -100.0]]))
for beta in (0.5, 0.0, 1.0, 0.1):
    for r in ("none", "mean", "sum", "batchmean") if beta == 0.5 else ("none", "batchmean"):
        add(f"jsd beta={beta} [4, 6] {r}", "jsd", r, [4, 6], jsd_student, target=jsd_teacher, beta=beta)
    add(f"jsd beta={beta} far [3, 4] none", "jsd", "none", [3, 4], jsd_far_student,
        target=jsd_far_teacher, beta=beta)
add("jsd beta=0.5 [2, 3, 4] batchmean", "jsd", "batchmean", [2, 3, 4], rand_logprobs([2, 3, 4]),
    target=rand_logprobs([2, 3, 4]), beta=0.5)


def add_jsd_teacher_gradient(name, beta, reduction, student, teacher):
    shape = list(student.shape)
    x, y = t64(student).requires_grad_(True), t64(teacher).requires_grad_(True)
    out = jsd_loss(beta, x, y, reduction)
    (out.sum() if reduction == "none" else out).backward()
    value, grad = out.detach().numpy(), y.grad.numpy()
    assert finite(value, grad), name
    # Both gradients of one call (the crate's target gradient), ...
    CASES.append({
        "name": name.replace("teacher gradient", "both gradients"), "loss": "jsd", "params": {"beta": beta},
        "reduction": reduction, "shape": shape, "generated": None, "has_weight": False,
        "input": flat_input(student), "labels": None, "target": flat(teacher), "weight": None,
        "value": flat(value) if reduction == "none" else float(value),
        "grad": flat(x.grad.numpy()), "grad_samples": None,
        "grad_sum_abs": float(np.abs(x.grad.numpy()).sum()), "grad_target": flat(grad),
    })
    # ... and the teacher's as the input gradient of the swapped call.
    CASES.append({
        "name": name, "loss": "jsd", "params": {"beta": 1.0 - beta}, "reduction": reduction,
        "shape": shape, "generated": None, "has_weight": False,
        "input": flat_input(teacher), "labels": None, "target": flat(student), "weight": None,
        "value": flat(value) if reduction == "none" else float(value),
        "grad": flat(grad), "grad_samples": None, "grad_sum_abs": float(np.abs(grad).sum()),
    })


for beta in (0.5, 0.0, 1.0, 0.1):
    add_jsd_teacher_gradient(f"jsd teacher gradient beta={beta} [4, 6] batchmean", beta, "batchmean",
                             jsd_student, jsd_teacher)
    add_jsd_teacher_gradient(f"jsd teacher gradient beta={beta} far [3, 4] none", beta, "none",
                             jsd_far_student, jsd_far_teacher)

# ---------------------------------------------------------------- 11. margin losses
# torch.nn.MultiMarginLoss (p 1 and 2, margins 1 and 0.5, class weights), MultiLabelSoftMargin
# (hard and soft targets, weights, logits +-1e4) and MultiLabelMarginLoss (lists of several
# lengths, a class listed twice, an empty list, values after the -1 that must not be read).
# Scores are multiples of 1/8 apart from ties at a hinge's kink (checked separately).
mm_x = f32(np.round(RNG.normal(0.0, 1.5, [6, 5]) * 8) / 8 + 1 / 32)
mm_labels = RNG.integers(0, 5, 6)
mm_w = rand_weight(5)
for p, margin in ((1, 1.0), (2, 1.0), (1, 0.5)):
    for has_w in (False, True):
        for r in ("none", "mean", "sum"):
            add(f"multi_margin p={p} margin={margin} [6, 5] weight={has_w} {r}", "multi_margin", r, [6, 5],
                mm_x, labels=mm_labels, weight=mm_w if has_w else None, p=p, margin=margin)
add("multi_margin p=2 margin=1 far [3, 4] mean", "multi_margin", "mean", [3, 4],
    [[1e4, 0.0, -1e4, 3.0], [-1e4, 1e4, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]], labels=[0, 0, 2], p=2, margin=1.0)
mls_x = rand_logits([5, 6])
mls_x[0, :3] = [1e4, -1e4, 20.0]
mls_hard = f32((RNG.uniform(0, 1, [5, 6]) < 0.4).astype(np.float64))
mls_soft = f32(RNG.uniform(0, 1, [5, 6]))
mls_w = rand_weight(6)
for kind, t in (("hard", mls_hard), ("soft", mls_soft)):
    for has_w in (False, True):
        for r in ("none", "mean", "sum"):
            add(f"multilabel_soft_margin {kind} [5, 6] weight={has_w} {r}", "multilabel_soft_margin", r,
                [5, 6], mls_x, target=t, weight=mls_w if has_w else None)
mlm_x = f32(np.round(RNG.normal(0.0, 1.0, [5, 6]) * 8) / 8 + 1 / 32)
mlm_labels = [[3, 0, -1, 5, 2, 1], [1, 1, 4, -1, -1, -1], [-1, 2, 2, 2, 2, 2], [0, 1, 2, 3, 4, 5],
              [5, -1, 0, 0, 0, 0]]
for r in ("none", "mean", "sum"):
    add(f"multilabel_margin [5, 6] {r}", "multilabel_margin", r, [5, 6], mlm_x, labels=mlm_labels)
add("multilabel_margin far [2, 4] mean", "multilabel_margin", "mean", [2, 4],
    [[1e4, -1e4, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]], labels=[[1, 2, -1, 3], [2, -1, 0, 0]])

# ---------------------------------------------------------------- 12. hostile but valid
# Rows dominated by one logit (p_y -> 1, where p_y - 1 and 1 - p_y cancel in float32),
# and large shifts of every logit of a row. Appended after every earlier case, with
# its own generator, so every earlier case stays as it was.
HRNG = np.random.default_rng(20250612)
# 1 - p_y about 0.02, 2e-7, 3e-10, 1e-17 (label 1) and 5e-13; a tie; a label far below the
# dominant logit (p_y about 2e-9).
dom_x = np.array([[8.282094, 4.1779146, 1.1030558, -1.383111], [16.0, 0.5, -2.0, 1.0],
                  [25.0, 3.0, -1.0, 0.0], [0.0, 40.0, 1.0, -3.0], [12.0, 12.0, -5.0, 0.0],
                  [20.0, 0.0, 0.0, 0.0]])
dom_labels = [0, 0, 0, 1, 1, 2]
# The label functions' version: p_y stays below 1 in float64 (1 - p_y >= 1e-13), where
# (1 - p)^gamma's derivative at gamma < 1 is still finite.
dom_fn_x = dom_x.copy()
dom_fn_x[3] = [0.0, 28.0, 1.0, -3.0]
dom_w = f32([0.5, 1.75, 1.25, 0.75])
# The dominated rows on a 1/16 grid, for shifting exactly.
dom_grid = np.round(dom_x * 16.0) / 16.0


def shifted_rows(shape, shift):
    """Random logits on a 1/16 grid (in [-8, 8]) plus `shift`: exact in float32 up to
    |shift| 1e6 (spacing 1/16 there), and the row's softmax is the unshifted one."""
    base = np.clip(np.round(HRNG.normal(0.0, 2.0, shape) * 16.0) / 16.0, -8.0, 8.0)
    x = base + shift
    assert np.all(f32(x) == x)
    return x


def exact(x):
    """x, asserting that float32 holds it exactly (a shift that rounded would change the case)."""
    x = np.asarray(x, dtype=np.float64)
    assert np.all(f32(x) == x)
    return x


SHIFTS = (1e4, 1e6, -1e6)
for has_w, ls in ((False, 0.0), (True, 0.0), (False, 0.1)):
    for r in REDUCTIONS:
        add(f"cross_entropy dominated [6, 4] weight={has_w} smoothing={ls} {r}", "cross_entropy", r, [6, 4],
            dom_x, labels=dom_labels, weight=dom_w if has_w else None, ignore_index=-100, label_smoothing=ls)
sh_labels = [3, 0, -100, 5, 1]
for s in SHIFTS:
    x = shifted_rows([5, 6], s)
    for has_w, ls, r in ((False, 0.0, "none"), (True, 0.1, "mean"), (False, 0.0, "sum")):
        add(f"cross_entropy shifted {s:+g} [5, 6] weight={has_w} smoothing={ls} {r}", "cross_entropy", r,
            [5, 6], x, labels=sh_labels, weight=rand_weight(6) if has_w else None, ignore_index=-100,
            label_smoothing=ls)
    add(f"cross_entropy dominated shifted {s:+g} [6, 4] mean", "cross_entropy", "mean", [6, 4],
        exact(dom_grid + s), labels=dom_labels, ignore_index=-100)
add("cross_entropy shifted +1e+06 [2, 3, 4] mean", "cross_entropy", "mean", [2, 3, 4],
    shifted_rows([2, 3, 4], 1e6), labels=[[0, 2, 1, -100], [1, 1, 0, 2]], ignore_index=-100)
for z, cap in ((1e-4, 0.0), (1e-4, 30.0)):
    for s in (0.0, 1e4):
        add(f"cross_entropy z_loss={z} softcap={cap} dominated shifted {s:+g} [6, 4] mean", "cross_entropy",
            "mean", [6, 4], exact(dom_grid + s), labels=dom_labels, z_loss=z, softcap=cap)

# Soft targets: near one-hot targets on dominated rows, and shifted rows.
soft_t = f32([[1.0 - 2.0 ** -20, 2.0 ** -21, 2.0 ** -21, 0.0], [1.0, 0.0, 0.0, 0.0], [0.999, 0.001, 0.0, 0.0],
              [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
for ls, r in ((0.0, "none"), (0.0, "mean"), (0.1, "sum")):
    add(f"cross_entropy_soft dominated [6, 4] smoothing={ls} {r}", "cross_entropy_soft", r, [6, 4], dom_x,
        target=soft_t, label_smoothing=ls)
for s in SHIFTS:
    add(f"cross_entropy_soft shifted {s:+g} [5, 6] weight=True smoothing=0.1 mean", "cross_entropy_soft", "mean",
        [5, 6], shifted_rows([5, 6], s), target=rand_probs([5, 6]), weight=rand_weight(6), label_smoothing=0.1)

# NLL of log-probabilities near 0 and far below it.
nll_near = f32([[-1e-7, -16.0, -30.0, -1e4], [-2.0 ** -24, -17.0, -1e4, -1e4], [-0.5, -1e-3, -7.0, -1e4],
                [-1e4, -1e4, -1e4, -1e-30]])
for r in ("none", "mean"):
    add(f"nll near 0 [4, 4] weight=True {r}", "nll", r, [4, 4], nll_near, labels=[0, 1, 1, 3],
        weight=dom_w, ignore_index=-100)

# KL divergence with targets near 0 and 1 against log-probabilities near 0 and far below.
kl_near_t = f32([[1.0 - 2.0 ** -23, 2.0 ** -24, 2.0 ** -24, 0.0], [1e-30, 1.0 - 1e-6, 1e-6, 0.0],
                 [0.25, 0.25, 0.25, 0.25]])
kl_near_x = f32([[-1e-7, -17.0, -16.0, -30.0], [-70.0, -1e-6, -13.8, -1e4], [-1.3862944, -1.3862944, -1.5, -1.25]])
for lt in (False, True):
    t = f32(np.log(np.maximum(kl_near_t, 1e-38))) if lt else kl_near_t
    for r in ("none", "batchmean"):
        add(f"kl_div near 0 and 1 [3, 4] log_target={lt} {r}", "kl_div", r, [3, 4], kl_near_x, target=t,
            log_target=lt)

# The label functions on the dominated rows and on shifted rows.
for loss, lp in LABEL_FN_SETTINGS + [("hard_bootstrap", {"beta": 0.8}), ("soft_bootstrap", {"beta": 0.95})]:
    tag = " ".join(f"{k}={v}" for k, v in lp.items())
    for r in ("none", "mean"):
        add(f"{loss} {tag} dominated [6, 4] {r}", loss, r, [6, 4], dom_fn_x, labels=dom_labels, **lp)
    add(f"{loss} {tag} shifted +1e+06 [5, 6] weight=True mean", loss, "mean", [5, 6], shifted_rows([5, 6], 1e6),
        labels=sh_labels, weight=rand_weight(6), ignore_index=-100, **lp)

# Margin losses: shifted scores (the margins depend on differences only) and multi-label
# soft margin's logits near +-15..30.
# mm_x and mlm_x less their 1/32 offset are multiples of 1/8: exact at 1e6 too.
mm_sx = mm_x - 1 / 32
for s in (1e4, -1e6):
    for p in (1, 2):
        add(f"multi_margin p={p} margin=1.0 shifted {s:+g} [6, 5] weight=True mean", "multi_margin", "mean",
            [6, 5], exact(mm_sx + s), labels=mm_labels, weight=mm_w, p=p, margin=1.0)
    add(f"multilabel_margin shifted {s:+g} [5, 6] sum", "multilabel_margin", "sum", [5, 6],
        exact(mlm_x - 1 / 32 + s), labels=mlm_labels)
mls_far = np.array([[15.0, -15.0, 17.5, -17.5, 25.0, -25.0], [30.0, -30.0, 16.635532, -16.635532, 20.0, -20.0],
                    [-30.0, 30.0, -25.0, 25.0, -15.0, 15.0]])
mls_far_t = f32([[1.0, 0.0, 1.0, 0.0, 0.3, 0.7], [1.0, 1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.5, 0.999, 1.0, 0.0]])
for r in ("none", "mean"):
    add(f"multilabel_soft_margin near +-15..30 [3, 6] weight=True {r}", "multilabel_soft_margin", r, [3, 6],
        mls_far, target=mls_far_t, weight=mls_w)

# ---------------------------------------------------------------- focal, alpha averaged over rows
# Focal with the per-class alpha as `weight` and `weight_as_alpha`: mean over the kept
# rows (kornia / MONAI / torchvision-style ports), not over the summed alpha.
for ign in (-100, 1):
    x = rand_logits([7, 4])
    labels = RNG.integers(0, 4, 7)
    labels[3] = ign
    w = rand_weight(4)
    for r in ("mean", "sum"):
        add(f"focal gamma=2.0 weight_as_alpha=1.0 [7, 4] ignore={ign} weight=True {r}", "focal", r, [7, 4], x,
            labels=labels, weight=w, ignore_index=ign, gamma=2.0, weight_as_alpha=1.0)

# ---------------------------------------------------------------- checks/output
for c in CASES:
    for key in ("input", "target", "weight"):
        for v in c[key] or []:
            if v is None:
                assert key == "input" and c["loss"] == "cross_entropy", c["name"]
                continue
            assert float(np.float32(v)) == v, (c["name"], key, v)
    vals = c["value"] if isinstance(c["value"], list) else [c["value"]]
    grads = c["grad"] if c["grad"] is not None else [g for _, g in c["grad_samples"]]
    assert all(math.isfinite(v) for v in vals + grads + [c["grad_sum_abs"]]), c["name"]
    assert (c["generated"] is None) == (c["grad"] is not None) == (c["grad_samples"] is None)
    if c["reduction"] == "none":
        shape = c["shape"]
        want = int(np.prod(shape)) if c["loss"] in ("kl_div", "jsd") else shape[0] * int(np.prod(shape[2:]))
        assert len(vals) == want, c["name"]

doc = {
    "generator": f"torch {torch.__version__} tests/data/gen_torch_softmax.py",
    "input_generator": GENERATOR_TEXT,
    "cases": CASES,
}
with open(OUT, "w") as fh:
    json.dump(doc, fh, indent=1, allow_nan=False)
    fh.write("\n")

counts = {}
for c in CASES:
    k = c["loss"] + (" (generated)" if c["generated"] else "")
    counts[k] = counts.get(k, 0) + 1
print(f"wrote {len(CASES)} cases to {OUT} ({os.path.getsize(OUT)} bytes): {counts}")
if DROPPED:
    print(f"dropped {len(DROPPED)} non-finite cases: {DROPPED}")
