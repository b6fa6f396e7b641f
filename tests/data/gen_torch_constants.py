"""Generate PyTorch float64 reference values/gradients for elementwise losses.

Rerun with:

    pip install torch torchvision numpy
    python tests/data/gen_torch_constants.py

The output, tests/data/torch_constants.json, is committed to the repository;
rerun this script only when the set of cases changes.

Every input/target/weight/pos_weight number is exactly representable in
float32 (generated as numpy float32 with a fixed seed, then widened to
float64).  Values and gradients are computed by PyTorch in float64.  For
reduction "none", "value" is the list of per-element losses and "grad" is the
gradient of their sum; otherwise "grad" is d(reduced loss)/d(input).
"weight" (when present) is always stored expanded to the full input shape;
"pos_weight" has length equal to the last dimension and broadcasts over it.
Elements of the hand-written extreme cases whose torch value or gradient is
not finite are dropped from the case.
"""

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_constants.json")
RNG = np.random.default_rng(20240611)
LOG2 = math.log(2.0)


def f32(x):
    """float32 array of x, as float64 numpy array (exact)."""
    return np.asarray(np.asarray(x, dtype=np.float64).astype(np.float32), dtype=np.float64)


def t64(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64)


def apply_loss(loss, params, x, t, w, pw, reduction):
    if loss == "mse":
        return F.mse_loss(x, t, reduction=reduction)
    if loss == "l1":
        return F.l1_loss(x, t, reduction=reduction)
    if loss == "huber":
        return F.huber_loss(x, t, reduction=reduction, delta=params["delta"])
    if loss == "smooth_l1":
        return F.smooth_l1_loss(x, t, reduction=reduction, beta=params["beta"])
    if loss == "bce":
        return F.binary_cross_entropy(x, t, weight=w, reduction=reduction)
    if loss == "bce_with_logits":
        return F.binary_cross_entropy_with_logits(x, t, weight=w, pos_weight=pw, reduction=reduction)
    if loss == "soft_margin":
        return F.soft_margin_loss(x, t, reduction=reduction)
    if loss == "sigmoid_focal":
        # torchvision has no weight; the crate's `weight` multiplies the result.
        assert w is None and pw is None
        return torchvision.ops.sigmoid_focal_loss(x, t, alpha=params["alpha"], gamma=params["gamma"],
                                                  reduction=reduction)
    if loss == "hinge_embedding":
        return F.hinge_embedding_loss(x, t, margin=params["margin"], reduction=reduction)
    if loss == "hinge":
        # optax.hinge_loss: max(0, 1 - y x); relu's derivative at the kink is 0.
        per = torch.relu(1.0 - t * x)
        return {"none": per, "mean": per.mean(), "sum": per.sum()}[reduction]
    if loss == "squared_hinge":
        per = torch.relu(1.0 - t * x) ** 2
        return {"none": per, "mean": per.mean(), "sum": per.sum()}[reduction]
    if loss == "log_cosh":
        e = x - t
        per = torch.logaddexp(e, -e) - LOG2
        return {"none": per, "mean": per.mean(), "sum": per.sum()}[reduction]
    raise ValueError(loss)


# Losses whose target is differentiable in the crate: their cases also store torch's
# autograd with respect to the target ("grad_target").
TARGET_DIFFERENTIABLE = {"mse", "l1", "huber", "smooth_l1", "log_cosh"}


def evaluate(loss, params, inp, tgt, w, pw, reduction, target_grad=False):
    x = t64(inp).requires_grad_(True)
    t = t64(tgt).requires_grad_(target_grad)
    wt = None if w is None else t64(w)
    pwt = None if pw is None else t64(pw)
    out = apply_loss(loss, params, x, t, wt, pwt, reduction)
    (out.sum() if reduction == "none" else out).backward()
    if target_grad:
        return out.detach(), x.grad.detach(), t.grad.detach()
    return out.detach(), x.grad.detach()


