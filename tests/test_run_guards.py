"""Guards of a training run: a non-finite loss leaves the last good checkpoint as it was and says where it is; a
resume under a changed config, or with a saved state that no longer fits, is refused with what differs; config
shorthands and plugin switches on the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import validate_config
from polytask.errors import ConfigError
from polytask.tasks.classification import Classification

from conftest import make_sentiment_csv, write_yaml


def _run_config(encoder: str, train: Path, out: Path, **keys: object) -> dict:
    return {"encoder": {"name": encoder, "max_length": 32},
            "datasets": {"d": {"format": "csv", "train": str(train), "validation_fraction": 0.2,
                               "text": "sentence"}},
            "tasks": {"t": {"type": "classification", "dataset": "d", "label": "label"}},
            "evaluation": {"every_steps": 2},
            "train": {"output_dir": str(out), "max_steps": 6, "batch_size": 16, "lr": 3e-3, "seed": 7,
                      "progress_bar": False, **keys}}


def test_non_finite_loss_keeps_the_last_checkpoint_and_says_where(
        tiny_encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_sentiment_csv(tmp_path / "t.csv", 80, 1)
    path = write_yaml(tmp_path / "c.yaml", _run_config(tiny_encoder, tmp_path / "t.csv", tmp_path / "out"))
    loss, calls = Classification.loss, []

    def poisoned(self, output, targets):  # the loss of step 3 (0-based 2) and later is NaN
        calls.append(1)
        value = loss(self, output, targets)
        return value * float("nan") if len(calls) > 2 and value is not None else value

    monkeypatch.setattr(Classification, "loss", poisoned)
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    last = tmp_path / "out" / "last"
    text = " ".join(result.output.split())
    assert "non-finite loss for task 't' (nan) at step 3" in text
    assert f"the last good checkpoint is {last} (step 2, written at the last evaluation and left untouched)" in text
    assert json.loads((last / "trainer_state.json").read_text(encoding="utf-8"))["step"] == 2
    assert not [p.name for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]  # no half-written folder


def test_resume_allows_safe_keys_and_refuses_a_state_that_does_not_fit(tiny_encoder: str, tmp_path: Path) -> None:
    from polytask.config import load_config
    from polytask.train import train

    make_sentiment_csv(tmp_path / "t.csv", 80, 1)
    path = write_yaml(tmp_path / "c.yaml", _run_config(tiny_encoder, tmp_path / "t.csv", tmp_path / "out"))
    assert train(load_config(path), stop_after=2).steps == 2
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(path), "train.log_every=1", "train.eval_batch_size=7", "--resume",
                            str(tmp_path / "out" / "last")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "out/last/trainer_state.json").read_text(encoding="utf-8"))["step"] == 6
    # same config, but the data at the same path now has a third label: the saved head has two outputs
    with (tmp_path / "t.csv").open("a", encoding="utf-8") as f:
        f.write("the movie was fine,neutral\n" * 5)
    r = runner.invoke(app, ["train", str(path), "--resume", str(tmp_path / "out" / "last")])
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "the saved weights do not fit the model built now" in text
    assert "heads.t.1.weight: saved [2, 32], now [3, 32]" in text and "Traceback" not in r.output


def test_encoder_and_plugins_may_be_written_as_a_name(tiny_encoder: str, tmp_path: Path) -> None:
    make_sentiment_csv(tmp_path / "t.csv", 20, 1)
    raw = _run_config(tiny_encoder, tmp_path / "t.csv", tmp_path / "out") | {"encoder": tiny_encoder,
                                                                            "sampler": "uniform"}
    run = validate_config(raw)
    assert run.encoder.name == tiny_encoder and run.encoder.max_length == 128 and run.sampler.name == "uniform"
    assert validate_config(raw, overrides=["encoder.max_length=64"]).encoder.max_length == 64


def test_switching_a_plugin_by_override_drops_the_old_parameters(
        tiny_encoder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_sentiment_csv(tmp_path / "t.csv", 20, 1)
    raw = _run_config(tiny_encoder, tmp_path / "t.csv", tmp_path / "out")
    raw |= {"sampler": {"name": "temperature", "temperature": 2, "cap": 100},
            "weighting": {"name": "dwa", "temperature": 3.0}}
    with caplog.at_level(logging.INFO, logger="polytask"):
        run = validate_config(raw, source="c.yaml", overrides=["sampler.name=proportional", "weighting.name=famo"])
    assert run.sampler.params == {} and run.weighting.params == {}
    assert ("c.yaml: sampler.name 'temperature' -> 'proportional' (override): dropped temperature=2, cap=100 "
            "('proportional' does not take them)") in caplog.text
    assert "weighting.name 'dwa' -> 'famo' (override): dropped temperature=3.0" in caplog.text
    kept = validate_config(raw, overrides=["sampler.name=annealed", "sampler.start_alpha=0.5"])
    assert kept.sampler.params == {"start_alpha": 0.5}  # the new plugin's own parameter, set on the same line
    with pytest.raises(ConfigError, match=r"sampler.temperature: unknown key|sampler.temperature: Extra inputs"):
        validate_config(raw, overrides=["sampler.name=uniform", "sampler.temperature=3"])  # given now: not dropped
