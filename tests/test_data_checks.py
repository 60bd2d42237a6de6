"""Data that used to be accepted without notice, `polytask validate` reading the data, and labels that evaluation
splits hold but training never saw (``unseen_labels``)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import validate_config
from polytask.data.loading import load_data
from polytask.encoder import load_encoder
from polytask.errors import DataError
from polytask.evaluate import evaluate_checkpoint
from polytask.inference import Pipeline
from polytask.tasks.token_classification import repair_bio

from conftest import toy_config, write_yaml


def _cfg(encoder: str, tmp: Path, datasets: dict, tasks: dict) -> dict:
    return {"encoder": {"name": encoder, "max_length": 32}, "datasets": datasets, "tasks": tasks,
            "train": {"output_dir": str(tmp / "out"), "progress_bar": False}}


def _load(raw: dict, splits: tuple[str, ...] = ("train", "validation")):
    run = validate_config(raw)
    _, tokenizer = load_encoder(run.encoder.name)
    return load_data(run, tokenizer, splits=splits)


def test_validate_reads_every_split_reports_every_problem_and_loads_no_weights(
        tiny_encoder: str, toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validate loaded weights or a tokenizer")

    for cls in (transformers.AutoModel, transformers.AutoTokenizer):
        monkeypatch.setattr(cls, "from_pretrained", refuse)
    snips = shutil.copytree(toy_data / "snips", tmp_path / "snips")
    tags = (snips / "test/seq.out").read_text(encoding="utf-8").split("\n")
    tags[0] = tags[0].replace("B-", "S-", 1)  # not a BIO tag, in the test split
    (snips / "test/seq.out").write_text("\n".join(tags), encoding="utf-8")
    dev = tmp_path / "dev.csv"
    dev.write_text("sentence,label\nthe movie was great,pos\nmeh,neutral\nok,\n", encoding="utf-8")
    raw = toy_config(toy_data, tiny_encoder, tmp_path / "out")
    raw["datasets"]["snips"] |= {"test": str(snips / "test")}
    raw["datasets"]["sentiment"]["validation"] = str(dev)
    raw["tasks"]["sentiment"]["label"] = "label"
    raw["tasks"]["similarity"]["label"] = "scor"  # a column the file lacks
    result = CliRunner().invoke(app, ["validate", str(write_yaml(tmp_path / "c.yaml", raw))])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "5 problem(s) in the data" in text
    for fragment in [f"snips/test: {snips / 'test'}:1: field 'tags': value 'S-", "is not a BIO tag",
                     f"sentiment/validation: {dev}:3: field 'label': value 'neutral': label not in task 'sentiment''s "
                     "label set", "1 of 2 examples hold labels training never saw: neutral (1)",
                     f"sentiment/validation: {dev}:4: the row labels none of the tasks",
                     "pairs/train:", "field 'scor': column not found", "pairs/validation:"]:
        assert fragment in text, (fragment, result.output)


def test_validate_ok_lists_rows_and_the_notes(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    snips = shutil.copytree(toy_data / "snips", tmp_path / "snips")
    lines = (snips / "dev/seq.out").read_text(encoding="utf-8").split("\n")
    row = next(i for i, line in enumerate(lines) if "B-city" in line)
    lines[row] = lines[row].replace("B-city", "I-city")
    (snips / "dev/seq.out").write_text("\n".join(lines), encoding="utf-8")
    raw = toy_config(toy_data, tiny_encoder, tmp_path / "out")
    raw["datasets"]["snips"] |= {"validation": str(snips / "dev")}
    result = CliRunner().invoke(app, ["validate", str(write_yaml(tmp_path / "c.yaml", raw))])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "snips: train 160 rows, validation 40 rows, test 40 rows" in text
    assert (f"note: snips/validation: task 'slots': 1 I- tag(s) did not continue an entity of their type (first at "
            f"{snips / 'dev'}:{row + 1}, word 6 'I-city'); read as B- (the BIO repair)") in text


def test_bio_repair_reads_a_stray_i_tag_as_b_and_logs_the_count(
        tiny_encoder: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert repair_bio(["I-x", "I-x", "O", "I-y", "B-x", "I-y"]) == (["B-x", "I-x", "O", "B-y", "B-x", "B-y"],
                                                                    [0, 3, 5])
    train = tmp_path / "ner.jsonl"
    train.write_text('{"text": "play adele now", "tags": ["O", "I-artist", "O"]}\n'
                     '{"text": "play queen", "tags": ["O", "B-artist"]}\n', encoding="utf-8")
    raw = _cfg(tiny_encoder, tmp_path, {"d": {"format": "jsonl", "train": str(train)}},
               {"slots": {"type": "token_classification", "dataset": "d", "label": "tags"}})
    with caplog.at_level(logging.WARNING, logger="polytask"):
        data = _load(raw, ("train",))
    assert data.splits["train"]["d"].golds["slots"][0] == ["O", "B-artist", "O"]
    assert (f"d/train: task 'slots': 1 I- tag(s) did not continue an entity of their type (first at {train}:1, "
            "word 2 'I-artist'); read as B- (the BIO repair)") in caplog.text


def test_label_types_must_not_mix_and_booleans_are_not_scores(tiny_encoder: str, tmp_path: Path) -> None:
    train = tmp_path / "t.jsonl"
    train.write_text('{"text": "good", "label": 1, "score": 0.5}\n{"text": "bad", "label": "1", "score": true}\n',
                     encoding="utf-8")
    classify = _cfg(tiny_encoder, tmp_path, {"d": {"format": "jsonl", "train": str(train)}},
                    {"t": {"type": "classification", "dataset": "d", "label": "label"}})
    with pytest.raises(DataError) as info:
        _load(classify, ("train",))
    assert str(info.value) == (f"{train}:2: field 'label': value '1': the label is a string, but {train}:1 holds 1, a "
                               "number: one label column must hold one type, else 1 and \"1\" become the same class "
                               "(allowed: labels of one type: all strings, or all numbers)")
    score = classify | {"tasks": {"s": {"type": "regression", "dataset": "d", "label": "score"}}}
    with pytest.raises(DataError, match=rf"{train}:2: field 'score': value True: a boolean is not a number"):
        _load(score, ("train",))


def _snips_with_unseen(toy_data: Path, tmp_path: Path) -> tuple[Path, int]:
    """A copy of the toy SNIPS dev split whose first weather row has an unseen intent and an unseen slot type."""
    dev = shutil.copytree(toy_data / "snips/dev", tmp_path / "dev")
    labels = (dev / "label").read_text(encoding="utf-8").split("\n")
    tags = (dev / "seq.out").read_text(encoding="utf-8").split("\n")
    row = labels.index("GetWeather")
    labels[row], tags[row] = "BookFlight", tags[row].replace("B-city", "B-airport")
    (dev / "label").write_text("\n".join(labels), encoding="utf-8")
    (dev / "seq.out").write_text("\n".join(tags), encoding="utf-8")
    return dev, row


def test_unseen_labels_count_as_wrong(trained, toy_data: Path, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    _, result = trained
    dev, row = _snips_with_unseen(toy_data, tmp_path)
    snips = {"format": "jointbert", "train": str(toy_data / "snips/train"), "validation": str(dev), "text": "tokens"}
    tasks = {"intent": {"type": "classification", "dataset": "snips", "label": "intent"},
             "slots": {"type": "token_classification", "dataset": "snips", "label": "tags"}}
    raw = _cfg(str(result.best_dir), tmp_path, {"snips": snips}, tasks)
    with pytest.raises(DataError, match=r"1 of 40 examples hold labels training never saw: BookFlight \(1\)"):
        evaluate_checkpoint(result.best_dir, "validation", write_yaml(tmp_path / "error.yaml", raw))
    for task in tasks.values():
        task["unseen_labels"] = "count_as_wrong"
    with caplog.at_level(logging.WARNING, logger="polytask"):
        scored = evaluate_checkpoint(result.best_dir, "validation", write_yaml(tmp_path / "count.yaml", raw))
    assert ("snips/validation: task 'intent': 1 of 40 examples hold labels training never saw: BookFlight (1); they "
            "are scored as wrong") in caplog.text
    assert "task 'slots': 1 of 40 examples hold labels training never saw: B-airport (1)" in caplog.text
    reference = evaluate_checkpoint(result.best_dir, "validation", config=None)
    intent, ref = scored["tasks"]["intent"], reference["tasks"]["intent"]
    assert intent["unseen_labels"] == 1 and intent["examples"] == ref["examples"] == 40
    words = (toy_data / "snips/dev/seq.in").read_text(encoding="utf-8").split("\n")[row].split()
    was_right = Pipeline.from_pretrained(result.best_dir)([" ".join(words)])[0]["intent"]["label"] == "GetWeather"
    assert round(intent["accuracy"] * 40) == round(ref["accuracy"] * 40) - was_right  # that row is now wrong
    assert scored["tasks"]["slots"]["unseen_labels"] == 1 and "unseen_labels" not in ref


def test_training_labels_outside_fixed_labels_are_an_error_even_when_counting_unseen(
        tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    raw = _cfg(tiny_encoder, tmp_path, {"d": {"format": "csv", "train": str(toy_data / "sentiment_train.csv"),
                                              "text": "sentence"}},
               {"t": {"type": "classification", "dataset": "d", "label": "label", "labels": ["pos"],
                      "unseen_labels": "count_as_wrong"}})
    with pytest.raises(DataError, match=r"field 'label': value 'neg': a training label outside task 't''s fixed "
                                        r"`labels` \(allowed: pos\)"):
        _load(raw, ("train",))
