"""What every source sampler provides, the registry they live in, and the seeded scheduler the trainer draws from.

A *source* is one training dataset (which may label several tasks). Each micro-batch comes from one source; a
sampler turns the sources' sizes and the training progress into a probability per source, and
:class:`SourceScheduler` draws the source of each micro-batch from those probabilities with its own seeded generator,
so a resumed run draws exactly the sequence an uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from polytask.registry import Registry

# Integer epochs are read from a float that may carry rounding error (e.g. 2.9999999999 for "epoch 3").
EPOCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Progress:
    """Where training stands when a source is drawn or losses are combined."""

    step: int  # optimizer steps done so far
    total_steps: int
    epoch: float  # fractional epoch, 0-based (0.5 = half way through the first epoch)
    num_epochs: float

    @property
    def epoch_index(self) -> int:
        """The 0-based integer epoch being trained (``floor(epoch)``, robust to float rounding)."""
        return int(math.floor(self.epoch + EPOCH_TOLERANCE))


class SamplerParams(BaseModel):
    """YAML parameters of a sampler (the ``name`` key is not part of them); samplers subclass this."""

    model_config = ConfigDict(extra="forbid")


class Sampler(Protocol):
    """A rule giving each source a probability of feeding the next micro-batch."""

    Params: ClassVar[type[SamplerParams]]

    def __init__(self, params: BaseModel) -> None: ...

    def probabilities(self, sizes: Sequence[int], progress: Progress) -> np.ndarray:
        """``sizes`` [S] (examples per source, each > 0) -> float64 probabilities [S] summing to 1."""
        ...


SAMPLERS: Registry[type[Sampler]] = Registry("sampler")


def build_sampler(name: str, params: dict[str, Any]) -> Sampler:
    """The sampler registered as ``name`` with its ``params`` validated (pydantic.ValidationError propagates)."""
    cls = SAMPLERS.get(name)
    return cls(cls.Params.model_validate(params))


def check_sizes(sizes: Sequence[int]) -> np.ndarray:
    """``sizes`` as a float64 array [S], refusing what no sampler can weigh: no source, or an empty one."""
    array = np.asarray(sizes, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"sampler needs a non-empty list of source sizes, got {list(np.atleast_1d(array))}")
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"every source must hold at least one example; sizes: {array.astype(int).tolist()}")
    return array


def normalise_log(log_weights: np.ndarray) -> np.ndarray:
    """Unnormalised log-probabilities [S] -> probabilities [S]; working in log space keeps ``n ** (1/T)`` with a
    small temperature or huge sources from overflowing."""
    shifted = np.exp(log_weights - np.max(log_weights))
    return shifted / shifted.sum()


class SourceScheduler:
    """Draws the source index of each micro-batch from a sampler's probabilities, reproducibly.

    The generator is private (``numpy.random.Generator(PCG64(seed))``), so other code drawing random numbers does
    not shift the sequence, and its state is saved in :meth:`state_dict` for resumption.
    """

    def __init__(self, sampler: Sampler, sizes: Sequence[int], seed: int) -> None:
        self.sampler = sampler
        self.sizes = [int(n) for n in check_sizes(sizes)]
        self._rng = np.random.Generator(np.random.PCG64(seed))

    def probabilities(self, progress: Progress) -> np.ndarray:
        """The sampler's probability of each source [S] at ``progress``."""
        return self.sampler.probabilities(self.sizes, progress)

    def counts(self, rows: int, progress: Progress) -> np.ndarray:
        """How many of ``rows`` rows each source gives to a heterogeneous batch: a multinomial draw from the
        probabilities, with the scheduler's own generator (so it resumes exactly)."""
        return self._rng.multinomial(rows, self.probabilities(progress))

    def next(self, progress: Progress) -> int:
        """The index (into ``sizes``) of the source feeding the next micro-batch."""
        probs = self.sampler.probabilities(self.sizes, progress)
        # Inverse-CDF with one uniform draw: exactly one generator step per call, whatever the probabilities.
        u = self._rng.random()
        index = int(np.searchsorted(np.cumsum(probs), u, side="right"))
        return min(index, len(self.sizes) - 1)  # cumsum may end a hair below 1

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (the bit generator's; its 128-bit integers are plain Python ints)."""
        return {"bit_generator": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the sequence saved by :meth:`state_dict`."""
        saved = state["bit_generator"]
        if saved.get("bit_generator") != "PCG64":
            raise ValueError(f"sampler state is for bit generator {saved.get('bit_generator')!r}, expected 'PCG64'")
        self._rng.bit_generator.state = saved
