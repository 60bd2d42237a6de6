"""The packaged all-MiniLM-L6-v2 on real SNIPS (intent + slots from the same rows, one encoder pass).

Marked `real`: runs in CI (make test) and skips only when the model package or ../shared/data is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from polytask.config import validate_config
from polytask.train import train

from conftest import minilm_or_skip, shared_data_or_skip

pytestmark = pytest.mark.real


def test_minilm_learns_snips_intent_and_slots(tmp_path: Path) -> None:
    minilm_or_skip()
    snips = shared_data_or_skip("snips")
    cfg = validate_config({
        "encoder": {"name": "minilm", "max_length": 48},
        "datasets": {"snips": {"format": "jointbert", "train": str(snips / "train"),
                               "validation": str(snips / "dev"), "test": str(snips / "test"),
                               "text": "tokens", "max_rows": {"train": 2000}}},
        "tasks": {"intent": {"type": "classification", "dataset": "snips", "label": "intent"},
                  "slots": {"type": "token_classification", "dataset": "snips", "label": "tags"}},
        "train": {"output_dir": str(tmp_path / "run"), "lr": 2e-4, "head_lr": 2e-3, "batch_size": 16,
                  "epochs": 3, "precision": "bf16", "progress_bar": False, "seed": 1},
        "evaluation": {"every_steps": 125},
    })
    result = train(cfg)
    test = result.test["tasks"]
    # chance: 1/7 intent accuracy, ~0 slot F1. 2000 training rows, a few minutes on 2 CPU cores.
    assert test["intent"]["examples"] == 700
    assert test["intent"]["accuracy"] >= 0.93, test
    assert test["slots"]["f1"] >= 0.80, test
    print("SNIPS test (2000 train rows):", test["intent"]["accuracy"], test["slots"]["f1"],
          result.test["sources"]["snips"]["all_tasks_correct"], f"{result.seconds:.0f}s")


@pytest.mark.parametrize("config", ["examples/mixed.yaml", "benchmarks/mtl_vs_single.yaml"])
def test_shipped_configs_validate_against_shared_data(config: str) -> None:
    """The example and benchmark configs point at ../shared/data: every file must resolve."""
    from polytask.config import load_config

    shared_data_or_skip("snips")
    path = Path(__file__).resolve().parents[1] / config
    cfg = load_config(path)  # raises ConfigError listing every problem (missing file, column, ...)
    assert len(cfg.tasks) >= 4


def test_qa_relations_example_validates_against_shared_data(tmp_path: Path) -> None:
    """examples/qa_relations.yaml reads a split of SQuADShifts made by its documented command (here into tmp)."""
    from polytask.config import load_config
    from polytask.data.squad import split_by_article

    shifts = shared_data_or_skip("squadshifts")
    files = [shifts / f for f in ("new_wiki_v1.0.json", "reddit_v1.0.json", "amazon_reviews_v1.0.json")]
    split_by_article(files, tmp_path, holdout_file=files[0], dev_articles=6, test_articles=10, seed=0)
    path = Path(__file__).resolve().parents[1] / "examples/qa_relations.yaml"
    overrides = [f"datasets.squadshifts.{split}={tmp_path / name}.json"
                 for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))]
    cfg = load_config(path, overrides)
    assert {t.type for t in cfg.tasks.values()} == {"span_qa", "relation_classification", "classification"}
