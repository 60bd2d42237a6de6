"""Where training starts: the pretrained encoder, or a trained polytask model (``train.init_from``), and what is
frozen (``train.freeze``).

With ``init_from`` the encoder (weights, tokenizer, marker tokens) comes from the checkpoint; every config task that
the checkpoint also has (same name and type, same input) starts from the checkpoint's head and keeps its label
space; new tasks get fresh heads fitted on the data. ``carry_tasks`` keeps the checkpoint's other tasks in the model
too (their heads are not trained: ``polytask add-task`` freezes them, and the encoder, so their outputs stay the
same to the bit). Task embeddings are keyed by task name, so adding a task keeps every other task's row.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from torch import nn

from polytask.config import RunConfig
from polytask.errors import PolytaskError
from polytask.tasks import Task

log = logging.getLogger("polytask")


def start_encoder(cfg: RunConfig, tasks: dict[str, Task]) -> tuple[Any, Any, Any, set[str]]:
    """-> (encoder, tokenizer, the init_from model or None, the config tasks whose label spaces it gives)."""
    from polytask.checkpoint import load_model
    from polytask.encoder import add_special_tokens, load_encoder

    markers = [tok for task in tasks.values() for tok in task.input.special_tokens()]  # type: ignore[union-attr]
    if cfg.train.init_from is None:
        encoder, tokenizer = load_encoder(cfg.encoder.name, cfg.encoder.revision)
        add_special_tokens(tokenizer, encoder, markers)
        return encoder, tokenizer, None, set()
    source = load_model(cfg.train.init_from)
    if source.sharing.added_parameters():  # its encoder holds adapters, or its sharing module experts or branches
        raise PolytaskError(f"train.init_from: the checkpoint has encoder.sharing {source.sharing.name!r}, with "
                            "per-task layers that a new model cannot take over; start from a hard-shared "
                            "checkpoint (encoder.sharing applies to the new run)")
    if source.pooling != cfg.encoder.pooling:
        raise PolytaskError(f"train.init_from: the checkpoint pools with {source.pooling!r}, the config with "
                            f"{cfg.encoder.pooling!r}: its heads read the other vector; set encoder.pooling: "
                            f"{source.pooling}")
    kept = set()
    for name, task in tasks.items():
        if name not in source.tasks:
            continue
        old = source.tasks[name]
        if old.params.type != task.params.type or old.input != task.input:
            raise PolytaskError(f"train.init_from: task {name!r} is a {task.params.type} reading {task.input} in the "
                                f"config but a {old.params.type} reading {old.input} in the checkpoint; rename the "
                                "new task or make them match")
        task.load_state(old.state())
        kept.add(name)
    new = [m for m in dict.fromkeys(markers) if m not in source.tokenizer.get_vocab()]
    if new and source.vocab_map is not None:
        raise PolytaskError(f"train.init_from: the checkpoint's vocabulary is pruned (encoder.vocabulary), and the "
                            f"tasks need tokens it lacks ({', '.join(new)}); start from a checkpoint trained with "
                            "encoder.vocabulary: full, or from the encoder")
    add_special_tokens(source.tokenizer, source.encoder, markers)
    log.info("starting from %s: encoder and the heads of %s", cfg.train.init_from,
             ", ".join(sorted(kept)) or "no task of the config")
    return source.encoder, source.tokenizer, source, kept


def transfer(model: Any, source: Any, kept: set[str], carry: bool) -> list[str]:
    """Copy the heads (and task-embedding rows) of ``kept`` tasks from ``source`` into ``model``; with ``carry``,
    add the source's other tasks as well. -> the carried task names."""
    for name in kept:
        model.heads[name].load_state_dict(source.heads[name].state_dict())
        _copy_embedding(model, source, name)
    carried = [n for n in source.tasks if n not in model.tasks] if carry else []
    for name in carried:
        model.add_task(name, source.tasks[name])
        model.heads[name].load_state_dict(source.heads[name].state_dict())
        _copy_embedding(model, source, name)
    return carried


def _copy_embedding(model: Any, source: Any, name: str) -> None:
    if model.task_embedding is not None and source.task_embedding is not None and name in source.task_embedding:
        model.task_embedding[name].data.copy_(source.task_embedding[name].data)


def encoder_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of Transformer blocks: its ModuleList as long as ``num_hidden_layers``."""
    count = getattr(encoder.config, "num_hidden_layers", None)
    for module in encoder.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise PolytaskError(f"train.freeze: cannot find the {count} Transformer layers of the encoder "
                        f"({type(encoder).__name__}) to freeze by range")


def freeze(model: Any, entries: list[str]) -> int:
    """Set ``requires_grad = False`` on what ``entries`` name; -> the number of frozen parameters (scalars)."""
    targets: list[nn.Module | nn.Parameter] = []
    for entry in entries:
        if entry == "encoder":
            targets.append(model.encoder)
        elif entry == "embeddings":
            embeddings = getattr(model.encoder, "embeddings", None)
            if embeddings is None:
                raise PolytaskError("train.freeze: this encoder has no 'embeddings' module")
            targets.append(embeddings)
        elif entry == "word_embeddings":  # the token table alone (most of a multilingual encoder's parameters)
            targets.append(model.encoder.get_input_embeddings())
        elif entry == "heads":
            targets.append(model.heads)
        elif entry == "task_embedding":
            if model.task_embedding is None:
                raise PolytaskError("train.freeze: task_embedding, but encoder.task_embedding is off")
            targets.append(model.task_embedding)
        elif entry.startswith("heads."):
            name = entry[len("heads."):]
            if name not in model.heads:
                raise PolytaskError(f"train.freeze: {entry}: no task {name!r}; tasks: {', '.join(model.heads)}")
            targets.append(model.heads[name])
        else:
            match = re.fullmatch(r"layers:(\d+)(?:-(\d+))?", entry)
            assert match is not None  # the config check admits nothing else
            layers = encoder_layers(model.encoder)
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if not first <= last < len(layers):
                raise PolytaskError(f"train.freeze: {entry}: the encoder has layers 0-{len(layers) - 1}")
            targets += list(layers[first : last + 1])
    count = 0
    added = {id(p) for p in model.sharing.added_parameters()}  # adapters inside the encoder stay trainable
    for target in targets:
        params = [target] if isinstance(target, nn.Parameter) else list(target.parameters())
        for p in params:
            if p.requires_grad and id(p) not in added:
                p.requires_grad_(False)
                count += p.numel()
    return count
