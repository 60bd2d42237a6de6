"""Read every source of a run config, fit label spaces on train, and tokenise the requested splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from polytask.config import RunConfig
from polytask.data.dataset import SourceSplit, build_split, read_source_split
from polytask.tasks import Task, build_task

log = logging.getLogger("polytask")


@dataclass
class MultiTaskData:
    tasks: dict[str, Task]
    sources: dict[str, list[str]]  # source -> the tasks it labels
    splits: dict[str, dict[str, SourceSplit]] = field(default_factory=dict)  # split -> source -> data

    def sizes(self, split: str = "train") -> dict[str, int]:
        return {name: len(s) for name, s in self.splits.get(split, {}).items()}


def build_tasks(cfg: RunConfig) -> dict[str, Task]:
    return {name: build_task(name, params) for name, params in cfg.tasks.items()}  # type: ignore[arg-type]


def load_data(cfg: RunConfig, tokenizer, splits: tuple[str, ...] = ("train", "validation", "test"),
              tasks: dict[str, Task] | None = None) -> MultiTaskData:
    """``tasks`` given (a loaded checkpoint): their label spaces are kept; otherwise they are fitted on train."""
    sources = cfg.sources_of()
    fit = tasks is None
    tasks = tasks if tasks is not None else build_tasks(cfg)
    data = MultiTaskData(tasks=tasks, sources=sources)
    wanted = tuple(dict.fromkeys((("train",) if fit else ()) + tuple(splits)))
    for split in wanted:
        data.splits[split] = {}
    for source, names in sources.items():
        ds = cfg.datasets[source]
        rows = {split: read_source_split(ds, split, cfg.train.seed) for split in wanted}
        if fit:
            for name in names:
                task = tasks[name]
                values = [(r.values.get(task.params.label), r) for r in rows["train"]]
                task.fit([(v, r) for v, r in values if not task.is_missing(v)])
        for split in wanted:
            if not rows[split]:
                continue
            built = build_split(source, split, rows[split], ds, {n: tasks[n] for n in names}, tokenizer,
                                cfg.encoder.max_length)
            if built.truncated:
                log.warning("%s/%s: %d of %d examples are longer than encoder.max_length=%d and were cut",
                            source, split, built.truncated, len(built), cfg.encoder.max_length)
            if built.untokenized_words:
                log.warning("%s/%s: %d words have no token after truncation/tokenisation; they are not trained on "
                            "and are predicted as O", source, split, built.untokenized_words)
            data.splits[split][source] = built
    return data
