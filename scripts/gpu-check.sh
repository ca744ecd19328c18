#!/usr/bin/env bash
# On the GPU machine: runs every GPU kernel test, the model parity and training tests, and
# the training benchmark side by side with PyTorch, writing everything under OUTDIR.
#   scripts/gpu-check.sh OUTDIR [BUNDLE]
# BUNDLE (default gpu-bundle/, its bundle.tar.gz or the three binaries) is what
# scripts/gpu-bundle.sh builds: the GPU machine has no
# Rust toolchain. PyTorch's side runs ../shared/bench/torch_baseline.py (TORCH_BASELINE to
# point elsewhere) when python3 has torch. Exit status: 0 when every test passed.
set -uo pipefail
out="${1:?usage: scripts/gpu-check.sh OUTDIR [BUNDLE]}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bundle="${2:-$root/gpu-bundle}"
baseline="${TORCH_BASELINE:-$root/../shared/bench/torch_baseline.py}"
steps="${BENCH_STEPS:-10}"
mkdir -p "$out"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
if [ -f "$bundle/bundle.tar.gz" ]; then
  unpacked="$(mktemp -d)"
  tar -C "$unpacked" -xzf "$bundle/bundle.tar.gz"
  bundle="$unpacked"
fi
for f in steel cuda_ops train_cuda; do
  [ -x "$bundle/$f" ] || { echo "missing $bundle/$f: run scripts/gpu-bundle.sh first" >&2; exit 2; }
done
nvidia-smi > "$out/device.txt" 2>&1
status=0
# 1. Kernels against their CPU twins; 2. the model and training against the CPU reference.
for suite in cuda_ops train_cuda; do
  echo "== $suite" >&2
  if ! "$bundle/$suite" --ignored --test-threads=1 > "$out/$suite.txt" 2>&1; then
    status=1
  fi
  grep -E "^test result|FAILED|panicked" "$out/$suite.txt" >&2
done
# 3. Throughput: Steel and PyTorch in the same run, seq 2048.
bench="$out/bench.jsonl"
: > "$bench"
for preset in steel-1b dense-1b; do
  for mb in 4 8; do
    echo "== steel bench train $preset micro-batch $mb" >&2
    "$bundle/steel" bench train --device cuda --preset "$preset" --micro-batch "$mb" \
      --seq 2048 --steps "$steps" >> "$bench" 2>> "$out/bench.err" ||
      echo "{\"bench\":\"train\",\"case\":\"$preset\",\"micro_batch\":$mb,\"error\":\"see bench.err\"}" >> "$bench"
  done
done
if [ -f "$baseline" ] && python3 -c "import torch" 2> /dev/null; then
  echo "== PyTorch baseline" >&2
  python3 "$baseline" --steps "$steps" \
    --runs steel:softmax_moe:4:2048:0,steel:softmax_moe:4:2048:1,steel:dense:4:2048:0,steel:dense:4:2048:1 \
    > "$out/torch.jsonl" 2> "$out/torch.err"
else
  echo "no PyTorch baseline run (no $baseline or no torch)" > "$out/torch.err"
fi
cat "$bench" "$out/torch.jsonl" 2> /dev/null >&2
exit $status
