"""``equal``: the plain sum of the present tasks' losses (every weight 1), the usual multi-task baseline."""

from __future__ import annotations

from typing import ClassVar

import torch

from polytask.sampling.base import Progress
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingContext, WeightingParams, weighted_terms


class EqualParams(WeightingParams):
    """No parameters."""


@WEIGHTINGS.register("equal")
class EqualWeighting(LossWeighting):
    """Every task's loss counts once: total = Σ_t L_t."""

    Params: ClassVar[type[WeightingParams]] = EqualParams

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        weights = {name: 1.0 for name in losses}
        return weighted_terms(losses, weights), weights
