"""Readers: a user's labelled data file -> a list of :class:`Row`, each knowing its file and line.

A format is a name in ``READERS`` (what users write as ``format:``); its per-dataset ``options:`` are
:class:`ReaderOptions`. Files are read as bytes and decoded here, so a decoding error can name the line and byte
offset and suggest the encoding option instead of surfacing as a bare ``UnicodeDecodeError``. A UTF-8 byte order
mark at the start of a file is always dropped (GLUE MRPC files start with one).

Built-in formats:

- ``csv`` / ``tsv``: a header row (or ``column_names``); every value is a string.
- ``jsonl``: one JSON object per line; values keep their JSON types (``rename`` / ``join`` options: see
  ``read_jsonl``).
- ``conll``: one ``token tag`` line per word, a blank line between sentences, ``-DOCSTART-`` lines ignored.
- ``jointbert``: a folder with line-aligned ``seq.in`` (words), ``seq.out`` (tags) and ``label`` (intent).
- ``lines``: ``LABEL text...`` per line (TREC); ``COARSE:fine`` labels also give ``coarse_label``.
- ``hf``: a Hugging Face dataset, saved with ``save_to_disk`` or loaded by name.
- ``semeval``: SemEval-2010 Task 8 blocks (``ID<TAB>"..<e1>..</e1>..<e2>..</e2>.."``, label, comment); the markers
  become character spans ``e1`` / ``e2`` of the clean ``text``.
- ``spert``: a SpERT JSON list of sentences (``tokens``, ``entities`` or BILOU/BIO ``tags``, ``relations``).
- ``squad``: SQuAD v1.1 JSON; one row per question (id, title, context, question, answers).
- ``sgd``: Schema-Guided Dialogue folders (gzip-compressed or plain JSON); one row per user turn with its history,
  intent, requested slots, slot tags and dialogue state.

- ``parallel``: line-aligned files ``PATH.SUFFIX`` (``options.suffixes``, e.g. Multi30k's ``train.de`` and
  ``train.en``), one column per suffix.

This module holds the registry, the options and the shared decoding helpers; the formats live in
``delimited.py`` (csv, tsv), ``line_formats.py`` (jsonl, conll, jointbert, lines), ``relations.py`` (semeval,
spert), ``squad.py``, ``sgd.py``, ``parallel.py`` and ``hf.py``.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from polytask.data.rows import Row
from polytask.errors import DataError
from polytask.registry import Registry

ENCODING_HINT = ("if the file uses another encoding, set it in the dataset's options, e.g. "
                 "`options: {encoding: latin-1}`")


class ReaderOptions(BaseModel):
    """The per-dataset ``options:`` of a config. Each format uses only some of them (see ``READER_OPTIONS``)."""

    model_config = ConfigDict(extra="forbid")

    encoding: str = "utf-8"
    delimiter: str | None = None  # csv default ",", tsv default "\t"
    header: bool = True  # csv/tsv: the first row names the columns
    column_names: list[str] | None = None  # csv/tsv without (or replacing) a header; conll: one name per column
    quoting: Literal["minimal", "none"] | None = None  # csv default "minimal"; tsv "none" (GLUE has bare quotes)
    token_prefix: str | None = None  # conll: strip from every token (WikiANN writes "en:Paris")
    hf_config: str | None = None  # hf: the dataset's config name
    history_turns: int = Field(1, ge=0)  # sgd: previous turns the dialogue input reads (0: the user turn alone)
    seen_schema: str | None = None  # sgd: the training split's schema.json (services in it are "seen")
    dialogues_per_file: int | None = Field(None, ge=1)  # sgd: read only the first N dialogues of each file
    suffixes: list[str] | None = None  # parallel: one column per file PATH.SUFFIX, named by its suffix
    join: dict[str, str] | None = None  # jsonl: column -> separator joining its list of strings into one text
    rename: dict[str, str] | None = None  # jsonl: old column name -> new, where a file has the old one

    @field_validator("suffixes")
    @classmethod
    def _two_suffixes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (len(value) < 2 or len(set(value)) != len(value) or not all(value)):
            raise ValueError("suffixes must name at least two different file suffixes, e.g. [de, en]")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, latin-1, utf-16)") from None
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"the delimiter must be one character, got {value!r}")
        return value

    @field_validator("column_names")
    @classmethod
    def _distinct_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("column_names must name at least one column")
            duplicates = sorted({n for n in value if value.count(n) > 1})
            if duplicates:
                raise ValueError(f"column_names repeats {', '.join(map(repr, duplicates))}")
        return value

    @field_validator("token_prefix")
    @classmethod
    def _non_empty_prefix(cls, value: str | None) -> str | None:
        if value == "":
            raise ValueError("token_prefix must not be empty (leave it out instead)")
        return value


class Reader(Protocol):
    """A format's reader. ``split`` matters only to formats holding several splits in one place (``hf``)."""

    def __call__(self, path: str, options: ReaderOptions, split: str | None = None) -> list[Row]: ...


