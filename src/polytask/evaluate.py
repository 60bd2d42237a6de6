"""Per-task metrics on a split, from the same decoding the pipeline uses."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from polytask.data.batching import collate, eval_batches
from polytask.data.dataset import SourceSplit
from polytask.data.loading import MultiTaskData
from polytask.tasks import DecodeContext, Task


def autocast(precision: str, device: torch.device):
    """bf16 autocast (CPU or CUDA) or nothing. On CPUs with AMX, bf16 matrix products are several times faster."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def _device(model: Any) -> torch.device:
    return model.device


def move(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else move(v, device) if isinstance(v, dict) else v)
            for k, v in batch.items()}


@torch.no_grad()
def predict_split(model, split: SourceSplit, batch_size: int = 128, precision: str = "fp32",
                  tasks: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Decoded predictions of ``tasks`` (default: the source's tasks) for every row of ``split``, in row order."""
    names = tasks or split.tasks
    was_training = model.training
    if was_training:  # Module.eval() walks every submodule: ~2 ms, a fifth of a one-text call on MiniLM
        model.eval()
    device = _device(model)
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None else 0
    out: dict[str, list[Any]] = {n: [None] * len(split) for n in names}
    task_map: dict[str, Task] = model.tasks
    try:
        for indices in eval_batches(split, batch_size):
            batch = move(collate(split, indices, {n: task_map[n] for n in split.tasks}, pad or 0), device)
            with autocast(precision, device):
                logits = model(**{k: v for k, v in batch.items() if k != "targets"}, tasks=names)
            ctx = DecodeContext(
                words=[split.words[i] for i in indices] if split.words else None,
                word_index=batch.get("word_index"),
                word_spans=[split.word_spans[i] for i in indices] if split.word_spans else None,
                texts=[split.texts[i] for i in indices],
            )
            for name in names:
                for i, pred in zip(indices, task_map[name].decode(logits[name], ctx)):
                    out[name][i] = pred
    finally:
        if was_training:
            model.train()
    return out


def score_split(tasks: dict[str, Task], split: SourceSplit,
                predictions: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, dict[str, float]], float | None]:
    """-> ({task: metrics}, share of rows whose every labelled task is exactly right, or None for one task)."""
    metrics: dict[str, dict[str, float]] = {}
    for name in split.tasks:
        pairs = [(p, g) for p, g in zip(predictions[name], split.golds[name]) if g is not None]
        metrics[name] = tasks[name].metrics([p for p, _ in pairs], [g for _, g in pairs])
        metrics[name]["examples"] = len(pairs)
    if len(split.tasks) < 2:
        return metrics, None
    right = [all(tasks[n].correct(predictions[n][i], split.golds[n][i])
                 for n in split.tasks if split.golds[n][i] is not None) for i in range(len(split))]
    return metrics, sum(right) / len(right) if right else 0.0


def evaluate(model, data: MultiTaskData, split: str = "validation", batch_size: int = 128,
             precision: str = "fp32") -> dict[str, Any]:
    """Metrics of every task on ``split``: {"tasks": {task: {metric: v}}, "sources": {source: {...}}}."""
    result: dict[str, Any] = {"split": split, "tasks": {}, "sources": {}}
    for source, source_split in data.splits.get(split, {}).items():
        preds = predict_split(model, source_split, batch_size, precision)
        task_metrics, all_right = score_split(model.tasks, source_split, preds)
        result["tasks"].update(task_metrics)
        info: dict[str, Any] = {"examples": len(source_split), "tasks": source_split.tasks,
                                "truncated": source_split.truncated}
        if all_right is not None:
            info["all_tasks_correct"] = all_right  # e.g. SNIPS "sentence accuracy": intent and every slot right
        result["sources"][source] = info
    return result


def aggregate(result: dict[str, Any], tasks: dict[str, Task], metric: str = "mean") -> float | None:
    """``mean``: mean of each evaluated task's primary metric; ``TASK/METRIC``: that one value."""
    per_task = result["tasks"]
    if metric == "mean":
        values = [per_task[n][tasks[n].primary_metric] for n in per_task if tasks[n].primary_metric in per_task[n]]
        return sum(values) / len(values) if values else None
    task, _, name = metric.partition("/")
    return per_task.get(task, {}).get(name)


def evaluate_checkpoint(path: str | Path, split: str = "test", config: str | Path | None = None,
                        batch_size: int = 128, precision: str | None = None) -> dict[str, Any]:
    """Load a checkpoint and score it on ``split`` of its own run config's data (or of ``config``'s data).
    Label spaces come from the checkpoint: a label it never saw is reported as an error, not skipped."""
    from polytask.checkpoint import load_model
    from polytask.config import load_config, validate_config
    from polytask.data.loading import load_data
    from polytask.errors import PolytaskError

    model = load_model(path)
    if config is not None:
        cfg = load_config(config)
    elif model.run_config is not None:
        cfg = validate_config(model.run_config, source=f"{path}/run_config.yaml")
    else:
        raise PolytaskError(f"{path}: the checkpoint has no run_config.yaml; pass --config with the data to use")
    unknown = [t for t in cfg.tasks if t not in model.tasks]
    if unknown:
        raise PolytaskError(f"config tasks {', '.join(unknown)} are not in the checkpoint "
                            f"(it has {', '.join(model.tasks)})")
    data = load_data(cfg, model.tokenizer, splits=(split,), tasks={n: model.tasks[n] for n in cfg.tasks})
    if not data.splits.get(split):
        raise PolytaskError(f"no dataset of the config has a {split!r} split")
    if precision is None:  # score as training did, so the numbers match the ones it reported
        precision = cfg.train.precision
    return evaluate(model, data, split, batch_size, precision)
