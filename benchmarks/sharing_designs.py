"""Sharing designs on the 7-task benchmark (benchmarks/mtl_vs_single.yaml), against each task alone.

For every design (``encoder.sharing`` plus, for the parameter-efficient variants, ``train.freeze: [encoder]``) and
every seed of a finished ``polytask baseline`` run of the same config (``--baseline DIR``: its single-task runs are
the reference, and its multi-task run is the ``hard`` design), the 7-task model is trained with the config's
settings and nothing else changed, except that the frozen-encoder designs train their adapters at ``train.lr`` =
1e-3 (only the adapters see ``lr`` once the encoder is frozen; 1e-4, the config's full fine-tuning rate, is low for
LoRA). Reported per design: each task's primary test metric (mean ± std over seeds), Δm% (Maninis et al. 2019),
trainable and total parameters, the parameters the design adds per task relative to the hard-shared model, train
time, and the issue's goal: every task at or above its single-task mean minus one standard deviation, with under 10%
extra parameters per task. Finished runs are reused: from ``--output-dir``, and from ``--records``
(benchmarks/results/sharing_designs_runs.json, committed; see run_records.py). The baseline's runs are kept the same
way (baseline_runs.py): once read from ``--baseline``, later calls on the same kind of machine need no folder.

    .venv/bin/polytask baseline benchmarks/mtl_vs_single.yaml --seeds 7,8,9     # once per kind of machine
    .venv/bin/python benchmarks/sharing_designs.py --baseline runs/mtl_vs_single     # ~5 min per run, 18 runs
    .venv/bin/python benchmarks/sharing_designs.py --designs lora2,moe2            # the kept baseline
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command, describe, machine  # noqa: E402
from baseline_runs import BASELINE_RECORDS, require_baseline  # noqa: E402
from mtl_methods import reuse_multi, run, stat  # noqa: E402
from run_records import RunRecords  # noqa: E402

FROZEN_LR = 1e-3
FROZEN = {"freeze": ["encoder"], "lr": FROZEN_LR}
ENCODER_RATE = {"sharing_lr": "lr"}  # what the design adds trains at the encoder's rate, not head_lr (a control)
DESIGNS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {  # key -> (label, encoder.sharing, train keys)
    "hard": ("hard", {"name": "hard"}, {}),
    "lora2": ("lora top 2", {"name": "lora", "layers": 2}, {}),
    "lora-all": ("lora all", {"name": "lora", "layers": "all"}, {}),
    "lora2-frozen": ("lora top 2, frozen encoder", {"name": "lora", "layers": 2}, FROZEN),
    "lora-all-frozen": ("lora all, frozen encoder", {"name": "lora", "layers": "all"}, FROZEN),
    "moe2": ("moe top 2", {"name": "moe", "layers": 2}, {}),
    "cross-stitch1": ("cross_stitch top 1", {"name": "cross_stitch", "layers": 1}, {}),
    # controls: experts and task columns start as copies of pretrained layers, and train at head_lr (10x lr here)
    # above; at the encoder's own rate, the design's gain is told apart from the higher rate's
    "moe2-lr": ("moe top 2, sharing_lr = lr", {"name": "moe", "layers": 2}, ENCODER_RATE),
    "cross-stitch1-lr": ("cross_stitch top 1, sharing_lr = lr", {"name": "cross_stitch", "layers": 1}, ENCODER_RATE),
}


def design_config(raw: dict[str, Any], key: str, seed: int) -> dict[str, Any]:
    _, sharing, train_keys = DESIGNS[key]
    cfg = json.loads(json.dumps(raw))
    cfg["encoder"]["sharing"] = dict(sharing)
    cfg["train"]["seed"] = seed
    cfg["train"] |= {k: cfg["train"][v] if v == "lr" else v for k, v in train_keys.items()}
    return cfg


def goal(per_task: dict[str, tuple[float, float]], single: dict[str, dict[str, float]], extra: float) -> str:
    """'met' or what misses: tasks under single mean - single std, or >= 10% extra parameters per task."""
    misses = [t for t, (mean, _) in per_task.items()
              if mean < stat(list(single[t].values()))[0] - stat(list(single[t].values()))[1]]
    why = ([f"below 1 std: {', '.join(misses)}"] if misses else []) + ([f"{extra:.1f}% params/task"] if extra >= 10
                                                                       else [])
    return "met" if not why else "; ".join(why)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="output_dir of a finished `polytask baseline` of --config (without it: the "
                                           "baseline runs kept in --baseline-records)")
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--baseline-records", default=str(BASELINE_RECORDS),
                        help="the baseline's runs kept between sessions (written when --baseline is read)")
    parser.add_argument("--config", default=str(REPO / "benchmarks/mtl_vs_single.yaml"))
    parser.add_argument("--designs", default=",".join(DESIGNS), help=f"comma-separated subset of {', '.join(DESIGNS)}")
    parser.add_argument("--output-dir", default="runs/sharing_designs")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/sharing_designs.json"))
    parser.add_argument("--records", default=str(REPO / "benchmarks/results/sharing_designs_runs.json"),
                        help="finished runs kept between sessions (reused for the same config, CPU model and torch)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs already in --records or --output-dir")
    args = parser.parse_args()
    unknown = [d for d in args.designs.split(",") if d not in DESIGNS]
    if unknown:
        raise SystemExit(f"--designs: unknown {', '.join(unknown)}; available: {', '.join(DESIGNS)}")
    raw, seeds, base = require_baseline(args.config, args.baseline, args.seeds, machine(), args.baseline_records)
    tasks, single = base.tasks, base.single_primary()
    hard_total = base.multi[str(seeds[0])]["parameters"]["total"]
    records = RunRecords(args.records, machine())
    results: dict[str, Any] = {}
    for key in args.designs.split(","):
        runs = {}
        for seed in seeds:
            cfg, name = design_config(raw, key, seed), f"{key}/seed-{seed}"
            best = (reuse_multi(base, seed, cfg, records, name)
                    or run(cfg, Path(args.output_dir) / key / f"seed-{seed}", True, records, name,
                           train_missing=not args.report_only))
            if best is None:
                continue
            metrics = base.primary(best)
            delta = [100 * (metrics[t] - single[t][str(seed)]) / abs(single[t][str(seed)]) for t in single]
            runs[str(seed)] = {"metrics": metrics, "delta_m": statistics.fmean(delta),
                               "parameters": best["parameters"], "train_seconds": best["train_seconds"]}
        if runs:
            results[key] = {"label": DESIGNS[key][0], "runs": runs}
    dates = records.dates([k for k in records.records if k.split("/")[0] in results])
    report(results, single, tasks, hard_total, dates, args)


def report(results: dict[str, Any], single: dict[str, Any], tasks: dict[str, Any], hard_total: int,
           dates: list[str], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    m = machine()
    table = Table(title=f"7-task benchmark per sharing design, test primary metric (mean ± std over the seeds "
                        f"listed); Δm% vs each task alone; {describe(m)}")
    for col in ("design", "seeds", *tasks, "Δm%", "trainable", "total", "extra/task", "train s", "goal"):
        table.add_column(col, justify="left" if col in ("design", "seeds", "goal") else "right")
    table.add_row("alone", ",".join(next(iter(single.values()))),
                  *[f"{stat(list(v.values()))[0]:.4f} ± {stat(list(v.values()))[1]:.4f}" for v in single.values()],
                  "0", "-", "-", "-", "-", "-")
    summary: dict[str, Any] = {}
    for key, entry in results.items():
        runs = list(entry["runs"].values())
        per_task = {t: stat([r["metrics"][t] for r in runs]) for t in tasks}
        delta = stat([r["delta_m"] for r in runs])
        params = runs[0]["parameters"]
        extra = 100 * (params["total"] - hard_total) / len(tasks) / hard_total
        seconds = statistics.fmean(r["train_seconds"] for r in runs)
        summary[key] = {"label": entry["label"], "per_task": per_task, "delta_m": delta, "parameters": params,
                        "extra_per_task_percent": extra, "train_seconds": seconds,
                        "goal": goal(per_task, single, extra)}
        table.add_row(entry["label"], ",".join(entry["runs"]),
                      *[f"{a:.4f} ± {s:.4f}" for a, s in per_task.values()],
                      f"{delta[0]:+.2f} ± {delta[1]:.2f}", f"{params['trainable'] / 1e6:.2f}M",
                      f"{params['total'] / 1e6:.2f}M", f"{extra:.2f}%", f"{seconds:.0f}", summary[key]["goal"])
    Console(width=None if sys.stdout.isatty() else 260).print(table)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"command": command(), "machine": m, "measured_on": dates,
                                               "single": single, "hard_total_parameters": hard_total,
                                               "results": results,
                                               "summary": summary, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
