"""Config rules beyond the schema, called by :func:`polytask.config.validate_config`.

Shorthands (``encoder: minilm``), lists where mappings belong, non-finite numbers, plugin names switched by a dotted
override, a selection metric without validation data, the encoder's folder and position table, the trackers of
``train.report_to``, and where training starts (``init_from``, ``freeze``, a sample's column). Each rule returns
its problems as ``path.to.key: message`` strings, so that every problem is reported in one go.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from polytask.errors import PolytaskError
from polytask.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from polytask.config_schema import DatasetConfig, EncoderConfig, RunConfig

PLUGIN_KINDS = ("sampler", "weighting", "gradients")
EXAMPLES = {"tasks": "tasks: {intent: {type: classification, dataset: snips, label: intent}}",
            "datasets": "datasets: {snips: {format: jointbert, train: data/snips/train}}"}
# model types whose position ids start after the padding index (RoBERTa's scheme): pad_token_id + 1 rows of the
# position table are never reached by a token
PADDING_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer",
                                  "data2vec-text", "xmod", "roberta-prelayernorm", "ibert", "mpnet", "luke"})
HUB_ID = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$")


def expand_shorthands(data: dict[str, Any]) -> None:
    """``encoder: minilm`` means ``{name: minilm}``; the same for sampler, weighting and gradients (in place)."""
    for key in ("encoder", *PLUGIN_KINDS):
        if isinstance(data.get(key), str):
            data[key] = {"name": data[key]}


def mapping_problem(key: str, value: Any) -> str | None:
    """The message for ``tasks`` / ``datasets`` that is not a non-empty mapping of name -> settings."""
    if isinstance(value, dict) and value:
        return None
    what = "tasks: at least one task is required" if key == "tasks" else "datasets: at least one dataset is required"
    if isinstance(value, list):
        return (f"{key}: must be a mapping name -> settings, e.g. `{EXAMPLES[key]}`; found a list (write "
                "`NAME: {...}` entries, not `- ...` items)")
    return f"{what} (a mapping of name -> settings, e.g. `{EXAMPLES[key]}`)"


def non_finite_problems(node: Any, path: str = "") -> list[str]:
    """Every NaN or infinite number in the parsed config (pydantic's floats would accept them)."""
    if isinstance(node, float) and not math.isfinite(node):
        return [f"{path or '(top level)'}: value {node} is not a finite number (allowed: a finite number)"]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in non_finite_problems(v, f"{path}.{k}" if path else str(k))]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in non_finite_problems(v, f"{path}[{i}]")]
    return []


def drop_switched_params(data: dict[str, Any], original: dict[str, Any], overridden: list[list[str]],
                         registries: dict[str, Registry[Any]]) -> list[str]:
    """After ``sampler.name=X`` (or weighting/gradients) on the command line, drop the parameters the config gave the
    old plugin that X does not take (in place); -> one note per switch naming what was dropped. Parameters set on
    the same command line stay, so a wrong one is still reported."""
    notes = []
    for kind in PLUGIN_KINDS:
        if [kind, "name"] not in overridden:
            continue
        before, after = original.get(kind), data.get(kind)
        if not isinstance(before, dict) or not isinstance(after, dict) or before.get("name") == after.get("name"):
            continue
        try:
            accepted = set(registries[kind].get(str(after.get("name"))).Params.model_fields)
        except UnknownNameError:
            continue  # reported with the other plugin names
        dropped = {k: v for k, v in after.items() if k != "name" and k in before and k not in accepted
                   and [kind, k] not in overridden}
        for key in dropped:
            del after[key]
        if dropped:
            shown = ", ".join(f"{k}={v!r}" for k, v in dropped.items())
            notes.append(f"{kind}.name {before.get('name')!r} -> {after.get('name')!r} (override): dropped {shown} "
                         f"({after.get('name')!r} does not take them)")
    return notes


