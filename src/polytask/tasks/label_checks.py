"""Split-wide label checks of label-set tasks: labels training never saw, and training labels outside a fixed set.

An evaluation split (ATIS dev and test, say) may hold labels the training split lacks. By default that is an error;
it names the first such row and sums up every unseen label of the split, so one run shows the whole extent. With
``unseen_labels: count_as_wrong`` the examples are kept, scored as wrong, and the same summary is logged.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from polytask.data.examples import Example
from polytask.errors import DataError

if TYPE_CHECKING:
    from polytask.tasks.base import LabelSetTask


class UnseenLabelError(DataError):
    """Labels training never saw, in an evaluation split (the message sums up all of them)."""


def check_unseen(task: LabelSetTask, values: list[tuple[Any, Example]]) -> str | None:
    """None when every label of ``values`` (a split's labelled rows) is in the task's label set; else a note (with
    ``unseen_labels: count_as_wrong``) or a DataError naming the first row and summing up all unseen labels."""
    known = set(task.labels)
    unseen: Counter[str] = Counter()
    first: tuple[Example, str] | None = None
    rows = 0
    for raw, example in values:
        names = [n for n in task.label_names(raw, example) if n not in known]
        if names:
            rows += 1
            unseen.update(names)
            first = first or (example, names[0])
    if first is None:
        return None
    shown = ", ".join(f"{k} ({v})" for k, v in unseen.most_common(8)) + (", ..." if len(unseen) > 8 else "")
    summary = f"{rows} of {len(values)} examples hold labels training never saw: {shown}"
    if task.counts_unseen:
        return (f"task {task.name!r}: {summary}; they are scored as wrong (unseen_labels: count_as_wrong) and "
                "counted in the metric unseen_labels")
    raise UnseenLabelError(f"label not in task {task.name!r}'s label set (learned from the training split); "
                           f"{summary}; set unseen_labels: count_as_wrong on the task to score them as wrong instead",
                           location=first[0].location, field=task.params.label, value=first[1],
                           allowed=", ".join(task.labels))


def check_fixed_labels(task: LabelSetTask, values: list[tuple[Any, Example]]) -> None:
    """Training rows must use the task's fixed ``labels``: a target outside the set cannot be trained on, so
    ``count_as_wrong`` does not apply to them."""
    known = set(task.labels)
    for raw, example in values:
        for name in task.label_names(raw, example):
            if name not in known:
                raise DataError(f"a training label outside task {task.name!r}'s fixed `labels`",
                                location=example.location, field=task.params.label, value=name,
                                allowed=", ".join(task.labels))


def unseen_count(task: LabelSetTask, golds: list[Any]) -> int:
    """Examples whose gold (a label, or a list of labels / tags) holds a label outside the label set."""
    known = set(task.labels)
    return sum(any(g not in known for g in (gold if isinstance(gold, (list, tuple)) else [gold])) for gold in golds)
