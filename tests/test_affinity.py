"""Inter-task affinity (TAG) on a toy trio with a known relation: a task, an exact copy of it, and a task of random
labels. A step for the task helps its copy far more than the noise task (and the copy helps it more than the noise
task does), the suggested 2-group split puts the noise task apart, and measuring leaves the training unchanged.
(An *inverted* copy would not do as the conflicting task: with its own head it needs the same encoder features.)"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import validate_config
from polytask.recipes.affinity import partitions, read_affinity, suggest_groups
from polytask.train import train

from conftest import BAD, GOOD


def trio(folder: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["sentence,label,same,noise"]
    for _ in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(GOOD if positive else BAD)
        a = "pos" if positive else "neg"
        lines.append(f"the movie was really {word},{a},{a},{rng.choice(['pos', 'neg'])}")
    path = folder / f"trio-{seed}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config(folder: Path, encoder: str, out: Path, **train_keys) -> dict:
    return {"encoder": {"name": encoder, "max_length": 32},
            "datasets": {"d": {"format": "csv", "train": str(trio(folder, 160, 1)), "text": "sentence",
                               "validation": str(trio(folder, 40, 2))}},
            "tasks": {t: {"type": "classification", "dataset": "d", "label": t} for t in ("label", "same",
                                                                                        "noise")},
            "train": {"output_dir": str(out), "lr": 3e-3, "batch_size": 16, "max_steps": 30, "seed": 3,
                      "progress_bar": False, **train_keys}}


def test_affinity_finds_the_copy_and_the_opposite(tiny_encoder: str, tmp_path: Path) -> None:
    train(validate_config(config(tmp_path, tiny_encoder, tmp_path / "run", affinity_every=3)))
    found = read_affinity(tmp_path / "run")
    tasks, z = found["tasks"], found["matrix"]
    assert found["measurements"] == 9 and found["seconds"] > 0  # steps 3, 6, ..., 27 (step 0: lr 0 in warm-up)
    i = tasks.index
    assert z[i("label")][i("same")] > 2 * max(z[i("label")][i("noise")], 0)
    assert z[i("same")][i("label")] > 2 * max(z[i("noise")][i("label")], 0)
    best = {s["groups"]: s["partition"] for s in suggest_groups(tasks, z, 3)}
    assert sorted(map(sorted, best[2])) == [["label", "same"], ["noise"]]
    r = CliRunner().invoke(app, ["affinity", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert "label+same | noise" in r.output or "noise | label+same" in r.output
    assert "only 9 measurements" in r.output  # fewer than 10: the CLI says the mean is noisy
    assert (tmp_path / "run" / "report" / "affinity.png").is_file()


def test_measuring_does_not_change_the_training(tiny_encoder: str, tmp_path: Path) -> None:
    a = train(validate_config(config(tmp_path, tiny_encoder, tmp_path / "a", max_steps=8, affinity_every=2)))
    b = train(validate_config(config(tmp_path, tiny_encoder, tmp_path / "b", max_steps=8)))
    wa, wb = load_file(str(a.output_dir / "last/model.safetensors")), load_file(str(b.output_dir /
                                                                                   "last/model.safetensors"))
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.parametrize("n, k, count", [(3, 2, 3), (4, 2, 7), (7, 3, 301), (7, 1, 1)])
def test_partitions_are_all_enumerated(n: int, k: int, count: int) -> None:
    items = [str(i) for i in range(n)]
    found = list(partitions(items, k))
    assert len(found) == count  # Stirling numbers of the second kind S(n, k)
    assert all(sorted(x for g in p for x in g) == items and len(p) == k for p in found)
