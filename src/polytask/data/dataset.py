"""From a dataset's rows to features: one :class:`FeatureSplit` per split and *input group*.

One dataset (a *source*) gives labels for one or more tasks. Its tasks are grouped by the input they read (equal
``InputSpec``): the rows are featurised once per group and one encoder pass per batch serves every task of the
group (SNIPS intent + slots share the text). A row that lacks a task's label is masked for that task; a row that
labels none of its dataset's tasks is an error (it could train nothing, and dropping it silently would hide a data
bug).

Training and inference featurise through the same ``InputSpec.featurize`` and ``Task.featurize`` calls, so they
tokenise identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polytask.config import DatasetConfig
from polytask.data.examples import Example, Feature, FeaturizeResult
from polytask.data.inputs import InputSpec
from polytask.data.readers import ReaderOptions, file_columns, read_rows
from polytask.data.rows import Row
from polytask.errors import DataError
from polytask.tasks import Task
from polytask.tasks.base import Fields


@dataclass
class FeatureSplit:
    """One split of one input group of one source. ``features`` are aligned with every task's ``fields``;
    ``examples`` with every task's ``golds`` (None: the row does not label the task)."""

    name: str  # the group's name: the source, or "source[task+task]" when the source has several input groups
    source: str
    split: str
    spec: InputSpec
    tasks: list[str]
    examples: list[Example]
    features: list[Feature]
    fields: dict[str, list[Fields]] = field(default_factory=dict)
    golds: dict[str, list[Any]] = field(default_factory=dict)
    truncated: int = 0  # examples longer than max_length (cut)
    untokenized_words: int = 0  # words with no token (truncated away or dropped by the tokenizer): tagged O
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def lengths(self) -> list[int]:
        return [len(f) for f in self.features]

    def by_example(self) -> list[list[int]]:
        """Feature indices of each example, in window order."""
        out: list[list[int]] = [[] for _ in self.examples]
        for i, f in enumerate(self.features):
            out[f.example].append(i)
        return out

    def trainable(self) -> list[int]:
        """Features that label at least one task of the group (the others would add nothing to any loss)."""
        labelled = [any(self.golds[n][e.index] is not None for n in self.tasks) for e in self.examples]
        return [i for i, f in enumerate(self.features) if labelled[f.example]]


def input_groups(tasks: dict[str, Task]) -> list[tuple[InputSpec, list[str]]]:
    """Tasks grouped by equal input spec, in the order of the first task of each group."""
    groups: dict[InputSpec, list[str]] = {}
    for name, task in tasks.items():
        assert task.input is not None, f"task {name!r} has no input spec bound"
        groups.setdefault(task.input, []).append(name)
    return list(groups.items())


def group_name(source: str, names: list[str], several: bool) -> str:
    return f"{source}[{'+'.join(names)}]" if several else source


def needs_words(tasks: dict[str, Task], names: Sequence[str]) -> bool:
    return any(tasks[n].needs_words for n in names)


def read_source_split(ds: DatasetConfig, split: str, seed: int) -> list[Row]:
    """Rows of one split, honouring ``validation_fraction`` (a fixed, seeded slice of train) and ``max_rows``."""
    options = ReaderOptions.model_validate(ds.options)
    # the fraction of train carved out as validation, when this split is carved from train
    carve = ds.validation_fraction if split in ("train", "validation") and not ds.validation else None
    path = ds.train if carve else ds.split_path(split)
    if path is None:
        return []
    rows = read_rows(ds.format, path, options, split=split if ds.format == "hf" else None)
    if carve:
        order = np.random.default_rng(seed).permutation(len(rows))
        n_val = max(1, int(round(len(rows) * carve)))
        chosen = sorted(order[:n_val]) if split == "validation" else sorted(order[n_val:])
        rows = [rows[i] for i in chosen]
    if split == "train" and ds.sample is not None:
        rows = sample_per_class(rows, ds.sample.column or "", ds.sample.per_class, ds.sample.seed)
    limit = ds.max_rows.get(split)  # type: ignore[call-overload]
    return rows[:limit] if limit else rows


