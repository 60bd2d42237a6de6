"""From the config's data sources to tokenised examples with every task's targets.

One *source* (a dataset entry in the config) gives one encoder input per row (a text, a text pair, or a list of
words) and labels for one or more tasks. A row that lacks a task's label is masked for that task; a row that labels
none of its source's tasks is an error (it could train nothing, and dropping it silently would hide a data bug).

All tokenisation is of plain strings with character offsets: a list of words is joined with single spaces and each
token is mapped to the word its first character falls in. Training and inference therefore tokenise identically,
and token tasks get the index of each word's first sub-word.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polytask.config import DatasetConfig
from polytask.data.readers import ReaderOptions, file_columns, read_rows
from polytask.data.rows import Row
from polytask.errors import DataError
from polytask.tasks import Task


@dataclass
class SourceSplit:
    """One split of one source, tokenised. Lists are aligned by example index."""

    source: str
    split: str
    tasks: list[str]
    rows: list[Row]
    texts: list[str]
    pairs: list[str] | None
    words: list[list[str]] | None
    word_spans: list[list[tuple[int, int]]] | None
    input_ids: list[list[int]] = field(default_factory=list)
    token_type_ids: list[list[int]] | None = None
    word_index: list[list[int]] | None = None  # per word: token index of its first sub-word, -1 if none
    targets: dict[str, list[Any]] = field(default_factory=dict)  # task -> encoded target per example (None=missing)
    golds: dict[str, list[Any]] = field(default_factory=dict)  # task -> gold for metrics (None = missing)
    truncated: int = 0  # examples longer than encoder.max_length (cut)
    untokenized_words: int = 0  # words with no token (truncated away or dropped by the tokenizer): tagged O

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


def word_spans_of(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Join words with single spaces; return the text and each word's [start, end) character span."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


def _column(rows: list[Row], column: str, path: str, required_by: str) -> None:
    if not any(column in r.values for r in rows):
        raise DataError(f"column not found (needed by {required_by})", file=path, field=column,
                        allowed="columns in this file: " + ", ".join(file_columns(rows)))


def _inputs(rows: list[Row], ds: DatasetConfig, needs_words: bool) -> tuple[list, list | None, list | None, list | None]:
    texts, pairs, words_all, spans_all = [], [] if ds.text_pair else None, [] if needs_words else None, None
    if needs_words:
        spans_all = []
    for row in rows:
        value = row.values.get(ds.text)
        if isinstance(value, list) and all(isinstance(w, str) for w in value):
            words = [w for w in value]
        elif isinstance(value, str):
            words = value.split() if needs_words else None
        else:
            raise DataError("the input must be a string or a list of words", location=row.location, field=ds.text,
                            value=value)
        if words is not None:
            if not words or any(not w or any(c.isspace() for c in w) for w in words):
                raise DataError("empty input, or a word that is empty or contains white space", location=row.location,
                                field=ds.text, value=value)
            text, spans = word_spans_of(words)
        else:
            text = value
        if not text.strip():
            raise DataError("empty input text", location=row.location, field=ds.text, value=value)
        texts.append(text)
        if words_all is not None:
            words_all.append(words)
            spans_all.append(spans)
        if pairs is not None:
            pair = row.values.get(ds.text_pair)
            if not isinstance(pair, str) or not pair.strip():
                raise DataError("the second text of a pair must be a non-empty string", location=row.location,
                                field=ds.text_pair, value=pair)
            pairs.append(pair)
    return texts, pairs, words_all, spans_all


def read_source_split(ds: DatasetConfig, split: str, seed: int) -> list[Row]:
    """Rows of one split, honouring ``validation_fraction`` (a fixed, seeded slice of train) and ``max_rows``."""
    options = ReaderOptions.model_validate(ds.options)
    carve = ds.validation_fraction and split in ("train", "validation") and not ds.validation
    path = ds.train if carve else ds.split_path(split)
    if path is None:
        return []
    rows = read_rows(ds.format, path, options, split=split if ds.format == "hf" else None)
    if carve:
        order = np.random.default_rng(seed).permutation(len(rows))
        n_val = max(1, int(round(len(rows) * ds.validation_fraction)))
        chosen = sorted(order[:n_val]) if split == "validation" else sorted(order[n_val:])
        rows = [rows[i] for i in chosen]
    limit = ds.max_rows.get(split)  # type: ignore[call-overload]
    return rows[:limit] if limit else rows


def build_split(
    source: str, split: str, rows: list[Row], ds: DatasetConfig, tasks: dict[str, Task], tokenizer: Any,
    max_length: int,
) -> SourceSplit:
    """Validate and encode every row's labels, then tokenise the inputs."""
    names = list(tasks)
    path = rows[0].file if rows else str(ds.split_path(split))
    _column(rows, ds.text, path, "the dataset's `text`")
    if ds.text_pair:
        _column(rows, ds.text_pair, path, "the dataset's `text_pair`")
    for name, task in tasks.items():
        _column(rows, task.params.label, path, f"task {name!r}")
    needs_words = any(t.level == "token" for t in tasks.values())
    texts, pairs, words, spans = _inputs(rows, ds, needs_words)
    out = SourceSplit(source, split, names, rows, texts, pairs, words, spans)

    for name, task in tasks.items():
        targets, golds = [], []
        for i, row in enumerate(rows):
            raw = row.values.get(task.params.label)
            if task.is_missing(raw):
                targets.append(None)
                golds.append(None)
                continue
            extra = {"num_words": len(words[i])} if task.level == "token" else {}  # type: ignore[index]
            golds.append(task.gold(raw, row, **extra))
            targets.append(task.encode(raw, row, **extra))
        out.targets[name], out.golds[name] = targets, golds
    for i, row in enumerate(rows):
        if all(out.targets[n][i] is None for n in names):
            raise DataError(f"the row labels none of the tasks this dataset feeds ({', '.join(names)})",
                            location=row.location, allowed="a value in at least one of the columns "
                            + ", ".join(repr(t.params.label) for t in tasks.values()))
    tokenize_split(out, tokenizer, max_length)
    return out


