"""Write `kenlm_scores.json`: KenLM's own scores for sentences under `kenlm_ref.arpa` (which
`steel lm train --order 3` made from `kenlm_ref.jsonl`), and data-juicer's perplexity formula
applied to them. Run with a Python that has the `kenlm` package:
    python tests/data/clean/make_kenlm_scores.py > tests/data/clean/kenlm_scores.json
"""

import json
import os

import kenlm

here = os.path.dirname(os.path.abspath(__file__))
model = kenlm.Model(os.path.join(here, "kenlm_ref.arpa"))
reference = [json.loads(line)["text"] for line in open(os.path.join(here, "kenlm_ref.jsonl"), encoding="utf-8")]
sentences = [
    "",
    "今天天气很好",
    "中华人民共和国",
    "数学是研究数量的学科",
    "zzz 未见过的字符 ☃",
    "机场 机场 机场",
] + [text[:80] for text in reference[:5]] + [text[40:120] for text in reference[10:15]]
rows = []
for sentence in sentences:
    pieces = [c for c in sentence if not c.isspace()]
    score = model.score(" ".join(pieces), bos=True, eos=True)
    # data-juicer's perplexity_filter on one line of pieces.
    ppl = round(10.0 ** (-score / (len(pieces) + 1)), 1) if pieces else 0.0
    rows.append({"text": sentence, "score": score, "perplexity": ppl})
print(json.dumps(rows, ensure_ascii=False, indent=1))
