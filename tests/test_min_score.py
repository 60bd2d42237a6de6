"""Calibration at the end of training, `polytask calibrate`, and min_score in the Pipeline, `polytask predict` and
the server, on the toy run (``trained``: intent, slots, sentiment, similarity, multi-label topics)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from polytask.calibrate import calibrate_checkpoint
from polytask.cli import app
from polytask.config import validate_config
from polytask.errors import ConfigError
from polytask.evaluate import evaluate_checkpoint, load_checkpoint_data, predict_split
from polytask.inference import Pipeline
from polytask.serve.app import create_app

CALIBRATED = {"intent", "slots", "sentiment", "topics"}  # the toy tasks whose outputs are class probabilities


def _copy(trained, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained[1].best_dir, tmp_path / "best"))


def _edit_params(folder: Path, **min_scores: float) -> None:
    config = json.loads((folder / "config.json").read_text())
    for task, value in min_scores.items():
        config["tasks"][task]["params"]["min_score"] = value
    (folder / "config.json").write_text(json.dumps(config))


def test_training_calibrates_the_best_model(toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    """A short run (4 steps: the heads are far from separating validation, so the fit has an optimum)."""
    from conftest import toy_config

    from polytask.train import train

    raw = toy_config(toy_data, tiny_encoder, tmp_path / "out", max_steps=4)
    del raw["datasets"]["pairs"], raw["tasks"]["similarity"]
    result = train(validate_config(raw))
    tasks = json.loads((result.best_dir / "config.json").read_text())["tasks"]
    temperatures = {name: entry["state"].get("temperature") for name, entry in tasks.items()}
    assert set(temperatures) == CALIBRATED and all(temperatures.values())
    assert all(0.01 < t < 100 and t != 1.0 for n in CALIBRATED for t in temperatures[n].values()), temperatures
    for split in ("validation", "test"):
        intent = getattr(result, split)["tasks"]["intent"]
        assert intent["temperature"] == temperatures["intent"]["label"]
        assert 0 <= intent["ece"] <= 1 and 0 <= intent["ece_uncalibrated"] <= 1 and intent["ece"] != intent[
            "ece_uncalibrated"]
    assert json.loads((result.best_dir / "metrics.json").read_text())["test"]["tasks"]["slots"]["temperature"] == (
        temperatures["slots"]["tags"])
    # `polytask calibrate` on the same split fits the same temperatures as training did
    again = calibrate_checkpoint(result.best_dir, "validation", write=False)
    for name in CALIBRATED:
        assert again["tasks"][name]["temperature"] == pytest.approx(next(iter(temperatures[name].values())),
                                                                    rel=1e-4)


def test_calibration_without_optimum_keeps_one(trained) -> None:
    """The toy run's heads separate their validation data perfectly: no finite temperature, so T stays 1."""
    tasks = json.loads((trained[1].best_dir / "config.json").read_text())["tasks"]
    assert {n: e["state"].get("temperature") for n, e in tasks.items() if n != "similarity"} == {
        "intent": {"label": 1.0}, "slots": {"tags": 1.0}, "sentiment": {"label": 1.0}, "topics": {"label": 1.0}}
    assert trained[1].validation["tasks"]["intent"]["accuracy"] == 1.0


def test_pipeline_equals_evaluation_decoding_after_calibration(trained) -> None:
    model, _, data = load_checkpoint_data(trained[1].best_dir, "test")
    assert all(model.tasks[n].temperatures for n in ("intent", "slots"))
    split = data.splits["test"]["snips"]
    expected = predict_split(model, split, tasks=["intent", "slots"])
    got = Pipeline(model)([" ".join(e.words) for e in split.examples], tasks=["intent", "slots"])
    assert [g["intent"] for g in got] == expected["intent"]
    assert [g["slots"] for g in got] == expected["slots"]  # spans with their calibrated scores too


