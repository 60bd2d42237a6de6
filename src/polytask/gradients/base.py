"""Gradient methods: how the per-task gradients of the shared encoder become the one update direction.

The second plugin kind beside the loss weightings (``polytask.weighting``). A weighting scales each task's loss;
a gradient method looks at the gradients themselves. The default, ``sum``, needs nothing more than the plain
backward of the weighted total. Every other method declares ``needs_task_gradients``: the trainer then computes,
for each optimizer step, the Jacobian J [m, n] of the m tasks' weighted losses (m = tasks of the step) with respect
to the n shared encoder parameters, via the shared representation (torchjd's ``mtl_backward``: one backward through
the encoder per step, vectorised over tasks), sums it over the micro-batches of the step and, under DDP, averages
it over the processes; :meth:`GradientMethod.aggregate` turns it into the update written to the encoder's
``.grad``. The heads' own gradients (each head only sees its task) are plain sums.

Methods that need J run the step in float32 Jacobians whatever the autocast precision, and keep m x n floats in
memory (m = 7 tasks on MiniLM's 22.7M parameters: 0.6 GB).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from polytask.registry import Registry
from polytask.sampling.base import Progress


class GradientParams(BaseModel):
    """YAML parameters of a gradient method (``name`` excluded); methods subclass this."""

    model_config = ConfigDict(extra="forbid")


class GradientMethod(torch.nn.Module):
    """Base class of gradient methods. ``aggregate`` is called once per optimizer step with the step's Jacobian."""

    Params: ClassVar[type[BaseModel]] = GradientParams
    needs_task_gradients: ClassVar[bool] = True  # False: the trainer backpropagates the weighted total as usual

    def __init__(self, task_names: list[str], params: BaseModel) -> None:
        super().__init__()
        self.task_names, self.params = list(task_names), params

    @classmethod
    def check(cls, params: BaseModel, task_names: list[str]) -> list[str]:
        """Problems with ``params`` given the configured tasks (none by default)."""
        return []

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str], progress: Progress
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        """``jacobian`` [m, n] float32, row i the gradient of task ``tasks[i]``'s weighted loss -> (update [n],
        {task: weight of its row} when the method is a weighting of the rows, else {})."""
        raise NotImplementedError


class TorchJDMethod(GradientMethod):
    """A method implemented by a torchjd aggregator (``make_aggregator``). torchjd (SimplexLab, MIT licence)
    provides the published algorithms; polytask adds the multi-task plumbing around them."""

    def __init__(self, task_names: list[str], params: BaseModel) -> None:
        super().__init__(task_names, params)
        self.aggregator = self.make_aggregator(params)

    def make_aggregator(self, params: BaseModel) -> Any:
        raise NotImplementedError

    def aggregate(self, jacobian: torch.Tensor, tasks: list[str], progress: Progress
                  ) -> tuple[torch.Tensor, dict[str, float]]:
        weighting = getattr(self.aggregator, "weighting", None)
        if weighting is not None:  # compute the weights once and combine: aggregator(J) would redo the weighting
            weights = weighting(jacobian)
            return weights @ jacobian, dict(zip(tasks, weights.tolist()))
        return self.aggregator(jacobian), {}


GRADIENT_METHODS: Registry[type[GradientMethod]] = Registry("gradient method")


def build_gradient_method(name: str, params: dict[str, Any], task_names: list[str]) -> GradientMethod:
    """The method registered as ``name`` for ``task_names`` with ``params`` validated; problems found by the
    method's ``check`` raise ValueError listing all of them."""
    cls = GRADIENT_METHODS.get(name)
    validated = cls.Params.model_validate(params)
    problems = cls.check(validated, list(task_names))
    if problems:
        raise ValueError(f"gradient method {name!r}: " + "; ".join(problems))
    return cls(list(task_names), validated)


def torchjd_available() -> bool:
    try:
        import torchjd  # noqa: F401
    except ImportError:
        return False
    return True


def require_torchjd(method: str) -> None:
    if not torchjd_available():
        from polytask.errors import PolytaskError

        raise PolytaskError(f"gradient method {method!r} needs torchjd: pip install 'polytask[mtl]'")
