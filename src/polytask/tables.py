"""Rich tables for results (the CLI prints these; benchmarks reuse them)."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

# metrics that count rows (stored as floats like every metric, so averaging over seeds stays uniform)
_COUNTS = frozenset({"unseen_labels"})


def _fmt(value: Any, name: str = "") -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if name in _COUNTS and value.is_integer() else f"{value:.4f}"
    return str(value)


def is_calibration_key(key: str) -> bool:
    """The keys :func:`calibration_table` shows (ECE, temperature, min_score and coverage), not the metrics table."""
    return key.startswith(("ece", "temperature")) or key in ("coverage", "min_score")


def results_table(result: dict[str, Any], title: str | None = None) -> Table:
    """One row per task: its metrics; then one row per multi-task source: the share of rows with all tasks right."""
    metric_names: list[str] = []
    for metrics in [*result["tasks"].values(), *result.get("breakdown", {}).values()]:
        for k in metrics:
            if k != "examples" and not is_calibration_key(k) and k not in metric_names:
                metric_names.append(k)
    table = Table(title=title or f"{result.get('split', '')} results", show_lines=False)
    table.add_column("task", no_wrap=True)
    table.add_column("examples", justify="right")
    for name in metric_names:
        table.add_column(name, justify="right")
    rows = {**result["tasks"], **result.get("breakdown", {})}  # then "task [value]" rows of a dataset's breakdown
    for task, metrics in rows.items():
        # escaped: a breakdown row is "task [value]", which rich would read as a style tag and drop
        table.add_row(escape(task), str(metrics.get("examples", "")),
                      *[_fmt(metrics[m], m) if m in metrics else "-" for m in metric_names])
    notes = [f"{source}: every task right on {info['all_tasks_correct']:.4f} of {info['examples']} rows"
             for source, info in result.get("sources", {}).items() if "all_tasks_correct" in info]
    if notes:
        table.caption = "\n".join(notes)
    return table


def calibration_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per calibrated head (``temperature`` or ``temperature_HEAD`` keys) and per task with a min_score:
    {task, head, temperature, ece_uncalibrated, ece, min_score, coverage} (absent values None)."""
    rows = []
    for task, metrics in result["tasks"].items():
        suffixes = [k[len("temperature"):] for k in metrics if k.startswith("temperature")]
        for i, suffix in enumerate(suffixes or ([""] if "coverage" in metrics else [])):
            rows.append({"task": task, "head": suffix.lstrip("_") or "-", "temperature": metrics.get(
                "temperature" + suffix), "ece_uncalibrated": metrics.get("ece_uncalibrated" + suffix),
                "ece": metrics.get("ece" + suffix), "min_score": metrics.get("min_score") if i == 0 else None,
                "coverage": metrics.get("coverage") if i == 0 else None})
    return rows


def calibration_table(result: dict[str, Any], title: str | None = None) -> Table | None:
    """Temperature, ECE before (T = 1) and after calibration per head, and min_score coverage; None if empty."""
    rows = calibration_rows(result)
    if not rows:
        return None
    table = Table(title=title or f"{result.get('split', '')} calibration (ECE: 15 equal-width confidence bins)")
    for column in ("task", "head", "temperature", "ECE (T=1)", "ECE", "min_score", "coverage"):
        table.add_column(column, justify="left" if column in ("task", "head") else "right")
    for row in rows:
        values = ["-" if row[k] is None else _fmt(float(row[k]))
                  for k in ("temperature", "ece_uncalibrated", "ece", "min_score", "coverage")]
        table.add_row(escape(row["task"]), escape(row["head"]), *values)
    return table
