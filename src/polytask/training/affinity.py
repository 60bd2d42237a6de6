"""Inter-task affinity measured during a normal joint run (TAG: Fifty et al. 2021, "Efficiently Identifying Task
Groupings for Multi-Task Learning", NeurIPS).

Every ``train.affinity_every`` steps, on that step's batches and before its update: the losses L_j of every task
present; then for each task i a look-ahead step of the shared encoder along task i's gradient alone,
θ' = θ − lr·∇_θ L_i (lr: the encoder's current learning rate), the losses L'_j under θ' (heads unchanged), and the
affinity of i onto j, Z[i→j] = 1 − L'_j / L_j: positive when a step for task i also lowers task j's loss. The
weights are restored exactly afterwards, and dropout is off while measuring (its noise would swamp the effect), so
the training itself is unchanged. Each measurement costs, per task, one backward and one forward pass over the
step's batches; the seconds spent are logged with the matrix (``metrics.jsonl``, ``type: affinity``).
``polytask affinity RUN`` averages the matrices, draws them and suggests groupings.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from polytask.tasks import Task
from polytask.training.feed import MicroBatch
from polytask.training.step import forward_losses


@torch.no_grad()
def _losses(model: Any, micro_batches: list[MicroBatch], tasks: dict[str, Task], names: list[str],
            accelerator: Any) -> torch.Tensor:
    """Mean loss of each of ``names`` over the micro-batches [len(names)] (NaN for a task with none)."""
    sums = torch.zeros(len(names))
    counts = torch.zeros(len(names))
    with accelerator.autocast():
        for micro in micro_batches:
            losses, _ = forward_losses(model, micro, tasks)
            for i, name in enumerate(names):
                if name in losses:
                    sums[i] += float(losses[name])
                    counts[i] += 1
    return sums / counts


def measure_affinity(model: Any, micro_batches: list[MicroBatch], tasks: dict[str, Task], shared: list[Any],
                     lr: float, accelerator: Any) -> dict[str, Any]:
    """The look-ahead affinity matrix of the tasks in ``micro_batches`` -> {"tasks", "matrix" (rows: the task
    stepped on; columns: the task whose loss is read), "seconds"}."""
    started = time.perf_counter()
    names = list(dict.fromkeys(t for m in micro_batches for t in m.tasks))
    was_training = model.training
    model.eval()
    try:
        before = _losses(model, micro_batches, tasks, names, accelerator)
        saved = [p.detach().clone() for p in shared]
        matrix = torch.full((len(names), len(names)), float("nan"))
        for i, name in enumerate(names):
            grads = _task_gradient(model, micro_batches, tasks, name, shared, accelerator)
            if grads is None:
                continue
            with torch.no_grad():
                for p, g in zip(shared, grads):
                    if g is not None:
                        p.sub_(lr * g.to(p.dtype))
            after = _losses(model, micro_batches, tasks, names, accelerator)
            matrix[i] = 1.0 - after / before
            with torch.no_grad():
                for p, value in zip(shared, saved):
                    p.copy_(value)
    finally:
        if was_training:
            model.train()
    return {"tasks": names, "matrix": matrix.tolist(), "seconds": round(time.perf_counter() - started, 4)}


def _task_gradient(model: Any, micro_batches: list[MicroBatch], tasks: dict[str, Task], name: str,
                   shared: list[Any], accelerator: Any) -> list[torch.Tensor | None] | None:
    """∇ of task ``name``'s loss (mean over the micro-batches that have it) with respect to ``shared``."""
    total, count = None, 0
    with accelerator.autocast():
        for micro in micro_batches:
            if name not in micro.tasks:
                continue
            losses, _ = forward_losses(model, micro, tasks)
            if name in losses:
                total = losses[name].float() if total is None else total + losses[name].float()
                count += 1
    if total is None:
        return None
    return list(torch.autograd.grad(total / count, shared, allow_unused=True))
