"""Multi-task balancing methods on the 7-task benchmark (benchmarks/mtl_vs_single.yaml), against each task alone.

For every method (a loss weighting or a gradient method) and step mode (``source``: one input group per
micro-batch; ``every_source``: every group in every step) and every seed, the 7-task model is trained with the
config's settings; the single-task runs come from ``polytask baseline`` (same budget, same seeds). Reported per
method and mode: each task's primary test metric (mean ± std over seeds), Δm% (Maninis et al. 2019: the mean over
tasks of the relative difference to the single-task run of the same seed, in %, averaged over seeds), and ms per
optimizer step relative to equal weighting in the same mode (time inside the step only: building the micro-batches,
forward, backward or per-task Jacobians, aggregation, optimizer). A second table times the methods as the number of
tasks grows (2, 4, 7 tasks, every-task steps). Finished runs are reused (a later call with more seeds or methods
trains only what is missing): from ``--output-dir``, and from ``--records`` (benchmarks/results/mtl_methods_runs.json,
committed: a grid longer than one session is completed over several, each run keeping its machine and date; see
run_records.py). The baseline's runs are kept the same way (baseline_runs.py), so ``--baseline`` is needed only
once per kind of machine.

    .venv/bin/python benchmarks/mtl_methods.py --seeds 7,8,9          # hours on a 2-core CPU
    .venv/bin/python benchmarks/mtl_methods.py --seeds 7,8,9 --baseline runs/mtl_vs_single  # reuse its runs
    .venv/bin/python benchmarks/mtl_methods.py --smoke                # tiny random BERT, toy data, a minute
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command, describe, machine  # noqa: E402
from baseline_runs import BASELINE_RECORDS, Baseline, load_baseline  # noqa: E402
from run_records import KEPT, RunRecords  # noqa: E402

METHODS = {  # name -> (weighting, gradient method)
    "equal": ("equal", "sum"), "uncertainty": ("uncertainty", "sum"), "dwa": ("dwa", "sum"),
    "famo": ("famo", "sum"), "upgrad": ("equal", "upgrad"), "pcgrad": ("equal", "pcgrad"),
    "cagrad": ("equal", "cagrad"),
}
MODES = ("source", "every_source")
# DWA's window in optimizer steps per mode: about 12 windows over the 7-task config's 564 per-source / 94 every-task
# steps. At the paper's window (an epoch) its weights are 1 for the first two windows, so on this 2-pass budget
# DWA would be equal weighting exactly (measured so on 2026-12-08).
DWA_WINDOW = {"source": 47, "every_source": 8, "mixed": 47}


def smoke_config(folder: Path) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "tests"))
    import conftest

    from polytask.testing import tiny_bert

    data = folder / "data"
    for split, n, seed in (("train", 64, 1), ("dev", 24, 2), ("test", 24, 3)):
        conftest.make_snips_like(data / "snips" / split, n, seed)
        conftest.make_sentiment_csv(data / f"sentiment_{split}.csv", n, seed)
        conftest.make_pairs_tsv(data / f"pairs_{split}.tsv", n, seed)
        conftest.make_topics_jsonl(data / f"topics_{split}.jsonl", n, seed)
    words = conftest.CITIES + conftest.ARTISTS + conftest.GOOD + conftest.BAD + conftest.FILLER
    cfg = conftest.toy_config(data, tiny_bert(folder / "tiny-bert", words), folder / "out", max_steps=6)
    cfg["datasets"]["pairs"]["test"] = str(data / "pairs_test.tsv")
    cfg["datasets"]["topics"]["test"] = str(data / "topics_test.jsonl")
    return cfg


def config_differences(run_dir: Path, config: dict[str, Any], ignore: tuple[str, ...] = ("progress_bar",)) -> list[str]:
    """Where ``run_dir/run_config.yaml`` differs from ``config`` (a validated dump), ignoring the ``train`` keys in
    ``ignore``: dotted keys (``train.lr``, ``tasks``); ``["run_config.yaml"]`` when there is no saved config."""
    import yaml

    saved = run_dir / "run_config.yaml"
    if not saved.is_file():
        return ["run_config.yaml"]
    old, new = yaml.safe_load(saved.read_text()), json.loads(json.dumps(config))
    for c in (old, new):
        for key in ignore:
            c.get("train", {}).pop(key, None)
    found = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and section in ("train", "encoder", "evaluation"):
            found += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            found.append(section)
    return found


def same_config(run_dir: Path, config: dict[str, Any], ignore: tuple[str, ...] = ("progress_bar",)) -> bool:
    """``run_dir/run_config.yaml`` is ``config`` (a validated dump) but for the ``train`` keys in ``ignore``."""
    return not config_differences(run_dir, config, ignore)


def finished(run_dir: Path, config: dict[str, Any]) -> bool:
    metrics = run_dir / "best" / "metrics.json"
    return metrics.is_file() and "timed_steps" in json.loads(metrics.read_text()) and same_config(run_dir, config)


def run(raw: dict[str, Any], run_dir: Path, progress: bool, records: RunRecords | None = None,
        key: str = "", train_missing: bool = True, keep: tuple[str, ...] = KEPT,
        extra: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Train ``raw`` into ``run_dir`` unless a finished run of the same config is there or in ``records`` (under
    ``key``); -> its best/metrics (a new run is added to ``records``, its ``keep`` parts, with what ``extra`` reads
    of the finished folder). With ``train_missing`` False a run found nowhere is not trained: -> None."""
    import shutil

    from polytask.config import validate_config
    from polytask.train import train

    raw = json.loads(json.dumps(raw))
    raw["train"]["output_dir"] = str(run_dir)
    cfg = validate_config(raw)
    config = json.loads(json.dumps(cfg.model_dump(mode="json")))
    kept = records.get(key, config) if records is not None else None
    if kept is not None:
        return kept
    if not finished(run_dir, config):
        if not train_missing:
            return None
        if run_dir.exists():
            shutil.rmtree(run_dir)
        train(cfg, show_progress=progress)
    best = json.loads((run_dir / "best" / "metrics.json").read_text()) | (extra() if extra else {})
    if records is not None:
        records.put(key, config, best, keep)
    return best


