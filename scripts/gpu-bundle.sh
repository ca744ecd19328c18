#!/usr/bin/env bash
# Builds, on a machine with Rust (no GPU needed), everything scripts/gpu-check.sh runs on the
# GPU machine — the `steel` binary and the GPU test binaries, with the `cuda` feature,
# stripped and packed with PyTorch's baseline script as gpu-bundle/bundle.tar.gz (ignored by
# git; refused over the 64 MiB a device run carries).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
scripts/cuda-toolchain.sh
cargo build --release --features cuda
bundle="$root/gpu-bundle"
rm -rf "$bundle"
mkdir -p "$bundle"
cp "${CARGO_TARGET_DIR:-$root/target}/release/steel" "$bundle/steel"
# The test binaries: cargo names them with a hash; its JSON messages say which is which.
for spec in "-p steel-kernels --features steel-kernels/cuda --test cuda_ops" "-p steel --features cuda --test train_cuda --test generate_cuda"; do
  # shellcheck disable=SC2086
  cargo test --release $spec --no-run --message-format=json |
    python3 -c '
import json, shutil, sys
for line in sys.stdin:
    msg = json.loads(line)
    exe = msg.get("executable")
    if msg.get("reason") == "compiler-artifact" and exe and msg["target"]["kind"] == ["test"]:
        shutil.copy(exe, sys.argv[1] + "/" + msg["target"]["name"])
' "$bundle"
done
strip "$bundle"/*
# PyTorch's side of the benchmark travels in the bundle too (../shared does not).
cp "$root/../shared/bench/torch_baseline.py" "$bundle/torch_baseline.py"
files=(steel cuda_ops train_cuda generate_cuda torch_baseline.py)
tar -C "$bundle" -czf "$bundle/bundle.tar.gz" "${files[@]}"
(cd "$bundle" && rm "${files[@]}")
size=$(stat -c %s "$bundle/bundle.tar.gz")
[ "$size" -lt $((64 << 20)) ] || { echo "bundle is $size bytes, over the 64 MiB a device run carries" >&2; exit 1; }
ls -la "$bundle"
