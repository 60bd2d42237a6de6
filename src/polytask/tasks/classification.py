"""``classification``: one label (softmax, cross-entropy) or several (``multi_label: true``: sigmoid, BCE) per
example, on a single text or a text pair (the pair comes from the dataset's ``text_pair`` column).

Metrics: single-label accuracy (primary) and macro-F1; multi-label micro-F1 (primary), macro-F1 and exact match.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.errors import DataError
from polytask.tasks.base import (IGNORE, TASKS, BatchShape, Encoded, Fields, LabelSetParams, LabelSetTask, Output,
                                 TaskBatch, TaskParams, masked_pairs, mlp_head)
from polytask.tasks.distillation import mixed_binary_cross_entropy, mixed_cross_entropy, multi_label_bce, \
    teacher_weight
from polytask.tasks.label_checks import check_fixed_labels, unseen_count
from polytask.tasks.scores import CalibrationData, CalibrationKind, Gated, gate_label
from polytask.tasks.stock import StockHead, scaled, single_linear

HEAD = "label"  # the one calibrated head


def _kind(value: Any) -> str | None:
    """What JSON type a label value has ("a boolean", "a number", "a string"); None for anything else."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else None


class ClassificationParams(LabelSetParams):
    multi_label: bool = False
    label_separator: str = Field(",", min_length=1, description="multi-label: separator inside a text cell")
    threshold: float = Field(0.5, gt=0, lt=1, description="multi-label: a label is predicted above this probability")
    multi_label_loss: Literal["sum", "mean"] = Field(
        "sum", description="multi-label: binary cross-entropy summed over the labels of a row (then averaged over "
                           "rows), or averaged over every row and label; a mean over many mostly absent "
                           "labels makes the task's loss tiny beside the others' and its head predicts nothing")
    labels: list[str] | None = Field(None, description="fixed label set; default: the labels seen in training")

    @model_validator(mode="after")
    def _one_threshold(self) -> ClassificationParams:
        if self.multi_label and self.min_score > 0:  # both would threshold the same per-label probabilities
            raise ValueError("min_score applies to single-label classification; multi-label tasks use threshold")
        return self


