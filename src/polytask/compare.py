"""``polytask compare``: read the summary that ``polytask baseline`` wrote and put multi-task and single-task
results side by side, per task (mean and std over seeds), with time, parameters, memory and checkpoint size."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from polytask.baseline import SUMMARY_FORMAT
from polytask.errors import PolytaskError
from polytask.memory import MIB



def load_summary(run_dir: str | Path) -> dict[str, Any]:
    """summary.json of ``run_dir`` (the config's output_dir), of ``run_dir/compare``, or the file itself."""
    path = Path(run_dir)
    for candidate in (path / "compare" / "summary.json", path / "summary.json", path):
        if candidate.is_file():
            try:
                summary = json.loads(candidate.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise PolytaskError(f"{candidate}: not valid JSON: {exc}") from None
            if summary.get("format") != SUMMARY_FORMAT:
                raise PolytaskError(f"{candidate}: not a polytask comparison summary")
            summary["_root"] = str(candidate.parent)  # where the run folders are, wherever the tree was moved
            return summary
    raise PolytaskError(f"{path}: no compare/summary.json; run `polytask baseline CONFIG` first (RUN_DIR is the "
                        "config's train.output_dir)")


def _stat(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values), "values": values}


def _value(run: dict[str, Any] | None, split: str, task: str, metric: str) -> float | None:
    if not run or not run.get(split):
        return None
    value = run[split].get(task, {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _sum_over_runs(summary: dict[str, Any], field: str, seed: str, reduce=sum) -> float | None:
    values = [g["runs"][seed].get(field) for g in summary["single"].values() if seed in g["runs"]]
    if not values or any(v is None for v in values):
        return None
    return float(reduce(values))


def comparison(summary: dict[str, Any], split: str = "test") -> dict[str, Any]:
    """Per task: primary metric of the multi-task model vs the task alone, and multi - single (paired by seed);
    mean and std over seeds. ``split="test"`` falls back to validation for a task without test results."""
    if split not in ("test", "validation"):
        raise PolytaskError(f"--split must be test or validation, not {split!r}")
    seeds = [str(s) for s in summary["seeds"]]
    multi_runs = summary["multi"]["runs"]
    finetuned = _finetuned(summary, seeds, split)
    rows: dict[str, Any] = {}
    per_seed: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in seeds}
    for task, info in summary["tasks"].items():
        metric = info["primary_metric"]
        single_runs = summary["single"].get(task, {}).get("runs", {})
        used = split
        if split == "test" and not any(_value(multi_runs.get(s), "test", task, metric) is not None for s in seeds):
            used = "validation"
        m = {s: _value(multi_runs.get(s), used, task, metric) for s in seeds}
        o = {s: _value(single_runs.get(s), used, task, metric) for s in seeds}
        pairs = [s for s in seeds if m[s] is not None and o[s] is not None]
        for s in pairs:
            per_seed[s][task] = (m[s], o[s])  # type: ignore[assignment]
        rows[task] = {
            "metric": metric, "split": used, "dataset": info.get("dataset"),
            "multi": _stat([v for v in m.values() if v is not None]),
            "single": _stat([v for v in o.values() if v is not None]),
            "delta": _stat([m[s] - o[s] for s in pairs]),  # type: ignore[operator]
            "skipped": summary.get("skipped", {}).get(task),
        }
        for scope, per_seed_ft in finetuned.items():  # joint + per-task fine-tuning (polytask finetune)
            f = {s: per_seed_ft.get(s, {}).get(task, {}).get(metric) for s in seeds}
            both = [s for s in seeds if f[s] is not None and o[s] is not None]
            rows[task][f"finetuned_{scope}"] = _stat([v for v in f.values() if v is not None])
            rows[task][f"delta_finetuned_{scope}"] = _stat([f[s] - o[s] for s in both])
    compared = [t for t in rows if rows[t]["delta"] is not None]
    agg_m, agg_o = [], []
    for s in seeds:
        if compared and all(t in per_seed[s] for t in compared):
            agg_m.append(statistics.fmean(per_seed[s][t][0] for t in compared))
            agg_o.append(statistics.fmean(per_seed[s][t][1] for t in compared))
    aggregate = {"tasks": compared, "multi": _stat(agg_m), "single": _stat(agg_o),
                 "delta": _stat([a - b for a, b in zip(agg_m, agg_o)])}

    def over_seeds(getter) -> dict[str, Any] | None:
        values = [getter(s) for s in seeds]
        return _stat([v for v in values if v is not None]) if all(v is not None for v in values) else None

    def multi_field(field: str):
        return lambda s: (multi_runs.get(s) or {}).get(field)

    totals = summary.get("totals", {})
    cost = {
        "models": {"multi": 1, "single": len(summary["single"])},
        "parameters": {"multi": totals.get("multi", {}).get("parameters"),
                       "single": totals.get("single", {}).get("parameters")},
        "model_bytes": {"multi": totals.get("multi", {}).get("model_bytes"),
                        "single": totals.get("single", {}).get("model_bytes")},
        "train_seconds": {"multi": over_seeds(multi_field("train_seconds")),
                          "single": over_seeds(lambda s: _sum_over_runs(summary, "train_seconds", s))},
        "wall_seconds": {"multi": over_seeds(multi_field("wall_seconds")),
                         "single": over_seeds(lambda s: _sum_over_runs(summary, "wall_seconds", s))},
        "peak_rss_mib": {"multi": over_seeds(multi_field("peak_rss_mib")),
                         "single": over_seeds(lambda s: _sum_over_runs(summary, "peak_rss_mib", s, max))},
        "cuda_peak_mib": {"multi": over_seeds(multi_field("cuda_peak_mib")),
                          "single": over_seeds(lambda s: _sum_over_runs(summary, "cuda_peak_mib", s, max))},
    }
    return {"split": split, "seeds": summary["seeds"], "budget": summary.get("budget", {}).get("mode"),
            "memory_method": summary.get("memory", {}).get("method"), "tasks": rows, "aggregate": aggregate,
            "cost": cost, "finetuned_scopes": sorted(finetuned)}


def _finetuned(summary: dict[str, Any], seeds: list[str], split: str) -> dict[str, dict[str, dict[str, Any]]]:
    """scope -> seed -> task -> metrics of ``polytask finetune`` runs next to each seed's joint model (found as
    ``multi/seed-N/finetuned-SCOPE/summary.json`` under the comparison root)."""
    root = Path(summary["_root"]) if "_root" in summary else Path(summary.get("output_dir", ".")) / "compare"
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for seed in seeds:
        record = summary["multi"]["runs"].get(seed)
        if record is None:
            continue
        for file in sorted((root / record["run_dir"]).glob("finetuned-*/summary.json")):
            data = json.loads(file.read_text(encoding="utf-8"))
            scope = data.get("scope", file.parent.name.removeprefix("finetuned-"))
            for task, entry in data.get("tasks", {}).items():
                found = entry.get("finetuned", {})
                if found.get("split") in (split, "validation"):
                    out.setdefault(scope, {}).setdefault(seed, {})[task] = found
    return out


def format_stat(stat: dict[str, Any] | None, signed: bool = False, digits: int = 4) -> str:
    """``0.9125`` for one seed, ``0.9125 ± 0.0088`` (sample std) for several, ``-`` for none."""
    if stat is None:
        return "-"
    text = f"{stat['mean']:+.{digits}f}" if signed else f"{stat['mean']:.{digits}f}"
    if stat["std"] is not None:
        text += f" ± {stat['std']:.{digits}f}"
    return text


def _delta_cell(stat: dict[str, Any] | None) -> str:
    text = format_stat(stat, signed=True)
    if stat is None:
        return text
    return f"[red]{text}[/]" if stat["mean"] < 0 else f"[green]{text}[/]" if stat["mean"] > 0 else text


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1024**3), ("MiB", MIB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{int(n)} B"


def comparison_tables(comp: dict[str, Any]):  # -> list[rich.table.Table]
    from rich.table import Table

    seeds = comp["seeds"]
    several = len(seeds) > 1
    title = (f"multi-task vs single-task, primary metric on {comp['split']}"
             + (f" (mean ± std over seeds {', '.join(map(str, seeds))})" if several else f" (seed {seeds[0]})"))
    table = Table(title=title)
    scopes = comp.get("finetuned_scopes", [])
    for name, justify in (("task", "left"), ("metric", "left"), ("split", "left"), ("multi", "right"),
                          ("single", "right"), ("delta", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for scope in scopes:
        table.add_column(f"multi + ft ({scope})", justify="right")
        table.add_column(f"delta ft ({scope})", justify="right")
    for task, row in comp["tasks"].items():
        extra = [cell for scope in scopes for cell in (format_stat(row.get(f"finetuned_{scope}")),
                                                        _delta_cell(row.get(f"delta_finetuned_{scope}")))]
        table.add_row(task, row["metric"], row["split"], format_stat(row["multi"]), format_stat(row["single"]),
                      _delta_cell(row["delta"]), *extra)
    agg = comp["aggregate"]
    table.add_section()
    table.add_row("aggregate", "mean", "", format_stat(agg["multi"]), format_stat(agg["single"]),
                  _delta_cell(agg["delta"]), *["" for _ in scopes for _ in range(2)])
    notes = ["delta = multi - single, paired by seed; negative (red) = negative transfer"]
    if scopes:
        notes.append("multi + ft = the joint model after per-task fine-tuning (polytask finetune); delta ft = that - "
                     "single")
    if any(r["split"] != comp["split"] for r in comp["tasks"].values()):
        notes.append("tasks without a test split are compared on validation")
    notes += [f"{t}: not trained alone: {r['skipped']}" for t, r in comp["tasks"].items() if r["skipped"]]
    table.caption = "\n".join(notes)

    cost = comp["cost"]
    n = cost["models"]["single"]
    costs = Table(title="cost: 1 multi-task model vs single-task models")
    costs.add_column("")
    costs.add_column("multi-task (1 model)", justify="right")
    costs.add_column(f"single-task ({n} models)", justify="right")
    costs.add_column("single / multi", justify="right")

    def ratio(a: float | None, b: float | None) -> str:
        return f"{b / a:.2f}x" if a and b is not None else "-"

    def mean(stat: dict[str, Any] | None) -> float | None:
        return None if stat is None else stat["mean"]

    p = cost["parameters"]
    costs.add_row("parameters", f"{p['multi']:,}" if p["multi"] else "-",
                  f"{p['single']:,} (sum)" if p["single"] else "-", ratio(p["multi"], p["single"]))
    b = cost["model_bytes"]
    costs.add_row("model.safetensors", _size(b["multi"]), f"{_size(b['single'])} (sum)",
                  ratio(b["multi"], b["single"]))
    for key, label, how in (("train_seconds", "training time (s, loop)", "sum"),
                            ("wall_seconds", "wall time (s, with loading and evaluation)", "sum"),
                            ("peak_rss_mib", "peak RSS (MiB)", "max"), ("cuda_peak_mib", "CUDA peak (MiB)", "max")):
        pair = cost[key]
        if pair["multi"] is None and pair["single"] is None:
            continue
        costs.add_row(label, format_stat(pair["multi"], digits=1),
                      f"{format_stat(pair['single'], digits=1)} ({how})" if pair["single"] else "-",
                      ratio(mean(pair["multi"]), mean(pair["single"])))
    method = comp.get("memory_method")
    costs.caption = ("single-task runs train one after another: times are summed, memory is the largest peak; "
                     + ("memory: " + {"vmhwm": "per-run peak RSS (VmHWM reset before each run)",
                                      "ru_maxrss": "peak RSS from ru_maxrss (not reset between runs)"}[method]
                        if method in ("vmhwm", "ru_maxrss") else "memory: not measured"))
    return [table, costs]
