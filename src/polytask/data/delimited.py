"""``csv`` and ``tsv`` readers: a header row (or ``column_names``), every value a string; records may span lines
(quoted fields), and a record with the wrong number of fields names its lines."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from polytask.data.readers import ReaderOptions, _existing_file, _read_text, _reader, _require_rows
from polytask.data.rows import Row
from polytask.errors import DataError

if TYPE_CHECKING:
    from _csv import _QuotingType  # typeshed's Literal of the csv.QUOTE_* values, which csv.reader requires



# -- csv / tsv --------------------------------------------------------------------------------------------------------
_QUOTING: dict[str, _QuotingType] = {"minimal": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE}


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


def _records(text: str, path: str, delimiter: str, quoting: _QuotingType) -> list[tuple[int, int, list[str]]]:
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
