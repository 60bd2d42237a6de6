"""What each training step is made of: the micro-batches, per step mode.

An *input group* is a dataset, or the tasks of a dataset that read the same input (see ``polytask.data.dataset``).
``train.step_mode`` chooses how a micro-batch is put together:

- ``source`` (default): all rows of a micro-batch come from one input group, drawn by the sampler; a step sees the
  tasks of the groups drawn for its ``grad_accum`` micro-batches. Cheapest per step.
- ``every_source``: every micro-batch holds one batch of every input group (one encoder pass per group), so every
  task is in every step, each with a full batch. The sampler is not used (every group advances one batch a step).
  For gradient methods (PCGrad, UPGrad, ...): each task's gradient is then estimated from a full batch.
- ``mixed``: every micro-batch holds ``batch_size`` rows drawn from the groups in the proportions the sampler gives
  (a multinomial draw per micro-batch), the rows of groups that read the same input sharing one encoder pass (labels
  of the other groups' tasks masked). Every task is in (nearly) every step at the cost of one batch; rows are not
  grouped by length, so padding is larger.

Epochs are counted in examples: every mode takes ``Σ_g ceil(rows_g / batch_size)`` batches of examples per epoch,
so runs in different modes see the same data for the same ``epochs``. Under DDP each process takes its own share of
every group's batches (padded to equal shares) and all processes draw the same sources.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polytask.data.batching import Batch, BatchStream, RowStream, collate, collate_parts
from polytask.data.dataset import FeatureSplit
from polytask.sampling.base import Progress, SourceScheduler
from polytask.tasks import Task

STEP_MODES = ("source", "every_source", "mixed")


@dataclass
class Part:
    """One encoder pass of a micro-batch: a batch and the tasks it carries fields for."""

    batch: Batch
    tasks: list[str]


@dataclass
class MicroBatch:
    parts: list[Part]

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for p in self.parts for t in p.tasks))

    @property
    def size(self) -> int:
        return sum(p.batch.size for p in self.parts)


def batches_per_epoch(splits: dict[str, FeatureSplit], batch_size: int) -> int:
    """Σ over input groups of ceil(trainable features / batch_size): an epoch's worth of batches, all processes."""
    return sum(max(1, math.ceil(len(s.trainable()) / batch_size)) for s in splits.values())


def steps_per_epoch(batches: int, grad_accum: int, world: int = 1, groups_per_micro_batch: int = 1) -> int:
    """Optimizer steps that take ``batches`` batches when each step takes grad_accum x world micro-batches of
    ``groups_per_micro_batch`` batches each."""
    return max(1, math.ceil(batches / (grad_accum * world * groups_per_micro_batch)))


class Feeder:
    """Builds the micro-batches of the training steps (resumable: :meth:`state_dict`)."""

    def __init__(self, mode: str, splits: dict[str, FeatureSplit], tasks: dict[str, Task], batch_size: int,
                 scheduler: SourceScheduler, seed: int, pad_id: int, rank: int = 0, world: int = 1) -> None:
        if mode not in STEP_MODES:
            raise ValueError(f"unknown step mode {mode!r}; available: {', '.join(STEP_MODES)}")
        self.mode, self.splits, self.tasks = mode, splits, tasks
        self.names = list(splits)
        self.batch_size, self.scheduler, self.pad_id = batch_size, scheduler, pad_id
        self.streams: dict[str, Any] = {}
        for i, name in enumerate(self.names):
            if mode == "mixed":
                self.streams[name] = RowStream(splits[name], seed + 1000 * i, rank, world)
            else:
                self.streams[name] = BatchStream(splits[name], batch_size, seed + 1000 * i, rank, world)
        self.world = world

    @property
    def groups_per_micro_batch(self) -> int:
        return len(self.names) if self.mode == "every_source" else 1

    def steps_per_epoch(self, grad_accum: int) -> int:
        return steps_per_epoch(batches_per_epoch(self.splits, self.batch_size), grad_accum, self.world,
                               self.groups_per_micro_batch)

    def shares(self, progress: Progress) -> dict[str, float]:
        """The expected share of each input group in a micro-batch's rows (the sampler's probabilities; equal
        shares when every group is in every micro-batch)."""
        if self.mode == "every_source":
            return {name: 1.0 / len(self.names) for name in self.names}
        return dict(zip(self.names, map(float, self.scheduler.probabilities(progress))))

    def micro_batch(self, progress: Progress) -> MicroBatch:
        if self.mode == "source":
            name = self.names[self.scheduler.next(progress)]
            return MicroBatch([self._part(name, self.streams[name].next_indices())])
        if self.mode == "every_source":
            return MicroBatch([self._part(name, self.streams[name].next_indices()) for name in self.names])
        counts = self.scheduler.counts(self.batch_size, progress)
        by_spec: dict[Any, list[tuple[FeatureSplit, list[int]]]] = {}
        for name, count in zip(self.names, counts.tolist()):
            if count:
                split = self.splits[name]
                by_spec.setdefault(split.spec, []).append((split, self.streams[name].take(count)))
        parts = []
        for groups in by_spec.values():
            batch = collate_parts(groups, self.tasks, self.pad_id)
            parts.append(Part(batch, list(batch.tasks)))
        return MicroBatch(parts)

    def _part(self, name: str, indices: Sequence[int]) -> Part:
        split = self.splits[name]
        return Part(collate(split, indices, self.tasks, self.pad_id), list(split.tasks))

    def state_dict(self) -> dict[str, Any]:
        return {"streams": {n: s.state_dict() for n, s in self.streams.items()},
                "sampler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = sorted(set(state["streams"]) - set(self.streams))
        if unknown:
            raise ValueError(f"the checkpoint has input group(s) {', '.join(unknown)} that this config does not "
                             f"define (it has {', '.join(self.names)})")
        for name, s in state["streams"].items():
            self.streams[name].load_state_dict(s)
        self.scheduler.load_state_dict(state["sampler"])
