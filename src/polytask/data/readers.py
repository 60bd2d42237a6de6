"""Readers: a user's labelled data file -> a list of :class:`Row`, each knowing its file and line.

A format is a name in ``READERS`` (what users write as ``format:``); its per-dataset ``options:`` are
:class:`ReaderOptions`. Files are read as bytes and decoded here, so a decoding error can name the line and byte
offset and suggest the encoding option instead of surfacing as a bare ``UnicodeDecodeError``. A UTF-8 byte order
mark at the start of a file is always dropped (GLUE MRPC files start with one).

Built-in formats:

- ``csv`` / ``tsv``: a header row (or ``column_names``); every value is a string.
- ``jsonl``: one JSON object per line; values keep their JSON types.
- ``conll``: one ``token tag`` line per word, a blank line between sentences, ``-DOCSTART-`` lines ignored.
- ``jointbert``: a folder with line-aligned ``seq.in`` (words), ``seq.out`` (tags) and ``label`` (intent).
- ``lines``: ``LABEL text...`` per line (TREC); ``COARSE:fine`` labels also give ``coarse_label``.
- ``hf``: a Hugging Face dataset, saved with ``save_to_disk`` or loaded by name.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from polytask.data.rows import Row
from polytask.errors import DataError, PolytaskError
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


# -- csv / tsv --------------------------------------------------------------------------------------------------------
_QUOTING = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE}


@_reader("csv", "encoding", "delimiter", "header", "column_names", "quoting")
def read_csv(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """Comma-separated values with a header row (or column_names); quoted fields may span lines."""
    return _read_delimited(path, options, default_delimiter=",", default_quoting="minimal")


@_reader("tsv", "encoding", "delimiter", "header", "column_names", "quoting")
def read_tsv(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """Tab-separated values with a header row (or column_names); quotes are plain text unless quoting: minimal."""
    return _read_delimited(path, options, default_delimiter="\t", default_quoting="none")


def _read_delimited(path: str, options: ReaderOptions, default_delimiter: str, default_quoting: str) -> list[Row]:
    file = _existing_file(path)
    delimiter = options.delimiter or default_delimiter
    quoting = options.quoting or default_quoting
    if not options.header and options.column_names is None:
        raise DataError("a file without a header needs `column_names` in its options", file=path,
                        field="options.column_names")
    text = _read_text(file, options.encoding)
    records = _records(text, path, delimiter, _QUOTING[quoting])
    names = _column_names(records, path, options)
    rows = []
    for start, end, fields in records:
        if len(fields) != len(names):
            raise _field_count_error(path, start, end, names, fields, delimiter, quoting)
        rows.append(Row(dict(zip(names, fields)), f"{path}:{start}", path, start))
    return _require_rows(rows, path)


def _records(text: str, path: str, delimiter: str, quoting: int) -> list[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of every non-empty record, in order.

    ``reader.line_num`` counts the physical lines consumed so far, so a record starts one line after the previous
    one ended, even when a quoted field holds newlines.
    """
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    records, previous_end = [], 0
    try:
        for fields in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if fields:  # an empty line gives []: skipped like a trailing blank line
                records.append((start, reader.line_num, fields))
    except csv.Error as exc:
        raise DataError(f"cannot parse the row: {exc}", file=path, line=previous_end + 1) from exc
    return records


def _column_names(records: list[tuple[int, int, list[str]]], path: str, options: ReaderOptions) -> list[str]:
    """Take the header off ``records`` (in place) and return the column names to use."""
    if not options.header:
        return list(options.column_names or [])
    if not records:
        raise DataError("no rows: the file is empty", file=path)
    line, _, header = records.pop(0)
    if options.column_names is not None:  # they replace the header's names, which must be as many
        if len(options.column_names) != len(header):
            raise DataError(f"options.column_names gives {len(options.column_names)} names but the header has "
                            f"{len(header)} columns", file=path, line=line, field="options.column_names",
                            value=options.column_names)
        return list(options.column_names)
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates:
        raise DataError("the header names this column more than once (set `column_names` to rename)", file=path,
                        line=line, field=duplicates[0])
    return header


def _field_count_error(path: str, start: int, end: int, names: list[str], fields: list[str], delimiter: str,
                       quoting: str) -> DataError:
    problem = (f"expected {len(names)} fields separated by {delimiter!r} ({', '.join(names)}), "
               f"found {len(fields)}")
    # Only a quoted field can hold the delimiter or run over lines: then a bare quote in the text is the likely cause.
    if quoting == "minimal" and (end > start or any(delimiter in f or "\n" in f for f in fields)):
        span = f"lines {start}-{end}" if end > start else f"line {start}"
        problem += (f"; a quote character opened a field that swallowed a delimiter or line end ({span}): if quotes "
                    "in this file are plain text, set `options: {quoting: none}`")
    return DataError(problem, file=path, line=start)


