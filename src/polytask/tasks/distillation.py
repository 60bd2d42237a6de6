"""Soft targets for knowledge distillation with teacher annealing (BAM!, Clark et al. 2019, "BAM! Born-Again
Multi-Task Networks for Natural Language Understanding", ACL).

A distillable task type (``distillable = True``) turns a teacher's outputs for an example into a soft target
(``soft_target``: class probabilities, a value, per-word probabilities) and, when a batch carries them
(``targets["soft"]``) with a teacher weight w (``targets["teacher_weight"]``, going from 1 to 0 over training),
trains on the mixture w·teacher + (1 − w)·gold instead of the gold label alone. Rows without a gold label stay
unlabelled (masked), as without distillation. The helpers below are the losses on such mixed targets.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

IGNORE = -100


def teacher_weight(targets: dict[str, torch.Tensor]) -> float | None:
    """The batch's teacher weight, or None when it carries no soft targets (plain training)."""
    if "soft" not in targets or "teacher_weight" not in targets:
        return None
    return float(targets["teacher_weight"])


def mixed_cross_entropy(logits: torch.Tensor, gold: torch.Tensor, soft: torch.Tensor, weight: float
                        ) -> torch.Tensor | None:
    """logits [N, C], gold [N] class indices (IGNORE = unlabelled), soft [N, C] probabilities (NaN rows: no teacher
    output) -> mean over labelled rows of −Σ_c target_c·log p_c with target = w·soft + (1 − w)·one-hot(gold)."""
    keep = gold != IGNORE
    if not keep.any():
        return None
    logits, gold, soft = logits[keep].float(), gold[keep], soft[keep].float()
    target = F.one_hot(gold, logits.shape[-1]).float()
    has = ~torch.isnan(soft).any(-1, keepdim=True)
    target = torch.where(has, weight * torch.nan_to_num(soft) + (1 - weight) * target, target)
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def multi_label_bce(logits: torch.Tensor, target: torch.Tensor, reduction: Literal["sum", "mean"]) -> torch.Tensor:
    """Multi-label BCE with logits: logits, target [N, C] -> summed over the C labels and averaged over the N rows
    (``"sum"``), or averaged over all N·C (``"mean"``)."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss.sum(-1).mean() if reduction == "sum" else loss.mean()


def mixed_binary_cross_entropy(logits: torch.Tensor, gold: torch.Tensor, soft: torch.Tensor, weight: float,
                               reduction: Literal["sum", "mean"]) -> torch.Tensor | None:
    """Multi-label: logits [N, C], gold [N, C] 0/1 (NaN rows: unlabelled), soft [N, C] probabilities (NaN rows: no
    teacher output) -> BCE with logits against w·soft + (1 − w)·gold (``reduction``: see :func:`multi_label_bce`)."""
    keep = ~torch.isnan(gold[:, 0])
    if not keep.any():
        return None
    gold, soft = gold[keep], soft[keep].float()
    has = ~torch.isnan(soft).any(-1, keepdim=True)
    target = torch.where(has, weight * torch.nan_to_num(soft) + (1 - weight) * gold, gold)
    return multi_label_bce(logits[keep].float(), target, reduction)


def mixed_squared_error(values: torch.Tensor, gold: torch.Tensor, soft: torch.Tensor, weight: float
                        ) -> torch.Tensor | None:
    """Regression: values [N], gold [N] (NaN: unlabelled), soft [N] teacher values (NaN: none), all on the
    standardised scale -> MSE against w·soft + (1 − w)·gold."""
    keep = ~torch.isnan(gold)
    if not keep.any():
        return None
    gold, soft = gold[keep], soft[keep].float()
    target = torch.where(torch.isnan(soft), gold, weight * torch.nan_to_num(soft) + (1 - weight) * gold)
    return F.mse_loss(values[keep].float(), target)
