"""What a task's scores feed: temperature-scaling data (``Task.calibration_logits``) and the ``min_score`` gate.

With ``min_score`` > 0 a task answers "none" where its (calibrated) score is below the threshold:

- one label (classification, relation_classification): ``{"label": null, "score": s, "below_min_score": true}``;
  an answered prediction carries ``"below_min_score": false``, so the keys never change under a threshold;
- a list of answers (token spans, extracted relations): the items below it are dropped and ``"dropped": k`` counts
  them.

Evaluation scores the predictions before the gate; ``Gated`` counts answers for the ``coverage`` it reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Gated:
    """A prediction with ``min_score`` applied: what users get, and how many of its candidate answers (a label,
    spans, relations) stayed at or above the threshold."""

    prediction: dict[str, Any]
    answered: int
    candidates: int


# a calibration head's kind: "softmax" (one class per entry, targets [N] class indices) or "sigmoid" (each class a
# yes/no of its own, targets [N, C] of 0/1)
CalibrationKind = str
CalibrationData = dict[str, tuple[torch.Tensor, torch.Tensor]]


def gate_label(prediction: dict[str, Any], min_score: float) -> Gated | None:
    """One-label answer under ``min_score``: it gains ``below_min_score``; below, ``label`` becomes None and the
    score stays (how far below it was)."""
    if min_score <= 0:
        return None
    answered = prediction["score"] >= min_score
    gated = {**prediction, "label": prediction["label"] if answered else None, "below_min_score": not answered}
    return Gated(gated, int(answered), 1)


def gate_items(prediction: dict[str, Any], key: str, min_score: float) -> tuple[dict[str, Any], list[Any]] | None:
    """A list answer (``key``: spans, relations) under ``min_score``: items below it dropped and counted under
    ``dropped`` -> (the gated prediction, the dropped items), or None when off."""
    if min_score <= 0:
        return None
    kept = [item for item in prediction[key] if item["score"] >= min_score]
    dropped = [item for item in prediction[key] if item["score"] < min_score]
    return {**prediction, key: kept, "dropped": len(dropped)}, dropped
