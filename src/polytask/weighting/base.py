"""What every loss weighting provides, and the registry they live in.

A weighting turns the per-task losses of one micro-batch (the tasks its batch labels) into one weighted term per task
(``terms``: what a gradient method differentiates task by task) whose float32 sum is the scalar the trainer
backpropagates otherwise. The trainer never branches on the method: it optimises whatever ``parameters()`` the module
has (their ``requires_grad`` says so) and saves ``state_dict()`` to safetensors, so everything a method needs to
resume must be a tensor parameter or persistent buffer of fixed shape. Methods declare what else they need:
``needs_losses_after_step`` (the losses of the same batch after the update, FAMO), ``reads_shared_layer`` (the
parameters of the last shared layer, GradNorm); ``end_step`` lets a method merge its per-process state under DDP.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from polytask.errors import PolytaskError
from polytask.registry import Registry
from polytask.sampling.base import Progress


class WeightingParams(BaseModel):
    """YAML parameters of a weighting (the ``name`` key is not part of them); methods subclass this."""

    model_config = ConfigDict(extra="forbid")


class Combined(tuple):
    """What :meth:`LossWeighting.combine` returns: unpacks as ``(total, weights)``; ``terms`` holds each task's
    weighted term (their float32 sum is ``total``)."""

    total: torch.Tensor
    weights: dict[str, float]
    terms: dict[str, torch.Tensor]

    def __new__(cls, total: torch.Tensor, weights: dict[str, float], terms: dict[str, torch.Tensor]) -> Combined:
        obj = super().__new__(cls, (total, weights))
        obj.total, obj.weights, obj.terms = total, weights, terms
        return obj


def _identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass
class WeightingContext:
    """What the trainer hands a weighting beyond the losses: the parameters of the last shared layer (read by
    methods that declare ``reads_shared_layer``) and ``mean``, which averages a tensor over the training processes
    (identity with one process), for state a method builds from its own process's losses."""

    shared_layer: list[torch.nn.Parameter] = field(default_factory=list)
    mean: Callable[[torch.Tensor], torch.Tensor] = _identity


class LossWeighting(torch.nn.Module):
    """Base class of loss weightings. Subclasses set the ClassVars and implement :meth:`_combine`.

    ``task_names`` fixes the order of every per-task tensor ([K], K = number of tasks), so checkpoints keep one
    layout whatever subset of tasks a step happens to see.
    """

    Params: ClassVar[type[BaseModel]] = WeightingParams
    learnable: ClassVar[bool] = False  # True when parameters() holds tensors the trainer must optimise
    needs_losses_after_step: ClassVar[bool] = False  # after_step() wants the losses of the batch after the update
    reads_shared_layer: ClassVar[bool] = False  # combine() reads context.shared_layer

    def __init__(self, task_names: list[str], params: BaseModel) -> None:
        super().__init__()
        if not task_names:
            raise ValueError("a loss weighting needs at least one task")
        if len(set(task_names)) != len(task_names):
            raise ValueError(f"task names are repeated: {task_names}")
        self.task_names = list(task_names)
        self.index = {name: i for i, name in enumerate(self.task_names)}
        self.params = params

    @classmethod
    def check(cls, params: BaseModel, task_names: list[str]) -> list[str]:
        """Problems with ``params`` given the configured tasks, as messages (none by default)."""
        return []

    def combine(self, losses: dict[str, torch.Tensor], progress: Progress,
                context: WeightingContext | None = None) -> Combined:
        """Scalar losses of the tasks present in this micro-batch -> :class:`Combined` (total, {task: weight},
        {task: weighted term}).

        The weights dict has exactly the keys of ``losses`` and is for logging. A non-finite loss raises
        NonFiniteLossError naming its task, since weighting it would silently poison the shared encoder.
        """
        unknown = sorted(set(losses) - set(self.index))
        if unknown:
            raise ValueError(f"losses for unknown task(s) {unknown}; known: {', '.join(self.task_names)}")
        if not losses:
            # A batch labelling none of its tasks: a zero that backward() accepts and that changes nothing.
            return Combined(torch.zeros((), device=self._device(), requires_grad=True), {}, {})
        for name, loss in losses.items():
            if loss.dim() != 0:
                raise ValueError(f"loss of task {name!r} must be a scalar, got shape {tuple(loss.shape)}")
        values = torch.stack([loss.detach().float() for loss in losses.values()])
        if not bool(torch.isfinite(values).all()):  # one device sync for all tasks, not one per task
            bad = [f"{n!r} ({v:g})" for n, v in zip(losses, values.tolist()) if not math.isfinite(v)]
            # counted from 1, as checkpoints count completed steps: step N+1 fails after the checkpoint of step N
            raise NonFiniteLossError(f"non-finite loss for task {', '.join(bad)} at step {progress.step + 1}")
        terms, weights = self._combine(losses, progress, context or WeightingContext())
        total = torch.stack([t.float() for t in terms.values()]).sum()
        return Combined(total, weights, terms)

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """:meth:`combine` after validation: ``losses`` is non-empty, finite, scalar and names known tasks;
        -> ({task: weighted term}, {task: weight})."""
        raise NotImplementedError

    def after_step(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext) -> None:
        """Called after the optimizer step with the losses of the same batch under the updated model, averaged over
        the processes (only when ``needs_losses_after_step``)."""

    def end_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Called once per optimizer step; ``reduce`` sums a tensor over the training processes (identity with one
        process), for methods whose state is built from each process's own losses."""

    def _device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")


def weighted_terms(losses: dict[str, torch.Tensor], weights: dict[str, Any]) -> dict[str, torch.Tensor]:
    """{task: weights[task]·L_task}, in float32 so bf16 autocast losses do not lose precision."""
    return {name: weights[name] * loss.float() for name, loss in losses.items()}


class NonFiniteLossError(PolytaskError, FloatingPointError):
    """A task's loss is NaN or infinite (the message names the task and the step). A PolytaskError: the trainer adds
    where the last good checkpoint is and the CLI prints it without a traceback."""


WEIGHTINGS: Registry[type[LossWeighting]] = Registry("loss weighting")


def build_weighting(name: str, params: dict[str, Any], task_names: list[str]) -> LossWeighting:
    """The weighting registered as ``name`` for ``task_names``, with ``params`` validated (pydantic errors
    propagate); problems found by the method's ``check`` raise ValueError listing all of them."""
    cls = WEIGHTINGS.get(name)
    validated = cls.Params.model_validate(params)
    problems = cls.check(validated, list(task_names))
    if problems:
        raise ValueError(f"loss weighting {name!r}: " + "; ".join(problems))
    return cls(list(task_names), validated)
