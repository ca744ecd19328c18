"""Python `tokenizers` encode_batch over the same documents `steel bench pack` packs.

Usage: python3 benches/pack_python.py TOKENIZER INPUT_DIR THREADS
Prints one JSON line in the shape of `steel bench pack`'s. Thread count goes through
RAYON_NUM_THREADS, which the `tokenizers` wheel's Rust core reads.
"""
import json
import os
import sys
import time


def main():
    tokenizer_path, input_dir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(tokenizer_path)
    start = time.perf_counter()
    texts = []
    for name in sorted(os.listdir(input_dir)):
        with open(os.path.join(input_dir, name), encoding="utf-8") as f:
            texts.extend(json.loads(line)["text"] for line in f)
    tokens = 0
    for i in range(0, len(texts), 1024):
        batch = tokenizer.encode_batch(texts[i : i + 1024], add_special_tokens=False)
        tokens += sum(len(e.ids) + 1 for e in batch)  # + the end token Steel appends
    seconds = time.perf_counter() - start
    text_bytes = sum(len(t.encode("utf-8")) for t in texts)
    print(json.dumps({
        "bench": "pack", "case": "python-tokenizers-encode_batch", "threads": threads,
        "docs": len(texts), "text_bytes": text_bytes, "tokens": tokens, "seconds": seconds,
        "tokens_per_s": tokens / seconds, "mb_per_s": text_bytes / 1e6 / seconds,
    }))


if __name__ == "__main__":
    main()
