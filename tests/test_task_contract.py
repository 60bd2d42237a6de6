"""Contract tests run for EVERY registered task type: labels, targets, head, loss, decoding, metrics, state.

A new task type must add an entry to EXAMPLES (the test fails until it does)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from polytask.data.rows import Row
from polytask.tasks import TASKS, DecodeContext, build_task
from polytask.tasks.base import IGNORE

WORDS = [["play", "adele", "now"], ["weather", "in", "paris"], ["hello"], ["play", "queen"]]
EXAMPLES: dict[str, list[tuple[dict[str, Any], list[Any]]]] = {
    "classification": [
        ({}, ["music", "weather", "other", "music"]),
        ({"multi_label": True}, ["music,chat", "weather", "", '["chat"]']),
    ],
    "regression": [({}, ["1.0", 2.5, "4", "0"])],
    "token_classification": [
        ({}, [["O", "B-artist", "O"], "O O B-city", ["O"], ["O", "B-artist"]]),
    ],
}


def _cases() -> list[tuple[str, dict[str, Any], list[Any]]]:
    return [(name, extra, raws) for name in TASKS.names() for extra, raws in EXAMPLES.get(name, [({}, [])])]


def test_every_registered_type_has_examples() -> None:
    assert set(TASKS.names()) <= set(EXAMPLES), "add contract examples for new task types"


@pytest.mark.parametrize("type_name, extra, raws", _cases())
def test_task_contract(type_name: str, extra: dict[str, Any], raws: list[Any]) -> None:
    cls = TASKS.get(type_name)
    params = cls.Params.model_validate({"type": type_name, "dataset": "d", "label": "y", **extra})
    task = build_task("t", params)
    rows = [Row(values={"y": r}, location=f"f.jsonl:{i + 1}", file="f.jsonl", line=i + 1) for i, r in enumerate(raws)]
    present = [(r, row) for r, row in zip(raws, rows) if not task.is_missing(r)]
    task.fit(present)
    assert task.num_outputs >= 1
    token = task.level == "token"
    extra_args = (lambda i: {"num_words": len(WORDS[i])}) if token else (lambda i: {})
    targets = [None if task.is_missing(r) else task.encode(r, rows[i], **extra_args(i)) for i, r in enumerate(raws)]
    golds = [None if task.is_missing(r) else task.gold(r, rows[i], **extra_args(i)) for i, r in enumerate(raws)]
    num_words = max(len(w) for w in WORDS)
    target = task.collate(targets, num_words)
    assert target.shape[0] == len(raws)

    # head: sequence tasks read [B, H]; token tasks [B, W, H] (the model gathers word rows before the loss)
    hidden = 8
    head = task.build_head(hidden, dropout=0.0)
    features = torch.randn(len(raws), num_words, hidden) if token else torch.randn(len(raws), hidden)
    logits = head(features)
    assert logits.shape[-1] == task.num_outputs
    loss = task.loss(logits, target)
    assert loss is not None and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())

    # a batch where nobody labels the task gives no loss (masked, not invented)
    empty = task.collate([None] * len(raws), num_words)
    assert task.loss(logits.detach(), empty) is None
    if empty.dtype == torch.long:
        assert (empty == IGNORE).all()

    word_index = torch.tensor([[i + 1 if i < len(w) else -1 for i in range(num_words)] for w in WORDS])
    ctx = DecodeContext(words=WORDS, word_index=word_index, texts=[" ".join(w) for w in WORDS])
    preds = task.decode(logits.detach(), ctx)
    assert len(preds) == len(raws) and all(isinstance(p, dict) for p in preds)
    json.dumps(preds)  # predictions are JSON-serialisable (CLI, server)
    pairs = [(p, g) for p, g in zip(preds, golds) if g is not None]
    metrics = task.metrics([p for p, _ in pairs], [g for _, g in pairs])
    assert list(metrics) == cls.metric_names(params)
    assert task.primary_metric in metrics
    assert all(isinstance(task.correct(p, g), bool) for p, g in pairs)

    # state survives the JSON round trip of the checkpoint's config.json
    clone = build_task("t", params)
    clone.load_state(json.loads(json.dumps(task.state())))
    assert clone.state() == task.state()
    assert clone.decode(logits.detach(), ctx) == preds


def test_perfect_predictions_score_perfectly() -> None:
    cls = TASKS.get("token_classification")
    task = build_task("t", cls.Params.model_validate({"type": "token_classification", "dataset": "d", "label": "y"}))
    gold = [["O", "B-artist", "I-artist"], ["B-city"]]
    task.fit([(g, None) for g in gold])  # type: ignore[misc]
    preds = [{"tags": g} for g in gold]
    assert task.metrics(preds, gold)["f1"] == 1.0
    clf = build_task("c", TASKS.get("classification").Params.model_validate(
        {"type": "classification", "dataset": "d", "label": "y"}))
    clf.fit([("a", None), ("b", None)])  # type: ignore[misc]
    m = clf.metrics([{"label": "a"}, {"label": "a"}], ["a", "b"])
    assert m["accuracy"] == 0.5 and m["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_bio_spans_follow_conlleval() -> None:
    from polytask.tasks.token_classification import bio_spans

    assert bio_spans(["B-a", "I-a", "O", "I-b", "I-b", "B-b", "I-a"]) == [
        ("a", 0, 2), ("b", 3, 5), ("b", 5, 6), ("a", 6, 7)]


def test_every_plugin_describes_itself_in_polytask_list() -> None:
    """`polytask list` shows each registered name with the first line of its docstring: none may be blank."""
    from polytask.data.readers import READERS
    from polytask.sampling import SAMPLERS
    from polytask.tasks import TASKS
    from polytask.weighting import WEIGHTINGS

    for registry in (TASKS, SAMPLERS, WEIGHTINGS, READERS):
        for name, item in registry.items():
            first = ((item.__doc__ or "").strip().splitlines() or [""])[0]
            assert len(first) > 15, f"{name}: no one-line description in its docstring"
