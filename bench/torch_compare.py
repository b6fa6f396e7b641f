#!/usr/bin/env python3
"""PyTorch forward + backward timings for the losses and shapes of `fused-loss bench`.

What it measures
    For every loss of the crate's registry and every shape of a suite, the median time
    of one PyTorch call "x.grad = None; loss = f(x, y); loss.backward()" (reduction
    "mean", float32, input requires grad, target does not), in eager mode and, with
    --compile, through torch.compile. Next to it the effective bandwidth with the same
    definition of bytes as the Rust side (input read once + target or labels read once
    + gradient written once) and, on CUDA, the bandwidth of a plain device-to-device
    copy of the same number of bytes: the ceiling for a memory-bound loss.

    It mirrors `cargo run --release -- bench [--suite large]` (src/bench.rs): same
    losses, same parameters (huber delta 0.5, smooth_l1 beta 0.25, label smoothing 0.1,
    kl_div with probability targets), same shapes, same byte count, so the two tables
    can be put side by side.

How to run
    pip install torch numpy
    python bench/torch_compare.py [--suite large] [--json out.json]

    Other flags: --device cpu|cuda (default cuda when available), --threads N,
    --compile, --loss SUBSTRING, --budget SECONDS (per row and mode, default 0.5).
    Progress goes to stderr; the markdown table is printed last on stdout.

Timing
    Tensors are made once per row, outside timing. 3 warm-up calls, then calls until
    the budget is spent (at least 3, at most 100); the median is reported. On CUDA each
    call is bracketed by torch.cuda.Event(enable_timing=True) records after a
    torch.cuda.synchronize(); on CPU by time.perf_counter().
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import warnings

import torch
import torch.nn.functional as F

LOG2 = math.log(2.0)

# kl_div with reduction="mean" is what the crate computes (divide by every element);
# torch warns on each call that "mean" will become "batchmean" one day.
warnings.filterwarnings("ignore", message="reduction: 'mean' divides the total loss")

# Registry order of src/losses/mod.rs.
ELEMENTWISE = ["mse", "l1", "huber", "smooth_l1", "log_cosh", "bce", "bce_with_logits", "soft_margin", "kl_div"]
ROW_WISE = ["cross_entropy", "cross_entropy_soft", "nll"]

SUITES = {
    "default": {
        "elementwise": [[1 << 16], [1 << 20], [1 << 22]],
        "rows": [[4096, 10], [1024, 1000], [64, 32_768], [16, 131_072]],
    },
    "large": {
        "elementwise": [[1_000_000], [10_000_000], [100_000_000]],
        # The last one is a segmentation layout: classes on dimension 1, labels (16, 512, 512).
        "rows": [[8192, 32_768], [8192, 131_072], [16_384, 131_072], [16, 21, 512, 512]],
    },
}


# --------------------------------------------------------------------------- losses


def log_cosh(x, y):
    d = x - y
    return (torch.logaddexp(d, -d) - LOG2).mean()


LOSSES = {
    "mse": lambda x, y: F.mse_loss(x, y),
    "l1": lambda x, y: F.l1_loss(x, y),
    "huber": lambda x, y: F.huber_loss(x, y, delta=0.5),
    "smooth_l1": lambda x, y: F.smooth_l1_loss(x, y, beta=0.25),
    "log_cosh": log_cosh,
    "bce": lambda x, y: F.binary_cross_entropy(x, y),
    "bce_with_logits": lambda x, y: F.binary_cross_entropy_with_logits(x, y),
    "soft_margin": lambda x, y: F.soft_margin_loss(x, y),
    "kl_div": lambda x, y: F.kl_div(x, y, reduction="mean", log_target=False),
    "cross_entropy": lambda x, y: F.cross_entropy(x, y, label_smoothing=0.1),
    "cross_entropy_soft": lambda x, y: F.cross_entropy(x, y, label_smoothing=0.1),
    "nll": lambda x, y: F.nll_loss(x, y),
}


def effective_bytes(loss: str, dims: list[int]) -> int:
    """Bytes of one call, as `effective_bytes` in src/bench.rs: input read once, target
    read once, gradient written once, float32.

    Labels count 4 bytes each because the Rust side reads i32 labels; torch's int64
    labels actually read 8, so torch is credited slightly less traffic than it moves on
    cross_entropy and nll (4·rows bytes, at most 0.05 % of the total here)."""
    elements = math.prod(dims)
    if loss in ("cross_entropy", "nll"):
        rows = elements // dims[1]
        return 8 * elements + 4 * rows
    return 12 * elements


def make_operands(loss: str, dims: list[int], device: torch.device, gen: torch.Generator):
    """(x, y): x a float32 leaf that requires grad, y the target (no grad)."""

    def rand(shape):
        return torch.rand(shape, generator=gen, device=device, dtype=torch.float32)

    def randn(shape):
        return torch.randn(shape, generator=gen, device=device, dtype=torch.float32)

    with torch.no_grad():
        if loss in ("mse", "l1", "huber", "smooth_l1", "log_cosh", "bce_with_logits"):
            x = randn(dims)
            y = rand(dims) if loss == "bce_with_logits" else randn(dims)
        elif loss == "bce":
            x = rand(dims).mul_(0.998).add_(0.001)  # probabilities in (0.001, 0.999)
            y = rand(dims)  # in [0, 1)
        elif loss == "soft_margin":
            x = randn(dims)
            y = torch.randint(0, 2, dims, generator=gen, device=device).to(torch.float32).mul_(2).sub_(1)
        elif loss == "kl_div":
            x = rand(dims).sub_(1.0).mul_(8.0)  # log-probabilities in [-8, 0)
            y = rand(dims)  # probabilities
        elif loss in ("cross_entropy", "cross_entropy_soft", "nll"):
            x = randn(dims)
            if loss == "nll":
                x = torch.log_softmax(x, dim=1)
            if loss == "cross_entropy_soft":
                y = rand(dims).add_(1e-3)
                y.div_(y.sum(dim=1, keepdim=True))  # a distribution over dim 1 per row
            else:
                label_dims = [dims[0]] + list(dims[2:])
                y = torch.randint(0, dims[1], label_dims, generator=gen, device=device, dtype=torch.int64)
        else:
            raise ValueError(f"unknown loss {loss}")
    x = x.contiguous().requires_grad_(True)
    return x, y.contiguous()


# --------------------------------------------------------------------------- timing


def median_ms(call, device: torch.device, budget: float, warmup: int = 3, lo: int = 3, hi: int = 100) -> float:
    """Median ms of `call` after `warmup` untimed calls; calls until `budget` seconds have
    passed, at least `lo` and at most `hi`."""
    cuda = device.type == "cuda"
    for _ in range(warmup):
        call()
    if cuda:
        torch.cuda.synchronize(device)
        start_ev = torch.cuda.Event(enable_timing=True)
        end_ev = torch.cuda.Event(enable_timing=True)
    samples = []
    t0 = time.perf_counter()
    while len(samples) < lo or (time.perf_counter() - t0 < budget and len(samples) < hi):
        if cuda:
            torch.cuda.synchronize(device)
            start_ev.record()
            call()
            end_ev.record()
            torch.cuda.synchronize(device)
            samples.append(start_ev.elapsed_time(end_ev))
        else:
            t = time.perf_counter()
            call()
            samples.append((time.perf_counter() - t) * 1e3)
    return statistics.median(samples)


def copy_gbps(nbytes: int, device: torch.device, budget: float) -> float:
    """GB/s of dst.copy_(src) moving `nbytes` (src and dst of nbytes/2 each, float32)."""
    n = max(1, -(-(nbytes // 2) // 4))
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, budget)
    moved = 2 * n * 4
    del src, dst
    return moved / (ms * 1e6)


def is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.cuda.OutOfMemoryError) or isinstance(e, MemoryError):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text


def free(device: torch.device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def short(e: BaseException, limit: int = 120) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    first = text[0] if text else type(e).__name__
    first = first.replace("|", "/")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def bench_row(loss: str, dims: list[int], device: torch.device, args, gen: torch.Generator) -> dict:
    nbytes = effective_bytes(loss, dims)
    row = {
        "loss": loss,
        "dims": dims,
        "bytes": nbytes,
        "eager_ms": None,
        "eager_gbps": None,
        "compile_ms": None,
        "compile_gbps": None,
        "compile_s": None,
        "copy_gbps": None,
        "percent_of_copy": None,
        "note": "",
    }
    notes = []
    fn = LOSSES[loss]
    x = y = None
    try:
        x, y = make_operands(loss, dims, device, gen)

        def eager():
            x.grad = None
            fn(x, y).backward()

        eager()
        if x.grad is None or x.grad.shape != x.shape:
            raise RuntimeError("no gradient computed")
        ms = median_ms(eager, device, args.budget)
        row["eager_ms"] = ms
        row["eager_gbps"] = nbytes / (ms * 1e6)
    except Exception as e:  # noqa: BLE001
        if is_oom(e):
            notes.append("OOM")
        else:
            notes.append(f"eager failed: {short(e)}")
        x = y = None
        free(device)

    if args.compile and x is not None:
        try:
            # A fresh dynamo cache per row: each shape is compiled statically, and no
            # row falls back to eager by reaching the recompile limit.
            torch._dynamo.reset()
            compiled_fn = torch.compile(fn, dynamic=False, fullgraph=True)

            def compiled():
                x.grad = None
                compiled_fn(x, y).backward()

            t = time.perf_counter()
            compiled()  # compiles forward and (through AOTAutograd) backward
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            row["compile_s"] = time.perf_counter() - t
            ms = median_ms(compiled, device, args.budget)
            row["compile_ms"] = ms
            row["compile_gbps"] = nbytes / (ms * 1e6)
            notes.append(f"compile {row['compile_gbps']:.1f} GB/s, compiled in {row['compile_s']:.1f} s")
        except Exception as e:  # noqa: BLE001
            if is_oom(e):
                notes.append("compile: OOM")
            else:
                notes.append(f"compile failed: {short(e)}")
            if args.verbose:
                traceback.print_exc()
        free(device)

    x = y = None
    free(device)

    if device.type == "cuda":
        try:
            row["copy_gbps"] = copy_gbps(nbytes, device, args.budget)
            if row["eager_gbps"] is not None:
                row["percent_of_copy"] = 100.0 * row["eager_gbps"] / row["copy_gbps"]
                notes.insert(0, f"eager {row['percent_of_copy']:.0f}% of copy")
        except Exception as e:  # noqa: BLE001
            notes.append("copy: OOM" if is_oom(e) else f"copy failed: {short(e)}")
            free(device)

    row["note"] = "; ".join(notes)
    return row


# --------------------------------------------------------------------------- report


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(idx)
        return (
            f"{torch.cuda.get_device_name(idx)} ({props.total_memory / 2**30:.0f} GiB, "
            f"CUDA {torch.version.cuda})"
        )
    return f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)"


def table(report: dict) -> str:
    def cell(v, digits):
        return "-" if v is None else f"{v:.{digits}f}"

    out = (
        f"device: {report['device']}; torch {report['torch']}; threads {report['threads']}; "
        f"{report['date']}; suite {report['suite']}\n\n"
    )
    out += "| loss | shape | MB moved | torch eager ms | eager GB/s | torch.compile ms | copy GB/s | note |\n"
    out += "|---|---|---:|---:|---:|---:|---:|---|\n"
    for r in report["rows"]:
        shape = "×".join(str(d) for d in r["dims"])
        out += (
            f"| {r['loss']} | {shape} | {r['bytes'] / 1e6:.1f} | {cell(r['eager_ms'], 3)} | "
            f"{cell(r['eager_gbps'], 2)} | {cell(r['compile_ms'], 3)} | {cell(r['copy_gbps'], 2)} | "
            f"{r['note']} |\n"
        )
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=sorted(SUITES), default="default")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave as is)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of each loss")
    p.add_argument("--loss", default=None, help="only losses whose name contains this")
    p.add_argument("--json", default=None, metavar="FILE", help="write every row and the run's description here")
    p.add_argument("--budget", type=float, default=0.5, metavar="SECONDS", help="timing budget per row and mode")
    p.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = p.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch.cuda.is_available() is False")
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    suite = SUITES[args.suite]
    cases = [(l, d) for l in ELEMENTWISE for d in suite["elementwise"]]
    cases += [(l, d) for l in ROW_WISE for d in suite["rows"]]
    if args.loss:
        cases = [(l, d) for l, d in cases if args.loss in l]
    if not cases:
        p.error(f"no loss name contains {args.loss!r}")

    report = {
        "device": describe_device(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": threads,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "suite": args.suite,
        "budget_s": args.budget,
        "compile": args.compile,
        "python": platform.python_version(),
        "rows": [],
    }
    print(f"{report['device']}; torch {report['torch']}; {threads} threads; {len(cases)} rows", file=sys.stderr)

    gen = torch.Generator(device=device)
    gen.manual_seed(7)
    started = time.perf_counter()
    for i, (loss, dims) in enumerate(cases):
        print(f"[{i + 1}/{len(cases)}] {loss} {'×'.join(map(str, dims))} ...", end="", file=sys.stderr, flush=True)
        t = time.perf_counter()
        row = bench_row(loss, dims, device, args, gen)
        report["rows"].append(row)
        eager = "-" if row["eager_ms"] is None else f"{row['eager_ms']:.3f} ms"
        extra = f" ({row['note']})" if row["note"] else ""
        print(f" {eager}{extra} [{time.perf_counter() - t:.1f} s]", file=sys.stderr, flush=True)
    report["wall_s"] = time.perf_counter() - started

    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print(f"wrote {args.json}", file=sys.stderr)
    print(table(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
