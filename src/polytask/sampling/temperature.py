"""``temperature``: p_i ∝ min(n_i, cap)^(1/T).

Temperature-based sampling as in Arivazhagan et al. 2019, "Massively Multilingual Neural Machine Translation in the
Wild", and the α-smoothed language sampling of XLM (Lample & Conneau 2019, α = 1/T). T = 1 is proportional
sampling, T → ∞ tends to uniform; T in between up-samples small sources without ignoring size. The optional ``cap``
is the artificial size limit of T5's examples-proportional mixing (Raffel et al. 2020, §3.5.2), so one huge source
cannot swamp the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field

from polytask.sampling.base import SAMPLERS, Progress, SamplerParams, check_sizes, normalise_log


class TemperatureParams(SamplerParams):
    temperature: float = Field(2.0, gt=0, description="T: 1 = proportional, larger = closer to uniform")
    cap: int | None = Field(None, gt=0, description="sizes above this count as this size (None: no cap)")


@SAMPLERS.register("temperature")
class TemperatureSampler:
    """p ∝ min(n, cap)^(1/T): T = 1 proportional, larger T closer to uniform."""

    Params: ClassVar[type[SamplerParams]] = TemperatureParams

    def __init__(self, params: TemperatureParams) -> None:
        self.params = params

    def probabilities(self, sizes: Sequence[int], progress: Progress) -> np.ndarray:
        """``sizes`` [S] -> p [S] ∝ min(n, cap)^(1/T)."""
        n = check_sizes(sizes)
        if self.params.cap is not None:
            n = np.minimum(n, self.params.cap)
        return normalise_log(np.log(n) / self.params.temperature)
