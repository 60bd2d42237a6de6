"""Starting from a trained model: init_from, freeze (frozen weights unchanged to the bit), add-task (the other tasks'
outputs unchanged to the bit), task embeddings keyed by name, few-shot sampling, small-data controls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import validate_config
from polytask.errors import ConfigError
from polytask.inference import Pipeline
from polytask.model import MultiTaskModel
from polytask.train import train

from conftest import make_sentiment_csv, toy_config, write_yaml

TEXTS = ["what is the weather in paris today", "play music by adele queen now", "the movie was really awful"]


def sentiment_only(toy_data: Path, encoder: str, out: Path, **train_keys: Any) -> dict[str, Any]:
    cfg = toy_config(toy_data, encoder, out, **train_keys)
    cfg["datasets"] = {"sentiment": cfg["datasets"]["sentiment"]}
    cfg["tasks"] = {"mood": {"type": "classification", "dataset": "sentiment", "label": "label"}}
    return cfg


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_init_from_and_freeze(trained, toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    """The run starts from the checkpoint's encoder and the heads of the tasks it shares; what is frozen stays
    the same to the bit, what is not moves."""
    ckpt = trained[1].best_dir
    cfg = toy_config(toy_data, tiny_encoder, tmp_path / "run", max_steps=5)
    cfg["datasets"] = {"snips": cfg["datasets"]["snips"]}
    cfg["tasks"] = {n: cfg["tasks"][n] for n in ("intent", "slots")}
    cfg["train"] |= {"init_from": str(ckpt), "freeze": ["embeddings", "layers:0", "heads.intent"], "lr": 1e-2}
    result = train(validate_config(cfg))
    before, after = weights(ckpt), weights(result.output_dir / "last")
    frozen = [k for k in after if k.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.", "heads.intent."))]
    moved = [k for k in after if k.startswith(("encoder.encoder.layer.1.", "heads.slots."))]
    assert frozen and moved
    for key in frozen:
        assert torch.equal(before[key], after[key]), key
    assert any(not torch.equal(before[k], after[k]) for k in moved)
    model = MultiTaskModel.from_pretrained(result.best_dir)
    assert set(model.tasks) == {"intent", "slots"}  # without carry_tasks only the config's tasks
    original = MultiTaskModel.from_pretrained(ckpt)
    assert model.tasks["slots"].labels == original.tasks["slots"].labels  # label space kept, not refitted


def test_add_task_keeps_every_other_output_to_the_bit(trained, toy_data: Path, tiny_encoder: str,
                                                      tmp_path: Path) -> None:
    ckpt = trained[1].best_dir
    cfg = sentiment_only(toy_data, tiny_encoder, tmp_path / "added", lr=1e-2)
    cfg["datasets"]["sentiment"]["sample"] = {"per_class": 8, "seed": 3}
    path = write_yaml(tmp_path / "new.yaml", cfg)
    r = CliRunner().invoke(app, ["add-task", str(ckpt), str(path), "--no-progress"])
    assert r.exit_code == 0, r.output
    old, new = Pipeline.from_pretrained(ckpt), Pipeline.from_pretrained(tmp_path / "added" / "best")
    assert set(new.tasks) == set(old.tasks) | {"mood"}
    before, after = old(TEXTS), new(TEXTS)
    for b, a in zip(before, after):
        assert {k: v for k, v in a.items() if k != "mood"} == b  # every old task's output, exactly
    result = json.loads((tmp_path / "added" / "best" / "metrics.json").read_text())
    assert result["validation"]["tasks"]["mood"]["accuracy"] > 0.75  # 16 training rows; chance 0.5
    frozen = weights(ckpt)
    grown = weights(tmp_path / "added" / "best")
    assert all(torch.equal(frozen[k], grown[k]) for k in frozen)


def test_task_embeddings_are_keyed_by_name(toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    cfg = toy_config(toy_data, tiny_encoder, tmp_path / "a", max_steps=4)
    cfg["encoder"]["task_embedding"] = True
    first = train(validate_config(cfg))
    base = weights(first.best_dir)
    assert {k for k in base if k.startswith("task_embedding.")} == {
        f"task_embedding.{t}" for t in ("intent", "slots", "sentiment", "similarity", "topics")}
    added = sentiment_only(toy_data, tiny_encoder, tmp_path / "b", max_steps=3)
    added["encoder"]["task_embedding"] = True
    added["train"] |= {"init_from": str(first.best_dir), "carry_tasks": True, "freeze": ["encoder", "task_embedding"]}
    second = weights(train(validate_config(added)).best_dir)
    for key, value in base.items():
        if key.startswith("task_embedding."):
            assert torch.equal(second[key], value), key
    assert torch.equal(second["task_embedding.mood"], torch.zeros_like(second["task_embedding.mood"]))


def test_checkpoints_with_positional_task_embeddings_still_load(toy_data: Path, tiny_encoder: str,
                                                                tmp_path: Path) -> None:
    cfg = toy_config(toy_data, tiny_encoder, tmp_path / "a", max_steps=2)
    cfg["encoder"]["task_embedding"] = True
    best = train(validate_config(cfg)).best_dir
    state = weights(best)
    names = ["intent", "slots", "sentiment", "similarity", "topics"]
    rows = torch.stack([state.pop(f"task_embedding.{n}") for n in names])
    save_file({**state, "task_embedding.weight": rows}, str(best / "model.safetensors"))  # the earlier layout
    model = MultiTaskModel.from_pretrained(best)
    for i, name in enumerate(names):
        assert torch.equal(model.task_embedding[name].detach(), rows[i])


def test_sample_per_class_is_seeded_and_stratified(tmp_path: Path) -> None:
    from polytask.data.dataset import read_source_split

    make_sentiment_csv(tmp_path / "s.csv", 200, 1)
    cfg = validate_config({"datasets": {"d": {"format": "csv", "train": str(tmp_path / "s.csv"), "text": "sentence",
                                              "sample": {"per_class": 5, "seed": 1}}},
                           "tasks": {"t": {"type": "classification", "dataset": "d", "label": "label"}}})
    rows = read_source_split(cfg.datasets["d"], "train", 0)
    labels = [r.values["label"] for r in rows]
    assert sorted(labels) == ["neg"] * 5 + ["pos"] * 5
    assert [r.line for r in rows] == [r.line for r in read_source_split(cfg.datasets["d"], "train", 0)]
    other = cfg.model_copy(deep=True)
    other.datasets["d"].sample.seed = 2  # type: ignore[union-attr]
    assert [r.line for r in read_source_split(other.datasets["d"], "train", 0)] != [r.line for r in rows]


@pytest.mark.parametrize("change, message", [
    ({"carry_tasks": True}, "train.carry_tasks: needs train.init_from"),
    ({"freeze": ["decoder"]}, "train.freeze: unknown entry 'decoder'"),
    ({"init_from": "/nonexistent/ckpt"}, "train.init_from: not a polytask checkpoint folder"),
])
def test_bad_start_settings_are_named(change: dict, message: str, toy_data: Path, tiny_encoder: str,
                                      tmp_path: Path) -> None:
    cfg = sentiment_only(toy_data, tiny_encoder, tmp_path)
    cfg["train"] |= change
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


@pytest.mark.parametrize("save_last", ["end", "never"])
def test_save_last_and_min_steps(save_last: str, toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    cfg = sentiment_only(toy_data, tiny_encoder, tmp_path / "run", epochs=0.01, min_steps=7, save_last=save_last)
    cfg["evaluation"] = {"every_steps": 2}
    result = train(validate_config(cfg))
    assert result.steps == 7  # 0.01 epochs would be 1 step
    assert (tmp_path / "run" / "last").is_dir() == (save_last == "end")