def metric_problems(metric: str, tasks: dict[str, BaseModel], datasets: dict[str, DatasetConfig]) -> list[str]:
    """``evaluation.metric``: ``mean`` or ``TASK/METRIC`` with a known task, one of its metrics, and validation data
    for that task (else no checkpoint would ever be selected)."""
    from polytask.tasks import TASKS, TaskParams

    if metric == "mean":
        return []
    task, _, name = metric.partition("/")
    if task not in tasks:
        return [f"evaluation.metric: {metric!r} is neither 'mean' nor TASK/METRIC with a known task "
                f"({', '.join(tasks)})"]
    params = cast(TaskParams, tasks[task])  # validated with its task type's Params (a TaskParams) by the caller
    known = TASKS.get(params.type).metric_names(params)
    if name not in known:
        return [f"evaluation.metric: task {task!r} has no metric {name!r}; available: {', '.join(known)}"]
    ds_name = getattr(tasks[task], "dataset", None)
    ds = datasets.get(ds_name)  # type: ignore[arg-type]
    if ds is not None and ds.validation is None and not ds.validation_fraction:
        return [f"evaluation.metric: {metric!r} selects the checkpoint on task {task!r}, but its dataset "
                f"{ds_name!r} has no validation split (set datasets.{ds_name}.validation or validation_fraction, "
                "or use metric: mean)"]
    return []


def looks_like_path(name: str) -> bool:
    """A name meant as a local folder: it starts with '.', '/' or '~', holds a backslash or more than one '/', or
    is not of the hub id form ``name`` / ``org/name``."""
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or not HUB_ID.match(name)


def encoder_problems(encoder: EncoderConfig, tasks: dict[str, BaseModel]) -> list[str]:
    """The alias's package is installed; a local folder exists and holds a config.json; ``encoder.max_length`` and
    every task's own ``max_length`` fit the encoder's position table. Hub ids are not looked up (no network)."""
    from polytask.encoder import ALIASES

    name = encoder.name
    if name in ALIASES:
        try:
            folder = Path(ALIASES[name]())
        except ImportError as exc:
            return [f"encoder.name: alias {name!r} needs a package: {exc}"]
        except PolytaskError as exc:  # e.g. a packaged file whose checksum differs from the pinned one
            return [f"encoder.name: {exc}"]
    else:
        folder = Path(os.path.expanduser(name))
        if not folder.exists():
            if looks_like_path(name):
                return [f"encoder.name: folder not found: {folder.resolve()} (a local encoder folder must exist; "
                        "a hub id reads 'name' or 'org/name')"]
            return []  # a hub id: checked when it is downloaded
        if not folder.is_dir():
            return [f"encoder.name: {folder.resolve()} is a file; expected a model folder (with config.json)"]
    limit, why = position_limit(folder)
    if limit is None:
        return [f"encoder.name: {why}"] if why else []
    lengths = {"encoder.max_length": encoder.max_length}
    lengths.update({f"tasks.{t}.max_length": getattr(p, "max_length") for t, p in tasks.items()
                    if isinstance(getattr(p, "max_length", None), int)})
    return [f"{key}: value {value} is above what encoder {name!r} allows: {why} (allowed: 8-{limit})"
            for key, value in lengths.items() if value > limit]


def position_limit(folder: Path) -> tuple[int | None, str | None]:
    """(most tokens the encoder at ``folder`` can read, how that follows from its config.json), or (None, a
    problem) when config.json is missing or unreadable, or (None, None) when positions are not bounded by a table
    (relative or rotary position schemes)."""
    file = folder / "config.json"
    if not file.is_file():
        return None, f"{folder} has no config.json: not a Hugging Face model folder"
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"cannot read {file}: {exc}"
    table = config.get("max_position_embeddings")
    relative = config.get("position_embedding_type", "absolute") not in ("absolute", None) or \
        config.get("position_biased_input") is False
    if not isinstance(table, int) or relative:
        return None, None
    model_type = config.get("model_type", "?")
    if model_type in PADDING_OFFSET_TYPES:
        pad = config.get("pad_token_id")
        offset = (pad if isinstance(pad, int) else 1) + 1
        return table - offset, (f"max_position_embeddings is {table}, less {offset} for the padding offset of "
                                f"{model_type} models")
    return table, f"max_position_embeddings is {table}"


def report_to_problems(train: Any) -> list[str]:
    """``train.report_to``'s names: known trackers, installed (read from the raw mapping, so these are reported
    together with the schema's problems)."""
    from polytask.trackers import tracker_problems

    names = train.get("report_to") if isinstance(train, dict) else None
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return []  # not a list of names: the schema says so
    return tracker_problems(names)


FREEZE = re.compile(r"embeddings|word_embeddings|encoder|heads|task_embedding|heads\.[A-Za-z0-9_-]+|layers:\d+(-\d+)?")


