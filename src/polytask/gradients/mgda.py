"""``mgda``: Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS).

The minimum-norm convex combination of the task gradients (a Pareto-stationary direction). The algorithm is
torchjd's ``MGDA``; see ``polytask.gradients.base`` for how the trainer builds the per-task Jacobian it aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class MgdaParams(GradientParams):
    """Parameters of ``mgda``."""

    epsilon: float = Field(0.001, gt=0, description="Frank-Wolfe stopping tolerance")
    max_iters: int = Field(100, ge=1, description="Frank-Wolfe iterations at most")


@GRADIENT_METHODS.register("mgda")
class MGDAMethod(TorchJDMethod):
    """The minimum-norm convex combination of the task gradients, a Pareto-stationary direction (Sener & Koltun
    2018)."""

    Params: ClassVar[type[BaseModel]] = MgdaParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("mgda")
        from torchjd.aggregation import MGDA

        return MGDA(epsilon=params.epsilon, max_iters=params.max_iters)