def f1_table(gold: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """gold, pred: bool [N, C] -> (micro F1, macro F1 over classes that occur in gold or pred)."""
    tp = (gold & pred).sum(0).astype(float)
    fp = (~gold & pred).sum(0).astype(float)
    fn = (gold & ~pred).sum(0).astype(float)
    denom = 2 * tp + fp + fn
    micro = float(2 * tp.sum() / denom.sum()) if denom.sum() else 0.0
    seen = denom > 0
    macro = float(np.mean(2 * tp[seen] / denom[seen])) if seen.any() else 0.0
    return micro, macro


@TASKS.register("classification")
class Classification(LabelSetTask):
    """One label per text or text pair (softmax, cross-entropy), or several (multi_label: sigmoid, BCE)."""

    Params: ClassVar[type[TaskParams]] = ClassificationParams
    distillable = True
    hub_task = "text-classification"
    params: ClassificationParams

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        multi = getattr(params, "multi_label", False)
        return ["micro_f1", "macro_f1", "exact_match"] if multi else ["accuracy", "macro_f1"]

    # -- labels ------------------------------------------------------------------------------------------------------
    def _split(self, raw: Any, example: Example) -> list[str]:
        if isinstance(raw, list):
            return [str(v).strip() for v in raw]
        if isinstance(raw, str) and raw.strip().startswith("["):
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"not a JSON list: {exc.msg}", location=example.location, field=self.params.label,
                                value=raw) from None
            return [str(v).strip() for v in parsed]
        return [p.strip() for p in str(raw).split(self.params.label_separator) if p.strip()]

    def _names(self, raw: Any, example: Example) -> list[str]:
        if self.params.multi_label:
            return self._split(raw, example)
        if isinstance(raw, (list, dict)):
            raise DataError("expected one label; set multi_label: true for several", location=example.location,
                            field=self.params.label, value=raw)
        return [str(raw).strip()]

    def label_names(self, raw: Any, example: Example) -> list[str]:
        return self._names(raw, example)

    def check_values(self, values: list[tuple[Any, Example]]) -> None:
        """One value type per label column: JSON ``1`` and ``"1"`` would otherwise become one class unnoticed."""
        first: dict[str, tuple[Example, Any]] = {}
        for raw, example in values:
            for value in raw if isinstance(raw, list) else [raw]:
                kind = _kind(value)
                if kind is None or kind in first:
                    continue
                if first:
                    other_kind, (other, other_value) = next(iter(first.items()))
                    raise DataError(f"the label is {kind}, but {other.location} holds {other_value!r}, {other_kind}: "
                                    "one label column must hold one type, else 1 and \"1\" become the same class",
                                    location=example.location, field=self.params.label, value=value,
                                    allowed="labels of one type: all strings, or all numbers")
                first[kind] = (example, value)
        super().check_values(values)

    def fit(self, values: list[tuple[Any, Example]]) -> None:
        if self.params.labels:
            check_fixed_labels(self, values)
            return
        seen: set[str] = set()
        for raw, example in values:
            seen.update(self._names(raw, example))
        self._set_labels(sorted(seen))

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "multi_label": self.params.multi_label}

    def gold(self, raw: Any, example: Example) -> Any:
        names = self._names(raw, example)
        for name in names:
            self.check_label(name, example)
        return sorted(set(names)) if self.params.multi_label else names[0]

    @classmethod
    def pair_classes(cls, params: TaskParams) -> bool:
        return not getattr(params, "multi_label", False)  # several labels per row: no one class to pair by

    def pair_class(self, gold: Any) -> str:
        return str(gold)

    # -- features ----------------------------------------------------------------------------------------------------
    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        if gold is None:
            return [{} for _ in features]
        # a label training never saw (unseen_labels: count_as_wrong, evaluation splits only) has no output to train
        if self.params.multi_label:
            target: Any = [self._index[g] for g in gold if g in self._index]
        else:
            target = self._index.get(gold, IGNORE)
        return [{"target": target} for _ in features]

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        targets = [f.get("target") for f in fields]
        batch = TaskBatch()
        if any("soft" in f for f in fields):  # teacher probabilities (distillation), NaN rows where none
            batch.targets["soft"] = torch.tensor(np.stack([f.get("soft", np.full(self.num_outputs, np.nan))
                                                           for f in fields]), dtype=torch.float32)
        if not self.params.multi_label:
            batch.targets["target"] = torch.tensor([IGNORE if t is None else t for t in targets], dtype=torch.long)
            return batch
        out = torch.zeros(len(targets), self.num_outputs)
        for i, t in enumerate(targets):
            if t is None:
                out[i] = float("nan")  # NaN row = this example does not label the task
            else:
                out[i, t] = 1.0
        batch.targets["target"] = out
        return batch

    # -- model -------------------------------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return mlp_head(hidden_size, self.params.head_hidden, self.num_outputs, dropout)

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> logits [B, C] from the pooled vector."""
        return head(encoded.pooled)

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """logits [B, C]; target [B] long (IGNORE = missing) or [B, C] float (NaN row = missing)."""
        weight = teacher_weight(targets)
        if weight is not None:  # distillation: the teacher's probabilities mixed with the gold label
            assert isinstance(output, torch.Tensor)
            if self.params.multi_label:
                return mixed_binary_cross_entropy(output, targets["target"], targets["soft"], weight,
                                                  self.params.multi_label_loss)
            return mixed_cross_entropy(output, targets["target"], targets["soft"], weight)
        logits, target = self.calibration_logits(output, targets)[HEAD]  # the labelled rows
        if not len(target):
            return None
        if self.params.multi_label:
            return multi_label_bce(logits, target, self.params.multi_label_loss)
        return F.cross_entropy(logits, target)

    # -- calibration -------------------------------------------------------------------------------------------------
    def calibration_heads(self) -> dict[str, CalibrationKind]:
        return {HEAD: "sigmoid" if self.params.multi_label else "softmax"}

    def calibration_logits(self, output: Output, targets: dict[str, torch.Tensor]) -> CalibrationData:
        """logits [N, C] of the labelled rows; targets [N] (single-label) or [N, C] of 0/1 (multi-label)."""
        assert isinstance(output, torch.Tensor)
        target = targets["target"]
        if not self.params.multi_label:
            return {HEAD: masked_pairs(output, target)}
        keep = ~torch.isnan(target[:, 0])
        return {HEAD: (output[keep].float(), target[keep])}

    def soft_target(self, example: Example, features: Sequence[Feature], outputs: Sequence[Any]) -> np.ndarray:
        """A teacher's class probabilities for the example [C] (mean over its features)."""
        return np.mean(np.stack(outputs), axis=0).astype(np.float32)

    def stock_head(self, head: nn.Module) -> StockHead:
        """``AutoModelForSequenceClassification`` on the first token; the temperature folded into the classifier
        (logits / T: the same argmax, and the stock probabilities are the calibrated ones polytask reports)."""
        t = self.temperature(HEAD)
        weight, bias = scaled(single_linear(head, self.name, self.params.head_hidden), 1.0 / t)
        multi = self.params.multi_label
        notes = [f"temperature {t:.4g} folded into the classifier (weights and bias / T): same argmax, and the "
                 "stock probabilities are polytask's calibrated scores"] if t != 1.0 else []
        if multi:
            notes.append(f"multi-label: polytask predicts the labels whose sigmoid is above {self.params.threshold} "
                         "(threshold); the stock class gives every label's probability, apply it yourself")
        if self.params.min_score:
            notes.append(f"min_score {self.params.min_score}: polytask answers no label below it; the stock class "
                         "always answers, apply it yourself")
        return StockHead("AutoModelForSequenceClassification", "first_token", weight, bias, list(self.labels),
                         "multi_label_classification" if multi else "single_label_classification",
                         "sigmoid" if multi else "softmax", notes=notes)

    # -- outputs -----------------------------------------------------------------------------------------------------
    def host_outputs(self, output: Output) -> list[Any]:
        """Probabilities per feature [C] (sigmoid when multi-label, else softmax) of the logits / temperature."""
        assert isinstance(output, torch.Tensor)
        logits = output.float() / self.temperature(HEAD)
        probs = torch.sigmoid(logits) if self.params.multi_label else torch.softmax(logits, dim=-1)
        return list(probs.cpu().numpy())

    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        probs = outputs[0] if len(outputs) == 1 else np.mean(np.stack(outputs), axis=0)
        if self.params.multi_label:
            return {"labels": [self.labels[j] for j, p in enumerate(probs) if p > self.params.threshold],
                    "scores": {self.labels[j]: round(float(p), 6) for j, p in enumerate(probs)}}
        best = int(np.argmax(probs))
        return {"label": self.labels[best], "score": round(float(probs[best]), 6)}

    def gate(self, prediction: dict[str, Any]) -> Gated | None:
        return gate_label(prediction, self.params.min_score)

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        if self.params.multi_label:
            return sorted(prediction["labels"]) == list(gold)
        return prediction["label"] == gold

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        n = len(golds)
        if n == 0:
            return {}
        # labels training never saw (count_as_wrong) get columns of their own: never predicted, so always wrong
        index = dict(self._index)
        for gold in golds:
            for x in gold if self.params.multi_label else [gold]:
                index.setdefault(x, len(index))
        c = len(index)
        extra = {"unseen_labels": float(unseen_count(self, golds))} if self.counts_unseen else {}
        if self.params.multi_label:
            g = np.zeros((n, c), dtype=bool)
            p = np.zeros((n, c), dtype=bool)
            for i, (pred, gold) in enumerate(zip(predictions, golds)):
                g[i, [index[x] for x in gold]] = True
                p[i, [index[x] for x in pred["labels"]]] = True
            micro, macro = f1_table(g, p)
            return {"micro_f1": micro, "macro_f1": macro, "exact_match": float((g == p).all(1).mean()), **extra}
        gi = np.array([index[x] for x in golds])
        pi = np.array([index[x["label"]] for x in predictions])
        onehot = np.eye(c, dtype=bool)
        _, macro = f1_table(onehot[gi], onehot[pi])
        return {"accuracy": float((gi == pi).mean()), "macro_f1": macro, **extra}
