"""Readers of line-oriented formats: ``jsonl``, ``conll`` (one word per line), ``jointbert`` (three line-aligned
files) and ``lines`` (``LABEL text``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polytask.data.readers import ReaderOptions, _existing_file, _numbered_lines, _read_text, _reader, _require_rows
from polytask.data.rows import Row
from polytask.errors import DataError



# -- jsonl ------------------------------------------------------------------------------------------------------------
@_reader("jsonl", "encoding", "join", "rename")
def read_jsonl(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """One JSON object per line (blank lines skipped); values keep their JSON types. ``rename`` renames columns
    where a file has them (DialogSum's test ``summary1`` is train's ``summary``); ``join`` joins a column's list of
    strings into one text with its separator (SciTLDR's ``source``: a list of sentences)."""
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
        rows.append(Row(_reshape(value, options, path, number), f"{path}:{number}", path, number))
    return _require_rows(rows, path)


def _reshape(value: dict[str, Any], options: ReaderOptions, path: str, number: int) -> dict[str, Any]:
    """One record with ``options.rename`` and ``options.join`` applied."""
    for old, new in (options.rename or {}).items():
        if old in value:
            if new in value:
                raise DataError(f"cannot rename column {old!r} to {new!r}: the record has both", file=path,
                                line=number, field=old)
            value[new] = value.pop(old)
    for column, separator in (options.join or {}).items():
        items = value.get(column)
        if isinstance(items, list):
            if not all(isinstance(item, str) for item in items):
                raise DataError("join: expected a list of strings", file=path, line=number, field=column,
                                value=items)
            value[column] = separator.join(items)
    return value


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


# -- conll ------------------------------------------------------------------------------------------------------------
CONLL_DEFAULT_COLUMNS = ("tokens", "tags")


@_reader("conll", "encoding", "column_names", "token_prefix")
def read_conll(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """Token-per-line NER files: first column token, last column tag; a blank line ends a sentence.

    Columns are tab-separated when a line has a tab, else white-space separated. Every word line has as many columns
    as ``column_names`` (or, without it, as the file's first word line): a line with more, say ``New York B-city``
    in a two-column file, is an error naming the line, never a word silently dropped. A column of a tab-separated
    line that holds white space is an error too (a word cannot hold white space). ``-DOCSTART-`` lines are document
    separators and are skipped. U+FEFF is removed everywhere: stray byte order marks occur inside real files
    (WNUT-17 dev has one glued to a token and one alone on what should be a blank line).
    """
    file = _existing_file(path)
    names = options.column_names or list(CONLL_DEFAULT_COLUMNS)
    rows: list[Row] = []
    sentence: list[list[str]] = []
    first_line = 0
    expected: tuple[int, int] | None = None  # (columns of the file's first word line, its line number)
    for number, line in _numbered_lines(_read_text(file, options.encoding)):
        line = line.replace("\ufeff", "").strip()
        if not line or line.startswith("-DOCSTART-"):
            if sentence:
                rows.append(_conll_row(path, first_line, names, sentence))
            sentence = []
            continue
        if not sentence:
            first_line = number
        columns = _conll_columns(path, number, line, options, expected)
        expected = expected or (len(columns), number)
        sentence.append(_conll_keep(path, number, columns, options))
    if sentence:
        rows.append(_conll_row(path, first_line, names, sentence))
    return _require_rows(rows, path)


def _conll_columns(path: str, number: int, line: str, options: ReaderOptions,
                   expected: tuple[int, int] | None) -> list[str]:
    """The columns of one word line, checked: their count (``column_names``, else the first word line's) and no
    white space inside a tab-separated column."""
    tabbed = "\t" in line
    columns = [c.strip() for c in line.split("\t")] if tabbed else line.split()
    if options.column_names is not None:
        if len(columns) != len(options.column_names):
            raise DataError(f"expected {len(options.column_names)} columns ({', '.join(options.column_names)}), "
                            f"found {len(columns)}", file=path, line=number, value=line)
    elif len(columns) < 2:
        raise DataError("expected a token and a tag separated by a tab or spaces, found one column", file=path,
                        line=number, value=line)
    elif expected is not None and len(columns) != expected[0]:
        raise DataError(f"{len(columns)} columns, but the file's first word line ({expected[1]}) has {expected[0]}: "
                        "a token holding white space would lose words here; write one word per line, or set "
                        "options.column_names when lines really have more columns", file=path, line=number,
                        value=line, allowed=f"{expected[0]} columns")
    spaced = [c for c in columns if any(ch.isspace() for ch in c)] if tabbed else []
    if spaced:
        raise DataError("a tab-separated column holds white space; a word cannot (one word per line)", file=path,
                        line=number, value=spaced[0], allowed="columns without spaces, separated by tabs")
    return columns


def _conll_keep(path: str, number: int, columns: list[str], options: ReaderOptions) -> list[str]:
    """The columns the row keeps (token and tag without ``column_names``), with the token prefix removed."""
    if options.column_names is None:
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
