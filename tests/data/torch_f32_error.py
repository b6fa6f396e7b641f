"""Measure PyTorch float32's error on the float64 reference cases, in units of the
tolerance tests/reference.rs holds the crate to.

Rerun with:

    pip install torch torchvision numpy
    python tests/data/torch_f32_error.py [--check-f64]

after tests/data/gen_torch_constants.py and tests/data/gen_torch_softmax.py. The output,
tests/data/torch_f32_error.json, is committed; tests/reference.rs's
`gpu_is_no_less_accurate_than_pytorch_f32` reads it.

For every case of torch_constants.json and torch_softmax.json the same loss is computed
again with the same options, on the same inputs cast to float32 (they are exactly
float32 numbers), by the generators' own code: their imports, functions and upper-case
constants are executed, the code that builds and writes their cases is not. The float32
value and gradient (and the target's gradient where the case stores one, and sum |grad|
where it stores that) are compared with the stored float64 ones exactly as
tests/reference.rs compares the crate's:

    ratio = |got - want| / (1e-5 |want| + floor)     (0 when got == want; inf for NaN)
    grad floor  = 1e-6 * max_weight / denominator
    value floor = 1e-7 * max_weight * largest * (terms / denominator for a reduced value, else 1)

where max_weight is the largest weight (at least 1), largest the largest finite |input|
(at least 1), terms the rows (row-wise losses) or elements, and denominator the mean's
divisor (the summed class weight of kept rows for cross-entropy, its label functions and
NLL; rows or elements otherwise; the batch for batchmean; 1 for sum and none). Sum |grad|
has a floor of grad floor times the gradient's length. A ratio <= 1 is within tolerance.

Where PyTorch has a kernel ("PyTorch kernel": torch.nn.functional, including its
composite multilabel_soft_margin_loss) that kernel runs in float32 on the CPU;
sigmoid focal is torchvision.ops.sigmoid_focal_loss ("torchvision op"). The losses the
generators write from formulas with autograd (hinge, squared hinge, log-cosh, the label
functions, JSD, cross-entropy with z-loss or soft-capping) are that formula evaluated in
float32 ("formula in f32"). Cross-entropy with z-loss or soft-capping is its own group,
"cross_entropy+z_loss/softcap".

Output: per group (loss) the worst value and gradient ratio and the case where each
occurs, the overall worsts, and per case both ratios and the floors used (the Rust test
checks that its floors are the same). With --check-f64 it first reruns every case in
float64 and asserts that this reproduces the stored values and gradients (ratio < 1e-6),
so the operands, options and loss code are the generators'. JSON has no infinities: a ratio of null is
infinite (PyTorch's float32 result was not finite).
"""

import ast
import json
import math
import os
import sys
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "torch_f32_error.json")
REL_TOL = 1e-5
GRAD_ABS_TOL = 1e-6
VALUE_ABS_TOL = 1e-7
warnings.filterwarnings("ignore", message="reduction: 'mean' divides")

LABEL_FNS = {"focal", "generalized_cross_entropy", "symmetric_cross_entropy", "poly1_cross_entropy",
             "hard_bootstrap", "soft_bootstrap"}
# The crate's row-wise (softmax-family and margin) losses; the rest are elementwise.
ROW_WISE = {"cross_entropy", "cross_entropy_soft", "nll", "multi_margin", "multilabel_soft_margin",
            "multilabel_margin"} | LABEL_FNS
# Losses whose mean divides by the summed class weight of the kept rows.
MEAN_OVER_LABEL_WEIGHTS = {"cross_entropy", "nll"} | LABEL_FNS
KERNEL = {"mse", "l1", "huber", "smooth_l1", "bce", "bce_with_logits", "soft_margin", "hinge_embedding",
          "cross_entropy", "cross_entropy_soft", "nll", "kl_div", "multi_margin", "multilabel_soft_margin",
          "multilabel_margin"}


def load_generator(filename):
    """A generator's imports, functions and upper-case constants, as a namespace; none of
    the code that builds or writes its cases runs."""
    path = os.path.join(HERE, filename)
    with open(path) as fh:
        tree = ast.parse(fh.read(), path)
    keep = [node for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef))
            or (isinstance(node, ast.Assign)
                and all(isinstance(t, ast.Name) and t.id.isupper() and t.id != "OUT" for t in node.targets))]
    namespace = {"__file__": path, "__name__": filename, "__doc__": ast.get_docstring(tree, clean=False)}
    exec(compile(ast.Module(body=keep, type_ignores=[]), path, "exec"), namespace)
    return namespace


def numbers(v):
    """A JSON number or list; null stands for -inf (inputs only)."""
    if isinstance(v, list):
        return [-math.inf if x is None else float(x) for x in v]
    return [float(v)]


