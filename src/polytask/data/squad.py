"""SQuAD v1.1 JSON (Rajpurkar et al. 2016): the ``squad`` reader, and a seeded split of articles into train/dev/test.

A row is one question: ``{"id", "title", "context", "question", "answers": [{"text", "answer_start"}, ...]}`` with
every reference answer kept in file order. Its location names the JSON record (``FILE:data[3].paragraphs[2].qas[0]``)
and its line is the 1-based question number in the file. The reader checks structure only; whether an answer's text
is found in the context at ``answer_start`` is a task-level check (the QA task type makes it).

``split_by_article`` (also ``python -m polytask.data.squad split``) makes a fixed split by article title, for sets
published as one file with no train/dev split (SQuADShifts): held-out articles of one file go to dev and test,
everything else to train, so no context is shared across splits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from polytask.data.readers import ReaderOptions, _existing_file, _read_text, _reader
from polytask.data.rows import Row
from polytask.errors import DataError, PolytaskError

if __name__ == "__main__":  # `python -m`: importing readers above already registered this module under its own
    from polytask.data import squad  # name; defining the reader a second time here would register it twice

    raise SystemExit(squad.main())

SPLITS = ("train", "dev", "test")
ANSWER = 'a list of objects {"text": string, "answer_start": integer >= 0}'


@_reader("squad", "encoding")
def read_squad(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """SQuAD v1.1 JSON: one row per question (id, title, context, question, answers); no SQuAD 2.0 unanswerables."""
    return _load(path, options.encoding)[1]


def _load(path: str, encoding: str = "utf-8") -> tuple[list[dict[str, Any]], list[Row]]:
    """The file's articles as parsed (for splitting) and its validated rows."""
    text = _read_text(_existing_file(path), encoding)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} at column {exc.colno}", file=path, line=exc.lineno) from exc
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        found = document.get("data", ...) if isinstance(document, dict) else document
        raise DataError("expected SQuAD JSON: an object whose 'data' is a list of articles", file=path, field="data",
                        value=found, allowed='{"version": ..., "data": [{"title", "paragraphs": [...]}, ...]}')
    rows: list[Row] = []
    seen_ids: dict[str, str] = {}
    for a, article in enumerate(document["data"]):
        where = f"{path}:data[{a}]"
        _need(isinstance(article, dict), path, where, None, article, "an article must be a JSON object")
        title = _string(article, "title", path, where)
        paragraphs = _list(article, "paragraphs", path, where, 'a list of objects {"context", "qas"}')
        for p, paragraph in enumerate(paragraphs):
            p_where = f"{where}.paragraphs[{p}]"
            _need(isinstance(paragraph, dict), path, p_where, None, paragraph, "a paragraph must be a JSON object")
            context = _string(paragraph, "context", path, p_where)
            questions = _list(paragraph, "qas", path, p_where, 'a list of objects {"question", "id", "answers"}')
            for q, qa in enumerate(questions):
                q_where = f"{p_where}.qas[{q}]"
                row = _row(qa, title, context, path, q_where, len(rows) + 1)
                qid = row.values["id"]
                # predictions are matched to questions by id, so a repeated id would score the wrong question
                _need(qid not in seen_ids, path, q_where, "id", qid, f"the id is already used at {seen_ids.get(qid)}")
                seen_ids[qid] = q_where
                rows.append(row)
    if not rows:
        raise DataError("no questions: the file holds no article with a question", file=path)
    return document["data"], rows


def _row(qa: Any, title: str, context: str, path: str, where: str, number: int) -> Row:
    _need(isinstance(qa, dict), path, where, None, qa, "a question must be a JSON object")
    question = _string(qa, "question", path, where)
    qid = _string(qa, "id", path, where)
    if qa.get("is_impossible") is True or "plausible_answers" in qa:
        field = "is_impossible" if qa.get("is_impossible") is True else "plausible_answers"
        raise DataError("SQuAD 2.0 unanswerable questions are not supported (every question needs an answer span)",
                        file=path, location=where, field=field, value=qa[field],
                        allowed="SQuAD v1.1 answerable questions only")
    answers = _list(qa, "answers", path, where, ANSWER)
    _need(bool(answers), path, where, "answers", answers, "the question has no answers", ANSWER)
    kept = []
    for i, answer in enumerate(answers):
        field = f"answers[{i}]"
        _need(isinstance(answer, dict), path, where, field, answer, "an answer must be a JSON object", ANSWER)
        text, start = answer.get("text", ...), answer.get("answer_start", ...)
        _need(isinstance(text, str), path, where, f"{field}.text", text,
              "missing" if text is ... else "not a string", "a string")
        # bool is a subclass of int in Python, but `true` is no character offset
        ok = isinstance(start, int) and not isinstance(start, bool) and start >= 0
        _need(ok, path, where, f"{field}.answer_start", start,
              "missing" if start is ... else "not a character offset", "an integer >= 0")
        kept.append({"text": text, "answer_start": start})
    values = {"id": qid, "title": title, "context": context, "question": question, "answers": kept}
    return Row(values, where, path, number)


def _need(ok: bool, path: str, where: str, field: str | None, value: Any, problem: str,
          allowed: str | None = None) -> None:
    if not ok:
        raise DataError(problem, file=path, location=where, field=field, value=value, allowed=allowed)


