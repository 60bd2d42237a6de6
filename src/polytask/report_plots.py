"""The plots of ``polytask report``, one PNG each: training loss per task, the primary validation metric, the
sampling proportions per source and the loss weights per task, drawn with matplotlib's Agg renderer on ``Figure``
objects (no pyplot, no display, no global state); and ``series_of``, the per-name values over steps they draw from."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def series_of(records: list[dict[str, Any]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """``{name: (steps, values)}`` of ``record[key][name]`` over train records, skipping absent/non-finite values."""
    out: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        for name, value in (r.get(key) or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                steps, values = out.setdefault(name, ([], []))
                steps.append(r["step"])
                values.append(float(value))
    return out


def _figure(width: float = 8.0, height: float = 4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _finish_over_steps(fig, ax, ylabel: str, title: str, path: Path) -> Path:
    """Labels, grid and a legend outside the axes for a one-panel plot over training steps; then save."""
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.savefig(str(path), format="png")
    return path


def plot_loss(train: list[dict[str, Any]], path: Path) -> Path | None:
    series = series_of(train, "loss")
    if not series:
        return None
    names = list(series)
    cols = 1 if len(names) == 1 else 2
    rows = math.ceil(len(names) / cols)
    fig = _figure(8.0 if cols == 2 else 7.0, max(3.2, 2.6 * rows))
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False)
    for i, name in enumerate(names):
        ax = axes[i // cols][i % cols]
        steps, values = series[name]
        ax.plot(steps, values, color=f"C{i}", linewidth=1.6, marker="o" if len(steps) < 3 else None)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylabel("loss")
        if i // cols == rows - 1 or i + cols >= len(names):
            ax.set_xlabel("step")
            ax.tick_params(labelbottom=True)
    for j in range(len(names), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle("Training loss per task (moving average)", fontsize=11)
    return _save(fig, path)


def plot_validation(evals: list[dict[str, Any]], primary: dict[str, str], path: Path,
                    best_at: int | None, selection: str = "mean") -> Path | None:
    if not evals:
        return None
    fig = _figure()
    ax = fig.subplots()
    tasks = list(dict.fromkeys(t for r in evals for t in r.get("tasks", {})))
    for i, task in enumerate(tasks):
        metric = primary.get(task)
        points = [(r["step"], r["tasks"][task][metric]) for r in evals
                  if metric and isinstance(r.get("tasks", {}).get(task, {}).get(metric), (int, float))]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=4, linewidth=1.6, color=f"C{i}", label=f"{task} ({metric})")
    aggregate = [(r["step"], r["aggregate"]) for r in evals if isinstance(r.get("aggregate"), (int, float))]
    if aggregate and len(tasks) > 1:
        steps, values = zip(*aggregate)
        ax.plot(steps, values, linestyle="--", color="black", linewidth=1.4,
                label=f"model selection ({selection})")
    if best_at is not None:
        ax.axvline(best_at, color="grey", linestyle=":", linewidth=1.2, label=f"best checkpoint (step {best_at})")
    return _finish_over_steps(fig, ax, "validation metric", "Validation metric per task (primary metric)", path)


def plot_sampling(train: list[dict[str, Any]], path: Path) -> Path | None:
    series = series_of(train, "sampling")
    if len(series) < 2:
        return None
    steps = sorted({s for st, _ in series.values() for s in st})
    stacks = []
    for name in series:
        lookup = dict(zip(*series[name]))
        stacks.append([lookup.get(s, 0.0) for s in steps])
    fig = _figure(8.0, 4.0)
    ax = fig.subplots()
    if len(steps) == 1:  # one logged step: bars read better than a zero-width area
        bottom = 0.0
        for i, (name, values) in enumerate(zip(series, stacks)):
            ax.bar([0], values, bottom=bottom, color=f"C{i}", label=name, width=0.5)
            bottom += values[0]
        ax.set_xticks([0], [f"step {steps[0]}"])
    else:
        ax.stackplot(steps, stacks, labels=list(series), alpha=0.85)
        ax.set_xlabel("step")
        ax.set_xlim(steps[0], steps[-1])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of batches")
    ax.set_title("Sampling proportions per source", fontsize=11)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def _constant(series: dict[str, tuple[list[int], list[float]]]) -> bool:
    values = [v for _, vs in series.values() for v in vs]
    return not values or max(values) - min(values) < 1e-9


def plot_weights(train: list[dict[str, Any]], path: Path) -> Path | None:
    series = series_of(train, "weight")
    if _constant(series):
        return None
    fig = _figure(8.0, 4.0)
    ax = fig.subplots()
    for i, (name, (steps, values)) in enumerate(series.items()):
        ax.plot(steps, values, marker="o", markersize=3, linewidth=1.4, color=f"C{i}", label=name)
    return _finish_over_steps(fig, ax, "loss weight", "Loss weight per task", path)