def tokenize_split(split: SourceSplit, tokenizer: Any, max_length: int) -> None:
    """Fill input_ids / token_type_ids / word_index. Over-long inputs are cut to ``max_length`` and counted."""
    with_offsets = split.words is not None
    full = tokenizer(split.texts, split.pairs, truncation=False, return_offsets_mapping=with_offsets,
                     return_attention_mask=False, verbose=False)
    encodings = list(full.encodings)  # per row: ids, offsets and which text of a pair each token belongs to
    long_rows = [i for i, enc in enumerate(encodings) if len(enc.ids) > max_length]
    if long_rows:
        cut = tokenizer([split.texts[i] for i in long_rows],
                        [split.pairs[i] for i in long_rows] if split.pairs else None,
                        truncation=True, max_length=max_length, return_attention_mask=False)
        for j, i in enumerate(long_rows):
            encodings[i] = cut.encodings[j]
    split.truncated = len(long_rows)
    split.input_ids = [enc.ids for enc in encodings]
    split.token_type_ids = [enc.type_ids for enc in encodings] if "token_type_ids" in full else None
    if not with_offsets:
        return
    split.word_index, missing = [], 0
    for i, enc in enumerate(encodings):
        starts = [s for s, _ in split.word_spans[i]]  # type: ignore[index]
        index = [-1] * len(starts)
        for t, ((s, e), seq) in enumerate(zip(enc.offsets, enc.sequence_ids)):
            if e <= s or seq != 0:  # special tokens and the second text of a pair carry no word
                continue
            w = bisect_right(starts, s) - 1
            if w >= 0 and index[w] == -1:
                index[w] = t
        missing += index.count(-1)
        split.word_index.append(index)
    split.untokenized_words = missing