def flat(a):
    return [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)]


CASES = []


def add(name, loss, reduction, inp, tgt, params=None, weight=None, pos_weight=None, shape=None):
    params = dict(params or {})
    inp = f32(inp)
    tgt = f32(tgt)
    if shape is None:
        shape = list(inp.shape)
    inp = inp.reshape(shape)
    tgt = tgt.reshape(shape)
    if weight is not None:
        weight = np.broadcast_to(f32(weight), shape).copy()
    if pos_weight is not None:
        pos_weight = f32(pos_weight)
        assert pos_weight.shape == (shape[-1],)
    grad_target = None
    if loss in TARGET_DIFFERENTIABLE:
        value, grad, grad_target = evaluate(loss, params, inp, tgt, weight, pos_weight, reduction, True)
        grad_target = grad_target.numpy()
        assert np.all(np.isfinite(grad_target)), name
    else:
        value, grad = evaluate(loss, params, inp, tgt, weight, pos_weight, reduction)
    value = value.numpy()
    grad = grad.numpy()
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad)), name
    assert not any(c["name"] == name for c in CASES), name
    CASES.append({
        "name": name,
        "loss": loss,
        "params": {k: float(v) for k, v in params.items()},
        "reduction": reduction,
        "shape": [int(d) for d in shape],
        "input": flat(inp),
        "target": flat(tgt),
        "weight": None if weight is None else flat(weight),
        "pos_weight": None if pos_weight is None else flat(pos_weight),
        "value": flat(value) if reduction == "none" else float(value),
        "grad": flat(grad),
        **({} if grad_target is None else {"grad_target": flat(grad_target)}),
    })


def add_extreme(name, loss, inp, tgt, params=None, weight=None, reductions=("none",)):
    """1-D extreme case; elements with non-finite torch value/grad are dropped."""
    inp, tgt = f32(inp), f32(tgt)
    w = None if weight is None else f32(weight)
    v, g = evaluate(loss, params or {}, inp, tgt, w, None, "none")
    keep = np.isfinite(v.numpy()) & np.isfinite(g.numpy())
    if not keep.all():
        print(f"{name}: dropping non-finite elements input={inp[~keep].tolist()} target={tgt[~keep].tolist()}")
    for r in reductions:
        add(name if r == "none" else f"{name} ({r})", loss, r, inp[keep], tgt[keep], params,
            None if w is None else w[keep])


def rand_reg(shape):
    return RNG.normal(0.0, 2.0, shape), RNG.normal(0.0, 2.0, shape)


SHAPES = {"none": [7], "mean": [3, 5], "sum": [3, 5]}

# ---------------------------------------------------------------- random cases
for loss, params in [("mse", {}), ("l1", {}), ("huber", {"delta": 1.0}),
                     ("smooth_l1", {"beta": 1.0}), ("log_cosh", {})]:
    for r, shape in SHAPES.items():
        x, t = rand_reg(shape)
        add(f"{loss} random {r} {shape}", loss, r, x, t, params)

for r, shape in SHAPES.items():
    x = RNG.uniform(0.01, 0.99, shape)
    t = RNG.uniform(0.0, 1.0, shape)
    add(f"bce random {r} {shape}", "bce", r, x, t)
    x = RNG.normal(0.0, 3.0, shape)
    t = RNG.uniform(0.0, 1.0, shape)
    add(f"bce_with_logits random {r} {shape}", "bce_with_logits", r, x, t)
    x = RNG.normal(0.0, 2.0, shape)
    t = RNG.choice([-1.0, 1.0], shape)
    add(f"soft_margin random {r} {shape}", "soft_margin", r, x, t)

# random weighted / pos_weighted cases
shape = [3, 5]
add("bce random weighted mean [3, 5]", "bce", "mean",
    RNG.uniform(0.01, 0.99, shape), RNG.uniform(0, 1, shape), weight=RNG.uniform(0, 2, shape))
