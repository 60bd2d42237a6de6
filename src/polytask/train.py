"""The training loop, top to bottom: load, build, then step until done, evaluating and checkpointing on the way.

Each optimizer step draws ``grad_accum`` micro-batches; the sampler picks the input group (a dataset, or the tasks of
a dataset that read the same input) of each, the group's batch carries the fields of every task it feeds, one
encoder pass computes every head, and the weighting turns the per-task losses into one. HF Accelerate provides
devices and mixed precision.
"""

from __future__ import annotations

import logging
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.checkpoint import atomic_dir, load_training_state, save_training_state, write_model_files
from polytask.config import RunConfig
from polytask.data.batching import BatchStream, collate
from polytask.data.loading import MultiTaskData, build_tasks, load_data
from polytask.encoder import add_special_tokens, load_encoder
from polytask.evaluate import aggregate, evaluate
from polytask.model import MultiTaskModel
from polytask.sampling import Progress, SourceScheduler, build_sampler
from polytask.tracking import MetricsLog, RunningLoss, Throughput, progress_bar
from polytask.weighting import build_weighting

log = logging.getLogger("polytask")


@dataclass
class TrainResult:
    output_dir: Path
    best_dir: Path
    steps: int
    best_metric: float | None
    validation: dict[str, Any] | None
    test: dict[str, Any] | None
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LoopState:
    step: int = 0
    best: float | None = None
    evals_without_gain: int = 0
    examples: int = 0
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def param_groups(model: MultiTaskModel, weighting: torch.nn.Module, cfg: RunConfig) -> list[dict[str, Any]]:
    """Encoder at ``lr``; heads and task embeddings at ``head_lr``; biases and norms without weight decay;
    learnable loss weights (if the weighting has any) at ``weighting_lr`` without decay."""
    t = cfg.train
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        lr = t.lr if name.startswith("encoder.") else (t.head_lr or t.lr)
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
                           task_embedding=cfg.encoder.task_embedding, dropout=cfg.encoder.dropout)
    model.tokenizer, model.run_config = tokenizer, cfg.model_dump(mode="json")
    model.max_length = cfg.encoder.max_length
    return model


