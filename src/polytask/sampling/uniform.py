"""``uniform``: every source equally often, p_i = 1 / S, whatever its size.

The baseline of multi-task sampling, and the T → ∞ limit of temperature sampling (Arivazhagan et al. 2019,
"Massively Multilingual Neural Machine Translation in the Wild"): small sources are revisited many times per
pass over large ones, so they may overfit while large ones are underused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from polytask.sampling.base import SAMPLERS, Progress, SamplerParams, check_sizes


class UniformParams(SamplerParams):
    """No parameters."""


@SAMPLERS.register("uniform")
class UniformSampler:
    """Every source equally often, whatever its size."""

    Params: ClassVar[type[SamplerParams]] = UniformParams

    def __init__(self, params: UniformParams) -> None:
        self.params = params

    def probabilities(self, sizes: Sequence[int], progress: Progress) -> np.ndarray:
        """``sizes`` [S] -> p [S] = 1/S (sizes are still checked, so an empty source is an error here too)."""
        n = check_sizes(sizes)
        return np.full(n.shape, 1.0 / n.size)
