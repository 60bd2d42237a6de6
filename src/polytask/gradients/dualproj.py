"""``dualproj``: the projection of Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual Learning"
(NeurIPS), as torchjd applies it to multi-task learning.

Projects the average gradient onto the dual cone of the task gradients. The algorithm is torchjd's ``DualProj``; see
``polytask.gradients.base`` for how the trainer builds the per-task Jacobian it aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class DualprojParams(GradientParams):
    """Parameters of ``dualproj`` (none)."""


@GRADIENT_METHODS.register("dualproj")
class DualProjMethod(TorchJDMethod):
    """Projects the average gradient onto the dual cone of the task gradients (Lopez-Paz & Ranzato 2017)."""

    Params: ClassVar[type[BaseModel]] = DualprojParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("dualproj")
        from torchjd.aggregation import DualProj

        return DualProj()
