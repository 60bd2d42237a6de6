"""Batch prediction over a file: every task on every row, streamed in bounded memory.

    polytask predict runs/x/best --input texts.jsonl --output predictions.jsonl

Input formats (chosen by the file suffix):

- ``.txt``: one text per line.
- ``.jsonl``: one JSON object per line with the text under ``text_field`` (default ``text``); an object that also
  has ``pair_field`` (default ``text_pair``, a string) is a text pair and gets the pair tasks (a QA model reads
  (question, context) pairs); an object with ``e1`` and ``e2`` ([start, end] character spans of the text) is an
  entity pair for relation classification.
- ``.csv``: a header row naming the columns, then one row per text; a non-empty ``pair_field`` cell makes the row a
  text pair.

Every line (csv: record) is one input row; a blank line, an empty text or a missing field is a ``DataError`` naming
the file, line and field: nothing is skipped silently, so output row i always answers input row i. Each row gets
every selected task that reads its kind of input (``polytask.data.inputs.input_kind``: single texts, pairs, or texts
with two marked entities, which may also be written inline as ``<e1>..</e1>`` / ``<e2>..</e2>``); a row whose kind
no selected task reads is an error too.

The input is read lazily and processed ``chunk_size`` rows at a time (bounded memory whatever the file size); each
output line ``{"line": N, "text": ..., ["text_pair": ...,] TASK: prediction, ...}`` is written as soon as its chunk
is done, into a temporary file beside ``output`` that replaces ``output`` only when every row succeeded (an error
leaves no partial file). ``line`` is the input's line number (csv: the line its record starts on, the header being
line 1), the same number errors give.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from polytask.errors import DataError, PolytaskError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv"}
DEFAULT_CHUNK = 1024


@dataclass(frozen=True)
class InputRow:
    """One input row: its line number in the file, its text, and a second text (pair tasks) or the character spans
    of two entities (relation classification)."""

    line: int
    text: str
    pair: str | None = None
    entities: tuple[Any, Any] | None = None
    dialogue: dict[str, Any] | None = None  # a .jsonl row with "history": the dialogue input's other keys

    @property
    def item(self) -> Any:
        """The row as a Pipeline input."""
        if self.dialogue is not None:
            return {"text": self.text, **self.dialogue}
        if self.entities is not None:
            return {"text": self.text, "e1": self.entities[0], "e2": self.entities[1]}
        return self.text if self.pair is None else (self.text, self.pair)


@dataclass
class BatchResult:
    output: Path
    rows: int
    seconds: float

    @property
    def texts_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def input_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"unknown input format {suffix or '(no suffix)'!r}", file=str(path),
                        allowed=", ".join(FORMATS))
    return FORMATS[suffix]


# -- reading ----------------------------------------------------------------------------------------------------------
def _lines(handle: BinaryIO, file: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line without its end), lazily. Splits on b"\\n" only (a U+2028 inside a text
    must not start a new row); a UTF-8 byte order mark at the start is dropped."""
    for number, raw in enumerate(handle, 1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"cannot decode byte(s) 0x{raw[exc.start:exc.end].hex(' ')} at byte {exc.start + 1} of "
                            f"the line as utf-8: {exc.reason} (save the file as UTF-8)", file=file,
                            line=number) from None
        if text.endswith("\n"):
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
        yield number, text


def _check_text(value: Any, file: str, line: int, field: str | None, what: str = "text") -> str:
    if not isinstance(value, str):
        raise DataError(f"expected a string, found {type(value).__name__}", file=file, line=line, field=field,
                        value=value)
    if not value.strip():
        raise DataError(f"empty {what}: every row needs one (remove the row, or fill it in)", file=file, line=line,
                        field=field)
    return value


def _read_txt(handle: BinaryIO, file: str) -> Iterator[InputRow]:
    for number, text in _lines(handle, file):
        if not text.strip():
            raise DataError("blank line: a .txt input holds one text per line and blank lines are not skipped "
                            "(remove it)", file=file, line=number)
        yield InputRow(number, text)


