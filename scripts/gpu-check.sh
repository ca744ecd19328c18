#!/usr/bin/env bash
# The first-run script for the GPU machine: every GPU test suite, a compute-sanitizer pass of
# the kernel tests, the training benchmark for steel-1b, dense-1b and topk-moe-2b at seq 2048
# and PyTorch's baseline for the same three, all in one go, each step under `timeout` and
# continuing past failures, within about 8 minutes. It writes at most eight files under
# OUTDIR (what a device run brings back): summary.txt (one line per step: ok / FAILED /
# TIMEOUT / SKIPPED, with its time), tests.log, sanitizer.log, bench.jsonl and bench.err,
# torch.jsonl and torch.err, device.txt.
#
#   scripts/gpu-check.sh OUTDIR [BUNDLE]
#
# BUNDLE (default gpu-bundle/) is what scripts/gpu-bundle.sh builds here, where Rust is: the
# `steel` binary, the GPU test binaries and a copy of ../shared/bench/torch_baseline.py. It
# is ignored by git, so the device run must carry it, and OUTDIR must lie under $OUT:
#   run(command="scripts/gpu-check.sh $OUT/check", carry=["gpu-bundle"], timeout_s=560)
# Without a GPU (this machine) it runs to its summary in well under a minute, every GPU step
# reporting that there is no driver: that is its rehearsal.
# Exit status: 0 when every step passed.
set -uo pipefail
out="${1:?usage: scripts/gpu-check.sh OUTDIR [BUNDLE]}"
root="$(cd "$(dirname "$0")/.." && pwd)"
bundle="${2:-$root/gpu-bundle}"
steps="${BENCH_STEPS:-3}"
mkdir -p "$out"
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
if [ -f "$bundle/bundle.tar.gz" ]; then
  unpacked="$(mktemp -d)"
  tar -C "$unpacked" -xzf "$bundle/bundle.tar.gz"
  bundle="$unpacked"
fi
[ -x "$bundle/steel" ] || { echo "missing $bundle/steel: run scripts/gpu-bundle.sh first" >&2; exit 2; }
summary="$out/summary.txt"
tests="$out/tests.log"
: > "$summary"
: > "$tests"
status=0
start_all=$(date +%s)

# The whole script's time: a device command may run 600 s; the steps share what is left of
# BUDGET seconds, each cut to it, and a step with under 20 s left is skipped.
budget="${BUDGET:-540}"

# step NAME LIMIT LOG COMMAND...: runs COMMAND under `timeout LIMIT` (less if the budget is
# nearly spent), its output appended to LOG, and a line in the summary.
step() {
  local name="$1" limit="$2" log="$3"
  shift 3
  local started result left
  left=$(( budget - ($(date +%s) - start_all) ))
  if [ "$left" -lt 20 ]; then
    echo "SKIPPED  $name (out of time: ${left}s of the ${budget}s budget left)" >> "$summary"
    status=1
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local before
  before=$( (wc -l < "$log") 2> /dev/null || echo 0)
  started=$(date +%s)
  echo "===== $name" >> "$log"
  timeout "$limit" "$@" >> "$log" 2>&1
  result=$?
  local took=$(( $(date +%s) - started ))
  case $result in
    0) echo "ok       $name (${took}s)" >> "$summary" ;;
    124|137) echo "TIMEOUT  $name (after ${limit}s)" >> "$summary"; status=1 ;;
    *)
      # The first panic (a test), or else the output's last line (an error's cause).
      local new reason
      new="$(tail -n +$((before + 1)) "$log")"
      reason="$(grep -m1 -A1 'panicked' <<< "$new" | tr '\n' ' ' || true)"
      [ -n "$reason" ] || reason="$(grep -m1 -A3 '^Error:' <<< "$new" | tr -s '\n ' ' ' || true)"
      [ -n "$reason" ] || reason="$(grep -v '^[[:space:]]*$' <<< "$new" | tail -n1)"
      echo "FAILED   $name (exit $result, ${took}s): ${reason:0:300}" >> "$summary"
      status=1
      ;;
  esac
  echo "$(tail -n1 "$summary")" >&2
}

nvidia-smi > "$out/device.txt" 2>&1 || echo "no nvidia-smi: no GPU driver on this machine" > "$out/device.txt"
echo "device: $(head -n1 "$out/device.txt")" >> "$summary"

# 1. Every GPU test suite (kernels against their CPU twins, the model and training against the
#    CPU reference, generation), one test thread, each suite within its own limit.
for suite in cuda_ops train_cuda generate_cuda; do
  if [ -x "$bundle/$suite" ]; then
    step "tests $suite" 120 "$tests" "$bundle/$suite" --ignored --test-threads=1
    grep -E "^test result|FAILED|panicked" "$tests" | tail -n 3 >&2
  else
    echo "SKIPPED  tests $suite (not in the bundle)" >> "$summary"
  fi
done

# 2. compute-sanitizer over the kernel tests, where the machine has it.
sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2> /dev/null || true)"
if [ -n "$sanitizer" ] && [ -x "$bundle/cuda_ops" ]; then
  step "compute-sanitizer memcheck cuda_ops" 90 "$out/sanitizer.log" \
    "$sanitizer" --tool memcheck --error-exitcode 1 "$bundle/cuda_ops" --ignored --test-threads=1
else
  echo "SKIPPED  compute-sanitizer (not installed)" >> "$summary"
fi

# 3. Throughput, seq 2048: Steel (one warm-up step, $steps timed; the bench checks that the
#    first loss is ln(vocab), as random weights give) and PyTorch eager in the same run.
bench="$out/bench.jsonl"
: > "$bench"
# steel-1b also times SFT-shaped batches (--sft: packed documents, untrained prompts).
for preset in steel-1b dense-1b topk-moe-2b; do
  sft=()
  [ "$preset" = steel-1b ] && sft=(--sft)
  : > "$out/bench.part"
  step "steel bench train $preset ${sft[*]:-}" 120 "$out/bench.part" \
    env RUST_BACKTRACE=0 "$bundle/steel" bench train --device cuda --preset "$preset" --micro-batch 4 \
    --seq 2048 --warmup 1 --steps "$steps" "${sft[@]}"
  grep -h '^{' "$out/bench.part" >> "$bench" || true
  cat "$out/bench.part" >> "$out/bench.err"
done
rm -f "$out/bench.part"
baseline="$bundle/torch_baseline.py"
if [ ! -f "$baseline" ]; then
  echo "SKIPPED  PyTorch baseline (no torch_baseline.py in the bundle)" >> "$summary"
elif ! python3 -c "import torch" 2> /dev/null; then
  echo "SKIPPED  PyTorch baseline (python3 has no torch)" >> "$summary"
else
  step "PyTorch baseline (eager)" 120 "$out/torch.err" python3 "$baseline" --steps "$steps" \
    --runs steel:softmax_moe:4:2048:0,steel:dense:4:2048:0,steel:topk_moe:4:2048:0
  grep -h '^{' "$out/torch.err" > "$out/torch.jsonl" 2> /dev/null || true
fi

echo "total $(( $(date +%s) - start_all ))s, status $status" >> "$summary"
cat "$summary" >&2
exit $status
