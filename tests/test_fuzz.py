"""Fuzzing (fast tier, bounded examples): every data reader on random bytes and random rows raises a named
``DataError`` or returns rows, never another exception; the server's request models and the whole API under
schemathesis answer every generated request without a 5xx and as the OpenAPI schema says."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polytask.data.readers import READERS, read_rows
from polytask.data.rows import Row
from polytask.errors import DataError, PolytaskError

# examples per test: small in CI; POLYTASK_FUZZ_EXAMPLES=1000 for a longer hunt
EXAMPLES = int(os.environ.get("POLYTASK_FUZZ_EXAMPLES", "40"))
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,  # CI sees one fixed set
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# characters that matter to some format: delimiters, quotes, brackets, markers, BOM, NUL, non-ASCII
PIECES = [",", "\t", " ", "\n", "\r\n", '"', "'", "{", "}", "[", "]", ":", "-DOCSTART-", "B-", "I-", "O", "<e1>",
          "</e1>", "<e2>", "</e2>", "\ufeff", "\x00", "é", "中", "😀", "label", "text", "1", "-1", "0.5"]
structured_text = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=40).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 50) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["text", "label", "tokens", "entities", "relations", "type", "start", "end", "head", "tail",
                         "data", "paragraphs", "context", "qas", "question", "answers", "answer_start", "id",
                         "title", "tags", "version"]) | st.text(max_size=5), inner, max_size=5),
    max_leaves=25)
# what each reader gets: raw bytes, structured text, or JSON (as a document, or one value per line)
contents = st.one_of(st.binary(max_size=300), structured_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
                     json_values.map(lambda v: json.dumps(v).encode()),
                     st.lists(json_values, max_size=5).map(lambda vs: "\n".join(map(json.dumps, vs)).encode()))
# formats whose path is a folder, and the files it holds
FOLDERS = {"jointbert": ("seq.in", "seq.out", "label"), "hf": ("state.json", "dataset_info.json", "data.arrow")}


def _read(fmt: str, folder: Path, data: list[bytes]) -> list[Row] | None:
    if fmt in FOLDERS:
        path = folder / "data"
        path.mkdir()
        for name, content in zip(FOLDERS[fmt], data):
            (path / name).write_bytes(content)
    else:
        path = folder / f"data.{fmt}"
        path.write_bytes(data[0])
    try:
        return read_rows(fmt, str(path), split="train" if fmt == "hf" else None)
    except DataError as exc:
        assert str(exc), "an error must say what is wrong"
        return None


@pytest.mark.parametrize("fmt", sorted(READERS.names()))
def test_readers_raise_only_data_errors(fmt: str) -> None:
    if fmt == "hf":
        pytest.importorskip("datasets")

    @FAST
    @given(data=st.lists(contents, min_size=3, max_size=3))
    def check(data: list[bytes]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            rows = _read(fmt, Path(tmp), data)
        for row in rows or []:
            assert isinstance(row, Row) and isinstance(row.values, dict)

    check()


# ----------------------------------------------------------------------------------------------------------------------
# the server


@pytest.fixture(scope="module")
def pipe(trained):
    from polytask.inference import Pipeline

    return Pipeline.from_pretrained(trained[1].best_dir)


@pytest.fixture()
def api(pipe):
    """A fresh app per test: schemathesis keeps the lifespan of an app it drove running until the process ends."""
    from polytask.serve.app import create_app

    return create_app(pipe, max_batch=4, max_chars=60, wait_ms=1)


texts = st.one_of(st.text(max_size=70), st.sampled_from(["play music by adele now", "weather in <e1>paris</e1>",
                                                         "\ud800", "\x00\x1b", "   "]))
items = st.one_of(texts, st.tuples(texts, texts), st.lists(texts, max_size=3),
                  st.fixed_dictionaries({"question": texts, "context": texts}),
                  st.fixed_dictionaries({"text": texts, "e1": st.lists(st.integers(-5, 80), max_size=3),
                                         "e2": st.lists(st.integers(-5, 80), max_size=3)}),
                  json_values)
# well-formed bodies too, so the fuzzing reaches the model and not only the validation
good_texts = st.one_of(st.sampled_from(["play music by adele now", "weather in paris", "great movie", "x"]),
                       st.text(alphabet="abcdefghij klmnop", min_size=1, max_size=40).filter(str.strip))
good_bodies = st.fixed_dictionaries({"texts": st.lists(good_texts, min_size=1, max_size=4)},
                                    optional={"tasks": st.lists(st.sampled_from(["intent", "slots", "sentiment"]),
                                                                min_size=1, max_size=3, unique=True)})
bodies = st.one_of(
    good_bodies,
    st.fixed_dictionaries({"texts": st.lists(items, max_size=6)},
                          optional={"tasks": st.one_of(st.none(), st.lists(st.sampled_from(
                              ["intent", "slots", "sentiment", "similarity", "topics", "nope"]), max_size=3)),
                                    "other": json_values}),
    json_values)


def test_request_bodies_never_crash_the_server(api) -> None:
    """Random bodies (valid and invalid items, surrogates, control characters, wrong shapes) get 200, 404 or 422
    with the documented body, never a 5xx; the server answers a good request after all of them."""
    from fastapi.testclient import TestClient

    seen: set[int] = set()
    with TestClient(api) as client:
        @settings(FAST, max_examples=2 * EXAMPLES)
        @given(body=bodies)
        def check(body: object) -> None:
            raw = json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \\ud800 escapes
            r = client.post("/predict", content=raw, headers={"content-type": "application/json"})
            assert r.status_code in (200, 404, 422), (r.status_code, r.text)
            seen.add(r.status_code)
            answer = r.json()
            if r.status_code == 200:
                assert len(answer["predictions"]) == len(body["texts"])  # type: ignore[index]
            else:
                assert isinstance(answer["error"], str) and answer["error"]

        check()
        assert client.post("/predict", json={"texts": ["play music by adele now"]}).status_code == 200
    assert {200, 422} <= seen, f"the examples should reach the model and the validation; saw only {seen}"


def test_schemathesis_finds_no_server_error(api) -> None:
    """The whole API in process, driven by its own OpenAPI schema: positive and negative examples (bounded), no 5xx,
    every status code documented, every body as its schema says."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                                   response_schema_conformance, status_code_conformance)

    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    schema.config.generation.update(modes=["positive", "negative"], max_examples=EXAMPLES, database="none")
    checks = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance, negative_data_rejection]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} == {"GET /health", "GET /tasks", "GET /info", "POST /predict"}
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            case.call_and_validate(checks=checks)

        check()


def test_every_reader_is_fuzzed() -> None:
    """A format added later gets fuzzed too: the parametrisation reads the registry, and needs no list here."""
    assert {"csv", "tsv", "jsonl", "conll", "jointbert", "lines", "semeval", "spert", "squad"} <= set(READERS.names())
    assert issubclass(DataError, PolytaskError)
