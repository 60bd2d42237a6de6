"""Unified dialogue on Schema-Guided Dialogue data: the ``sgd`` reader (rows, history, spans, accumulated state and
its errors), intent + requested slots + slot tags + dialogue state trained in one encoder pass, the seen / unseen
breakdown, joint goal accuracy on hand-made cases, checkpoint round trip and Pipeline == evaluation."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from polytask.data.readers import ReaderOptions, read_rows
from polytask.data.sgd import dialogue_words
from polytask.errors import DataError
from polytask.tasks.dialogue_state import STATUS, DialogueState, DialogueStateParams

from conftest import SHARED_DATA
from dialogue_data import sgd_config, write_sgd_split

SGD = SHARED_DATA / "sgd_single_domain"


def _rows(folder: Path, **options):
    return read_rows("sgd", str(folder), ReaderOptions(**options))


def test_reader_rows_history_spans_and_accumulated_state(tmp_path: Path) -> None:
    write_sgd_split(tmp_path / "train", 4, 1)
    rows = _rows(tmp_path / "train", seen_schema="schema.json")
    assert len(rows) == 2 * 3 + 2 * 2  # user turns: weather dialogues have 3, music ones 2
    weather = [r.values for r in rows if r.values["service"] == "Weather_1"][:3]
    first, second, third = weather
    assert first["history"] == [] and first["previous_state"] == {} and first["intent"] == "GetWeather"
    assert second["history"] == [{"speaker": "user", "text": "what is the weather like"},
                                 {"speaker": "system", "text": "which city ?"}]
    city = second["state"]["city"][0]
    assert second["text"] == f"in {city} please." and second["tags"] == ["O", "B-city", "O", "O"]  # "." a word
    assert third["previous_state"] == {"city": [city]} and set(third["state"]) == {"city", "unit"}
    assert third["requested"] == ["wind"] and third["categorical"] == {"unit": ["celsius", "kelvin"]}
    assert third["turn"] == 4 and third["seen"] == "seen" and "dialogue 1_00000 turn 4" in rows[2].location


def test_reader_errors_name_the_dialogue_turn_span_and_text(tmp_path: Path) -> None:
    folder = write_sgd_split(tmp_path / "d", 2, 1, files=1)
    file = folder / "dialogues_001.json.gz"
    original = json.loads(gzip.decompress(file.read_bytes()))

    def broken(edit) -> str:
        data = json.loads(json.dumps(original))
        edit(data)
        file.write_bytes(gzip.compress(json.dumps(data).encode()))
        with pytest.raises(DataError) as err:
            _rows(folder)
        return str(err.value)

    def shift(data) -> None:  # the span now covers "paris " + 1 char off: not the action's value
        data[0]["turns"][2]["frames"][0]["slots"][0]["start"] += 1
    message = broken(shift)
    assert "dialogue 1_00000 turn 2" in message and "frames[0].slots[0]" in message and "utterance is 'in " in message

    def outside(data) -> None:
        data[0]["turns"][2]["frames"][0]["slots"][0]["exclusive_end"] = 99
    assert "outside the utterance" in broken(outside)

    def no_state(data) -> None:
        del data[1]["turns"][0]["frames"][0]["state"]
    message = broken(no_state)
    assert "dialogue 1_00001 turn 0" in message and "frames[0].state" in message

    def two_frames(data) -> None:
        data[0]["turns"][0]["frames"].append(data[0]["turns"][0]["frames"][0])
    assert "exactly one frame" in broken(two_frames)
    file.write_bytes(gzip.compress(json.dumps(original).encode()))
    (folder / "schema.json").unlink()
    with pytest.raises(DataError, match="schema.json not found"):
        _rows(folder)


def _state_task() -> DialogueState:
    task = DialogueState("state", DialogueStateParams(type="dialogue_state", dataset="d"))
    task.load_state({"slots": ["city", "unit"], "categorical": {"unit": ["celsius", "kelvin"]},
                     "service_slots": {}, "service_categorical": {}, "tags": ["O", "B-city", "I-city"]})
    return task


def test_status_trains_only_the_slots_of_the_rows_service() -> None:
    """Slots of other services are always "carry" for a row: left out of its status loss (IGNORE), or they would
    swamp the turn's few updates in the loss summed over slots."""
    from polytask.data.examples import Example
    from polytask.data.rows import Row
    from polytask.tasks.base import IGNORE

    task = DialogueState("state", DialogueStateParams(type="dialogue_state", dataset="d"))
    task.load_state({"slots": ["city", "date", "unit"], "categorical": {}, "tags": ["O"],
                     "service_slots": {"Weather": ["city", "unit"], "Events": ["city", "date"]},
                     "service_categorical": {}})
    row = Row({"service": "Weather", "dialogue_id": "a", "turn": 0}, "f:1", "f", 1)
    example = Example(0, row, "in paris", words=["in", "paris"])
    gold = {"state": {"city": ["Paris"]}, "previous": {}, "tags": ["O", "O"]}
    (fields,) = task.featurize(example, [type("F", (), {"word_index": None})()], gold)
    assert fields["target"] == [STATUS.index("update"), IGNORE, STATUS.index("carry")]


