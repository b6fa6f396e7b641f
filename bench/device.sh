#!/usr/bin/env bash
# One prepared run on a borrowed real GPU (see shared/device.md). Run from the repo root
# on the device machine, after carrying `.gl` (Vulkan/GL loader .debs) and `.device`
# (the release `fused-loss` binary) with the device tool:
#
#   here:   cargo build --release --bins --features burn-defaults && mkdir -p .device && cp target/release/fused-loss .device/
#           (the burn feature adds `bench --peer burn`: burn's own losses, fused-loss from burn
#           and the embedding path on one device)
#           (and download the loader .debs into .gl as shared/device.md shows)
#   there:  bash bench/device.sh        # writes everything under $OUT
#
# It prints the GPU, checks every loss on it, runs the large benchmark suite with the
# PyTorch CUDA comparison (launches tuned, their choices kept in launches.tsv), and ends
# with the tables.
set -uo pipefail
OUT="${OUT:-/tmp/out}"
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export WGPU_BACKEND=vulkan
# Issue 14: launches are tuned on first use (on by default); keep the choices, and the
# bench prints the launch of every row and the tuned kernel-copy ceiling.
export FUSED_LOSS_TUNE=1
export FUSED_LOSS_LAUNCH_CACHE="$OUT/launches.tsv"
bin=./.device/fused-loss

nvidia-smi | tee "$OUT/nvidia-smi.txt"
$bin info | tee "$OUT/info.txt"
timeout 120 $bin check > "$OUT/check.txt" 2>&1
tail -1 "$OUT/check.txt"
python3 bench/torch_compare.py --suite large --device cuda --compile --json "$OUT/torch-cuda-large.json" \
    > "$OUT/torch-cuda-large.md" 2> "$OUT/torch-cuda-large.err"
# f32 for every loss and size (issue 4's targets), then bf16 for the LLM-shaped losses
# (issue 5); each under its own timeout so that one slow part cannot eat the other.
timeout 300 $bin bench --suite large --dtype f32 --torch "$OUT/torch-cuda-large.json" \
    --json "$OUT/bench-large.json" --plot "$OUT/bench-large.svg" --markdown "$OUT/bench-large.md" \
    > "$OUT/bench-large.txt" 2>&1
timeout 150 $bin bench --suite large --dtype bf16 --loss mse,bce_with_logits,cross_entropy,nll \
    --json "$OUT/bench-large-bf16.json" --markdown "$OUT/bench-large-bf16.md" \
    > "$OUT/bench-large-bf16.txt" 2>&1
# Issue 13: burn's losses against fused-loss from burn and the embedding path (burn's
# default fusion and autotune; each path checked against the f64 reference first).
timeout 120 $bin bench --peer burn --json "$OUT/bench-peer-burn.json" --markdown "$OUT/bench-peer-burn.md" \
    > "$OUT/bench-peer-burn.txt" 2>&1
echo "== tuned launches =="
cat "$OUT/launches.tsv" 2>/dev/null
echo "== PyTorch CUDA =="
tail -25 "$OUT/torch-cuda-large.md"
echo "== fused-loss bench --suite large (f32) =="
cat "$OUT/bench-large.md"
echo "== fused-loss bench --suite large --dtype bf16 =="
cat "$OUT/bench-large-bf16.md"
echo "== fused-loss bench --peer burn =="
cat "$OUT/bench-peer-burn.md" 2>/dev/null || tail -5 "$OUT/bench-peer-burn.txt"
