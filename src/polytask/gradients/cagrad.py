"""``cagrad``: Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning" (NeurIPS).

The direction maximising the worst task's improvement within a ball of radius c around the average gradient. The
algorithm is torchjd's ``CAGrad``; see ``polytask.gradients.base`` for how the trainer builds the per-task Jacobian
it aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class CagradParams(GradientParams):
    """Parameters of ``cagrad``."""

    c: float = Field(0.4, ge=0, description="radius of the ball around the average gradient (paper: 0.4)")


@GRADIENT_METHODS.register("cagrad")
class CAGradMethod(TorchJDMethod):
    """The direction maximising the worst task's improvement within a ball of radius c around the average gradient (Liu
    et al. 2021)."""

    Params: ClassVar[type[BaseModel]] = CagradParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("cagrad")
        from torchjd.aggregation import CAGrad

        return CAGrad(c=params.c)