def test_joint_goal_accuracy_chains_predicted_states_per_dialogue() -> None:
    task = _state_task()
    gold = [{"dialogue": "a", "turn": 0, "previous": {}, "state": {"city": ["Paris"]}},
            {"dialogue": "a", "turn": 2, "previous": {"city": ["Paris"]}, "state": {"city": ["Paris"], "unit": ["kelvin"]}},
            {"dialogue": "b", "turn": 0, "previous": {}, "state": {"city": ["San Jose", "SJ"]}},
            {"dialogue": "b", "turn": 2, "previous": {"city": ["SJ"]}, "state": {}}]
    # a: turn 0 right (case-folded), turn 2 right (city carried); b: turn 0 right (an equivalent value), turn 2
    # wrong (the slot should have been deleted)
    preds = [{"updates": {"city": "paris"}}, {"updates": {"unit": "kelvin"}}, {"updates": {"city": "sj"}},
             {"updates": {}}]
    assert task.metrics(preds, gold) == {"joint_goal_accuracy": 0.75, "average_goal_accuracy": 1.0}
    # a wrong early turn stays wrong in the chain: the later turn starts from the predicted state
    preds[0] = {"updates": {"city": "rome"}}
    m = task.metrics(preds, gold)
    assert m["joint_goal_accuracy"] == 0.25 and m["average_goal_accuracy"] == pytest.approx(2 / 4)
    # a dialogue entered mid-way starts from its gold previous state, counted
    m = task.metrics(preds[1:2], gold[1:2])
    assert m == {"joint_goal_accuracy": 1.0, "average_goal_accuracy": 1.0, "chain_restarts": 1.0}


def test_breakdown_scores_each_value_of_the_column_apart() -> None:
    from types import SimpleNamespace

    from polytask.evaluate import breakdown

    task = _state_task()
    gold = [{"dialogue": d, "turn": 0, "previous": {}, "state": {"city": ["x"]}} for d in "abc"]
    preds = [{"updates": {"city": "x"}, "state": {"city": "x"}}, {"updates": {}, "state": {}},
             {"updates": {"city": "x"}, "state": {"city": "x"}}]
    rows = [SimpleNamespace(row=SimpleNamespace(values={"seen": s})) for s in ("seen", "unseen", "seen")]
    out = breakdown({"state": task}, ["state"], {"state": preds}, {"state": gold}, rows, "seen")
    assert out["state [seen]"]["joint_goal_accuracy"] == 1.0 and out["state [seen]"]["examples"] == 2
    assert out["state [unseen]"]["joint_goal_accuracy"] == 0.0 and out["state [unseen]"]["examples"] == 1

    # the printed table names each group (rich would read "[seen]" as a style tag and drop it) and shows counts
    from rich.console import Console

    from polytask.tables import results_table

    result = {"split": "test", "tasks": {"state": {"joint_goal_accuracy": 2 / 3, "examples": 3}},
              "breakdown": {**out, "state [unseen]": {**out["state [unseen]"], "unseen_labels": 12.0}}}
    console = Console(width=200, record=True)
    console.print(results_table(result))
    text = console.export_text()
    assert "state [seen]" in text and "state [unseen]" in text and " 12 " in text, text


