"""Checkpoint folders: written atomically, loaded from safetensors and JSON only (no pickle).

A model folder holds ``config.json`` (encoder config, pooling, tasks with their params and label spaces),
``model.safetensors`` (encoder + heads), the tokenizer files, ``run_config.yaml``, ``metrics.json`` and a model card
``README.md`` (``polytask.card``; loading never reads it, so folders saved before cards existed load the same).
A resumable training folder adds ``trainer_state.json``, ``optimizer.safetensors`` and ``weighting.safetensors``.

This module writes them; the atomic swap is ``polytask.atomic`` and the reading side ``polytask.checkpoint_read``,
both re-exported here so ``polytask.checkpoint`` stays the one place to import checkpoint functions from.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from polytask.atomic import (COMPLETE, CRASH_ENV, CRASH_POINTS, _crash_point, _final_path,  # noqa: F401
                             atomic_dir, is_complete, leftovers, recover_dir)
from polytask.checkpoint_read import (FORMAT_VERSION, load_model, load_tasks, load_tokenizer,  # noqa: F401
                                      load_training_state, load_weights, optimizer_from_tensors, read_config,
                                      read_metrics, saved_run_config)

log = logging.getLogger(__name__)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def model_config(model) -> dict[str, Any]:
    from polytask.plugins import used_plugins
    from polytask.vocabulary import vocabulary_config

    encoder = {"config": model.encoder.config.to_dict(), "pooling": model.pooling,
               "task_embedding": model.task_embedding is not None, "max_length": model.max_length,
               "sharing": model.sharing.to_config()}  # rebuilt on load before the weights (adapters, experts)
    if (vocabulary := vocabulary_config(model)) is not None:  # pruned: the map [ids] is in model.safetensors
        encoder["vocabulary"] = vocabulary
    return {
        "format": "polytask",
        "version": FORMAT_VERSION,
        "encoder": encoder,
        "dropout": float(getattr(model, "dropout", 0.1)),
        "tasks": {name: {"params": task.params.model_dump(mode="json"), "state": task.saved_state(),
                         "input": task.input.to_dict() if task.input is not None else None}
                  for name, task in model.tasks.items()},
        # plugins (not built in) the tasks or the run used, and where from: named when a load misses one
        "plugins": used_plugins(dict(model.tasks), model.run_config),
    }


def write_model_files(model, folder: Path, metrics: dict[str, Any] | None = None) -> None:
    _write_json(folder / "config.json", model_config(model))
    save_file(_contiguous(model.state_dict()), str(folder / "model.safetensors"), metadata={"format": "pt"})
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(folder))
    if model.run_config is not None:
        import yaml

        (folder / "run_config.yaml").write_text(yaml.safe_dump(model.run_config, sort_keys=False), encoding="utf-8")
    if metrics is not None:
        _write_json(folder / "metrics.json", metrics)
    _write_card(folder / "README.md", model_config(model), model.run_config, metrics)


def _write_card(path: Path, config: dict[str, Any], run_config: dict[str, Any] | None,
                metrics: dict[str, Any] | None) -> None:
    from polytask.card import checkpoint_card

    try:
        text = checkpoint_card(config, run_config, metrics)
    except Exception as exc:  # noqa: BLE001  (a card is documentation: its failure must not lose a training run)
        log.warning("%s: model card not written (%s: %s); the checkpoint itself is complete", path.parent,
                    type(exc).__name__, exc)
        return
    path.write_text(text, encoding="utf-8")


def rewrite_config(model, path: str | Path) -> Path:
    """Replace only ``path/config.json`` (temperatures, task params) with the model's, atomically: the new file is
    written beside it and renamed over it, so readers see the old file or the new one; then the model card
    (README.md, which shows the temperatures) the same way. The weights, tokenizer, metrics and an exported ONNX
    graph stay as they are (none of them holds temperatures or thresholds)."""
    path = Path(path)
    read_config(path)  # it must be a checkpoint
    config = model_config(model)
    for name, write in (("config.json", lambda f: _write_json(f, config)),
                        ("README.md", lambda f: _write_card(f, config, model.run_config, read_metrics(path)))):
        tmp = path / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            write(tmp)
            if tmp.exists():
                os.replace(tmp, path / name)
        finally:
            tmp.unlink(missing_ok=True)
    return path


def save_model(model, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    with atomic_dir(path) as tmp:
        write_model_files(model, tmp, metrics)
    return Path(path)


# ----------------------------------------------------------------------------------------------------------------------
# optimizer / training state without pickle


def optimizer_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors for safetensors, JSON for the rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_training_state(folder: Path, optimizer, scheduler, weighting, trainer: dict[str, Any],
                        rngs: list[dict[str, torch.Tensor]]) -> None:
    """Write the resumable parts into ``folder`` (called inside the same atomic_dir as the model files).
    ``trainer`` holds the loop state and, under ``ranks``, each process's data order and Python/numpy RNG;
    ``rngs`` each process's torch RNG state (CPU and CUDA), saved as ``rng.safetensors`` keys ``RANK.NAME``."""
    _crash_point(_final_path(folder), "half-written")  # the model files are there, the training state is not
    tensors, meta = optimizer_to_tensors(optimizer.state_dict())
    save_file(tensors, str(folder / "optimizer.safetensors"))
    save_file(_contiguous(weighting.state_dict()), str(folder / "weighting.safetensors"))
    save_file({f"{rank}.{name}": t.contiguous() for rank, state in enumerate(rngs) for name, t in state.items()},
              str(folder / "rng.safetensors"))
    _write_json(folder / "trainer_state.json", {**trainer, "optimizer": meta, "scheduler": scheduler.state_dict()})


