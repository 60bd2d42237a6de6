"""Experiment trackers (``train.report_to``): names and packages checked with the config, before anything loads;
a short run logs the same numbers as metrics.jsonl to TensorBoard (event files) and MLflow (a local file store),
both offline. tests/test_distributed.py checks that a run of two processes logs once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import load_config
from polytask.trackers import MLflow, hyperparameters, scalars

from conftest import write_yaml


def run_config(tmp_path: Path, toy_data: Path, encoder: str, **train: object) -> Path:
    return write_yaml(tmp_path / "run.yaml", {
        "encoder": {"name": encoder, "max_length": 32},
        "datasets": {"d": {"format": "csv", "train": str(toy_data / "sentiment_train.csv"),
                           "validation": str(toy_data / "sentiment_dev.csv"), "text": "sentence"}},
        "tasks": {"t": {"type": "classification", "dataset": "d", "label": "label"}},
        "evaluation": {"every_steps": 2},
        "train": {"output_dir": str(tmp_path / "out"), "max_steps": 4, "batch_size": 16, "lr": 3e-3,
                  "log_every": 1, "progress_bar": False, **train}})


def test_unknown_or_uninstalled_trackers_are_config_errors(tmp_path: Path, toy_data: Path, tiny_encoder: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MLflow, "modules", ("polytask_no_such_module_zz",))  # as if mlflow were not installed
    config = run_config(tmp_path, toy_data, tiny_encoder, report_to=["tensorbord", "mlflow", "mlflow"],
                        lr=-1)  # and a problem of another kind: all are reported together
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "train.report_to: unknown experiment tracker 'tensorbord'; available: aim, clearml, comet_ml, " \
           "dvclive, mlflow, tensorboard, wandb" in text
    assert "train.report_to: tracker 'mlflow' needs the Python package 'mlflow', which is not installed " \
           "(pip install mlflow)" in text
    assert "train.report_to: 'mlflow' is listed twice" in text and "train.lr" in text
    assert not (tmp_path / "out").exists()  # refused before anything was written (or loaded)


def test_report_to_takes_one_name_and_defaults_to_none(tmp_path: Path, toy_data: Path, tiny_encoder: str) -> None:
    assert load_config(run_config(tmp_path, toy_data, tiny_encoder)).train.report_to == []
    one = load_config(run_config(tmp_path, toy_data, tiny_encoder), ["train.report_to=tensorboard"])
    assert one.train.report_to == ["tensorboard"]


def test_scalar_names_and_hyperparameters() -> None:
    train = {"type": "train", "step": 5, "epoch": 0.5, "lr": 1e-3, "loss": {"a": 0.7}, "weight": {"a": 1.0},
             "sampling": {"d": 1.0}, "examples_per_s": 12.5}
    assert scalars(train) == {"train/epoch": 0.5, "train/lr": 1e-3, "train/loss/a": 0.7, "train/weight/a": 1.0,
                              "train/sampling/d": 1.0, "train/examples_per_s": 12.5}
    evaluation = {"type": "eval", "step": 5, "tasks": {"a": {"accuracy": 0.9, "examples": 40}},
                  "aggregate": 0.9, "best": None}
    assert scalars(evaluation) == {"validation/a/accuracy": 0.9, "validation/aggregate": 0.9}
    assert scalars({**evaluation, "split": "test"})["test/a/accuracy"] == 0.9
    assert hyperparameters({"train": {"lr": 1e-3, "freeze": [], "head_lr": None}, "sampler": {"name": "x"}}) == {
        "train/lr": 1e-3, "train/freeze": "[]", "train/head_lr": "null", "sampler/name": "x"}


def test_a_run_logs_to_tensorboard_and_mlflow_offline(tmp_path: Path, toy_data: Path, tiny_encoder: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard tracker needs the tensorboard package")
    pytest.importorskip("mlflow", reason="the mlflow tracker needs mlflow (or mlflow-skinny)")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the local store in the output folder
    config = run_config(tmp_path, toy_data, tiny_encoder, report_to=["tensorboard", "mlflow"])
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    expected: dict[str, dict[int, float]] = {}
    for record in records:
        for key, value in scalars(record).items():
            expected.setdefault(key, {})[record["step"]] = value
    assert {"train/loss/t", "train/lr", "validation/t/accuracy", "validation/aggregate"} <= set(expected)
    assert sorted(expected["train/loss/t"]) == [1, 2, 3, 4] and sorted(expected["validation/t/accuracy"]) == [2, 4]

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert set(expected) <= set(events.Tags()["scalars"])
    for key, by_step in expected.items():
        logged = {e.step: e.value for e in events.Scalars(key)}
        assert logged == pytest.approx(by_step, rel=1e-6), key

    client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("polytask")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "out"
    assert run.data.params["train/batch_size"] == "16" and run.data.params["tasks/t/type"] == "classification"
    for key, by_step in expected.items():
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert logged == pytest.approx(by_step, rel=1e-6), key

