"""``graddrop``: Chen et al. 2020, "Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout"
(NeurIPS).

Keeps, coordinate by coordinate, the gradients of one sign chosen at random by their sign purity. The algorithm is
torchjd's ``GradDrop``; see ``polytask.gradients.base`` for how the trainer builds the per-task Jacobian it
aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class GraddropParams(GradientParams):
    """Parameters of ``graddrop`` (none)."""


@GRADIENT_METHODS.register("graddrop")
class GradDropMethod(TorchJDMethod):
    """Keeps, coordinate by coordinate, the gradients of one sign chosen at random by their sign purity (Chen et al.
    2020)."""

    Params: ClassVar[type[BaseModel]] = GraddropParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("graddrop")
        from torchjd.aggregation import GradDrop

        return GradDrop()
