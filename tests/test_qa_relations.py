"""QA, relation classification and joint relation extraction beside a classification task, in ONE model:
train -> scores -> resume -> Pipeline / CLI / server / batch files / ONNX, and the bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from polytask.cli import app
from polytask.config import load_config, validate_config
from polytask.errors import DataError
from polytask.inference import Pipeline
from polytask.train import train

from conftest import write_yaml
from toydata import qa_relations_config as config

QUESTION = "where is the weather"
# 3 filler words before the sentence, as in the training contexts
CONTEXT = "quite the show the weather in tokyo is great and the music by adele is loud ."
MARKED = "the <e1>cat</e1> in the <e2>dog</e2> was great ."
SENTENCE = "sting lives in oslo ."


@pytest.fixture(scope="module")
def run(trained_qa_relations):
    return trained_qa_relations


def test_every_task_learns(run) -> None:
    _, result = run
    m = result.test["tasks"]
    # chance: QA F1 ~0.1 (a random span), relation macro-F1 ~0.3 (3 classes), joint relation F1 ~0
    assert m["qa"]["f1"] > 0.9 and m["qa"]["exact_match"] > 0.9, m["qa"]
    assert m["relation"]["macro_f1"] > 0.9, m["relation"]
    assert m["joint"]["entity_f1"] > 0.9 and m["joint"]["relation_f1"] > 0.8, m["joint"]
    assert m["sentiment"]["accuracy"] > 0.8
    assert m["qa"]["examples"] == 40 and result.test["sources"]["qa"]["features"] > 40  # windows


def test_resume_with_windows_and_markers_continues_exactly(tiny_encoder: str, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    raw = config(tmp_path / "data", tiny_encoder, tmp_path / "a", max_steps=10)
    raw["evaluation"] = {"every_steps": 5}
    straight = validate_config(raw)
    train(straight)
    resumed = straight.model_copy(deep=True)
    resumed.train.output_dir = str(tmp_path / "b")
    assert train(resumed, stop_after=4).steps == 4
    train(resumed, resume=tmp_path / "b/last")
    a, b = load_file(str(tmp_path / "a/last/model.safetensors")), load_file(str(tmp_path / "b/last/model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_pipeline_answers_every_kind_of_input(run) -> None:
    pipe = Pipeline.from_pretrained(run[1].best_dir)
    assert {n: t["input"] for n, t in pipe.tasks.items()} == {
        "qa": "pair", "relation": "entities", "joint": "text", "sentiment": "text"}
    answer = pipe([(QUESTION, CONTEXT)])[0]["qa"]
    assert answer["answer"] == "tokyo" and CONTEXT[answer["start"]:answer["end"]] == "tokyo"
    assert pipe({"question": QUESTION, "context": CONTEXT}) == pipe([(QUESTION, CONTEXT)])
    marked = pipe(MARKED)[0]["relation"]
    assert marked["label"] == "Content-Container(e1,e2)"
    assert marked["e1"] == {"text": "cat", "start": 4, "end": 7} and marked["e2"]["text"] == "dog"
    spans = pipe({"text": "the cat in the dog was great .", "e1": [4, 7], "e2": [15, 18]})[0]["relation"]
    assert spans == marked
    text = pipe(SENTENCE)[0]
    assert set(text) == {"joint", "sentiment"}
    entities = text["joint"]["entities"]
    assert [(e["type"], e["text"]) for e in entities] == [("Peop", "sting"), ("Loc", "oslo")]
    assert all(SENTENCE[e["start"]:e["end"]] == e["text"] for e in entities)
    assert [(r["type"], r["head"], r["tail"]) for r in text["joint"]["relations"]] == [("Live_In", 0, 1)]


def test_one_encoder_pass_per_input_group(run) -> None:
    pipe = Pipeline.from_pretrained(run[1].best_dir)
    calls: list[int] = []
    hook = pipe.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    pipe([SENTENCE, "the movie was really awful"])  # joint + sentiment read the same text: one pass
    assert len(calls) == 1
    hook.remove()


def test_cli_server_and_batch_files(run, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from polytask.serve.app import create_app

    ckpt = str(run[1].best_dir)
    runner = CliRunner()
    r = runner.invoke(app, ["predict", ckpt, QUESTION, "--pair", CONTEXT])
    assert r.exit_code == 0, r.output
    assert '"answer": "tokyo"' in r.output
    r = runner.invoke(app, ["predict", ckpt, MARKED])
    assert r.exit_code == 0 and "Content-Container(e1,e2)" in r.output, r.output

    pipe = Pipeline.from_pretrained(ckpt)
    with TestClient(create_app(pipe)) as client:
        got = client.post("/predict", json={"texts": [{"question": QUESTION, "context": CONTEXT}]}).json()
        assert got["predictions"][0]["qa"]["answer"] == "tokyo"
        got = client.post("/predict", json={"texts": [{"text": "the cat in the dog .", "e1": [4, 7],
                                                       "e2": [15, 18]}]}).json()
        assert got["predictions"][0]["relation"]["label"] == "Content-Container(e1,e2)"
        bad = client.post("/predict", json={"texts": [{"text": "the cat", "e1": [4, 7], "e2": [5, 40]}]})
        assert bad.status_code == 422 and "outside the text" in bad.text
        assert "relation" in client.get("/tasks").json()

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in [
        {"text": SENTENCE}, {"text": QUESTION, "text_pair": CONTEXT},
        {"text": "the cat in the dog .", "e1": [4, 7], "e2": [15, 18]}, {"text": MARKED}]) + "\n")
    out = tmp_path / "out.jsonl"
    r = runner.invoke(app, ["predict", ckpt, "--input", str(src), "--output", str(out)])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert set(rows[0]) == {"line", "text", "joint", "sentiment"}
    assert rows[1]["qa"]["answer"] == "tokyo" and rows[1]["text_pair"] == CONTEXT
    assert rows[2]["relation"]["label"] == rows[3]["relation"]["label"] == "Content-Container(e1,e2)"


def test_onnx_graph_holds_every_head(run, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from polytask.export import OnnxModel, export_onnx, parity

    pipe = Pipeline.from_pretrained(run[1].best_dir)
    path = export_onnx(pipe.model, tmp_path / "m.onnx")
    diffs = parity(pipe.model, path)
    assert {"qa.start", "qa.end", "relation", "joint.tags", "joint.pairs", "sentiment"} == set(diffs)
    assert max(diffs.values()) < 1e-4
    onnx = Pipeline(OnnxModel(path, pipe.model))
    for item in ([(QUESTION, CONTEXT)], [MARKED], [SENTENCE]):
        want, got = pipe(item)[0], onnx(item)[0]
        assert want.keys() == got.keys()
        for task in want:
            assert _labels(want[task]) == _labels(got[task]), task


def _labels(prediction: dict[str, Any]) -> Any:
    """The discrete part of a prediction (scores differ in the last digits between backends)."""
    return json.loads(json.dumps(prediction), parse_float=lambda _: 0.0)


def _one(tmp_path: Path, encoder: str, dataset: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    return {"encoder": {"name": encoder, "max_length": 32}, "datasets": {"d": dataset},
            "tasks": {"t": {"dataset": "d", **task}}, "train": {"output_dir": str(tmp_path / "o"), "max_steps": 1}}


@pytest.mark.parametrize("name, file, content, dataset, task, message", [
    ("answer off", "qa.json", {"version": "1.1", "data": [{"title": "a", "paragraphs": [{
        "context": "the weather in paris", "qas": [{"id": "q", "question": "where",
                                                    "answers": [{"text": "paris", "answer_start": 3}]}]}]}]},
     {"format": "squad", "text": "question", "text_pair": "context"}, {"type": "span_qa"},
     r"qa.json:data\[0\].paragraphs\[0\].qas\[0\]: field 'answers\[0\]': value 'paris': the answer text does not "
     r"match the context at answer_start 3 \(the context there reads ' weat'\)"),
    ("no stride", "qa.json", {"version": "1.1", "data": [{"title": "a", "paragraphs": [{
        "context": " ".join(["the weather in paris"] * 20), "qas": [{"id": "q", "question": "where",
                                                                     "answers": [{"text": "paris",
                                                                                  "answer_start": 15}]}]}]}]},
     {"format": "squad", "text": "question", "text_pair": "context"}, {"type": "span_qa", "doc_stride": None},
     r"qa.json:data\[0\].paragraphs\[0\].qas\[0\]: question \+ context take \d+ tokens, more than one window of "
     r"max_length 32, and doc_stride is null"),
    ("span outside", "rel.jsonl", [{"text": "a cat", "e1": [0, 1], "e2": [2, 9], "relation": "x"}],
     {"format": "jsonl"}, {"type": "relation_classification"},
     r"rel.jsonl:1: field 'e2': value \[2, 9\]: entity span outside the text \(the text has 5 characters\)"),
    ("relation to a missing entity", "re.jsonl",
     [{"tokens": ["sting", "lives"], "entities": [{"type": "Peop", "start": 0, "end": 1}],
       "relations": [{"type": "Live_In", "head": 0, "tail": 3}]}],
     {"format": "jsonl", "text": "tokens"}, {"type": "relation_extraction"},
     r"re.jsonl:1: field 'relations\[0\]': value .*: a relation needs a string 'type' and 'head' != 'tail', "
     r"indices of the row's 1 entities"),
    ("entity outside", "re.jsonl",
     [{"tokens": ["sting"], "entities": [{"type": "Peop", "start": 0, "end": 2}], "relations": []}],
     {"format": "jsonl", "text": "tokens"}, {"type": "relation_extraction"},
     r"re.jsonl:1: field 'entities\[0\]': value .*: entity span outside the sentence \(1 words\)"),
])
def test_bad_qa_and_relation_data_is_named(name: str, file: str, content: Any, dataset: dict[str, Any],
                                           task: dict[str, Any], message: str, tiny_encoder: str,
                                           tmp_path: Path) -> None:
    path = tmp_path / file
    if file.endswith(".jsonl"):
        path.write_text("\n".join(json.dumps(x) for x in content) + "\n")
    else:
        path.write_text(json.dumps(content))
    cfg = write_yaml(tmp_path / "c.yaml", _one(tmp_path, tiny_encoder, {**dataset, "train": str(path)}, task))
    with pytest.raises(DataError, match=message):
        train(load_config(cfg))
    r = CliRunner().invoke(app, ["train", str(cfg), "--no-progress"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output


def test_long_questions_are_cut_like_berts_max_query_length(tiny_encoder: str) -> None:
    """Real SQuADShifts has a question padded with 200 characters of junk: it is cut to max_question_length tokens
    (and counted) instead of failing; with max_question_length null it is refused with the row named."""
    from transformers import AutoTokenizer

    from polytask.data.examples import Example
    from polytask.data.input_specs import WindowInput
    from polytask.data.rows import Row

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    question = "where is the weather" + " ," * 100
    example = Example(0, Row({}, "qa.json:data[0]", "qa.json", 1), question, "the weather in paris is great .")
    result = WindowInput(max_length=32, stride=8, max_question=6).featurize([example], tokenizer, 32, False)
    assert result.truncated == 1 and "1 questions longer than 6 tokens were cut" in result.notes[0]
    assert all(int((f.sequence_ids == 0).sum()) == 6 for f in result.features)
    with pytest.raises(DataError, match=r"qa.json:data\[0\]: value .*: the question takes \d+ tokens: a window "
                       r"of max_length 32 leaves no room for the context"):
        WindowInput(max_length=32, stride=8, max_question=None).featurize([example], tokenizer, 32, False)
