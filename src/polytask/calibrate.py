"""``polytask calibrate``: (re)fit the temperatures of a checkpoint's calibrated heads on one of its data splits,
optionally choose a task's ``min_score`` for a wanted coverage, and write the checkpoint's config.json back.

    polytask calibrate runs/x/best                              # temperatures from the validation split
    polytask calibrate runs/x/best --coverage intent=0.99       # + intent answers 99% of validation inputs

Training already calibrates the best model when there is validation data (``train._finish``); this command is for
checkpoints of earlier versions, another split or other data (``--config``), or to set ``min_score``. Only
config.json changes (temperatures and thresholds live there), replaced atomically; the weights are not touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polytask.calibration import calibration_metrics, fit_task
from polytask.errors import PolytaskError
from polytask.evaluate import collect_logits, coverage, load_checkpoint_data, predict_split
from polytask.tasks import Task


def parse_coverage(items: list[str] | None) -> dict[str, float]:
    """``["intent=0.99", ...]`` -> {"intent": 0.99}; a share must lie in (0, 1]."""
    out: dict[str, float] = {}
    for item in items or []:
        task, sep, value = item.partition("=")
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or not task.strip() or not 0 < share <= 1:
            raise PolytaskError(f"--coverage {item!r}: expected TASK=SHARE with 0 < SHARE <= 1, e.g. intent=0.99")
        out[task.strip()] = share
    return out


def _with_min_score(task: Task, value: float) -> Any:
    """The task's params with ``min_score`` = value, validated (a task type may refuse a threshold)."""
    params = type(task.params)
    if "min_score" not in params.model_fields:
        raise PolytaskError(f"task {task.name!r} ({task.params.type}) has no min_score: its predictions carry no "
                            "probability score")
    try:
        return params.model_validate({**task.params.model_dump(), "min_score": value})
    except ValueError as exc:
        raise PolytaskError(f"task {task.name!r}: min_score cannot be set: {exc}") from None


def min_score_for_coverage(task: Task, predictions: list[dict[str, Any]], share: float) -> tuple[float, float]:
    """Set ``task.params.min_score`` to the highest threshold under which at least ``share`` of the candidate
    answers of ``predictions`` (labels, spans, relations) are still given -> (min_score, coverage it gives).
    Scores are rounded to 6 decimals, so the threshold is one of them: a bisection finds it."""
    _with_min_score(task, 0.5)  # refuses a task type that has no threshold before any search
    original = task.params

    def share_at(threshold: float) -> float | None:
        task.params = original.model_copy(update={"min_score": threshold})
        return coverage(task, predictions)

    try:
        if share_at(1e-6) is None:
            raise PolytaskError(f"task {task.name!r}: no predicted answers on this split to choose min_score from")
        lo, hi = 1e-6, 1.0 + 1e-6  # share_at(lo) >= share > share_at(hi) unless every answer scores 1
        if (share_at(1.0) or 0.0) >= share:
            lo = 1.0
        else:
            for _ in range(60):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if (share_at(mid) or 0.0) >= share else (lo, mid)
        value = round(lo, 6) if (share_at(round(lo, 6)) or 0.0) >= share else lo
    finally:
        task.params = original
    task.params = _with_min_score(task, value)
    return value, coverage(task, predictions) or 0.0


def calibrate_checkpoint(path: str | Path, split: str = "validation", config: str | Path | None = None,
                         coverage_targets: Mapping[str, float] | None = None, batch_size: int = 128,
                         precision: str = "fp32", write: bool = True, refit: bool = True) -> dict[str, Any]:
    """Fit every calibrated head's temperature on ``split`` (unless not ``refit``: keep the checkpoint's), then set
    the ``min_score`` of each task of ``coverage_targets`` for its share of answered inputs; write config.json back
    (``write``) -> {"split", "tasks": {task: {temperature, ece, ece_uncalibrated (per head), min_score,
    coverage}}} (what ``tables.calibration_table`` shows). ``precision``: fp32 by default, what ``predict`` and
    ``serve`` run, so a min_score answers the chosen share of inputs there."""
    from polytask.checkpoint import read_config, rewrite_config

    targets = dict(coverage_targets or {})
    known = list(read_config(path)["tasks"])
    unknown = [t for t in targets if t not in known]
    if unknown:
        raise PolytaskError(f"--coverage: unknown task(s) {', '.join(unknown)}; available: {', '.join(known)}")
    # without a refit only the datasets of the tasks to threshold are read
    model, _, data = load_checkpoint_data(path, split, config, tasks=None if refit else list(targets))
    result: dict[str, Any] = {"split": split, "tasks": {}}
    for name, heads in (collect_logits(model, data, split, batch_size, precision) if refit else {}).items():
        fit_task(model.tasks[name], heads)
        result["tasks"][name] = calibration_metrics(model.tasks[name], heads)
    if targets:
        for group in data.splits[split].values():
            chosen = [n for n in group.tasks if n in targets]
            if not chosen:
                continue
            predictions = predict_split(model, group, batch_size, precision, tasks=chosen)  # with the new T
            for name in chosen:
                labelled = [p for p, g in zip(predictions[name], group.golds[name]) if g is not None]
                value, share = min_score_for_coverage(model.tasks[name], labelled, targets[name])
                result["tasks"].setdefault(name, {}).update({"min_score": value, "coverage": share})
        missing = [t for t in targets if "min_score" not in result["tasks"].get(t, {})]
        if missing:
            raise PolytaskError(f"--coverage: task(s) {', '.join(missing)} have no {split!r} data")
    if write:
        rewrite_config(model, path)
    return result
