"""Checkpoint folders: written atomically, loaded from safetensors and JSON only (no pickle).

A model folder holds ``config.json`` (encoder config, pooling, tasks with their params and label spaces),
``model.safetensors`` (encoder + heads), the tokenizer files, ``run_config.yaml``, ``metrics.json`` and a model card
``README.md`` (``polytask.card``; loading never reads it, so folders saved before cards existed load the same).
A resumable training folder adds ``trainer_state.json``, ``optimizer.safetensors`` and ``weighting.safetensors``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from polytask.errors import PolytaskError
from polytask.registry import UnknownNameError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: each task stores its input spec (1: "text"/"pair"), read by both


COMPLETE = ".complete"  # written last into a folder being saved: a folder holding it has every file
CRASH_ENV = "POLYTASK_CRASH_AT"  # tests only: "NAME:POINT[:N]" kills the process at that point (see _crash_point)
CRASH_POINTS = ("half-written", "written", "complete", "between-renames", "swapped")
_crash_counts: dict[tuple[str, str], int] = {}


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` by renames, so a crash leaves
    either the old complete folder or the new complete one, never a half-written one under the final name.

    The swap: every file of the new folder is flushed to disk, then the marker ``.complete`` is written; the old
    folder is renamed to ``.NAME.old-*``, the new one to ``NAME``, and the old one deleted. A crash between the two
    renames leaves no ``NAME`` but two complete hidden folders: :func:`recover_dir` puts the newer one in place.
    Leftovers of earlier crashes (``.NAME.tmp-*``, ``.NAME.old-*``) are deleted once the new folder is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _crash_point(path, "written")  # every file there, no marker yet: recovery must not take it
        _mark_complete(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _crash_point(path, "complete")
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    if path.exists():
        os.replace(path, old)
        _crash_point(path, "between-renames")
    os.replace(tmp, path)
    _fsync_dir(path.parent)  # the renames themselves survive a power cut, not only a killed process
    _crash_point(path, "swapped")
    shutil.rmtree(old, ignore_errors=True)
    _remove_leftovers(path)


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` was written to the end by :func:`atomic_dir` (it holds the marker)."""
    return (Path(folder) / COMPLETE).is_file()


def leftovers(path: str | Path) -> list[Path]:
    """The hidden folders an interrupted :func:`atomic_dir` of ``path`` may have left beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*") for p in path.parent.glob(pattern)
                  if p.is_dir())


def recover_dir(path: str | Path) -> bool:
    """Finish a save of ``path`` that a crash interrupted; -> whether ``path`` exists afterwards.

    The newest complete folder among ``path`` and its leftovers (by the time in their marker; a ``path`` written
    before markers existed counts as the oldest) ends up as ``path``; every other leftover is deleted. Incomplete
    leftovers (no marker: the crash came while writing) are never used.
    """
    path = Path(path)
    candidates = [p for p in leftovers(path) if is_complete(p)]
    best = max(candidates, key=_written_ns, default=None)
    if best is not None and path.exists() and _written_ns(path) >= _written_ns(best):
        best = None
    if best is not None:
        log.warning("%s: a save was interrupted by a crash; its complete copy %s is put in place", path, best.name)
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        if path.exists():
            os.replace(path, old)
        os.replace(best, path)
        _fsync_dir(path.parent)
    _remove_leftovers(path)
    return path.exists()


def _written_ns(folder: Path) -> int:
    try:
        return int(json.loads((folder / COMPLETE).read_text(encoding="utf-8"))["written_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1  # no marker (written before markers existed): older than any folder with one


def _mark_complete(folder: Path) -> None:
    """Flush every file of ``folder`` to disk, then write the marker (so the marker never outlives missing data)."""
    for file in folder.rglob("*"):
        if file.is_file():
            with file.open("rb") as f:
                os.fsync(f.fileno())
    with (folder / COMPLETE).open("w", encoding="utf-8") as f:
        f.write(json.dumps({"written_ns": time.time_ns()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder: renames there are as durable as the OS makes them
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_leftovers(path: Path) -> None:
    for folder in leftovers(path):
        shutil.rmtree(folder, ignore_errors=True)


def _final_path(folder: Path) -> Path:
    """The folder an :func:`atomic_dir` temporary folder will become (``.last.tmp-1a2b3c4d`` -> ``last``)."""
    name, dot, _ = folder.name.rpartition(".tmp-")
    return folder.parent / name[1:] if dot and name.startswith(".") else folder


def _crash_point(path: Path, point: str) -> None:
    """Test hook: with ``POLYTASK_CRASH_AT=NAME:POINT[:N]`` the process kills itself (SIGKILL: no clean-up runs)
    the N-th time (default 1) a save of a folder named NAME reaches POINT, so a test can crash a real training run
    at an exact moment of a checkpoint save. Unset (always, outside tests) it costs one dictionary lookup."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    where, _, nth = rest.partition(":")
    if name != path.name or where != point:
        return
    key = (name, point)
    _crash_counts[key] = _crash_counts.get(key, 0) + 1
    if _crash_counts[key] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


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


