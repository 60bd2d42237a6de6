"""``classification``: one label (softmax, cross-entropy) or several (``multi_label: true``: sigmoid, BCE) per
example, on a single text or a text pair (the pair comes from the dataset's ``text_pair`` column).

Metrics: single-label accuracy (primary) and macro-F1; multi-label micro-F1 (primary), macro-F1 and exact match.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from polytask.data.rows import Row
from polytask.errors import DataError
from polytask.tasks.base import IGNORE, TASKS, DecodeContext, Task, TaskParams


class ClassificationParams(TaskParams):
    multi_label: bool = False
    label_separator: str = Field(",", min_length=1, description="multi-label: separator inside a text cell")
    threshold: float = Field(0.5, gt=0, lt=1, description="multi-label: a label is predicted above this probability")
    labels: list[str] | None = Field(None, description="fixed label set; default: the labels seen in training")


def _f1_table(gold: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
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
class Classification(Task):
    """One label per text or text pair (softmax, cross-entropy), or several (multi_label: sigmoid, BCE)."""

    Params: ClassVar[type[TaskParams]] = ClassificationParams
    level = "sequence"
    params: ClassificationParams

    def __init__(self, name: str, params: ClassificationParams) -> None:
        super().__init__(name, params)
        self._set_labels(params.labels or [])

    @property
    def primary_metric(self) -> str:  # type: ignore[override]
        return "micro_f1" if self.params.multi_label else "accuracy"

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        multi = getattr(params, "multi_label", False)
        return ["micro_f1", "macro_f1", "exact_match"] if multi else ["accuracy", "macro_f1"]

    # -- labels ------------------------------------------------------------------------------------------------------
    def _split(self, raw: Any, row: Row) -> list[str]:
        if isinstance(raw, list):
            return [str(v).strip() for v in raw]
        if isinstance(raw, str) and raw.strip().startswith("["):
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"not a JSON list: {exc.msg}", location=row.location, field=self.params.label,
                                value=raw) from None
            return [str(v).strip() for v in parsed]
        return [p.strip() for p in str(raw).split(self.params.label_separator) if p.strip()]

    def _names(self, raw: Any, row: Row) -> list[str]:
        if self.params.multi_label:
            return self._split(raw, row)
        if isinstance(raw, (list, dict)):
            raise DataError("expected one label; set multi_label: true for several", location=row.location,
                            field=self.params.label, value=raw)
        return [str(raw).strip()]

    def fit(self, values: list[tuple[Any, Row]]) -> None:
        if self.params.labels:
            return
        seen: set[str] = set()
        for raw, row in values:
            seen.update(self._names(raw, row))
        # sorted, so the label order (and the checkpoint) does not depend on row order
        self._set_labels(sorted(seen))

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "multi_label": self.params.multi_label}

    def load_state(self, state: dict[str, Any]) -> None:
        self._set_labels(state["labels"])

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def gold(self, raw: Any, row: Row) -> Any:
        names = self._names(raw, row)
        for name in names:
            if name not in self._index:
                raise DataError(f"label not in task {self.name!r}'s label set (learned from the training split)",
                                location=row.location, field=self.params.label, value=name,
                                allowed=", ".join(self.labels))
        return sorted(set(names)) if self.params.multi_label else names[0]

    def encode(self, raw: Any, row: Row) -> Any:
        gold = self.gold(raw, row)
        if self.params.multi_label:
            return [self._index[g] for g in gold]
        return self._index[gold]

    # -- model -------------------------------------------------------------------------------------------------------
    def collate(self, targets: list[Any], num_words: int) -> torch.Tensor:
        if not self.params.multi_label:
            return torch.tensor([IGNORE if t is None else t for t in targets], dtype=torch.long)
        out = torch.zeros(len(targets), self.num_outputs)
        for i, t in enumerate(targets):
            if t is None:
                out[i] = float("nan")  # NaN row = this example does not label the task
            else:
                out[i, t] = 1.0
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """logits [B, C]; target [B] long (IGNORE = missing) or [B, C] float (NaN row = missing)."""
        if not self.params.multi_label:
            keep = target != IGNORE
            if not keep.any():
                return None
            return F.cross_entropy(logits[keep].float(), target[keep])
        keep = ~torch.isnan(target[:, 0])
        if not keep.any():
            return None
        return F.binary_cross_entropy_with_logits(logits[keep].float(), target[keep])

    # -- outputs -----------------------------------------------------------------------------------------------------
    def decode(self, logits: torch.Tensor, ctx: DecodeContext | None = None) -> list[dict[str, Any]]:
        if self.params.multi_label:
            probs = torch.sigmoid(logits.float()).tolist()
            return [
                {"labels": [self.labels[j] for j, p in enumerate(row) if p > self.params.threshold],
                 "scores": {self.labels[j]: round(p, 6) for j, p in enumerate(row)}}
                for row in probs
            ]
        probs = torch.softmax(logits.float(), dim=-1)
        best = probs.argmax(-1).tolist()
        return [{"label": self.labels[b], "score": round(float(probs[i, b]), 6)} for i, b in enumerate(best)]

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        if self.params.multi_label:
            return sorted(prediction["labels"]) == list(gold)
        return prediction["label"] == gold

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        n, c = len(golds), self.num_outputs
        if n == 0:
            return {}
        if self.params.multi_label:
            g = np.zeros((n, c), dtype=bool)
            p = np.zeros((n, c), dtype=bool)
            for i, (pred, gold) in enumerate(zip(predictions, golds)):
                g[i, [self._index[x] for x in gold]] = True
                p[i, [self._index[x] for x in pred["labels"]]] = True
            micro, macro = _f1_table(g, p)
            return {"micro_f1": micro, "macro_f1": macro, "exact_match": float((g == p).all(1).mean())}
        gi = np.array([self._index[x] for x in golds])
        pi = np.array([self._index[x["label"]] for x in predictions])
        onehot = np.eye(c, dtype=bool)
        _, macro = _f1_table(onehot[gi], onehot[pi])
        return {"accuracy": float((gi == pi).mean()), "macro_f1": macro}
