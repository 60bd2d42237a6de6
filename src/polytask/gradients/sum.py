"""``sum``: the plain gradient of the weighted total, Σ_t ∇(w_t·L_t): ordinary backpropagation, no per-task
gradients (the default; what every multi-task trainer does)."""

from __future__ import annotations

from typing import ClassVar

import torch

from polytask.gradients.base import GRADIENT_METHODS, GradientMethod
from polytask.sampling.base import Progress


@GRADIENT_METHODS.register("sum")
class Sum(GradientMethod):
    """Plain backpropagation of the weighted total (no per-task gradients): the default."""

    needs_task_gradients: ClassVar[bool] = False

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str], progress: Progress
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        return jacobian.sum(0), {t: 1.0 for t in tasks}  # used only if a caller hands it a Jacobian anyway
