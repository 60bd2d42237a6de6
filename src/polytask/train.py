"""The training recipe, top to bottom: load, build, then step until done, evaluating and checkpointing on the way.

Each optimizer step takes ``grad_accum`` micro-batches from the :class:`~polytask.training.feed.Feeder` (per
``train.step_mode``: one input group per micro-batch, every group, or rows of several groups) and hands them to
:func:`~polytask.training.step.training_step` with the objective (loss weighting + gradient method). HF Accelerate
provides devices, mixed precision and DDP; every process agrees on the step count and on the sampler's draws,
evaluation is sharded across processes, and only the main process writes checkpoints (behind barriers). What the
loop does between steps (log, evaluate and keep the best, write ``last/``, finish) is in
:mod:`polytask.training.bookkeeping`.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.checkpoint import recover_dir
from polytask.config import RunConfig
from polytask.data.loading import MultiTaskData, build_tasks, load_data
from polytask.errors import PolytaskError
from polytask.gradients import build_gradient_method
from polytask.model import MultiTaskModel
from polytask.sampling import Progress, SourceScheduler, build_sampler
from polytask.trackers import build_trackers, hyperparameters
from polytask.tracking import MetricsLog, RunningLoss, Throughput, progress_bar
from polytask.training.affinity import measure_affinity
from polytask.training.contrastive import contrastive_stage
# _train calls _finish and _checkpoint through this module's names, so tests/ddp_driver.py can wrap them here
from polytask.training.bookkeeping import (LoopState, TrainResult, _broadcast_parameters, _checkpoint,  # noqa: F401
                                           _eval_line, _evaluate_and_keep_best, _finish, _log_step, parameter_counts)
from polytask.training.distributed import make_accelerator
from polytask.training.feed import Feeder
from polytask.training.resume import check_resume_config, last_good, restore
from polytask.training.start import freeze, start_encoder, transfer
from polytask.training.step import Objective, StepContext, last_shared_layer, training_step
from polytask.weighting import build_weighting
from polytask.vocabulary import prune_vocabulary
from polytask.weighting.base import NonFiniteLossError

log = logging.getLogger("polytask")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model: MultiTaskModel, weighting: torch.nn.Module, cfg: RunConfig) -> list[dict[str, Any]]:
    """Encoder at ``lr`` (LoRA's adapters live inside it); heads and task embeddings at ``head_lr``; what the
    sharing design adds outside the encoder (``sharing.*``) at ``sharing_lr`` (default ``head_lr``); biases and norms
    without weight decay; learnable loss weights (if the weighting has any) at ``weighting_lr`` without decay."""
    t = cfg.train
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:  # frozen (train.freeze): not optimised at all
            continue
        if name.startswith("encoder."):
            lr = t.lr
        elif name.startswith("sharing.") and t.sharing_lr is not None:
            lr = t.sharing_lr
        else:
            lr = t.head_lr or t.lr
        decay = 0.0 if p.ndim < 2 or "norm" in name.lower() or "task_embedding" in name else t.weight_decay
        groups.setdefault((lr, decay), []).append(p)
    out = [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    learnable = [p for p in weighting.parameters() if p.requires_grad]
    if learnable:
        out.append({"params": learnable, "lr": t.weighting_lr, "weight_decay": 0.0})
    return out


def make_optimizer(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """AdamW with the fused kernel: on a 2-core CPU the default per-tensor loop took ~70 ms per MiniLM step (40% of
    a bf16 step; benchmarks/profile_training.py), the fused one ~11 ms. Same update rule."""
    return torch.optim.AdamW(groups, fused=True)


def build_model(cfg: RunConfig, data: MultiTaskData, encoder: torch.nn.Module, tokenizer: Any) -> MultiTaskModel:
    model = MultiTaskModel(encoder, data.tasks, pooling=cfg.encoder.pooling,
                           task_embedding=cfg.encoder.task_embedding, dropout=cfg.encoder.dropout,
                           sharing=cfg.encoder.sharing.model_dump())
    model.tokenizer, model.run_config = tokenizer, cfg.model_dump(mode="json")
    model.max_length = cfg.encoder.max_length
    return model


def build_objective(cfg: RunConfig, task_names: list[str]) -> Objective:
    return Objective(build_weighting(cfg.weighting.name, cfg.weighting.params, task_names),
                     build_gradient_method(cfg.gradients.name, cfg.gradients.params, task_names))


def train(cfg: RunConfig, resume: str | Path | None = None, stop_after: int | None = None,
          show_progress: bool | None = None) -> TrainResult:
    """Train per ``cfg``; ``resume`` continues from a ``last`` checkpoint; ``stop_after`` ends the run after that
    many steps (as an interruption would, without the final evaluation)."""
    logs: list[MetricsLog] = []
    try:
        return _train(cfg, resume, stop_after, show_progress, logs)
    finally:  # also when training fails: the trackers' runs end (an MLflow run left open blocks the next one)
        for metrics_log in logs:
            metrics_log.close()


def _train(cfg: RunConfig, resume: str | Path | None, stop_after: int | None, show_progress: bool | None,
           logs: list[MetricsLog]) -> TrainResult:
    from transformers import get_scheduler

    t, ev = cfg.train, cfg.evaluation
    if resume is not None:  # before anything loads: a changed config cannot resume exactly
        if os.environ.get("RANK", "0") == "0":  # a crash between a save's renames leaves a complete hidden copy
            recover_dir(resume)
        check_resume_config(Path(resume), cfg)
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    seed_everything(t.seed)
    out_dir = Path(t.output_dir)
    accelerator = make_accelerator(t.precision, build_trackers(t.report_to, out_dir))
    main, world = accelerator.is_main_process, accelerator.num_processes

    # -- data, model, objective ------------------------------------------------------------------------------------
    tasks = build_tasks(cfg)
    encoder, tokenizer, source, kept = start_encoder(cfg, tasks)
    data = load_data(cfg, tokenizer, tasks=tasks, fit=True, keep=kept)
    teacher_weight = _distillation(cfg, data, out_dir, accelerator)
    core = build_model(cfg, data, encoder, tokenizer)
    if source is not None:
        if source.vocab_map is not None:  # started from a pruned checkpoint: its encoder reads through its map
            core.set_vocab_map(source.vocab_map)
        carried = transfer(core, source, kept, t.carry_tasks)
        if carried:
            log.info("carried from %s (not trained here): %s", t.init_from, ", ".join(carried))
        del source
    rows = prune_vocabulary(core, data, cfg.encoder.vocabulary)
    if rows is not None:
        log.info("encoder.vocabulary: %s: %s of %s word-embedding rows kept", cfg.encoder.vocabulary, f"{rows:,}",
                 f"{core.vocab_map.numel():,}")  # type: ignore[union-attr]
    frozen = freeze(core, t.freeze)
    if frozen:
        log.info("frozen (%s): %s of %s parameters", ", ".join(t.freeze), f"{frozen:,}", f"{core.num_parameters():,}")
    show = t.progress_bar if show_progress is None else show_progress
    contrastive = None
    if t.contrastive is not None and resume is None:  # a resumed run restores the tuned weights from last/
        contrastive = contrastive_stage(core, data.splits["train"], data.tasks, t.contrastive, t.seed,
                                        tokenizer.pad_token_id or 0, accelerator, show)
    objective = build_objective(cfg, list(data.tasks))
    objective.teacher_weight = teacher_weight
    train_splits = data.splits["train"]
    if t.compile:
        if objective.gradients.needs_task_gradients:  # torchjd vmaps through the graph: not through compiled code
            raise PolytaskError(f"train.compile does not work with gradient method {cfg.gradients.name!r} (its "
                                "per-task Jacobians use torch.vmap, which cannot run through compiled code)")
        core.encoder.compile(dynamic=True)  # in place: state_dict keys (and so checkpoints) stay as they are
    if objective.gradients.needs_task_gradients and not core.shared_parameters():
        raise PolytaskError(f"gradient method {cfg.gradients.name!r} works on the trainable parameters that every "
                            "task shares below its own ones, and there are none (train.freeze froze them, or "
                            f"encoder.sharing {cfg.encoder.sharing.name!r} gives every layer per-task parameters); "
                            "use gradients: sum, or train part of the shared encoder")
    if objective.gradients.needs_task_gradients and t.step_mode == "source" and len(train_splits) > 1:
        log.warning("gradient method %r with step_mode 'source': a step sees only the tasks of the input groups drawn "
                    "for its micro-batches; step_mode every_source or mixed puts every task in every step",
                    cfg.gradients.name)
    scheduler = SourceScheduler(build_sampler(cfg.sampler.name, cfg.sampler.params),
                                [len(s) for s in train_splits.values()], seed=t.seed)
    feeder = Feeder(t.step_mode, train_splits, data.tasks, t.batch_size, scheduler, t.seed,
                    tokenizer.pad_token_id or 0, accelerator.process_index, world)
    steps_per_epoch = feeder.steps_per_epoch(t.grad_accum)
    total_steps = t.max_steps or max(t.min_steps or 1, int(np.ceil(t.epochs * steps_per_epoch)))
    _warn_small(data, total_steps, cfg)
    eval_every = ev.every_steps or steps_per_epoch
    optimizer = make_optimizer(param_groups(core, objective.weighting, cfg))
    lr_schedule = get_scheduler("constant_with_warmup" if t.schedule == "constant" else t.schedule, optimizer,
                                num_warmup_steps=int(t.warmup_ratio * total_steps), num_training_steps=total_steps)
    state = LoopState(seconds=contrastive["seconds"] if contrastive else 0.0)  # train_seconds include the stage
    if resume is not None:
        if main:  # as for last/ above (recovered before the config check): best/ too
            recover_dir(out_dir / "best")
        accelerator.wait_for_everyone()
        saved = restore(Path(resume), core, optimizer, lr_schedule, objective.weighting, feeder, accelerator)
        state = LoopState(step=saved["step"], best=saved["best"], evals_without_gain=saved["evals_without_gain"],
                          examples=saved["examples"], seconds=saved["seconds"],
                          step_seconds=saved.get("step_seconds", 0.0), timed_steps=saved.get("timed_steps", 0))
    if objective.gradients.needs_task_gradients:  # the step reduces gradients itself: no DDP wrapper
        model = core.to(accelerator.device)
        _broadcast_parameters(core, accelerator)
        optimizer = accelerator.prepare(optimizer)
    else:
        model, optimizer = accelerator.prepare(core, optimizer)
    objective.weighting.to(accelerator.device)
    objective.gradients.to(accelerator.device)
    layer = last_shared_layer(core, cfg.weighting.name) if objective.weighting.reads_shared_layer else []
    ctx = StepContext(accelerator, model, optimizer, shared=core.shared_parameters(), shared_layer=layer,
                      grad_clip=t.grad_clip)
    metrics_log = MetricsLog(out_dir, enabled=main, accelerator=accelerator)
    logs.append(metrics_log)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "run_config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        metrics_log.start_trackers(hyperparameters(cfg.model_dump(mode="json")))
        if contrastive is not None:
            metrics_log.write({"type": "contrastive", **contrastive})
        log.info("training %d tasks from %d input groups for %d steps (%d per epoch, step mode %s, %d process%s), "
                 "%s parameters (%s trainable; sharing %s adds %s)", len(data.tasks), len(train_splits), total_steps,
                 steps_per_epoch, t.step_mode, world, "es" if world > 1 else "", f"{core.num_parameters():,}",
                 f"{core.num_parameters(trainable=True):,}", cfg.encoder.sharing.name,
                 f"{sum(p.numel() for p in core.sharing.added_parameters()):,}")
    accelerator.wait_for_everyone()

    # -- the loop --------------------------------------------------------------------------------------------------
    running, speed = RunningLoss(), Throughput()
    bar = progress_bar(total_steps, desc="train", unit="step", initial=state.step, enabled=show and main)
    history: list[dict[str, Any]] = []
    started = time.perf_counter() - state.seconds
    state_at_start = state.step
    model.train()
    while state.step < total_steps:
        progress = Progress(step=state.step, total_steps=total_steps, epoch=state.step / steps_per_epoch,
                            num_epochs=total_steps / steps_per_epoch)
        step_started = time.perf_counter()
        micro_batches = [feeder.micro_batch(progress) for _ in range(t.grad_accum)]
        lookahead = _encoder_lr(optimizer, ctx.shared) if t.affinity_every else 0.0
        if t.affinity_every and state.step % t.affinity_every == 0 and main and lookahead > 0:  # (0 in warm-up)
            metrics_log.write({"type": "affinity", "step": state.step, **measure_affinity(
                core, micro_batches, data.tasks, ctx.shared, lookahead, accelerator)})
            step_started = time.perf_counter()  # the measurement is not part of the step's time
        try:
            stats = training_step(micro_batches, ctx, data.tasks, objective, progress)
        except NonFiniteLossError as exc:  # nothing written since the last evaluation: say where that state is
            bar.close()
            metrics_log.close()
            raise NonFiniteLossError(f"{exc}; {last_good(out_dir, Path(resume) if resume else None, eval_every)}"
                                     ) from None
        if state.step != state_at_start:  # not the first step this process runs (lazy imports, allocator)
            state.step_seconds += time.perf_counter() - step_started
            state.timed_steps += 1
        lr_schedule.step()
        state.step += 1
        state.examples += stats.examples * world
        speed.add(stats.examples * world)
        running.update(stats.losses)
        bar.update(1)
        if state.step % t.log_every == 0 or state.step == total_steps:
            _log_step(metrics_log, bar, state, progress, running, speed, stats, lr_schedule, feeder)
        if stop_after is not None and state.step >= stop_after and state.step < total_steps:
            state.seconds = time.perf_counter() - started
            _checkpoint(core, out_dir / "last", optimizer, lr_schedule, objective, feeder, state, accelerator)
            bar.close()
            metrics_log.close()
            return TrainResult(out_dir, out_dir / "best", state.step, state.best, None, None, state.seconds, history)
        if state.step % eval_every == 0 or state.step == total_steps:
            record = _evaluate_and_keep_best(core, data, cfg, state, out_dir, accelerator)
            if record is not None:
                history.append(record)
                metrics_log.write(record)
                if main:
                    bar.write(_eval_line(record))
            state.seconds = time.perf_counter() - started
            if t.save_last == "every_eval":
                _checkpoint(core, out_dir / "last", optimizer, lr_schedule, objective, feeder, state, accelerator)
            if ev.patience and state.evals_without_gain >= ev.patience:
                if main:
                    bar.write(f"early stopping at step {state.step}: no gain in {ev.patience} evaluations")
                break
    bar.close()
    state.seconds = time.perf_counter() - started
    if t.save_last == "end":
        _checkpoint(core, out_dir / "last", optimizer, lr_schedule, objective, feeder, state, accelerator)
    return _finish(core, data, cfg, state, out_dir, accelerator, metrics_log, history)


def _encoder_lr(optimizer: Any, shared: list[torch.nn.Parameter]) -> float:
    """The current learning rate of the encoder's parameter group (the look-ahead step of affinity measurement)."""
    first = shared[0] if shared else None
    for group in optimizer.param_groups:
        if any(p is first for p in group["params"]):
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])


