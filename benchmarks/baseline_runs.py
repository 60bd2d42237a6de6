"""The reference runs of the benchmarks that build on the 7-task comparison: a ``polytask baseline`` of the benchmark
config (per seed, its multi-task run and every task's single-task run), read from the baseline's folder or from the
records kept of one.

Reading a folder (``--baseline DIR``) checks that each seed's multi-task run was trained from the benchmark config
(apart from its folder) and keeps what the reports read of every run in ``benchmarks/results/mtl_vs_single_runs.json``
(see run_records.py). A later session on the same kind of machine then needs no folder: the 26 minutes of the
baseline are not spent again to compare a new method or design against it. Without a folder and without matching
records, the caller trains the baseline (``polytask baseline``) first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import REPO
from run_records import KEPT, RunRecords, fingerprint

BASELINE_RECORDS = REPO / "benchmarks/results/mtl_vs_single_runs.json"


def multi_config(raw: dict[str, Any], seed: int) -> dict[str, Any]:
    """The validated dump of the baseline's multi-task run of ``seed``: ``raw`` (the benchmark config) with that seed."""
    from polytask.config import validate_config

    cfg = json.loads(json.dumps(raw))
    cfg["train"]["seed"] = seed
    return json.loads(json.dumps(validate_config(cfg).model_dump(mode="json")))


@dataclass
class Baseline:
    """Per seed (a string, as in the JSON), the multi-task run's and each task's single-task run's best metrics."""

    tasks: dict[str, Any]  # task -> the compare summary's entry (primary_metric, ...)
    seeds: list[int]
    multi: dict[str, dict[str, Any]]
    single: dict[str, dict[str, dict[str, Any]]]  # task -> seed -> best metrics
    fingerprints: dict[str, str]  # seed -> fingerprint of the multi-task run's config
    source: str  # the folder or the records file it was read from

    def primary(self, result: dict[str, Any], tasks: list[str] | None = None) -> dict[str, float]:
        """Each task's primary metric on test (on validation for a task without a test split, as `compare` does)."""
        out = {}
        for task in tasks or list(self.tasks):
            found = (result.get("test") or {}).get("tasks", {}).get(task) or result["validation"]["tasks"][task]
            out[task] = found[self.tasks[task]["primary_metric"]]
        return out

    def single_primary(self) -> dict[str, dict[str, float]]:
        """task -> seed -> the single-task run's primary metric."""
        return {t: {s: self.primary(runs[s], [t])[t] for s in map(str, self.seeds)} for t, runs in self.single.items()}

    def same_as_multi(self, seed: int, config: dict[str, Any]) -> dict[str, Any] | None:
        """The multi-task run of ``seed`` when ``config`` (a validated dump) is its config but for the folder (the
        baseline trained exactly that model: equal weighting, per-source steps); else None."""
        if self.fingerprints.get(str(seed)) != fingerprint(config):
            return None
        best = self.multi[str(seed)]
        return best if best.get("timed_steps") else None


def load_baseline(folder: str | Path | None, raw: dict[str, Any], seeds: list[int], machine: dict[str, Any],
                  records_path: str | Path = BASELINE_RECORDS) -> Baseline | None:
    """The baseline of ``raw`` for ``seeds``: from ``folder`` (checked, then kept in the records) or, without one,
    from the records (None when they lack a seed for this config and kind of machine). SystemExit naming what
    differs when the folder was trained from another config or lacks a seed."""
    records = RunRecords(records_path, machine)
    configs = {str(s): multi_config(raw, s) for s in seeds}
    if folder is None:
        multi: dict[str, dict[str, Any]] = {}
        single: dict[str, dict[str, dict[str, Any]]] = {}
        for s, c in configs.items():
            found = records.get(f"multi/seed-{s}", c)
            if found is None:
                return None
            multi[s] = found
        first = next(iter(multi.values()))
        for t in first["single_tasks"]:
            for s, c in configs.items():
                found = records.get(f"single/{t}/seed-{s}", c)
                if found is None:
                    return None
                single.setdefault(t, {})[s] = found
        tasks = {t: first["summary_tasks"][t] for t in first["task_order"]}
        return Baseline(tasks, seeds, multi, single,
                        {s: fingerprint(c) for s, c in configs.items()}, str(records.path))
    return _from_folder(Path(folder), configs, seeds, records)


def require_baseline(config: str, folder: str | None, seeds_arg: str, machine: dict[str, Any],
                     records_path: str | Path) -> tuple[dict[str, Any], list[int], Baseline]:
    """(the config as a validated dump, the seeds, its baseline) for a benchmark that reuses a `polytask baseline`
    of ``config``; SystemExit saying how to make one when neither ``folder`` nor the records hold it."""
    from polytask.config import load_config

    raw = load_config(config).model_dump(mode="json")
    seeds = [int(s) for s in seeds_arg.split(",")]
    base = load_baseline(folder, raw, seeds, machine, records_path)
    if base is None:
        raise SystemExit(f"no --baseline given and {records_path} keeps no baseline runs of --config "
                         f"{config} for seeds {seeds_arg} on this kind of machine: run `polytask baseline "
                         f"{config} --seeds {seeds_arg}` and pass its output_dir as --baseline")
    return raw, seeds, base


def _from_folder(folder: Path, configs: dict[str, dict[str, Any]], seeds: list[int], records: RunRecords) -> Baseline:
    from mtl_methods import config_differences

    from polytask.compare import load_summary

    summary = load_summary(folder)
    root = Path(summary["_root"])
    missing = [s for s in configs if s not in summary["multi"]["runs"]]
    if missing:
        raise SystemExit(f"--baseline {folder} has no runs for seeds {', '.join(missing)} (it has "
                         f"{', '.join(map(str, summary['seeds']))})")

    def best(record: dict[str, Any]) -> dict[str, Any]:
        return json.loads((root / record["run_dir"] / "best" / "metrics.json").read_text())

    multi: dict[str, dict[str, Any]] = {}
    single: dict[str, dict[str, dict[str, Any]]] = {}
    for s, config in configs.items():
        run_dir = root / summary["multi"]["runs"][s]["run_dir"]
        differs = config_differences(run_dir, config, ("progress_bar", "output_dir"))
        if differs:
            raise SystemExit(f"--baseline {folder} was not trained from this config: its multi-task run of seed {s} "
                             f"({run_dir / 'run_config.yaml'}) differs in {', '.join(differs)}")
        multi[s] = best(summary["multi"]["runs"][s])
        # the records file sorts keys: the task order (the tables' columns) is kept as a list
        records.put(f"multi/seed-{s}", config, {**multi[s], "summary_tasks": summary["tasks"],
                                                "task_order": list(summary["tasks"]),
                                                "single_tasks": list(summary["single"])},
                    keep=(*KEPT, "summary_tasks", "task_order", "single_tasks"))
    for task, entry in summary["single"].items():
        single[task] = {}
        for s, config in configs.items():
            single[task][s] = best(entry["runs"][s])
            # keyed by the baseline's config: a single-task run is the reference of that config's models
            records.put(f"single/{task}/seed-{s}", config, single[task][s])
    return Baseline(summary["tasks"], seeds, multi, single, {s: fingerprint(c) for s, c in configs.items()},
                    str(folder))
