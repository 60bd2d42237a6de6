"""Rich tables for results (the CLI prints these; benchmarks reuse them)."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def results_table(result: dict[str, Any], title: str | None = None) -> Table:
    """One row per task: its metrics; then one row per multi-task source: the share of rows with all tasks right."""
    metric_names: list[str] = []
    for metrics in result["tasks"].values():
        for k in metrics:
            if k != "examples" and k not in metric_names:
                metric_names.append(k)
    table = Table(title=title or f"{result.get('split', '')} results", show_lines=False)
    table.add_column("task")
    table.add_column("examples", justify="right")
    for name in metric_names:
        table.add_column(name, justify="right")
    for task, metrics in result["tasks"].items():
        table.add_row(task, str(metrics.get("examples", "")), *[_fmt(metrics[m]) if m in metrics else "-"
                                                               for m in metric_names])
    notes = [f"{source}: every task right on {info['all_tasks_correct']:.4f} of {info['examples']} rows"
             for source, info in result.get("sources", {}).items() if "all_tasks_correct" in info]
    if notes:
        table.caption = "\n".join(notes)
    return table
