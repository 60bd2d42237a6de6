"""Per-task fine-tuning after joint training: heads scope gives ONE model whose outputs equal each task's run,
full scope one model per task, and `compare` shows joint, joint + fine-tuned and single-task side by side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from polytask.cli import app
from polytask.inference import Pipeline

from conftest import write_yaml
from test_compare import row_of, two_task_config

TEXTS = ["what is the weather in oslo today", "play music by sting drake now", "the movie was really lovely"]


@pytest.fixture(scope="module")
def joint(tiny_encoder: str, toy_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ft")
    path = write_yaml(root / "two.yaml", two_task_config(toy_data, tiny_encoder, root / "out", max_steps=6))
    r = CliRunner().invoke(app, ["baseline", str(path), "train.lr=1e-3", "--seeds", "1,2", "--no-progress"])
    assert r.exit_code == 0, r.output
    return root / "out"


def test_heads_scope_gives_one_model_equal_to_each_task_run(joint: Path) -> None:
    ckpt = joint / "compare" / "multi" / "seed-1" / "best"
    r = CliRunner().invoke(app, ["finetune", str(ckpt), "--epochs", "2", "--lr", "1e-3", "--no-progress"])
    assert r.exit_code == 0, r.output
    out = ckpt.parent / "finetuned-heads"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == {"intent", "sentiment"} and summary["scope"] == "heads"
    combined = Pipeline.from_pretrained(out / "combined")
    for task in ("intent", "sentiment"):
        alone = Pipeline.from_pretrained(out / task / "best")
        assert [p[task] for p in combined(TEXTS, tasks=[task])] == [p[task] for p in alone(TEXTS, tasks=[task])]
        assert summary["tasks"][task]["stored_bytes"] < 10_000  # only the head: the encoder is the joint one
    joint_w, combined_w = load_file(str(ckpt / "model.safetensors")), load_file(str(out / "combined" /
                                                                                   "model.safetensors"))
    assert all(torch.equal(joint_w[k], combined_w[k]) for k in joint_w if k.startswith("encoder."))
    assert any(not torch.equal(joint_w[k], combined_w[k]) for k in joint_w if k.startswith("heads."))


def test_full_scope_and_compare_columns(joint: Path) -> None:
    r = CliRunner().invoke(app, ["finetune", str(joint), "--scope", "full", "--tasks", "intent", "--epochs", "1",
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    for seed in (1, 2):
        out = joint / "compare" / "multi" / f"seed-{seed}" / "finetuned-full"
        summary = json.loads((out / "summary.json").read_text())
        assert list(summary["tasks"]) == ["intent"] and (out / "intent" / "best" / "model.safetensors").is_file()
        assert summary["tasks"]["intent"]["stored_bytes"] > 100_000  # a whole encoder per task
        assert "combined" not in summary
    r = CliRunner().invoke(app, ["compare", str(joint)])
    assert r.exit_code == 0, r.output
    assert "multi + ft" in r.output and "(full)" in r.output  # (the header may wrap in a narrow table)
    row = row_of(r.output, "intent")
    assert row.count("±") >= 5  # multi, single, delta, multi + ft, delta ft: two seeds each


def test_unknown_task_and_scope_are_named(joint: Path) -> None:
    ckpt = str(joint / "compare" / "multi" / "seed-1" / "best")
    r = CliRunner().invoke(app, ["finetune", ckpt, "--tasks", "nope"])
    assert r.exit_code == 2 and "--tasks: nope not in the checkpoint's run config" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["finetune", ckpt, "--scope", "layers"])
    assert r.exit_code == 2 and "unknown --scope 'layers'" in r.output
