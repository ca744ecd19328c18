"""Steel's softmax mixture-of-experts for `transformers`, written by `steel export hf` (and into
every checkpoint of such a model) next to `config.json`, whose `auto_map` points here:

    AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True)

The model is Qwen2 with each layer's MLP replaced by a gate `Linear(d, n_experts)` with bias,
a softmax over experts, and every expert run on every token, outputs mixed by the softmax
weights. Experts are SwiGLU (`gate_proj`, `up_proj`, `down_proj`) or, as in Steel-LLM,
dual-SwiGLU: `h = silu(w_g1 x) * w_u1 x`, `y = silu(w_g2 h) * w_u2 h`.
"""

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen2ForCausalLM


class SwiGLU(nn.Module):
    def __init__(self, hidden, width):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, width, bias=False)
        self.up_proj = nn.Linear(hidden, width, bias=False)
        self.down_proj = nn.Linear(width, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DualSwiGLU(nn.Module):
    def __init__(self, hidden, width):
        super().__init__()
        self.w_g1 = nn.Linear(hidden, width, bias=False)
        self.w_u1 = nn.Linear(hidden, width, bias=False)
        self.w_g2 = nn.Linear(width, hidden, bias=False)
        self.w_u2 = nn.Linear(width, hidden, bias=False)

    def forward(self, x):
        h = F.silu(self.w_g1(x)) * self.w_u1(x)
        return F.silu(self.w_g2(h)) * self.w_u2(h)


class SteelSoftmaxMoE(nn.Module):
    def __init__(self, config):
        super().__init__()
        hidden, width, n = config.hidden_size, config.moe_intermediate_size, config.num_experts
        expert = DualSwiGLU if config.steel_expert_mlp == "dual_swiglu" else SwiGLU
        self.gate = nn.Linear(hidden, n, bias=True)
        self.experts = nn.ModuleList([expert(hidden, width) for _ in range(n)])

    def forward(self, x):
        weights = F.softmax(self.gate(x), dim=-1)
        outputs = torch.stack([expert(x) for expert in self.experts], dim=-2)
        return (outputs * weights.unsqueeze(-1)).sum(dim=-2)


class SteelForCausalLM(Qwen2ForCausalLM):
    def __init__(self, config):
        super().__init__(config)
        for layer in self.model.layers:
            layer.mlp = SteelSoftmaxMoE(config)
        self.post_init()
