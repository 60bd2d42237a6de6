"""Reading checkpoint folders, from safetensors and JSON only (no pickle): ``config.json`` checked
(``read_config``), the model rebuilt without hub access and its weights loaded (``load_model``), the saved run config
validated (``saved_run_config``) and a ``last`` folder's training state read back (``load_training_state``).
``polytask.checkpoint`` writes these folders and re-exports every name here."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from polytask.errors import PolytaskError
from polytask.registry import UnknownNameError

FORMAT_VERSION = 2  # 2: each task stores its input spec (1: "text"/"pair"), read by both


def read_metrics(path: str | Path) -> dict[str, Any] | None:
    """A checkpoint's stored evaluation (metrics.json), or None when it has none."""
    file = Path(path) / "metrics.json"
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None


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


class _DropMessage(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def load_tokenizer(path: str | Path, tasks: dict[str, Any]) -> Any:
    """The checkpoint's tokenizer; it must hold every special token the tasks' inputs add (e.g. entity markers)."""
    from transformers import AutoTokenizer

    from polytask.encoder import check_tokenizer

    # transformers 5 reads a folder's config.json to tell Mistral tokenizers apart; ours is polytask's (no model_type),
    # so it warns that the regex is wrong and tokenisation will be too: false for every tokenizer we save (the
    # tokens are identical to the encoder's own tokenizer's), so that one warning is dropped
    noisy = logging.getLogger("transformers.tokenization_utils_tokenizers")
    quiet = _DropMessage("fix_mistral_regex")
    noisy.addFilter(quiet)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    finally:
        noisy.removeFilter(quiet)
    check_tokenizer(tokenizer, str(path))
    vocab = tokenizer.get_vocab()
    missing = sorted({t for task in tasks.values() for t in task.input.special_tokens() if t not in vocab})
    if missing:
        raise PolytaskError(f"{path}: the tokenizer lacks the special tokens {', '.join(missing)} that its tasks' "
                            "inputs use (the checkpoint's tokenizer files were replaced?)")
    return tokenizer


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    for index, entry in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


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
