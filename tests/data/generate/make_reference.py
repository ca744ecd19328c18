"""transformers references for Steel's generation and multiple-choice scoring
(`tests/generate_reference.rs`): greedy `generate` token ids for a plain and a chat prompt on
the shared tiny Qwen2 (`../shared/data/hf/tiny-qwen2`, Qwen1.5 tokenizer) and for an id prompt
on each parity model (`tests/data/parity/{dense,softmax,topk}`); the next-token logits of
`A`, `B`, `C`, `D` after a C-Eval and a CMMLU prompt built from the dev sets; and the
distributions transformers' logits processors leave from fixed logits (`warpers`:
repetition penalty, temperature, top-k, top-p, min-p, in the order `generate` applies them).

    python tests/data/generate/make_reference.py > tests/data/generate/reference.json

(needs torch and transformers; CPU is enough). Each greedy run also records, per step, the
gap between the best and second-best logit, so a test can tell a real difference from a tie
that float rounding may break either way.
"""

import csv
import json
import os
import shutil
import tempfile

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..")
SHARED = os.path.join(ROOT, "..", "shared", "data")
TINY = os.path.join(SHARED, "hf", "tiny-qwen2")
TOKENIZER = os.path.join(SHARED, "tokenizers", "qwen1_5", "tokenizer.json")
MODELING_STEEL = os.path.join(ROOT, "trainer", "hf", "modeling_steel.py")
NEW_TOKENS = 16
PLAIN = "今天天气很好，我们"
CHAT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n你好，请介绍一下你自己。<|im_end|>\n<|im_start|>assistant\n"
)
ID_PROMPT = [3, 17, 42, 8, 8, 61, 5]


def load(directory):
    scratch = tempfile.mkdtemp()
    loaded = os.path.join(scratch, "model")
    shutil.copytree(directory, loaded)
    with open(os.path.join(directory, "config.json")) as f:
        if "auto_map" in json.load(f):
            shutil.copy(MODELING_STEEL, os.path.join(loaded, "modeling_steel.py"))
    model = AutoModelForCausalLM.from_pretrained(
        loaded, dtype=torch.float32, attn_implementation="eager", trust_remote_code=True
    )
    model.train(False)
    return model


def greedy(model, ids):
    """`generate` with sampling off and no stop token, and the top-2 gap at each step."""
    out = model.generate(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        top_k=None,
        top_p=None,
        temperature=None,
        eos_token_id=None,
        pad_token_id=0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    tokens = out.sequences[0, len(ids):].tolist()
    gaps = []
    for scores in out.scores:
        top = torch.topk(scores[0], 2).values
        gaps.append(float(top[0] - top[1]))
    return {"prompt_ids": ids, "tokens": tokens, "top2_gaps": gaps}


LOGITS = [2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, 3.0, -2.0, 0.25]
HISTORY = [0, 7, 7, 3]
SETTINGS = [
    {"temperature": 0.7},
    {"top_k": 3},
    {"top_p": 0.9},
    {"min_p": 0.1},
    {"repetition_penalty": 1.3},
    {"repetition_penalty": 1.2, "temperature": 0.8, "top_k": 5, "top_p": 0.8, "min_p": 0.05},
]


def warped(settings):
    """The probabilities `generate` samples from after its processors, for LOGITS after
    HISTORY (as `_get_logits_processor` orders them)."""
    processors = LogitsProcessorList()
    if "repetition_penalty" in settings:
        processors.append(RepetitionPenaltyLogitsProcessor(settings["repetition_penalty"]))
    if "temperature" in settings:
        processors.append(TemperatureLogitsWarper(settings["temperature"]))
    if "top_k" in settings:
        processors.append(TopKLogitsWarper(settings["top_k"]))
    if "top_p" in settings:
        processors.append(TopPLogitsWarper(settings["top_p"]))
    if "min_p" in settings:
        processors.append(MinPLogitsWarper(settings["min_p"]))
    scores = processors(torch.tensor([HISTORY]), torch.tensor([LOGITS]))
    return {"settings": settings, "probs": torch.softmax(scores[0], -1).tolist()}


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def ceval_prompt(subject, zh, shots):
    table = rows(os.path.join(SHARED, "eval", "ceval-dev", f"{subject}_dev.csv"))[1:]
    text = f"以下是中国关于{zh}考试的单项选择题，请选出其中的正确答案。\n\n"
    for row in table[:shots]:
        _, q, a, b, c, d, answer = row[:7]
        text += f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案：{answer}\n\n"
    _, q, a, b, c, d, _ = table[shots][:7]
    return text + f"{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案："


def cmmlu_prompt(subject, zh, shots):
    table = rows(os.path.join(SHARED, "eval", "cmmlu-dev", f"{subject}.csv"))[1:]
    text = f"以下是关于{zh}的单项选择题，请直接给出正确答案的选项。\n\n"
    for row in table[:shots]:
        _, q, a, b, c, d, answer = row[:7]
        text += f"题目：{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案是：{answer}\n\n"
    _, q, a, b, c, d, _ = table[shots][:7]
    return text + f"题目：{q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n答案是："


def main():
    torch.manual_seed(0)
    tokenizer = Tokenizer.from_file(TOKENIZER)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False).ids
    tiny = load(TINY)
    reference = {
        "new_tokens": NEW_TOKENS,
        "tiny_qwen2": {
            "plain": {"text": PLAIN, **greedy(tiny, encode(PLAIN))},
            "chat": {"text": CHAT, **greedy(tiny, encode(CHAT))},
        },
        "parity": {},
        "letters": [],
        "warpers": {"logits": LOGITS, "history": HISTORY, "cases": [warped(s) for s in SETTINGS]},
    }
    for name in ["dense", "softmax", "topk"]:
        model = load(os.path.join(ROOT, "tests", "data", "parity", name))
        reference["parity"][name] = greedy(model, ID_PROMPT)
    letters = [encode(letter)[0] for letter in "ABCD"]
    with open(os.path.join(SHARED, "eval", "ceval_subjects.json"), encoding="utf-8") as f:
        ceval = json.load(f)
    with open(os.path.join(SHARED, "eval", "cmmlu_subjects.json"), encoding="utf-8") as f:
        cmmlu = json.load(f)
    prompts = [
        ("ceval", "computer_network", ceval_prompt("computer_network", ceval["computer_network"]["zh"], 2)),
        ("cmmlu", "agronomy", cmmlu_prompt("agronomy", cmmlu["agronomy"]["zh"], 2)),
    ]
    for benchmark, subject, text in prompts:
        ids = encode(text)
        with torch.no_grad():
            logits = tiny(input_ids=torch.tensor([ids])).logits[0, -1]
        reference["letters"].append({
            "benchmark": benchmark,
            "subject": subject,
            "shots": 2,
            "text": text,
            "ids": ids,
            "letter_ids": letters,
            "letter_logits": [float(logits[i]) for i in letters],
        })
    print(json.dumps(reference, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
