"""Batches: length-grouped order, dynamic padding, every task's fields collated by the task itself.

A :class:`Batch` holds the encoder inputs (``input_ids`` [B, T], ``attention_mask`` [B, T], optionally
``token_type_ids`` [B, T] and ``word_index`` [B, W]: token of each word's first sub-word, -1 for none/padding), one
:class:`TaskBatch` per task (its head's inputs and its targets) and ``index``: the features of the split it holds.
T is the longest feature in the batch, not ``max_length``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from polytask.data.dataset import FeatureSplit
from polytask.tasks import Task
from polytask.tasks.base import BatchShape, TaskBatch


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]
    tasks: dict[str, TaskBatch]
    index: list[int]

    @property
    def size(self) -> int:
        return len(self.index)

    @property
    def task_inputs(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: tb.inputs for name, tb in self.tasks.items()}

    @property
    def targets(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: tb.targets for name, tb in self.tasks.items()}

    def to(self, device: torch.device | str) -> Batch:
        def move(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.to(device, non_blocking=True) for k, v in d.items()}

        return Batch(move(self.inputs), {n: TaskBatch(move(tb.inputs), move(tb.targets))
                                         for n, tb in self.tasks.items()}, self.index)


def collate(split: FeatureSplit, indices: Sequence[int], tasks: dict[str, Task], pad_id: int,
            names: Sequence[str] | None = None) -> Batch:
    """Features ``indices`` of ``split`` -> one padded batch for ``names`` (default: the split's tasks)."""
    return collate_parts([(split, indices)], tasks, pad_id, names)


def collate_parts(parts: Sequence[tuple[FeatureSplit, Sequence[int]]], tasks: dict[str, Task], pad_id: int,
                  names: Sequence[str] | None = None) -> Batch:
    """Features of one or more splits that read the same input (a heterogeneous batch) -> one padded batch for
    ``names`` (default: every task of the splits). A row gets the fields of its own split's tasks; for the other
    tasks it is unlabelled (empty fields: IGNORE / NaN targets)."""
    rows = [(split, i) for split, indices in parts for i in indices]
    feats = [split.features[i] for split, i in rows]
    size, longest = len(feats), max(len(f) for f in feats)
    ids = np.full((size, longest), pad_id, dtype=np.int64)
    mask = np.zeros((size, longest), dtype=np.int64)
    types = np.zeros((size, longest), dtype=np.int64) if feats[0].type_ids is not None else None
    for b, f in enumerate(feats):
        n = len(f)
        ids[b, :n] = f.input_ids
        mask[b, :n] = 1
        if types is not None:
            assert f.type_ids is not None  # one tokenizer made every feature: all have type ids or none do
            types[b, :n] = f.type_ids
    inputs = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if types is not None:
        inputs["token_type_ids"] = torch.from_numpy(types)
    words = max((len(f.word_index) for f in feats if f.word_index is not None), default=-1)
    if words >= 0:  # some task tags words; rows of a split whose tasks do not have no words (-1)
        word_index = np.full((size, words), -1, dtype=np.int64)
        for b, f in enumerate(feats):
            if f.word_index is not None:
                word_index[b, : len(f.word_index)] = f.word_index
        inputs["word_index"] = torch.from_numpy(word_index)
    shape = BatchShape(size, longest, max(words, 0))
    if names is None:
        names = list(dict.fromkeys(n for split, _ in parts for n in split.tasks))
    task_batches = {n: tasks[n].collate([split.fields[n][i] if n in split.fields else {} for split, i in rows],
                                        shape) for n in names}
    return Batch(inputs, task_batches, [i for _, i in rows])


def length_grouped_batches(lengths: list[int], batch_size: int, rng: np.random.Generator,
                           group: int = 50) -> list[list[int]]:
    """Shuffle, then sort by length inside windows of ``group`` batches so each batch holds similar lengths (little
    padding) while the order across batches stays random."""
    order = rng.permutation(len(lengths))
    window = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window].tolist(), key=lambda i: -lengths[i])
        batches.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


class RowStream:
    """Endless, resumable rows (features) of one input group in a seeded order per epoch, taken ``n`` at a time
    (heterogeneous batches draw a varying number of rows from each group). State: (epoch, position)."""

    def __init__(self, split: FeatureSplit, seed: int, rank: int = 0, world: int = 1) -> None:
        self.seed, self.rank, self.world = seed, rank, world
        self._features = split.trainable()
        self.epoch, self.position = 0, 0
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> list[int]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self._features)).tolist()
        order += order[: (-len(order)) % self.world]  # equal shares, as in BatchStream
        return [self._features[i] for i in order[self.rank :: self.world]]

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self.position >= len(self._order):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            chunk = self._order[self.position : self.position + n - len(out)]
            out += chunk
            self.position += len(chunk)
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._epoch_order(self.epoch)


class BatchStream:
    """Endless, resumable training batches for one input group: epoch ``e`` uses its own seeded order of the
    trainable features, and the state is just (epoch, position), so a resumed run continues with exactly the batches
    it would have seen."""

    def __init__(self, split: FeatureSplit, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.rank, self.world = rank, world
        self._features = split.trainable()
        lengths = split.lengths
        self._lengths = [lengths[i] for i in self._features]
        self.epoch, self.position = 0, 0
        self._batches = self._order(0)

    def _order(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = length_grouped_batches(self._lengths, self.batch_size, rng)
        batches = [[self._features[i] for i in b] for b in batches]
        # every process takes an equal share: the last batches are repeated to fill the last round, so all
        # processes agree on the number of batches per epoch (and so on the step count)
        batches += batches[: (-len(batches)) % self.world]
        return batches[self.rank :: self.world]

    @property
    def batches_per_epoch(self) -> int:
        return len(self._batches)

    def next_indices(self) -> list[int]:
        if self.position >= len(self._batches):
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._order(self.epoch)
        batch = self._batches[self.position]
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = self._order(self.epoch)


def eval_batches(split: FeatureSplit, batch_size: int, features: Sequence[int] | None = None
                 ) -> Iterator[list[int]]:
    """Features (all, or ``features``) in batches sorted by length (fast, little padding); callers restore order
    through ``index``."""
    chosen = range(len(split.features)) if features is None else features
    order = sorted(chosen, key=lambda i: len(split.features[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
