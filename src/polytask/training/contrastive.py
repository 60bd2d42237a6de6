"""Contrastive tuning of the shared encoder before the heads train (``train.contrastive``), as SetFit does it.

SetFit (Tunstall et al. 2022, "Efficient Few-Shot Learning Without Prompts") first tunes a sentence encoder on
pairs of training rows, similar when both rows have the same class and dissimilar otherwise, so that the classes
separate in the pooled vector a head reads; then it fits the head. Here the pairs come from the classes of the tasks
named in ``train.contrastive.tasks`` (by default every task whose type can say what a row's class is:
:meth:`polytask.tasks.Task.pair_classes`), the pooled vector is the model's own (``encoder.pooling``, through the
task's layers under a sharing design), the loss is SetFit's: the squared difference between the cosine similarity of
the two vectors and 1 (same class) or 0. Then the run trains as usual, heads and encoder, from the tuned encoder.

Pairs: for every row and each of ``iterations`` rounds, one similar pair (a random other row of its class) and one
dissimilar pair (a random row of another class), as SetFit's ``num_iterations`` draws them: 2 x iterations x rows
pairs, so the cost grows with the rows (a few-shot recipe, not a large-data one). The draws are seeded by
``train.seed``; every process runs the same stage, and rank 0's weights are broadcast after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from polytask.data.batching import collate
from polytask.data.dataset import FeatureSplit

log = logging.getLogger("polytask")


def draw_pairs(classes: Sequence[Hashable], iterations: int, rng: np.random.Generator) -> list[tuple[int, int, float]]:
    """Rows' classes -> shuffled (row, row, target) pairs: per round and row, one with a random other row of its
    class (target 1; skipped when the class has one row) and one with a random row of another class (target 0;
    skipped when there is one class)."""
    by_class: dict[Hashable, list[int]] = {}
    for i, c in enumerate(classes):
        by_class.setdefault(c, []).append(i)
    pairs: list[tuple[int, int, float]] = []
    for _ in range(iterations):
        for i, c in enumerate(classes):
            same = by_class[c]
            if len(same) > 1:
                j = same[int(rng.integers(len(same) - 1))]
                pairs.append((i, j if j != i else same[-1], 1.0))
            if len(by_class) > 1:
                j = int(rng.integers(len(classes) - len(same)))
                pairs.append((i, _nth_outside(j, c, by_class), 0.0))
    order = rng.permutation(len(pairs))
    return [pairs[k] for k in order]


def _nth_outside(n: int, cls: Hashable, by_class: dict[Hashable, list[int]]) -> int:
    """The n-th row (0-based) of the rows not in class ``cls``, counted class by class."""
    for other, rows in by_class.items():
        if other == cls:
            continue
        if n < len(rows):
            return rows[n]
        n -= len(rows)
    raise IndexError(n)


def task_rows(split: FeatureSplit, task: Any) -> tuple[list[int], list[Hashable]]:
    """The first feature of each row of ``split`` that labels ``task``, and that row's class."""
    firsts = split.by_example()
    features, classes = [], []
    for example, feats in zip(split.examples, firsts):
        gold = split.golds[task.name][example.index]
        if gold is not None and feats:
            features.append(feats[0])
            classes.append(task.pair_class(gold))
    return features, classes


def pooled(core: Any, inputs: dict[str, torch.Tensor], task: str) -> torch.Tensor:
    """The vector ``task``'s head would read from ``inputs``: [B, H] (its layers under a sharing design)."""
    kwargs = core.encoder_inputs(inputs["input_ids"], inputs["attention_mask"], inputs.get("token_type_ids"))
    passes, _ = core.sharing.encode(kwargs, [task])
    return core.pool(passes[0][1], inputs["attention_mask"])


def trainable_encoder_parameters(core: Any) -> list[torch.nn.Parameter]:
    """What the stage tunes: every trainable parameter but the heads' and the task embeddings'."""
    own = {id(p) for p in core.heads.parameters()}
    if core.task_embedding is not None:
        own |= {id(p) for p in core.task_embedding.parameters()}
    return [p for p in core.parameters() if p.requires_grad and id(p) not in own]


def contrastive_stage(core: Any, splits: dict[str, FeatureSplit], tasks: dict[str, Any], settings: Any, seed: int,
                      pad_id: int, accelerator: Any, show: bool) -> dict[str, Any]:
    """Tune ``core``'s encoder on pairs of the training rows of ``settings.tasks`` (the run's
    ``train.contrastive``); -> what was done: pairs, steps, seconds, mean loss of the first and last tenth."""
    from transformers import get_scheduler

    from polytask.tracking import progress_bar
    from polytask.training.bookkeeping import _broadcast_parameters

    rng = np.random.default_rng([seed, 7919])  # its own stream: the main loop's draws stay as without the stage
    jobs: list[tuple[FeatureSplit, str, list[int], list[tuple[int, int, float]]]] = []
    for split in splits.values():
        for name in split.tasks:
            if name in settings.tasks:
                features, classes = task_rows(split, tasks[name])
                jobs.append((split, name, features, draw_pairs(classes, settings.iterations, rng)))
    batches = [(split, name, [(features[a], features[b], y) for a, b, y in pairs[i: i + settings.batch_size]])
               for _ in range(settings.epochs) for split, name, features, pairs in jobs
               for i in range(0, len(pairs), settings.batch_size)]
    batches = [batches[k] for k in rng.permutation(len(batches))]  # tasks interleaved, not one after the other
    params = trainable_encoder_parameters(core)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, fused=accelerator.device.type != "mps")
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=int(0.1 * len(batches)),
                             num_training_steps=len(batches))
    core.to(accelerator.device).train()
    losses: list[float] = []
    started = time.perf_counter()
    bar = progress_bar(len(batches), desc="contrastive", unit="step", enabled=show and accelerator.is_main_process)
    for split, name, rows in batches:
        left, right, targets = zip(*rows)
        batch = collate(split, [*left, *right], {}, pad_id, names=[]).to(accelerator.device)
        with accelerator.autocast():
            vectors = pooled(core, batch.inputs, name).float()
        similarity = F.cosine_similarity(vectors[: len(rows)], vectors[len(rows):])
        loss = F.mse_loss(similarity, torch.tensor(targets, device=similarity.device))
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.update(1)
    bar.close()
    _broadcast_parameters(core, accelerator)
    tenth = max(1, len(losses) // 10)
    done = {"tasks": [name for _, name, _, _ in jobs], "pairs": sum(len(p) for *_, p in jobs) * settings.epochs,
            "steps": len(batches), "seconds": time.perf_counter() - started,
            "loss_first": float(np.mean(losses[:tenth])) if losses else None,
            "loss_last": float(np.mean(losses[-tenth:])) if losses else None}
    log.info("contrastive stage (%s): %d pairs in %d steps, %.1f s; loss %.4f -> %.4f", ", ".join(done["tasks"]),
             done["pairs"], done["steps"], done["seconds"], done["loss_first"] or 0.0, done["loss_last"] or 0.0)
    return done
