"""SQuAD JSON: the reader and its errors, the seeded split by article, the v1.1 metric; then the real files."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from polytask.data.readers import READERS, ReaderOptions, read_rows
from polytask.data.squad import main, split_by_article
from polytask.errors import DataError, PolytaskError
from polytask.tasks.qa_metrics import exact_match, f1, normalize_answer, squad_scores

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SQUADSHIFTS = ["new_wiki_v1.0.json", "reddit_v1.0.json", "amazon_reviews_v1.0.json"]

real = pytest.mark.real
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"shared data sets not found at {SHARED_DATA}")

DOC: dict[str, Any] = {"version": "1.1", "data": [
    {"title": "Cats", "paragraphs": [
        {"context": "The cat sat on the mat.", "qas": [
            {"question": "Where did the cat sit?", "id": "q1", "answers": [
                {"text": "on the mat", "answer_start": 12}, {"text": "the mat", "answer_start": 15}]},
            {"question": "Who sat?", "id": "q2", "answers": [{"text": "The cat", "answer_start": 0}]}]}]},
    {"title": "Dogs", "paragraphs": [
        {"context": "Dogs bark.", "qas": [{"question": "What do dogs do?", "id": "q3", "answers": [
            {"text": "bark", "answer_start": 5}, {"text": "bark", "answer_start": 5}, {"text": "bark.",
                                                                                      "answer_start": 5}]}]}]}]}


def write(path: Path, doc: Any) -> str:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return str(path)


def squad_error(path: str) -> str:
    with pytest.raises(DataError) as info:
        read_rows("squad", path)
    return str(info.value)


# -- reader -----------------------------------------------------------------------------------------------------------
def test_squad_is_registered() -> None:
    assert "squad" in READERS
    assert (READERS.get("squad").__doc__ or "").strip()


def test_one_row_per_question_with_every_answer(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", DOC)
    rows = read_rows("squad", path, ReaderOptions(encoding="utf-8"))
    assert [r.values["id"] for r in rows] == ["q1", "q2", "q3"]
    assert rows[0].values == {"id": "q1", "title": "Cats", "context": "The cat sat on the mat.",
                              "question": "Where did the cat sit?",
                              "answers": [{"text": "on the mat", "answer_start": 12},
                                          {"text": "the mat", "answer_start": 15}]}
    assert len(rows[2].values["answers"]) == 3  # duplicates kept: the metric takes the max over all of them
    where = [f"{path}:data[{a}].paragraphs[0].qas[{q}]" for a, q in ((0, 0), (0, 1), (1, 0))]
    assert [r.location for r in rows] == where
    assert [r.line for r in rows] == [1, 2, 3] and rows[0].file == path


def test_answer_text_is_not_checked_against_the_context_here(tmp_path: Path) -> None:
    doc = copy.deepcopy(DOC)
    doc["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 99  # the QA task checks this
    assert len(read_rows("squad", write(tmp_path / "d.json", doc))) == 3


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", '{"data": [\n  {"title": "x",}\n]}')
    assert squad_error(path) == (f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes "
                                 "at column 17")


def test_bad_encoding_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_bytes('{"data": [\n"caf\u00e9"]}'.encode("latin-1"))
    assert squad_error(str(path)).startswith(f"{path}:2: cannot decode byte(s) 0xe9")


@pytest.mark.parametrize("doc", [[], {"version": "1.1"}, {"data": {"title": "x"}}])
def test_missing_data_list(tmp_path: Path, doc: Any) -> None:
    path = write(tmp_path / "d.json", doc)
    text = squad_error(path)
    assert text.startswith(f"{path}: field 'data'") and "a list of articles" in text


def broken(change: str, value: Any = ...) -> dict[str, Any]:
    """DOC with the field at dotted path ``change`` (e.g. "1.0.0.question": article 1, paragraph 0, question 0) set
    to ``value``, or deleted when no value is given."""
    doc = copy.deepcopy(DOC)
    keys = change.split(".")
    record: Any = doc
    for container, index in zip(("data", "paragraphs", "qas", "answers"), keys[:-1]):
        record = record[container][int(index)]
    if value is ...:
        del record[keys[-1]]
    else:
        record[keys[-1]] = value
    return doc


QA = "data[1].paragraphs[0].qas[0]"


@pytest.mark.parametrize(("change", "value", "where", "field", "problem"), [
    ("0.title", 7, "data[0]", "title", "value 7: not a string"),
    ("0.paragraphs", ..., "data[0]", "paragraphs", "missing"),
    ("1.0.context", ..., "data[1].paragraphs[0]", "context", "missing (allowed: a string)"),
    ("1.0.context", None, "data[1].paragraphs[0]", "context", "value None: not a string"),
    ("1.0.qas", "q", "data[1].paragraphs[0]", "qas", "not a list"),
    ("1.0.0.question", ..., QA, "question", "missing (allowed: a string)"),
    ("1.0.0.question", ["why"], QA, "question", "not a string"),
    ("1.0.0.id", 3, QA, "id", "value 3: not a string"),
    ("1.0.0.id", "q1", QA, "id", "the id is already used at"),
    ("1.0.0.answers", ..., QA, "answers", "missing"),
    ("1.0.0.answers", {"text": "bark"}, QA, "answers", "not a list"),
    ("1.0.0.answers", [], QA, "answers", "value []: the question has no answers"),
    ("1.0.0.answers", ["bark"], QA, "answers[0]", "an answer must be a JSON object"),
    ("1.0.0.0.text", ..., QA, "answers[0].text", "missing (allowed: a string)"),
    ("1.0.0.0.text", 5, QA, "answers[0].text", "value 5: not a string"),
    ("1.0.0.0.answer_start", ..., QA, "answers[0].answer_start", "missing (allowed: an integer >= 0)"),
    ("1.0.0.0.answer_start", True, QA, "answers[0].answer_start", "value True: not a character offset"),
    ("1.0.0.0.answer_start", "5", QA, "answers[0].answer_start", "value '5'"),
    ("1.0.0.0.answer_start", 5.0, QA, "answers[0].answer_start", "value 5.0"),
    ("1.0.0.0.answer_start", -1, QA, "answers[0].answer_start", "value -1"),
    ("1.0.0.is_impossible", True, QA, "is_impossible", "SQuAD 2.0 unanswerable questions are not supported"),
    ("1.0.0.plausible_answers", [], QA, "plausible_answers", "SQuAD 2.0 unanswerable questions are not supported"),
])
def test_structural_errors_name_record_field_and_value(tmp_path: Path, change: str, value: Any, where: str, field: str,
                                                      problem: str) -> None:
    path = write(tmp_path / "d.json", broken(change, value))
    text = squad_error(path)
    assert text.startswith(f"{path}:{where}: field '{field}': "), text
    assert problem in text, text


def test_answerable_squad2_question_is_read(tmp_path: Path) -> None:
    assert len(read_rows("squad", write(tmp_path / "d.json", broken("1.0.0.is_impossible", False)))) == 3


def test_file_without_questions(tmp_path: Path) -> None:
    path = write(tmp_path / "d.json", {"data": [{"title": "x", "paragraphs": []}]})
    assert squad_error(path) == f"{path}: no questions: the file holds no article with a question"


# -- split by article -------------------------------------------------------------------------------------------------
def synthetic(folder: Path) -> list[Path]:
    """Three files: a.json with 8 articles (1-3 paragraphs, 1-2 questions each), b.json 2 articles, c.json 1."""
    files = []
    for name, count in (("a", 8), ("b", 2), ("c", 1)):
        articles = []
        for i in range(count):
            paragraphs = [{"context": f"{name}{i} para {p}.", "qas": [
                {"question": f"q {q}?", "id": f"{name}{i}-{p}-{q}", "answers": [{"text": "para", "answer_start": 3}]}
                for q in range(1 + (i + p) % 2)]} for p in range(1 + i % 3)]
            articles.append({"title": f"{name}-title-{i}", "paragraphs": paragraphs})
        files.append(folder / f"{name}.json")
        write(files[-1], {"version": "1.1", "data": articles})
    return files


def ids(path: Path) -> list[str]:
    return [r.values["id"] for r in read_rows("squad", str(path))]


def test_split_by_article(tmp_path: Path) -> None:
    files = synthetic(tmp_path)
    summary = split_by_article(files, tmp_path / "out", files[0], dev_articles=2, test_articles=3, seed=0)
    out = tmp_path / "out"
    assert json.loads((out / "split.json").read_text(encoding="utf-8")) == summary
    titles = {s: summary["splits"][s]["titles"] for s in ("train", "dev", "test")}
    assert [len(titles["dev"]), len(titles["test"]), len(titles["train"])] == [2, 3, 3 + 2 + 1]
    assert not set(titles["dev"]) & set(titles["test"])
    assert not set(titles["train"]) & set(titles["dev"] + titles["test"])
    assert all(t.startswith("a-") for t in titles["dev"] + titles["test"])
    split_ids = {s: ids(out / f"{s}.json") for s in ("train", "dev", "test")}
    every = sorted(q for f in files for q in ids(f))
    assert sorted(split_ids["train"] + split_ids["dev"] + split_ids["test"]) == every  # each question exactly once
    for name, questions in split_ids.items():
        doc = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
        assert doc["version"] == "1.1" and [a["title"] for a in doc["data"]] == titles[name]
        counts = summary["splits"][name]
        assert counts["questions"] == len(questions) and counts["articles"] == len(doc["data"])
        assert counts["paragraphs"] == sum(len(a["paragraphs"]) for a in doc["data"])
    assert summary["splits"]["train"]["sources"] == [str(f) for f in files]
    assert summary["splits"]["dev"]["sources"] == [str(files[0])]
    assert summary["arguments"] == {"files": [str(f) for f in files], "holdout_file": str(files[0]),
                                    "dev_articles": 2, "test_articles": 3, "seed": 0}
    assert titles["train"][:3] == [t for t in (f"a-title-{i}" for i in range(8)) if t in titles["train"]]  # file order


def test_split_is_deterministic_and_seeded(tmp_path: Path) -> None:
    files = synthetic(tmp_path)
    outputs = {}
    for run, seed in (("one", 0), ("two", 0), ("other", 1)):
        split_by_article([str(f) for f in files], tmp_path / run, str(files[0]), 2, 3, seed=seed)
        outputs[run] = {n: (tmp_path / run / n).read_bytes() for n in ("train.json", "dev.json", "test.json",
                                                                        "split.json")}
    assert outputs["one"] == outputs["two"]
    assert outputs["one"]["dev.json"] != outputs["other"]["dev.json"]
    assert not list((tmp_path / "one").glob(".*tmp"))  # no temporary file left behind


def test_holdout_not_listed_is_added_first(tmp_path: Path) -> None:
    files = synthetic(tmp_path)
    summary = split_by_article(files[1:], tmp_path / "out", files[0], 1, 1)
    assert summary["splits"]["train"]["sources"] == [str(f) for f in files]
    assert sum(summary["splits"][s]["questions"] for s in summary["splits"]) == sum(len(ids(f)) for f in files)


def test_split_errors(tmp_path: Path) -> None:
    files = synthetic(tmp_path)
    with pytest.raises(PolytaskError, match="dev_articles \\+ test_articles = 9 exceeds the 8 articles"):
        split_by_article(files, tmp_path / "out", files[0], 4, 5)
    with pytest.raises(PolytaskError, match="would overwrite an input file"):
        split_by_article([tmp_path / "train.json", *files], tmp_path, files[0], 1, 1)
    with pytest.raises(PolytaskError, match="listed twice"):
        split_by_article([*files, files[1]], tmp_path / "out", files[0], 1, 1)
    with pytest.raises(PolytaskError, match="dev_articles must be an integer >= 0"):
        split_by_article(files, tmp_path / "out", files[0], -1, 1)
    not_squad = write(tmp_path / "x.json", [{"text": "hello"}])
    with pytest.raises(DataError, match="field 'data'"):
        split_by_article([*files, not_squad], tmp_path / "out", files[0], 1, 1)
    leak = write(tmp_path / "leak.json", {"data": [{"title": "a-title-1", "paragraphs": DOC["data"][0]["paragraphs"]}]})
    with pytest.raises(PolytaskError, match="'a-title-1' .* would leak into train"):
        split_by_article([*files, leak], tmp_path / "out", files[0], 4, 4)
    assert not (tmp_path / "out").exists()  # every check happens before anything is written


def test_split_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = synthetic(tmp_path)
    assert main(["split", "--holdout", str(files[0]), "--dev", "2", "--test", "3", "--out", str(tmp_path / "o"),
                 *map(str, files)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["split", "articles", "paragraphs", "questions"]
    assert table.splitlines()[2].split()[:2] == ["dev", "2"]
    assert main(["split", "--holdout", str(files[0]), "--dev", "9", "--test", "0", "--out", str(tmp_path / "o"),
                 *map(str, files)]) == 2
    assert "exceeds the 8 articles" in capsys.readouterr().err


def test_split_runs_as_a_module(tmp_path: Path) -> None:
    files = synthetic(tmp_path)
    result = subprocess.run([sys.executable, "-m", "polytask.data.squad", "split", "--holdout", str(files[0]), "--dev",
                             "1", "--test", "1", "--out", str(tmp_path / "o"), *map(str, files)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "split.json").is_file()


# -- metric -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "normal"), [
    ("The  Cat!", "cat"), ("an apple, a pear", "apple pear"), ("Theatre", "theatre"), ("the-end", "theend"),
    ("  (A)  ", ""), ("U.S.A.", "usa"), ("Ánother\tline\n", "ánother line"),
])
def test_normalize_answer(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert exact_match("The Eiffel tower.", ["eiffel Tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0
    assert exact_match("Paris", ["London", "paris!"]) == 1.0  # max over references


def test_f1_partial_overlap_by_hand() -> None:
    # prediction tokens [in, 1990s, early], reference [early, 1990s]: 2 shared; P = 2/3, R = 2/2; F1 = 2PR/(P+R) = 0.8
    assert f1("in the 1990s, early", ["early 1990s"]) == pytest.approx(0.8)
    # tokens count with multiplicity: [new, new, york] vs [new, york] share 2; P = 2/3, R = 1 -> 0.8
    assert f1("new new york", ["New York"]) == pytest.approx(0.8)
    # max over references: 0 against "dog"; [cat] vs [black, cat]: P = 1, R = 1/2 -> 2/3
    assert f1("cat", ["dog", "black cat"]) == pytest.approx(2 / 3)
    assert f1("cat", ["dog"]) == 0.0


def test_empty_prediction_and_official_v1_1_edge_case() -> None:
    assert exact_match("", ["answer"]) == 0.0 and f1("", ["answer"]) == 0.0
    # both normalise to nothing: EM counts it, F1 does not (no shared token), exactly as the official v1.1 script
    assert exact_match("the", ["a"]) == 1.0 and f1("the", ["a"]) == 0.0
    with pytest.raises(ValueError, match="at least one reference"):
        f1("x", [])


def test_squad_scores_are_fractions() -> None:
    scores = squad_scores(["The cat", "in the 1990s, early", "x"], [["cat"], ["early 1990s"], ["y", "z"]])
    assert scores == pytest.approx({"exact_match": 1 / 3, "f1": (1 + 0.8 + 0) / 3})
    with pytest.raises(ValueError, match="2 predictions but 1 questions"):
        squad_scores(["a", "b"], [["a"]])


# -- the real files ---------------------------------------------------------------------------------------------------
@real
@needs_shared
@pytest.mark.parametrize(("relative", "questions"), [
    (f"squadshifts/{SQUADSHIFTS[0]}", 7938), (f"squadshifts/{SQUADSHIFTS[1]}", 9803),
    (f"squadshifts/{SQUADSHIFTS[2]}", 9885), ("xquad_en_zh/xquad.en.json", 1190),
])
def test_real_files_read_and_every_answer_is_in_its_context(relative: str, questions: int) -> None:
    rows = read_rows("squad", str(SHARED_DATA / relative))
    assert len(rows) == questions
    for row in rows:
        context = row.values["context"]
        for answer in row.values["answers"]:
            start = answer["answer_start"]
            assert context[start : start + len(answer["text"])] == answer["text"], row.location


@real
@needs_shared
def test_real_squadshifts_split(tmp_path: Path) -> None:
    files = [SHARED_DATA / "squadshifts" / name for name in SQUADSHIFTS]
    summary = split_by_article(files, tmp_path, files[0], dev_articles=6, test_articles=10, seed=0)
    counts = {s: summary["splits"][s]["questions"] for s in ("train", "dev", "test")}
    assert sum(counts.values()) == 27626
    assert summary["splits"]["dev"]["articles"] == 6 and summary["splits"]["test"]["articles"] == 10
    assert summary["splits"]["train"]["articles"] == 48 - 16 + 1 + 413
    assert sum(len(ids(tmp_path / f"{s}.json")) for s in counts) == 27626


def test_cjk_answers_are_scored_by_character_english_as_before() -> None:
    """MLQA's mixed segmentation for answers with CJK characters: F1 counts characters, Unicode punctuation goes;
    answers without CJK characters keep SQuAD v1.1's scoring (ASCII punctuation only, white-space tokens)."""
    assert f1("北京大学", ["北京"]) == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))  # 2 of 4 characters shared
    assert exact_match("北京，", ["北京"]) == 1.0 and exact_match("《北京》", ["北京"]) == 1.0  # CJK punctuation
    assert f1("在 1990年", ["1990年"]) == pytest.approx(0.8)  # mixed runs: 在 / 1990 / 年 against 1990 / 年
    assert f1("东京", ["北京"]) == pytest.approx(0.5) and exact_match("东京", ["北京"]) == 0.0
    assert f1("“quoted” text", ["quoted text"]) == 0.5  # no CJK: curly quotes stay on "quoted" (v1.1 rules)
    assert squad_scores(["北京", "paris"], [["北京市"], ["Paris"]]) == pytest.approx(
        {"exact_match": 0.5, "f1": (0.8 + 1.0) / 2})
    # cjk=False: v1.1's rules everywhere (XQuAD's published tables): a Chinese answer is one white-space token
    assert f1("北京大学", ["北京"], cjk=False) == 0.0 and exact_match("北京，", ["北京"], cjk=False) == 0.0
    assert squad_scores(["北京", "paris"], [["北京市"], ["Paris"]], cjk=False) == pytest.approx(
        {"exact_match": 0.5, "f1": 0.5})
