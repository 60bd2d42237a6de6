"""Source samplers: which training source feeds each micro-batch.

Importing this package registers every built-in sampler in ``SAMPLERS``; a new sampler is a module here that
registers itself and is imported below.
"""

from polytask.sampling import annealed, proportional, temperature, uniform  # noqa: F401  (registration)
from polytask.sampling.base import (
    SAMPLERS,
    Progress,
    Sampler,
    SamplerParams,
    SourceScheduler,
    build_sampler,
)

__all__ = ["SAMPLERS", "Progress", "Sampler", "SamplerParams", "SourceScheduler", "build_sampler"]
