"""What every loss weighting provides, and the registry they live in.

A weighting turns the per-task losses of one micro-batch (only the tasks its source labels) into the one scalar the
trainer backpropagates. The trainer never branches on the method: it optimises whatever ``parameters()`` the module
has (their ``requires_grad`` says so; ``learnable`` advertises it) and saves ``state_dict()`` to safetensors, so
everything a method needs to resume must be a tensor parameter or persistent buffer of fixed shape.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from polytask.registry import Registry
from polytask.sampling.base import Progress


class WeightingParams(BaseModel):
    """YAML parameters of a weighting (the ``name`` key is not part of them); methods subclass this."""

    model_config = ConfigDict(extra="forbid")


class LossWeighting(torch.nn.Module):
    """Base class of loss weightings. Subclasses set the ClassVars and implement :meth:`_combine`.

    ``task_names`` fixes the order of every per-task tensor ([K], K = number of tasks), so checkpoints keep one
    layout whatever subset of tasks a step happens to see.
    """

    Params: ClassVar[type[BaseModel]] = WeightingParams
    learnable: ClassVar[bool] = False  # True when parameters() holds tensors the trainer must optimise

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

    def combine(self, losses: dict[str, torch.Tensor], progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar losses of the tasks present in this micro-batch -> (total scalar to backprop, {task: weight}).

        The weights dict has exactly the keys of ``losses`` and is for logging. A non-finite loss raises
        FloatingPointError naming its task, since weighting it would silently poison the shared encoder.
        """
        unknown = sorted(set(losses) - set(self.index))
        if unknown:
            raise ValueError(f"losses for unknown task(s) {unknown}; known: {', '.join(self.task_names)}")
        if not losses:
            # A batch labelling none of its tasks: a zero that backward() accepts and that changes nothing.
            return torch.zeros((), device=self._device(), requires_grad=True), {}
        for name, loss in losses.items():
            if loss.dim() != 0:
                raise ValueError(f"loss of task {name!r} must be a scalar, got shape {tuple(loss.shape)}")
        values = torch.stack([loss.detach().float() for loss in losses.values()])
        if not bool(torch.isfinite(values).all()):  # one device sync for all tasks, not one per task
            bad = [f"{n!r} ({v:g})" for n, v in zip(losses, values.tolist()) if not math.isfinite(v)]
            raise FloatingPointError(f"non-finite loss for task {', '.join(bad)} at step {progress.step}")
        return self._combine(losses, progress)

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress) -> tuple[torch.Tensor, dict[str, float]]:
        """:meth:`combine` after validation: ``losses`` is non-empty, finite, scalar and names known tasks."""
        raise NotImplementedError

    def _device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")


def weighted_sum(losses: dict[str, torch.Tensor], weights: dict[str, Any]) -> torch.Tensor:
    """Σ_t weights[t]·L_t over the tasks in ``losses``, in float32 so bf16 autocast losses do not lose precision."""
    return torch.stack([weights[name] * loss.float() for name, loss in losses.items()]).sum()


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
