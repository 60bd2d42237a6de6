"""``polytask report RUN_DIR``: plots of a run's ``metrics.jsonl`` and a Markdown summary, in ``RUN_DIR/report/``.

Files (each plot only when the run logged something it can show; the summary says why one is missing):

* ``loss.png``: the training loss of each task (the smoothed values the progress bar shows), one panel per task;
* ``validation.png``: each task's primary validation metric at every evaluation, the aggregate and the best step;
* ``sampling.png``: the share of batches each source gets over training (not drawn for a single source);
* ``weights.png``: the loss weight of each task over training (not drawn when every weight stays constant);
* ``summary.md``: config gist, best and final validation, test of the best checkpoint, links to the plots.

Plots are drawn with matplotlib's Agg renderer on ``Figure`` objects (no pyplot, no display, no global state), by
``polytask.report_plots``; this module reads the run and writes the summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from polytask.errors import PolytaskError
from polytask.report_plots import plot_loss, plot_sampling, plot_validation, plot_weights, series_of
from polytask.tracking import read_metrics

PLOTS = {
    "loss": "Training loss per task",
    "validation": "Validation metric per task (primary metric)",
    "sampling": "Sampling proportions per source",
    "weights": "Loss weight per task",
}
CAPTIONS = {
    "loss": "Moving average of each task's loss (what the progress bar shows), at every logging step.",
    "validation": "Primary metric of each task at every validation; dashed: the value model selection uses; "
                  "dotted: the step of the best checkpoint.",
    "sampling": "Probability of each source feeding a batch, as the sampler set it at each logging step.",
    "weights": "Weight the loss weighting gave each task; logged at each logging step for the tasks of that step's "
               "batch, so a task can miss points.",
}


@dataclass
class Report:
    folder: Path
    summary: Path
    plots: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return [*self.plots.values(), self.summary]


# ----------------------------------------------------------------------------------------------------------------------
# reading a run


def _read_run_config(run_dir: Path) -> dict[str, Any] | None:
    for path in (run_dir / "run_config.yaml", run_dir / "best" / "run_config.yaml"):
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
    return None


def primary_metrics(run_config: dict[str, Any] | None, records: list[dict[str, Any]]) -> dict[str, str]:
    """task -> its primary metric, from the task types of the run config (else the first metric logged)."""
    from polytask.tasks import TASKS, build_task

    out: dict[str, str] = {}
    for name, params in ((run_config or {}).get("tasks") or {}).items():
        try:
            typed = TASKS.get(params["type"]).Params.model_validate(params)
            out[name] = build_task(name, typed).primary_metric
        except Exception:  # noqa: BLE001  (an unknown/changed task type: fall back to what was logged)
            continue
    for record in records:
        for name, metrics in record.get("tasks", {}).items():
            if name not in out:
                names = [k for k in metrics if k != "examples"]
                if names:
                    out[name] = names[0]
    return out


def best_step(evals: list[dict[str, Any]]) -> int | None:
    """Step of the best checkpoint: the last evaluation that changed the run's best value (best/metrics.json holds
    the final step, not this one)."""
    step, previous = None, None
    for r in evals:
        if r.get("best") is not None and r.get("best") != previous:
            step, previous = r["step"], r["best"]
    return step


# ----------------------------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _md_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _metrics_table(tasks: dict[str, dict[str, Any]], primary: dict[str, str]) -> list[str]:
    names: list[str] = []
    for task, metrics in tasks.items():
        for k in [primary.get(task), *metrics]:
            if k and k != "examples" and k in metrics and k not in names:
                names.append(k)
    rows = [[task, metrics.get("examples"), *[metrics.get(m) for m in names]] for task, metrics in tasks.items()]
    return _md_table(["task", "examples", *names], rows)


def _params(spec: dict[str, Any] | None) -> str:
    if not spec:
        return "-"
    extra = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec.get('name')}" + (f" ({extra})" if extra else "")


def _config_lines(cfg: dict[str, Any] | None, primary: dict[str, str]) -> list[str]:
    if cfg is None:
        return ["No run_config.yaml in the run dir: configuration unknown.", ""]
    enc, t, ev = cfg.get("encoder", {}), cfg.get("train", {}), cfg.get("evaluation", {})
    budget = f"max_steps={t.get('max_steps')}" if t.get("max_steps") else f"epochs={t.get('epochs')}"
    lines = _md_table(["setting", "value"], [
        ["encoder", f"`{enc.get('name')}` (max_length={enc.get('max_length')}, pooling={enc.get('pooling')}"
                    f"{', task embedding' if enc.get('task_embedding') else ''})"],
        ["sampler", _params(cfg.get("sampler"))],
        ["weighting", _params(cfg.get("weighting"))],
        ["optimisation", f"lr={t.get('lr')}, head_lr={t.get('head_lr') or t.get('lr')}, "
                         f"{'sharing_lr=' + str(t['sharing_lr']) + ', ' if t.get('sharing_lr') else ''}"
                         f"batch_size={t.get('batch_size')}, grad_accum={t.get('grad_accum')}, {budget}, "
                         f"schedule={t.get('schedule')}, warmup_ratio={t.get('warmup_ratio')}, "
                         f"precision={t.get('precision')}, seed={t.get('seed')}"],
        ["model selection", f"metric={ev.get('metric')} ({ev.get('mode')}), every_steps="
                            f"{ev.get('every_steps') or 'once per epoch'}, patience={ev.get('patience') or '-'}"],
    ])
    datasets = cfg.get("datasets", {})
    task_rows = []
    for name, p in (cfg.get("tasks") or {}).items():
        ds = datasets.get(p.get("dataset"), {})
        splits = ", ".join(s for s in ("train", "validation", "test") if ds.get(s)) or "-"
        if ds.get("validation_fraction"):
            splits += f" (validation: {ds['validation_fraction']:.0%} of train)"
        task_rows.append([name, p.get("type"), p.get("dataset"), p.get("label"), primary.get(name, "-"), splits])
    return [*lines, "", "### Tasks", "",
            *_md_table(["task", "type", "dataset", "label", "primary metric", "splits"], task_rows), ""]


def _validation_lines(evals: list[dict[str, Any]], best: dict[str, Any], primary: dict[str, str]) -> list[str]:
    validation = (best.get("validation") or {}).get("tasks")
    if not evals and not validation:
        return ["No validation evaluations were recorded (the config has no validation data): the final model was "
                "kept as `best` without model selection.", ""]
    lines: list[str] = []
    if evals:
        last = evals[-1]
        chosen_step = best_step(evals)
        chosen = next((r for r in evals if r["step"] == chosen_step), None)
        if best.get("best_metric") is not None:
            lines += [f"Best checkpoint: step {chosen_step}, {best.get('metric', 'aggregate')} = "
                      f"{_fmt(best.get('best_metric'))} ({len(evals)} evaluations, the last at step {last['step']}).",
                      ""]
        rows = []
        for task in dict.fromkeys(t for r in evals for t in r.get("tasks", {})):
            metric = primary.get(task)
            values = [r["tasks"][task].get(metric) for r in evals if task in r.get("tasks", {})]
            values = [v for v in values if isinstance(v, (int, float))]
            rows.append([task, metric, (chosen or {}).get("tasks", {}).get(task, {}).get(metric),
                         last.get("tasks", {}).get(task, {}).get(metric), max(values) if values else None])
        if len(rows) > 1:
            rows.append(["aggregate", best.get("metric", "mean"), (chosen or {}).get("aggregate"),
                         last.get("aggregate"), None])
        header = ["task", "metric", f"best checkpoint (step {chosen_step})", f"final (step {last['step']})",
                  "highest seen"]
        lines += ["Primary metric at the best checkpoint and at the last evaluation:", "",
                  *_md_table(header, rows), ""]
    if validation:
        lines += ["All validation metrics of the best checkpoint:", "", *_metrics_table(validation, primary), ""]
    return lines


def write_report(run_dir: str | Path) -> Report:
    """Plots and summary.md of the run in ``run_dir`` (a folder with metrics.jsonl), into ``run_dir/report``."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PolytaskError("polytask report needs matplotlib: pip install 'polytask[plots]'") from None
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.jsonl"
    if not metrics_file.is_file():
        hint = " (for a comparison, give one of its runs, e.g. compare/multi/seed-N)" \
            if (run_dir / "compare").is_dir() else ""
        raise PolytaskError(f"{run_dir}: no metrics.jsonl; give the output_dir of a training run{hint}")
    try:
        records = read_metrics(metrics_file)
    except (ValueError, KeyError) as exc:
        raise PolytaskError(f"{metrics_file}: unreadable record: {exc}") from None
    cfg = _read_run_config(run_dir)
    best_file = run_dir / "best" / "metrics.json"
    best = json.loads(best_file.read_text(encoding="utf-8")) if best_file.is_file() else {}
    train = [r for r in records if r.get("type") == "train"]
    evals = [r for r in records if r.get("type") == "eval" and r.get("split", "validation") == "validation"]
    primary = primary_metrics(cfg, records)

    folder = run_dir / "report"
    folder.mkdir(parents=True, exist_ok=True)
    report = Report(folder, folder / "summary.md")
    drawn = {
        "loss": plot_loss(train, folder / "loss.png"),
        "validation": plot_validation(evals, primary, folder / "validation.png", best_step(evals),
                                      ((cfg or {}).get("evaluation") or {}).get("metric", "mean")),
        "sampling": plot_sampling(train, folder / "sampling.png"),
        "weights": plot_weights(train, folder / "weights.png"),
    }
    sources = series_of(train, "sampling")
    weights = series_of(train, "weight")
    why = {
        "loss": "no training records in metrics.jsonl",
        "validation": "no validation evaluations were recorded",
        "sampling": (f"one source ({next(iter(sources))}): every batch comes from it" if len(sources) == 1
                     else "no sampling proportions were logged"),
        "weights": ("every loss weight stayed at " + _fmt(next(iter(weights.values()))[1][0]) if weights
                    else "no loss weights were logged"),
    }
    for key, path in drawn.items():
        if path is not None:
            report.plots[key] = path
        else:
            old = folder / f"{key}.png"
            if old.exists():
                old.unlink()  # a plot of an earlier report of this folder no longer applies
            report.notes.append(f"{key}.png not drawn: {why[key]}")

    lines = [f"# Run report: {run_dir.resolve().name}", "",
             f"Written by `polytask report` from `{run_dir}` on "
             f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.", "",
             "## Configuration", "", *_config_lines(cfg, primary)]
    lines += ["## Training", ""]
    if train:
        last = train[-1]
        total = f"{last['step']:,} steps ({last.get('epoch', 0):.2f} epochs at the last log)"
        seconds = f" in {best['train_seconds']:.1f} s" if isinstance(best.get("train_seconds"), (int, float)) else ""
        rates = [r["examples_per_s"] for r in train if isinstance(r.get("examples_per_s"), (int, float))]
        speed = f", {sum(rates) / len(rates):.1f} examples/s on average" if rates else ""
        lines += [f"Trained {total}{seconds}{speed}.", ""]
        losses = series_of(train, "loss")
        lines += _md_table(["task", "first logged loss", "last logged loss"],
                           [[t, v[0], v[-1]] for t, (_, v) in losses.items()])
        lines.append("")
    else:
        lines += ["No training records in metrics.jsonl.", ""]
    lines += ["## Validation", "", *_validation_lines(evals, best, primary)]
    lines += ["## Test (best checkpoint)", ""]
    test = (best.get("test") or {}).get("tasks")
    lines += [*_metrics_table(test, primary), ""] if test else ["No test split in the config (or the run did not "
                                                                "finish): no test results.", ""]
    for source, info in ((best.get("test") or {}).get("sources") or {}).items():
        if "all_tasks_correct" in info:
            lines.append(f"- {source}: every task right on {info['all_tasks_correct']:.4f} of {info['examples']} rows")
    if test:
        lines.append("")
    lines += ["## Plots", ""]
    for key, path in report.plots.items():
        lines += [f"### {PLOTS[key]}", "", CAPTIONS[key], "", f"![{PLOTS[key]}]({path.name})", ""]
    if report.notes:
        lines += ["Not drawn:", "", *[f"- {note}" for note in report.notes], ""]
    report.summary.write_text("\n".join(lines), encoding="utf-8")
    return report
