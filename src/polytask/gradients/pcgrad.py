"""``pcgrad``: Yu et al. 2020, "Gradient Surgery for Multi-Task Learning" (NeurIPS).

Projects each task's gradient off the normal plane of every gradient it conflicts with (random order), then sums.
The algorithm is torchjd's ``PCGrad``; see ``polytask.gradients.base`` for how the trainer builds the per-task
Jacobian it aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class PcgradParams(GradientParams):
    """Parameters of ``pcgrad`` (none)."""


@GRADIENT_METHODS.register("pcgrad")
class PCGradMethod(TorchJDMethod):
    """Projects each task's gradient off the normal plane of every gradient it conflicts with (random order), then sums
    (Yu et al. 2020)."""

    Params: ClassVar[type[BaseModel]] = PcgradParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("pcgrad")
        from torchjd.aggregation import PCGrad

        return PCGrad()
