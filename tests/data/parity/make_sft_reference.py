"""PyTorch references for the SFT parity test in `tests/parity.rs`
(`matches_pytorch_masked_sft_loss_and_gradients`): load each tiny model directory Steel wrote
(`dense`, `softmax`, `topk`, the weights `make_reference.py` also uses) with `transformers`, run
one two-turn chat whose prompt spans are untrained, and write the masked loss
(`sft_reference.json`) and the gradient of every parameter (`sft_grads.safetensors`).

To re-run (from the repository root; needs torch and transformers, CPU is enough):

    python tests/data/parity/make_sft_reference.py

It rewrites only the two `sft_*` files of each directory. The weights themselves come from
`STEEL_WRITE_PARITY_MODELS=1 cargo test --test parity`; after rewriting them, run
`make_reference.py` and this script both.

The sequence stands for a ChatML conversation with synthetic ids in the tiny vocabulary:
1 `<|im_start|>`, 2 `<|im_end|>`, 13 a newline, 10/11/12 the roles system/user/assistant.
Trained are the two assistant replies' content tokens and the `<|im_end|>` closing each (what
TRL's assistant-only loss trains); the system and user turns, the role headers and the newline
after each `<|im_end|>` are not. Labels follow transformers' convention: the labels are the
ids with -100 on untrained positions, shifted by one inside the loss (position i predicts
label i + 1), and the loss is the mean cross-entropy over the labels that are not -100.

The model runs on `ids[:-1]` (the last token predicts nothing), as `tests/parity.rs` builds
its row, and the cross-entropy is `F.cross_entropy(logits, labels[1:], ignore_index=-100)`;
the script checks that this equals the cross-entropy transformers' own `labels=` loss gives on
the whole sequence. Top-k models add the load-balancing loss as transformers does when
`output_router_logits` is on, `loss = cross_entropy + router_aux_loss_coef * aux_loss`, with
`aux_loss` over every position the model ran on (untrained ones included), as
`make_reference.py` does.

The softmax-MoE loads through the shipped `trainer/hf/modeling_steel.py`, copied next to a
temporary copy of the directory; `sft_reference.json` records its CRC-32.
"""

import json
import os
import shutil
import tempfile
import zlib

import torch
import transformers
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODELING_STEEL = os.path.join(HERE, "..", "..", "..", "trainer", "hf", "modeling_steel.py")

IM_START, IM_END, NL = 1, 2, 13
SYSTEM, USER, ASSISTANT = 10, 11, 12


def turn(role, content):
    """`<|im_start|>role\\n content <|im_end|>\\n` and which of its tokens are trained."""
    header = [IM_START, role, NL]
    trained = role == ASSISTANT
    ids = header + content + [IM_END, NL]
    mask = [False] * len(header) + [trained] * (len(content) + 1) + [False]
    return ids, mask


CONVERSATION = [
    (SYSTEM, [40, 41, 42, 43]),
    (USER, [20, 21, 22, 23, 24]),
    (ASSISTANT, [30, 31, 32, 33, 34, 35]),
    (USER, [25, 26, 27]),
    (ASSISTANT, [36, 37, 38, 39]),
]


def sequence():
    """The conversation's ids and labels (-100 where untrained)."""
    ids, labels = [], []
    for role, content in CONVERSATION:
        turn_ids, mask = turn(role, content)
        ids += turn_ids
        labels += [t if m else -100 for t, m in zip(turn_ids, mask)]
    return ids, labels


def load(name, scratch, modeling_steel):
    """The model of directory `name`, loaded by transformers from a temporary copy (with the
    shipped modeling_steel.py where its config names remote code); and whether it does."""
    directory = os.path.join(HERE, name)
    loaded = os.path.join(scratch, name)
    shutil.copytree(directory, loaded)
    with open(os.path.join(directory, "config.json")) as f:
        remote = "auto_map" in json.load(f)
    if remote:
        with open(os.path.join(loaded, "modeling_steel.py"), "wb") as f:
            f.write(modeling_steel)
    model = AutoModelForCausalLM.from_pretrained(
        loaded, dtype=torch.float32, attn_implementation="eager", trust_remote_code=True
    )
    model.train(False)
    return model, remote


def named_grads(model):
    """Every parameter's gradient under the checkpoint's names: transformers 5 fuses a layer's
    experts into `experts.gate_up_proj` [E, 2w, d] and `experts.down_proj` [E, d, w], which
    the checkpoint (and Steel's layout) names per expert."""
    grads = {}
    for n, p in model.named_parameters():
        g = p.grad.detach()
        if n.endswith("experts.gate_up_proj"):
            prefix, width = n[: -len("gate_up_proj")], g.shape[1] // 2
            for e in range(g.shape[0]):
                grads[f"{prefix}{e}.gate_proj.weight"] = g[e, :width].contiguous()
                grads[f"{prefix}{e}.up_proj.weight"] = g[e, width:].contiguous()
        elif n.endswith("experts.down_proj"):
            prefix = n[: -len("down_proj")]
            for e in range(g.shape[0]):
                grads[f"{prefix}{e}.down_proj.weight"] = g[e].contiguous()
        else:
            grads[n] = g.contiguous()
    return grads


def main():
    torch.manual_seed(0)
    ids, labels = sequence()
    trained = sum(label != -100 for label in labels[1:])
    assert len(ids) >= 24 and labels[0] == -100, "the sequence opens with the untrained prompt"
    with open(MODELING_STEEL, "rb") as f:
        modeling_steel = f.read()
    scratch = tempfile.mkdtemp()
    for name in ["dense", "softmax", "topk"]:
        model, remote = load(name, scratch, modeling_steel)
        moe = model.config.model_type == "qwen2_moe"
        extra = {"output_router_logits": True} if moe else {}

        # transformers' own masked loss on the whole sequence, for the check below.
        with torch.no_grad():
            full = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]), **extra)
            hf_cross_entropy = full.loss
            if moe:
                hf_cross_entropy = hf_cross_entropy - model.config.router_aux_loss_coef * full.aux_loss

        out = model(input_ids=torch.tensor([ids[:-1]]), **extra)
        logits = out.logits[0]
        cross_entropy = F.cross_entropy(logits, torch.tensor(labels[1:]), ignore_index=-100)
        assert abs(cross_entropy.item() - hf_cross_entropy.item()) < 1e-6, (
            name,
            cross_entropy.item(),
            hf_cross_entropy.item(),
        )
        loss = cross_entropy
        if moe:
            loss = loss + model.config.router_aux_loss_coef * out.aux_loss
        loss.backward()

        directory = os.path.join(HERE, name)
        save_file(named_grads(model), os.path.join(directory, "sft_grads.safetensors"))
        reference = {
            "ids": ids,
            "labels": labels,
            "trained": trained,
            "cross_entropy": cross_entropy.item(),
            "loss": loss.item(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        if moe:
            reference["aux_loss"] = out.aux_loss.item()
        if remote:
            reference["modeling_steel_crc32"] = zlib.crc32(modeling_steel)
        with open(os.path.join(directory, "sft_reference.json"), "w") as f:
            json.dump(reference, f)
        print(name, "loss", loss.item(), "trained", trained, "of", len(ids) - 1)
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