def group_of(case):
    if case["loss"] == "cross_entropy" and (case["params"].get("z_loss") or case["params"].get("softcap")):
        return "cross_entropy+z_loss/softcap"
    return case["loss"]


def source_of(case):
    if group_of(case) != case["loss"]:
        return "formula in f32"
    if case["loss"] in KERNEL:
        return "PyTorch kernel"
    if case["loss"] == "sigmoid_focal":
        return "torchvision op"
    return "formula in f32"


def operands(gen, case):
    """(input, target or labels, weight, pos_weight) as float64 numpy arrays / int64 labels."""
    shape = case["shape"]
    n = int(np.prod(shape))
    if case.get("generated"):
        seed = case["generated"]["seed"]
        classes = shape[1]
        rows = shape[0] * int(np.prod(shape[2:]))
        inp = gen["gen_logits"](seed, n).reshape(shape)
        if case["loss"] == "cross_entropy_soft":
            tgt = gen["gen_soft_target"](seed, n).reshape(shape)
        else:
            tgt = gen["gen_labels"](seed, rows, classes, case["params"]["ignore_index"]).reshape(
                [shape[0]] + shape[2:])
        weight = gen["gen_class_weight"](seed, classes) if case["has_weight"] else None
        return inp, tgt, weight, None
    inp = np.array(numbers(case["input"])).reshape(shape)
    if case.get("labels") is not None:
        label_shape = shape if case["loss"] == "multilabel_margin" else [shape[0]] + shape[2:]
        tgt = np.array(case["labels"], dtype=np.int64).reshape(label_shape)
    else:
        tgt = np.array(numbers(case["target"])).reshape(shape)
    weight = None if case.get("weight") is None else np.array(case["weight"])
    if weight is not None and case["loss"] not in ROW_WISE:
        weight = weight.reshape(shape)
    pos_weight = None if case.get("pos_weight") is None else np.array(case["pos_weight"])
    return inp, tgt, weight, pos_weight


def evaluate32(gen, case, inp, tgt, weight, pos_weight, dtype=np.float32):
    """PyTorch float32 (or `dtype`): (value, gradient, target gradient or None), as float64 numpy."""
    to32 = lambda a: torch.tensor(np.asarray(a, dtype=dtype))
    x = to32(inp).requires_grad_(True)
    target_grad = case.get("grad_target") is not None
    t = torch.tensor(tgt) if tgt.dtype == np.int64 else to32(tgt).requires_grad_(target_grad)
    w = None if weight is None else to32(weight)
    if "gen_logits" in gen:
        out = gen["apply_loss"](case["loss"], case["params"], x, t, w, case["reduction"])
    else:
        pw = None if pos_weight is None else to32(pos_weight)
        out = gen["apply_loss"](case["loss"], case["params"], x, t, w, pw, case["reduction"])
    assert out.dtype == to32([0.0]).dtype, case["name"]
    (out.sum() if case["reduction"] == "none" else out).backward()
    widen = lambda a: a.detach().numpy().astype(np.float64).reshape(-1)
    return widen(out), widen(x.grad), widen(t.grad) if target_grad else None


def floors(case, inp, tgt, weight):
    """tests/reference.rs's absolute floors (value, gradient) of a case."""
    loss, shape, reduction = case["loss"], case["shape"], case["reduction"]
    row_wise = loss in ROW_WISE
    rows = shape[0] * int(np.prod(shape[2:])) if row_wise else 0
    terms = float(rows if row_wise else int(np.prod(shape)))
    weights = [] if weight is None else [float(np.float32(w)) for w in np.asarray(weight).reshape(-1)]
    max_weight = 1.0
    for w in weights:
        max_weight = max(max_weight, w)
    if reduction == "mean" and loss in MEAN_OVER_LABEL_WEIGHTS:
        ignore = case["params"]["ignore_index"]
        denominator = 0.0
        for label in np.asarray(tgt).reshape(-1):
            if label != ignore:
                denominator += 1.0 if weight is None else weights[int(label)]
    elif reduction == "mean":
        denominator = terms
    elif reduction == "batchmean":
        denominator = float(shape[0])
    else:
        denominator = 1.0
    largest = 1.0
    finite = np.asarray(inp)[np.isfinite(inp)]
    if finite.size:
        largest = max(largest, float(np.abs(finite).max()))
    grad_floor = GRAD_ABS_TOL * max_weight / denominator
    value_len = len(case["value"]) if isinstance(case["value"], list) else 1
    value_floor = VALUE_ABS_TOL * max_weight * largest * (terms / denominator if value_len == 1 else 1.0)
    return value_floor, grad_floor