def _distillation(cfg: RunConfig, data: MultiTaskData, out_dir: Path, accelerator: Any) -> Any:
    """With ``distillation``: the teachers' soft targets in the training fields (computed once, by the main
    process) and the teacher weight, 1 at the first step to 0 at the last (BAM!'s teacher annealing)."""
    if cfg.distillation is None:
        return None
    from polytask.recipes.distill import attach, label_with_teachers

    folder = Path(cfg.distillation.cache) if cfg.distillation.cache else out_dir / "teachers"
    if accelerator.is_main_process:
        label_with_teachers(cfg, folder)
    accelerator.wait_for_everyone()
    attach(data, cfg, folder)
    return lambda progress: 1.0 - progress.step / max(1, progress.total_steps - 1)


def _warn_small(data: MultiTaskData, total_steps: int, cfg: RunConfig) -> None:
    """Say so when a run is too small to mean much: very few steps, or a validation split too small to select on."""
    rows = sum(len(s) for s in data.splits["train"].values())
    if total_steps < 30:
        log.warning("only %d optimizer steps on %d training rows: on small data raise train.epochs, lower "
                    "train.batch_size, or set train.min_steps (polytask add-task sets 100)", total_steps, rows)
    for name, split in data.splits.get("validation", {}).items():
        if len(split) < 20:
            log.warning("%s: the validation split has only %d examples: model selection on it is mostly noise "
                        "(use a larger validation split, or evaluation.metric on a task that has one)", name,
                        len(split))
