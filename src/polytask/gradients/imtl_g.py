"""``imtl_g``: Liu et al. 2021, "Towards Impartial Multi-task Learning" (ICLR), the gradient part IMTL-G.

Weights making the update's projection equal on every task's unit gradient. The algorithm is torchjd's ``IMTLG``;
see ``polytask.gradients.base`` for how the trainer builds the per-task Jacobian it aggregates.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel

from polytask.gradients.base import GRADIENT_METHODS, GradientParams, TorchJDMethod, require_torchjd


class ImtlGParams(GradientParams):
    """Parameters of ``imtl_g`` (none)."""


@GRADIENT_METHODS.register("imtl_g")
class IMTLGMethod(TorchJDMethod):
    """Weights making the update's projection equal on every task's unit gradient (Liu et al. 2021)."""

    Params: ClassVar[type[BaseModel]] = ImtlGParams

    def make_aggregator(self, params: Any) -> Any:
        require_torchjd("imtl_g")
        from torchjd.aggregation import IMTLG

        return IMTLG()
