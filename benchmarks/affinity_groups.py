"""Task grouping from measured affinity (TAG), checked by training: is the suggested grouping better than all-in-one?

1. Trains the 7-task benchmark (benchmarks/mtl_vs_single.yaml) once with ``train.affinity_every`` and every-task
   steps, and reads the look-ahead affinity matrix (``polytask affinity``), its measuring cost, and the best
   partition into ``--groups`` groups.
2. Trains each suggested group as its own multi-task model, with the all-in-one run's settings, for every seed of a
   ``polytask baseline`` run of the same config (``--baseline DIR``, or the baseline runs kept from one: see
   baseline_runs.py; the baseline holds the all-in-one and the single-task runs), and prints per task the test
   primary metric (mean ± std): all-in-one vs grouped vs single, and Δm% of each against single-task.

Finished runs are kept in ``--records`` (benchmarks/results/affinity_groups_runs.json) and reused.

    .venv/bin/polytask baseline benchmarks/mtl_vs_single.yaml --seeds 7,8,9     # once per kind of machine
    .venv/bin/python benchmarks/affinity_groups.py --baseline runs/mtl_vs_single
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
from baseline_runs import BASELINE_RECORDS, require_baseline  # noqa: E402
from common import REPO, command, describe, machine  # noqa: E402
from mtl_methods import run  # noqa: E402
from run_records import KEPT, RunRecords  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", help="output_dir of a `polytask baseline` run of the config (without it: the "
                                           "baseline runs kept in --baseline-records)")
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--baseline-records", default=str(BASELINE_RECORDS),
                        help="the baseline's runs kept between sessions (written when --baseline is read)")
    parser.add_argument("--config", default=str(REPO / "benchmarks/mtl_vs_single.yaml"))
    parser.add_argument("--every", type=int, default=5,
                        help="measure affinity every N steps (every-task steps: the run has 94, so ~18 measurements)")
    parser.add_argument("--groups", type=int, default=2)
    parser.add_argument("--output-dir", default="runs/affinity_groups")
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/affinity_groups.json"))
    parser.add_argument("--records", default=str(REPO / "benchmarks/results/affinity_groups_runs.json"),
                        help="finished runs kept between sessions (reused for the same config, CPU model and torch)")
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from polytask.recipes.affinity import read_affinity, suggest_groups

    out = Path(args.output_dir)
    raw, seeds, base = require_baseline(args.config, args.baseline, args.seeds, machine(), args.baseline_records)
    tasks = list(base.tasks)
    records = RunRecords(args.records, machine())
    measured = out / "affinity"
    cfg = json.loads(json.dumps(raw))
    cfg["train"] |= {"affinity_every": args.every, "step_mode": "every_source", "seed": seeds[0]}
    key = f"affinity/every-{args.every}/seed-{seeds[0]}"
    found = (run(cfg, measured, False, records, key, keep=(*KEPT, "affinity"),
                 extra=lambda: {"affinity": read_affinity(measured)}) or {})["affinity"]
    suggestion = next(s for s in suggest_groups(found["tasks"], found["matrix"], args.groups)
                      if s["groups"] == args.groups)
    grouped: dict[str, dict[str, float]] = {}
    for seed in [str(s) for s in seeds]:
        grouped[seed] = {}
        for group in suggestion["partition"]:
            cfg = json.loads(json.dumps(raw))
            cfg["tasks"] = {t: cfg["tasks"][t] for t in group}
            used = {cfg["tasks"][t]["dataset"] for t in group}
            cfg["datasets"] = {d: v for d, v in cfg["datasets"].items() if d in used}
            cfg["train"]["seed"] = int(seed)
            name = "+".join(group)
            best = run(cfg, out / name / f"seed-{seed}", False, records, f"group/{name}/seed-{seed}")
            grouped[seed].update(base.primary(best or {}, list(group)))
    seeds_ = [str(s) for s in seeds]
    joint = {s: base.primary(base.multi[s]) for s in seeds_}
    alone = base.single_primary()
    single = {s: {t: alone[t][s] for t in tasks} for s in seeds_}
    rows = {"all-in-one": joint, f"grouped ({' | '.join('+'.join(g) for g in suggestion['partition'])})": grouped,
            "single": single}
    m = machine()
    table = Table(title=f"TAG grouping vs all-in-one, test primary metric, mean ± std over seeds {args.seeds}; "
                        f"{describe(m)}")
    table.add_column("model")
    for t in tasks:
        table.add_column(t, justify="right")
    table.add_column("Δm% vs single", justify="right")
    result: dict[str, Any] = {}
    for name, per_seed in rows.items():
        cells = []
        for t in tasks:
            values = [per_seed[s][t] for s in seeds_]
            cells.append(f"{statistics.fmean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0:.4f}")
        dm = [statistics.fmean(100 * (per_seed[s][t] - single[s][t]) / abs(single[s][t]) for t in tasks)
              for s in seeds_]
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
