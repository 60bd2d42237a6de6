"""``annealed``: p_i ∝ n_i^α with α moving linearly from ``start_alpha`` to ``end_alpha`` across epochs.

Annealed sampling of Stickland & Murray 2019, "BERT and PALs: Projected Attention Layers for Efficient Adaptation in
Multi-Task Learning": α = 1 − 0.8·(e − 1)/(E − 1), with e the current 1-based epoch and E the number of
epochs, so training starts proportional to size and ends closer to uniform, meant to reduce interference between tasks
late in training. The defaults (1.0 -> 0.2) are the paper's schedule; like the paper, α changes once per *integer*
epoch. With E <= 1 there is nothing to anneal over and α = ``start_alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from polytask.sampling.base import EPOCH_TOLERANCE, SAMPLERS, Progress, SamplerParams, check_sizes, normalise_log


class AnnealedParams(SamplerParams):
    start_alpha: float = Field(1.0, ge=0, description="α in the first epoch (1 = proportional)")
    end_alpha: float = Field(0.2, ge=0, description="α in the last epoch (0 = uniform)")


@SAMPLERS.register("annealed")
class AnnealedSampler:
    """Proportional early, towards uniform late: p ∝ n^α, α annealed over epochs (Stickland & Murray 2019)."""

    Params: ClassVar[type[SamplerParams]] = AnnealedParams

    def __init__(self, params: AnnealedParams) -> None:
        self.params = params

    def alpha(self, progress: Progress) -> float:
        """α of the epoch ``progress`` is in."""
        # A fractional run length (e.g. 2.5 epochs) still has a last, partial epoch: E counts it.
        num_epochs = max(1, math.ceil(progress.num_epochs - EPOCH_TOLERANCE))
        if num_epochs <= 1:
            return self.params.start_alpha
        epoch = min(progress.epoch_index + 1, num_epochs)  # 1-based; clamped so a step past the end keeps end_alpha
        fraction = (epoch - 1) / (num_epochs - 1)
        return self.params.start_alpha + (self.params.end_alpha - self.params.start_alpha) * fraction

    def probabilities(self, sizes: Sequence[int], progress: Progress) -> np.ndarray:
        """``sizes`` [S] -> p [S] ∝ n^α(epoch)."""
        return normalise_log(self.alpha(progress) * np.log(check_sizes(sizes)))
