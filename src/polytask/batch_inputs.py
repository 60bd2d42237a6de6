"""The input side of ``polytask predict --input`` (``polytask.batch_predict``, whose docstring gives the formats):
``.txt``, ``.jsonl`` and ``.csv`` files read lazily into ``InputRow``s (a text, a pair, two marked entities or a
dialogue turn, with its line number), every bad line a ``DataError`` naming file, line and field; ``chunked`` and
``count_lines`` for streaming. ``polytask.batch_predict`` re-exports these names."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from polytask.errors import DataError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv"}


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
