"""Temperature scaling and the expected calibration error (ECE) of the heads whose outputs are class probabilities.

Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks"): one scalar T > 0 per head, fitted
on validation by minimising the negative log-likelihood of the labels under softmax(logits / T) (sigmoid for a
multi-label head). Dividing by T never moves an argmax, so labels, tags and spans stay as they are; only the scores
change. The NLL is convex in 1/T, hence unimodal in log T: a golden-section search on log T in [0.01, 100] finds it.
A head that separates its validation entries perfectly has no finite optimum (the NLL keeps falling as T -> 0, and
every score would become 1, out-of-domain inputs included): when the search ends at T = 0.01 the temperature stays 1
and a warning says why.

ECE: the entries are put into 15 equal-width bins of confidence, (0, 1/15], ..., (14/15, 1]; ECE is the sum over
bins of (share of entries in the bin) x |accuracy in the bin - mean confidence in the bin|. What an entry is:

- softmax heads (single-label classification, relation classification, token tags, the entity tagger and the
  relation scorer of ``relation_extraction``): one labelled example / word / gold entity pair; its confidence is the
  top-label probability, correct when the top label is the gold one (Guo et al.'s top-label ECE);
- sigmoid heads (multi-label classification): each (example, label) is a yes/no prediction of its own; its
  confidence is max(p, 1 - p), correct when (p > 0.5) matches the gold.

A task type opts in through ``Task.calibration_heads`` and ``Task.calibration_logits`` (the labelled logits of a
batch); nothing here knows task types.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from polytask.tasks import Task

log = logging.getLogger("polytask")

BINS = 15
T_LOW, T_HIGH = 0.01, 100.0
Arrays = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]  # task -> head -> (logits [N, C], targets)


def _tensors(logits: Any, targets: Any, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets))
    return z, (y.to(torch.float64) if kind == "sigmoid" else y.long())


def nll(logits: Any, targets: Any, kind: str, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``targets`` under the logits [N, C] / ``temperature``: cross-entropy over
    classes (``softmax``, targets [N]) or binary cross-entropy per entry (``sigmoid``, targets [N, C] of 0/1)."""
    z, y = _tensors(logits, targets, kind)
    if kind == "sigmoid":
        return float(F.binary_cross_entropy_with_logits(z / temperature, y))
    return float(F.cross_entropy(z / temperature, y))


def fit_temperature(logits: Any, targets: Any, kind: str, tolerance: float = 1e-5) -> float:
    """The T in [0.01, 100] that minimises :func:`nll` (golden-section search on log T); 1.0 without entries."""
    z, y = _tensors(logits, targets, kind)
    if not len(y):
        return 1.0

    def loss(log_t: float) -> float:
        scaled = z / math.exp(log_t)
        if kind == "sigmoid":
            return float(F.binary_cross_entropy_with_logits(scaled, y))
        return float(F.cross_entropy(scaled, y))

    ratio = (math.sqrt(5) - 1) / 2
    lo, hi = math.log(T_LOW), math.log(T_HIGH)
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    while hi - lo > tolerance:
        if fa <= fb:  # the minimum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return math.exp((lo + hi) / 2)


def confidences(logits: Any, targets: Any, kind: str, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """-> (confidence [M], correct [M] bool) of every entry, as the module docstring defines them."""
    z, y = _tensors(logits, targets, kind)
    if kind == "sigmoid":
        p = torch.sigmoid(z / temperature).reshape(-1)
        gold = y.reshape(-1) > 0.5
        return torch.maximum(p, 1 - p).numpy(), ((p > 0.5) == gold).numpy()
    probs = torch.softmax(z / temperature, dim=-1)
    top, best = probs.max(dim=-1)
    return top.numpy(), (best == y).numpy()


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Sum over equal-width confidence bins (lower, upper] of (share of entries) x |accuracy - mean confidence|."""
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if not len(confidence):
        return 0.0
    # bin b holds b/bins < c <= (b+1)/bins; a confidence of exactly 0 joins the first bin
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


class LogitStore:
    """The labelled logits of every calibrated head, batch after batch (``polytask.evaluate.predict_split`` fills
    it while it predicts): one pass gives predictions and calibration data."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}

    def add(self, task_name: str, task: Task, output: Any, targets: dict[str, torch.Tensor]) -> None:
        if not task.calibration_heads():
            return
        for head, (z, y) in task.calibration_logits(output, targets).items():
            if len(y):
                pair = (z.detach().float().cpu().numpy(), y.detach().cpu().numpy())
                self.parts.setdefault(task_name, {}).setdefault(head, []).append(pair)

    def merge_parts(self, parts: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] | None) -> None:
        """Add another store's ``parts`` (another process's share)."""
        for task_name, heads in (parts or {}).items():
            for head, pairs in heads.items():
                self.parts.setdefault(task_name, {}).setdefault(head, []).extend(pairs)

    def arrays(self) -> Arrays:
        """task -> head -> (logits [N, C], targets), the batches concatenated."""
        return {t: {h: (np.concatenate([z for z, _ in pairs]), np.concatenate([y for _, y in pairs]))
                    for h, pairs in heads.items()} for t, heads in self.parts.items()}


def metric_key(base: str, head: str, task: Task) -> str:
    """``ece`` for a task with one calibrated head, ``ece_HEAD`` for each head of a task with several."""
    return base if len(task.calibration_heads()) == 1 else f"{base}_{head}"


def calibration_metrics(task: Task, heads: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``ece`` (with the task's temperature), ``ece_uncalibrated`` (T = 1) and ``temperature`` per head."""
    kinds, out = task.calibration_heads(), {}
    for head, (z, y) in heads.items():
        t = task.temperature(head)
        out[metric_key("ece", head, task)] = expected_calibration_error(*confidences(z, y, kinds[head], t))
        out[metric_key("ece_uncalibrated", head, task)] = expected_calibration_error(
            *confidences(z, y, kinds[head], 1.0))
        out[metric_key("temperature", head, task)] = t
    return out


def fit_task(task: Task, heads: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Fit and set a temperature for every head with data (others keep theirs) -> {head: T}; T = 1 for a head
    whose entries the fit can only sharpen without end (perfectly separated, see the module docstring)."""
    kinds, fitted = task.calibration_heads(), {}
    for head, (z, y) in heads.items():
        t = fit_temperature(z, y, kinds[head])
        if t < T_LOW * 1.01:
            log.warning("%s.%s: the NLL of its %d calibration entries still falls at T = %s (the head separates "
                        "them perfectly?): a temperature there would push every score to 1; it stays 1", task.name,
                        head, len(y), T_LOW)
            t = 1.0
        fitted[head] = round(t, 6)
    task.temperatures = {**task.temperatures, **fitted}
    return fitted