add("bce_with_logits random weight+pos_weight sum [3, 5]", "bce_with_logits", "sum",
    RNG.normal(0, 3, shape), RNG.uniform(0, 1, shape),
    weight=RNG.uniform(0, 2, shape), pos_weight=RNG.uniform(0.1, 3, [5]))

# ---------------------------------------------------------------- extremes
def reg_extremes(d):
    """(input, target) pairs with differences 0, +-1e-4, +-1e4, +-d, +-1."""
    f = float(np.float32(1e-4))
    pairs = [(0.0, 0.0), (1.5, 1.5), (f, 0.0), (-f, 0.0), (1e4, 0.0), (-1e4, 0.0),
             (0.25 + d, 0.25), (-1.5 - d, -1.5), (2.0, 1.0), (-3.0, -2.0)]
    x, t = zip(*pairs)
    return list(x), list(t)

x, t = reg_extremes(1.0)
add_extreme("mse extremes", "mse", x, t, reductions=("none", "mean"))
add_extreme("l1 extremes", "l1", x, t, reductions=("none", "sum"))
for d in (1.0, 0.5):
    x, t = reg_extremes(d)
    add_extreme(f"huber extremes delta={d}", "huber", x, t, {"delta": d})
add_extreme("huber extremes delta=0.5", "huber", *reg_extremes(0.5), {"delta": 0.5}, reductions=("mean",))
for b in (1.0, 0.25, 0.0):
    x, t = reg_extremes(b)
    add_extreme(f"smooth_l1 extremes beta={b}", "smooth_l1", x, t, {"beta": b})
add_extreme("smooth_l1 extremes beta=0.0", "smooth_l1", *reg_extremes(0.0), {"beta": 0.0}, reductions=("sum",))

# log_cosh: differences 0, +-1e-4, +-0.3, +-1e4
f = float(np.float32(1e-4))
add_extreme("log_cosh extremes", "log_cosh",
            [0.0, 2.0, f, -f, 0.3, -0.3, 1.3, 1e4, -1e4],
            [0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0], reductions=("none", "mean"))

# bce: probabilities 0, 1 (targets 0, 1, 0.3), 1e-30, 1 - 2**-24, 0.5
p1 = 1.0 - 2.0 ** -24
bx = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1e-30, 1e-30, p1, p1, 0.5, 0.5]
bt = [0.0, 1.0, 0.3, 0.0, 1.0, 0.3, 0.0, 1.0, 0.0, 1.0, 0.3, 1.0]
bw = [0.5, 2.0, 1.0, 0.25, 3.0, 1.5, 0.75, 1.25, 2.5, 0.1, 0.0, 4.0]
add_extreme("bce extremes", "bce", bx, bt, reductions=("none", "mean"))
add_extreme("bce extremes weighted", "bce", bx, bt, weight=bw, reductions=("none", "sum"))

# bce_with_logits: logits +-1e4, +-100, +-20, 0, 1e-3 with targets 0, 1, 0.3
lg = [1e4, -1e4, 100.0, -100.0, 20.0, -20.0, 0.0, 1e-3]
lx = [v for v in lg for _ in range(3)]
lt = [tt for _ in lg for tt in (0.0, 1.0, 0.3)]
lw = f32(RNG.uniform(0.0, 2.0, len(lx)))
add_extreme("bce_with_logits extremes", "bce_with_logits", lx, lt, reductions=("none", "mean"))
add_extreme("bce_with_logits extremes weighted", "bce_with_logits", lx, lt, weight=lw,
            reductions=("none", "sum"))

# pos_weight on [3, 4]
px = np.array([[1e4, -1e4, 100.0, -100.0],
               [20.0, -20.0, 0.0, 1e-3],
               [-1e-3, 2.5, -3.0, 0.0]])
pt = np.array([[1.0, 0.0, 0.3, 1.0],
               [0.0, 1.0, 0.3, 1.0],
               [0.3, 0.0, 1.0, 0.7]])
