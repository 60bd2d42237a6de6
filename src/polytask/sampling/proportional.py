"""``proportional``: each source is drawn in proportion to its size, p_i = n_i / Σ_j n_j.

This is sampling examples uniformly from the concatenation of all sources (the "examples-proportional mixing" of
Raffel et al. 2020, T5, §3.5.2, without its size limit): large sources dominate and small ones may be underfit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from polytask.sampling.base import SAMPLERS, Progress, SamplerParams, check_sizes


class ProportionalParams(SamplerParams):
    """No parameters."""


@SAMPLERS.register("proportional")
class ProportionalSampler:
    """p ∝ n: each source in proportion to its number of training rows."""

    Params: ClassVar[type[SamplerParams]] = ProportionalParams

    def __init__(self, params: ProportionalParams) -> None:
        self.params = params

    def probabilities(self, sizes: Sequence[int], progress: Progress) -> np.ndarray:
        """``sizes`` [S] -> p [S] ∝ n."""
        n = check_sizes(sizes)
        return n / n.sum()
