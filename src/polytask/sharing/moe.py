"""A task-routed mixture of experts in the top layers of the encoder.

Task-level routing as in Kudugunta et al., "Beyond Distillation: Task-level Mixture-of-Experts for Efficient
Inference", Findings of EMNLP 2021 (arXiv:2110.03742): the gate reads the task's identity (a learned logit vector
per task), not the token, so every token of a task takes the same experts and a served task needs only its own.
The experts are small feed-forward blocks (H -> hidden -> H, GELU, the output projection zero at start) added as a
residual after each top layer; top-k gating and the load-balancing loss follow Shazeer et al., "Outrageously Large
Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer", ICLR 2017, and Fedus et al., "Switch Transformers",
JMLR 2022 (arXiv:2101.03961): loss = E * sum_e f_e * P_e, f_e the share of the forward's (task, slot) routes that go
to expert e, P_e the tasks' mean gate probability of e; 1 when the load is even. It is added to the objective times
``aux_weight`` and logged apart from the task losses.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from polytask.sharing.base import AuxLoss, LayeredParams, Passes, SplitSharing
from polytask.sharing.registry import SHARING


class MoeParams(LayeredParams):
    experts: int = Field(4, ge=2, description="experts per top layer")
    top_k: int = Field(1, ge=1, description="experts a task uses per layer")
    hidden: int = Field(64, ge=1, description="inner width of an expert")
    layers: int | Literal["all"] = Field(2, description="put experts after the top k layers, or after all")
    aux_weight: float = Field(0.01, ge=0.0, description="coefficient of the load-balancing loss in the objective")


class Experts(nn.Module):
    """E feed-forward experts of one layer, as batched weights: down [E, H, D], up [E, D, H]."""

    def __init__(self, experts: int, width: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Parameter(torch.empty(experts, width, hidden))
        self.down_bias = nn.Parameter(torch.zeros(experts, hidden))
        self.up = nn.Parameter(torch.zeros(experts, hidden, width))  # zero: the layer starts as the shared one
        self.up_bias = nn.Parameter(torch.zeros(experts, width))
        bound = 1.0 / math.sqrt(width)  # nn.Linear's default initialisation of an H -> D layer
        nn.init.uniform_(self.down, -bound, bound)

    def forward(self, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x`` [B, T, H]; ``chosen`` [k] expert indices with ``weights`` [k] -> x + the weighted experts' output."""
        out = x
        for e, w in zip(chosen.tolist(), weights):
            inner = nn.functional.gelu(x @ self.down[e] + self.down_bias[e])
            out = out + w * (inner @ self.up[e] + self.up_bias[e])
        return out


@SHARING.register("moe")
class MoeSharing(SplitSharing):
    Params = MoeParams
    params: MoeParams

    @classmethod
    def check(cls, params: Any, depth: int | None, tasks: list[str]) -> list[str]:
        too_many = [f"top_k: value {params.top_k} is more than the {params.experts} experts"] \
            if params.top_k > params.experts else []
        return super().check(params, depth, tasks) + too_many

    def attach(self, encoder: nn.Module, tasks: list[str]) -> None:
        super().attach(encoder, tasks)
        width = int(getattr(encoder.config, "hidden_size"))
        self.experts = nn.ModuleList(Experts(self.params.experts, width, self.params.hidden) for _ in self.top)
        self.gates = nn.ParameterDict()  # task -> [layers, E] logits: uniform at start
        for name in tasks:
            self.add_task(name)

    def add_task(self, name: str) -> None:
        self.gates[name] = nn.Parameter(torch.zeros(len(self.top), self.params.experts))

    def route(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (gate probabilities [layers, E], chosen experts [layers, k], their weights [layers, k]). One expert:
        its probability (Switch), so the task loss reaches the gate; several: a softmax over the chosen logits."""
        logits = self.gates[name]
        probs = logits.softmax(-1)
        top, chosen = probs.topk(self.params.top_k, dim=-1)
        weights = top if self.params.top_k == 1 else logits.gather(-1, chosen).softmax(-1)
        return probs, chosen, weights

    def encode(self, kwargs: dict[str, Any], names: list[str]) -> tuple[Passes, torch.Tensor]:
        hidden, mask = self.split.bottom(kwargs, self.top.start)
        passes, probs, counts = [], [], torch.zeros(len(self.top), self.params.experts, device=hidden.device)
        for name in names:
            p, chosen, weights = self.route(name)
            x = hidden
            for i, index in enumerate(self.top):
                x = self.experts[i](self.split.layers[index](x, mask), chosen[i], weights[i])
            passes.append(([name], x))
            probs.append(p)
            counts.scatter_add_(1, chosen, torch.ones_like(chosen, dtype=counts.dtype))
        share = counts / counts.sum(-1, keepdim=True)  # f_e per layer
        mean_prob = torch.stack(probs).mean(0)  # P_e per layer
        balance = (self.params.experts * (share * mean_prob).sum(-1)).mean()
        self._aux = {"load_balance": AuxLoss(balance, self.params.aux_weight, "load_balance")}
        return passes, hidden
