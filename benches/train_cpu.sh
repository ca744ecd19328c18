#!/usr/bin/env bash
# CPU training throughput of the tiny presets: steel's CPU reference next to PyTorch on the
# same configuration, sequence length and micro-batch, in one run.
#
# Needs a Python with torch and transformers: PYTHON=/path/to/python (default: python3).
# usage: benches/train_cpu.sh [STEPS]     (run from the repository root)
set -euo pipefail
steps="${1:-30}"
python="${PYTHON:-python3}"
work=target/bench-train
seq=256
micro=2
cargo build --release --quiet
steel=./target/release/steel
if [ ! -d "$work/demo/chunks" ]; then
  rm -rf "$work" && mkdir -p "$work"
  "$steel" demo --dir "$work/demo" >/dev/null 2>&1
fi
for preset in tiny-dense tiny-topk-moe tiny-softmax-moe; do
  for threads in 1 2; do
    rm -rf "$work/run-$preset"
    start=$(date +%s.%N)
    "$steel" train -t "$threads" --preset "$preset" --data "$work/demo/chunks" --seq "$seq" \
      --micro-batch "$micro" --steps "$steps" --out "$work/run-$preset" --checkpoint-every "$steps" 2>/dev/null
    end=$(date +%s.%N)
    python3 -c "import json,sys; s,e,n=float(sys.argv[1]),float(sys.argv[2]),int(sys.argv[3]); print(json.dumps({'tool':'steel','preset':sys.argv[4],'threads':int(sys.argv[5]),'tokens':n,'seconds':round(e-s,3),'tokens_per_s':round(n/(e-s))}))" \
      "$start" "$end" "$((steps * micro * seq))" "$preset" "$threads"
  done
  if [ "$preset" != tiny-softmax-moe ]; then  # transformers has no class for Steel's softmax-MoE
    rm -rf "$work/hf-$preset"
    "$steel" export hf --checkpoint "$work/run-$preset/step-$(printf %08d "$steps")" --output "$work/hf-$preset" 2>/dev/null
    for threads in 1 2; do
      "$python" benches/train_torch.py "$work/hf-$preset" "$seq" "$micro" "$steps" "$threads" 2>/dev/null
    done
  fi
done
