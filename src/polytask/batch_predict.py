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

Reading the files is ``polytask.batch_inputs``; this module predicts and writes.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.batch_inputs import (FORMATS, InputRow, chunked, count_lines, input_format,  # noqa: F401
                                   read_inputs)
from polytask.errors import DataError, PolytaskError

DEFAULT_CHUNK = 1024


@dataclass
class BatchResult:
    output: Path
    rows: int
    seconds: float

    @property
    def texts_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


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
