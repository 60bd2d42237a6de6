"""Bad input gets an error that names the file, line, field, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import load_config, validate_config
from polytask.data.loading import load_data
from polytask.encoder import load_encoder
from polytask.errors import ConfigError, DataError

from conftest import toy_config, write_yaml


def _one_task(data_dir: Path, encoder: str, tmp: Path, dataset: dict, task: dict) -> dict:
    return {"encoder": {"name": encoder, "max_length": 32}, "datasets": {"d": dataset}, "tasks": {"t": task},
            "train": {"output_dir": str(tmp / "out"), "progress_bar": False}}


def test_config_reports_every_problem_at_once(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    cfg = toy_config(toy_data, tiny_encoder, tmp_path)
    cfg["tasks"]["intent"]["type"] = "clasification"
    cfg["tasks"]["slots"]["dataset"] = "snipz"
    cfg["tasks"]["sentiment"]["colour"] = "blue"
    cfg["datasets"]["topics"]["format"] = "xml"
    cfg["datasets"]["pairs"]["train"] = str(tmp_path / "missing.tsv")
    cfg["train"]["lr"] = -1
    cfg["sampler"] = {"name": "temperature", "temperature": 0}
    cfg["weighting"] = {"name": "static", "weights": {"intnet": 2.0}}
    cfg["evaluation"]["metric"] = "slots/accuracy"
    cfg["surprise"] = 1
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    text = str(info.value)
    for expected in [
        "tasks.intent.type: unknown task type 'clasification'; available: classification, dialogue_state, regression, "
        "relation_classification, relation_extraction, seq2seq, span_qa, token_classification",
        "tasks.slots.dataset: unknown dataset 'snipz'; defined: snips, sentiment, pairs, topics",
        "tasks.sentiment.colour: unknown key",
        "datasets.topics.format: unknown data format 'xml'; available: conll, csv, hf, jointbert, jsonl, lines, "
        "parallel, semeval, sgd, spert, squad, tsv",
        f"datasets.pairs.train: file not found: {tmp_path / 'missing.tsv'}",
        "train.lr: Input should be greater than 0",
        "sampler.temperature: Input should be greater than 0",
        "intnet",
        "evaluation.metric: task 'slots' has no metric 'accuracy'; available: f1, precision, recall, token_accuracy",
        "surprise: unknown key",
    ]:
        assert expected in text, (expected, text)
    assert "10 problem(s)" in text


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("tasks:\n  a: {type: classification\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml: .*line 3, column 1: invalid YAML"):
        load_config(path)


def test_validate_cli_exit_code_and_message(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"tasks": {"a": {"type": "nope", "dataset": "x", "label": "y"}}})
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 2
    assert "unknown task type 'nope'" in r.output and "datasets: at least one dataset" in r.output


def _load(cfg: dict, splits: tuple[str, ...] = ("train", "validation")):
    run = validate_config(cfg)
    _, tok = load_encoder(run.encoder.name)
    return load_data(run, tok, splits=splits)


def test_wrong_label_column(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    cfg = _one_task(toy_data, tiny_encoder, tmp_path,
                    {"format": "csv", "train": str(toy_data / "sentiment_train.csv"), "text": "sentence"},
                    {"type": "classification", "dataset": "d", "label": "lable"})
    with pytest.raises(DataError, match=r"sentiment_train.csv: field 'lable': column not found \(needed by task "
                                        r"'t'\) \(allowed: columns in this file: sentence, label\)"):
        _load(cfg)


def test_unknown_label_at_evaluation(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    dev = tmp_path / "dev.csv"
    dev.write_text("sentence,label\nthe movie was great,pos\nthe movie was meh,neutral\n", encoding="utf-8")
    cfg = _one_task(toy_data, tiny_encoder, tmp_path,
                    {"format": "csv", "train": str(toy_data / "sentiment_train.csv"), "validation": str(dev),
                     "text": "sentence"},
                    {"type": "classification", "dataset": "d", "label": "label"})
    with pytest.raises(DataError) as info:
        _load(cfg)
    assert str(info.value) == (f"{dev}:3: field 'label': value 'neutral': label not in task 't''s label set "
                               "(learned from the training split); 1 of 2 examples hold labels training never saw: "
                               "neutral (1); set unseen_labels: count_as_wrong on the task to score them as wrong "
                               "instead (allowed: neg, pos)")


def test_token_tag_count_mismatch(tiny_encoder: str, tmp_path: Path) -> None:
    train = tmp_path / "ner.jsonl"
    train.write_text('{"words": ["play", "adele"], "tags": ["O", "B-artist"]}\n'
                     '{"words": ["play", "queen", "now"], "tags": ["O", "B-artist"]}\n', encoding="utf-8")
    cfg = _one_task(tmp_path, tiny_encoder, tmp_path, {"format": "jsonl", "train": str(train), "text": "words"},
                    {"type": "token_classification", "dataset": "d", "label": "tags"})
    with pytest.raises(DataError, match=r"ner.jsonl:2: field 'tags': value 'O B-artist': 2 tags for 3 words; "
                                        r"every word needs exactly one tag"):
        _load(cfg)


def test_non_bio_tag(tiny_encoder: str, tmp_path: Path) -> None:
    train = tmp_path / "ner.jsonl"
    train.write_text('{"words": ["play", "adele"], "tags": ["O", "S-artist"]}\n', encoding="utf-8")
    cfg = _one_task(tmp_path, tiny_encoder, tmp_path, {"format": "jsonl", "train": str(train), "text": "words"},
                    {"type": "token_classification", "dataset": "d", "label": "tags"})
    with pytest.raises(DataError, match=r"ner.jsonl:1: field 'tags': value 'S-artist': tag 2 is not a BIO tag "
                                        r"\(allowed: O, B-<type>, I-<type>\)"):
        _load(cfg)


def test_regression_value_not_a_number(tiny_encoder: str, tmp_path: Path) -> None:
    train = tmp_path / "r.tsv"
    train.write_text("a\tb\tscore\nx\ty\t1.5\nx\ty\thigh\n", encoding="utf-8")
    cfg = _one_task(tmp_path, tiny_encoder, tmp_path,
                    {"format": "tsv", "train": str(train), "text": "a", "text_pair": "b"},
                    {"type": "regression", "dataset": "d", "label": "score"})
    with pytest.raises(DataError, match=r"r.tsv:3: field 'score': value 'high': not a number \(allowed: a real "
                                        r"number\)"):
        _load(cfg)


def test_row_without_any_label_is_an_error_not_dropped(tiny_encoder: str, tmp_path: Path) -> None:
    train = tmp_path / "t.csv"
    train.write_text("text,label\ngood,pos\nbad,\n", encoding="utf-8")
    cfg = _one_task(tmp_path, tiny_encoder, tmp_path, {"format": "csv", "train": str(train)},
                    {"type": "classification", "dataset": "d", "label": "label"})
    with pytest.raises(DataError, match=r"t.csv:3: the row labels none of the tasks this dataset feeds \(t\)"):
        _load(cfg)


def test_empty_input_text(tiny_encoder: str, tmp_path: Path) -> None:
    train = tmp_path / "t.csv"
    train.write_text("text,label\ngood,pos\n  ,neg\n", encoding="utf-8")
    cfg = _one_task(tmp_path, tiny_encoder, tmp_path, {"format": "csv", "train": str(train)},
                    {"type": "classification", "dataset": "d", "label": "label"})
    with pytest.raises(DataError, match=r"t.csv:3: field 'text': value '  ': empty input text"):
        _load(cfg)


def test_missing_labels_are_masked_not_invented(tiny_encoder: str, tmp_path: Path) -> None:
    """A row may label only some of its source's tasks: the others get no target (and no loss)."""
    train = tmp_path / "both.jsonl"
    train.write_text('{"text": "play adele", "intent": "music", "tags": ["O", "B-artist"]}\n'
                     '{"text": "play queen", "intent": null, "tags": ["O", "B-artist"]}\n'
                     '{"text": "weather rome", "intent": "weather"}\n', encoding="utf-8")
    cfg = {"encoder": {"name": tiny_encoder}, "datasets": {"d": {"format": "jsonl", "train": str(train)}},
           "tasks": {"intent": {"type": "classification", "dataset": "d", "label": "intent"},
                     "slots": {"type": "token_classification", "dataset": "d", "label": "tags"}},
           "train": {"output_dir": str(tmp_path / "o")}}
    data = _load(cfg, splits=("train",))
    split = data.splits["train"]["d"]
    assert split.golds["intent"][1] is None and split.golds["slots"][2] is None
    assert "target" not in split.fields["intent"][1] and "target" not in split.fields["slots"][2]
    assert split.fields["intent"][0]["target"] is not None and split.fields["slots"][1]["target"] is not None
    from polytask.data.batching import collate

    batch = collate(split, [0, 1, 2], data.tasks, 0)
    assert batch.targets["intent"]["target"].tolist()[1] == -100
    assert (batch.targets["slots"]["target"][2] == -100).all()
