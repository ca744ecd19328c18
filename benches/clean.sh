#!/usr/bin/env bash
# Cleaning throughput: steel vs data-juicer on the same documents and recipe, in one run.
#
# 1. `steel bench clean`: Steel's text recipe over the text samples concatenated to >= 200 MB
#    (22 copies), at 1 and 2 threads, and each operator alone on 2 copies (19 MB).
# 2. data-juicer 1.6.1 (installed from PyPI into target/bench-venv-dj) and steel on the same
#    2-copy input and recipe without perplexity_filter (data-juicer downloads its KenLM model
#    at run time, which this machine cannot), at 1 and 2 processes / threads; then the two
#    outputs are compared document by document.
#
# usage: benches/clean.sh [COPIES]     (run from the repository root)
set -euo pipefail
copies="${1:-22}"
work=target/bench-clean
recipe=../shared/data/recipes/steel_text.yaml
cargo build --release --quiet
steel=./target/release/steel

echo "== steel, whole recipe at ${copies} copies and each operator alone" >&2
"$steel" bench clean --copies "$copies" --work "$work"

venv=target/bench-venv-dj
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  # py-data-juicer 1.6.1 pins opencc 1.1.9: the version its chinese_convert_mapper is judged by.
  "$venv/bin/pip" install --quiet py-data-juicer==1.6.1 aiohttp ftfy opencc==1.1.9 'selectolax<1.0' simhash-pybind scipy >&2
fi
input="$work/input-x2.jsonl"
noppl="$work/steel_text_noppl.yaml"
"$venv/bin/python" - "$recipe" "$noppl" <<'PY'
import sys, yaml
recipe = yaml.safe_load(open(sys.argv[1]))
recipe["process"] = [op for op in recipe["process"] if next(iter(op)) != "perplexity_filter"]
yaml.safe_dump(recipe, open(sys.argv[2], "w"), allow_unicode=True)
PY
for np in 1 2; do
  echo "== data-juicer, np=$np, $input" >&2
  rm -rf "$work/dj-$np"
  "$venv/bin/python" benches/clean_datajuicer.py "$recipe" "$input" "$work/dj-$np" "$np" --drop perplexity_filter >"$work/dj-$np.log" 2>&1
  cat "$work/dj-$np/result.json"
  grep -o 'Job completed successfully in [0-9.]*s' "$work/dj-$np.log" | sed 's/^/data-juicer says: /' >&2 || true
  echo "== steel, $np thread(s), same input and recipe" >&2
  rm -rf "$work/steel-$np"
  "$steel" clean -t "$np" --recipe "$noppl" -o "$work/steel-$np" --json "$input" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"tool":"steel","threads":d["threads"],"docs_in":d["docs_in"],"docs_out":d["docs_out"],"seconds":round(d["seconds"],2)}))'
done
echo "== output agreement (steel vs data-juicer, np=1)" >&2
python3 benches/clean_compare.py "$work/steel-1/part-00000.jsonl" "$work/dj-1/processed.jsonl"