READERS: Registry[Reader] = Registry("data format")
READER_OPTIONS: dict[str, frozenset[str]] = {}  # format -> the options it reads; others are an error
# format -> the input spec its rows give a task that keeps the default input (built from the DatasetConfig); a
# format absent here gives the text (or text pair) input
READER_INPUTS: dict[str, Callable[[Any], Any]] = {}

# format -> the files a config path stands for (default: the path itself), for the config's file check
READER_FILES: dict[str, Callable[[str, ReaderOptions], list[str]]] = {}


def source_files(fmt: str, path: str, options: ReaderOptions) -> list[str]:
    """The files (or folders) a dataset path of format ``fmt`` reads: ``path``, or e.g. ``PATH.de``, ``PATH.en``."""
    files = READER_FILES.get(fmt)
    return files(path, options) if files is not None else [path]


def _reader(name: str, *options: str) -> Callable[[Reader], Reader]:
    """Register a built-in reader together with the options it understands."""

    def add(func: Reader) -> Reader:
        READER_OPTIONS[name] = frozenset(options)
        return READERS.register(name)(func)

    return add


# -- public entry points ----------------------------------------------------------------------------------------------
def read_rows(fmt: str, path: str, options: ReaderOptions | None = None, split: str | None = None) -> list[Row]:
    """Read every row of ``path`` in format ``fmt``.

    Raises ``UnknownNameError`` for an unknown format and ``DataError`` for a missing, empty or malformed file, or
    for options the format does not use (a silently ignored option would hide a config mistake).
    """
    reader = READERS.get(fmt)
    options = options if options is not None else ReaderOptions()
    _check_options_apply(fmt, path, options)
    return reader(str(path), options, split)


def file_columns(rows: list[Row]) -> list[str]:
    """Every column name seen in ``rows``, in order of first appearance (for "available columns" in errors)."""
    seen: dict[str, None] = {}
    for row in rows:
        for name in row.values:
            seen.setdefault(name, None)
    return list(seen)


def _check_options_apply(fmt: str, path: str, options: ReaderOptions) -> None:
    used = READER_OPTIONS.get(fmt)
    if used is None:  # a plugin reader registered without the helper: it checks its own options
        return
    unused = sorted(options.model_fields_set - used)
    if unused:
        raise DataError(f"option(s) {', '.join(unused)} do not apply to the {fmt} format", file=path,
                        field="options", allowed=", ".join(sorted(used)) or "(none)")


# -- shared helpers ---------------------------------------------------------------------------------------------------
def _existing_file(path: str) -> Path:
    file = Path(path)
    if not file.exists():
        raise DataError("file not found", file=path)
    if file.is_dir():
        raise DataError("is a folder, expected a file", file=path)
    return file


def _read_text(file: Path, encoding: str) -> str:
    """Decode the whole file at once (fast), mapping a decoding error back to its line and byte offset."""
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror or exc}", file=str(file)) from exc
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _decode_error(file, raw, encoding, exc) from exc
    return text[1:] if text.startswith("\ufeff") else text


def _decode_error(file: Path, raw: bytes, encoding: str, exc: UnicodeDecodeError) -> DataError:
    # Everything before exc.start decoded fine, so decoding that prefix counts the lines correctly in any encoding.
    line = raw[: exc.start].decode(encoding, errors="replace").count("\n") + 1
    column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
    bad = raw[exc.start : exc.end].hex(" ")
    return DataError(f"cannot decode byte(s) 0x{bad} at byte offset {exc.start} (byte {column} of the line) as "
                     f"{encoding}: {exc.reason}; {ENCODING_HINT}", file=str(file), line=line)


def _numbered_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line without its end). Splits on "\\n" only: str.splitlines would also split on
    characters such as U+2028 or U+0085 that may occur inside text, and shift every later line number."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(i, line[:-1] if line.endswith("\r") else line) for i, line in enumerate(lines, 1)]


def _require_rows(rows: list[Row], where: str) -> list[Row]:
    if not rows:
        raise DataError("no rows: the file is empty or holds only a header or blank lines", location=where)
    return rows


# the built-in formats register themselves on import (after the helpers above exist: they import them)
from polytask.data import delimited, hf, line_formats, parallel, relations, sgd, squad  # noqa: E402,F401