def _read_jsonl(handle: BinaryIO, file: str, text_field: str, pair_field: str | None) -> Iterator[InputRow]:
    for number, line in _lines(handle, file):
        if not line.strip():
            raise DataError("blank line: a .jsonl input holds one JSON object per line (remove it)", file=file,
                            line=number)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} at column {exc.colno}", file=file, line=number) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object ({{...}}), found {type(obj).__name__}", file=file, line=number)
        if text_field not in obj:
            raise DataError(f"missing field (available keys: {', '.join(map(repr, obj)) or 'none'}; choose the text "
                            "field with --text-field)", file=file, line=number, field=text_field)
        text = _check_text(obj[text_field], file, number, text_field)
        pair = obj.get(pair_field) if pair_field else None
        if pair is not None:
            pair = _check_text(pair, file, number, pair_field, "text pair")
        entities = (obj["e1"], obj["e2"]) if "e1" in obj and "e2" in obj else None
        dialogue = ({k: obj[k] for k in ("history", "previous_state", "service") if k in obj}
                    if "history" in obj else None)
        yield InputRow(number, text, pair, entities, dialogue)


def _read_csv(handle: BinaryIO, file: str, text_field: str, pair_field: str | None) -> Iterator[InputRow]:
    physical = _lines(handle, file)
    reader = csv.reader((line + "\n" for _, line in physical), strict=True)
    previous_end = 0
    try:
        header = next(reader, None)
        if header is None:
            raise DataError("empty file: a .csv input needs a header row naming its columns", file=file)
        previous_end = reader.line_num
        if text_field not in header:
            raise DataError(f"no such column in the header (columns: {', '.join(map(repr, header))}; choose the "
                            "text column with --text-field)", file=file, line=1, field=text_field)
        text_at = header.index(text_field)
        pair_at = header.index(pair_field) if pair_field and pair_field in header else None
        for fields in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not fields:
                raise DataError("blank line: every line after the header is one row (remove it)", file=file,
                                line=start)
            if len(fields) != len(header):
                raise DataError(f"expected {len(header)} fields ({', '.join(header)}), found {len(fields)}",
                                file=file, line=start)
            text = _check_text(fields[text_at], file, start, text_field)
            pair = fields[pair_at] if pair_at is not None and fields[pair_at].strip() else None
            yield InputRow(start, text, pair)
    except csv.Error as exc:
        raise DataError(f"cannot parse the row: {exc}", file=file, line=previous_end + 1) from None


def read_inputs(path: str | Path, text_field: str = "text", pair_field: str | None = "text_pair"
                ) -> Iterator[InputRow]:
    """Lazily yield the rows of ``path`` (txt, jsonl or csv by suffix); the file stays open while iterating."""
    fmt = input_format(path)
    file = str(path)
    if not Path(path).is_file():
        raise DataError("no such file", file=file)
    with open(path, "rb") as handle:
        if fmt == "txt":
            yield from _read_txt(handle, file)
        elif fmt == "jsonl":
            yield from _read_jsonl(handle, file, text_field, pair_field)
        else:
            yield from _read_csv(handle, file, text_field, pair_field)


def chunked(rows: Iterable[InputRow], size: int) -> Iterator[list[InputRow]]:
    """Lists of at most ``size`` rows, pulled from ``rows`` one chunk at a time."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def count_lines(path: str | Path) -> int:
    """Lines of a file (a last line without a newline counts), read in 1 MiB blocks: the progress bar's total."""
    count, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


# -- predicting -------------------------------------------------------------------------------------------------------
ROW_KIND = {"text": "single text", "pair": "text pair", "entities": "text with two marked entities",
            "dialogue": "dialogue turn"}
READS = {"text": "single texts", "pair": "pairs", "entities": "texts with two marked entities",
         "dialogue": "dialogue turns"}