@pytest.fixture(scope="module")
def run(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory):
    from polytask.config import validate_config
    from polytask.train import train

    root = tmp_path_factory.mktemp("sgd")
    raw = sgd_config(root / "data", tiny_encoder, root / "out")
    return raw, train(validate_config(raw))


def test_dialogue_tasks_learn_in_one_model_with_a_seen_unseen_breakdown(run) -> None:
    _, result = run
    m = result.test["tasks"]
    assert m["intent"]["accuracy"] == 1.0 and m["slots"]["f1"] > 0.9, m
    assert m["state"]["joint_goal_accuracy"] > 0.7, m["state"]  # always "carry": 0.39 on this test split
    assert result.test["sources"]["sgd"]["examples"] == 33
    groups = result.test["breakdown"]
    assert groups["state [seen]"]["examples"] == 25 and groups["state [unseen]"]["examples"] == 8
    assert set(groups) == {f"{t} [{s}]" for t in ("intent", "requested", "slots", "state") for s in ("seen", "unseen")}


def test_checkpoint_round_trip_and_pipeline_equals_evaluation(run) -> None:
    from polytask.checkpoint import load_model
    from polytask.config import validate_config
    from polytask.data.loading import load_data
    from polytask.evaluate import predict_split
    from polytask.inference import Pipeline

    raw, result = run
    model = load_model(result.best_dir)
    assert model.tasks["state"].categorical == {"unit": ["celsius", "kelvin"]}
    data = load_data(validate_config(raw), model.tokenizer, splits=("test",), tasks=model.tasks)
    split = data.splits["test"]["sgd"]
    evaluated = predict_split(model, split)
    pipe = Pipeline.from_pretrained(result.best_dir)
    seen = [i for i, e in enumerate(split.examples) if e.row.values["seen"] == "seen"]
    items = [{k: split.examples[i].row.values[k] for k in ("text", "history", "previous_state", "service")}
             for i in seen]
    answers = pipe(items)
    for i, answer in zip(seen, answers):
        for name in ("intent", "requested", "slots", "state"):
            expected, got = evaluated[name][i], answer[name]
            assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True), (name, i)
    # the history as plain strings (alternating, the last one the system's) reads the same as speaker objects
    plain = dict(items[1], history=[t["text"] for t in items[1]["history"]])
    assert pipe(plain) == pipe(items[1])
    with pytest.raises(DataError, match="history"):
        pipe({"text": "hi", "history": "not a list"})


@pytest.mark.real
def test_real_sgd_reads_a_few_dialogues() -> None:
    folder = SGD / "dev"
    if not (folder / "schema.json").is_file():
        pytest.skip(f"real SGD data not found at {folder}")
    rows = _rows(folder, seen_schema="../train/schema.json")
    assert len(rows) == 5964  # SOURCE.md: 5,964 user turns in dev
    assert {r.values["seen"] for r in rows} == {"seen", "unseen"}
    for row in rows[:200]:
        v = row.values
        assert len(v["tags"]) == len(dialogue_words(v["text"])[0])
        assert v["turn"] == len(v["history"])


def test_predict_cli_and_server_take_dialogue_turns(run, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from polytask.cli import app
    from polytask.inference import Pipeline
    from polytask.serve.app import create_app

    best = run[1].best_dir
    turn = {"text": "in paris please.", "history": ["what is the weather like", "which city ?"],
            "previous_state": {}, "service": "Weather_1"}
    pipe = Pipeline.from_pretrained(best)
    expected = pipe(turn)[0]
    source = tmp_path / "turns.jsonl"
    source.write_text(json.dumps(turn) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", str(best), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert written["state"] == expected["state"] and written["intent"] == expected["intent"]
    with TestClient(create_app(pipe, wait_ms=1)) as client:
        answer = client.post("/predict", json={"texts": [turn]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["state"] == expected["state"]
        assert client.post("/predict", json={"texts": [{"text": "hi", "history": 3}]}).status_code == 422
