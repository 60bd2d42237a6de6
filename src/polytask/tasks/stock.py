"""How a task's head maps onto a stock ``transformers`` class (``polytask export --format hf``).

A task type that can be written as one stock Hugging Face head implements ``Task.stock_head`` and returns a
:class:`StockHead`: which ``AutoModelFor...`` class, what that class's head reads (the first token through the
encoder's pooler, or every token), and the ONE linear map from those vectors to the stock class's logits, with
whatever the task applies after its head (a temperature, the label scale of a regression) folded into it. The
exporter (``polytask.hf_export``) owns everything about the encoder and the stock class; the task says nothing
about BERT or RoBERTa, and the exporter never asks which task type it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from polytask.errors import PolytaskError

Reads = Literal["first_token", "tokens"]
Activation = Literal["softmax", "sigmoid", "none"]


class NotExportable(PolytaskError):
    """A task (or model) the stock class cannot express exactly; the message says why and what would make it
    exportable."""


@dataclass(frozen=True)
class StockHead:
    """One task as a stock ``transformers`` head.

    ``weight`` [C, H] and ``bias`` [C] map what the stock head reads ([B, H] first-token vectors, or [B, T, H]
    token vectors) onto its logits [B, C] / [B, T, C]. ``activation`` turns the stock logits into what the task's
    ``host_outputs`` gives (the parity check compares the two). ``outputs`` names, for a task whose head output is
    a dict, the stock output field of each key (each key one row of ``weight``, in order); None: one ``logits``.
    """

    auto_class: str  # e.g. "AutoModelForSequenceClassification"
    reads: Reads
    weight: torch.Tensor
    bias: torch.Tensor
    labels: list[str]  # id2label, in output order
    problem_type: str | None
    activation: Activation
    outputs: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)  # what was folded in, what the stock class leaves to the caller


def single_linear(head: nn.Module, task: str, head_hidden: int) -> nn.Linear:
    """The head's one ``nn.Linear`` (a ``mlp_head`` with ``head_hidden: 0``: dropout then linear), or
    NotExportable saying why a hidden layer cannot go into a stock class."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if head_hidden or len(linears) != 1:
        raise NotExportable(
            f"task {task!r} has a hidden head layer (head_hidden: {head_hidden}: linear, GELU, linear); the stock "
            "classes put ONE linear layer on the encoder's vectors, so its outputs cannot be reproduced. Train "
            f"with tasks.{task}.head_hidden: 0 to export it")
    return linears[0]


def scaled(linear: nn.Linear, scale: float = 1.0, shift: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight * scale, bias * scale + shift) of ``linear``, float32 and detached: ``scale * (Wx + b) + shift``
    as one linear map (1 / temperature, a regression's standard deviation and mean)."""
    weight = linear.weight.detach().float() * scale
    bias = linear.bias.detach().float() * scale + shift
    return weight, bias