def test_calibrate_cli_coverage_and_raw_metrics(trained, tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    weights = (folder / "model.safetensors").read_bytes()
    runner = CliRunner()
    r = runner.invoke(app, ["calibrate", str(folder), "--coverage", "intent=0.9", "--coverage", "slots=0.8"])
    assert r.exit_code == 0, r.output
    printed = " ".join(r.output.split())
    assert "calibrated on validation" in printed and "min_score" in printed and "wrote" in printed
    params = {n: e["params"] for n, e in json.loads((folder / "config.json").read_text())["tasks"].items()}
    assert params["intent"]["min_score"] > 0 and params["slots"]["min_score"] > 0
    assert (folder / "model.safetensors").read_bytes() == weights and not list(folder.glob(".config.json.tmp-*"))

    before = evaluate_checkpoint(trained[1].best_dir, "validation")["tasks"]
    after = evaluate_checkpoint(folder, "validation")["tasks"]
    assert after["intent"]["accuracy"] == before["intent"]["accuracy"]  # metrics score the raw predictions
    assert after["slots"]["f1"] == before["slots"]["f1"]
    assert after["intent"]["coverage"] >= 0.9 and after["slots"]["coverage"] >= 0.8
    assert after["intent"]["min_score"] == params["intent"]["min_score"] and "coverage" not in before["intent"]
    # the Pipeline answers that share of the validation intents
    _, _, data = load_checkpoint_data(folder, "validation")
    texts = [" ".join(e.words) for e in data.splits["validation"]["snips"].examples]
    answered = [p["intent"]["label"] is not None for p in Pipeline.from_pretrained(folder)(texts)]
    assert sum(answered) / len(answered) == pytest.approx(after["intent"]["coverage"])


@pytest.mark.parametrize("args, message", [
    (["--coverage", "nope=0.9"], "unknown task(s) nope"),
    (["--coverage", "topics=0.9"], "multi-label tasks use threshold"),
    (["--coverage", "intent=1.5"], "0 < SHARE <= 1"),
    (["--coverage", "similarity=0.9"], "has no min_score"),
])
def test_calibrate_cli_errors(trained, tmp_path: Path, args: list[str], message: str) -> None:
    folder = _copy(trained, tmp_path)
    before = (folder / "config.json").read_text()
    r = CliRunner().invoke(app, ["calibrate", str(folder), *args])
    assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output
    assert (folder / "config.json").read_text() == before


def test_min_score_in_pipeline_predict_cli_and_server(trained, tmp_path: Path) -> None:
    folder = _copy(trained, tmp_path)
    texts = ["what is the weather in paris today", "cat dog cat dog", "vote election team game"]
    raw = Pipeline.from_pretrained(folder)(texts, tasks=["intent", "slots"])
    scores = [p["intent"]["score"] for p in raw]
    low, high = min(scores), max(scores)
    assert low < high, scores
    _edit_params(folder, intent=round(low + 1e-6, 6), slots=1.0)
    pipe = Pipeline.from_pretrained(folder)
    got = pipe(texts, tasks=["intent", "slots"])
    for before, after in zip(raw, got):
        below = before["intent"]["score"] < round(low + 1e-6, 6)
        assert after["intent"] == {"label": None if below else before["intent"]["label"],
                                   "score": before["intent"]["score"], "below_min_score": below}
        kept = [s for s in before["slots"]["spans"] if s["score"] >= 1.0]
        assert after["slots"]["spans"] == kept
        assert after["slots"]["dropped"] == len(before["slots"]["spans"]) - len(kept)
        dropped_words = {w for s in before["slots"]["spans"] if s not in kept
                         for w in range(s["start_word"], s["end_word"])}
        assert all(tag == "O" for w, tag in enumerate(after["slots"]["tags"]) if w in dropped_words)
    assert sum(p["intent"]["label"] is None for p in got) >= 1

    r = CliRunner().invoke(app, ["predict", str(folder), *texts, "--tasks", "intent,slots"])
    assert r.exit_code == 0, r.output
    printed = json.loads("[" + r.output.replace("}\n{", "},\n{") + "]")
    assert [{"intent": p["intent"], "slots": p["slots"]} for p in printed] == got

    with TestClient(create_app(pipe, max_batch=4, max_chars=100, wait_ms=1)) as client:
        response = client.post("/predict", json={"texts": texts, "tasks": ["intent", "slots"]})
        assert response.status_code == 200 and response.json()["predictions"] == got


def test_config_refuses_min_score_for_multi_label(toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    from conftest import toy_config

    raw = toy_config(toy_data, tiny_encoder, tmp_path)
    raw["tasks"]["topics"]["min_score"] = 0.5
    with pytest.raises(ConfigError, match="min_score applies to single-label"):
        validate_config(raw)
    raw["tasks"]["topics"]["min_score"] = 0.0
    raw["tasks"]["intent"]["min_score"] = 1.5
    with pytest.raises(ConfigError, match="min_score"):
        validate_config(raw)
