"""train -> checkpoint -> resume -> evaluate -> predict, on the tiny random BERT and the toy data sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import validate_config
from polytask.evaluate import evaluate_checkpoint
from polytask.inference import Pipeline
from polytask.model import MultiTaskModel
from polytask.train import train

from conftest import toy_config, write_yaml


def test_training_learns_every_task(trained) -> None:
    _, result = trained
    m = result.validation["tasks"]
    # the toy patterns are trivially learnable; a random model sits at ~0.5 accuracy and ~0 F1 / correlation
    assert m["intent"]["accuracy"] > 0.9
    assert m["slots"]["f1"] > 0.8
    assert m["sentiment"]["accuracy"] > 0.8
    assert m["similarity"]["pearson"] > 0.8
    assert m["topics"]["micro_f1"] > 0.7
    assert result.test is not None and set(result.test["tasks"]) == {"intent", "slots", "sentiment"}
    assert "all_tasks_correct" in result.test["sources"]["snips"]


def test_checkpoint_layout_and_reload(trained) -> None:
    _, result = trained
    best = result.best_dir
    for name in ("config.json", "model.safetensors", "tokenizer.json", "run_config.yaml", "metrics.json"):
        assert (best / name).is_file(), name
    config = json.loads((best / "config.json").read_text())
    assert config["tasks"]["intent"]["state"]["labels"] == ["GetWeather", "PlayMusic"]
    assert config["tasks"]["similarity"]["input"] == {"type": "text", "pair": True}  # it reads text pairs
    model = MultiTaskModel.from_pretrained(best)
    state = load_file(str(best / "model.safetensors"))
    assert set(state) == set(model.state_dict())
    assert not list(best.parent.glob(".best.tmp-*")), "temporary folders must not be left behind"


def test_evaluate_checkpoint_matches_training_report(trained) -> None:
    _, result = trained
    again = evaluate_checkpoint(result.best_dir, "test")
    for task, metrics in result.test["tasks"].items():
        for name, value in metrics.items():
            assert again["tasks"][task][name] == pytest.approx(value, abs=1e-6), (task, name)


def test_pipeline_equals_evaluate_decoding(trained, toy_data: Path) -> None:
    _, result = trained
    pipe = Pipeline.from_pretrained(result.best_dir)
    model = pipe.model
    cfg = validate_config(model.run_config)
    from polytask.data.loading import load_data
    from polytask.evaluate import predict_split

    data = load_data(cfg, model.tokenizer, splits=("test",), tasks=model.tasks)
    split = data.splits["test"]["snips"]
    expected = predict_split(model, split)
    got = pipe([" ".join(e.words) for e in split.examples], tasks=["intent", "slots"])
    for i, out in enumerate(got):
        assert out["intent"] == expected["intent"][i]
        assert out["slots"]["tags"] == expected["slots"][i]["tags"]


def test_pipeline_outputs_every_task_in_one_pass(trained) -> None:
    _, result = trained
    pipe = Pipeline.from_pretrained(result.best_dir)
    calls = []
    hook = pipe.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    text = "what is the weather in  paris today"
    out = pipe([text])[0]
    hook.remove()
    assert len(calls) == 1, "one encoder pass must serve every task"
    assert set(out) == {"intent", "slots", "sentiment", "topics"}  # single-text tasks; similarity reads pairs
    for span in out["slots"]["spans"]:
        assert text[span["start"]:span["end"]] == span["text"]
    pair_out = pipe([("weather in paris", "weather in paris")])[0]
    assert set(pair_out) == {"similarity"} and isinstance(pair_out["similarity"]["value"], float)
    with pytest.raises(KeyError, match="available: intent, slots"):
        pipe(["x"], tasks=["nope"])


def test_resume_continues_exactly(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    """A run interrupted after 6 steps and resumed ends with the same weights as an uninterrupted run."""
    raw = toy_config(toy_data, tiny_encoder, tmp_path / "a", max_steps=12)
    raw |= {"evaluation": {"every_steps": 4}, "weighting": {"name": "uncertainty"},
            "sampler": {"name": "annealed"}}
    straight_cfg = validate_config(raw)
    train(straight_cfg)
    resumed_cfg = straight_cfg.model_copy(deep=True)
    resumed_cfg.train.output_dir = str(tmp_path / "b")
    first = train(resumed_cfg, stop_after=6)
    assert first.steps == 6 and (tmp_path / "b/last/trainer_state.json").is_file()
    train(resumed_cfg, resume=tmp_path / "b/last")
    a = load_file(str(tmp_path / "a/last/model.safetensors"))
    b = load_file(str(tmp_path / "b/last/model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    wa = load_file(str(tmp_path / "a/last/weighting.safetensors"))
    wb = load_file(str(tmp_path / "b/last/weighting.safetensors"))
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=1e-6)


def test_cli_train_evaluate_predict(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    cfg = toy_config(toy_data, tiny_encoder, tmp_path / "out", max_steps=4)
    del cfg["datasets"]["pairs"], cfg["datasets"]["topics"], cfg["tasks"]["similarity"], cfg["tasks"]["topics"]
    path = write_yaml(tmp_path / "c.yaml", cfg)
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(path)])
    assert r.exit_code == 0 and "OK" in r.output
    r = runner.invoke(app, ["train", str(path), "train.lr=1e-3", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "test results" in r.output and "intent" in r.output
    r = runner.invoke(app, ["evaluate", str(tmp_path / "out/best"), "--split", "test",
                            "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "e.json").read_text())["tasks"]["slots"]["examples"] == 40
    r = runner.invoke(app, ["predict", str(tmp_path / "out/best"), "play music by adele now"])
    assert r.exit_code == 0, r.output
    assert '"intent"' in r.output and '"slots"' in r.output
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "token_classification" in r.output and "uncertainty" in r.output
    assert "span_qa" in r.output and "relation_extraction" in r.output and "[E1]" in r.output  # new types, specs
