"""What the training loop does besides stepping: the loop's state (``LoopState``) and its result
(``TrainResult``), the metrics line of a step, evaluating on validation and keeping the best model, writing the
resumable ``last/`` folder, and the end of a run (calibrate, score and save ``best/``). ``polytask.train`` composes
them; it re-exports ``TrainResult``, ``LoopState`` and ``parameter_counts``."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.checkpoint import atomic_dir, save_training_state, write_model_files
from polytask.config import RunConfig
from polytask.data.loading import MultiTaskData
from polytask.evaluate import aggregate, evaluate, fit_calibration
from polytask.model import MultiTaskModel
from polytask.sampling import Progress
from polytask.tracking import MetricsLog, RunningLoss, Throughput
from polytask.training.distributed import gather_states, rng_state, shard_of
from polytask.training.feed import Feeder
from polytask.training.step import Objective, StepStats

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
    examples: int = 0  # over all processes
    seconds: float = 0.0  # the loop, evaluation and checkpoints included
    step_seconds: float = 0.0  # building the micro-batches and training_step only (what ms/step reports) ...
    timed_steps: int = 0  # ... over these steps: all but the first of a process, which pays one-time costs


def _finish(core: MultiTaskModel, data: MultiTaskData, cfg: RunConfig, state: LoopState, out_dir: Path,
            accelerator: Any, metrics_log: MetricsLog, history: list[dict[str, Any]]) -> TrainResult:
    """The best model (or the final one, without validation data), calibrated on validation (a temperature per
    head whose outputs are class probabilities), scored on validation and test; saved with the summary in best/."""
    t, main, shard = cfg.train, accelerator.is_main_process, shard_of(accelerator)
    best_dir = out_dir / "best"
    if not data.splits.get("validation"):
        log.warning("no validation split: the final model is saved as 'best' without model selection")
        if main:
            with atomic_dir(best_dir) as tmp:
                write_model_files(core, tmp, {"step": state.step})
    accelerator.wait_for_everyone()  # best/ is complete before any process reads it
    best = MultiTaskModel.from_pretrained(best_dir, device=accelerator.device)
    has_validation = bool(data.splits.get("validation"))
    if has_validation and cfg.evaluation.calibrate:
        temperatures = fit_calibration(best, data, "validation", t.eval_batch_size, t.precision, shard)
        if temperatures and main:
            fitted = [f"{task}.{head} T={value:.3f}" for task, heads in temperatures.items()
                      for head, value in heads.items()]
            log.info("temperature scaling on validation: %s", ", ".join(fitted))
    validation = evaluate(best, data, "validation", t.eval_batch_size, t.precision, shard,
                          calibration=True) if has_validation else None
    test = evaluate(best, data, "test", t.eval_batch_size, t.precision, shard,
                    calibration=True) if data.splits.get("test") else None
    summary = {"step": state.step, "best_metric": state.best, "metric": cfg.evaluation.metric,
               "validation": validation, "test": test, "train_seconds": round(state.seconds, 2),
               "step_seconds": round(state.step_seconds, 3), "timed_steps": state.timed_steps,
               "train_examples": state.examples,
               "processes": accelerator.num_processes, "parameters": parameter_counts(core)}
    if main:
        with atomic_dir(best_dir) as tmp:
            write_model_files(best, tmp, summary)
        if test is not None:
            metrics_log.write({"type": "eval", "step": state.step, "split": "test", **test})
    metrics_log.close()
    accelerator.wait_for_everyone()
    return TrainResult(out_dir, best_dir, state.step, state.best, validation, test, state.seconds, history)


def parameter_counts(model: MultiTaskModel) -> dict[str, Any]:
    """Total and trainable parameters (as trained: train.freeze applied) and what the sharing design adds."""
    return {"total": model.num_parameters(), "trainable": model.num_parameters(trainable=True),
            "sharing": model.sharing.name,
            "sharing_added": sum(p.numel() for p in model.sharing.added_parameters())}


def _broadcast_parameters(model: torch.nn.Module, accelerator: Any) -> None:
    """Start every process from rank 0's weights (the DDP wrapper does this itself; the Jacobian path has none)."""
    if accelerator.num_processes < 2:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def _log_step(metrics_log: MetricsLog, bar: Any, state: LoopState, progress: Progress, running: RunningLoss,
              speed: Throughput, stats: StepStats, lr_schedule: Any, feeder: Feeder) -> None:
    rate = speed.read()
    bar.set_postfix_str(" ".join(f"{k}={v:.3f}" for k, v in running.values.items()) + f" | {rate:.1f} ex/s")
    record = {"type": "train", "step": state.step, "epoch": round(progress.epoch, 4),
              "lr": lr_schedule.get_last_lr()[0], "loss": dict(running.values), "weight": stats.weights,
              "sampling": feeder.shares(progress), "examples_per_s": rate}
    if stats.gradient_weights:
        record["gradient_weight"] = stats.gradient_weights
    if stats.auxiliary:  # the sharing design's own losses (e.g. MoE load balancing), unweighted, apart from "loss"
        record["auxiliary"] = stats.auxiliary
    metrics_log.write(record)


