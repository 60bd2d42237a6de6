"""``aligned_mtl``: Senushkin et al. 2023, "Independent Component Alignment for Multi-Task Learning" (CVPR).

Aligns the task gradients by making the Jacobian's condition number one (SVD). The algorithm is torchjd's
``AlignedMTL``; see ``polytask.gradients.base`` for how the trainer builds the per-task Jacobian it aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class AlignedMtlParams(GradientParams):
    """Parameters of ``aligned_mtl`` (none)."""


@GRADIENT_METHODS.register("aligned_mtl")
class AlignedMTLMethod(TorchJDMethod):
    """Aligns the task gradients by making the Jacobian's condition number one (SVD) (Senushkin et al. 2023)."""

    Params: ClassVar[type[BaseModel]] = AlignedMtlParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("aligned_mtl")
        from torchjd.aggregation import AlignedMTL

        return AlignedMTL()
