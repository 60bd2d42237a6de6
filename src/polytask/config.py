"""The run configuration: one YAML file, typed with pydantic v2, validated completely before any weights load.

Layout of a config file (see docs/config.md for every key)::

    encoder: {name: minilm, max_length: 128}
    datasets:                      # data sources; one source may label several tasks
      snips: {format: jointbert, train: data/snips/train, validation: data/snips/dev, text: tokens}
    tasks:                         # one entry per task: its type, its source and its label column
      intent: {type: classification, dataset: snips, label: intent}
      slots: {type: token_classification, dataset: snips, label: tags}
    sampler: {name: temperature, temperature: 2.0}
    weighting: {name: uncertainty}
    train: {lr: 5.0e-5, epochs: 3, batch_size: 32}
    evaluation: {every_steps: 200, metric: mean}

``load_config`` collects every problem (YAML syntax, unknown keys, bad values, unknown plugin names, missing files,
dangling references) and raises one :class:`ConfigError` listing all of them. The typed sections are in
``polytask.config_schema`` (re-exported here) and the rules beyond the schema in ``polytask.config_rules``.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from polytask.config_rules import (FREEZE, drop_switched_params, encoder_problems, expand_shorthands,  # noqa: F401
                                   mapping_problem, metric_problems, non_finite_problems, report_to_problems,
                                   training_start_problems, without_repeats)
from polytask.config_schema import (SPLITS, ContrastiveConfig, DatasetConfig, DistillationConfig,  # noqa: F401
                                    EncoderConfig, EvaluationConfig, PluginConfig, RunConfig, SampleConfig, Split, TrainConfig)
from polytask.errors import ConfigError
from polytask.plugins import with_hint_once
from polytask.registry import Registry, UnknownNameError

log = logging.getLogger("polytask")


# ----------------------------------------------------------------------------------------------------------------------
# loading


def parse_overrides(overrides: list[str]) -> list[tuple[list[str], Any]]:
    """``["train.lr=3e-5", "tasks.intent.head_hidden=256"]`` -> ``[(["train", "lr"], 3e-05), ...]`` (YAML values)."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("<command line>", [f"override {item!r} is not KEY=VALUE (e.g. train.lr=3e-5)"])
        parsed.append((key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None))
    return parsed


def _apply_override(data: dict[str, Any], path: list[str], value: Any) -> str | None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if not isinstance(node, dict):
            return f"override {'.'.join(path)}: {'.'.join(path[:i])} is not a mapping"
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        return f"override {'.'.join(path)}: {'.'.join(path[:-1])} is not a mapping"
    node[path[-1]] = value
    return None


def _pydantic_problems(err: ValidationError, prefix: str = "") -> list[str]:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        if e["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown key")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            problems.append(f"{where}: {e['msg']}{shown}")
    return problems


