"""Run data-juicer on a recipe for `benches/clean.sh`, timing it, and print one JSON line.

usage: clean_datajuicer.py RECIPE INPUT.jsonl OUTPUT_DIR NP [--drop OP ...]

The JSON line also goes to OUTPUT_DIR/result.json (data-juicer redirects stdout to its log).

The recipe is copied with `dataset_path`, `export_path`, `np` set for this run, tracing and
caching off, and the operators named with --drop removed (perplexity_filter downloads KenLM
models at run time, which this machine cannot do).
"""

import json
import os
import sys
import time

import yaml


def main():
    recipe_path, input_path, out_dir, np_ = sys.argv[1:5]
    drop = sys.argv[6:] if len(sys.argv) > 5 and sys.argv[5] == "--drop" else []
    with open(recipe_path) as f:
        recipe = yaml.safe_load(f)
    recipe["process"] = [op for op in recipe["process"] if next(iter(op)) not in drop]
    os.makedirs(out_dir, exist_ok=True)
    recipe.update(
        dataset_path=os.path.abspath(input_path),
        export_path=os.path.join(os.path.abspath(out_dir), "processed.jsonl"),
        np=int(np_),
        open_tracer=False,
        use_cache=False,
        use_checkpoint=False,
        temp_dir=None,
        ds_cache_dir=None,
        work_dir=os.path.abspath(out_dir),
    )
    config_path = os.path.join(out_dir, "recipe.yaml")
    with open(config_path, "w") as f:
        yaml.safe_dump(recipe, f, allow_unicode=True)

    from loguru import logger

    logger.remove()
    from data_juicer.config import init_configs
    from data_juicer.core import DefaultExecutor

    cfg = init_configs(["--config", config_path])
    start = time.time()
    DefaultExecutor(cfg).run()
    seconds = time.time() - start
    docs_out = sum(1 for _ in open(recipe["export_path"], encoding="utf-8"))
    docs_in = sum(1 for _ in open(input_path, encoding="utf-8"))
    size = os.path.getsize(input_path)
    result = json.dumps({
        "tool": "data-juicer",
        "np": int(np_),
        "dropped_ops": drop,
        "docs_in": docs_in,
        "docs_out": docs_out,
        "seconds": round(seconds, 2),
        "docs_per_s": round(docs_in / seconds, 1),
        "mb_per_s": round(size / seconds / 1e6, 2),
    })
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        f.write(result + "\n")
    print(result)


if __name__ == "__main__":
    main()
