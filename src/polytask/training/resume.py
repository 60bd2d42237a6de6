"""Resuming a run exactly, and saying where the last good state is when a run must stop.

``train --resume DIR`` continues the run saved in ``DIR`` (a ``last/`` folder) as if it had never stopped. That holds
only when the config is the run's own: before anything loads, the saved ``run_config.yaml`` (``DIR``'s, else the one
beside it) is compared with the new config, and every changed key that shapes training is listed. The keys in
``SAFE_KEYS`` change where output goes or how it is shown, never the numbers, so they may differ. Then the saved
state must fit the model and optimizer built now; a mismatch is told as which tensors differ.
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from polytask.checkpoint import is_complete, leftovers, load_training_state, load_weights
from polytask.config import RunConfig
from polytask.errors import ConfigError, PolytaskError

log = logging.getLogger("polytask")

# may differ between the run and its resumption: output place, display, evaluation batching and experiment
# trackers (no effect on the weights). Anything else (data, tasks, encoder, batch size, seed, sampler, weighting, gradients, step_mode,
# grad_accum, precision, lr, epochs / max_steps, which shape the LR schedule...) is refused.
SAFE_KEYS = ("train.output_dir", "train.progress_bar", "train.log_every", "train.num_threads",
             "train.eval_batch_size", "train.report_to")
_ABSENT = "(absent)"


def saved_run_config(folder: Path) -> tuple[dict[str, Any], Path] | None:
    """The run's config as saved with ``folder`` (its own run_config.yaml, else the one of its output dir)."""
    for file in (folder / "run_config.yaml", folder.parent / "run_config.yaml"):
        if file.is_file():
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data, file
    return None


def config_changes(old: Any, new: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) of every leaf that differs; lists are compared whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in dict.fromkeys([*old, *new]):
            sub = f"{path}.{key}" if path else str(key)
            out += config_changes(old.get(key, _ABSENT), new.get(key, _ABSENT), sub)
        return out
    return [] if old == new else [(path, old, new)]


def check_resume_config(folder: Path, cfg: RunConfig) -> None:
    """Refuse to resume ``folder`` under a config that changes how training goes, listing every changed key."""
    from polytask.config import validate_config

    if not folder.is_dir():
        # another process than the one that recovers an interrupted save may look before it is back in place
        complete = [p for p in leftovers(folder) if is_complete(p)]
        if not complete:
            raise PolytaskError(f"{folder}: --resume folder not found (give a run's 'last' checkpoint folder)")
        folder = complete[-1]
    saved = saved_run_config(folder)
    if saved is None:
        log.warning("%s: no run_config.yaml beside the checkpoint: cannot check that the config is the run's own",
                    folder)
        return
    data, file = saved
    try:  # both sides through the same validation, so defaults added since the run was saved do not count
        old = validate_config(data, source=str(file), check_files=False, check_encoder=False).model_dump(mode="json")
    except ConfigError:
        old = data
    changes = [c for c in config_changes(old, cfg.model_dump(mode="json")) if c[0] not in SAFE_KEYS]
    if changes:
        lines = "\n".join(f"  - {key}: {_shown(a)} -> {_shown(b)}" for key, a, b in changes)
        raise PolytaskError(
            f"{folder}: cannot resume exactly: the config differs from the run's ({file}) in {len(changes)} key(s) "
            f"that shape training:\n{lines}\nResume with the run's config, or start a new run in another "
            f"output_dir. Keys that may differ on resume: {', '.join(SAFE_KEYS)}")


def _shown(value: Any) -> str:
    text = value if value == _ABSENT else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def restore(folder: Path, model: Any, optimizer: Any, lr_schedule: Any, weighting: Any, feeder: Any,
            accelerator: Any) -> dict[str, Any]:
    """Load the state saved in ``folder`` into the objects built now; -> the saved loop counters. A state that does
    not fit (other tasks, label sets, parameter groups) is a PolytaskError saying so."""
    from polytask.training.distributed import set_rng_state

    saved = load_training_state(folder)
    processes = saved.get("processes", 1)
    if processes != accelerator.num_processes:
        raise PolytaskError(f"{folder}: saved by {processes} process(es), resumed with {accelerator.num_processes}: "
                            "each process's data order and random state cannot be carried over; resume with the "
                            "same number of processes")
    from safetensors.torch import load_file

    load_weights(model, load_file(str(folder / "model.safetensors")), str(folder / "model.safetensors"))
    try:
        optimizer.load_state_dict(saved["optimizer"])
        weighting.load_state_dict(saved["weighting_state"])
        feeder.load_state_dict(saved["ranks"][accelerator.process_index]["feeder"])
    except (ValueError, RuntimeError, KeyError) as exc:
        raise PolytaskError(f"{folder}: the saved training state does not fit the run built now: {exc}") from None
    lr_schedule.load_state_dict(saved["scheduler"])
    mine = saved["ranks"][accelerator.process_index]
    set_rng_state(saved["rngs"][accelerator.process_index])
    random.setstate(_tuples(mine["python_random"]))
    np.random.set_state(tuple(mine["numpy_random"]))
    return saved


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def last_good(out_dir: Path, resumed_from: Path | None, first_eval: int) -> str:
    """Where training can go on from after a failure: the ``last/`` checkpoint (untouched by the failed steps)."""
    for folder in (out_dir / "last", resumed_from):
        state = folder / "trainer_state.json" if folder is not None else None
        if state is not None and state.is_file():
            step = json.loads(state.read_text(encoding="utf-8")).get("step")
            return (f"the last good checkpoint is {folder} (step {step}, written at the last evaluation and left "
                    "untouched): evaluate or export it as it is, or resume it with --resume once the data is fixed "
                    "(changed settings, e.g. a lower train.lr, need a new run)")
    return (f"no checkpoint was written yet (the first comes with the first evaluation, at step {first_eval}); "
            "fix the cause (the data, or e.g. a lower train.lr) and start again")
