"""``gradnorm``: GradNorm of Chen, Badrinarayanan, Lee & Rabinovich 2018, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks" (ICML).

Learnable weights w [K] (start at 1) scale the losses: total = Σ_t w_t·L_t. They are trained, at the trainer's
``weighting_lr``, to equalise the gradient norms the tasks produce on the last shared layer W (the top encoder
block's output projection), corrected by how fast each task trains:

    G_t = ‖∇_W w_t·L_t‖ = w_t·‖∇_W L_t‖,   Ḡ = mean_t G_t,   r_t = (L_t / L_t(0)) / mean_i (L_i / L_i(0))
    L_grad = Σ_t | G_t − Ḡ·r_t^α |   (Ḡ·r_t^α a constant; ∂L_grad flows only into w)

and renormalised after every optimizer step so that Σ_t w_t = K. L_t(0) is the task's loss at its first step
(kept in a buffer). A step that sees only some tasks balances those. Each task costs one extra backward from its
loss to W (through its head and the top block only). Under DDP each process computes its own L_grad and the
gradients of w are averaged, so every process keeps the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from pydantic import BaseModel, Field

from polytask.sampling.base import Progress
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingContext, WeightingParams


class GradNormParams(WeightingParams):
    alpha: float = Field(1.5, ge=0, description="asymmetry: how strongly slower tasks get larger gradients")


@WEIGHTINGS.register("gradnorm")
class GradNormWeighting(LossWeighting):
    """GradNorm (Chen et al. 2018): learned weights that equalise the tasks' gradient norms on the last shared
    layer, corrected by each task's relative training rate."""

    Params: ClassVar[type[WeightingParams]] = GradNormParams
    learnable: ClassVar[bool] = True
    reads_shared_layer: ClassVar[bool] = True
    params: GradNormParams
    initial_loss: torch.Tensor  # a buffer registered in __init__, declared for type checkers

    def __init__(self, task_names: list[str], params: BaseModel) -> None:
        super().__init__(task_names, params)
        self.weight = torch.nn.Parameter(torch.ones(len(self.task_names)))
        self.register_buffer("initial_loss", torch.zeros(len(self.task_names)))

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        names = list(losses)
        index = torch.tensor([self.index[n] for n in names], device=self.weight.device)
        values = torch.stack([losses[n].float() for n in names])  # [P]
        w = self.weight[index]
        terms = w.detach().to(values.device) * values
        if context.shared_layer and any(loss.requires_grad for loss in losses.values()):
            balance = self._balance_loss(names, index, values, w, context)
            terms = terms.clone()
            terms[0] = terms[0] + (balance - balance.detach())  # value unchanged; carries ∂L_grad/∂w into w.grad
        return dict(zip(names, terms.unbind())), dict(zip(names, w.detach().tolist()))

    def _balance_loss(self, names: list[str], index: torch.Tensor, values: torch.Tensor, w: torch.Tensor,
                      context: WeightingContext) -> torch.Tensor:
        with torch.no_grad():
            fresh = self.initial_loss[index] == 0
            self.initial_loss[index] = torch.where(fresh, values.detach().to(self.initial_loss.device),
                                                   self.initial_loss[index])
        norms = []
        for name in names:  # ‖∇_W L_t‖ for each present task, through its head and the top block only
            grads = torch.autograd.grad(values[names.index(name)], context.shared_layer, retain_graph=True,
                                        allow_unused=True)
            squares = [(g.float() ** 2).sum() for g in grads if g is not None]
            # a tensor start: a loss that reaches none of W has norm 0 (the int 0 of a bare sum fails in torch.sqrt)
            norms.append(torch.sqrt(sum(squares, values.new_zeros(()))))
        norm = torch.stack(norms).detach().to(w.device)  # [P]
        g = w * norm
        ratio = values.detach().to(w.device) / self.initial_loss[index].clamp(min=1e-12)
        rate = ratio / ratio.mean()
        target = (g.mean() * rate ** self.params.alpha).detach()
        return (g - target).abs().sum()

    @torch.no_grad()
    def end_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Renormalise to Σ w = K (and keep the weights positive), as the paper does after each update."""
        self.weight.clamp_(min=1e-6)
        self.weight.mul_(len(self.task_names) / self.weight.sum())
