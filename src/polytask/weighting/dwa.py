"""``dwa``: Dynamic Weight Average of Liu, Johns & Davison 2019, "End-to-end multi-task learning with attention"
(CVPR), section "Dynamic Weight Average".

    w_k(t) = K·exp(r_k(t−1)/T) / Σ_i exp(r_i(t−1)/T),    r_k(t−1) = L̄_k(t−1) / L̄_k(t−2)

where L̄_k(t) is task k's average loss over window t (the paper: an epoch; here ``window: epoch`` or a number of
optimizer steps), K the number of tasks and T a temperature (T → ∞ gives equal weights). A task whose loss fell
faster than the others' gets less weight. Weights are 1 during the first two windows, as in the paper. Here a
source-sampled step sees only some tasks, so the average runs over the micro-batches that had the task, and a task
without a loss in one of the two windows gets r_k = 1 (no evidence of a trend). The weights are constants to
autograd: they follow from past loss values, not from this step's graph.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ClassVar, Literal

import torch
from pydantic import BaseModel, Field

from polytask.sampling.base import Progress
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingContext, WeightingParams

# Rolling more than this many windows at once leaves both remembered windows empty, as any larger jump would.
_MAX_ROLLS = 3


class DWAParams(WeightingParams):
    temperature: float = Field(2.0, gt=0, description="T of the softmax over loss ratios")
    window: Literal["epoch"] | Annotated[int, Field(ge=1)] = Field(
        "epoch", description="'epoch' (the paper) or a number of optimizer steps per window")


@WEIGHTINGS.register("dwa")
class DWAWeighting(LossWeighting):
    """Dynamic Weight Average (Liu et al. 2019): weights from the softmax of each loss's recent rate of decrease.

    Buffers (all [K] unless noted, saved for resumption): ``sums``/``counts`` of the window being filled (plus
    ``pending_sums``/``pending_counts`` of the step under way),
    ``prev_mean``/``prev_count`` of window t−1 and ``prev2_mean``/``prev2_count`` of t−2, the current ``weight``,
    and scalars ``window_id`` (the window being filled, −1 before the first call) and ``completed`` (windows
    finished)."""

    Params: ClassVar[type[WeightingParams]] = DWAParams
    params: DWAParams
    # the buffers registered in __init__, declared for type checkers (register_buffer is invisible to them)
    sums: torch.Tensor
    counts: torch.Tensor
    prev_mean: torch.Tensor
    prev_count: torch.Tensor
    prev2_mean: torch.Tensor
    prev2_count: torch.Tensor
    pending_sums: torch.Tensor
    pending_counts: torch.Tensor
    weight: torch.Tensor
    window_id: torch.Tensor
    completed: torch.Tensor

    def __init__(self, task_names: list[str], params: BaseModel) -> None:
        super().__init__(task_names, params)
        k = len(self.task_names)
        for name in ("sums", "counts", "prev_mean", "prev_count", "prev2_mean", "prev2_count"):
            self.register_buffer(name, torch.zeros(k))
        # this step's losses, merged into sums/counts at the end of the step (summed over processes under DDP)
        self.register_buffer("pending_sums", torch.zeros(k))
        self.register_buffer("pending_counts", torch.zeros(k))
        self.register_buffer("weight", torch.ones(k))
        self.register_buffer("window_id", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("completed", torch.tensor(0, dtype=torch.long))

    def window_of(self, progress: Progress) -> int:
        """The 0-based window ``progress`` falls in."""
        if self.params.window == "epoch":
            return progress.epoch_index
        return progress.step // self.params.window

    def _combine(self, losses: dict[str, torch.Tensor], progress: Progress, context: WeightingContext
                 ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        self._advance(self.window_of(progress))
        values = torch.stack([loss.float() for loss in losses.values()])  # [P], P = tasks present
        index = torch.tensor([self.index[name] for name in losses], device=self.sums.device)
        self.pending_sums.index_add_(0, index, values.detach().to(self.sums.device))
        self.pending_counts.index_add_(0, index, torch.ones(len(losses), device=self.sums.device))
        used = self.weight[index]  # [P], a buffer: no gradient flows into the weights
        terms = used.to(values.device) * values
        return dict(zip(losses, terms.unbind())), dict(zip(losses, used.tolist()))

    @torch.no_grad()
    def end_step(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Merge this step's losses into the window, summed over processes: every process then holds the same
        averages and weights (each process sees only its own batches)."""
        self.pending_sums.copy_(reduce(self.pending_sums))
        self.pending_counts.copy_(reduce(self.pending_counts))
        self._merge_pending()

    def _merge_pending(self) -> None:
        self.sums.add_(self.pending_sums)
        self.counts.add_(self.pending_counts)
        self.pending_sums.zero_()
        self.pending_counts.zero_()

    @torch.no_grad()
    def _advance(self, window: int) -> None:
        """Close the windows before ``window`` and recompute the weights once two are complete."""
        self._merge_pending()  # without end_step calls (one process, a direct caller), each step merges here
        current = int(self.window_id)
        if current < 0:
            self.window_id.fill_(window)
            return
        if window <= current:  # same window (or a stray earlier step): keep filling it
            return
        for _ in range(min(window - current, _MAX_ROLLS)):
            has = self.counts > 0
            mean = torch.where(has, self.sums / self.counts.clamp(min=1), torch.zeros_like(self.sums))
            self.prev2_mean.copy_(self.prev_mean)
            self.prev2_count.copy_(self.prev_count)
            self.prev_mean.copy_(mean)
            self.prev_count.copy_(self.counts)
            self.sums.zero_()
            self.counts.zero_()
        self.completed.add_(window - current)
        self.window_id.fill_(window)
        if int(self.completed) >= 2:
            self.weight.copy_(self._weights())

    def _weights(self) -> torch.Tensor:
        """w [K] from the two last complete windows."""
        # r_k = 1 where a window lacks task k, or where L̄_k(t−2) = 0 (a ratio to nothing says nothing).
        seen = (self.prev_count > 0) & (self.prev2_count > 0) & (self.prev2_mean > 0)
        ratio = torch.ones_like(self.prev_mean)
        ratio[seen] = self.prev_mean[seen] / self.prev2_mean[seen]
        return len(self.task_names) * torch.softmax(ratio / self.params.temperature, dim=0)
