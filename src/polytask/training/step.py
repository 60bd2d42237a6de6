"""One optimizer step as a function: ``training_step(micro_batches, ctx, tasks, objective, progress) -> StepStats``.

The training loop, the single-task baselines (through ``train``) and ``benchmarks/profile_training.py`` all call it;
there is no other copy of the step. The objective is a loss weighting (per-task weighted terms) and a gradient
method (how the per-task gradients of the shared encoder become one update); the step branches on the capabilities
they declare, never on their names:

- gradient method without ``needs_task_gradients`` (``sum``): forward, weighted total, backward, per micro-batch;
  under DDP the gradients are all-reduced by the DDP wrapper in the last micro-batch's backward.
- with ``needs_task_gradients``: per micro-batch and encoder pass, torchjd's ``mtl_backward`` gives the Jacobian of
  the pass's tasks' terms with respect to the shared encoder parameters through the shared representation (the
  encoder output of that pass) and the heads' plain gradients; the Jacobians are summed over the step's micro-batches (rows = the step's tasks), averaged
  over processes under DDP, and aggregated once into the encoder's ``.grad``.

Then the learned loss weights' gradients are averaged over processes, the norm is clipped, the optimizer steps, and
the weighting gets its hooks (``after_step`` with the losses of the same batches after the update; ``end_step``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from polytask.gradients.base import GradientMethod
from polytask.sharing.base import AuxLoss
from polytask.sampling.base import Progress
from polytask.tasks import Task
from polytask.training.feed import MicroBatch
from polytask.weighting.base import LossWeighting, WeightingContext


AGGREGATION_SEED = 7919


@dataclass
class Objective:
    """What a step minimises: the loss weighting and the gradient method; with distillation, the weight of the
    teachers' soft targets at a point of training (tasks mix them with the gold labels)."""

    weighting: LossWeighting
    gradients: GradientMethod
    teacher_weight: Callable[[Progress], float] | None = None

    def teacher_weight_at(self, progress: Progress) -> float | None:
        return None if self.teacher_weight is None else self.teacher_weight(progress)


@dataclass
class StepContext:
    """The moving parts a step works on (built once by the trainer)."""

    accelerator: Any
    model: nn.Module  # as prepared: DDP-wrapped under DDP when the gradient method uses plain backward
    optimizer: torch.optim.Optimizer
    shared: list[nn.Parameter]  # the encoder's trainable parameters (rows of the Jacobian's columns)
    shared_layer: list[nn.Parameter] = field(default_factory=list)  # the last shared layer (for GradNorm)
    grad_clip: float | None = None
    timings: dict[str, float] | None = None  # phase -> seconds, accumulated when given (profiling)

    @property
    def distributed(self) -> bool:
        return self.accelerator.num_processes > 1

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="mean") if self.distributed else tensor

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="sum") if self.distributed else tensor

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        if self.timings is None:
            yield
            return
        start = time.perf_counter()
        yield
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - start


@dataclass
class StepStats:
    losses: dict[str, float]  # mean raw loss per task over the micro-batches that had it
    weights: dict[str, float]  # loss weights (the weighting's)
    gradient_weights: dict[str, float]  # row weights of the gradient method (empty for sum)
    examples: int  # rows of this process
    auxiliary: dict[str, float] = field(default_factory=dict)  # the sharing design's own losses (unweighted)


def forward_losses(model: nn.Module, micro_batch: MicroBatch, tasks: dict[str, Task], features: bool = False,
                   teacher_weight: float | None = None, auxiliary: list[AuxLoss] | None = None
                   ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Every part's encoder pass and heads -> ({task: loss} for the tasks some row labels, [shared
    representations]). ``teacher_weight``: the weight of the teachers' soft targets in the tasks that carry them
    (distillation). ``auxiliary``: filled with the sharing design's own losses of each pass (e.g. load balancing)."""
    losses: dict[str, torch.Tensor] = {}
    shared: list[torch.Tensor] = []
    # the sharing design's own losses; under DDP the wrapped MultiTaskModel has them
    design_losses: Any = getattr(getattr(model, "module", model), "auxiliary_losses", None)
    for part in micro_batch.parts:
        out = model(part.batch.inputs, part.batch.task_inputs, tasks=part.tasks, return_features=features,
                    for_loss=True)
        if features:
            out, tokens = out
            shared.append(tokens)
        if auxiliary is not None and design_losses is not None:
            auxiliary.extend(design_losses().values())
        for name in part.tasks:
            targets = part.batch.targets[name]
            if teacher_weight is not None and "soft" in targets:
                targets = {**targets, "teacher_weight": torch.tensor(teacher_weight)}
            loss = tasks[name].loss(out[name], targets)
            if loss is not None:
                losses[name] = loss if name not in losses else losses[name] + loss
    return losses, shared


