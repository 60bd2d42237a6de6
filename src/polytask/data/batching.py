"""Batches: length-grouped order, dynamic padding, every task's targets in one dict.

A batch is a plain dict of tensors (so Accelerate can move it to a device):
``input_ids`` [B, T], ``attention_mask`` [B, T], optionally ``token_type_ids`` [B, T] and ``word_index`` [B, W]
(token index of each word's first sub-word, -1 for none/padding), ``targets`` {task: tensor}, ``index`` [B] (rows of
the split). T is the longest sequence in the batch, not ``max_length``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from polytask.data.dataset import SourceSplit
from polytask.tasks import Task


def collate(split: SourceSplit, indices: list[int], tasks: dict[str, Task], pad_id: int) -> dict[str, Any]:
    """Rows ``indices`` of ``split`` -> one padded batch dict."""
    longest = max(len(split.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), longest), dtype=torch.long)
    types = torch.zeros((len(indices), longest), dtype=torch.long) if split.token_type_ids else None
    for b, i in enumerate(indices):
        n = len(split.input_ids[i])
        ids[b, :n] = torch.tensor(split.input_ids[i])
        mask[b, :n] = 1
        if types is not None:
            types[b, :n] = torch.tensor(split.token_type_ids[i])  # type: ignore[index]
    batch: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "index": torch.tensor(indices)}
    if types is not None:
        batch["token_type_ids"] = types
    num_words = 0
    if split.word_index is not None:
        num_words = max(len(split.word_index[i]) for i in indices)
        word_index = torch.full((len(indices), num_words), -1, dtype=torch.long)
        for b, i in enumerate(indices):
            word_index[b, : len(split.word_index[i])] = torch.tensor(split.word_index[i])
        batch["word_index"] = word_index
    targets = {}
    for name in split.tasks:
        column = split.targets[name]
        rows = [column[i] for i in indices]
        if tasks[name].level == "token" and split.word_index is not None:
            # a word without a token cannot be trained on: its target becomes IGNORE
            rows = [None if r is None else [t if split.word_index[i][w] >= 0 else -100 for w, t in enumerate(r)]
                    for r, i in zip(rows, indices)]
        targets[name] = tasks[name].collate(rows, num_words)
    batch["targets"] = targets
    return batch


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
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


class BatchStream:
    """Endless, resumable training batches for one source: epoch ``e`` uses its own seeded order, and the state is
    just (epoch, position), so a resumed run continues with exactly the batches it would have seen."""

    def __init__(self, split: SourceSplit, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.rank, self.world = rank, world
        self.epoch, self.position = 0, 0
        self._batches = self._order(0)

    def _order(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        batches = length_grouped_batches(self.split.lengths, self.batch_size, rng)
        return batches[self.rank :: self.world] or batches[:1]  # each process takes its own share

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


def eval_batches(split: SourceSplit, batch_size: int) -> Iterator[list[int]]:
    """Batches sorted by length (fast, little padding); callers restore row order through ``index``."""
    order = sorted(range(len(split)), key=lambda i: len(split.input_ids[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
