#!/usr/bin/env python3
"""Runs every example and checks the outputs the README quotes.

Usage: examples.py NAME... (the examples to run, which must be every file in examples/,
so that a new example is named in .ci/run or CI fails).

A quote is marked in README.md by a line `<!-- output: NAME -->`; the block after it
(a fenced block, or the lines up to the next blank line, e.g. a table) must appear in
the output of `cargo run --release --example NAME`, line by line (each quoted line is a
line of the output, stripped of surrounding spaces). Every example in examples/ runs,
quoted or not, and must exit 0.
"""
import pathlib
import re
import subprocess
import sys
import tomllib

root = pathlib.Path(__file__).resolve().parent.parent
readme = (root / "README.md").read_text().splitlines()

quotes = {}
for i, line in enumerate(readme):
    m = re.fullmatch(r"\s*<!-- output: (\w+) -->\s*", line)
    if not m:
        continue
    block, j = [], i + 1
    fenced = j < len(readme) and readme[j].strip().startswith("```")
    if fenced:
        j += 1
        while not readme[j].strip().startswith("```"):
            block.append(readme[j])
            j += 1
    else:
        while j < len(readme) and readme[j].strip():
            block.append(readme[j])
            j += 1
    quotes.setdefault(m.group(1), []).extend(l.strip() for l in block if l.strip())

examples = sorted(p.stem for p in (root / "examples").glob("*.rs"))
if sorted(sys.argv[1:]) != examples:
    sys.exit(f"examples.py was given {sorted(sys.argv[1:])}, examples/ has {examples}")
missing = sorted(set(quotes) - set(examples))
if missing:
    sys.exit(f"README quotes the output of examples that do not exist: {missing}")
# An example that needs features (the burn example) runs with them, as its doc says.
manifest = tomllib.loads((root / "Cargo.toml").read_text())
features = {e["name"]: e.get("required-features", []) for e in manifest.get("example", [])}
failed = []
for name in examples:
    print(f"== example {name}", flush=True)
    extra = ["--features", ",".join(features[name])] if features.get(name) else []
    run = subprocess.run(["cargo", "run", "--release", "-q", *extra, "--example", name], cwd=root, capture_output=True, text=True)
    print(run.stdout, end="")
    if run.returncode != 0:
        print(run.stderr, end="")
        failed.append(f"{name}: exit {run.returncode}")
        continue
    lines = {l.strip() for l in run.stdout.splitlines()}
    absent = [q for q in quotes.get(name, []) if q not in lines]
    if absent:
        failed.append(f"{name}: the README quotes lines its output does not have:\n  " + "\n  ".join(absent))
    else:
        print(f"-- {name}: exit 0, {len(quotes.get(name, []))} quoted lines found")
if failed:
    sys.exit("\n".join(failed))
print(f"examples: {len(examples)} passed, 0 failed")
