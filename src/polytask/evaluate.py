"""Per-task metrics on a split, from the same post-processing the pipeline uses; calibration (temperature fitting,
ECE) and ``min_score`` coverage on top of them."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polytask.calibration import Arrays, LogitStore, calibration_metrics, fit_task
from polytask.data.batching import collate, eval_batches
from polytask.data.dataset import FeatureSplit
from polytask.data.loading import MultiTaskData
from polytask.tasks import Task

if TYPE_CHECKING:
    from polytask.training.distributed import Shard

PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: torch.device):
    """bf16 autocast (CPU or CUDA) or nothing. On CPUs with AMX, bf16 matrix products are several times faster."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _device(model: Any) -> torch.device:
    return model.device


@torch.no_grad()
def host_outputs(model: Any, split: FeatureSplit, names: list[str], batch_size: int = 128, precision: str = "fp32",
                 features: Sequence[int] | None = None, store: LogitStore | None = None) -> dict[str, dict[int, Any]]:
    """Every task of ``names`` on ``features`` of ``split`` (default: all), in length-sorted batches -> {task:
    {feature index: the task's host output}} (what ``postprocess`` and ``soft_target`` read). ``store`` also collects
    the labelled logits of the calibrated heads (before any temperature), from the same pass."""
    was_training = model.training
    if was_training:  # Module.eval() walks every submodule: ~2 ms, a fifth of a one-text call on MiniLM
        model.eval()
    device = _device(model)
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None else 0
    task_map: dict[str, Task] = model.tasks
    host: dict[str, dict[int, Any]] = {n: {} for n in names}
    try:
        for indices in eval_batches(split, batch_size, features):
            batch = collate(split, indices, task_map, pad or 0, names).to(device)
            with autocast(precision, device):
                outputs = model(batch.inputs, batch.task_inputs, tasks=names)
            for name in names:
                for i, out in zip(indices, task_map[name].host_outputs(outputs[name])):
                    host[name][i] = out
                if store is not None:
                    store.add(name, task_map[name], outputs[name], batch.targets[name])
    finally:
        if was_training:
            model.train()
    return host


def predict_split(model: Any, split: FeatureSplit, batch_size: int = 128, precision: str = "fp32",
                  tasks: list[str] | None = None, examples: Sequence[int] | None = None,
                  store: LogitStore | None = None) -> dict[str, list[dict[str, Any]]]:
    """Predictions of ``tasks`` (default: the split's tasks) for every example of ``split`` (or for ``examples``,
    in that order): the features run through the model in length-sorted batches, then each task post-processes the
    outputs of all features of an example into one prediction. ``store``: see :func:`host_outputs`."""
    names = tasks or split.tasks
    chosen = list(range(len(split))) if examples is None else list(examples)
    per_example = split.by_example()
    host = host_outputs(model, split, names, batch_size, precision, [i for e in chosen for i in per_example[e]], store)
    task_map: dict[str, Task] = model.tasks
    result: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for e in chosen:
        example, idx = split.examples[e], per_example[e]
        feats = [split.features[i] for i in idx]
        for name in names:
            fields = [split.fields[name][i] for i in idx]
            result[name].append(task_map[name].postprocess(example, feats, fields, [host[name][i] for i in idx]))
    return result


def predict_sharded(model: Any, split: FeatureSplit, batch_size: int, precision: str, shard: Shard | None,
                    store: LogitStore | None = None, tasks: list[str] | None = None
                    ) -> dict[str, list[dict[str, Any]]]:
    """:func:`predict_split` of the whole split, each process predicting every ``world``-th example and every
    process receiving all predictions (in example order) and, into ``store``, every process's logits."""
    if shard is None:
        return predict_split(model, split, batch_size, precision, tasks=tasks, store=store)
    mine = list(range(shard.rank, len(split), shard.world))
    local_store = LogitStore() if store is not None else None
    local = predict_split(model, split, batch_size, precision, tasks=tasks, examples=mine, store=local_store)
    gathered = shard.gather([(mine, local, local_store.parts if local_store is not None else None)])
    out: dict[str, list[Any]] = {n: [None] * len(split) for n in tasks or split.tasks}
    for indices, preds, parts in gathered:
        if store is not None:
            store.merge_parts(parts)
        for name, values in preds.items():
            for i, value in zip(indices, values):
                out[name][i] = value
    return out


