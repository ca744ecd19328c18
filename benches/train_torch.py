"""PyTorch CPU training throughput on a model directory `steel export hf` wrote, for
`benches/train_cpu.sh`: AdamW steps of `micro_batch` sequences of `seq` tokens, timed after
two warm-up steps. Prints one JSON line.

usage: train_torch.py MODEL_DIR SEQ MICRO_BATCH STEPS THREADS
"""

import json
import sys
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM


def main():
    directory, seq, micro_batch, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    vocab = model.config.vocab_size
    moe = model.config.model_type == "qwen2_moe"

    def step():
        batch = torch.randint(0, vocab, (micro_batch, seq + 1))
        out = model(input_ids=batch[:, :-1], output_router_logits=True) if moe else model(input_ids=batch[:, :-1])
        loss = F.cross_entropy(out.logits.reshape(-1, vocab), batch[:, 1:].reshape(-1))
        if moe:
            loss = loss + model.config.router_aux_loss_coef * out.aux_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(2):
        step()
    start = time.time()
    for _ in range(steps):
        step()
    seconds = time.time() - start
    tokens = steps * micro_batch * seq
    print(json.dumps({"tool": "pytorch", "model": directory, "threads": threads, "tokens": tokens,
                      "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds)}))


if __name__ == "__main__":
    main()
