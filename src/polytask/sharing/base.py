"""What a sharing design is: how the one encoder's layers are shared among the tasks (``encoder.sharing``).

A design splits the encoder into a **bottom** (embeddings and the lower layers, one pass per batch for every task)
and a **top** (the upper layers, which the design runs per group of tasks: with each task's adapters, experts or
branch). :meth:`Sharing.encode` returns the token vectors of each group and the shared representation (the bottom's
output, what gradient methods differentiate through); ``MultiTaskModel.forward`` pools each group's tokens and runs
the one head dispatch on them. Hard sharing (every layer shared) has no top: one group, the encoder's own forward.

The trainer and pipeline read capabilities, never names: ``onnx_exportable`` / ``hf_exportable`` (export),
:meth:`added_parameters` (kept trainable under ``train.freeze: [encoder]``, counted in the parameter report),
:meth:`shared_parameters` (the rows of a gradient method's Jacobian) and :meth:`auxiliary_losses` (added to the
objective and logged apart from the task losses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, field_validator
from torch import nn

from polytask.errors import PolytaskError

# model types whose encoder we can cut between two layers: embeddings, then ``encoder.layer`` (a list of blocks that
# each read (hidden states, attention mask)), nothing after the last block
SPLITTABLE = frozenset({"bert", "roberta", "xlm-roberta", "camembert"})

Passes = list[tuple[list[str], torch.Tensor]]  # [(task names of a group, their token vectors [B, T, H])]


class SharingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayeredParams(SharingParams):
    """Params of a design with its own top layers: ``layers`` (top k, or "all"); the subclass sets the default."""

    layers: int | Literal["all"]

    @field_validator("layers")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if value != "all" and int(value) < 1:
            raise ValueError("must be at least 1, or 'all'")
        return value


@dataclass
class AuxLoss:
    """A loss of the design itself (not of a task): ``weight * value`` is added to the objective."""

    value: torch.Tensor  # scalar
    weight: float
    name: str = ""


class Sharing(nn.Module):
    """Base of the ``encoder.sharing`` plugins. Built after the encoder's weights are in place (``attach``)."""

    Params: ClassVar[type[SharingParams]] = SharingParams
    onnx_exportable: ClassVar[bool] = True
    hf_exportable: ClassVar[bool] = False  # `polytask export --format hf` writes one stock model: hard sharing only

    def __init__(self, params: SharingParams, name: str) -> None:
        super().__init__()
        self.params, self.name = params, name
        self._encoder: list[nn.Module] = []  # a list, not a submodule: its weights belong to MultiTaskModel.encoder
        self._aux: dict[str, AuxLoss] = {}

    @classmethod
    def check(cls, params: Any, depth: int | None, tasks: list[str]) -> list[str]:
        """Problems of ``params`` for an encoder of ``depth`` layers (None: unknown yet) and these tasks."""
        return []

    def attach(self, encoder: nn.Module, tasks: list[str]) -> None:
        """Build the design's parameters for ``tasks`` on ``encoder`` (its pretrained weights already loaded)."""
        self._encoder = [encoder]

    @property
    def encoder(self) -> nn.Module:
        return self._encoder[0]

    def add_task(self, name: str) -> None:
        """Give a task added to a trained model its own parameters (fresh ones)."""

    def encode(self, kwargs: dict[str, Any], names: list[str]) -> tuple[Passes, torch.Tensor]:
        """``kwargs``: the encoder's inputs (input_ids, attention_mask [B, T], token_type_ids); ``names``: the tasks
        to run. -> (the groups' token vectors, the shared representation [B, T, H])."""
        raise NotImplementedError

    def added_parameters(self) -> list[nn.Parameter]:
        """Parameters the design adds to the encoder (adapters, experts, gates, branches)."""
        return list(self.parameters())

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters every task's loss reaches through the shared representation."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def auxiliary_losses(self) -> dict[str, AuxLoss]:
        """The design's own losses from the last forward (empty when it has none)."""
        return dict(self._aux)

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.params.model_dump(mode="json")}


def encoder_depth(encoder: nn.Module) -> int:
    return int(getattr(encoder.config, "num_hidden_layers"))


def top_range(layers: int | str, depth: int) -> range:
    """``layers`` (top k, or "all") -> the indices of the top layers of an encoder ``depth`` deep."""
    k = depth if layers == "all" else int(layers)
    return range(depth - k, depth)


def layers_problem(layers: int | str, depth: int | None) -> list[str]:
    if depth is not None and layers != "all" and int(layers) > depth:
        return [f"layers: value {layers} is more than the encoder's {depth} layers (allowed: 1-{depth} or 'all')"]
    return []


class SplitSharing(Sharing):
    """A design with its own top layers (``params.layers``): the bottom below them is the shared part."""

    @classmethod
    def check(cls, params: Any, depth: int | None, tasks: list[str]) -> list[str]:
        return layers_problem(params.layers, depth)

    def attach(self, encoder: nn.Module, tasks: list[str]) -> None:
        super().attach(encoder, tasks)
        self.split = SplitEncoder(encoder, self.name)
        self.top = top_range(getattr(self.params, "layers"), encoder_depth(encoder))

    def shared_parameters(self) -> list[nn.Parameter]:
        bottom: list[nn.Module] = [getattr(self.encoder, "embeddings"), *self.split.layers[: self.top.start]]
        return [q for m in bottom for q in m.parameters() if q.requires_grad]


class SplitEncoder:
    """Runs a BERT-like encoder in two parts: the bottom (embeddings + layers below ``start``) once, then any list
    of blocks on its output. Bit for bit the encoder's own forward when the blocks are its own top layers."""

    def __init__(self, encoder: nn.Module, design: str) -> None:
        model_type = getattr(encoder.config, "model_type", "?")
        inner = getattr(encoder, "encoder", None)
        if model_type not in SPLITTABLE or not isinstance(getattr(inner, "layer", None), nn.ModuleList) \
                or getattr(encoder.config, "is_decoder", False):
            raise PolytaskError(f"encoder.sharing: {design!r} splits the encoder between its layers, which polytask "
                                f"can do for {', '.join(sorted(SPLITTABLE))} encoders, not for model type "
                                f"{model_type!r} ({type(encoder).__name__}); use encoder.sharing: hard")
        self.encoder = encoder
        self.layers: nn.ModuleList = inner.layer  # type: ignore[union-attr]

    def bottom(self, kwargs: dict[str, Any], start: int) -> tuple[torch.Tensor, Any]:
        """-> (hidden states after the layers below ``start`` [B, T, H], the attention mask the blocks read)."""
        from transformers.masking_utils import create_bidirectional_mask

        enc: Any = self.encoder
        hidden = enc.embeddings(input_ids=kwargs["input_ids"], token_type_ids=kwargs.get("token_type_ids"))
        mask = create_bidirectional_mask(config=enc.config, inputs_embeds=hidden,
                                         attention_mask=kwargs["attention_mask"])
        return self.run(self.layers[:start], hidden, mask), mask

    @staticmethod
    def run(blocks: Any, hidden: torch.Tensor, mask: Any) -> torch.Tensor:
        for block in blocks:
            hidden = block(hidden, mask)
        return hidden
