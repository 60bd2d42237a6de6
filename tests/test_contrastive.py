"""train.contrastive: SetFit-style pairs (same class -> 1, other class -> 0), the stage tuning the encoder before the
heads train, its validation, and a resumed run not tuning again."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from polytask.config import validate_config
from polytask.errors import ConfigError
from polytask.model import MultiTaskModel
from polytask.train import train
from polytask.training.contrastive import draw_pairs

from conftest import toy_config

TEXTS = {"pos": ["the movie was really great", "the movie was really wonderful", "the movie was really good"],
         "neg": ["the movie was really awful", "the movie was really terrible", "the movie was really bad"]}


def test_draw_pairs_follow_the_classes() -> None:
    classes = ["a", "a", "a", "b", "b", "c"]
    pairs = draw_pairs(classes, 4, np.random.default_rng(1))
    # per round: one similar pair per row (all rows here have a classmate but 'c') and one dissimilar pair per row
    assert Counter(y for *_, y in pairs) == {1.0: 4 * 5, 0.0: 4 * 6}
    for i, j, y in pairs:
        assert i != j
        assert (classes[i] == classes[j]) == (y == 1.0), (i, j, y)
    assert pairs == draw_pairs(classes, 4, np.random.default_rng(1))  # seeded
    assert pairs != draw_pairs(classes, 4, np.random.default_rng(2))
    # every other row of a class is drawn as a partner, not just one
    assert {j for i, j, y in pairs if i == 0 and y == 1.0} == {1, 2}
    one_class = draw_pairs(["a", "a"], 3, np.random.default_rng(0))  # no dissimilar pairs to draw
    assert sorted(one_class) == [(0, 1, 1.0)] * 3 + [(1, 0, 1.0)] * 3


def sentiment_config(toy_data: Path, encoder: str, out: Path, **contrastive: object) -> dict:
    cfg = toy_config(toy_data, encoder, out, max_steps=1, lr=1e-9, head_lr=1e-9, save_last="end")
    cfg["datasets"] = {"sentiment": cfg["datasets"]["sentiment"]}
    cfg["tasks"] = {"mood": {"type": "classification", "dataset": "sentiment", "label": "label"}}
    cfg["train"]["contrastive"] = {"iterations": 2, "batch_size": 16, "lr": 3e-3, **contrastive}
    return cfg


def separation(model: MultiTaskModel) -> float:
    """Mean cosine similarity of same-class sentence pairs minus that of different-class pairs (pooled vectors)."""
    texts = TEXTS["pos"] + TEXTS["neg"]
    enc = model.tokenizer(texts, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        _, pooled = model.encode(enc["input_ids"], enc["attention_mask"])
    sim = F.cosine_similarity(pooled[:, None], pooled[None], dim=-1)
    same = torch.tensor([[(i < 3) == (j < 3) and i != j for j in range(6)] for i in range(6)])
    other = torch.tensor([[(i < 3) != (j < 3) for j in range(6)] for i in range(6)])
    return float(sim[same].mean() - sim[other].mean())


def test_the_stage_pulls_the_classes_apart(toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    """With the main loop's learning rates at 1e-9, what moves the encoder is the stage: its loss falls and the
    pooled vectors of same-class sentences end closer than those of different classes, which they were not."""
    without = sentiment_config(toy_data, tiny_encoder, tmp_path / "plain")
    del without["train"]["contrastive"]
    plain = train(validate_config(without))
    tuned = train(validate_config(sentiment_config(toy_data, tiny_encoder, tmp_path / "tuned")))
    records = [json.loads(line) for line in (tuned.output_dir / "metrics.jsonl").read_text().splitlines()]
    stage = [r for r in records if r.get("type") == "contrastive"]
    assert len(stage) == 1 and stage[0]["tasks"] == ["mood"]
    assert stage[0]["pairs"] == 2 * 2 * 160 and stage[0]["steps"] == 40  # 640 pairs, 16 a step
    assert stage[0]["loss_last"] < 0.5 * stage[0]["loss_first"], stage[0]
    before = separation(MultiTaskModel.from_pretrained(plain.best_dir))
    after = separation(MultiTaskModel.from_pretrained(tuned.best_dir))
    assert after > before + 0.2, (before, after)
    assert json.loads((tuned.best_dir / "metrics.json").read_text())["train_seconds"] >= stage[0]["seconds"]


def test_a_resumed_run_does_not_tune_again(toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    cfg = sentiment_config(toy_data, tiny_encoder, tmp_path / "run")
    cfg["train"] |= {"max_steps": 4, "save_last": "every_eval"}
    run = validate_config(cfg)
    train(run, stop_after=2)
    train(run, resume=tmp_path / "run" / "last")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("type") == "contrastive" for r in records) == 1


def test_validation_names_the_tasks_it_can_pair(toy_data: Path, tiny_encoder: str, tmp_path: Path) -> None:
    cfg = toy_config(toy_data, tiny_encoder, tmp_path / "out")
    cfg["train"]["contrastive"] = {}
    # default: every single-label classification task (not the multi-label topics, not slots or similarity)
    assert validate_config(cfg).train.contrastive.tasks == ["intent", "sentiment"]  # type: ignore[union-attr]
    cfg["train"]["contrastive"] = {"tasks": ["slots", "topics", "nope"]}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    text = str(err.value)
    assert "'slots' (token_classification) has no one class per row" in text and "allowed: intent, sentiment" in text
    assert "'topics' (classification)" in text and "unknown task 'nope'" in text
    cfg["train"] |= {"contrastive": {"tasks": ["intent"]}, "freeze": ["encoder"]}
    with pytest.raises(ConfigError, match=r"train.freeze: \[encoder\] leaves nothing of it to tune"):
        validate_config(cfg)
    cfg["train"]["freeze"] = []
    cfg["tasks"] = {"slots": cfg["tasks"]["slots"]}
    cfg["datasets"] = {"snips": cfg["datasets"]["snips"]}
    cfg["train"]["contrastive"] = {}
    with pytest.raises(ConfigError, match=r"no task has one class per row .* slots \(token_classification\)"):
        validate_config(cfg)
