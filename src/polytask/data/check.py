"""What ``polytask validate`` does with the data: read every split of every dataset and check it, without a
tokenizer and without weights, collecting every problem instead of stopping at the first.

Per dataset and split: the file reads (format, encoding, shape), the columns the tasks need exist, every row gives a
valid input (``InputSpec.example``), the label sets fit on train, and every label passes its task's checks
(``Task.check_values``, ``Task.gold``: label types, BIO tags, labels training never saw, answer offsets, entity
spans). What needs the tokenizer (truncation counts, a QA context too long for ``doc_stride: null``) is left to
training. At most ``PER_SPLIT`` problems are listed per dataset and split, with a count of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from polytask.config import SPLITS, DatasetConfig, RunConfig
from polytask.data.dataset import check_columns, input_groups, needs_words, read_source_split
from polytask.data.examples import Example
from polytask.data.loading import build_tasks
from polytask.data.rows import Row
from polytask.errors import DataError
from polytask.tasks import Task
from polytask.tasks.label_checks import UnseenLabelError

PER_SPLIT = 10


@dataclass
class DataReport:
    """Rows read per dataset and split, notes (repairs, unseen labels) and problems, each a line of text."""

    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class _Problems:
    """The problems of one dataset split: deduplicated, at most PER_SPLIT kept, the rest counted."""

    def __init__(self, where: str) -> None:
        self.where, self.more = where, 0
        self.kept: dict[str, None] = {}  # insertion-ordered set

    def add(self, exc: DataError) -> None:
        text = f"{self.where}: {exc}"
        if text in self.kept:
            return
        if len(self.kept) < PER_SPLIT:
            self.kept[text] = None
        else:
            self.more += 1

    def lines(self) -> list[str]:
        more = [f"{self.where}: ... and {self.more} more problem(s)"] if self.more else []
        return list(self.kept) + more


def check_data(cfg: RunConfig) -> DataReport:
    """Read and check every split of every dataset of ``cfg`` (see the module docstring)."""
    tasks = build_tasks(cfg)
    report = DataReport()
    for source, names in cfg.sources_of().items():
        _check_source(cfg, source, cfg.datasets[source], {n: tasks[n] for n in names}, report)
    return report


def _check_source(cfg: RunConfig, source: str, ds: DatasetConfig, tasks: dict[str, Task], report: DataReport) -> None:
    groups = input_groups(tasks)
    found: dict[str, _Problems] = {}
    examples: dict[str, list[list[Example | None]]] = {}  # split -> per input group, one entry per row
    rows: dict[str, list[Row]] = {}
    for split in SPLITS:
        bad = found[split] = _Problems(f"{source}/{split}")
        try:
            split_rows = read_source_split(ds, split, cfg.train.seed)
            if split_rows:
                check_columns(split_rows, ds, tasks, split_rows[0].file)
        except DataError as exc:
            bad.add(exc)
            continue
        if not split_rows:
            continue
        report.rows.setdefault(source, {})[split] = len(split_rows)
        rows[split] = split_rows
        examples[split] = [[_attempt(bad, spec.example, row, i, ds.text, ds.text_pair, needs_words(tasks, group))
                            for i, row in enumerate(split_rows)] for spec, group in groups]
    fitted = _fit(tasks, groups, examples.get("train"), found["train"])
    for split, per_group in examples.items():
        golds: dict[str, list[Any]] = {}
        for (spec, group), exs in zip(groups, per_group):
            for name in group:
                if name in fitted:
                    golds[name] = _golds(tasks[name], exs, found[split])
                    report.notes += [f"{source}/{split}: {note}" for note in tasks[name].take_notes()]
        for i, row in enumerate(rows[split]):
            if golds and all(g[i] is None for g in golds.values()):
                found[split].add(DataError(f"the row labels none of the tasks this dataset feeds ({', '.join(golds)})",
                                           location=row.location))
    for bad in found.values():
        report.problems += bad.lines()


_FAILED = object()  # a gold that raised (already reported): not "unlabelled"


def _attempt(bad: _Problems, func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except DataError as exc:
        bad.add(exc)
        return None


def _fit(tasks: dict[str, Task], groups: list[Any], train: list[list[Example | None]] | None,
         bad: _Problems) -> set[str]:
    """Fit every task on the train rows; -> the tasks fitted (none without a train split). When fitting fails, each
    value is tried alone so that every bad one is reported, and the task fits on the others."""
    if train is None:
        return set()
    fitted = set()
    for (spec, group), exs in zip(groups, train):
        for name in group:
            task = tasks[name]
            values = [(e.row.values.get(task.params.label), e) for e in exs if e is not None]
            values = [(v, e) for v, e in values if not task.is_missing(v)]
            try:
                task.fit(values)
            except DataError:
                good = []
                for value in values:
                    try:
                        task.fit([value])
                        good.append(value)
                    except DataError as exc:
                        bad.add(exc)
                try:
                    task.fit(good)
                except DataError as exc:
                    bad.add(exc)
                    continue
            fitted.add(name)
    return fitted


def _golds(task: Task, examples: list[Example | None], bad: _Problems) -> list[Any]:
    """Each row's gold (None: unlabelled; _FAILED: a problem, reported); the split-wide checks first."""
    raws = [e.row.values.get(task.params.label) if e is not None else None for e in examples]
    labelled = [(raw, e) for raw, e in zip(raws, examples) if e is not None and not task.is_missing(raw)]
    params = task.params
    try:
        task.check_values(labelled)
    except UnseenLabelError as exc:  # it sums up every unseen label: the rows need not repeat it one by one
        bad.add(exc)
        task.adopt_scoring(params.model_copy(update={"unseen_labels": "count_as_wrong"}))
    except DataError as exc:
        bad.add(exc)
    try:
        return _row_golds(task, raws, examples, bad)
    finally:
        task.params = params


def _row_golds(task: Task, raws: list[Any], examples: list[Example | None], bad: _Problems) -> list[Any]:
    out: list[Any] = []
    for raw, example in zip(raws, examples):
        if example is None:
            out.append(_FAILED)
        elif task.is_missing(raw):
            out.append(None)
        else:
            try:
                out.append(task.gold(raw, example))
            except DataError as exc:
                bad.add(exc)
                out.append(_FAILED)
    return out
