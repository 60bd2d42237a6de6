"""Gradient methods: how the per-task gradients of the shared encoder become one update (``polytask.gradients.base``).

Importing this package registers every built-in method in ``GRADIENT_METHODS``; a new method is a module here that
registers itself and is imported below.
"""

from polytask.gradients import (aligned_mtl, cagrad, dualproj, graddrop, imtl_g, mgda,  # noqa: F401  (registration)
                                nash_mtl, pcgrad, sum, upgrad)
from polytask.gradients.base import GRADIENT_METHODS, GradientMethod, GradientParams, build_gradient_method

__all__ = ["GRADIENT_METHODS", "GradientMethod", "GradientParams", "build_gradient_method"]