def _string(record: dict[str, Any], field: str, path: str, where: str) -> str:
    value = record.get(field, ...)
    _need(isinstance(value, str), path, where, field, value, "missing" if value is ... else "not a string",
          "a string")
    return value


def _list(record: dict[str, Any], field: str, path: str, where: str, allowed: str) -> list[Any]:
    value = record.get(field, ...)
    _need(isinstance(value, list), path, where, field, value, "missing" if value is ... else "not a list", allowed)
    return value


# -- split by article -------------------------------------------------------------------------------------------------
def split_by_article(files: list[str | Path], out_dir: str | Path, holdout_file: str | Path, dev_articles: int,
                     test_articles: int, seed: int = 0) -> dict[str, Any]:
    """Write ``train.json``, ``dev.json``, ``test.json`` (SQuAD v1.1 JSON) and ``split.json`` into ``out_dir``.

    The sorted titles of ``holdout_file`` are shuffled with ``numpy.random.default_rng(seed)``; the first
    ``dev_articles`` go to dev, the next ``test_articles`` to test, and the rest plus every article of the other
    ``files`` to train (``holdout_file`` is added first to ``files`` when not listed). Articles keep their input order
    and content. Same inputs and seed give byte-identical outputs. Returns the summary written to ``split.json``.
    """
    paths = [Path(f) for f in files]
    holdout = next((p for p in paths if _same_file(p, Path(holdout_file))), Path(holdout_file))
    if holdout not in paths:
        paths.insert(0, holdout)
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise PolytaskError(f"a file is listed twice in {[str(p) for p in paths]}: its articles would count twice")
    for name, count in (("dev_articles", dev_articles), ("test_articles", test_articles)):
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise PolytaskError(f"{name} must be an integer >= 0, got {count!r}")
    out = Path(out_dir)
    for name in (*SPLITS, "split"):
        target = (out / f"{name}.json").resolve()
        if target in resolved:
            raise PolytaskError(f"writing {out / f'{name}.json'} would overwrite an input file; choose another --out")
    articles = {p: _load(str(p))[0] for p in paths}  # validates every file before anything is written

    titles = sorted({a["title"] for a in articles[holdout]})
    if dev_articles + test_articles > len(titles):
        raise PolytaskError(f"dev_articles + test_articles = {dev_articles + test_articles} exceeds the "
                            f"{len(titles)} articles (distinct titles) of {holdout}")
    shuffled = [titles[i] for i in np.random.default_rng(seed).permutation(len(titles))]
    split_of = {t: "dev" for t in shuffled[:dev_articles]}
    split_of.update({t: "test" for t in shuffled[dev_articles : dev_articles + test_articles]})

    chosen: dict[str, list[tuple[Path, dict[str, Any]]]] = {s: [] for s in SPLITS}
    for path in paths:
        is_holdout = path == holdout
        for article in articles[path]:
            title = article["title"]
            if not is_holdout and title in split_of:
                raise PolytaskError(f"article {title!r} of {path} has the title of a {split_of[title]} article of "
                                    f"{holdout}: it would leak into train; remove it or hold out another file")
            chosen[split_of.get(title, "train") if is_holdout else "train"].append((path, article))

    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "seed": seed,
        "arguments": {"files": [str(p) for p in files], "holdout_file": str(holdout_file),
                      "dev_articles": dev_articles, "test_articles": test_articles, "seed": seed},
        "inputs": [{"file": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in paths],
        "splits": {},
    }
    for name in SPLITS:
        picked = [article for _, article in chosen[name]]
        _write_atomic(out / f"{name}.json", {"version": "1.1", "data": picked})
        summary["splits"][name] = {
            "file": f"{name}.json",
            "sources": list(dict.fromkeys(str(p) for p, _ in chosen[name])),
            "titles": list(dict.fromkeys(a["title"] for a in picked)),
            **_counts(picked),
        }
    _write_atomic(out / "split.json", summary)  # last: its presence means the three data files are complete
    return summary


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _counts(articles: list[dict[str, Any]]) -> dict[str, int]:
    paragraphs = [p for a in articles for p in a["paragraphs"]]
    return {"articles": len(articles), "paragraphs": len(paragraphs),
            "questions": sum(len(p["qas"]) for p in paragraphs)}


def _write_atomic(path: Path, document: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path``, then rename: a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(document, ensure_ascii=False) + "\n", encoding="utf-8", newline="\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m polytask.data.squad split --holdout F --dev N --test M [--seed S] --out DIR FILE...``"""
    parser = argparse.ArgumentParser(prog="python -m polytask.data.squad", description="SQuAD JSON utilities")
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="split SQuAD files by article into train/dev/test")
    split.add_argument("files", nargs="+", metavar="FILE", help="SQuAD v1.1 JSON files (all go to train but ...)")
    split.add_argument("--holdout", required=True, help="... the file whose articles also give dev and test")
    split.add_argument("--dev", type=int, required=True, help="number of held-out articles for dev")
    split.add_argument("--test", type=int, required=True, help="number of held-out articles for test")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    try:
        summary = split_by_article(args.files, args.out, args.holdout, args.dev, args.test, args.seed)
    except PolytaskError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'split':<6} {'articles':>9} {'paragraphs':>11} {'questions':>10}")
    for name, counts in summary["splits"].items():
        print(f"{name:<6} {counts['articles']:>9,} {counts['paragraphs']:>11,} {counts['questions']:>10,}")
    print(f"written to {args.out}")
    return 0