def training_step(micro_batches: list[MicroBatch], ctx: StepContext, tasks: dict[str, Task], objective: Objective,
                  progress: Progress) -> StepStats:
    """Forward, backward (or per-task Jacobians and their aggregation), clip, optimizer step, weighting hooks."""
    weighting, method = objective.weighting, objective.gradients
    wctx = WeightingContext(ctx.shared_layer, ctx.mean)
    teacher = objective.teacher_weight_at(progress)
    seen: dict[str, list[float]] = {}
    weights: dict[str, float] = {}
    gradient_weights: dict[str, float] = {}
    auxiliary: dict[str, list[float]] = {}
    if method.needs_task_gradients:
        gradient_weights = _task_gradient_backward(micro_batches, ctx, tasks, objective, progress, wctx, seen, weights,
                                                   auxiliary)
    else:
        for i, micro in enumerate(micro_batches):
            sync = i == len(micro_batches) - 1
            aux: list[AuxLoss] = []
            with nullcontext() if sync else ctx.accelerator.no_sync(ctx.model):
                with ctx.timed("forward"), ctx.accelerator.autocast():
                    losses, _ = forward_losses(ctx.model, micro, tasks, teacher_weight=teacher, auxiliary=aux)
                    combined = weighting.combine(losses, progress, wctx)
                    total = combined.total
                    for a in aux:  # the sharing design's own losses (e.g. MoE load balancing), weighted
                        total = total + a.weight * a.value
                with ctx.timed("backward"):
                    ctx.accelerator.backward(total / len(micro_batches))
            _record(losses, combined.weights, seen, weights)
            _record_auxiliary(aux, auxiliary)
    with ctx.timed("optimizer"):
        for p in weighting.parameters():  # the weighting is not inside the DDP wrapper: average its gradients here
            if p.grad is not None and ctx.distributed:
                p.grad = ctx.mean(p.grad)
        if ctx.grad_clip:
            ctx.accelerator.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
        ctx.optimizer.step()
        ctx.optimizer.zero_grad(set_to_none=True)
        if weighting.needs_losses_after_step:
            weighting.after_step(_losses_after(micro_batches, ctx, tasks, weighting), progress, wctx)
        weighting.end_step(ctx.sum)
    return StepStats({n: sum(v) / len(v) for n, v in seen.items()}, weights, gradient_weights,
                     sum(m.size for m in micro_batches), {n: sum(v) / len(v) for n, v in auxiliary.items()})


def _record_auxiliary(aux: list[AuxLoss], into: dict[str, list[float]]) -> None:
    for a in aux:
        into.setdefault(a.name, []).append(float(a.value.detach()))


def _record(losses: dict[str, torch.Tensor], used: dict[str, float], seen: dict[str, list[float]],
            weights: dict[str, float]) -> None:
    for name, loss in losses.items():
        seen.setdefault(name, []).append(float(loss.detach()))
    weights.update(used)


