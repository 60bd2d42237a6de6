"""``regression``: one real value per example (e.g. STS-B similarity 0-5), MSE loss.

Targets are standardised with the training split's mean and std (``normalize: true``, the default) so the loss has
a scale comparable to the classification losses it is summed with; predictions are mapped back to the label scale.
Metrics: Pearson (primary), Spearman, MSE and MAE on the original scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.errors import DataError
from polytask.tasks.base import TASKS, BatchShape, Encoded, Fields, Output, Task, TaskBatch, TaskParams, mlp_head
from polytask.tasks.distillation import mixed_squared_error, teacher_weight
from polytask.tasks.stock import StockHead, scaled, single_linear


class RegressionParams(TaskParams):
    normalize: bool = True


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman's rho needs."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return 0.0  # undefined correlation (constant input): report 0, the value of no linear relation
    return float(np.corrcoef(a, b)[0, 1])


@TASKS.register("regression")
class Regression(Task):
    """One real value per text or text pair (MSE, targets standardised by default; Pearson, Spearman)."""

    Params: ClassVar[type[TaskParams]] = RegressionParams
    distillable = True
    hub_task = "text-classification"  # the Hub files regression (STS-B) under text classification
    params: RegressionParams

    def __init__(self, name: str, params: RegressionParams) -> None:
        super().__init__(name, params)
        self.mean, self.std = 0.0, 1.0

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        return ["pearson", "spearman", "mse", "mae"]

    def gold(self, raw: Any, example: Example) -> float:
        if isinstance(raw, bool):  # float(True) is 1.0: a JSON true is a mistake, not a score
            raise DataError("a boolean is not a number", location=example.location, field=self.params.label,
                            value=raw, allowed="a real number")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise DataError("not a number", location=example.location, field=self.params.label, value=raw,
                            allowed="a real number") from None
        if not math.isfinite(value):
            raise DataError("not a finite number", location=example.location, field=self.params.label, value=raw)
        return value

    def fit(self, values: list[tuple[Any, Example]]) -> None:
        ys = np.array([self.gold(raw, example) for raw, example in values], dtype=float)
        if self.params.normalize and len(ys) > 1 and ys.std() > 0:
            self.mean, self.std = float(ys.mean()), float(ys.std())

    def state(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean, self.std = float(state["mean"]), float(state["std"])

    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        if gold is None:
            return [{} for _ in features]
        return [{"target": (gold - self.mean) / self.std} for _ in features]

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        values = [f.get("target", float("nan")) for f in fields]
        batch = TaskBatch(targets={"target": torch.tensor(values, dtype=torch.float32)})
        if any("soft" in f for f in fields):  # a teacher's value, standardised like the target (distillation)
            soft = [(f["soft"] - self.mean) / self.std if "soft" in f else float("nan") for f in fields]
            batch.targets["soft"] = torch.tensor(soft, dtype=torch.float32)
        return batch

    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return mlp_head(hidden_size, self.params.head_hidden, 1, dropout)

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> [B, 1] standardised values from the pooled vector."""
        return head(encoded.pooled)

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """output [B, 1]; target [B] (NaN = missing)."""
        assert isinstance(output, torch.Tensor)
        target = targets["target"]
        weight = teacher_weight(targets)
        if weight is not None:
            return mixed_squared_error(output[:, 0], target, targets["soft"], weight)
        keep = ~torch.isnan(target)
        if not keep.any():
            return None
        return F.mse_loss(output[keep, 0].float(), target[keep])

    def stock_head(self, head: nn.Module) -> StockHead:
        """``AutoModelForSequenceClassification`` with one output (problem_type regression); the label scale
        (value * std + mean) folded into the regressor, so the stock output is the value polytask reports."""
        weight, bias = scaled(single_linear(head, self.name, self.params.head_hidden), self.std, self.mean)
        notes = [f"label scale folded into the regressor (output * {self.std:.4g} + {self.mean:.4g})"] \
            if (self.std, self.mean) != (1.0, 0.0) else []
        return StockHead("AutoModelForSequenceClassification", "first_token", weight, bias, [self.name],
                         "regression", "none", notes=notes)

    def host_outputs(self, output: Output) -> list[Any]:
        """Values on the label scale, one float per feature."""
        assert isinstance(output, torch.Tensor)
        return (output[:, 0].float() * self.std + self.mean).tolist()

    def soft_target(self, example: Example, features: Sequence[Feature], outputs: Sequence[Any]) -> np.ndarray:
        """A teacher's value for the example, on the label scale (one number)."""
        return np.array(sum(outputs) / len(outputs), dtype=np.float32)

    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        return {"value": round(sum(outputs) / len(outputs), 6)}

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        # "exactly right" for a real value: within 0.5% of the training label spread (or 0.005 absolute)
        return abs(prediction["value"] - gold) <= 0.005 * max(self.std, 1.0)

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        p = np.array([x["value"] for x in predictions], dtype=float)
        g = np.array(golds, dtype=float)
        if len(g) == 0:
            return {}
        return {
            "pearson": _pearson(p, g),
            "spearman": _pearson(_rank(p), _rank(g)),
            "mse": float(np.mean((p - g) ** 2)),
            "mae": float(np.mean(np.abs(p - g))),
        }
