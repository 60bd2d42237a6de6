"""Reader of line-aligned parallel text (``parallel``): line i of ``PATH.de`` and line i of ``PATH.en`` are one row.

The config's path is the files' common stem (``train: ../shared/data/multi30k/train``) and ``options.suffixes``
names the files (``[de, en]``), each becoming the column of its suffix (``text: de``, the task's ``label: en``).
The files must have the same number of lines (else an error names both files and both counts: a shifted file would
pair every later sentence with the wrong translation), and no line may be empty (an error naming the file and line).
"""

from __future__ import annotations

from polytask.data.readers import (READER_FILES, ReaderOptions, _existing_file, _numbered_lines, _read_text, _reader,
                                   _require_rows)
from polytask.data.rows import Row
from polytask.errors import DataError


@_reader("parallel", "encoding", "suffixes")
def read_parallel(path: str, options: ReaderOptions, split: str | None = None) -> list[Row]:
    """One row per line number of the files ``PATH.SUFFIX``; columns named by the suffixes."""
    if not options.suffixes:
        raise DataError("the parallel format needs the files' suffixes", file=path, field="options.suffixes",
                        allowed="e.g. options: {suffixes: [de, en]} for PATH.de and PATH.en")
    files = parallel_files(path, options)
    columns: list[list[str]] = []
    for file in files:
        lines = _numbered_lines(_read_text(_existing_file(file), options.encoding))
        for number, line in lines:
            if not line.strip():
                raise DataError("empty line: every line of a parallel file is one sentence", file=file, line=number)
        columns.append([line for _, line in lines])
    first = files[0]
    for file, column in zip(files[1:], columns[1:]):
        if len(column) != len(columns[0]):
            raise DataError(f"the parallel files are not aligned: {first} has {len(columns[0])} lines, {file} has "
                            f"{len(column)}", file=file, allowed="files with one line per sentence, line i of each "
                                                                "the translation of line i of the others")
    rows = [Row({suffix: column[i] for suffix, column in zip(options.suffixes, columns)}, f"{first}:{i + 1}",
                first, i + 1) for i in range(len(columns[0]))]
    return _require_rows(rows, first)


def parallel_files(path: str, options: ReaderOptions) -> list[str]:
    return [f"{path}.{suffix}" for suffix in options.suffixes or []]


READER_FILES["parallel"] = parallel_files
