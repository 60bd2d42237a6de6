"""Read every source of a run config, fit label spaces on train, and featurise the requested splits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from polytask.config import RunConfig
from polytask.data.dataset import (FeatureSplit, assemble, check_breakdown, check_columns, check_every_row_labelled,
                                   gold_values, group_name, input_groups, make_examples, needs_words, read_source_split)
from polytask.tasks import Task, build_task

log = logging.getLogger("polytask")


@dataclass
class MultiTaskData:
    tasks: dict[str, Task]
    sources: dict[str, list[str]]  # source -> the tasks it labels
    splits: dict[str, dict[str, FeatureSplit]] = field(default_factory=dict)  # split -> input group -> data
    breakdown: dict[str, str] = field(default_factory=dict)  # source -> the column its evaluation is split by


def build_tasks(cfg: RunConfig) -> dict[str, Task]:
    """The config's tasks, each bound to the input spec it reads from its dataset."""
    tasks = {}
    for name, params in cfg.tasks.items():
        task = build_task(name, params)  # type: ignore[arg-type]
        task.input = task.input_spec(cfg.datasets[params.dataset])  # type: ignore[attr-defined]
        tasks[name] = task
    return tasks


def load_data(cfg: RunConfig, tokenizer, splits: tuple[str, ...] = ("train", "validation", "test"),
              tasks: dict[str, Task] | None = None, fit: bool | None = None,
              keep: set[str] | frozenset[str] = frozenset()) -> MultiTaskData:
    """Featurise ``splits``. ``tasks`` given (a loaded checkpoint): their label spaces and input specs are kept
    unless ``fit``; otherwise they are built from the config and fitted on train, except those in ``keep`` (label
    spaces that came from a checkpoint)."""
    sources = cfg.sources_of()
    fit = tasks is None if fit is None else fit
    tasks = tasks if tasks is not None else build_tasks(cfg)
    for task in tasks.values():  # tasks that tokenise targets or write text keep the tokenizer
        task.bind_tokenizer(tokenizer)
    breakdown = {s: str(cfg.datasets[s].breakdown) for s in sources if cfg.datasets[s].breakdown}
    data = MultiTaskData(tasks=tasks, sources=sources, breakdown=breakdown)
    wanted = tuple(dict.fromkeys((("train",) if fit else ()) + tuple(splits)))
    for split in wanted:
        data.splits[split] = {}
    for source, names in sources.items():
        ds = cfg.datasets[source]
        own = {n: tasks[n] for n in names}
        groups = input_groups(own)
        rows = {split: read_source_split(ds, split, cfg.train.seed) for split in wanted}
        examples = {}
        for split, split_rows in rows.items():
            if split_rows:
                check_columns(split_rows, ds, own, split_rows[0].file)
                check_breakdown(split_rows, ds)
                examples[split] = [make_examples(split_rows, ds, spec, needs_words(own, group))
                                   for spec, group in groups]
        if fit and "train" in examples:
            for (spec, group), exs in zip(groups, examples["train"]):
                for n in group:
                    if n in keep:
                        continue
                    task = tasks[n]
                    values = [(e.row.values.get(task.params.label), e) for e in exs]
                    task.fit([(v, e) for v, e in values if not task.is_missing(v)])
        for split, per_group in examples.items():
            golds = {n: gold_values(tasks[n], exs) for (spec, group), exs in zip(groups, per_group) for n in group}
            for n in names:  # BIO repairs, labels training never saw: one line per task and split, never silent
                for note in tasks[n].take_notes():
                    log.warning("%s/%s: %s", source, split, note)
            check_every_row_labelled(rows[split], golds, tasks)
            for (spec, group), exs in zip(groups, per_group):
                name = group_name(source, group, len(groups) > 1)
                featurized = spec.featurize(exs, tokenizer, cfg.encoder.max_length, needs_words(own, group))
                built = assemble(name, source, split, spec, tasks, group, exs, featurized,
                                 {n: golds[n] for n in group})
                _warn(built, cfg.encoder.max_length)
                data.splits[split][name] = built
    return data


def _warn(built: FeatureSplit, max_length: int) -> None:
    where = f"{built.name}/{built.split}"
    if built.truncated:
        log.warning("%s: %d of %d examples are longer than encoder.max_length=%d and were cut", where,
                    built.truncated, len(built), max_length)
    if built.untokenized_words:
        log.warning("%s: %d words have no token after truncation/tokenisation; they are not trained on and are "
                    "predicted as O", where, built.untokenized_words)
    for note in built.notes:
        log.info("%s: %s", where, note)
