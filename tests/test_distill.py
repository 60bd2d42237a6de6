"""Distillation with teacher annealing (BAM!): the loss mix at the start, middle and end of training, teachers
labelling the rows once (cached as safetensors), a student trained from single-task teachers, and named errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from polytask.cli import app
from polytask.sampling import Progress
from polytask.tasks import TASKS
from polytask.tasks.base import BatchShape

from conftest import write_yaml
from test_compare import two_task_config


def task(type_name: str, **params):
    cls = TASKS.get(type_name)
    return cls("t", cls.Params.model_validate({"type": type_name, "dataset": "d", "label": "y", **params}))


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0])
def test_classification_loss_mixes_teacher_and_gold(weight: float) -> None:
    clf = task("classification")
    clf._set_labels(["a", "b", "c"])
    teacher = [0.7, 0.2, 0.1]
    fields = [{"target": 1, "soft": teacher}, {"target": 2, "soft": teacher}]
    targets = clf.collate(fields, BatchShape(2, 4)).targets
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    got = clf.loss(logits, {**targets, "teacher_weight": torch.tensor(weight)})
    gold = F.one_hot(torch.tensor([1, 2]), 3).float()
    mixed = weight * torch.tensor([teacher, teacher]) + (1 - weight) * gold
    want = -(mixed * F.log_softmax(logits, -1)).sum(-1).mean()
    torch.testing.assert_close(got, want)
    if weight == 0.0:  # the end of training: exactly the plain gold loss
        torch.testing.assert_close(got, clf.loss(logits, targets))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_multi_label_loss_reduction_by_hand_with_and_without_a_teacher(reduction: str) -> None:
    """sum: BCE summed over a row's labels, averaged over rows (the default); mean: averaged over rows and labels.
    The teacher-mixed loss reduces the same way, and at weight 0 equals the gold loss."""
    clf = task("classification", multi_label=True, multi_label_loss=reduction)
    clf._set_labels(["a", "b", "c", "d"])
    logits = torch.tensor([[2.0, -1.0, 0.0, -3.0], [0.5, 1.5, -2.0, 0.0]])
    gold = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    p = torch.sigmoid(logits)
    per_label = -(gold * p.log() + (1 - gold) * (1 - p).log())
    want = per_label.sum(1).mean() if reduction == "sum" else per_label.mean()
    targets = {"target": gold}
    torch.testing.assert_close(clf.loss(logits, targets), want)
    soft = torch.full_like(gold, 0.5)
    mixed = clf.loss(logits, {**targets, "soft": soft, "teacher_weight": torch.tensor(0.0)})
    torch.testing.assert_close(mixed, want)
    half = clf.loss(logits, {**targets, "soft": soft, "teacher_weight": torch.tensor(1.0)})
    at_half = -(0.5 * p.log() + 0.5 * (1 - p).log())
    torch.testing.assert_close(half, at_half.sum(1).mean() if reduction == "sum" else at_half.mean())


@pytest.mark.parametrize("weight", [1.0, 0.5, 0.0])
def test_regression_and_tagging_losses_mix(weight: float) -> None:
    reg = task("regression")
    reg.mean, reg.std = 2.0, 0.5
    fields = [{"target": 1.0, "soft": 3.0}, {"target": -1.0, "soft": 1.0}]  # soft on the label scale
    targets = reg.collate(fields, BatchShape(2, 4)).targets
    values = torch.tensor([[0.5], [0.0]])
    got = reg.loss(values, {**targets, "teacher_weight": torch.tensor(weight)})
    teacher = torch.tensor([(3.0 - 2.0) / 0.5, (1.0 - 2.0) / 0.5])
    want = F.mse_loss(values[:, 0], weight * teacher + (1 - weight) * torch.tensor([1.0, -1.0]))
    torch.testing.assert_close(got, want)
    tagger = task("token_classification")
    tagger._set_labels(["O", "B-x", "I-x"])
    soft = [[0.1, 0.8, 0.1], [0.6, 0.2, 0.2]]
    targets = tagger.collate([{"target": [1, -100], "soft": soft}], BatchShape(1, 4, 2)).targets
    logits = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]])
    got = tagger.loss(logits, {**targets, "teacher_weight": torch.tensor(weight)})
    first = weight * torch.tensor(soft[0]) + (1 - weight) * F.one_hot(torch.tensor(1), 3).float()
    torch.testing.assert_close(got, -(first * F.log_softmax(logits[0, 0], -1)).sum())  # word 2 is IGNORE


@pytest.fixture(scope="module")
def teachers(tiny_encoder: str, toy_data: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("distill")
    path = write_yaml(root / "two.yaml", two_task_config(toy_data, tiny_encoder, root / "out", max_steps=40))
    r = CliRunner().invoke(app, ["baseline", str(path), "train.lr=3e-3", "--seeds", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    single = root / "out" / "compare" / "single"
    return root, [single / "intent" / "seed-1" / "best", single / "sentiment" / "seed-1" / "best"]


def test_student_learns_from_teachers_and_their_outputs_are_computed_once(teachers, tiny_encoder: str,
                                                                         toy_data: Path) -> None:
    root, dirs = teachers
    cfg = two_task_config(toy_data, tiny_encoder, root / "student", max_steps=40, lr=3e-3)
    path = write_yaml(root / "student.yaml", cfg)
    args = ["distill", str(path), *[a for d in dirs for a in ("--teachers", str(d))], "--no-progress"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    files = sorted((root / "student" / "teachers").glob("*.safetensors"))
    assert [f.stem for f in files] == ["intent", "sentiment"]
    stamps = [f.stat().st_mtime_ns for f in files]
    r = CliRunner().invoke(app, args)  # again: the teachers' outputs are reused, not recomputed
    assert r.exit_code == 0, r.output
    assert [f.stat().st_mtime_ns for f in files] == stamps
    metrics = json.loads((root / "student" / "best" / "metrics.json").read_text())
    teacher = json.loads((dirs[0] / "metrics.json").read_text())
    assert teacher["test"]["tasks"]["intent"]["accuracy"] > 0.9  # the teacher knows the task ...
    assert metrics["test"]["tasks"]["intent"]["accuracy"] > 0.9  # ... and so does the student


def test_teacher_weight_goes_from_one_to_zero(teachers, tiny_encoder: str, toy_data: Path) -> None:
    from polytask.config import validate_config
    from polytask.train import _distillation

    root, dirs = teachers
    cfg = validate_config({**two_task_config(toy_data, tiny_encoder, root / "w"),
                           "distillation": {"teachers": [str(d) for d in dirs]}})
    from polytask.data.loading import load_data
    from polytask.encoder import load_encoder
    from polytask.training.distributed import make_accelerator

    data = load_data(cfg, load_encoder(tiny_encoder)[1])
    weight = _distillation(cfg, data, root / "w", make_accelerator("fp32"))
    at = [weight(Progress(step, 11, step / 11, 1.0)) for step in (0, 5, 10)]  # the first, middle, last of 11 steps
    assert at == pytest.approx([1.0, 0.5, 0.0])
    labelled = [f for split in data.splits["train"].values() if "intent" in split.fields
                for f in split.fields["intent"]]
    assert labelled and all("soft" in f for f in labelled)


def test_teacher_errors_are_named(teachers, tiny_encoder: str, toy_data: Path) -> None:
    root, dirs = teachers
    cfg = two_task_config(toy_data, tiny_encoder, root / "bad", max_steps=2)
    path = write_yaml(root / "bad.yaml", cfg)
    r = CliRunner().invoke(app, ["distill", str(path), "--teachers", str(root / "nope")])
    assert r.exit_code == 2 and "distillation.teachers: not a polytask checkpoint folder" in r.output
    cfg["tasks"]["sentiment"]["labels"] = ["pos", "neg"]  # the student orders its labels differently
    path = write_yaml(root / "bad2.yaml", cfg)
    r = CliRunner().invoke(app, ["distill", str(path), "--teachers", str(dirs[1]), "--no-progress"])
    assert r.exit_code == 2 and "the teacher's labels ['neg', 'pos'] differ from the student's" in r.output