def _evaluate_and_keep_best(model: MultiTaskModel, data: MultiTaskData, cfg: RunConfig, state: LoopState,
                            out_dir: Path, accelerator: Any) -> dict[str, Any] | None:
    if not data.splits.get("validation"):
        return None
    result = evaluate(model, data, "validation", cfg.train.eval_batch_size, cfg.train.precision,
                      shard_of(accelerator))
    value = aggregate(result, model.tasks, cfg.evaluation.metric)
    better = value is not None and (state.best is None or (
        value > state.best if cfg.evaluation.mode == "max" else value < state.best))
    if better:  # every process computed the same metrics, so they agree on this
        state.best, state.evals_without_gain = value, 0
        if accelerator.is_main_process:
            with atomic_dir(out_dir / "best") as tmp:
                write_model_files(model, tmp, {"step": state.step, "validation": result, "best_metric": value})
        accelerator.wait_for_everyone()
    else:
        state.evals_without_gain += 1
    return {"type": "eval", "step": state.step, **result, "aggregate": value, "best": state.best}


def _eval_line(record: dict[str, Any]) -> str:
    parts = [f"{task}: " + ", ".join(f"{k}={v:.4f}" for k, v in m.items() if k != "examples")
             for task, m in record["tasks"].items()]
    agg = record["aggregate"]
    return f"step {record['step']} validation | " + " | ".join(parts) + (f" | aggregate={agg:.4f}" if agg else "")


def _checkpoint(model: MultiTaskModel, folder: Path, optimizer: Any, lr_schedule: Any, objective: Objective,
                feeder: Feeder, state: LoopState, accelerator: Any) -> None:
    """``last/``: the model, optimizer, scheduler, weighting, and every process's data order and RNG state."""
    mine = {"feeder": feeder.state_dict(), "python_random": _jsonable(random.getstate()),
            "numpy_random": _jsonable(np.random.get_state()),
            "rng": {k: v.tolist() for k, v in rng_state().items()}}
    ranks = gather_states(accelerator, mine)  # every process takes part; the main one writes
    if accelerator.is_main_process:
        rngs = [{k: torch.tensor(v, dtype=torch.uint8) for k, v in r.pop("rng").items()} for r in ranks]
        with atomic_dir(folder) as tmp:
            write_model_files(model, tmp, None)
            save_training_state(tmp, optimizer, lr_schedule, objective.weighting, {
                "step": state.step, "best": state.best, "evals_without_gain": state.evals_without_gain,
                "examples": state.examples, "seconds": state.seconds, "step_seconds": state.step_seconds,
                "timed_steps": state.timed_steps,
                "processes": accelerator.num_processes,
                "ranks": ranks}, rngs)
    accelerator.wait_for_everyone()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value

