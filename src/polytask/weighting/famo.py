"""``famo``: Fast Adaptive Multitask Optimization of Liu, Liu, Stone & Liu 2023, "FAMO: Fast Adaptive Multitask
Optimization" (NeurIPS), O(1) in the number of tasks: no per-task gradients.

Task weights z = softmax(ξ) come from logits ξ [K]. The step minimises Σ_t z_t·log(L_t + ε) / c with
c = Σ_t z_t / (L_t + ε) (a constant to autograd), so task t's loss is scaled by z_t / (c·(L_t + ε)): the update
decreases every task's log-loss at a rate set by z. After the optimizer step the same batches' losses L' are computed
again and the logits move towards the tasks whose log-loss fell least: δ_t = log(L_t + ε) − log(L'_t + ε), the
gradient of z with respect to ξ applied to δ, one Adam step (learning rate ``lr``, L2 ``weight_decay``, as the
paper's code). The Adam state lives in buffers, so a resumed run continues exactly. With a step that sees only some
tasks (``step_mode: source``), z and its update are restricted to the tasks present; every-task steps
(``every_source`` or ``mixed``) are what the paper assumes.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, Field

from polytask.sampling.base import Progress
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingContext, WeightingParams

EPS = 1e-8
BETAS = (0.9, 0.999)


class FAMOParams(WeightingParams):
    lr: float = Field(0.025, gt=0, description="learning rate of the weight logits (the paper's 0.025)")
    weight_decay: float = Field(0.001, ge=0, description="L2 on the weight logits (the paper's gamma, 0.001)")


@WEIGHTINGS.register("famo")
class FAMOWeighting(LossWeighting):
    """FAMO (Liu et al. 2023): weights that equalise the tasks' log-loss decrease, O(1) per step (no per-task
    gradients; one extra forward pass to see the losses after the update)."""

    Params: ClassVar[type[WeightingParams]] = FAMOParams
    needs_losses_after_step: ClassVar[bool] = True
    params: FAMOParams
    # the buffers registered in __init__, declared for type checkers (register_buffer is invisible to them)
    logits: torch.Tensor
    adam_m: torch.Tensor
    adam_v: torch.Tensor
    before_sum: torch.Tensor
    before_count: torch.Tensor
    adam_t: torch.Tensor

    def __init__(self, task_names: list[str], params: BaseModel) -> None:
        super().__init__(task_names, params)
        k = len(self.task_names)
        self.register_buffer("logits", torch.zeros(k))
        for name in ("adam_m", "adam_v", "before_sum", "before_count"):
            self.register_buffer(name, torch.zeros(k))
        self.register_buffer("adam_t", torch.zeros((), dtype=torch.long))

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        index = torch.tensor([self.index[n] for n in losses], device=self.logits.device)
        values = torch.stack([loss.float() for loss in losses.values()])  # [P]
        z = torch.softmax(self.logits[index], dim=0).to(values.device)
        shifted = values + EPS
        c = (z / shifted.detach()).sum()
        terms = z * torch.log(shifted) / c
        with torch.no_grad():  # the losses before the update, for after_step (summed over micro-batches)
            self.before_sum.index_add_(0, index, values.detach().to(self.logits.device))
            self.before_count.index_add_(0, index, torch.ones_like(values, device=self.logits.device))
        scale = (z / (c * shifted)).detach()  # the factor each raw loss gets in the gradient
        return dict(zip(losses, terms.unbind())), dict(zip(losses, scale.tolist()))

    @torch.no_grad()
    def after_step(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext) -> None:
        before = context.mean(self.before_sum) / context.mean(self.before_count).clamp(min=1)
        seen = context.mean(self.before_count) > 0
        self.before_sum.zero_()
        self.before_count.zero_()
        present = [n for n in losses if bool(seen[self.index[n]])]
        if not present:
            return
        index = torch.tensor([self.index[n] for n in present], device=self.logits.device)
        after = torch.stack([losses[n].float().to(self.logits.device) for n in present])
        delta = torch.log(before[index] + EPS) - torch.log(after + EPS)
        with torch.enable_grad():
            xi = self.logits[index].clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(torch.softmax(xi, dim=0), xi, grad_outputs=delta)
        grad = grad + self.params.weight_decay * self.logits[index]
        self.adam_t.add_(1)
        t = int(self.adam_t)
        m = BETAS[0] * self.adam_m[index] + (1 - BETAS[0]) * grad
        v = BETAS[1] * self.adam_v[index] + (1 - BETAS[1]) * grad * grad
        self.adam_m[index], self.adam_v[index] = m, v
        step = self.params.lr * (m / (1 - BETAS[0] ** t)) / ((v / (1 - BETAS[1] ** t)).sqrt() + 1e-8)
        self.logits[index] -= step
