"""Loss weightings: how the per-task losses of a step become one scalar.

Importing this package registers every built-in weighting in ``WEIGHTINGS``; a new method is a module here that
registers itself and is imported below.
"""

from polytask.weighting import dwa, equal, famo, gradnorm, static, uncertainty  # noqa: F401  (registration)
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingParams, build_weighting

__all__ = ["WEIGHTINGS", "LossWeighting", "WeightingParams", "build_weighting"]
