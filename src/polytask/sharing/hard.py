"""Hard parameter sharing: every encoder layer is shared by every task; only the heads (and the optional task
embedding) are task-specific. Caruana, "Multitask Learning", Machine Learning 28 (1997). The default design."""

from __future__ import annotations

from typing import Any

import torch

from polytask.sharing.base import Passes, Sharing
from polytask.sharing.registry import SHARING


@SHARING.register("hard")
class HardSharing(Sharing):
    """One encoder pass, its last hidden states for every task (the encoder's own forward, unchanged)."""

    hf_exportable = True

    def encode(self, kwargs: dict[str, Any], names: list[str]) -> tuple[Passes, torch.Tensor]:
        tokens = self.encoder(**kwargs).last_hidden_state
        return [(names, tokens)], tokens

    def added_parameters(self) -> list[torch.nn.Parameter]:
        return []
