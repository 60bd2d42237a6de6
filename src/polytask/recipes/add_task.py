"""``polytask add-task CKPT CONFIG``: a new task (or several) on a trained model, its other tasks kept unchanged.

The CONFIG declares the new task(s) and their data as any run config does; the run starts from CKPT
(``train.init_from``) and carries the checkpoint's other tasks over (``train.carry_tasks``). By default the encoder
and the carried heads are frozen, so the model's existing outputs stay the same to the bit and only the new heads
learn (a linear probe of the joint encoder: the right default for a handful of examples); ``tune_encoder`` trains
the encoder too (better new-task accuracy with more data, at the price of changing the other tasks' outputs). Small
data gets enough optimizer steps: ``train.min_steps`` defaults to 100 here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from polytask.checkpoint import read_config
from polytask.config import RunConfig, load_config
from polytask.errors import PolytaskError

if TYPE_CHECKING:
    from polytask.tasks import TaskParams

MIN_STEPS = 100


def add_task_config(checkpoint: str | Path, config: str | Path, overrides: list[str] | None = None,
                    tune_encoder: bool = False) -> RunConfig:
    """The run config of adding CONFIG's tasks to CHECKPOINT (init_from, carry_tasks, freezing)."""
    saved = read_config(checkpoint)["tasks"]
    cfg = load_config(config, list(overrides or []))
    # load_config validated every task with its task type's Params: each is a TaskParams
    clashes = [n for n, p in cfg.tasks.items()
               if n in saved and saved[n]["params"]["type"] != cast("TaskParams", p).type]
    if clashes:
        raise PolytaskError(f"task name(s) {', '.join(clashes)} exist in {checkpoint} with another type; choose "
                            "new names for the new tasks")
    t = cfg.train
    t.init_from, t.carry_tasks = str(checkpoint), True
    carried = [f"heads.{n}" for n in saved if n not in cfg.tasks]
    t.freeze = list(dict.fromkeys([*t.freeze, *carried, *([] if tune_encoder else ["encoder"])]))
    if cfg.encoder.task_embedding and not tune_encoder:
        t.freeze.append("task_embedding")  # the carried tasks' rows; the new rows would stay zero anyway
        t.freeze = list(dict.fromkeys(t.freeze))
    if t.min_steps is None and t.max_steps is None:
        t.min_steps = MIN_STEPS
    return cfg


def add_task(checkpoint: str | Path, config: str | Path, overrides: list[str] | None = None,
             tune_encoder: bool = False, show_progress: bool | None = None):
    """Train CONFIG's tasks on top of CHECKPOINT; -> the TrainResult (its best/ holds every task)."""
    from polytask.train import train

    return train(add_task_config(checkpoint, config, overrides, tune_encoder), show_progress=show_progress)
