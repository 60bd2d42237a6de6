"""Honest evaluation: every task of a run config trained ALONE, with the same settings and budget, beside the
multi-task model trained on the same seeds, so negative transfer shows up task by task.

``polytask baseline CONFIG`` writes, under the config's ``train.output_dir``::

    compare/
      summary.json                    per-task metrics of every run, times, parameters, memory, checkpoint sizes
      multi/seed-N/                   the multi-task run (a normal run dir: best/, last/, metrics.jsonl, ...)
      single/<task>/seed-N/           <task> trained alone (a normal run dir)

Each run dir also holds ``compare_stats.json`` (wall time and memory measured around ``train``), so a run that is
reused on a later call (same config, finished) keeps its measurements.

The single-task config of task T is the multi-task config with only T and T's dataset. A dataset that labels
several tasks (SNIPS: intent + slots) is split into one single-task run per task, each reading the whole dataset
and training on T's labels only.

**The budget** (``budget="passes"``, the default): every single-task run makes as many passes over its own training
data as the multi-task run makes over the union of all the data. With ``S = ceil(rows/batch_size)`` batches per
source and ``A = grad_accum``, an epoch of the multi-task run is ``E_m = ceil(sum_s S_s / A)`` optimizer steps and the
run makes ``N_m = max_steps or ceil(epochs * E_m)`` steps, i.e. ``P = N_m / E_m`` passes (``= epochs`` unless
``max_steps`` is set). Task T on source s gets ``N_T = ceil(P * ceil(S_s / A))`` steps (at least 1), written into its
config as ``train.max_steps``. Everything else that matters is the same: encoder and its settings, lr, head_lr,
weight decay, batch size, grad_accum, warm-up *ratio*, schedule, clipping, precision, task params, seed. Model
selection happens as often per pass: ``evaluation.every_steps`` is scaled by ``ceil(S_s / A) / E_m`` (unset stays
unset: once per own epoch), ``patience`` counts evaluations as before. A task trained alone uses its plain loss
(``weighting: equal``: a learned or static weight on a lone loss would only rescale its learning rate); the sampler
has one source to draw from. A selection metric ``OTHER_TASK/METRIC`` becomes ``mean`` (= T's primary metric).

``budget="steps"``: every single-task run makes the same number of optimizer steps ``N_m`` as the multi-task run
(same number of batches of the same size: equal compute per run, so the N single runs together cost N times the
multi-task run), evaluating every ``evaluation.every_steps`` (default ``E_m``) steps.

Memory is the process peak resident set size during each run, measured in-process: on Linux the kernel's
high-water mark (``VmHWM`` in /proc/self/status) is reset through /proc/self/clear_refs before the run and read
after it; elsewhere the increase of ``resource.getrusage().ru_maxrss`` (a lower bound: 0 when a run stays under an
earlier run's peak). On CUDA the peak of ``torch.cuda.max_memory_allocated`` is recorded too.

The plans (seeds, budgets, single-task configs) are made in ``polytask.baseline_plan``; this module runs them and
writes the summary.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from polytask.baseline_plan import (BUDGETS, RunPlan, compare_root, multi_plan, parse_seeds,  # noqa: F401
                                    read_train_rows, single_plan, unlabelled)
from polytask.config import RunConfig
from polytask.errors import PolytaskError
from polytask.memory import PeakMemory, count_parameters

log = logging.getLogger("polytask")

SUMMARY_FORMAT = "polytask-compare"
SUMMARY_VERSION = 1
STATS_FILE = "compare_stats.json"


# ----------------------------------------------------------------------------------------------------------------------
# running


def _finished(plan: RunPlan) -> bool:
    """The run dir holds a finished run of exactly this config (so it can be reused)."""
    run_dir = plan.run_dir
    metrics, saved = run_dir / "best" / "metrics.json", run_dir / "run_config.yaml"
    if not (metrics.is_file() and saved.is_file() and (run_dir / "best" / "model.safetensors").is_file()):
        return False
    try:
        done = "train_seconds" in json.loads(metrics.read_text(encoding="utf-8"))
        old = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return False
    new = yaml.safe_load(plan.config.to_yaml())
    for cfg in (old, new):
        cfg.get("train", {}).pop("progress_bar", None)
    return bool(done and old == new)


def _execute(plan: RunPlan, force: bool, show_progress: bool | None) -> bool:
    """Train ``plan`` unless a finished identical run is there; -> whether it was reused."""
    from polytask.train import train

    run_dir = plan.run_dir
    if not force and _finished(plan):
        log.info("baseline: reusing %s (finished run of the same config)", run_dir)
        return True
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished or different run: start clean (metrics.jsonl is append-only)
    what = "multi-task model" if plan.kind == "multi" else f"task {plan.task!r} alone"
    log.info("baseline: seed %d: training the %s for %d steps -> %s", plan.seed, what, plan.steps, run_dir)
    started = time.perf_counter()
    with PeakMemory() as memory:
        train(plan.config, show_progress=show_progress)
    stats = {"wall_seconds": round(time.perf_counter() - started, 2), **memory.result()}
    (run_dir / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return False


def _tasks_only(result: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if result is None else result.get("tasks", {})


def run_record(plan: RunPlan, root: Path, reused: bool) -> dict[str, Any]:
    """What summary.json keeps of one run, read back from its run dir (so the numbers are the folder's)."""
    run_dir = plan.run_dir
    best = json.loads((run_dir / "best" / "metrics.json").read_text(encoding="utf-8"))
    stats_file = run_dir / STATS_FILE
    stats = json.loads(stats_file.read_text(encoding="utf-8")) if stats_file.is_file() else {}
    model_file = run_dir / "best" / "model.safetensors"
    return {
        "run_dir": os.path.relpath(run_dir, root),
        "reused": reused,
        "planned_steps": plan.steps,
        "steps": best.get("step"),
        "train_seconds": best.get("train_seconds"),
        "train_examples": best.get("train_examples"),
        "wall_seconds": stats.get("wall_seconds"),
        "peak_rss_mib": stats.get("peak_rss_mib"),
        "peak_rss_increase_mib": stats.get("peak_rss_increase_mib"),
        "cuda_peak_mib": stats.get("cuda_peak_mib"),
        "memory_method": stats.get("method"),
        "parameters": count_parameters(model_file),
        "model_bytes": model_file.stat().st_size,
        "best_metric": best.get("best_metric"),
        "selection_metric": best.get("metric"),
        "validation": _tasks_only(best.get("validation")),
        "test": _tasks_only(best.get("test")),
    }


def run_baseline(cfg: RunConfig, seeds: list[int] | None = None, budget: str = "passes", force: bool = False,
                 show_progress: bool | None = None) -> dict[str, Any]:
    """Train the multi-task model and every task alone for each seed (reusing finished runs of the same config
    unless ``force``); write and return ``<output_dir>/compare/summary.json``."""
    from polytask.tasks import build_task

    if budget not in BUDGETS:
        raise PolytaskError(f"unknown budget {budget!r}; available: {', '.join(BUDGETS)}")
    seeds = seeds or [cfg.train.seed]
    root = compare_root(cfg)
    rows = read_train_rows(cfg)
    sizes = {source: len(split_rows["train"]) for source, split_rows in rows.items()}
    empty = [s for s, n in sizes.items() if n == 0]
    if empty:
        raise PolytaskError(f"datasets without training rows: {', '.join(empty)}")
    skipped = unlabelled(cfg, rows)
    for name, why in skipped.items():
        log.warning("baseline: task %r is not trained alone: %s", name, why)
    singles = [t for t in cfg.tasks if t not in skipped]
    del rows

    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT, "version": SUMMARY_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "output_dir": str(Path(cfg.train.output_dir).resolve()),
        "seeds": seeds,
        "budget": {"mode": budget, "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum,
                   "train_rows": sizes, "multi": {}, "single": {}},
        "memory": {"method": None, "unit": "MiB"},
        "tasks": {},
        "multi": {"runs": {}},
        "single": {t: {"runs": {}} for t in singles},
        "skipped": skipped,
    }
    for name, params in cfg.tasks.items():
        task = build_task(name, params)  # type: ignore[arg-type]
        source = params.dataset  # type: ignore[attr-defined]
        summary["tasks"][name] = {"type": params.type, "dataset": source,  # type: ignore[attr-defined]
                                  "primary_metric": task.primary_metric,
                                  "shares_dataset_with": [t for t in cfg.sources_of()[source] if t != name]}

    for seed in seeds:
        plans = [multi_plan(cfg, seed, sizes)] + [single_plan(cfg, t, seed, sizes, budget) for t in singles]
        for plan in plans:
            reused = _execute(plan, force, show_progress)
            record = run_record(plan, root, reused)
            info = {"steps": plan.steps, "steps_per_epoch": plan.steps_per_epoch,
                    "passes": round(plan.steps / plan.steps_per_epoch, 4),
                    "every_steps": plan.config.evaluation.every_steps}
            if plan.kind == "multi":
                summary["multi"]["runs"][str(seed)] = record
                summary["budget"]["multi"] = info
            else:
                summary["single"][plan.task]["runs"][str(seed)] = record
                summary["budget"]["single"][plan.task] = info
            summary["memory"]["method"] = summary["memory"]["method"] or record["memory_method"]
            _write_summary(root, summary)  # after every run: an interrupted comparison keeps what it measured
    method = summary["memory"]["method"]
    summary["memory"]["description"] = {"vmhwm": PeakMemory.VMHWM, "ru_maxrss": PeakMemory.MAXRSS}.get(method)
    for group in [summary["multi"], *summary["single"].values()]:
        first = next(iter(group["runs"].values()))
        group["parameters"], group["model_bytes"] = first["parameters"], first["model_bytes"]
    summary["totals"] = {
        "multi": {"models": 1, "parameters": summary["multi"]["parameters"],
                  "model_bytes": summary["multi"]["model_bytes"]},
        "single": {"models": len(singles),
                   "parameters": sum(g["parameters"] for g in summary["single"].values()),
                   "model_bytes": sum(g["model_bytes"] for g in summary["single"].values())},
    }
    _write_summary(root, summary)
    return summary


def _write_summary(root: Path, summary: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
