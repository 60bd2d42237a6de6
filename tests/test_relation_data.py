"""Relation data: the semeval and spert readers on small files written here (values, spans, every error's text),
the relation metrics on hand-computed cases, and the real SemEval-2010 Task 8 and CoNLL04 files in ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polytask.data.examples import Example
from polytask.data.readers import ReaderOptions, read_rows
from polytask.data.rows import Row
from polytask.errors import DataError
from polytask.tasks.base import IGNORE, TASKS
from polytask.tasks.relation_metrics import relation_extraction_scores, semeval_scores

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
real = pytest.mark.real


def needs(folder: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (SHARED_DATA / folder).is_dir(), reason=f"{SHARED_DATA / folder} not found "
                              "(the shared data sets are not checked out beside the repository)")


def write(path: Path, text: str) -> str:
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def read(fmt: str, path: str) -> list[Row]:
    return read_rows(fmt, path, ReaderOptions())


def data_error(fmt: str, path: str) -> str:
    with pytest.raises(DataError) as info:
        read(fmt, path)
    return str(info.value)


# -- semeval ----------------------------------------------------------------------------------------------------------
SEMEVAL = ('1\t"The <e1>child</e1> was wrapped into the <e2>cradle</e2>."\r\nEntity-Destination(e1,e2)\r\n'
           "Comment: a comment\r\n\r\n"
           '2\t"A <e2>"quoted" part</e2> of the <e1>whole</e1>."\nOther\nComment:\n\n\n')


def test_semeval_rows_values_and_spans(tmp_path: Path) -> None:
    path = write(tmp_path / "train.txt", SEMEVAL)
    rows = read("semeval", path)
    assert [r.values for r in rows] == [
        {"id": "1", "text": "The child was wrapped into the cradle.", "e1": [4, 9], "e2": [31, 37],
         "relation": "Entity-Destination(e1,e2)", "comment": "a comment"},
        {"id": "2", "text": 'A "quoted" part of the whole.', "e1": [23, 28], "e2": [2, 15], "relation": "Other",
         "comment": ""},
    ]
    first, second = (r.values for r in rows)
    assert first["text"][slice(*first["e1"])] == "child" and first["text"][slice(*first["e2"])] == "cradle"
    assert second["text"][slice(*second["e2"])] == '"quoted" part'  # inner quotes stay, the outer ones go
    assert [(r.location, r.line, r.file) for r in rows] == [(f"{path}:1", 1, path), (f"{path}:5", 5, path)]


SENT = '7\t"The <e1>a</e1> and <e2>b</e2>."'


@pytest.mark.parametrize(("content", "line", "field", "value", "problem"), [
    ('7 "no tab <e1>a</e1> <e2>b</e2>"\nOther\nComment:\n', 1, "text", '7 "no tab', "expected a sentence line"),
    ("7\tno quotes <e1>a</e1> <e2>b</e2>\nOther\nComment:\n", 1, "text", "7\tno quotes", "expected a sentence"),
    ('7\t"only <e1>a</e1>."\nOther\nComment:\n', 1, "text", "only <e1>a</e1>.", "<e2>...</e2> markers are missing"),
    ('7\t"<e1>a</e1> <e1>b</e1> <e2>c</e2>"\nOther\nComment:\n', 1, "text", "<e1>a</e1> <e1>b", "more than once"),
    ('7\t"<e1>a</e1> <e2>c</e2></e2>"\nOther\nComment:\n', 1, "text", "</e2></e2>", "</e2> appears more than once"),
    ('7\t"<e1>a <e2>b</e2></e1>"\nOther\nComment:\n', 1, "text", "<e1>a <e2>b", "<e2> opens inside <e1>"),
    ('7\t"<e1>a <e2>b</e1> c</e2>"\nOther\nComment:\n', 1, "text", "<e1>a <e2>b", "opens inside"),
    ('7\t"<e1>a <e2>b</e2>"\nOther\nComment:\n', 1, "text", "<e1>a <e2>b</e2>", "nested"),
    ('7\t"<e2>b</e2> <e1>a"\nOther\nComment:\n', 1, "text", "<e1>a", "<e1> is never closed"),
    ('7\t"</e1>a<e1> <e2>b</e2>"\nOther\nComment:\n', 1, "text", "</e1>a<e1>", "</e1> comes before <e1>"),
    ('7\t"a</e1> <e2>b</e2>"\nOther\nComment:\n', 1, "text", "a</e1>", "</e1> appears without <e1>"),
    ('7\t"<e1> </e1> <e2>b</e2>"\nOther\nComment:\n', 1, "text", "<e1> </e1>", "empty entity <e1></e1>"),
    (f"{SENT}\nComment: no label\n\n", 2, "relation", "Comment: no label", "missing label line"),
    (f"{SENT}\nCause-Effect(e1,e3)\nComment:\n", 2, "relation", "Cause-Effect(e1,e3)", "malformed relation label"),
    (f"{SENT}\nCause-Effect\nComment:\n", 2, "relation", "Cause-Effect", "malformed relation label"),
    (f"{SENT}\nCause Effect(e1,e2)\nComment:\n", 2, "relation", "Cause Effect(e1,e2)", "malformed"),
    (f"{SENT}\nOther\nNote: x\n", 3, "comment", "Note: x", "expected the Comment: line"),
    (f"{SENT}\nOther\nComment:\n{SENT}\nOther\nComment:\n", 4, None, SENT, "has 6 lines; expected 3"),
    (f"{SENT}\nOther\nComment:\n\n{SENT}\n", 5, None, SENT, "has 1 line; expected 3"),
])
def test_semeval_errors_name_file_line_field_and_value(tmp_path: Path, content: str, line: int, field: str | None,
                                                       value: str, problem: str) -> None:
    path = write(tmp_path / "bad.txt", content)
    text = data_error("semeval", path)
    assert text.startswith(f"{path}:{line}: ")
    assert field is None or f"field {field!r}" in text
    assert repr(value)[1:-1] in text and problem in text  # the value as the message shows it (repr)
    assert field is None or "(allowed: " in text


def test_semeval_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", "\n\n")
    assert data_error("semeval", path).startswith(f"{path}: no rows")


# -- spert ------------------------------------------------------------------------------------------------------------
def write_json(path: Path, data: object) -> str:
    return write(path, json.dumps(data))


def test_spert_entities_are_sorted_and_relations_remapped(tmp_path: Path) -> None:
    sentence = {"tokens": ["John", "works", "for", "IBM", "in", "Paris"], "orig_id": 42,
                "entities": [{"type": "Loc", "start": 5, "end": 6}, {"type": "Peop", "start": 0, "end": 1},
                             {"type": "Org", "start": 3, "end": 4}],
                "relations": [{"type": "Work_For", "head": 1, "tail": 2}, {"type": "OrgBased_In", "head": 2,
                                                                           "tail": 0}]}
    path = write_json(tmp_path / "d.json", [{"tokens": ["x"], "entities": [], "relations": []}, sentence])
    rows = read("spert", path)
    assert rows[0].values == {"tokens": ["x"], "entities": [], "relations": []}
    assert rows[1].values == {
        "tokens": sentence["tokens"], "orig_id": 42,
        "entities": [{"type": "Peop", "start": 0, "end": 1}, {"type": "Org", "start": 3, "end": 4},
                     {"type": "Loc", "start": 5, "end": 6}],
        "relations": [{"type": "Work_For", "head": 0, "tail": 1}, {"type": "OrgBased_In", "head": 1, "tail": 2}]}
    assert [(r.location, r.line, r.file) for r in rows] == [(f"{path}:[0]", 1, path), (f"{path}:[1]", 2, path)]


def test_spert_bilou_tags_become_entities(tmp_path: Path) -> None:
    tags = ["U-Peop", "B-Org", "I-Org", "L-Org", "B-Loc", "L-Loc", "U-Loc", "O"]
    path = write_json(tmp_path / "d.json", [{"tokens": list("abcdefgh"), "tags": tags,
                                             "relations": [{"type": "Live_In", "head": 0, "tail": 3}]}])
    values = read("spert", path)[0].values
    assert values["entities"] == [{"type": "Peop", "start": 0, "end": 1}, {"type": "Org", "start": 1, "end": 4},
                                  {"type": "Loc", "start": 4, "end": 6}, {"type": "Loc", "start": 6, "end": 7}]
    assert values["relations"] == [{"type": "Live_In", "head": 0, "tail": 3}]
    assert "tags" not in values


def test_spert_bio_tags_become_entities(tmp_path: Path) -> None:
    # no L-/U- anywhere in the file: BIO, where B- B- of one type are two entities and an entity may end the sentence
    data = [{"tokens": list("abcde"), "tags": ["B-Peop", "B-Peop", "I-Peop", "O", "B-Loc"], "relations": []},
            {"tokens": list("ab"), "tags": ["B-Org", "I-Org"], "relations": []}]
    rows = read("spert", write_json(tmp_path / "d.json", data))
    assert rows[0].values["entities"] == [{"type": "Peop", "start": 0, "end": 1},
                                          {"type": "Peop", "start": 1, "end": 3}, {"type": "Loc", "start": 4, "end": 5}]
    assert rows[1].values["entities"] == [{"type": "Org", "start": 0, "end": 2}]


def tagged(tags: list[str]) -> dict:
    return {"tokens": [f"w{i}" for i in range(len(tags))], "tags": tags, "relations": []}


def spanned(entities: list[dict], relations: list[dict] | None = None, n: int = 4) -> dict:
    return {"tokens": [f"w{i}" for i in range(n)], "entities": entities, "relations": relations or []}


E0, E1 = {"type": "Peop", "start": 0, "end": 1}, {"type": "Org", "start": 2, "end": 4}


@pytest.mark.parametrize(("sentence", "field", "value", "problem"), [
    ({"tags": []}, "tokens", None, "non-empty list of string tokens"),
    ({"tokens": [], "tags": []}, "tokens", [], "non-empty list of string tokens"),
    ({"tokens": ["a", "b"], "tags": ["O"], "relations": []}, "tags", ["O"], "1 tags for 2 tokens"),
    ({"tokens": ["a"], "relations": []}, None, ["relations", "tokens"], "exactly one of 'entities' and 'tags'"),
    (tagged(["O", "I-Peop", "L-Peop"]), "tags[1]", "I-Peop", "I-Peop without a preceding B-Peop"),
    (tagged(["O", "L-Peop"]), "tags[1]", "L-Peop", "L-Peop without a preceding B-Peop"),
    (tagged(["B-Org", "L-Peop"]), "tags[1]", "L-Peop", "without a preceding B-Peop"),
    (tagged(["B-Org", "O", "U-Loc"]), "tags[0]", "B-Org", "B-Org is not closed by L-Org (found 'O' at token 1)"),
    (tagged(["U-Loc", "B-Org", "I-Org"]), "tags[1]", "B-Org", "not closed by L-Org (the sentence ends)"),
    (tagged(["U-Loc", "S-Org"]), "tags[1]", "S-Org", "unknown tag"),
    (tagged(["U-Loc", "Org"]), "tags[1]", "Org", "unknown tag"),
    (tagged(["U-Loc", "B-"]), "tags[1]", "B-", "unknown tag"),
    (spanned([{"type": "Peop", "start": -1, "end": 1}]), "entities[0]", {"type": "Peop", "start": -1, "end": 1},
     "outside the sentence"),
    (spanned([E0, {"type": "Org", "start": 2, "end": 5}]), "entities[1]", {"type": "Org", "start": 2, "end": 5},
     "outside the sentence"),
    (spanned([{"type": "Org", "start": 2, "end": 2}]), "entities[0]", {"type": "Org", "start": 2, "end": 2},
     "or empty"),
    (spanned([{"type": "Org", "start": "2", "end": 3}]), "entities[0]", {"type": "Org", "start": "2", "end": 3},
     "malformed entity"),
    (spanned([E1, {"type": "Loc", "start": 3, "end": 4}]), "entities", [E1, {"type": "Loc", "start": 3, "end": 4}],
     "entities overlap"),
    (spanned([E0, E1], [{"type": "Kill", "head": 0, "tail": 2}]), "relations[0].tail",
     {"type": "Kill", "head": 0, "tail": 2}, "tail 2 is not an index of the sentence's 2 entities"),
    (spanned([E0, E1], [{"type": "Kill", "head": -1, "tail": 1}]), "relations[0].head",
     {"type": "Kill", "head": -1, "tail": 1}, "head -1 is not an index"),
    (spanned([E0, E1], [{"type": "Kill", "head": 0, "tail": None}]), "relations[0]",
     {"type": "Kill", "head": 0, "tail": None}, "malformed relation"),
    (spanned([E0, E1], [{"type": "Kill", "head": 1, "tail": 1}]), "relations[0]",
     {"type": "Kill", "head": 1, "tail": 1}, "head and tail are the same entity"),
])
def test_spert_errors_name_file_record_field_and_value(tmp_path: Path, sentence: dict, field: str | None,
                                                       value: object, problem: str) -> None:
    path = write_json(tmp_path / "bad.json", [spanned([]), sentence])
    text = data_error("spert", path)
    assert text.startswith(f"{path}:[1]: ")
    assert field is None or f"field {field!r}" in text
    assert f"value {value!r}" in text and problem in text and "(allowed: " in text


def test_spert_bio_file_rejects_an_i_after_another_type(tmp_path: Path) -> None:
    path = write_json(tmp_path / "bio.json", [tagged(["B-Org", "I-Peop"])])
    assert data_error("spert", path) == (f"{path}:[0]: field 'tags[1]': value 'I-Peop': I-Peop without a preceding "
                                         "B-Peop (allowed: B-TYPE, I-TYPE or O, in a valid sequence)")


@pytest.mark.parametrize(("content", "start", "problem"), [
    ('{"tokens": ["a"]}', "{path}: ", "expected a JSON list of sentences, found dict"),
    ("[{]", "{path}:1: ", "invalid JSON"),
    ("[1]", "{path}:[0]: value 1: ", "expected a sentence object, found int"),
    ("[]", "{path}: ", "no rows"),
])
def test_spert_file_level_errors(tmp_path: Path, content: str, start: str, problem: str) -> None:
    path = write(tmp_path / "bad.json", content)
    text = data_error("spert", path)
    assert text.startswith(start.format(path=path)) and problem in text


# -- metrics ----------------------------------------------------------------------------------------------------------
def test_semeval_scores_wrong_direction_counts_against_the_type_and_other_is_excluded() -> None:
    golds = ["A(e1,e2)", "A(e1,e2)", "B(e2,e1)", "Other", "Other"]
    preds = ["A(e1,e2)", "A(e2,e1)", "B(e2,e1)", "B(e1,e2)", "Other"]
    # A: TP 1, 2 predicted, 2 gold -> F1 1/2.  B: TP 1, 2 predicted, 1 gold -> P 1/2, R 1, F1 2/3.
    scores = semeval_scores(preds, golds)
    assert scores["macro_f1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert scores["accuracy"] == pytest.approx(3 / 5)
    # Other counted as a type too: TP 1, 1 predicted, 2 gold -> F1 2/3
    assert semeval_scores(preds, golds, negative=None)["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)


def test_relation_labels_unseen_in_training_are_an_error_or_scored_as_wrong() -> None:
    def example(i: int, label: str) -> tuple[str, Example]:
        row = Row({"text": "a b", "e1": [0, 1], "e2": [2, 3], "relation": label}, f"test.txt:{4 * i + 1}", "test.txt",
                  4 * i + 1)
        return label, Example(i, row, "a b")

    def task(unseen: str):  # type: ignore[no-untyped-def]
        kind = TASKS.get("relation_classification")
        made = kind("relation", kind.Params(type="relation_classification", dataset="d", unseen_labels=unseen))
        made.fit([example(0, "A(e1,e2)"), example(1, "Other")])
        return made

    rows = [example(0, "A(e1,e2)"), example(1, "B(e2,e1)"), example(2, "Other")]
    with pytest.raises(DataError, match=r"test.txt:5: field 'relation': value 'B\(e2,e1\)': label not in .*; 1 of 3 "
                                        r"examples hold labels training never saw: B\(e2,e1\) \(1\)"):
        task("error").check_values(rows)
    counting = task("count_as_wrong")
    counting.check_values(rows)
    assert "1 of 3 examples hold labels training never saw: B(e2,e1) (1); they are scored as wrong" in \
        counting.take_notes()[0]
    golds = [counting.gold(raw, ex) for raw, ex in rows]
    assert golds == ["A(e1,e2)", "B(e2,e1)", "Other"]
    assert counting._index.get("B(e2,e1)", IGNORE) == IGNORE  # no output to train: its target is ignored
    predictions = [{"label": "A(e1,e2)"}, {"label": "Other"}, {"label": "Other"}]
    scores = counting.metrics(predictions, golds)
    assert scores["unseen_labels"] == 1.0 and scores["accuracy"] == pytest.approx(2 / 3)
    # B has a gold and no correct prediction: its F1 of 0 enters the macro mean beside A's 1
    assert scores["macro_f1"] == pytest.approx(0.5)


def test_semeval_scores_edge_cases() -> None:
    assert semeval_scores(["A(e2,e1)"], ["A(e1,e2)"]) == {"macro_f1": 0.0, "accuracy": 0.0}
    assert semeval_scores(["A(e1,e2)", "Other"], ["A(e1,e2)", "Other"]) == {"macro_f1": 1.0, "accuracy": 1.0}
    assert semeval_scores(["Other"], ["Other"]) == {"macro_f1": 0.0, "accuracy": 1.0}  # no relation type at all
    with pytest.raises(ValueError, match="2 predictions for 1 gold labels"):
        semeval_scores(["Other", "Other"], ["Other"])


def test_relation_extraction_scores_are_strict() -> None:
    peop, org, loc = ("Peop", 0, 2), ("Org", 5, 6), ("Loc", 8, 9)
    gold_entities = [[peop, org], [peop, loc]]
    gold_relations = [[("Work_For", peop, org)], [("Live_In", peop, loc)]]
    # sentence 1: Org predicted as Loc -> the relation with the right spans and type does not count;
    # sentence 2: all right, with a duplicate entity and relation (counted once) and a reversed relation (wrong).
    wrong_org = ("Loc", 5, 6)
    pred_entities = [[peop, wrong_org], [peop, loc, loc]]
    pred_relations = [[("Work_For", peop, wrong_org)],
                      [("Live_In", peop, loc), ("Live_In", peop, loc), ("Live_In", loc, peop)]]
    scores = relation_extraction_scores(pred_entities, gold_entities, pred_relations, gold_relations)
    assert scores == pytest.approx({"entity_precision": 3 / 4, "entity_recall": 3 / 4, "entity_f1": 3 / 4,
                                    "relation_precision": 1 / 3, "relation_recall": 1 / 2,
                                    "relation_f1": 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2)})
    empty = relation_extraction_scores([[]], [[]], [[]], [[]])
    assert set(empty.values()) == {0.0}


# -- the real data sets -----------------------------------------------------------------------------------------------
@real
@needs("semeval2010_task8")
@pytest.mark.parametrize(("name", "count"), [("TRAIN_FILE.TXT", 8000), ("TEST_FILE_FULL.TXT", 2717)])
def test_real_semeval(name: str, count: int) -> None:
    rows = read("semeval", str(SHARED_DATA / "semeval2010_task8" / name))
    assert len(rows) == count
    for row in rows:
        for entity in ("e1", "e2"):
            start, end = row.values[entity]
            assert row.values["text"][start:end].strip(), row.location
        assert "<e1>" not in row.values["text"] and "</e2>" not in row.values["text"]
    assert len({r.values["relation"] for r in rows}) == 19


@real
@needs("conll04")
@pytest.mark.parametrize(("split", "sentences", "relations"), [("train", 922, 1283), ("dev", 231, 343),
                                                               ("test", 288, 422)])
def test_real_conll04(split: str, sentences: int, relations: int) -> None:
    path = SHARED_DATA / "conll04" / f"conll04_{split}.json"
    rows = read("spert", str(path))
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert len(rows) == sentences
    assert sum(len(r.values["relations"]) for r in rows) == relations
    mentions = sum(tag[:2] in ("B-", "U-") for sentence in raw for tag in sentence["tags"])
    assert sum(len(r.values["entities"]) for r in rows) == mentions  # no entity lost in the conversion
    assert all(r.values["orig_id"] == s["orig_id"] for r, s in zip(rows, raw))