def ratio(got, want, floor):
    if got == want:
        return 0.0
    err = abs(got - want)
    if math.isnan(err):
        return math.inf
    allowed = REL_TOL * abs(want) + floor
    return err / allowed if allowed > 0 else math.inf


def worst(pairs, floor):
    return max([ratio(g, w, floor) for g, w in pairs], default=0.0)


def measure(gen, case, dtype=np.float32):
    inp, tgt, weight, pos_weight = operands(gen, case)
    value_floor, grad_floor = floors(case, inp, tgt, weight)
    value, grad, grad_target = evaluate32(gen, case, inp, tgt, weight, pos_weight, dtype)
    want_value = numbers(case["value"])
    assert len(value) == len(want_value), case["name"]
    value_ratio = worst(zip(value, want_value), value_floor)
    if case.get("grad") is not None:
        want = numbers(case["grad"])
        assert len(want) == len(grad), case["name"]
        grad_ratio = worst(zip(grad, want), grad_floor)
    else:
        grad_ratio = worst(((grad[i], w) for i, w in case["grad_samples"]), grad_floor)
    if grad_target is not None:
        grad_ratio = max(grad_ratio, worst(zip(grad_target, numbers(case["grad_target"])), grad_floor))
    if case.get("grad_sum_abs") is not None:
        grad_ratio = max(grad_ratio, ratio(float(np.abs(grad).sum()), case["grad_sum_abs"], grad_floor * len(grad)))
    return value_ratio, grad_ratio, value_floor, grad_floor


def finite_or_null(r):
    return r if math.isfinite(r) else None


def check_f64(generators):
    """The same measurement in float64 reproduces the stored values: the operands, options
    and loss code are the generators'."""
    for filename, gen in generators.items():
        with open(os.path.join(HERE, filename)) as fh:
            for case in json.load(fh)["cases"]:
                value_ratio, grad_ratio, _, _ = measure(gen, case, np.float64)
                assert value_ratio < 1e-6 and grad_ratio < 1e-6, (case["name"], value_ratio, grad_ratio)
    print("float64 rerun reproduces every stored value and gradient")


def main():
    generators = {"torch_constants.json": load_generator("gen_torch_constants.py"),
                  "torch_softmax.json": load_generator("gen_torch_softmax.py")}
    if "--check-f64" in sys.argv:
        check_f64(generators)
    per_case, groups = [], {}
    for filename, gen in generators.items():
        with open(os.path.join(HERE, filename)) as fh:
            cases = json.load(fh)["cases"]
        for case in cases:
            value_ratio, grad_ratio, value_floor, grad_floor = measure(gen, case)
            group = group_of(case)
            per_case.append({"name": case["name"], "group": group, "value": finite_or_null(value_ratio),
                             "grad": finite_or_null(grad_ratio), "value_floor": value_floor,
                             "grad_floor": grad_floor})
            g = groups.setdefault(group, {"source": source_of(case), "cases": 0,
                                          "value": {"worst": -1.0, "case": None},
                                          "grad": {"worst": -1.0, "case": None}})
            assert g["source"] == source_of(case), case["name"]
            g["cases"] += 1
            for key, r in (("value", value_ratio), ("grad", grad_ratio)):
                if r > g[key]["worst"]:
                    g[key] = {"worst": r, "case": case["name"]}
    names = [c["name"] for c in per_case]
    assert len(set(names)) == len(names), "case names repeat across the two files"
    overall = {}
    for key in ("value", "grad"):
        group = max(groups, key=lambda k: groups[k][key]["worst"])
        overall[key] = {"worst": finite_or_null(groups[group][key]["worst"]), "case": groups[group][key]["case"]}
    for g in groups.values():
        for key in ("value", "grad"):
            g[key]["worst"] = finite_or_null(g[key]["worst"])
    doc = {
        "generator": f"torch {torch.__version__} tests/data/torch_f32_error.py",
        "units": "multiples of tests/reference.rs's tolerance, 1e-5 |want| + floor (<= 1 passes); null = infinite",
        "overall": overall,
        "losses": dict(sorted(groups.items())),
        "cases": per_case,
    }
    with open(OUT, "w") as fh:
        json.dump(doc, fh, indent=1, allow_nan=False)
        fh.write("\n")
    show = lambda r: "inf" if r is None else f"{r:.3g}"
    print(f"{'loss':32} {'source':16} {'cases':>5} {'value':>9} {'grad':>9}")
    for name, g in doc["losses"].items():
        print(f"{name:32} {g['source']:16} {g['cases']:5} {show(g['value']['worst']):>9} {show(g['grad']['worst']):>9}")
    for key in ("value", "grad"):
        print(f"worst {key}: {show(overall[key]['worst'])} ({overall[key]['case']})")
    print(f"wrote {len(per_case)} cases to {OUT}")


if __name__ == "__main__":
    main()