# -- jsonl ------------------------------------------------------------------------------------------------------------
@_reader("jsonl", "encoding")
def read_jsonl(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """One JSON object per line (blank lines skipped); values keep their JSON types."""
    file = _existing_file(path)
    rows = []
    for number, line in _numbered_lines(_read_text(file, options.encoding)):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} at column {exc.colno}", file=path, line=number) from exc
        if not isinstance(value, dict):
            raise DataError(f"expected a JSON object ({{...}}) per line, found {_json_kind(value)}", file=path,
                            line=number, value=value)
        rows.append(Row(value, f"{path}:{number}", path, number))
    return _require_rows(rows, path)


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


# -- conll ------------------------------------------------------------------------------------------------------------
CONLL_DEFAULT_COLUMNS = ("tokens", "tags")


@_reader("conll", "encoding", "column_names", "token_prefix")
def read_conll(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """Token-per-line NER files: first column token, last column tag; a blank line ends a sentence.

    Columns are tab-separated when a line has a tab, else white-space separated. ``-DOCSTART-`` lines are document
    separators and are skipped. U+FEFF is removed everywhere: stray byte order marks occur inside real files
    (WNUT-17 dev has one glued to a token and one alone on what should be a blank line).
    """
    file = _existing_file(path)
    names = options.column_names or list(CONLL_DEFAULT_COLUMNS)
    rows: list[Row] = []
    sentence: list[list[str]] = []
    first_line = 0
    for number, line in _numbered_lines(_read_text(file, options.encoding)):
        line = line.replace("\ufeff", "").strip()
        if not line or line.startswith("-DOCSTART-"):
            if sentence:
                rows.append(_conll_row(path, first_line, names, sentence))
            sentence = []
            continue
        if not sentence:
            first_line = number
        sentence.append(_conll_columns(path, number, line, options))
    if sentence:
        rows.append(_conll_row(path, first_line, names, sentence))
    return _require_rows(rows, path)


def _conll_columns(path: str, number: int, line: str, options: ReaderOptions) -> list[str]:
    """The columns of one word line, with the token prefix removed; only the columns the row will keep."""
    columns = [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
    if options.column_names is not None:
        if len(columns) != len(options.column_names):
            raise DataError(f"expected {len(options.column_names)} columns ({', '.join(options.column_names)}), "
                            f"found {len(columns)}", file=path, line=number, value=line)
    elif len(columns) < 2:
        raise DataError("expected a token and a tag separated by a tab or spaces, found one column", file=path,
                        line=number, value=line)
    else:
        columns = [columns[0], columns[-1]]
    prefix = options.token_prefix
    if prefix is not None:
        if not columns[0].startswith(prefix):
            raise DataError(f"the token lacks the prefix {prefix!r} set in options.token_prefix", file=path,
                            line=number, field=CONLL_DEFAULT_COLUMNS[0] if options.column_names is None
                            else options.column_names[0], value=columns[0])
        columns[0] = columns[0][len(prefix):]
    return columns


def _conll_row(path: str, line: int, names: list[str], sentence: list[list[str]]) -> Row:
    values = {name: [word[i] for word in sentence] for i, name in enumerate(names)}
    return Row(values, f"{path}:{line}", path, line)


# -- jointbert --------------------------------------------------------------------------------------------------------
JOINTBERT_FILES = ("seq.in", "seq.out", "label")


@_reader("jointbert", "encoding")
def read_jointbert(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """A folder of line-aligned seq.in (words), seq.out (tags) and label (intent), as in ATIS/SNIPS (JointBERT).

    Values: tokens, tags, intent and text (the words joined by spaces). A row's location is ``FOLDER:LINE``: the
    same line of all three files.
    """
    folder = Path(path)
    if not folder.exists():
        raise DataError("file not found (expected a folder holding seq.in, seq.out and label)", file=path)
    if not folder.is_dir():
        raise DataError("expected a folder holding seq.in, seq.out and label, found a file", file=path)
    lines = {name: _jointbert_lines(folder / name, options.encoding) for name in JOINTBERT_FILES}
    _check_aligned(folder, lines)
    rows = []
    for i, (words, tags, intent) in enumerate(zip(*(lines[n] for n in JOINTBERT_FILES)), 1):
        row = _jointbert_row(folder, i, words.split(), tags.split(), intent.strip())
        if row is not None:
            rows.append(row)
    return _require_rows(rows, path)


def _jointbert_lines(file: Path, encoding: str) -> list[str]:
    if not file.is_file():
        raise DataError("file not found (the jointbert format needs seq.in, seq.out and label in the folder)",
                        file=str(file))
    return [line for _, line in _numbered_lines(_read_text(file, encoding))]


def _check_aligned(folder: Path, lines: dict[str, list[str]]) -> None:
    expected = len(lines["seq.in"])
    for name in JOINTBERT_FILES[1:]:
        found = len(lines[name])
        if found != expected:
            raise DataError(f"{name} has {found} lines but seq.in has {expected}: the files must be line-aligned "
                            f"(line {min(found, expected) + 1} has no counterpart)", file=str(folder / name),
                            line=min(found, expected) + 1)


def _jointbert_row(folder: Path, line: int, words: list[str], tags: list[str], intent: str) -> Row | None:
    if not (words or tags or intent):  # a blank line in all three files, like a trailing one: nothing to read
        return None
    if not words:
        raise DataError("empty utterance", file=str(folder / "seq.in"), line=line)
    if len(words) != len(tags):
        raise DataError(f"{len(words)} words in seq.in but {len(tags)} tags in seq.out", file=str(folder / "seq.out"),
                        line=line, value=" ".join(tags))
    if not intent:
        raise DataError("missing intent label", file=str(folder / "label"), line=line)
    values = {"tokens": words, "tags": tags, "intent": intent, "text": " ".join(words)}
    return Row(values, f"{folder}:{line}", str(folder), line)


# -- lines (TREC) -----------------------------------------------------------------------------------------------------
@_reader("lines", "encoding")
def read_lines(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """"LABEL text..." per line (TREC): label, text, and coarse_label (before the first ":") when the label has one."""
    file = _existing_file(path)
    rows = []
    for number, line in _numbered_lines(_read_text(file, options.encoding)):
        parts = line.split(None, 1)
        if not parts:
            continue
        if len(parts) < 2:
            raise DataError("expected 'LABEL text...', found a label without text", file=path, line=number,
                            field="label", value=parts[0])
        label, text = parts[0], parts[1].strip()
        values = {"label": label, "text": text}
        if ":" in label:
            values["coarse_label"] = label.split(":", 1)[0]
        rows.append(Row(values, f"{path}:{number}", path, number))
    return _require_rows(rows, path)


# -- Hugging Face datasets --------------------------------------------------------------------------------------------
@_reader("hf", "hf_config")
def read_hf(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """A Hugging Face dataset: a folder saved with save_to_disk, else a hub name or loading script (needs a split).

    Class-label columns (and lists of them, e.g. NER tags) give their label names, not integer ids, and the id -1
    (used for unlabelled test splits) gives None, i.e. a missing label.
    """
    datasets = _import_datasets()
    if not split:
        raise DataError("the hf format needs a split name (train, validation, ...)", location=f"hf:{path}")
    where = f"hf:{path}[{split}]"
    data = _load_hf(datasets, path, options.hf_config, split, where)
    columns = data.to_dict()
    decoders = {name: _label_decoder(feature) for name, feature in data.features.items()}
    for name, decode in decoders.items():
        if decode is not None:
            columns[name] = [decode(v) for v in columns[name]]
    names = list(columns)
    rows = [Row(dict(zip(names, values)), f"{where} row {i}", where, i)
            for i, values in enumerate(zip(*columns.values()), 1)]
    return _require_rows(rows, where)


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise PolytaskError("the hf data format needs the `datasets` package: pip install 'polytask[hf]'") from exc
    return datasets


def _load_hf(datasets: Any, path: str, config: str | None, split: str, where: str) -> Any:
    local = Path(path)
    if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
        return _from_disk(datasets, path, config, split, where)
    if path.startswith((".", "/", "~")) and not local.exists():  # clearly meant as a local path, not a hub name
        raise DataError("file not found", file=path)
    try:
        return datasets.load_dataset(path, config, split=split)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ValueError...)
        raise DataError(f"could not load the Hugging Face dataset {path!r}"
                        f"{f' (config {config!r})' if config else ''}: {type(exc).__name__}: {exc}. Check the name, "
                        "config and split; offline (HF_DATASETS_OFFLINE=1) only cached datasets load",
                        location=where) from exc


def _from_disk(datasets: Any, path: str, config: str | None, split: str, where: str) -> Any:
    if config is not None:
        raise DataError("hf_config applies to hub datasets only, not to a folder saved with save_to_disk",
                        location=where, field="options.hf_config", value=config)
    data = datasets.load_from_disk(path)
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise DataError("split not found in the saved dataset", location=where, field="split", value=split,
                            allowed=", ".join(data))
        return data[split]
    return data  # a single saved Dataset is the split itself


def _label_decoder(feature: Any) -> Callable[[Any], Any] | None:
    """A function turning class-label ids into names for this feature, or None when it holds no class labels."""
    names = getattr(feature, "names", None)
    if type(feature).__name__ == "ClassLabel" and names is not None:
        return lambda v: None if v is None or v < 0 else names[v]
    inner = getattr(feature, "feature", None)  # List / Sequence / LargeList of something
    decode = _label_decoder(inner) if inner is not None and not isinstance(inner, dict) else None
    if decode is None:
        return None
    return lambda v: None if v is None else [decode(x) for x in v]
