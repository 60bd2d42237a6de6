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
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from polytask.config import RunConfig, validate_config
from polytask.errors import PolytaskError
from polytask.memory import PeakMemory, count_parameters

log = logging.getLogger("polytask")

BUDGETS = ("passes", "steps")
SUMMARY_FORMAT = "polytask-compare"
SUMMARY_VERSION = 1
STATS_FILE = "compare_stats.json"


# ----------------------------------------------------------------------------------------------------------------------
# planning: seeds, budgets, single-task configs


def parse_seeds(text: str | None) -> list[int] | None:
    """``"1,2,3"`` or ``"1-3"`` (or a mix: ``"1-3,7"``) -> ``[1, 2, 3]``; None/empty -> None (the config's seed)."""
    if text is None or not text.strip():
        return None
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            seeds.extend(range(int(lo), int(hi) + 1) if dash else [int(lo)])
        except ValueError:
            raise PolytaskError(f"--seeds {text!r}: give seeds (integers >= 0) separated by commas, e.g. 1,2,3, "
                                "or a range, e.g. 1-3") from None
    if not seeds:
        raise PolytaskError(f"--seeds {text!r}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise PolytaskError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def _batches(rows: int, batch_size: int) -> int:
    return max(1, math.ceil(rows / batch_size))


def _steps_per_epoch(batches: int, grad_accum: int) -> int:
    return max(1, math.ceil(batches / grad_accum))


def read_train_rows(cfg: RunConfig) -> dict[str, dict[str, list[Any]]]:
    """source -> split -> rows, for the sources the config's tasks use (no tokenisation)."""
    from polytask.data.dataset import read_source_split

    out: dict[str, dict[str, list[Any]]] = {}
    for source in cfg.sources_of():
        ds = cfg.datasets[source]
        out[source] = {split: read_source_split(ds, split, cfg.train.seed) for split in ("train", "validation", "test")}
    return out


def unlabelled(cfg: RunConfig, rows: dict[str, dict[str, list[Any]]]) -> dict[str, str]:
    """task -> why it cannot be trained alone: its dataset has rows that label other tasks but not this one (a
    single-task run would refuse them: every row must label one of the run's tasks)."""
    from polytask.tasks import build_task

    problems: dict[str, str] = {}
    for source, names in cfg.sources_of().items():
        if len(names) < 2:
            continue
        for name in names:
            task = build_task(name, cfg.tasks[name])  # type: ignore[arg-type]
            missing = {split: sum(task.is_missing(r.values.get(task.params.label)) for r in split_rows)
                       for split, split_rows in rows[source].items()}
            missing = {k: v for k, v in missing.items() if v}
            if missing:
                where = ", ".join(f"{n} {split} rows" for split, n in missing.items())
                problems[name] = (f"dataset {source!r} has {where} without a {task.params.label!r} label; a "
                                  f"single-task run needs every row labelled")
    return problems


@dataclass
class RunPlan:
    """One run of the comparison: its config and its budget."""

    kind: str  # "multi" or "single"
    task: str | None
    seed: int
    config: RunConfig
    steps: int
    steps_per_epoch: int

    @property
    def run_dir(self) -> Path:
        return Path(self.config.train.output_dir)


def compare_root(cfg: RunConfig) -> Path:
    return Path(cfg.train.output_dir) / "compare"


def _with(cfg: RunConfig, **train: Any) -> dict[str, Any]:
    data = cfg.model_dump(mode="json")
    data["train"].update(train)
    return data


def multi_plan(cfg: RunConfig, seed: int, sizes: dict[str, int]) -> RunPlan:
    t = cfg.train
    run_dir = compare_root(cfg) / "multi" / f"seed-{seed}"
    new = cfg.model_copy(deep=True)
    new.train.seed, new.train.output_dir = seed, str(run_dir)
    spe = _steps_per_epoch(sum(_batches(n, t.batch_size) for n in sizes.values()), t.grad_accum)
    steps = t.max_steps or max(1, math.ceil(t.epochs * spe))
    return RunPlan("multi", None, seed, new, steps, spe)


def single_plan(cfg: RunConfig, task: str, seed: int, sizes: dict[str, int], budget: str = "passes") -> RunPlan:
    """``task`` alone, per the module docstring's budget rules."""
    if budget not in BUDGETS:
        raise PolytaskError(f"unknown budget {budget!r}; available: {', '.join(BUDGETS)}")
    t, ev = cfg.train, cfg.evaluation
    source = cfg.tasks[task].dataset  # type: ignore[attr-defined]
    multi = multi_plan(cfg, seed, sizes)
    own_spe = _steps_per_epoch(_batches(sizes[source], t.batch_size), t.grad_accum)
    if budget == "passes":
        passes = multi.steps / multi.steps_per_epoch
        steps = max(1, math.ceil(passes * own_spe - 1e-9))
        every = max(1, round(ev.every_steps * own_spe / multi.steps_per_epoch)) if ev.every_steps else None
    else:
        steps, passes = multi.steps, multi.steps / own_spe
        every = ev.every_steps or multi.steps_per_epoch
    data = _with(cfg, seed=seed, output_dir=str(compare_root(cfg) / "single" / task / f"seed-{seed}"),
                 max_steps=steps, epochs=passes)
    data["datasets"] = {source: data["datasets"][source]}
    data["tasks"] = {task: data["tasks"][task]}
    data["weighting"] = {"name": "equal"}
    evaluation = data["evaluation"]
    evaluation["every_steps"] = every
    if evaluation["metric"] != "mean" and evaluation["metric"].partition("/")[0] != task:
        evaluation["metric"], evaluation["mode"] = "mean", "max"
    single = validate_config(data, source=f"<single-task config of {task}>", check_files=False)
    return RunPlan("single", task, seed, single, steps, own_spe)


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
