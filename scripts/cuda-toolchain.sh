#!/usr/bin/env bash
# Installs the CUDA build toolchain (nvcc, headers, CUTLASS) from PyPI wheels into `.cuda/` at
# the repository root (ignored by git). `kernels/build.rs` finds nvcc there by itself; no GPU,
# driver or apt CUDA is needed to compile. Safe to run again: an existing install is kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.cuda"
find_nvcc() { ls "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc 2> /dev/null | head -n 1; }
if [ -n "$(find_nvcc)" ]; then
  echo "CUDA toolchain already in $venv"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-crt==13.0.*" \
  "nvidia-cuda-cccl==13.0.*" "nvidia-nvvm==13.0.*"
nvcc="$(find_nvcc)"
[ -n "$nvcc" ] || { echo "nvcc not found under $venv after the install" >&2; exit 1; }
"$nvcc" --version | tail -n 2
echo "CUDA toolchain installed in $venv"