def split_tasks(pipeline: Any, tasks: Sequence[str] | None) -> dict[str, list[str]]:
    """-> {input kind: the selected tasks reading it}; unknown names are an error listing the available ones."""
    described = pipeline.tasks
    names = list(tasks) if tasks is not None else list(described)
    unknown = [t for t in names if t not in described]
    if unknown:
        raise PolytaskError(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(described)}")
    if not names:
        raise PolytaskError("no tasks selected")
    by_kind: dict[str, list[str]] = {}
    for name in names:
        by_kind.setdefault(described[name]["input"], []).append(name)
    return by_kind


def predict_chunk(pipeline: Any, chunk: list[InputRow], by_kind: dict[str, list[str]], file: str
                  ) -> list[dict[str, Any]]:
    """One output object per row of ``chunk``, in order; rows of each input kind go through the pipeline apart."""
    from polytask.data.inputs import KINDS, input_kind

    available = [k for k in KINDS if k in {t["input"] for t in pipeline.tasks.values()}]
    kinds = [input_kind(row.item, available) for row in chunk]
    out: list[dict[str, Any]] = []
    for row in chunk:
        obj: dict[str, Any] = {"line": row.line, "text": row.text}
        if row.pair is not None:
            obj["text_pair"] = row.pair
        if row.entities is not None:
            obj["e1"], obj["e2"] = row.entities
        out.append(obj)
    for kind in dict.fromkeys(kinds):
        idx = [i for i, k in enumerate(kinds) if k == kind]
        names = by_kind.get(kind)
        if not names:
            reads = " or ".join(READS[k] for k in by_kind)
            raise DataError(f"a {ROW_KIND[kind]}, but every selected task reads {reads} "
                            f"({', '.join(n for group in by_kind.values() for n in group)})", file=file,
                            line=chunk[idx[0]].line)
        try:
            predictions = pipeline([chunk[i].item for i in idx], tasks=names)
        except DataError as exc:  # the pipeline names "input N" of this call: name the file's line instead
            where = exc.location.removeprefix("input ")
            line = chunk[idx[int(where)]].line if where.isdigit() else chunk[idx[0]].line
            raise DataError(exc.problem, file=file, line=line, field=exc.field, value=exc.value,
                            allowed=exc.allowed) from None
        for i, prediction in zip(idx, predictions):
            out[i].update(prediction)
    return out


def predict_file(pipeline: Any, input_path: str | Path, output_path: str | Path, tasks: Sequence[str] | None = None,
                 text_field: str = "text", pair_field: str | None = "text_pair", chunk_size: int = DEFAULT_CHUNK,
                 show_progress: bool | None = None) -> BatchResult:
    """Run ``pipeline`` (a :class:`polytask.inference.Pipeline`) on every row of ``input_path``; write JSON lines to
    ``output_path`` atomically. ``show_progress=None``: a progress bar only on a terminal."""
    from polytask.tracking import progress_bar

    input_path, output_path = Path(input_path), Path(output_path)
    fmt = input_format(input_path)
    if not input_path.is_file():
        raise DataError("no such file", file=str(input_path))
    if output_path.exists() and output_path.resolve() == input_path.resolve():
        raise PolytaskError(f"{output_path}: the output would replace the input; choose another --output")
    by_kind = split_tasks(pipeline, tasks)
    total = count_lines(input_path) if fmt != "csv" else None  # csv records may span lines
    output_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output_path.name}.", suffix=".tmp", dir=output_path.parent)
    tmp = Path(tmp_name)
    started, rows = time.perf_counter(), 0
    bar = progress_bar(total, desc="predict", unit="texts", enabled=show_progress)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for chunk in chunked(read_inputs(input_path, text_field, pair_field), chunk_size):
                for obj in predict_chunk(pipeline, chunk, by_kind, str(input_path)):
                    out.write(json.dumps(obj, ensure_ascii=False) + "\n")
                out.flush()
                rows += len(chunk)
                bar.update(len(chunk))
            if rows == 0:
                raise DataError("no rows: the file is empty" + (" or holds only a header" if fmt == "csv" else ""),
                                file=str(input_path))
        os.replace(tmp, output_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return BatchResult(output_path, rows, time.perf_counter() - started)
