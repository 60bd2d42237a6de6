"""The parts the task contract (``polytask.tasks.base``) is written in: the YAML keys every task accepts
(``TaskParams``, ``ScoredParams``, ``LabelSetParams``), what a task's methods take and return (``Fields``,
``FieldSpec``, ``BatchShape``, ``TaskBatch``, ``Encoded``, ``Output``) and the helpers task types share (``mlp_head``,
``masked_pairs``, ``padded``, ``softmax``, ``label_index``). ``polytask.tasks.base`` re-exports every name here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

IGNORE = -100  # target value the losses skip (padding, words without a token, unlabelled rows)
Fields = dict[str, Any]  # one feature's fields for one task; the key "target" is present when the row is labelled
Output = Union[torch.Tensor, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class FieldSpec:
    """A forward input of a task: its axes (``batch``, ``tokens``, ``words`` or a name of the task's own) and dtype.
    ONNX export names and sizes graph inputs from it, and feeds zeros of this shape for tasks a call does not run."""

    axes: tuple[str, ...]
    dtype: str = "int64"  # "int64" or "float32"


@dataclass(frozen=True)
class BatchShape:
    """Sizes a collate may need: rows, tokens (longest feature) and words (most words) of the batch."""

    size: int
    tokens: int
    words: int = 0


@dataclass
class TaskBatch:
    """A task's tensors for one batch: ``inputs`` its head reads, ``targets`` its loss reads."""

    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    targets: dict[str, torch.Tensor] = field(default_factory=dict)


class Encoded:
    """What a head reads from the one shared encoder pass: ``tokens`` [B, T, H], ``pooled`` [B, H],
    ``attention_mask`` [B, T] and, when a task of the batch tags words, ``word_index`` [B, W] (token of each word's
    first sub-word, -1 for none). With a task embedding its vector ``bias`` [H] is added to what the head reads.
    ``for_loss``: the caller reads the loss only (training, look-ahead loss measurements), not predictions."""

    def __init__(self, tokens: torch.Tensor, pooled: torch.Tensor, attention_mask: torch.Tensor,
                 word_index: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                 for_loss: bool = False) -> None:
        self._tokens, self._pooled, self._bias = tokens, pooled, bias
        self.attention_mask, self.word_index, self.for_loss = attention_mask, word_index, for_loss

    @property
    def tokens(self) -> torch.Tensor:
        return self._tokens if self._bias is None else self._tokens + self._bias

    @property
    def pooled(self) -> torch.Tensor:
        return self._pooled if self._bias is None else self._pooled + self._bias

    def words(self) -> torch.Tensor:
        """[B, W, H]: the vector of each word's first sub-word (rows of words without a token are copies of token 0:
        their targets are IGNORE and decoding tags them O)."""
        if self.word_index is None:
            raise ValueError("this task reads words: the batch needs word_index (declare needs_words = True)")
        index = self.word_index.clamp(min=0).unsqueeze(-1).expand(-1, -1, self._tokens.shape[-1])
        words = self._tokens.gather(1, index)
        return words if self._bias is None else words + self._bias


class TaskParams(BaseModel):
    """Keys every task accepts in YAML; task types add their own."""

    model_config = ConfigDict(extra="forbid")
    type: str
    dataset: str
    label: str = Field(description="column of the dataset holding this task's label")
    head_hidden: int = Field(0, ge=0, description="0: linear head; N: one hidden layer of N units (GELU)")


class ScoredParams(TaskParams):
    """Params of a task whose predictions carry a probability ``score``."""

    min_score: float = Field(0.0, ge=0, le=1, description="answer 'none' (drop the span / relation) when the "
                             "calibrated score is below this; 0: off. Metrics use the raw predictions")


class LabelSetParams(ScoredParams):
    """Keys of task types with a label set (classification, token classification)."""

    unseen_labels: Literal["error", "count_as_wrong"] = Field(
        "error", description="a validation/test label training never saw: an error, or scored as a wrong prediction")


def mlp_head(hidden_size: int, inner: int, outputs: int, dropout: float) -> nn.Sequential:
    """[..., H] -> [..., outputs]. ``inner`` > 0 adds Linear(H, inner) + GELU, which also lets a task embedding
    added to the features act as more than a bias."""
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    if inner:
        layers += [nn.Linear(hidden_size, inner), nn.GELU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(inner or hidden_size, outputs))
    return nn.Sequential(*layers)


def masked_pairs(logits: torch.Tensor, target: torch.Tensor, ignore: int = IGNORE
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [..., C], target [...] -> (logits [N, C] float, target [N]) of the entries that are not ``ignore``."""
    keep = target != ignore
    return logits[keep].float(), target[keep]


def label_index(labels: list[str]) -> dict[str, int]:
    return {label: i for i, label in enumerate(labels)}


def padded(rows: Sequence[Sequence[int] | None], width: int, fill: int = IGNORE) -> torch.Tensor:
    """Ragged integer rows (None: all ``fill``) -> a [len(rows), width] long tensor padded with ``fill``."""
    out = np.full((len(rows), width), fill, dtype=np.int64)
    for i, row in enumerate(rows):
        if row is not None and len(row):
            out[i, : min(len(row), width)] = np.asarray(row, dtype=np.int64)[:width]
    return torch.from_numpy(out)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)