def training_start_problems(run: RunConfig) -> list[str]:
    """``init_from``, ``freeze`` and ``sample``: the checkpoint exists, freeze entries are known, a sample's column
    is known."""
    problems = []
    t = run.train
    for teacher in (run.distillation.teachers if run.distillation else []):
        if not (Path(teacher) / "config.json").is_file():
            problems.append(f"distillation.teachers: not a polytask checkpoint folder (no config.json): {teacher}")
    if t.init_from is not None and not (Path(t.init_from) / "config.json").is_file():
        problems.append(f"train.init_from: not a polytask checkpoint folder (no config.json): {t.init_from}")
    if t.carry_tasks and t.init_from is None:
        problems.append("train.carry_tasks: needs train.init_from (the checkpoint whose tasks are carried)")
    for entry in t.freeze:
        if not FREEZE.fullmatch(entry):
            problems.append(f"train.freeze: unknown entry {entry!r}; allowed: embeddings, word_embeddings, encoder, "
                            "layers:A-B (encoder layers A to B, 0-based), heads, heads.TASK, task_embedding")
    problems.extend(contrastive_problems(run))
    problems.extend(compile_problems(run))
    sources = run.sources_of()
    for name, ds in run.datasets.items():
        if ds.sample is not None and ds.sample.column is None:
            tasks = sources.get(name, [])
            if len(tasks) != 1:
                problems.append(f"datasets.{name}.sample.column: required when the dataset feeds {len(tasks)} "
                                "tasks (which column's classes to sample)")
            else:
                ds.sample.column = run.tasks[tasks[0]].label  # type: ignore[attr-defined]
    return problems


def compile_problems(run: RunConfig) -> list[str]:
    """``train.compile`` with a gradient method that needs each task's gradient: refused before weights load."""
    from polytask.gradients import GRADIENT_METHODS
    from polytask.registry import UnknownNameError

    if not run.train.compile:
        return []
    try:
        method = GRADIENT_METHODS.get(run.gradients.name)
    except UnknownNameError:
        return []  # named as unknown by the registry check already
    if not method.needs_task_gradients:
        return []
    # torchjd vmaps through the encoder's graph to get the per-task Jacobians; vmap cannot run through compiled code
    return [f"train.compile: true does not work with gradients {run.gradients.name!r} (its per-task Jacobians use "
            "torch.vmap, which cannot run through compiled code); set train.compile: false or use gradients: "
            "sum (the loss weightings all work with compile)"]


def contrastive_problems(run: RunConfig) -> list[str]:
    """``train.contrastive``: its tasks exist and have one class per row (default: every such task; filled in), and
    something it can tune is not frozen."""
    from polytask.tasks import TASKS, TaskParams

    settings = run.train.contrastive
    if settings is None:
        return []
    # each task's params were validated with its type's Params (a TaskParams) before this rule runs
    pairable = [n for n, p in run.tasks.items()
                if TASKS.get(str(getattr(p, "type", ""))).pair_classes(cast(TaskParams, p))]
    if settings.tasks is None:
        settings.tasks = pairable
        if not pairable:
            return ["train.contrastive: no task has one class per row to pair rows by (single-label "
                    "classification); tasks: " + ", ".join(f"{n} ({getattr(p, 'type', '')})"
                                                         for n, p in run.tasks.items())]
    problems = []
    for name in settings.tasks:
        if name not in run.tasks:
            problems.append(f"train.contrastive.tasks: unknown task {name!r}; tasks: {', '.join(run.tasks)}")
        elif name not in pairable:
            problems.append(f"train.contrastive.tasks: {name!r} ({getattr(run.tasks[name], 'type', '')}) has no one "
                            "class per row to pair rows by; allowed: "
                            f"{', '.join(pairable) or 'none (single-label classification tasks)'}")
    if "encoder" in run.train.freeze and run.encoder.sharing.name == "hard":
        problems.append("train.contrastive: tunes the encoder, and train.freeze: [encoder] leaves nothing of it to "
                        "tune (remove one of the two)")
    return problems


def without_repeats(problems: list[str], non_finite: list[str]) -> list[str]:
    """``problems`` less the schema's messages about keys the non-finite rule already named (NaN fails bounds)."""
    keys = {p.split(": ", 1)[0] for p in non_finite}
    return [p for p in problems if p in non_finite or p.split(": ", 1)[0] not in keys]
