"""Soft sharing with cross-stitch units in the top layers of the encoder.

Misra et al., "Cross-stitch Networks for Multi-task Learning", CVPR 2016 (arXiv:1604.03539): each task has its own
copy of the top layers (a column), and after every such layer a learned unit mixes the columns' outputs: task t's
next input is sum_c alpha[t, c] * h_c. Here a shared column (the encoder's own top layers, trained by every task)
joins the task columns, so alpha also learns how much of the shared features each task takes. alpha starts at
``self_weight`` on a task's own column and shares the rest evenly over the other columns (the paper's (0.9, 0.1)).

Every column runs in every forward (a task's mix reads all of them): (tasks + 1) x ``layers`` blocks per batch, and
a full copy of ``layers`` blocks per task. A trained model cannot gain a task (its units have one row per task).
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from polytask.errors import PolytaskError
from polytask.sharing.base import LayeredParams, Passes, SplitSharing
from polytask.sharing.registry import SHARING


class CrossStitchParams(LayeredParams):
    layers: int | Literal["all"] = Field(1, description="give each task its own copy of the top k layers, or all")
    self_weight: float = Field(0.9, gt=0.0, le=1.0, description="initial weight of a task's own column")


@SHARING.register("cross_stitch")
class CrossStitchSharing(SplitSharing):
    Params = CrossStitchParams
    params: CrossStitchParams

    def attach(self, encoder: nn.Module, tasks: list[str]) -> None:
        super().attach(encoder, tasks)
        self.order = list(tasks)  # row t of the units is task order[t]; column 0 is the shared one
        self.columns = nn.ModuleDict({name: nn.ModuleList(copy.deepcopy(self.split.layers[i]) for i in self.top)
                                      for name in tasks})
        count = len(tasks)
        rest = (1.0 - self.params.self_weight) / count
        units = torch.full((len(self.top), count, count + 1), rest)
        for t in range(count):
            units[:, t, t + 1] = self.params.self_weight
        self.units = nn.Parameter(units)  # [layers, tasks, 1 + tasks]

    def add_task(self, name: str) -> None:
        raise PolytaskError(f"cannot add task {name!r}: encoder.sharing 'cross_stitch' learns one mixing row per "
                            "task of the model it was trained with; retrain with every task, or use lora or moe")

    def _block(self, task: str, i: int) -> nn.Module:
        column: Any = self.columns[task]
        return column[i]

    def encode(self, kwargs: dict[str, Any], names: list[str]) -> tuple[Passes, torch.Tensor]:
        hidden, mask = self.split.bottom(kwargs, self.top.start)
        columns = [hidden] * (len(self.order) + 1)
        for i, index in enumerate(self.top):
            outs = [self.split.layers[index](columns[0], mask)]
            outs += [self._block(name, i)(x, mask) for name, x in zip(self.order, columns[1:])]
            stacked = torch.stack(outs)  # [1 + tasks, B, T, H]
            mixed = torch.einsum("tc,cbsh->tbsh", self.units[i].to(stacked.dtype), stacked)
            columns = [outs[0], *mixed.unbind(0)]
        rows = {name: columns[1 + t] for t, name in enumerate(self.order)}
        return [([name], rows[name]) for name in names], hidden