def read_metrics(path: str | Path) -> dict[str, Any] | None:
    """A checkpoint's stored evaluation (metrics.json), or None when it has none."""
    file = Path(path) / "metrics.json"
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


def save_model(model, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
    with atomic_dir(path) as tmp:
        write_model_files(model, tmp, metrics)
    return Path(path)


def read_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    file = path / "config.json"
    if not file.is_file():
        raise PolytaskError(f"{path}: not a polytask checkpoint (no config.json)")
    config = json.loads(file.read_text(encoding="utf-8"))
    if config.get("format") != "polytask":
        raise PolytaskError(f"{file}: not a polytask checkpoint config (format={config.get('format')!r})")
    if config.get("version", 0) > FORMAT_VERSION:
        raise PolytaskError(f"{file}: written by a newer polytask (format version {config['version']})")
    return config


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model from config.json (no hub access) and load its weights from model.safetensors."""
    import yaml

    from polytask.encoder import encoder_from_config
    from polytask.model import MultiTaskModel

    path = Path(path)
    config = read_config(path)
    tasks = load_tasks(config)
    enc = config["encoder"]
    model = MultiTaskModel(encoder_from_config(enc["config"]), tasks, pooling=enc["pooling"],
                           task_embedding=enc["task_embedding"], dropout=config.get("dropout", 0.1),
                           sharing=enc.get("sharing"))  # absent (saved before sharing designs): hard
    if "vocabulary" in enc:  # a pruned word-embedding table: the map's values come with the weights
        model.set_vocab_map(torch.zeros(int(enc["vocabulary"]["ids"]), dtype=torch.long))
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise PolytaskError(f"{path}: no model.safetensors (an incomplete checkpoint folder?)")
    state = load_file(str(weights))
    if "task_embedding.weight" in state:  # checkpoints before task embeddings were keyed by name: rows in task order
        rows = state.pop("task_embedding.weight")
        state.update({f"task_embedding.{name}": rows[i] for i, name in enumerate(tasks)})
    load_weights(model, state, str(weights))
    model.max_length = int(enc.get("max_length", 512))
    model.tokenizer = load_tokenizer(path, tasks)
    for task in tasks.values():
        task.bind_tokenizer(model.tokenizer)
    run_file = path / "run_config.yaml"
    model.run_config = yaml.safe_load(run_file.read_text(encoding="utf-8")) if run_file.is_file() else None
    return model.to(device).eval()


def saved_run_config(path: str | Path, run_config: dict[str, Any], check_files: bool = True) -> Any:
    """A checkpoint's ``run_config.yaml`` (as loaded in ``model.run_config``) validated to a RunConfig (its encoder
    folder not checked: the weights are the checkpoint's). A problem such as a plugin sampler or data format not
    loaded now is a ConfigError that also says which plugins the checkpoint was saved with, and where from."""
    from polytask.config import validate_config
    from polytask.errors import ConfigError
    from polytask.plugins import saved_plugins_note

    try:
        return validate_config(run_config, source=f"{path}/run_config.yaml", check_encoder=False,
                               check_files=check_files)
    except ConfigError as exc:
        saved = saved_plugins_note(read_config(path))
        if saved is None:
            raise
        raise ConfigError(exc.source, exc.problems, "\n".join(filter(None, (exc.note, saved)))) from None


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state, strict=True)``, with a mismatch told as which tensors differ and how (the
    model was built from a config or data whose label sets, tasks or encoder differ from the saved ones)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: saved {list(state[k].shape)}, now {list(own[k].shape)}" for k in own
              if k in state and state[k].shape != own[k].shape]
    if missing or extra or shapes:
        parts = ([f"shape differs for {'; '.join(shapes[:5])}"] if shapes else []) + \
                ([f"not saved: {', '.join(missing[:5])}"] if missing else []) + \
                ([f"saved but not in the model: {', '.join(extra[:5])}"] if extra else [])
        raise PolytaskError(f"{source}: the saved weights do not fit the model built now ({'; '.join(parts)}); "
                            "were tasks, label sets or the encoder changed since it was saved?")
    model.load_state_dict(state, strict=True)


def load_tasks(config: dict[str, Any]) -> dict[str, Any]:
    """The tasks of a checkpoint's config.json, with their label spaces and input specs (no weights)."""
    from polytask.data.input_specs import TextInput
    from polytask.data.inputs import spec_from_dict
    from polytask.plugins import HOW_TO_PROVIDE
    from polytask.tasks import TASKS, build_task

    tasks = {}
    for name, entry in config["tasks"].items():
        kind = entry["params"]["type"]
        try:
            task_type = TASKS.get(kind)  # (a name not registered loads the installed plugin packages first)
        except UnknownNameError as exc:  # a plugin type whose module nothing imported
            saved = (config.get("plugins") or {}).get(f"task type {kind!r}")
            raise UnknownNameError("task type", kind, exc.available, hint=HOW_TO_PROVIDE, message=(
                f"the checkpoint's task {name!r} has type {kind!r}, which is not registered (a plugin's task type"
                + (f"; the checkpoint was saved with it loaded from {saved})" if saved else ")"))) from None
        params = task_type.Params.model_validate(entry["params"])
        task = build_task(name, params)
        task.restore_state(entry["state"])
        spec = entry.get("input")
        # format 1 stored "text" or "pair": both are the text input of today
        task.input = TextInput(pair=spec == "pair") if isinstance(spec, str) else spec_from_dict(spec)
        tasks[name] = task
    return tasks


def load_tokenizer(path: str | Path, tasks: dict[str, Any]) -> Any:
    """The checkpoint's tokenizer; it must hold every special token the tasks' inputs add (e.g. entity markers)."""
    from transformers import AutoTokenizer

    from polytask.encoder import check_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    check_tokenizer(tokenizer, str(path))
    vocab = tokenizer.get_vocab()
    missing = sorted({t for task in tasks.values() for t in task.input.special_tokens() if t not in vocab})
    if missing:
        raise PolytaskError(f"{path}: the tokenizer lacks the special tokens {', '.join(missing)} that its tasks' "
                            "inputs use (the checkpoint's tokenizer files were replaced?)")
    return tokenizer


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


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


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


def load_training_state(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    file = folder / "trainer_state.json"
    if not folder.is_dir():
        raise PolytaskError(f"{folder}: cannot resume: the folder does not exist (and no complete copy of it was "
                            "left by an interrupted save)")
    if not file.is_file():
        raise PolytaskError(f"{folder}: cannot resume: no trainer_state.json (is this a 'last' checkpoint?)")
    state = json.loads(file.read_text(encoding="utf-8"))
    state["optimizer"] = optimizer_from_tensors(load_file(str(folder / "optimizer.safetensors")), state["optimizer"])
    state["weighting_state"] = load_file(str(folder / "weighting.safetensors"))
    rng = load_file(str(folder / "rng.safetensors"))
    if "ranks" not in state:  # written by one process before per-process state existed
        state["ranks"] = [{"feeder": {"streams": state.pop("streams"), "sampler": state.pop("sampler")},
                           "python_random": state.pop("python_random"), "numpy_random": state.pop("numpy_random")}]
        rng = {f"0.{k}": v for k, v in rng.items()}
    rngs: list[dict[str, torch.Tensor]] = [{} for _ in state["ranks"]]
    for key, value in rng.items():
        rank, _, name = key.partition(".")
        rngs[int(rank)][name] = value
    state["rngs"] = rngs
    return state