def _task_gradient_backward(micro_batches: list[MicroBatch], ctx: StepContext, tasks: dict[str, Task],
                            objective: Objective, progress: Progress, wctx: WeightingContext,
                            seen: dict[str, list[float]], weights: dict[str, float],
                            auxiliary: dict[str, list[float]]) -> dict[str, float]:
    """Accumulate the step's per-task Jacobian of the shared parameters (float32 [m, n]) and the heads' gradients,
    average both over processes, write the gradient method's aggregate into the shared parameters' ``.grad``."""
    from torchjd.autojac import mtl_backward

    order = {name: i for i, name in enumerate(tasks)}
    step_tasks = sorted({t for m in micro_batches for t in m.tasks}, key=order.__getitem__)
    rows = {t: i for i, t in enumerate(step_tasks)}
    shared_ids = {id(p) for p in ctx.shared}
    specific = [p for p in ctx.model.parameters() if p.requires_grad and id(p) not in shared_ids]
    specific += [p for p in objective.weighting.parameters() if p.requires_grad]
    sizes = [p.numel() for p in ctx.shared]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    jacobian = torch.zeros(len(step_tasks), sum(sizes), device=ctx.shared[0].device)
    for micro in micro_batches:
        aux: list[AuxLoss] = []
        with ctx.timed("forward"), ctx.accelerator.autocast():
            losses, features = forward_losses(ctx.model, micro, tasks, features=True,
                                              teacher_weight=objective.teacher_weight_at(progress), auxiliary=aux)
            combined = objective.weighting.combine(losses, progress, wctx)
        _record(losses, combined.weights, seen, weights)
        _record_auxiliary(aux, auxiliary)
        with ctx.timed("backward"):
            # One call per encoder pass: a task's term depends only on its own pass's features, so its Jacobian
            # row needs a backward through that pass only (the others would backpropagate zeros). retain_graph: a
            # weighting may compute its terms as one vector, shared by every task's graph.
            for part, part_features in zip(micro.parts, features):
                present = [t for t in part.tasks if t in combined.terms]
                if not present:
                    continue
                # every task gets all task-specific parameters (heads, task embedding, learned loss weights): a
                # term reaches only its own, the others get zeros; left to torchjd, the search for a term's own
                # parameters would walk into the other passes' encoder graphs through a weighting's shared vector
                mtl_backward([combined.terms[t] / len(micro_batches) for t in present], features=part_features,
                             tasks_params=[specific] * len(present), shared_params=ctx.shared, retain_graph=True)
                index = torch.tensor([rows[t] for t in present], device=jacobian.device)
                for p, start, size in zip(ctx.shared, starts, sizes):
                    jac = getattr(p, "jac", None)
                    if jac is not None:
                        jacobian[index, start : start + size] += jac.reshape(len(present), -1).float()
                        delattr(p, "jac")  # set by torchjd's mtl_backward
            if aux:  # the design's own losses (a task-routed gate's balance) do not reach the shared parameters
                sum(a.weight * a.value for a in aux).backward(retain_graph=True)  # type: ignore[union-attr]
    # the heads of tasks this step did not see got zeros above: give them no gradient at all, as a plain backward
    # would (the optimizer then leaves them alone: no momentum, no weight decay on a zero gradient)
    heads = getattr(ctx.model, "heads", None)
    unseen = {id(p) for name, head in (heads or {}).items() if name not in rows for p in head.parameters()}
    for p in specific:
        if id(p) in unseen:
            p.grad = None
    with ctx.timed("aggregate"):
        if ctx.distributed:  # every process holds its own batches' Jacobian: average them before aggregating
            jacobian = ctx.mean(jacobian)
            for p in specific:  # the same tensors on every process, in the same order (zeros where none came)
                if id(p) not in unseen and not any(p is q for q in objective.weighting.parameters()):
                    p.grad = ctx.mean(p.grad if p.grad is not None else torch.zeros_like(p))
        # Methods may draw random numbers (PCGrad's task order, GradDrop's signs): from a generator seeded by the
        # step, so that every process draws the same ones (their global RNGs differ: dropout over different shapes)
        # and the global stream (dropout) is left as it was.
        devices = [jacobian.device.index or 0] if jacobian.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(AGGREGATION_SEED + progress.step)
            update, gradient_weights = objective.gradients.aggregate(jacobian, step_tasks, progress)
        for p, start, size in zip(ctx.shared, starts, sizes):
            p.grad = update[start : start + size].view_as(p).to(p.dtype).clone()
    return gradient_weights


def _losses_after(micro_batches: list[MicroBatch], ctx: StepContext, tasks: dict[str, Task],
                  weighting: LossWeighting) -> dict[str, torch.Tensor]:
    """The raw losses of the step's batches under the updated model, per task averaged over the micro-batches that
    had it and over processes (a task absent everywhere is left out)."""
    names = weighting.task_names
    sums = torch.zeros(len(names), device=ctx.shared[0].device if ctx.shared else None)
    counts = torch.zeros_like(sums)
    with torch.no_grad(), ctx.accelerator.autocast():
        for micro in micro_batches:
            losses, _ = forward_losses(ctx.model, micro, tasks)
            for name, loss in losses.items():
                sums[names.index(name)] += loss.float()
                counts[names.index(name)] += 1
    sums, counts = ctx.sum(sums), ctx.sum(counts)
    return {n: sums[i] / counts[i] for i, n in enumerate(names) if counts[i] > 0}


def last_shared_layer(model: Any, weighting: str) -> list[nn.Parameter]:
    """The trainable parameters of the encoder's last module that holds a weight matrix of its own and that every
    task shares (GradNorm's W: for BERT-like encoders the output dense layer of the top Transformer block). What a
    sharing design adds inside the encoder (a task's LoRA adapter) is never W: its gradient norm is one task's.
    Nothing left (e.g. ``train.freeze: [encoder]``) is refused: the weighting would silently stay at its start."""
    added = {id(p) for p in model.sharing.added_parameters()}
    last: list[nn.Parameter] = []
    for module in model.encoder.modules():
        # own parameters only: a PEFT wrapper's `weight` is its base layer's, which comes next in the walk
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and id(p) not in added]
        if any(p.dim() >= 2 for p in own):
            last = own
    if not last:
        from polytask.errors import PolytaskError

        raise PolytaskError(f"weighting {weighting!r} balances the tasks' gradient norms on the last encoder layer "
                            "that every task shares and that trains, and there is none (train.freeze froze the "
                            f"encoder's own weights; what encoder.sharing {model.sharing.name!r} adds, if anything, "
                            "belongs to single tasks); "
                            "use another weighting (e.g. uncertainty, dwa) or freeze less (train.freeze: "
                            "[layers:A-B] keeps the top layers trainable)")
    return last
