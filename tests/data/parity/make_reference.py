"""PyTorch references for `tests/parity.rs`: load each model directory Steel wrote with
`transformers`, run a fixed sequence, and write its logits and loss (`reference.json`) and the
gradient of every parameter (`grads.safetensors`).

Steel's softmax-MoE is loaded through the modeling code Steel ships,
`trainer/hf/modeling_steel.py` (the fixture keeps no copy of it, which could drift): the
directory is copied with it into a temporary one, and `reference.json` records the file's
CRC-32, which `tests/parity.rs` checks against the shipped file.

    python tests/data/parity/make_reference.py        (needs torch and transformers)

Top-k models add the load-balancing loss as transformers does when `output_router_logits` is on:
`loss = cross_entropy + router_aux_loss_coef * aux_loss`.
"""

import json
import os
import shutil
import tempfile
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
MODELING_STEEL = os.path.join(HERE, "..", "..", "..", "trainer", "hf", "modeling_steel.py")
SEQUENCE = [3, 17, 42, 8, 8, 61, 5, 29, 33, 12, 50, 7, 1]


def main():
    torch.manual_seed(0)
    with open(MODELING_STEEL, "rb") as f:
        modeling_steel = f.read()
    scratch = tempfile.mkdtemp()
    for name in ["dense", "softmax", "topk"]:
        directory = os.path.join(HERE, name)
        loaded = os.path.join(scratch, name)
        shutil.copytree(directory, loaded)
        with open(os.path.join(directory, "config.json")) as f:
            remote = "auto_map" in json.load(f)
        if remote:
            shutil.copy(MODELING_STEEL, os.path.join(loaded, "modeling_steel.py"))
        model = AutoModelForCausalLM.from_pretrained(
            loaded, dtype=torch.float32, attn_implementation="eager", trust_remote_code=True
        )
        model.train(False)
        ids = torch.tensor([SEQUENCE[:-1]])
        targets = torch.tensor(SEQUENCE[1:])
        moe = model.config.model_type == "qwen2_moe"
        out = model(input_ids=ids, output_router_logits=True) if moe else model(input_ids=ids)
        logits = out.logits[0]
        loss = F.cross_entropy(logits, targets)
        if moe:
            loss = loss + model.config.router_aux_loss_coef * out.aux_loss
        loss.backward()
        grads = {}
        for n, p in model.named_parameters():
            g = p.grad.detach()
            # transformers 5 fuses a layer's experts into `experts.gate_up_proj` [E, 2w, d] and
            # `experts.down_proj` [E, d, w]; name them per expert as the checkpoint does.
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
        save_file(grads, os.path.join(directory, "grads.safetensors"))
        reference = {
            "ids": SEQUENCE[:-1],
            "targets": SEQUENCE[1:],
            "logits": logits.detach().flatten().tolist(),
            "loss": loss.item(),
            "torch": torch.__version__,
        }
        if remote:
            reference["modeling_steel_crc32"] = zlib.crc32(modeling_steel)
        with open(os.path.join(directory, "reference.json"), "w") as f:
            json.dump(reference, f)
        print(name, "loss", loss.item())
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