def sample_per_class(rows: list[Row], column: str, per_class: int, seed: int) -> list[Row]:
    """``per_class`` rows of every value of ``column`` (all of a rarer class, with a warning), drawn with a seeded
    generator and kept in file order: the same rows for the same seed, whatever else runs."""
    import logging

    if rows and not any(column in r.values for r in rows):
        raise DataError("column not found (needed by the dataset's sample)", file=rows[0].file, field=column,
                        allowed="columns in this file: " + ", ".join(file_columns(rows)))
    by_class: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        value = row.values.get(column)
        if value is not None and str(value).strip():
            by_class.setdefault(str(value), []).append(i)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for value in sorted(by_class):
        members = by_class[value]
        if len(members) < per_class:
            logging.getLogger("polytask").warning("sample: class %r has %d rows, fewer than per_class=%d: all are "
                                                  "taken", value, len(members), per_class)
            chosen += members
        else:
            chosen += [members[i] for i in rng.choice(len(members), per_class, replace=False)]
    return [rows[i] for i in sorted(chosen)]


def check_columns(rows: list[Row], ds: DatasetConfig, tasks: dict[str, Task], path: str) -> None:
    """Every column the tasks' inputs and labels read exists in the file (a typo is named with the columns there)."""
    needed: dict[str, str] = {}
    for name, task in tasks.items():
        assert task.input is not None
        for column in task.input.columns(ds.text, ds.text_pair):
            needed.setdefault(column, f"the input of task {name!r}")
        for column in task.columns():
            needed.setdefault(column, f"task {name!r}")
    present = set(file_columns(rows))
    for column, by in needed.items():
        if column not in present:
            raise DataError(f"column not found (needed by {by})", file=path, field=column,
                            allowed="columns in this file: " + ", ".join(file_columns(rows)))


def check_breakdown(rows: list[Row], ds: DatasetConfig) -> None:
    """Every row has a value in the dataset's ``breakdown`` column (a row without one would fall out of it)."""
    column = ds.breakdown
    if column is None:
        return
    for row in rows:
        value = row.values.get(column)
        if value is None or isinstance(value, (list, dict)) or not str(value).strip():
            raise DataError("the dataset's breakdown column has no value here", location=row.location,
                            field=column, value=value, allowed="a string or number in every row; columns: "
                            + ", ".join(file_columns(rows)))


def make_examples(rows: list[Row], ds: DatasetConfig, spec: InputSpec, words: bool) -> list[Example]:
    return [spec.example(row, i, ds.text, ds.text_pair, words) for i, row in enumerate(rows)]


def gold_values(task: Task, examples: list[Example]) -> list[Any]:
    """The validated gold of ``task`` for each example, None where the row does not label it; the split-wide checks
    (``Task.check_values``) run first."""
    raws = [example.row.values.get(task.params.label) for example in examples]
    task.check_values([(raw, e) for raw, e in zip(raws, examples) if not task.is_missing(raw)])
    return [None if task.is_missing(raw) else task.gold(raw, example) for raw, example in zip(raws, examples)]


def assemble(name: str, source: str, split: str, spec: InputSpec, tasks: dict[str, Task], names: list[str],
             examples: list[Example], featurized: FeaturizeResult, golds: dict[str, list[Any]]) -> FeatureSplit:
    """Let each task featurise its fields on the group's features (training data and Pipeline inputs alike)."""
    out = FeatureSplit(name, source, split, spec, list(names), list(examples), featurized.features,
                       golds=golds, truncated=featurized.truncated,
                       untokenized_words=featurized.untokenized_words, notes=list(featurized.notes))
    per_example = out.by_example()
    for n in names:
        fields: list[Fields] = [{} for _ in out.features]
        for example, idx in zip(examples, per_example):
            feats = [out.features[i] for i in idx]
            for i, f in zip(idx, tasks[n].featurize(example, feats, golds[n][example.index])):
                fields[i] = f
        out.fields[n] = fields
    return out


def check_every_row_labelled(rows: list[Row], golds: dict[str, list[Any]], tasks: dict[str, Task]) -> None:
    names = list(golds)
    for i, row in enumerate(rows):
        if all(golds[n][i] is None for n in names):
            raise DataError(f"the row labels none of the tasks this dataset feeds ({', '.join(names)})",
                            location=row.location, allowed="a value in at least one of the columns "
                            + ", ".join(repr(tasks[n].params.label) for n in names))