def score(tasks: dict[str, Task], names: list[str], predictions: dict[str, list[dict[str, Any]]],
          golds: dict[str, list[Any]]) -> tuple[dict[str, dict[str, float]], float | None]:
    """-> ({task: metrics}, share of examples whose every labelled task is exactly right, or None for one task)."""
    metrics: dict[str, dict[str, float]] = {}
    for name in names:
        pairs = [(p, g) for p, g in zip(predictions[name], golds[name]) if g is not None]
        metrics[name] = tasks[name].metrics([p for p, _ in pairs], [g for _, g in pairs])
        metrics[name]["examples"] = len(pairs)
    if len(names) < 2:
        return metrics, None
    count = len(golds[names[0]])
    right = [all(tasks[n].correct(predictions[n][i], golds[n][i]) for n in names if golds[n][i] is not None)
             for i in range(count)]
    return metrics, sum(right) / len(right) if right else 0.0


def breakdown(tasks: dict[str, Task], names: list[str], predictions: dict[str, list[dict[str, Any]]],
              golds: dict[str, list[Any]], examples: Sequence[Any], column: str) -> dict[str, dict[str, float]]:
    """``{"TASK [VALUE]": metrics}``: each task scored on the rows whose ``column`` holds VALUE (a dataset's
    ``breakdown``), values in order of first appearance."""
    by_value: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_value.setdefault(str(example.row.values.get(column)), []).append(i)
    out: dict[str, dict[str, float]] = {}
    for value, rows in by_value.items():
        subset = score(tasks, names, {n: [predictions[n][i] for i in rows] for n in names},
                       {n: [golds[n][i] for i in rows] for n in names})[0]
        out.update({f"{name} [{value}]": metrics for name, metrics in subset.items()})
    return out


def coverage(task: Task, predictions: list[dict[str, Any]]) -> float | None:
    """Share of the candidate answers (labels, spans, relations) at or above the task's ``min_score``; None
    without a threshold or without candidates."""
    gated = [g for g in (task.gate(p) for p in predictions) if g is not None]
    candidates = sum(g.candidates for g in gated)
    return sum(g.answered for g in gated) / candidates if candidates else None


def evaluate(model: Any, data: MultiTaskData, split: str = "validation", batch_size: int = 128,
             precision: str = "fp32", shard: Shard | None = None, calibration: bool = False) -> dict[str, Any]:
    """Metrics of every task on ``split``: {"tasks": {task: {metric: v}}, "sources": {source: {...}}} (and
    "breakdown": {"task [value]": {metric: v}} for a dataset with a ``breakdown`` column), computed on
    the predictions before ``min_score`` (plus ``coverage`` under it). ``calibration`` adds, for the calibrated
    heads, ``ece`` (with the task's temperature), ``ece_uncalibrated`` and ``temperature`` (``polytask.calibration``).
    With ``shard`` (several processes) each process predicts its share and every process computes the same
    metrics."""
    result: dict[str, Any] = {"split": split, "tasks": {}, "sources": {}}
    groups = data.splits.get(split, {})
    for source in dict.fromkeys(g.source for g in groups.values()):
        preds: dict[str, list[dict[str, Any]]] = {}
        golds: dict[str, list[Any]] = {}
        info: dict[str, Any] = {"examples": 0, "tasks": [], "truncated": 0}
        store = LogitStore() if calibration else None
        examples: list[Any] = []
        for group in (g for g in groups.values() if g.source == source):
            examples = group.examples  # every input group of a source holds the same rows
            preds.update(predict_sharded(model, group, batch_size, precision, shard, store))
            golds.update(group.golds)
            info["examples"] = len(group)
            info["tasks"] += group.tasks
            info["truncated"] = max(info["truncated"], group.truncated)
            if len(group.features) != len(group):
                info["features"] = info.get("features", 0) + len(group.features)
        task_metrics, all_right = score(model.tasks, info["tasks"], preds, golds)
        for name, heads in (store.arrays() if store is not None else {}).items():
            task_metrics[name].update(calibration_metrics(model.tasks[name], heads))
        for name in info["tasks"]:
            share = coverage(model.tasks[name], [p for p, g in zip(preds[name], golds[name]) if g is not None])
            if share is not None:
                task_metrics[name]["min_score"] = float(getattr(model.tasks[name].params, "min_score", 0.0))
                task_metrics[name]["coverage"] = share
        result["tasks"].update(task_metrics)
        column = data.breakdown.get(source)
        if column is not None:  # e.g. services seen / unseen in training: every task on each value's rows
            result.setdefault("breakdown", {}).update(
                breakdown(model.tasks, info["tasks"], preds, golds, examples, column))
        if all_right is not None:
            info["all_tasks_correct"] = all_right  # e.g. SNIPS "sentence accuracy": intent and every slot right
        result["sources"][source] = info
    return result