def stat(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "benchmarks/mtl_vs_single.yaml"))
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--output-dir", default="runs/mtl_methods")
    parser.add_argument("--baseline", help="output_dir of a finished `polytask baseline` run of --config with these "
                                           "seeds: its single-task runs are used (and its multi-task run as "
                                           "equal/source) instead of training them again under --output-dir; "
                                           "without it, the baseline runs kept in "
                                           "benchmarks/results/mtl_vs_single_runs.json (same config and kind of "
                                           "machine), else a new baseline")
    parser.add_argument("--scaling-steps", type=int, default=20, help="steps per timing run of the scaling table")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/mtl_methods.json"))
    parser.add_argument("--records", default=str(REPO / "benchmarks/results/mtl_methods_runs.json"),
                        help="finished runs kept between sessions (reused for the same config, CPU model and torch)")
    parser.add_argument("--baseline-records", default=str(BASELINE_RECORDS),
                        help="the baseline's runs kept between sessions (written when --baseline is read)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs already in --records or --output-dir")
    parser.add_argument("--smoke", action="store_true", help="tiny random BERT on toy data (checks the script runs)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from polytask.baseline import parse_seeds, run_baseline
    from polytask.config import load_config, validate_config

    out = Path(tempfile.mkdtemp(prefix="mtl-smoke-") if args.smoke else args.output_dir)
    raw = smoke_config(out) if args.smoke else load_config(args.config).model_dump(mode="json")
    raw["train"]["output_dir"] = str(out / "baseline")
    seeds = parse_seeds(args.seeds) or [raw["train"]["seed"]]
    methods, modes = args.methods.split(","), args.modes.split(",")
    show = not args.smoke
    kept = out / "baseline_records.json" if args.smoke else Path(args.baseline_records)
    base = load_baseline(args.baseline, raw, seeds, machine(), kept)
    if base is None:  # neither a folder nor kept runs of this config on this kind of machine: train the baseline
        run_baseline(validate_config(raw), seeds, show_progress=show)
        base = load_baseline(out / "baseline", raw, seeds, machine(), kept)
    assert base is not None
    tasks, single = base.tasks, base.single_primary()
    records = RunRecords(out / "records.json" if args.smoke else args.records, machine())
    train_missing = not args.report_only
    # the short timing runs first: a grid stopped part-way (kept in the records) still has its scaling table
    scaling = {} if args.smoke else timing_table(raw, methods, args.scaling_steps, out, show, records, train_missing)
    results: dict[str, Any] = {f"{method}/{mode}": {"runs": {}} for method in methods for mode in modes}
    for seed in seeds:  # seed outermost: a grid stopped part-way has every method for the first seeds
        for mode in modes:
            for method in methods:
                cfg = method_config(raw, method, mode, seed)
                key = f"{method}/{mode}/seed-{seed}"
                best = (reuse_multi(base, seed, cfg, records, key)
                        or run(cfg, out / "runs" / method / mode / f"seed-{seed}", show, records, key, train_missing))
                if best is None:
                    continue
                metrics = base.primary(best)
                delta = [100 * (metrics[t] - single[t][str(seed)]) / abs(single[t][str(seed)])
                         for t in single if abs(single[t][str(seed)]) > 0]
                results[f"{method}/{mode}"]["runs"][str(seed)] = {
                    "metrics": metrics, "delta_m": statistics.fmean(delta), "steps": best["step"],
                    "ms_per_step": 1000 * best["step_seconds"] / max(1, best["timed_steps"])}
    results = {key: entry for key, entry in results.items() if entry["runs"]}
    dates = records.dates([k for k in records.records if {k.split("/")[0], k.split("/")[-1]} & set(methods)])
    report(results, single, tasks, scaling, dates, args, Console(width=None if sys.stdout.isatty() else 220), Table)


def method_config(raw: dict[str, Any], method: str, mode: str, seed: int) -> dict[str, Any]:
    """``raw`` with the method's weighting and gradient method, the step mode and the seed."""
    weighting, gradients = METHODS[method]
    cfg = json.loads(json.dumps(raw))
    cfg["weighting"], cfg["gradients"] = {"name": weighting}, {"name": gradients}
    if weighting == "dwa":
        cfg["weighting"]["window"] = DWA_WINDOW[mode]
    cfg["train"] |= {"seed": seed, "step_mode": mode}
    return cfg


def reuse_multi(base: Baseline, seed: int, raw: dict[str, Any], records: RunRecords | None, key: str
                ) -> dict[str, Any] | None:
    """The baseline's multi-task run of ``seed`` when ``raw`` is its config but for the folder (kept in ``records``
    under ``key`` too); else None."""
    from polytask.config import validate_config

    config = json.loads(json.dumps(validate_config(json.loads(json.dumps(raw))).model_dump(mode="json")))
    best = base.same_as_multi(seed, config)
    if best is not None and records is not None:
        records.put(key, config, best)
    return best


def timing_table(raw: dict[str, Any], methods: list[str], steps: int, out: Path, show: bool,
                 records: RunRecords | None = None, train_missing: bool = True) -> dict[str, Any]:
    """ms/step of each method (every-task steps) with the first 2, 4 and all tasks of the config."""
    names = list(raw["tasks"])
    table: dict[str, Any] = {}
    for k in sorted({2, 4, len(names)}):
        subset = names[:k]
        for method in methods:
            weighting, gradients = METHODS[method]
            cfg = json.loads(json.dumps(raw))
            cfg["tasks"] = {t: cfg["tasks"][t] for t in subset}
            used = {cfg["tasks"][t]["dataset"] for t in subset}
            cfg["datasets"] = {d: spec for d, spec in cfg["datasets"].items() if d in used}
            cfg["weighting"], cfg["gradients"] = {"name": weighting}, {"name": gradients}
            cfg["train"] |= {"step_mode": "every_source", "max_steps": steps}
            cfg["evaluation"] = {"metric": "mean"}
            best = run(cfg, out / "scaling" / f"{k}-tasks" / method, show, records, f"scaling/{k}-tasks/{method}",
                       train_missing)
            if best is None:
                continue
            table.setdefault(str(k), {})[method] = 1000 * best["step_seconds"] / max(1, best["timed_steps"])
    return table


def report(results: dict[str, Any], single: dict[str, Any], tasks: dict[str, Any], scaling: dict[str, Any],
           dates: list[str], args: argparse.Namespace, console: Any, table_cls: Any) -> None:
    m = machine()
    table = table_cls(title=f"7-task benchmark, test primary metric (mean ± std over the seeds listed); Δm% vs "
                            f"each task alone; ms/step vs equal (same mode); {describe(m)}")
    for col in ("method", "mode", "seeds", *tasks, "Δm%", "ms/step", "x equal"):
        table.add_column(col, justify="left" if col in ("method", "mode", "seeds") else "right")
    single_row = [f"{stat(list(v.values()))[0]:.4f} ± {stat(list(v.values()))[1]:.4f}" for v in single.values()]
    table.add_row("alone", "-", ",".join(next(iter(single.values()))), *single_row, "0", "-", "-")
    summary: dict[str, Any] = {}
    for key, entry in results.items():
        method, mode = key.split("/")
        runs = list(entry["runs"].values())
        per_task = {t: stat([r["metrics"][t] for r in runs]) for t in tasks}
        delta = stat([r["delta_m"] for r in runs])
        ms = statistics.fmean(r["ms_per_step"] for r in runs)
        equal = results.get(f"equal/{mode}")
        base_ms = statistics.fmean(r["ms_per_step"] for r in equal["runs"].values()) if equal else None
        summary[key] = {"per_task": per_task, "delta_m": delta, "ms_per_step": ms,
                        "x_equal": ms / base_ms if base_ms else None}
        table.add_row(method, mode, ",".join(entry["runs"]), *[f"{a:.4f} ± {s:.4f}" for a, s in per_task.values()],
                      f"{delta[0]:+.2f} ± {delta[1]:.2f}", f"{ms:.0f}", f"{ms / base_ms:.2f}" if base_ms else "-")
    console.print(table)
    if scaling:
        grow = table_cls(title="ms per step as the number of tasks grows (every-task steps)")
        grow.add_column("tasks")
        columns = list(dict.fromkeys(method for row in scaling.values() for method in row))
        for method in columns:
            grow.add_column(method, justify="right")
        for k, row in scaling.items():
            grow.add_row(k, *[f"{row[c]:.0f}" if c in row else "-" for c in columns])
        console.print(grow)
    if args.smoke:
        return
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"command": command(), "machine": m, "measured_on": dates,
                                               "single": single, "results": results, "summary": summary,
                                               "scaling": scaling, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
