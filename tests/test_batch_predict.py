"""Batch prediction over files: same outputs as the Pipeline, every input format, errors that name the line and
field, atomic output, bounded memory (lazy reading, bounded chunks) and the `predict --input` command."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from polytask.batch_predict import chunked, predict_file, read_inputs
from polytask.cli import app
from polytask.errors import DataError, PolytaskError
from polytask.inference import Pipeline

TEXTS = ["what is the weather in paris today", "play music by adele queen now", "the movie was really awful",
         "news about team game", "what is the weather in oslo today"]
PAIRS = [("weather in rome", "the weather is great"), ("weather in cairo", "the weather is dreadful")]


@pytest.fixture(scope="module")
def pipe(trained) -> Pipeline:
    return Pipeline.from_pretrained(trained[1].best_dir)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples -> lists, as in the output file


def expected(pipe: Pipeline, texts: list[str], lines: list[int]) -> list[dict[str, Any]]:
    return [{"line": n, "text": t, **as_json(p)} for n, t, p in zip(lines, texts, pipe(texts))]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# -- outputs equal the Pipeline's ----------------------------------------------------------------------------------
def test_txt_equals_pipeline(pipe: Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    result = predict_file(pipe, src, tmp_path / "out.jsonl", show_progress=False)
    assert result.rows == len(TEXTS)
    got = read_jsonl(tmp_path / "out.jsonl")
    assert got == expected(pipe, TEXTS, list(range(1, len(TEXTS) + 1)))
    assert {"intent", "slots", "sentiment", "topics"} <= set(got[0]) and "similarity" not in got[0]


def test_jsonl_with_pairs_and_extra_keys(pipe: Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [{"id": i, "sentence": t} for i, t in enumerate(TEXTS)]
    rows.insert(2, {"sentence": PAIRS[0][0], "second": PAIRS[0][1]})
    rows.append({"sentence": PAIRS[1][0], "second": PAIRS[1][1], "second_unused": None})
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    predict_file(pipe, src, tmp_path / "out.jsonl", text_field="sentence", pair_field="second",
                 show_progress=False)
    got = read_jsonl(tmp_path / "out.jsonl")
    assert [g["line"] for g in got] == list(range(1, len(rows) + 1))
    singles = [g for g in got if "text_pair" not in g]
    assert singles == expected(pipe, TEXTS, [1, 2, 4, 5, 6])
    pair_rows = [g for g in got if "text_pair" in g]
    assert [(g["text"], g["text_pair"]) for g in pair_rows] == PAIRS
    want = pipe(PAIRS)
    assert [{k: v for k, v in g.items() if k not in ("line", "text", "text_pair")} for g in pair_rows] == as_json(want)
    assert set(pair_rows[0]) == {"line", "text", "text_pair", "similarity"}


def test_csv_equals_pipeline_with_quoted_multiline_field(pipe: Pipeline, tmp_path: Path) -> None:
    texts = TEXTS[:2] + ["the movie was,\nreally \"great\""] + TEXTS[2:]
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[str(i), t] for i, t in enumerate(texts)])
    predict_file(pipe, src, tmp_path / "out.jsonl", tasks=["intent", "sentiment"], show_progress=False)
    got = read_jsonl(tmp_path / "out.jsonl")
    # header is line 1; the quoted record spans lines 4-5, so the next row starts on line 6
    assert [g["line"] for g in got] == [2, 3, 4, 6, 7, 8]
    want = pipe(texts, tasks=["intent", "sentiment"])
    assert got == [{"line": g["line"], "text": t, **as_json(p)} for g, t, p in zip(got, texts, want)]


def test_chunks_cover_every_row_in_order(pipe: Pipeline, tmp_path: Path) -> None:
    texts = [TEXTS[i % len(TEXTS)] + f" {i}" for i in range(23)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts), encoding="utf-8")  # no final newline: the last line still counts
    predict_file(pipe, src, tmp_path / "out.jsonl", chunk_size=5, show_progress=False)
    got = read_jsonl(tmp_path / "out.jsonl")
    whole = pipe(texts)
    assert [g["text"] for g in got] == texts and [g["line"] for g in got] == list(range(1, 24))
    for g, p in zip(got, whole):  # other batch compositions change padding, hence only the last float digits
        assert g["intent"]["label"] == p["intent"]["label"]
        assert g["slots"]["tags"] == p["slots"]["tags"]
        assert g["sentiment"]["score"] == pytest.approx(p["sentiment"]["score"], abs=1e-5)


# -- errors --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, content, message", [
    ("in.txt", "play music\n\nplay jazz\n", "in.txt:2: blank line"),
    ("in.txt", "play music\n   \n", "in.txt:2: blank line"),
    ("in.jsonl", '{"text": "a b"}\n{"sentence": "x", "id": 3}\n', "in.jsonl:2: field 'text': missing field "
                                                                  "(available keys: 'sentence', 'id'"),
    ("in.jsonl", '{"text": "a b"}\n{"text": ""}\n', "in.jsonl:2: field 'text': empty text"),
    ("in.jsonl", '{"text": 5}\n', "in.jsonl:1: field 'text': value 5: expected a string, found int"),
    ("in.jsonl", '{"text": "a"}\n{"text": "b"\n', "in.jsonl:2: invalid JSON"),
    ("in.jsonl", '["a"]\n', "in.jsonl:1: expected a JSON object"),
    ("in.jsonl", '{"text": "a"}\n\n{"text": "b"}\n', "in.jsonl:2: blank line"),
    ("in.csv", "id,sentence\n1,hello\n", "in.csv:1: field 'text': no such column in the header "
                                          "(columns: 'id', 'sentence'"),
    ("in.csv", "id,text\n1,hello\n2,\n", "in.csv:3: field 'text': empty text"),
    ("in.csv", "id,text\n1,hello\n2,a,b\n", "in.csv:3: expected 2 fields"),
    ("in.csv", "id,text\n", "no rows: the file is empty or holds only a header"),
    ("in.txt", "", "no rows: the file is empty"),
    ("in.tsv", "text\nhello\n", "unknown input format '.tsv' (allowed: .txt, .jsonl, .csv)"),
])
def test_bad_input_names_file_line_and_field(pipe: Pipeline, tmp_path: Path, name: str, content: str,
                                             message: str) -> None:
    src = tmp_path / name
    src.write_text(content, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with pytest.raises(DataError) as info:
        predict_file(pipe, src, out, show_progress=False)
    assert message in str(info.value)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [name], "no temporary file left behind"


def test_undecodable_bytes(pipe: Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"hello\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match=r"in.txt:2: cannot decode byte\(s\) 0xe9"):
        predict_file(pipe, src, tmp_path / "out.jsonl", show_progress=False)


def test_task_selection_errors(pipe: Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a b"}\n{"text": "weather in rome", "text_pair": "the weather is great"}\n')
    with pytest.raises(PolytaskError, match="unknown task.s. nope; available: intent, slots"):
        predict_file(pipe, src, tmp_path / "out.jsonl", tasks=["nope"], show_progress=False)
    with pytest.raises(DataError, match=r"in.jsonl:2: a text pair, but every selected task reads single texts"):
        predict_file(pipe, src, tmp_path / "out.jsonl", tasks=["intent"], show_progress=False)
    with pytest.raises(DataError, match=r"in.jsonl:1: a single text, but every selected task reads pairs"):
        predict_file(pipe, src, tmp_path / "out.jsonl", tasks=["similarity"], show_progress=False)


def test_failure_keeps_the_previous_output(pipe: Pipeline, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS * 3) + "\n\n")  # the error comes after two chunks were written
    with pytest.raises(DataError, match="in.txt:16: blank line"):
        predict_file(pipe, src, out, chunk_size=4, show_progress=False)
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]


def test_output_must_not_replace_input(pipe: Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("play music\n")
    with pytest.raises(PolytaskError, match="would replace the input"):
        predict_file(pipe, src, src, show_progress=False)


# -- bounded memory ------------------------------------------------------------------------------------------------
def test_reading_is_lazy_and_chunks_are_bounded(tmp_path: Path) -> None:
    src = tmp_path / "big.txt"
    with src.open("w") as f:
        for i in range(20_000):
            f.write(f"play music by artist number {i}\n")
    rows = read_inputs(src)
    assert inspect.isgenerator(rows)
    chunks = chunked(rows, 1024)
    first = next(chunks)
    assert len(first) == 1024 and first[0].line == 1 and first[-1].line == 1024
    # the generator has not read ahead: the next row it yields is the one right after the first chunk
    assert next(rows).line == 1025
    sizes = [len(c) for c in chunked(read_inputs(src), 1024)]
    assert max(sizes) == 1024 and sum(sizes) == 20_000 and len(sizes) == 20


class RecordingPipeline:
    """Stands in for Pipeline: records how many texts each call got."""

    def __init__(self) -> None:
        self.tasks = {"intent": {"input": "text"}}
        self.calls: list[int] = []

    def __call__(self, texts: list[str], tasks: list[str] | None = None) -> list[dict[str, Any]]:
        self.calls.append(len(texts))
        return [{"intent": {"label": "x", "score": 1.0}} for _ in texts]


def test_predict_file_processes_bounded_chunks_and_streams_output(tmp_path: Path) -> None:
    src = tmp_path / "big.txt"
    src.write_text("".join(f"text {i}\n" for i in range(20_000)))
    fake = RecordingPipeline()
    out = tmp_path / "out.jsonl"
    result = predict_file(fake, src, out, chunk_size=1000, show_progress=False)
    assert result.rows == 20_000 and fake.calls == [1000] * 20
    lines = out.read_text().splitlines()
    assert len(lines) == 20_000 and json.loads(lines[-1]) == {"line": 20_000, "text": "text 19999",
                                                              "intent": {"label": "x", "score": 1.0}}


# -- command line --------------------------------------------------------------------------------------------------
def test_cli_batch_predict(trained, pipe: Pipeline, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(app, ["predict", str(trained[1].best_dir), "--input", str(src), "--output", str(out),
                                 "--tasks", "intent,slots", "--batch-size", "2"])
    assert r.exit_code == 0, r.output
    assert f"wrote {len(TEXTS)} prediction(s)" in r.output
    got = read_jsonl(out)
    want = Pipeline.from_pretrained(trained[1].best_dir, batch_size=2)(TEXTS, tasks=["intent", "slots"])
    assert got == [{"line": i, "text": t, **as_json(p)} for i, (t, p) in enumerate(zip(TEXTS, want), 1)]


def test_cli_batch_predict_bf16_and_errors(trained, tmp_path: Path) -> None:
    ckpt = str(trained[1].best_dir)
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "play music by sting now"}\n{"txt": "oops"}\n')
    runner = CliRunner()
    r = runner.invoke(app, ["predict", ckpt, "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                            "--precision", "bf16"])
    assert r.exit_code == 2
    assert "in.jsonl:2: field 'text': missing field (available keys: 'txt'" in " ".join(r.output.split())
    src.write_text('{"text": "play music by sting now"}\n')
    r = runner.invoke(app, ["predict", ckpt, "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                            "--precision", "bf16"])
    assert r.exit_code == 0, r.output
    assert "intent" in read_jsonl(tmp_path / "o.jsonl")[0]
    for args, message in ((["--input", str(src)], "--input needs --output"),
                          (["--output", "x.jsonl", "some text"], "--output needs --input"),
                          (["some text", "--input", str(src), "--output", "x.jsonl"], "not both"),
                          ([], "give at least one TEXT"),
                          (["hi", "--precision", "fp16"], "unknown precision"),
                          (["hi", "--backend", "onnx", "--precision", "bf16"], "torch backend only"),
                          (["hi", "--backend", "onnx"], "no ONNX graph")):
        r = runner.invoke(app, ["predict", ckpt, *args])
        assert r.exit_code == 2, (args, r.output)
        assert message in " ".join(r.output.split()), (args, r.output)


def test_cli_positional_texts_still_work(trained) -> None:
    r = CliRunner().invoke(app, ["predict", str(trained[1].best_dir), "play music by adele queen now",
                                 "--tasks", "intent"])
    assert r.exit_code == 0, r.output
    assert '"intent"' in r.output and '"text": "play music by adele queen now"' in r.output
