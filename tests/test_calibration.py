"""Temperature scaling and ECE: the fit recovers a known temperature, ECE by hand, and the calibration capability
run for every registered task type (the labelled logits are the loss's entries; a temperature changes scores, never
decisions; it survives a checkpoint round trip; Pipeline equals evaluation decoding; the min_score gate)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from polytask.calibrate import _with_min_score, min_score_for_coverage
from polytask.calibration import (LogitStore, calibration_metrics, confidences, expected_calibration_error,
                                  fit_task, fit_temperature, nll)
from polytask.config import validate_config
from polytask.data.batching import collate
from polytask.data.loading import build_tasks, load_data
from polytask.encoder import add_special_tokens, load_encoder
from polytask.errors import PolytaskError
from polytask.evaluate import predict_split
from polytask.inference import Pipeline
from polytask.model import MultiTaskModel
from polytask.tasks import TASKS
from polytask.train import build_model

from test_task_contract import CASES, Case, item_of


def _synthetic(kind: str, t_true: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits z * t_true with labels drawn from softmax(z) (sigmoid(z)): softmax(logits / t_true) is calibrated."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=(n, 4))
    if kind == "sigmoid":
        return z * t_true, (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(np.float32)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) < rng.random((n, 1))).sum(1)  # inverse-CDF draw of one class per row
    return z * t_true, labels


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
@pytest.mark.parametrize("t_true", [0.4, 1.0, 3.0])
def test_fit_recovers_a_known_temperature(kind: str, t_true: float) -> None:
    logits, labels = _synthetic(kind, t_true, 20000, seed=int(t_true * 10))
    fitted = fit_temperature(logits, labels, kind)
    assert fitted == pytest.approx(t_true, rel=0.05)
    # it is the minimum of the NLL: a little to either side is worse
    assert nll(logits, labels, kind, fitted) < min(nll(logits, labels, kind, fitted * 1.1),
                                                   nll(logits, labels, kind, fitted / 1.1))
    # and scaling by it makes the scores calibrated: ECE well below the uncalibrated one when T is far from 1
    if t_true != 1.0:
        before = expected_calibration_error(*confidences(logits, labels, kind))
        after = expected_calibration_error(*confidences(logits, labels, kind, fitted))
        assert after < 0.02 < before


def test_fit_without_entries_or_optimum_keeps_one() -> None:
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int), "softmax") == 1.0
    # perfectly separated entries: the NLL falls all the way to the search's lower end; fit_task keeps T = 1
    logits, labels = np.array([[4.0, 0.0], [0.0, 3.0], [5.0, 1.0]]), np.array([0, 1, 0])
    assert fit_temperature(logits, labels, "softmax") < 0.0101
    task = TASKS.get("classification")("c", TASKS.get("classification").Params.model_validate(
        {"type": "classification", "dataset": "d", "label": "y", "labels": ["a", "b"]}))
    assert fit_task(task, {"label": (logits, labels)}) == {"label": 1.0} and task.temperatures == {"label": 1.0}
    # one mistake gives the likelihood an optimum again
    labels_with_error = np.array([0, 1, 1])
    assert fit_task(task, {"label": (logits, labels_with_error)})["label"] > 0.0101


def test_ece_by_hand() -> None:
    # bins of width 1/15: 0.95 -> bin 14, 0.62 -> bin 9, 0.25 -> bin 3
    confidence = np.array([0.95, 0.95, 0.62, 0.62, 0.25])
    correct = np.array([True, False, True, True, False])
    expected = 2 / 5 * abs(0.5 - 0.95) + 2 / 5 * abs(1.0 - 0.62) + 1 / 5 * abs(0.0 - 0.25)
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected)  # 0.382
    assert expected_calibration_error(np.array([0.7, 0.7]), np.array([True, False])) == pytest.approx(0.2)
    assert expected_calibration_error(np.zeros(0), np.zeros(0, dtype=bool)) == 0.0


def test_confidences_by_hand() -> None:
    # softmax: top-label probability, right when the top label is the gold one
    conf, right = confidences(np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 0]), "softmax")
    assert conf == pytest.approx([1 / (1 + math.exp(-2)), 1 / (1 + math.exp(-1))]) and right.tolist() == [True, False]
    conf, _ = confidences(np.array([[2.0, 0.0]]), np.array([0]), "softmax", temperature=2.0)
    assert conf == pytest.approx([1 / (1 + math.exp(-1))])
    # sigmoid: every (row, label) a yes/no: confidence max(p, 1 - p), right when p > 0.5 matches the gold
    conf, right = confidences(np.array([[3.0, -1.0]]), np.array([[1.0, 1.0]]), "sigmoid")
    assert conf == pytest.approx([1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-1))]) and right.tolist() == [True, False]


def _model_and_validation(type_name: str, case: Case, encoder_path: str, tmp_path: Path):
    dataset, params = case(tmp_path)
    cfg = validate_config({"encoder": {"name": encoder_path, "max_length": 32}, "datasets": {"d": dataset},
                           "tasks": {"t": {"type": type_name, "dataset": "d", **params}},
                           "train": {"output_dir": str(tmp_path / "run")}})
    tasks = build_tasks(cfg)
    encoder, tokenizer = load_encoder(encoder_path)
    add_special_tokens(tokenizer, encoder, tasks["t"].input.special_tokens())
    data = load_data(cfg, tokenizer, splits=("train", "validation"), tasks=tasks, fit=True)
    return build_model(cfg, data, encoder, tokenizer).eval(), data.splits["validation"]["d"]


@pytest.mark.parametrize("type_name, case", [(t, c) for t in sorted(CASES) for c in CASES[t]],
                         ids=[f"{t}:{c[0]}" for t in sorted(CASES) for c in CASES[t]])
def test_calibration_capability(type_name: str, case: tuple[str, Case], tiny_encoder: str, tmp_path: Path) -> None:
    import torch

    torch.manual_seed(0)
    model, val = _model_and_validation(type_name, case[1], tiny_encoder, tmp_path)
    task, golds = model.tasks["t"], val.golds["t"]
    heads = task.calibration_heads()
    store = LogitStore()
    raw = predict_split(model, val, store=store)["t"]
    arrays = store.arrays().get("t", {})
    if not heads:  # not calibrated (regression, span_qa): nothing collected, no threshold
        assert arrays == {} and task.gate(raw[0]) is None
        return
    assert set(arrays) == set(heads) and all(len(y) and z.ndim == 2 for z, y in arrays.values())

    # the entries are what the loss trains on: at T = 1 the loss is the sum of their mean NLLs (a multi-label head
    # with multi_label_loss: sum adds its labels' NLLs per row: the mean over entries times the number of labels)
    batch = collate(val, list(range(len(val.features))), model.tasks, model.tokenizer.pad_token_id)
    with torch.no_grad():
        loss = task.loss(model(batch.inputs, batch.task_inputs, ["t"])["t"], batch.targets["t"])
    per_row = getattr(task.params, "multi_label_loss", "mean") == "sum"
    want = sum(nll(z, y, heads[h]) * (z.shape[1] if per_row and heads[h] == "sigmoid" else 1)
               for h, (z, y) in arrays.items())
    assert float(loss) == pytest.approx(want, rel=1e-4)

    # a temperature changes the scores, never the decisions
    task.temperatures = {head: 2.5 for head in heads}
    scaled = predict_split(model, val)["t"]
    assert scaled != raw and task.metrics(scaled, golds) == task.metrics(raw, golds)
    metrics = calibration_metrics(task, arrays)
    assert all(0 <= v <= 1 for k, v in metrics.items() if k.startswith("ece"))
    assert sorted(v for k, v in metrics.items() if k.startswith("temperature")) == [2.5] * len(heads)

    # checkpoint round trip: temperatures in config.json's task state, the same predictions after loading
    folder = model.save_pretrained(tmp_path / "ckpt")
    state = json.loads((folder / "config.json").read_text())["tasks"]["t"]["state"]
    assert state["temperature"] == {head: 2.5 for head in heads}
    loaded = MultiTaskModel.from_pretrained(folder)
    assert loaded.tasks["t"].temperatures == task.temperatures
    assert predict_split(loaded, val)["t"] == scaled
    items = [item_of(e, task.input.kind) for e in val.examples]
    assert [p["t"] for p in Pipeline(loaded)(items, tasks=["t"])] == scaled  # min_score off: nothing gated

    # min_score: the Pipeline gives the gated predictions; evaluation scores the raw ones
    gated_task = loaded.tasks["t"]
    try:
        _, share = min_score_for_coverage(gated_task, scaled, 0.5)
        assert share >= 0.5
    except PolytaskError as exc:
        if "multi-label" in str(exc):  # multi-label tasks threshold with `threshold`, not min_score
            with pytest.raises(PolytaskError, match="multi-label"):
                _with_min_score(gated_task, 0.5)
            return
        assert "no predicted answers" in str(exc)  # a random head predicted no span / relation: fix a threshold
        gated_task.params = _with_min_score(gated_task, 0.5)
    assert gated_task.params.min_score > 0
    expected = [gated_task.gate(p).prediction for p in scaled]
    got = [p["t"] for p in Pipeline(loaded)(items, tasks=["t"])]
    assert got == expected and got != scaled
    json.dumps(got)
