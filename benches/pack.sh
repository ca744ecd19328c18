#!/usr/bin/env bash
# Tokenisation + packing throughput: `steel bench pack` next to Python `tokenizers`
# encode_batch on the same documents and tokenizer file, in one run. Installs the Python
# `tokenizers` wheel from PyPI into a virtual environment under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "tokenizers==0.22.*"
cargo build --release --quiet
tokenizer=../shared/data/tokenizers/qwen1_5/tokenizer.json
./target/release/steel bench pack --tokenizer "$tokenizer" --work target/bench-pack "$@"
for threads in 1 2; do
    "$venv/bin/python" benches/pack_python.py "$tokenizer" target/bench-pack/input "$threads"
done
