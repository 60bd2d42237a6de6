"""What every task type provides: its YAML params, label space, head, loss, decoding and metrics.

A task type is a class registered in ``TASKS`` under the name users write as ``type:``. The trainer, evaluator and
pipeline only use the members below and the declared capability ``level`` ("sequence": one output per example, read
from the pooled vector; "token": one output per word, read from the token vectors), never the type's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from polytask.data.rows import Row
from polytask.registry import Registry

IGNORE = -100  # target value the losses skip (padding, words without a label)


@dataclass
class DecodeContext:
    """What decoding may need beyond logits: the words of each example, the token index of each word's first
    sub-word ([B, W], -1 where a word got no token or was truncated) and each word's character span."""

    words: list[list[str]] | None = None
    word_index: torch.Tensor | None = None
    word_spans: list[list[tuple[int, int]]] | None = None
    texts: list[str] | None = None


class TaskParams(BaseModel):
    """Keys every task accepts in YAML; task types add their own."""

    model_config = ConfigDict(extra="forbid")
    type: str
    dataset: str
    label: str = Field(description="column of the dataset holding this task's label")
    head_hidden: int = Field(0, ge=0, description="0: linear head; N: one hidden layer of N units (GELU)")


class Task:
    """Base class of task types. Subclasses set the ClassVars and implement the label/target/decode methods."""

    Params: ClassVar[type[TaskParams]] = TaskParams
    level: ClassVar[Literal["sequence", "token"]] = "sequence"
    primary_metric: ClassVar[str] = ""

    def __init__(self, name: str, params: TaskParams) -> None:
        self.name, self.params = name, params
        self.labels: list[str] = []
        self._index: dict[str, int] = {}

    def _set_labels(self, labels: list[str]) -> None:
        """Label space of a discrete task: ``labels[i]`` is output i."""
        self.labels = list(labels)
        self._index = label_index(self.labels)

    # -- labels ------------------------------------------------------------------------------------------------------
    def is_missing(self, raw: Any) -> bool:
        """A row that does not label this task (masked in the loss, never invented)."""
        return raw is None or (isinstance(raw, str) and raw.strip() == "")

    def fit(self, values: list[tuple[Any, Row]]) -> None:
        """Learn the label space from the training split's (raw value, row) pairs."""

    def state(self) -> dict[str, Any]:
        """JSON-serialisable label space etc., saved in the checkpoint's config.json."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state`."""

    @property
    def num_outputs(self) -> int:
        raise NotImplementedError

    def encode(self, raw: Any, row: Row) -> Any:
        """Raw label -> training target (python), raising DataError naming the row on a bad value."""
        raise NotImplementedError

    def gold(self, raw: Any, row: Row) -> Any:
        """Raw label -> the form metrics compare predictions with (validated like ``encode``)."""
        return raw

    # -- model -------------------------------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return mlp_head(hidden_size, self.params.head_hidden, self.num_outputs, dropout)

    def collate(self, targets: list[Any], num_words: int) -> torch.Tensor:
        """Per-example targets (None = missing) -> one tensor; missing entries hold IGNORE (or NaN for floats)."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """Mean loss over the labelled entries, or None when the batch labels none of them."""
        raise NotImplementedError

    # -- outputs -----------------------------------------------------------------------------------------------------
    def decode(self, logits: torch.Tensor, ctx: DecodeContext | None = None) -> list[dict[str, Any]]:
        """Logits of a batch -> one prediction dict per example (labels with scores, tags, values)."""
        raise NotImplementedError

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        raise NotImplementedError

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        """Whether one prediction is exactly right (for the per-source 'all tasks right' sentence accuracy)."""
        raise NotImplementedError

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What /tasks and ``polytask list`` show: type, level and the label set."""
        return {"type": self.params.type, "level": self.level, **self.state()}


def mlp_head(hidden_size: int, inner: int, outputs: int, dropout: float) -> nn.Sequential:
    """[..., H] -> [..., outputs]. ``inner`` > 0 adds Linear(H, inner) + GELU, which also lets a task embedding
    added to the features act as more than a bias."""
    layers: list[nn.Module] = [nn.Dropout(dropout)]
    if inner:
        layers += [nn.Linear(hidden_size, inner), nn.GELU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(inner or hidden_size, outputs))
    return nn.Sequential(*layers)


def label_index(labels: list[str]) -> dict[str, int]:
    return {label: i for i, label in enumerate(labels)}


TASKS: Registry[type[Task]] = Registry("task type")
