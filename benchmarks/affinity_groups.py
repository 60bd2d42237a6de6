"""Task grouping from measured affinity (TAG), checked by training: is the suggested grouping better than all-in-one?

1. Trains the 7-task benchmark (benchmarks/mtl_vs_single.yaml) once with ``train.affinity_every`` and every-task
   steps, and reads the look-ahead affinity matrix (``polytask affinity``), its measuring cost, and the best
   partition into ``--groups`` groups.
2. Trains each suggested group as its own multi-task model, with the all-in-one run's settings, for every seed of a
   ``polytask baseline`` run of the same config (``--baseline DIR``, which also holds the all-in-one and the
   single-task runs), and prints per task the test primary metric (mean ± std): all-in-one vs grouped vs single,
   and Δm% of each against single-task.

    .venv/bin/python benchmarks/affinity_groups.py --baseline runs/mtl_methods/baseline
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


def primary(result: dict[str, Any], task: str, metric: str) -> float | None:
    for split in ("test", "validation"):
        found = (result.get(split) or {}).get("tasks", {}).get(task)
        if found and metric in found:
            return found[metric]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="output_dir of a `polytask baseline` run of the config")
    parser.add_argument("--config", default=str(REPO / "benchmarks/mtl_vs_single.yaml"))
    parser.add_argument("--every", type=int, default=5,
                        help="measure affinity every N steps (every-task steps: the run has 94, so ~18 measurements)")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--output-dir", default="runs/affinity_groups")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/affinity_groups.json"))
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from polytask.compare import load_summary
    from polytask.config import load_config, validate_config
    from polytask.recipes.affinity import read_affinity, suggest_groups
    from polytask.train import train

    out = Path(args.output_dir)
    summary = load_summary(args.baseline)
    root = Path(args.baseline) / "compare"
    tasks = {t: info["primary_metric"] for t, info in summary["tasks"].items()}
    seeds = [str(s) for s in summary["seeds"]]
    measured = out / "affinity"
    if not (measured / "best" / "metrics.json").is_file():
        cfg = load_config(args.config, [f"train.output_dir={measured}", f"train.affinity_every={args.every}",
                                        "train.step_mode=every_source", f"train.seed={seeds[0]}"])
        train(cfg, show_progress=False)
    found = read_affinity(measured)
    suggestion = next(s for s in suggest_groups(found["tasks"], found["matrix"], args.groups)
                      if s["groups"] == args.groups)
    base = json.loads(json.dumps(load_config(args.config).model_dump(mode="json")))
    grouped: dict[str, dict[str, float | None]] = {}
    for seed in seeds:
        grouped[seed] = {}
        for g, group in enumerate(suggestion["partition"]):
            run_dir = out / f"group-{g}" / f"seed-{seed}"
            metrics = run_dir / "best" / "metrics.json"
            if not metrics.is_file():
                cfg = json.loads(json.dumps(base))
                cfg["tasks"] = {t: cfg["tasks"][t] for t in group}
                used = {cfg["tasks"][t]["dataset"] for t in group}
                cfg["datasets"] = {d: v for d, v in cfg["datasets"].items() if d in used}
                cfg["train"] |= {"seed": int(seed), "output_dir": str(run_dir)}
                train(validate_config(cfg, source=f"<group {g}>"), show_progress=False)
            result = json.loads(metrics.read_text())
            grouped[seed].update({t: primary(result, t, tasks[t]) for t in group})
    joint = {s: {t: primary(json.loads((root / summary["multi"]["runs"][s]["run_dir"] / "best" /
                                        "metrics.json").read_text()), t, m) for t, m in tasks.items()} for s in seeds}
    single = {s: {t: primary(json.loads((root / summary["single"][t]["runs"][s]["run_dir"] / "best" /
                                         "metrics.json").read_text()), t, m) for t, m in tasks.items()}
              for s in seeds}
    rows = {"all-in-one": joint, f"grouped ({' | '.join('+'.join(g) for g in suggestion['partition'])})": grouped,
            "single": single}
    m = machine()
    table = Table(title=f"TAG grouping vs all-in-one, test primary metric, mean ± std over seeds {', '.join(seeds)}; "
                        f"{describe(m)}")
    table.add_column("model")
    for t in tasks:
        table.add_column(t, justify="right")
    table.add_column("Δm% vs single", justify="right")
    result: dict[str, Any] = {}
    for name, per_seed in rows.items():
        cells = []
        for t in tasks:
            values = [per_seed[s][t] for s in seeds]
            cells.append(f"{statistics.fmean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}")
        dm = [statistics.fmean(100 * (per_seed[s][t] - single[s][t]) / abs(single[s][t]) for t in tasks)
              for s in seeds]
        result[name] = {"cells": cells, "delta_m": [statistics.fmean(dm), statistics.stdev(dm) if len(dm) > 1 else 0]}
        table.add_row(name, *cells, f"{result[name]['delta_m'][0]:+.2f} ± {result[name]['delta_m'][1]:.2f}")
    Console(width=None if sys.stdout.isatty() else 220).print(table)
    print(f"affinity: {found['measurements']} measurements, {found['seconds']} s of measuring")
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"command": command(), "machine": m, "affinity": found,
                                               "suggestions": suggest_groups(found["tasks"], found["matrix"], 3),
                                               "rows": rows, "summary": result, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
