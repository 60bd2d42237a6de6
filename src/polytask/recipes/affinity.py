"""``polytask affinity RUN``: the inter-task affinity a run measured (``train.affinity_every``, see
``polytask.training.affinity``), averaged over training, drawn, and turned into suggested task groupings.

Grouping follows TAG (Fifty et al. 2021): a task j in a group G scores the mean affinity onto it of the other members,
s(j, G) = mean_{i in G, i != j} Z[i→j] (0 alone); a partition of the tasks into k groups scores Σ_j s(j, group of j).
For each k up to ``max_groups`` every partition is scored (exhaustive: 877 partitions for 7 tasks) and the best is
suggested, with its score, so the trade-off between fewer models and more affinity is visible. Each suggestion is a
hypothesis to check by training (benchmarks/affinity_groups.py does it for the 7-task benchmark).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from polytask.errors import PolytaskError


def read_affinity(run_dir: str | Path) -> dict[str, Any]:
    """Mean affinity matrix over the run's measurements (NaN entries skipped) -> {tasks, matrix, measurements,
    seconds (total measuring time), steps}."""
    file = Path(run_dir) / "metrics.jsonl"
    if not file.is_file():
        raise PolytaskError(f"{run_dir}: no metrics.jsonl (is it a run's output_dir?)")
    records = [r for r in map(json.loads, file.read_text(encoding="utf-8").splitlines()) if r.get("type") ==
               "affinity"]
    if not records:
        raise PolytaskError(f"{file}: no affinity measurements; train with train.affinity_every: N (e.g. 10) and "
                            "train.step_mode: every_source so that every task is in every measured step")
    tasks = list(dict.fromkeys(t for r in records for t in r["tasks"]))
    sums = [[0.0] * len(tasks) for _ in tasks]
    counts = [[0] * len(tasks) for _ in tasks]
    for r in records:
        for a, row in zip(r["tasks"], r["matrix"]):
            for b, value in zip(r["tasks"], row):
                if value is not None and not math.isnan(value):
                    i, j = tasks.index(a), tasks.index(b)
                    sums[i][j] += value
                    counts[i][j] += 1
    matrix = [[sums[i][j] / counts[i][j] if counts[i][j] else math.nan for j in range(len(tasks))]
              for i in range(len(tasks))]
    return {"tasks": tasks, "matrix": matrix, "measurements": len(records),
            "seconds": round(sum(r.get("seconds", 0.0) for r in records), 2), "steps": [r["step"] for r in records]}


def partitions(items: list[str], k: int) -> Iterator[list[list[str]]]:
    """Every partition of ``items`` into exactly ``k`` non-empty groups."""
    if k == 1:
        yield [list(items)]
        return
    if len(items) == k:
        yield [[x] for x in items]
        return
    if not items or k > len(items):
        return
    first, rest = items[0], items[1:]
    for part in partitions(rest, k - 1):  # first alone
        yield [[first], *part]
    for part in partitions(rest, k):  # first joins one of the k groups
        for g in range(len(part)):
            yield [part[h] + [first] if h == g else part[h] for h in range(len(part))]


def score(groups: list[list[str]], tasks: list[str], matrix: list[list[float]]) -> float:
    total = 0.0
    for group in groups:
        for j in group:
            others = [matrix[tasks.index(i)][tasks.index(j)] for i in group if i != j]
            others = [v for v in others if not math.isnan(v)]
            total += sum(others) / len(others) if others else 0.0
    return total


def suggest_groups(tasks: list[str], matrix: list[list[float]], max_groups: int = 3) -> list[dict[str, Any]]:
    """The best partition into k groups for k = 1..max_groups, with its score."""
    out = []
    for k in range(1, min(max_groups, len(tasks)) + 1):
        best = max(partitions(tasks, k), key=lambda p: score(p, tasks, matrix))
        out.append({"groups": k, "partition": [sorted(g, key=tasks.index) for g in best],
                    "score": score(best, tasks, matrix)})
    return out


def heatmap(tasks: list[str], matrix: list[list[float]], path: Path) -> Path:
    """A PNG of the matrix (rows: the task stepped on; columns: the task whose loss moved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(tasks)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 + 0.9 * n), max(4.0, 1.2 + 0.7 * n)))
    # the colour scale follows the off-diagonal entries (what grouping reads); a task's effect on itself is shown
    # as a number on grey
    finite = [abs(v) for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and not math.isnan(v)]
    bound = max(finite or [1e-6])
    shown = [[math.nan if i == j else v for j, v in enumerate(row)] for i, row in enumerate(matrix)]
    ax.set_facecolor("#dddddd")
    image = ax.imshow(shown, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_xlabel("task whose loss is read (j)")
    ax.set_ylabel("task stepped on (i)")
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if not math.isnan(value):
                dark = i != j and abs(value) > 0.6 * bound
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8, color="white" if dark else "k")
    fig.colorbar(image, ax=ax, label="Z[i→j] = 1 − L'_j / L_j")
    ax.set_title("look-ahead affinity (TAG), mean over training", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