def collect_logits(model: Any, data: MultiTaskData, split: str = "validation", batch_size: int = 128,
                   precision: str = "fp32", shard: Shard | None = None) -> Arrays:
    """The labelled logits of every calibrated head on ``split`` (every process gets all of them)."""
    store = LogitStore()
    for group in data.splits.get(split, {}).values():
        names = [n for n in group.tasks if model.tasks[n].calibration_heads()]
        if names:
            predict_sharded(model, group, batch_size, precision, shard, store, tasks=names)
    return store.arrays()


def fit_calibration(model: Any, data: MultiTaskData, split: str = "validation", batch_size: int = 128,
                    precision: str = "fp32", shard: Shard | None = None) -> dict[str, dict[str, float]]:
    """Fit a temperature for every calibrated head labelled in ``split`` and set it on ``model.tasks``
    -> {task: {head: T}} (a task without labelled entries there keeps its temperatures)."""
    arrays = collect_logits(model, data, split, batch_size, precision, shard)
    return {name: fit_task(model.tasks[name], heads) for name, heads in arrays.items()}


def aggregate(result: dict[str, Any], tasks: dict[str, Task], metric: str = "mean") -> float | None:
    """``mean``: mean of each evaluated task's primary metric; ``TASK/METRIC``: that one value."""
    per_task = result["tasks"]
    if metric == "mean":
        values = [per_task[n][tasks[n].primary_metric] for n in per_task if tasks[n].primary_metric in per_task[n]]
        return sum(values) / len(values) if values else None
    task, _, name = metric.partition("/")
    return per_task.get(task, {}).get(name)


def load_checkpoint_data(path: str | Path, split: str, config: str | Path | None = None,
                         tasks: Sequence[str] | None = None) -> tuple[Any, Any, MultiTaskData]:
    """(model, run config, data of ``split``) of a checkpoint: the data of its own run config (or of ``config``),
    featurised with the checkpoint's tokenizer and label spaces; with ``tasks``, only the datasets of those tasks
    are read. A label the checkpoint never saw is reported as an error, not skipped, unless the config's task says
    ``unseen_labels: count_as_wrong`` (then it is scored as wrong and counted)."""
    from polytask.checkpoint import load_model, saved_run_config
    from polytask.config import SPLITS, load_config
    from polytask.data.loading import load_data
    from polytask.errors import PolytaskError, check_choice

    check_choice("--split", split, SPLITS, "split")
    model = load_model(path)
    if config is not None:
        cfg = load_config(config, check_encoder=False)
    elif model.run_config is not None:
        cfg = saved_run_config(path, model.run_config)
    else:
        raise PolytaskError(f"{path}: the checkpoint has no run_config.yaml; pass --config with the data to use")
    if tasks is not None:
        cfg = cfg.model_copy(update={"tasks": {n: p for n, p in cfg.tasks.items() if n in tasks}})
    unknown = [t for t in cfg.tasks if t not in model.tasks]
    if unknown:
        raise PolytaskError(f"config tasks {', '.join(unknown)} are not in the checkpoint "
                            f"(it has {', '.join(model.tasks)})")
    for name in cfg.tasks:  # how to score labels training never saw is the evaluating config's choice
        model.tasks[name].adopt_scoring(cfg.tasks[name])
    data = load_data(cfg, model.tokenizer, splits=(split,), tasks={n: model.tasks[n] for n in cfg.tasks})
    if not data.splits.get(split):
        raise PolytaskError(f"no dataset of the config has a {split!r} split")
    return model, cfg, data


def evaluate_checkpoint(path: str | Path, split: str = "test", config: str | Path | None = None,
                        batch_size: int = 128, precision: str | None = None) -> dict[str, Any]:
    """Load a checkpoint and score it on ``split`` of its own run config's data (or of ``config``'s data), with
    the calibration metrics (ECE with and without the checkpoint's temperatures)."""
    from polytask.errors import check_choice

    if precision is not None:
        check_choice("--precision", precision, PRECISIONS, "precision")
    model, cfg, data = load_checkpoint_data(path, split, config)
    if precision is None:  # score as training did, so the numbers match the ones it reported
        precision = cfg.train.precision
    return evaluate(model, data, split, batch_size, precision, calibration=True)