def train(cfg: RunConfig, resume: str | Path | None = None, stop_after: int | None = None,
          show_progress: bool | None = None) -> TrainResult:
    """Train per ``cfg``; ``resume`` continues from a ``last`` checkpoint; ``stop_after`` ends the run after that
    many steps (as an interruption would, without the final evaluation)."""
    from transformers import get_scheduler

    t, ev = cfg.train, cfg.evaluation
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    seed_everything(t.seed)
    accelerator = _accelerator("bf16" if t.precision == "bf16" else "no")
    out_dir = Path(t.output_dir)
    main = accelerator.is_main_process

    # -- data and model --------------------------------------------------------------------------------------------
    tasks = build_tasks(cfg)
    encoder, tokenizer = load_encoder(cfg.encoder.name, cfg.encoder.revision)
    add_special_tokens(tokenizer, encoder, [t for task in tasks.values() for t in task.input.special_tokens()])
    data = load_data(cfg, tokenizer, tasks=tasks, fit=True)
    model = build_model(cfg, data, encoder, tokenizer)
    train_splits = data.splits["train"]
    sources = list(train_splits)
    streams = {s: BatchStream(train_splits[s], t.batch_size, seed=t.seed + 1000 * i,
                              rank=accelerator.process_index, world=accelerator.num_processes)
               for i, s in enumerate(sources)}
    steps_per_epoch = max(1, math.ceil(sum(st.batches_per_epoch for st in streams.values()) / t.grad_accum))
    total_steps = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
    eval_every = ev.every_steps or steps_per_epoch
    scheduler = SourceScheduler(build_sampler(cfg.sampler.name, cfg.sampler.params),
                                [len(train_splits[s]) for s in sources], seed=t.seed)
    weighting = build_weighting(cfg.weighting.name, cfg.weighting.params, list(data.tasks))

    optimizer = make_optimizer(param_groups(model, weighting, cfg))
    lr_schedule = get_scheduler("constant_with_warmup" if t.schedule == "constant" else t.schedule, optimizer,
                                num_warmup_steps=int(t.warmup_ratio * total_steps), num_training_steps=total_steps)
    state = LoopState()
    if resume is not None:
        state = _restore(Path(resume), model, optimizer, lr_schedule, weighting, streams, scheduler)
    model, optimizer = accelerator.prepare(model, optimizer)
    weighting.to(accelerator.device)
    core: MultiTaskModel = accelerator.unwrap_model(model)
    pad_id = tokenizer.pad_token_id or 0
    metrics_log = MetricsLog(out_dir, enabled=main)
    if main:
        (out_dir / "run_config.yaml").parent.mkdir(parents=True, exist_ok=True)
        (out_dir / "run_config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
        log.info("training %d tasks from %d sources for %d steps (%d per epoch), %s parameters",
                 len(data.tasks), len(sources), total_steps, steps_per_epoch, f"{core.num_parameters():,}")

    # -- the loop --------------------------------------------------------------------------------------------------
    running, speed = RunningLoss(), Throughput()
    show = t.progress_bar if show_progress is None else show_progress
    bar = progress_bar(total_steps, desc="train", unit="step", initial=state.step, enabled=show and main)
    history: list[dict[str, Any]] = []
    started = time.perf_counter() - state.seconds
    model.train()
    while state.step < total_steps:
        progress = Progress(step=state.step, total_steps=total_steps, epoch=state.step / steps_per_epoch,
                            num_epochs=total_steps / steps_per_epoch)
        step_losses: dict[str, float] = {}
        step_weights: dict[str, float] = {}
        for micro in range(t.grad_accum):
            source = sources[scheduler.next(progress)]
            split = train_splits[source]
            indices = streams[source].next_indices()
            batch = collate(split, indices, data.tasks, pad_id).to(accelerator.device)
            sync = micro == t.grad_accum - 1
            with nullcontext() if sync else accelerator.no_sync(model), accelerator.autocast():
                outputs = model(batch.inputs, batch.task_inputs, tasks=split.tasks)
                losses = {n: loss for n in split.tasks
                          if (loss := data.tasks[n].loss(outputs[n], batch.targets[n])) is not None}
                total, weights = weighting.combine(losses, progress)
            accelerator.backward(total / t.grad_accum)
            step_losses.update({n: float(v.detach()) for n, v in losses.items()})
            step_weights.update(weights)
            state.examples += len(indices)
            speed.add(len(indices) * accelerator.num_processes)
        if accelerator.num_processes > 1:  # DDP syncs the model's gradients, not the loss weighting's
            for p in weighting.parameters():
                if p.grad is not None:
                    p.grad = accelerator.reduce(p.grad, reduction="mean")
        if t.grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        running.update(step_losses)
        bar.update(1)

        if state.step % t.log_every == 0 or state.step == total_steps:
            rate = speed.read()
            bar.set_postfix_str(" ".join(f"{k}={v:.3f}" for k, v in running.values.items()) + f" | {rate:.1f} ex/s")
            probs = scheduler.sampler.probabilities([len(train_splits[s]) for s in sources], progress)
            metrics_log.write({"type": "train", "step": state.step, "epoch": round(progress.epoch, 4),
                               "lr": lr_schedule.get_last_lr()[0], "loss": dict(running.values),
                               "weight": step_weights, "sampling": dict(zip(sources, map(float, probs))),
                               "examples_per_s": rate})

        if stop_after is not None and state.step >= stop_after and state.step < total_steps:
            state.seconds = time.perf_counter() - started
            _checkpoint(core, out_dir / "last", optimizer, lr_schedule, weighting, streams, scheduler, state, main)
            bar.close()
            metrics_log.close()
            return TrainResult(out_dir, out_dir / "best", state.step, state.best, None, None, state.seconds, history)

        if state.step % eval_every == 0 or state.step == total_steps:
            record = _evaluate_and_keep_best(core, data, cfg, state, out_dir, main)
            if record is not None:
                history.append(record)
                metrics_log.write(record)
                bar.write(_eval_line(record))
            state.seconds = time.perf_counter() - started
            _checkpoint(core, out_dir / "last", optimizer, lr_schedule, weighting, streams, scheduler, state, main)
            if ev.patience and state.evals_without_gain >= ev.patience:
                bar.write(f"early stopping at step {state.step}: no gain in {ev.patience} evaluations")
                break
    bar.close()
    state.seconds = time.perf_counter() - started

    # -- final: the best model on test -----------------------------------------------------------------------------
    best_dir = out_dir / "best"
    if "validation" not in data.splits or not data.splits["validation"]:
        log.warning("no validation split: the final model is saved as 'best' without model selection")
        if main:
            with atomic_dir(best_dir) as tmp:
                write_model_files(core, tmp, {"step": state.step})
    best = MultiTaskModel.from_pretrained(best_dir, device=accelerator.device)
    validation = evaluate(best, data, "validation", t.eval_batch_size, t.precision) if data.splits.get(
        "validation") else None
    test = evaluate(best, data, "test", t.eval_batch_size, t.precision) if data.splits.get("test") else None
    summary = {"step": state.step, "best_metric": state.best, "metric": ev.metric, "validation": validation,
               "test": test, "train_seconds": round(state.seconds, 2), "train_examples": state.examples}
    if main:
        with atomic_dir(best_dir) as tmp:
            write_model_files(best, tmp, summary)
        if test is not None:
            metrics_log.write({"type": "eval", "step": state.step, "split": "test", **test})
    metrics_log.close()
    return TrainResult(out_dir, best_dir, state.step, state.best, validation, test, state.seconds, history)


# ----------------------------------------------------------------------------------------------------------------------
# helpers of the loop


def _accelerator(mixed_precision: str):
    """Accelerate keeps its settings in a process-wide singleton; a second run in the same process (baselines,
    benchmarks, notebooks) with another precision must reset it. The process group (PartialState) is kept."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision)


def _evaluate_and_keep_best(model: MultiTaskModel, data: MultiTaskData, cfg: RunConfig, state: LoopState,
                            out_dir: Path, main: bool) -> dict[str, Any] | None:
    if not data.splits.get("validation"):
        return None
    result = evaluate(model, data, "validation", cfg.train.eval_batch_size, cfg.train.precision)
    value = aggregate(result, model.tasks, cfg.evaluation.metric)
    better = value is not None and (state.best is None or (
        value > state.best if cfg.evaluation.mode == "max" else value < state.best))
    if better:
        state.best, state.evals_without_gain = value, 0
        if main:
            with atomic_dir(out_dir / "best") as tmp:
                write_model_files(model, tmp, {"step": state.step, "validation": result, "best_metric": value})
    else:
        state.evals_without_gain += 1
    return {"type": "eval", "step": state.step, **result, "aggregate": value, "best": state.best}


def _eval_line(record: dict[str, Any]) -> str:
    parts = [f"{task}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "examples")
             for task, m in record["tasks"].items()]
    agg = record["aggregate"]
    return f"step {record['step']} validation | " + " | ".join(parts) + (f" | aggregate={agg:.4f}" if agg else "")


def _checkpoint(model: MultiTaskModel, folder: Path, optimizer, lr_schedule, weighting, streams, scheduler,
                state: LoopState, main: bool) -> None:
    if not main:
        return
    with atomic_dir(folder) as tmp:
        write_model_files(model, tmp, None)
        save_training_state(tmp, optimizer, lr_schedule, weighting, {
            "step": state.step, "best": state.best, "evals_without_gain": state.evals_without_gain,
            "examples": state.examples, "seconds": state.seconds,
            "streams": {s: st.state_dict() for s, st in streams.items()}, "sampler": scheduler.state_dict(),
            "python_random": _jsonable(random.getstate()), "numpy_random": _jsonable(np.random.get_state()),
        })


def _restore(folder: Path, model: MultiTaskModel, optimizer, lr_schedule, weighting, streams,
             scheduler) -> LoopState:
    from safetensors.torch import load_file

    saved = load_training_state(folder)
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    optimizer.load_state_dict(saved["optimizer"])
    lr_schedule.load_state_dict(saved["scheduler"])
    weighting.load_state_dict(saved["weighting_state"])
    for s, st in saved["streams"].items():
        if s not in streams:
            raise ValueError(f"{folder}: checkpoint has source {s!r} that the config does not define")
        streams[s].load_state_dict(st)
    scheduler.load_state_dict(saved["sampler"])
    torch.set_rng_state(saved["rng_torch"])
    random.setstate(_tuples(saved["python_random"]))
    np.random.set_state(tuple(saved["numpy_random"]))  # type: ignore[arg-type]
    return LoopState(step=saved["step"], best=saved["best"], evals_without_gain=saved["evals_without_gain"],
                     examples=saved["examples"], seconds=saved["seconds"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