ppw = [0.5, 2.0, 3.0, 0.0]
pw_w = RNG.uniform(0.0, 2.0, [3, 4])
for r in ("none", "mean", "sum"):
    add(f"bce_with_logits pos_weight [3, 4] {r}", "bce_with_logits", r, px, pt, pos_weight=ppw)
add("bce_with_logits weight+pos_weight [3, 4] none", "bce_with_logits", "none", px, pt,
    weight=pw_w, pos_weight=ppw)
add("bce_with_logits weight+pos_weight [3, 4] mean", "bce_with_logits", "mean", px, pt,
    weight=pw_w, pos_weight=ppw)

# soft_margin: inputs +-1e4, +-30, 0 with targets +-1
sx = [v for v in (1e4, -1e4, 30.0, -30.0, 0.0) for _ in range(2)]
st = [1.0, -1.0] * 5
add_extreme("soft_margin extremes", "soft_margin", sx, st, reductions=("none", "mean"))

# sigmoid_focal (torchvision): random, then logits +-1e4, +-20, +-1, 0 with targets 0, 1,
# 0.3, for the default (0.25, 2), no alpha (-1), gamma 0 (= BCE with logits) and a
# fractional gamma (0.5: m^(gamma-1) grows as p_t -> 1). Appended after every earlier
# case so their random draws stay as they were.
for alpha, gamma in [(0.25, 2.0), (-1.0, 2.0), (0.25, 0.0), (0.75, 0.5)]:
    params = {"alpha": alpha, "gamma": gamma}
    for r, shape in SHAPES.items():
        add(f"sigmoid_focal random alpha={alpha} gamma={gamma} {r} {shape}", "sigmoid_focal", r,
            RNG.normal(0.0, 3.0, shape), RNG.uniform(0.0, 1.0, shape), params)
    fl = [1e4, -1e4, 20.0, -20.0, 1.0, -1.0, 0.0]
    fx = [v for v in fl for _ in range(3)]
    ft = [tt for _ in fl for tt in (0.0, 1.0, 0.3)]
    add_extreme(f"sigmoid_focal extremes alpha={alpha} gamma={gamma}", "sigmoid_focal", fx, ft, params,
                reductions=("none", "mean"))

# hinge_embedding: random, then inputs at the margin (the kink), around it and far off.
for margin in (1.0, 0.5):
    params = {"margin": margin}
    for r, shape in SHAPES.items():
        add(f"hinge_embedding random margin={margin} {r} {shape}", "hinge_embedding", r,
            RNG.normal(0.0, 2.0, shape), RNG.choice([-1.0, 1.0], shape), params)
    hx = [margin, margin - 0.25, margin + 0.25, 0.0, -1e4, 1e4]
    add_extreme(f"hinge_embedding extremes margin={margin}", "hinge_embedding",
                [v for v in hx for _ in range(2)], [-1.0, 1.0] * len(hx), params, reductions=("none", "sum"))

# hinge and squared_hinge (optax's hinge_loss and its square; the formula with autograd):
# random, then scores on the kink (y x = 1), either side of it, at 0 and far off.
# Appended after every earlier case so their random draws stay as they were.
for loss in ("hinge", "squared_hinge"):
    for r, shape in SHAPES.items():
        add(f"{loss} random {r} {shape}", loss, r, RNG.normal(0.0, 2.0, shape), RNG.choice([-1.0, 1.0], shape))
    kx = [1.0, -1.0, 0.75, 1.25, -0.75, -1.25, 0.0, 1e4, -1e4]
    add_extreme(f"{loss} extremes", loss, [v for v in kx for _ in range(2)], [1.0, -1.0] * len(kx),
                reductions=("none", "mean", "sum"))

