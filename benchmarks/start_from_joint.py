"""The 7-task benchmark from a trained joint model: single-task, joint, joint + per-task fine-tuning (heads and
full), and BAM distillation of the single-task runs into one student, per seed.

Reads a ``polytask baseline`` run of benchmarks/mtl_vs_single.yaml (``--baseline DIR``: the config's output_dir,
holding compare/summary.json with the joint and the single-task runs of every seed; benchmarks/mtl_methods.py
writes one under its output dir), then for every seed: ``polytask finetune`` of the joint model (scope heads: one
model; scope full: a model per task), and ``polytask distill`` of the seed's single-task models into one student
with the joint run's settings. Prints per task the test primary metric (mean ± std over seeds) of each model, Δm%
against single-task (Maninis et al. 2019: mean over tasks of the relative difference, %, per seed, then mean ± std),
and whether the goal holds: one deployable model with no task below its single-task mean by more than one single-task
std and the aggregate above single-task.

    .venv/bin/python benchmarks/start_from_joint.py --baseline runs/mtl_methods/baseline
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
    parser.add_argument("--baseline", required=True, help="output_dir of a `polytask baseline` run")
    parser.add_argument("--finetune-epochs", type=float, default=1.0)
    parser.add_argument("--json-out", default=str(REPO / "benchmarks/results/start_from_joint.json"))
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    from polytask.compare import load_summary
    from polytask.config import validate_config
    from polytask.recipes.finetune import finetune
    from polytask.train import train

    root = Path(args.baseline) / "compare"
    summary = load_summary(args.baseline)
    tasks = {t: info["primary_metric"] for t, info in summary["tasks"].items()}
    seeds = [str(s) for s in summary["seeds"]]
    scores: dict[str, dict[str, dict[str, float]]] = {m: {} for m in ("single", "joint", "joint + ft (heads)",
                                                                       "joint + ft (full)", "BAM distilled")}
    for seed in seeds:
        joint_dir = root / summary["multi"]["runs"][seed]["run_dir"]
        joint = json.loads((joint_dir / "best" / "metrics.json").read_text())
        scores["joint"][seed] = {t: primary(joint, t, m) for t, m in tasks.items()}
        scores["single"][seed] = {}
        teachers = []
        for task, metric in tasks.items():
            run = summary["single"][task]["runs"][seed]
            best = root / run["run_dir"] / "best"
            teachers.append(str(best))
            scores["single"][seed][task] = primary(json.loads((best / "metrics.json").read_text()), task, metric)
        for scope in ("heads", "full"):
            done = joint_dir / f"finetuned-{scope}" / "summary.json"
            result = json.loads(done.read_text()) if done.is_file() else finetune(
                joint_dir / "best", scope=scope, epochs=args.finetune_epochs, show_progress=False)
            scores[f"joint + ft ({scope})"][seed] = {t: result["tasks"][t]["finetuned"].get(m) for t, m in
                                                     tasks.items()}
        student_dir = Path(args.baseline) / "distilled" / f"seed-{seed}"
        metrics_file = student_dir / "best" / "metrics.json"
        if not metrics_file.is_file():
            cfg = json.loads(json.dumps(summary_config(joint_dir)))
            cfg["train"]["output_dir"] = str(student_dir)
            cfg["distillation"] = {"teachers": teachers}
            train(validate_config(cfg, source="<distillation config>"), show_progress=False)
        scores["BAM distilled"][seed] = {t: primary(json.loads(metrics_file.read_text()), t, m)
                                         for t, m in tasks.items()}
    report(scores, tasks, seeds, args, Console(width=None if sys.stdout.isatty() else 220), Table)


def summary_config(joint_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((joint_dir / "run_config.yaml").read_text())


def report(scores: dict[str, Any], tasks: dict[str, str], seeds: list[str], args: argparse.Namespace,
           console: Any, table_cls: Any) -> None:
    m = machine()
    single = scores["single"]
    table = table_cls(title=f"7-task benchmark, test primary metric, mean ± std over seeds {', '.join(seeds)}; "
                            f"Δm% vs single-task; {describe(m)}")
    for col in ("model", *tasks, "Δm%", "goal"):
        table.add_column(col, justify="left" if col == "model" else "right")
    out: dict[str, Any] = {}
    for model, per_seed in scores.items():
        cells, below = [], []
        for task in tasks:
            values = [per_seed[s][task] for s in seeds if per_seed.get(s, {}).get(task) is not None]
            ref = [single[s][task] for s in seeds]
            mean = statistics.fmean(values) if values else float("nan")
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            ref_mean, ref_std = statistics.fmean(ref), statistics.stdev(ref) if len(ref) > 1 else 0.0
            if values and mean < ref_mean - ref_std:
                below.append(task)
            cells.append(f"{mean:.4f} ± {std:.4f}")
        deltas = []
        for s in seeds:
            rel = [100 * (per_seed[s][t] - single[s][t]) / abs(single[s][t]) for t in tasks
                   if per_seed.get(s, {}).get(t) is not None and single[s][t]]
            if rel:
                deltas.append(statistics.fmean(rel))
        dm = (statistics.fmean(deltas), statistics.stdev(deltas) if len(deltas) > 1 else 0.0) if deltas else None
        one_model = model in ("joint", "joint + ft (heads)", "BAM distilled")
        goal = ("met" if not below and dm and dm[0] > 0 else "not met: " + (", ".join(below) or "aggregate")
                ) if one_model and model != "single" else "-"
        out[model] = {"per_task": cells, "delta_m": dm, "below_single_minus_std": below, "one_model": one_model}
        table.add_row(model, *cells, f"{dm[0]:+.2f} ± {dm[1]:.2f}" if dm else "0", goal)
    console.print(table)
    Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json_out).write_text(json.dumps({"command": command(), "machine": m, "scores": scores, "summary": out,
                                               "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
