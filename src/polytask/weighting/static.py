"""``static``: fixed, hand-chosen weights, total = Σ_t w_t·L_t; tasks not listed get ``default``.

The weights come from the config, not from training, so they are not part of the saved state: a resumed run uses
the weights its config gives.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import torch
from pydantic import BaseModel, Field

from polytask.sampling.base import Progress
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingContext, WeightingParams, weighted_terms

NonNegative = Annotated[float, Field(ge=0)]


class StaticParams(WeightingParams):
    weights: dict[str, NonNegative] = Field(default_factory=dict, description="task name -> weight (>= 0)")
    default: NonNegative = Field(1.0, description="weight of tasks not listed in weights")


@WEIGHTINGS.register("static")
class StaticWeighting(LossWeighting):
    """Fixed per-task weights from the config: total = Σ_t w_t·L_t."""

    Params: ClassVar[type[WeightingParams]] = StaticParams
    params: StaticParams

    @classmethod
    def check(cls, params: BaseModel, task_names: list[str]) -> list[str]:
        assert isinstance(params, StaticParams)
        known = ", ".join(task_names) or "(none)"
        return [f"weights: unknown task {name!r}; known tasks: {known}"
                for name in params.weights if name not in task_names]

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        weights = {name: float(self.params.weights.get(name, self.params.default)) for name in losses}
        return weighted_terms(losses, weights), weights
