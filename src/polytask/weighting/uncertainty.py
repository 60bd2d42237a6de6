"""``uncertainty``: homoscedastic-uncertainty weighting of Kendall, Gal & Cipolla 2018, "Multi-task learning using
uncertainty to weigh losses for scene geometry and semantics" (CVPR).

Each task t has a learnable s_t = log σ_t² (initialised to 0, i.e. weight 1) and

    total = Σ_t exp(−s_t)·L_t + s_t

The paper writes its losses with log σ; in terms of s (log σ = s/2) they are ½·exp(−s)·L + ½·s for regression
(Gaussian likelihood) and exp(−s)·L + ½·s for classification (the paper's softmax approximation). We use the single
form above for every task type, documented here because it is a choice: it is the regression form times 2 (same
minimiser), it needs no per-task-type branch (a weighting does not know task types), and for classification it only
doubles the weight the paper's form settles at (1/L instead of 1/(2L)). As the paper advises, s = log σ² is learnt
rather than σ: numerically stable and free of a positivity constraint. The regulariser s_t is what stops the trivial
solution s_t → ∞ (all weights → 0). For a constant loss L_t, ∂total/∂s_t = 1 − exp(−s_t)·L_t vanishes at
s_t = log L_t, so each weight settles at 1/L_t: every task then contributes a weighted loss of about 1, whatever the
ratio of raw loss scales, rather than the largest dominating.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel

from polytask.sampling.base import Progress
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingContext, WeightingParams


class UncertaintyParams(WeightingParams):
    """No parameters; the learning rate of s_t is the trainer's ``weighting_lr``."""


@WEIGHTINGS.register("uncertainty")
class UncertaintyWeighting(LossWeighting):
    """Homoscedastic uncertainty weighting (Kendall et al. 2018), learned with its regulariser.

    total = Σ_t exp(−s_t)·L_t + s_t with learnable ``log_var`` = s [K]; reported weights are exp(−s_t)."""

    Params: ClassVar[type[WeightingParams]] = UncertaintyParams
    learnable: ClassVar[bool] = True

    def __init__(self, task_names: list[str], params: BaseModel) -> None:
        super().__init__(task_names, params)
        # One [K] tensor rather than a ParameterDict: task names may contain dots, which module keys may not.
        self.log_var = torch.nn.Parameter(torch.zeros(len(self.task_names)))

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        index = torch.tensor([self.index[name] for name in losses], device=self.log_var.device)
        s = self.log_var[index]  # [P], P = tasks present
        values = torch.stack([loss.float() for loss in losses.values()])  # [P]
        precision = torch.exp(-s)
        terms = precision * values + s  # task t's term holds its own regulariser s_t
        return dict(zip(losses, terms.unbind())), dict(zip(losses, precision.detach().tolist()))