def _resolve_path(value: str | None, base: Path, fmt: str) -> str | None:
    if value is None or fmt == "hf" and not (base / value).exists():
        return value  # a hub dataset name stays as written
    path = Path(os.path.expanduser(value))
    return str(path if path.is_absolute() else (base / path).resolve())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a syntax error becomes a ConfigError naming the line and column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["file not found"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(path), [f"{where}invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"not UTF-8 text (byte offset {exc.start})"]) from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), ["the top level must be a mapping with keys such as datasets, tasks, train"])
    return data


def load_config(path: str | Path, overrides: list[str] | None = None, check_files: bool = True,
                check_encoder: bool = True) -> RunConfig:
    """Read, override and validate a run config; raise one ConfigError listing every problem found."""
    data = read_yaml(path)
    return validate_config(data, source=str(path), base_dir=Path(path).resolve().parent,
                           overrides=overrides, check_files=check_files, check_encoder=check_encoder)


def validate_config(
    data: dict[str, Any],
    source: str = "<config>",
    base_dir: Path | None = None,
    overrides: list[str] | None = None,
    check_files: bool = True,
    check_encoder: bool = True,
) -> RunConfig:
    """Validate a config mapping (already parsed); relative paths are resolved against ``base_dir``.
    ``check_encoder`` False skips the encoder folder and position-table checks (a checkpoint's saved config: its
    weights come from the checkpoint, the encoder it started from may be gone)."""
    from polytask.data.readers import READERS, ReaderOptions, source_files
    from polytask.gradients import GRADIENT_METHODS
    from polytask.sampling import SAMPLERS
    from polytask.sharing import sharing_problems
    from polytask.tasks import TASKS
    from polytask.weighting import WEIGHTINGS

    registries: dict[str, Registry[Any]] = {"sampler": SAMPLERS, "weighting": WEIGHTINGS, "gradients": GRADIENT_METHODS}
    data = copy.deepcopy(data)
    expand_shorthands(data)
    original = copy.deepcopy(data)
    problems: list[str] = []
    parsed = parse_overrides(overrides or [])
    for key_path, value in parsed:
        if (msg := _apply_override(data, key_path, value)) is not None:
            problems.append(msg)
    expand_shorthands(data)  # an override may give a whole section as a name too
    for note in drop_switched_params(data, original, [p for p, _ in parsed], registries):
        log.info("%s: %s", source, note)
    non_finite = non_finite_problems(data)
    problems.extend(non_finite)

    raw_tasks: Any = data.get("tasks")  # as parsed: any YAML value until mapping_problem has checked it
    if (msg := mapping_problem("tasks", raw_tasks)) is not None:
        problems.append(msg)
        raw_tasks = {}
    data["tasks"] = {}

    typed_tasks: dict[str, BaseModel] = {}
    for name, spec in raw_tasks.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", str(name)):
            problems.append(f"tasks.{name}: a task name holds letters, digits, '_' and '-' only (it names the "
                            "task's tensors in checkpoints and its ONNX outputs)")
            continue
        if not isinstance(spec, dict):
            problems.append(f"tasks.{name}: must be a mapping with at least type, dataset and label")
            continue
        type_name = spec.get("type")
        try:
            task_cls = TASKS.get(str(type_name))
        except UnknownNameError as exc:
            problems.append(f"tasks.{name}.type: {exc}")
            continue
        try:
            typed_tasks[str(name)] = task_cls.Params.model_validate(spec)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, f"tasks.{name}"))

    # datasets one by one, so a bad entry does not hide the problems of the others
    raw_datasets: Any = data.get("datasets")  # as parsed, like raw_tasks
    if (msg := mapping_problem("datasets", raw_datasets)) is not None:
        problems.append(msg)
        raw_datasets = {}
    datasets: dict[str, DatasetConfig] = {}
    base = base_dir or Path.cwd()
    for ds_name, spec in raw_datasets.items():
        where = f"datasets.{ds_name}"
        try:
            ds = DatasetConfig.model_validate(spec)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, where))
            continue
        datasets[str(ds_name)] = ds
        try:
            READERS.get(ds.format)
        except UnknownNameError as exc:
            problems.append(f"{where}.format: {exc}")
        try:
            options = ReaderOptions.model_validate(ds.options)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, f"{where}.options"))
            options = ReaderOptions()
        for split in SPLITS:
            resolved = _resolve_path(ds.split_path(split), base, ds.format)
            setattr(ds, split, resolved)
            if check_files and resolved and ds.format != "hf":
                problems.extend(f"{where}.{split}: file not found: {file}"
                                for file in source_files(ds.format, resolved, options) if not Path(file).exists())
        if ds.validation and ds.validation_fraction:
            problems.append(f"{where}: give either a validation file or validation_fraction, not both")
    data["datasets"] = {}

    for name, params in typed_tasks.items():
        ds_name = getattr(params, "dataset", None)
        if ds_name not in raw_datasets:
            problems.append(
                f"tasks.{name}.dataset: unknown dataset {ds_name!r}; defined: {', '.join(raw_datasets) or '(none)'}"
            )

    for kind, registry in registries.items():
        raw = data.get(kind)
        if raw is None:
            continue
        if not isinstance(raw, dict) or "name" not in raw:
            problems.append(f"{kind}: must be a mapping with a name, e.g. {{name: ...}}")
            continue
        try:
            cls = registry.get(str(raw["name"]))
        except UnknownNameError as exc:
            problems.append(f"{kind}.name: {exc}")
            continue
        try:
            params = cls.Params.model_validate({k: v for k, v in raw.items() if k != "name"})
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, kind))
            continue
        for msg in getattr(cls, "check", lambda *_: [])(params, list(typed_tasks)):
            problems.append(f"{kind}: {msg}")

    problems.extend(sharing_problems(data.get("encoder"), list(typed_tasks), _pydantic_problems))
    problems.extend(report_to_problems(data.get("train")))
    evaluation = data.get("evaluation")
    metric = evaluation.get("metric", "mean") if isinstance(evaluation, dict) else "mean"
    problems.extend(metric_problems(str(metric), typed_tasks, datasets))
    run: RunConfig | None = None
    try:
        run = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
    if run is None:
        raise ConfigError(source, *with_hint_once(without_repeats(problems, non_finite)))
    run.tasks, run.datasets = typed_tasks, datasets

    if check_encoder:
        problems.extend(encoder_problems(run.encoder, typed_tasks))
    if run.encoder.vocabulary != "full":  # a generating head predicts over every id of the tokenizer
        problems.extend(f"tasks.{name}: a generating task ({getattr(p, 'type', '')}) needs encoder.vocabulary: full, "
                        f"not {run.encoder.vocabulary!r}" for name, p in typed_tasks.items()
                        if TASKS.get(str(getattr(p, "type", ""))).generates)
    problems.extend(training_start_problems(run))
    if problems:
        raise ConfigError(source, *with_hint_once(without_repeats(problems, non_finite)))
    return run
