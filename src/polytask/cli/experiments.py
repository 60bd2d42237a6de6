"""``polytask`` commands that compare and study runs: baseline, finetune, affinity, compare, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from polytask.cli.common import Overrides, _fail, _setup_logging, app, console
from polytask.errors import PolytaskError, check_choice


@app.command()
def baseline(
    config: Annotated[Path, typer.Argument(help="the multi-task run config YAML")],
    overrides: Overrides = None,
    seeds: Annotated[Optional[str], typer.Option(help="seeds, e.g. 1,2,3 or 1-3 (default: train.seed)")] = None,
    budget: Annotated[str, typer.Option(help="passes: as many passes over its own data as the multi-task run; "
                                             "steps: as many optimizer steps")] = "passes",
    force: Annotated[bool, typer.Option("--force", help="retrain runs that are there already")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bars")] = False,
) -> None:
    """Train every task ALONE with the same settings and budget, and the multi-task model, on each seed; writes
    OUTPUT_DIR/compare/ (summary.json, multi/seed-N, single/TASK/seed-N) and prints the comparison."""
    from polytask.baseline import BUDGETS, parse_seeds, run_baseline
    from polytask.compare import comparison, comparison_tables
    from polytask.config import load_config

    _setup_logging()
    try:
        check_choice("--budget", budget, BUDGETS, "budget")
        seed_list = parse_seeds(seeds)
        cfg = load_config(config, overrides or [])
        summary = run_baseline(cfg, seed_list, budget, force, show_progress=False if no_progress else None)
        tables = comparison_tables(comparison(summary, "test"))
    except PolytaskError as exc:
        _fail(exc)
    for table in tables:
        console.print(table)
    console.print(f"wrote {Path(cfg.train.output_dir) / 'compare' / 'summary.json'}")


@app.command()
def finetune(
    checkpoint: Annotated[Path, typer.Argument(help="a joint model (runs/x/best), or a `polytask baseline` run dir "
                                                    "(every seed's joint model)")],
    tasks: Annotated[Optional[str], typer.Option(help="comma-separated tasks (default: all)")] = None,
    scope: Annotated[str, typer.Option(help="heads: encoder frozen, one combined model; full: one model per task")
                     ] = "heads",
    epochs: Annotated[Optional[float], typer.Option(help="epochs of each task's run (default: the joint run's)")
                      ] = None,
    lr: Annotated[Optional[float], typer.Option(help="learning rate (default: the joint run's)")] = None,
    output_dir: Annotated[Optional[Path], typer.Option(help="default: next to the checkpoint, finetuned-SCOPE")
                          ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="hide the progress bars")] = False,
) -> None:
    """Per-task fine-tuning after joint training: each task's own short run from the joint model; prints joint vs
    fine-tuned per task and what each task stores."""
    from polytask.recipes.finetune import SCOPES, finetune as run_finetune

    if scope not in SCOPES:
        _fail(ValueError(f"unknown --scope {scope!r}; available: {', '.join(SCOPES)}"))
    _setup_logging()
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        summary = run_finetune(checkpoint, names, scope, output_dir, epochs, lr,
                               show_progress=False if no_progress else None)
    except PolytaskError as exc:
        _fail(exc)
    for seed, one in (summary.get("seeds") or {"": summary}).items():
        table = Table(title=f"per-task fine-tuning ({scope}){f' seed {seed}' if seed else ''}: {one['checkpoint']}")
        for col in ("task", "split", "metric", "joint", "fine-tuned", "stored per task"):
            table.add_column(col, justify="left" if col in ("task", "split", "metric") else "right")
        for name, entry in one["tasks"].items():
            metric = next((k for k in entry["finetuned"] if k not in ("split", "examples")), "")
            table.add_row(name, entry["finetuned"].get("split", ""), metric,
                          f"{entry['joint'].get(metric, float('nan')):.4f}",
                          f"{entry['finetuned'].get(metric, float('nan')):.4f}", f"{entry['stored_bytes']:,} B")
        console.print(table)
        if one.get("combined"):
            console.print(f"one model with every fine-tuned head: {one['combined']}")


FEW_AFFINITY_MEASUREMENTS = 10  # below this many matrices, `polytask affinity` says the mean is noisy


@app.command()
def affinity(
    run_dir: Annotated[Path, typer.Argument(help="a run's output_dir (trained with train.affinity_every)")],
    max_groups: Annotated[int, typer.Option(min=1, help="suggest partitions into 1..N groups")] = 3,
) -> None:
    """The inter-task affinity a run measured (TAG): the matrix averaged over training, a heatmap PNG
    (RUN_DIR/report/affinity.png) and the best task groupings for 1..N groups."""
    import math

    from polytask.recipes.affinity import heatmap, read_affinity, suggest_groups

    try:
        found = read_affinity(run_dir)
    except PolytaskError as exc:
        _fail(exc)
    tasks, matrix = found["tasks"], found["matrix"]
    table = Table(title=f"affinity Z[i→j] = 1 − L'_j / L_j (row i: the task stepped on; column j: the task whose "
                        f"loss is read), mean of {found['measurements']} measurements ({found['seconds']} s)")
    table.add_column("i \\ j")
    for t in tasks:
        table.add_column(t, justify="right")
    for t, row in zip(tasks, matrix):
        table.add_row(t, *["-" if math.isnan(v) else f"{v:+.4f}" for v in row])
    console.print(table)
    groups = Table(title="suggested groupings (TAG score: Σ over tasks of the mean affinity onto it from its group)")
    for col in ("groups", "partition", "score"):
        groups.add_column(col)
    for s in suggest_groups(tasks, matrix, max_groups):
        groups.add_row(str(s["groups"]), " | ".join("+".join(g) for g in s["partition"]), f"{s['score']:.4f}")
    console.print(groups)
    if found["measurements"] < FEW_AFFINITY_MEASUREMENTS:
        console.print(f"note: only {found['measurements']} measurements; one look-ahead step changes each loss "
                      "very little, so a mean of few is noisy: measure more often (a smaller train.affinity_every; "
                      f"{FEW_AFFINITY_MEASUREMENTS} or more) before trusting the groupings", markup=False)
    try:
        console.print(f"wrote {heatmap(tasks, matrix, run_dir / 'report' / 'affinity.png')}")
    except ImportError:
        console.print("note: matplotlib is not installed (pip install 'polytask[plots]'): no heatmap")


@app.command()
def compare(
    run_dir: Annotated[Path, typer.Argument(help="the config's train.output_dir (holds compare/summary.json)")],
    split: Annotated[str, typer.Option(help="test (a task without test falls back to validation) or validation")
                     ] = "test",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the comparison as JSON here")] = None,
) -> None:
    """Multi-task vs single-task per task (from `polytask baseline`): primary metric, difference, time, size."""
    from polytask.compare import comparison, comparison_tables, load_summary

    try:
        check_choice("--split", split, ("test", "validation"), "split")
        comp = comparison(load_summary(run_dir), split)
    except PolytaskError as exc:
        _fail(exc)
    for table in comparison_tables(comp):
        console.print(table)
    if json_out:
        json_out.write_text(json.dumps(comp, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")


@app.command()
def report(run_dir: Annotated[Path, typer.Argument(help="a run's output_dir (holds metrics.jsonl)")]) -> None:
    """PNG plots (loss, validation metric, sampling, loss weights) and summary.md, written into RUN_DIR/report/."""
    from polytask.report import write_report

    try:
        result = write_report(run_dir)
    except PolytaskError as exc:
        _fail(exc)
    for path in result.files:
        console.print(f"wrote {path}")
    for note in result.notes:
        console.print(f"note: {note}")
