"""train.compile: the encoder runs through torch.compile (inductor) and the run checkpoints exactly like an eager one;
with a gradient method that needs per-task gradients the config is refused before any weights load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polytask.config import validate_config
from polytask.errors import ConfigError
from polytask.inference import Pipeline
from polytask.train import train

from conftest import toy_config


def sentiment_only(toy_data: Path, encoder: str, out: Path, **train_keys: object) -> dict:
    cfg = toy_config(toy_data, encoder, out, max_steps=4, save_last="never", **train_keys)
    cfg["datasets"] = {"sentiment": cfg["datasets"]["sentiment"]}
    cfg["tasks"] = {"mood": {"type": "classification", "dataset": "sentiment", "label": "label"}}
    return cfg


def test_compile_is_refused_with_per_task_gradient_methods(toy_data: Path, tiny_encoder: str,
                                                           tmp_path: Path) -> None:
    cfg = sentiment_only(toy_data, tiny_encoder, tmp_path / "run", compile=True)
    cfg["gradients"] = "upgrad"
    cfg["train"]["freeze"] = ["nonsense"]  # a second problem: both are reported at once
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert "train.compile: true does not work with gradients 'upgrad'" in message
    assert "train.freeze: unknown entry 'nonsense'" in message
    cfg["gradients"], cfg["train"]["freeze"] = "sum", []
    assert validate_config(cfg).train.compile  # the plain backward compiles


def test_a_compiled_run_trains_and_checkpoints_like_an_eager_one(toy_data: Path, tiny_encoder: str,
                                                                 tmp_path: Path) -> None:
    torch._dynamo.reset()
    eager = train(validate_config(sentiment_only(toy_data, tiny_encoder, tmp_path / "eager")))
    compiled = train(validate_config(sentiment_only(toy_data, tiny_encoder, tmp_path / "compiled", compile=True)))
    torch._dynamo.reset()
    a = load_file(str(eager.best_dir / "model.safetensors"))
    b = load_file(str(compiled.best_dir / "model.safetensors"))
    assert sorted(a) == sorted(b)  # compiled in place: no "_orig_mod." prefix reaches the checkpoint
    assert all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)
    records = [json.loads(line) for line in (compiled.output_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"]["mood"] for r in records if "loss" in r and "mood" in r.get("loss", {})]
    assert losses and all(math.isfinite(x) for x in losses)
    # it trained: the encoder's weights moved from where the eager run's started (both start from the same seed)
    start = load_file(str(Path(tiny_encoder) / "model.safetensors"))
    moved = [k for k in b if k.startswith("encoder.") and k[len("encoder."):] in start
             and not torch.equal(b[k], start[k[len("encoder."):]])]
    assert moved
    pipe = Pipeline.from_pretrained(compiled.best_dir)  # the saved config rebuilds it eagerly: same outputs as eval
    assert set(pipe(["the movie was really great"])[0]) == {"mood"}