# ---------------------------------------------------------------- hostile but valid
# Appended after every earlier case, and without random draws, so every earlier case
# stays as it was.
#
# Large shifts: input and target both moved by +1e4 and -1e6. The base values are
# multiples of 1/16, so the shifted ones are exact in float32 (the spacing at 1e6 is
# 1/16) and every difference is the unshifted one; the loss depends only on it.
shift_x = [0.5, -1.25, 2.0, 0.0625, -3.5, 0.75, 1.0]
shift_t = [0.25, -1.0, -1.0, 0.0, -3.5, 2.75, 1.0625]
for loss, params in [("mse", {}), ("l1", {}), ("huber", {"delta": 1.0}), ("smooth_l1", {"beta": 1.0}),
                     ("log_cosh", {})]:
    for s in (1e4, -1e6):
        sx, st_ = [v + s for v in shift_x], [v + s for v in shift_t]
        assert np.all(f32(sx) == np.array(sx)) and np.all(f32(st_) == np.array(st_))
        for r in ("none", "mean"):
            add(f"{loss} shifted {s:+g} {r} [7]", loss, r, sx, st_, params)

# bce: probabilities near 0 (1e-37, 1e-7, 2^-20, 1e-4) and near 1 (0.999, 1 - 2^-20,
# 1 - 2^-23) against targets 0, 1, 0.3 and 0.999.
bp = [1e-37, 1e-7, 2.0 ** -20, 1e-4, 0.999, 1.0 - 2.0 ** -20, 1.0 - 2.0 ** -23]
hx = [p for p in bp for _ in range(4)]
ht = [tt for _ in bp for tt in (0.0, 1.0, 0.3, 0.999)]
hw = [0.25 + 0.125 * (i % 13) for i in range(len(hx))]
add_extreme("bce near 0 and 1", "bce", hx, ht, reductions=("none", "mean"))
add_extreme("bce near 0 and 1 weighted", "bce", hx, ht, weight=hw, reductions=("sum",))

# Logits near +-15..30, where sigma(x) rounds to 1 in float32 (x > 16.6) and exp(-x) is far
# below float32's epsilon, against targets 0, 1, 0.3.
hl = [15.0, -15.0, 16.635532, -16.635532, 17.5, -17.5, 25.0, -25.0, 30.0, -30.0]
lx = [v for v in hl for _ in range(3)]
lt = [tt for _ in hl for tt in (0.0, 1.0, 0.3)]
add_extreme("bce_with_logits near +-15..30", "bce_with_logits", lx, lt, reductions=("none", "mean"))
add("bce_with_logits near +-15..30 pos_weight none [10, 3]", "bce_with_logits", "none",
    np.array(lx).reshape(10, 3), np.array(lt).reshape(10, 3), pos_weight=[0.5, 2.0, 3.0])
add_extreme("soft_margin near +-15..30", "soft_margin", [v for v in hl for _ in range(2)], [1.0, -1.0] * len(hl),
            reductions=("none", "mean"))
for alpha, gamma in [(0.25, 2.0), (0.75, 0.5)]:
    add_extreme(f"sigmoid_focal near +-15..30 alpha={alpha} gamma={gamma}", "sigmoid_focal", lx, lt,
                {"alpha": alpha, "gamma": gamma}, reductions=("none", "mean"))

# ---------------------------------------------------------------- checks/output
for c in CASES:
    for key in ("input", "target", "weight", "pos_weight"):
        for v in c[key] or []:
            assert float(np.float32(v)) == v, (c["name"], key, v)
    vals = c["value"] if isinstance(c["value"], list) else [c["value"]]
    assert all(math.isfinite(v) for v in vals + c["grad"]), c["name"]

doc = {"generator": f"torch {torch.__version__} tests/data/gen_torch_constants.py", "cases": CASES}
with open(OUT, "w") as fh:
    json.dump(doc, fh, indent=1, allow_nan=False)
    fh.write("\n")

counts = {}
for c in CASES:
    counts[c["loss"]] = counts.get(c["loss"], 0) + 1
print(f"wrote {len(CASES)} cases to {OUT}: {counts}")
