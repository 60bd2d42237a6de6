"""The planning side of ``polytask baseline`` (``polytask.baseline``, whose docstring gives the budget arithmetic):
the seeds, the training rows of each source, and one ``RunPlan`` per run (the multi-task run and each task alone),
with its config and step budget. ``polytask.baseline`` re-exports these names."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.config import RunConfig, validate_config
from polytask.errors import PolytaskError

BUDGETS = ("passes", "steps")


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
