"""The task type written in docs/python-api.md ("Writing a task type") is real code: it is executed here and run
through the same contract test as every built-in type, and learns its toy task in a short training run."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from polytask.config import validate_config
from polytask.tasks import TASKS
from polytask.train import train

from conftest import CITIES, FILLER
import test_task_contract as contract

DOCS = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def _example_code() -> str:
    section = DOCS.read_text(encoding="utf-8").split("## Writing a task type", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _rows(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            words = [rng.choice(FILLER) for _ in range(rng.randint(2, 6))]
            at = rng.randrange(len(words) + 1)
            words.insert(at, rng.choice(CITIES))
            f.write(json.dumps({"text": " ".join(words), "word": at}) + "\n")


@pytest.fixture()
def word_pick():
    exec(compile(_example_code(), str(DOCS), "exec"), {"__name__": "docs_example"})
    try:
        yield TASKS.get("word_pick")
    finally:
        TASKS._items.pop("word_pick", None)  # keep the registry as the other tests expect it


def _case(folder: Path) -> tuple[dict, dict]:
    for split, n, seed in (("train", 160, 1), ("dev", 40, 2)):
        _rows(folder / f"{split}.jsonl", n, seed)
    return ({"format": "jsonl", "train": str(folder / "train.jsonl"), "validation": str(folder / "dev.jsonl")},
            {"label": "word"})


def test_docs_task_type_passes_the_contract(word_pick, tiny_encoder: str, tmp_path: Path) -> None:
    contract.test_task_contract("word_pick", ("docs example", _case), tiny_encoder, tmp_path)


def test_docs_task_type_learns(word_pick, tiny_encoder: str, tmp_path: Path) -> None:
    dataset, params = _case(tmp_path)
    cfg = validate_config({"encoder": {"name": tiny_encoder, "max_length": 32}, "datasets": {"d": dataset},
                           "tasks": {"city": {"type": "word_pick", "dataset": "d", **params}},
                           "train": {"output_dir": str(tmp_path / "run"), "lr": 3e-3, "batch_size": 16, "epochs": 4,
                                     "seed": 7, "progress_bar": False}})
    result = train(cfg)
    assert result.validation["tasks"]["city"]["accuracy"] > 0.9  # chance ~1/5
