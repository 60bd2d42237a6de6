"""``upgrad``: Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization" (arXiv:2406.16232).

Projects each task's gradient onto the dual cone of all of them and averages: never conflicts with any task. The
algorithm is torchjd's ``UPGrad``; see ``polytask.gradients.base`` for how the trainer builds the per-task Jacobian
it aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class UpgradParams(GradientParams):
    """Parameters of ``upgrad`` (none)."""


@GRADIENT_METHODS.register("upgrad")
class UPGradMethod(TorchJDMethod):
    """Projects each task's gradient onto the dual cone of all of them and averages: never conflicts with any task
    (Quinton & Rey 2024)."""

    Params: ClassVar[type[BaseModel]] = UpgradParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("upgrad")
        from torchjd.aggregation import UPGrad

        return UPGrad()
