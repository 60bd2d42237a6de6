"""``polytask report``: PNG plots and a Markdown summary of a run, on the tiny random BERT and toy data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import validate_config
from polytask.report import write_report
from polytask.tracking import read_metrics
from polytask.train import train

from conftest import toy_config

PNG = b"\x89PNG\r\n\x1a\n"


def config(toy_data: Path, encoder: str, out: Path, tasks: tuple[str, ...], **train_args) -> dict:
    cfg = toy_config(toy_data, encoder, out, **train_args)
    cfg["tasks"] = {t: cfg["tasks"][t] for t in tasks}
    used = {cfg["tasks"][t]["dataset"] for t in tasks}
    cfg["datasets"] = {d: spec for d, spec in cfg["datasets"].items() if d in used}
    return cfg


@pytest.fixture(scope="module")
def two_task_run(tiny_encoder: str, toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tasks from two datasets, learned loss weights, three validations."""
    out = tmp_path_factory.mktemp("report") / "run"
    raw = config(toy_data, tiny_encoder, out, ("intent", "sentiment"), max_steps=6, log_every=1)
    raw["evaluation"] = {"metric": "mean", "every_steps": 2}
    raw["weighting"] = {"name": "uncertainty"}
    train(validate_config(raw))
    return out


def test_report_writes_plots_and_summary(two_task_run: Path) -> None:
    r = CliRunner().invoke(app, ["report", str(two_task_run)])
    assert r.exit_code == 0, r.output
    folder = two_task_run / "report"
    summary = (folder / "summary.md").read_text()
    for name in ("loss", "validation", "sampling", "weights"):
        png = folder / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 5_000, name
        assert png.read_bytes()[:8] == PNG
        assert f"]({name}.png)" in summary, name
        assert str(png) in r.output
    assert "Not drawn" not in summary
    # the config gist and the numbers of the best checkpoint
    assert "uncertainty" in summary and "| intent | classification | snips | intent | accuracy |" in summary
    best = json.loads((two_task_run / "best/metrics.json").read_text())
    for split in ("validation", "test"):
        for task, metrics in best[split]["tasks"].items():
            assert f"| {task} | {metrics['examples']} | {metrics['accuracy']:.4f} |" in summary, (split, task)
    records = read_metrics(two_task_run / "metrics.jsonl")
    evals = [r for r in records if r["type"] == "eval" and r["split"] == "validation"]
    top = max(r["aggregate"] for r in evals)
    chosen = next(r for r in evals if r["aggregate"] == top)  # the first time the best value was reached
    assert f"Best checkpoint: step {chosen['step']}, mean = {top:.4f}" in summary
    assert "final (step 6)" in summary  # the last validation, beside the best one


def test_report_plots_have_a_sensible_size(two_task_run: Path) -> None:
    from matplotlib.image import imread

    report = write_report(two_task_run)
    assert set(report.plots) == {"loss", "validation", "sampling", "weights"} and not report.notes
    for path in report.plots.values():
        height, width = imread(str(path)).shape[:2]
        assert 300 < height < 1500 and 600 < width < 1500, (path.name, width, height)


def test_report_of_a_single_task_run_without_validation(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    raw = config(toy_data, tiny_encoder, tmp_path / "run", ("sentiment",), max_steps=3, log_every=1)
    del raw["datasets"]["sentiment"]["validation"]
    train(validate_config(raw))
    report = write_report(tmp_path / "run")
    assert set(report.plots) == {"loss"}
    assert (tmp_path / "run/report/loss.png").stat().st_size > 5_000
    summary = report.summary.read_text()
    assert "](loss.png)" in summary and "validation.png" not in summary.split("Not drawn")[0]
    assert "No validation evaluations were recorded" in summary
    assert "one source (sentiment)" in summary and "every loss weight stayed at 1.0000" in summary
    test = json.loads((tmp_path / "run/best/metrics.json").read_text())["test"]["tasks"]["sentiment"]
    assert f"| sentiment | 40 | {test['accuracy']:.4f} |" in summary


def test_report_without_metrics_fails_cleanly(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 2 and "no metrics.jsonl" in r.output
