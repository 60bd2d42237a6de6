"""``nash_mtl``: Navon et al. 2022, "Multi-Task Learning as a Bargaining Game" (ICML).

The Nash bargaining solution over the task gradients (solved every update_weights_every steps). The algorithm is
torchjd's ``NashMTL`` (it needs cvxpy and ecos: ``pip install 'polytask[mtl]'``); see ``polytask.gradients.base`` for
how the trainer builds the per-task Jacobian it aggregates. Its solver keeps a warm start between steps that is not
saved in checkpoints: a resumed run solves from scratch once.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from pydantic import BaseModel, Field

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd
from polytask.sampling.base import Progress


class NashMtlParams(GradientParams):
    """Parameters of ``nash_mtl``."""

    max_norm: float = Field(1.0, gt=0, description="bound on the update's norm")
    update_weights_every: int = Field(1, ge=1, description="solve the bargaining problem every N steps")


@GRADIENT_METHODS.register("nash_mtl")
class NashMTLMethod(TorchJDMethod):
    """The Nash bargaining solution over the task gradients (solved every update_weights_every steps) (Navon et al.
    2022)."""

    Params: ClassVar[type[BaseModel]] = NashMtlParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("nash_mtl")
        from torchjd.aggregation import NashMTL

        return NashMTL(n_tasks=len(self.task_names), max_norm=params.max_norm,
                       update_weights_every=params.update_weights_every)

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str], progress: Progress
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        if len(tasks) != len(self.task_names):
            # the bargaining problem is set up for every task; a step that lacks some (a batch labelling none of
            # their rows) takes the mean of the gradients it has (counted in the weights as 1/m each)
            return jacobian.mean(0), {t: 1.0 / len(tasks) for t in tasks}
        return super().aggregate(jacobian, tasks, progress)
