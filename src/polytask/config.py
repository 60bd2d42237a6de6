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
dangling references) and raises one :class:`ConfigError` listing all of them.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from polytask.errors import ConfigError
from polytask.registry import UnknownNameError

Split = Literal["train", "validation", "test"]
SPLITS: tuple[str, ...] = ("train", "validation", "test")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EncoderConfig(_Strict):
    """The shared encoder: any Hugging Face ``AutoModel`` name or local folder; ``minilm`` is the packaged one."""

    name: str = "minilm"
    max_length: int = Field(128, ge=8, le=8192)
    pooling: Literal["mean", "cls"] = "mean"
    task_embedding: bool = False
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    revision: str | None = None


class DatasetConfig(_Strict):
    """One data source. ``text`` (and ``text_pair``) name the input columns shared by every task it feeds."""

    format: str
    train: str
    validation: str | None = None
    test: str | None = None
    text: str = "text"
    text_pair: str | None = None
    validation_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    max_rows: dict[Split, int] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    def split_path(self, split: str) -> str | None:
        return {"train": self.train, "validation": self.validation, "test": self.test}[split]


class PluginConfig(BaseModel):
    """``{name: ..., <params>}`` for a sampler or a weighting; params are checked against the plugin's own model."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(_Strict):
    output_dir: str = "runs/polytask"
    seed: int = 42
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0)
    weighting_lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    grad_clip: float | None = Field(1.0, gt=0)
    grad_accum: int = Field(1, ge=1)
    precision: Literal["fp32", "bf16"] = "fp32"
    step_mode: Literal["source", "every_source", "mixed"] = "source"
    compile: bool = False  # torch.compile the encoder (inductor; dynamic shapes); see docs/training.md
    num_threads: int | None = Field(None, ge=1)
    log_every: int = Field(10, ge=1)
    progress_bar: bool = True


class EvaluationConfig(_Strict):
    every_steps: int | None = Field(None, ge=1)
    metric: str = "mean"
    mode: Literal["max", "min"] = "max"
    patience: int | None = Field(None, ge=1)
    calibrate: bool = Field(True, description="fit a temperature per calibrated head of the best model on validation")


class RunConfig(_Strict):
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    datasets: dict[str, DatasetConfig]
    tasks: dict[str, SerializeAsAny[BaseModel]]
    sampler: PluginConfig = Field(default_factory=lambda: PluginConfig(name="temperature"))
    weighting: PluginConfig = Field(default_factory=lambda: PluginConfig(name="equal"))
    gradients: PluginConfig = Field(default_factory=lambda: PluginConfig(name="sum"))
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

    def sources_of(self) -> dict[str, list[str]]:
        """dataset name -> the tasks it labels, in config order."""
        out: dict[str, list[str]] = {name: [] for name in self.datasets}
        for task, params in self.tasks.items():
            out[params.dataset].append(task)  # type: ignore[attr-defined]
        return {k: v for k, v in out.items() if v}


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


def load_config(path: str | Path, overrides: list[str] | None = None, check_files: bool = True) -> RunConfig:
    """Read, override and validate a run config; raise one ConfigError listing every problem found."""
    data = read_yaml(path)
    return validate_config(data, source=str(path), base_dir=Path(path).resolve().parent,
                           overrides=overrides, check_files=check_files)


def validate_config(
    data: dict[str, Any],
    source: str = "<config>",
    base_dir: Path | None = None,
    overrides: list[str] | None = None,
    check_files: bool = True,
) -> RunConfig:
    """Validate a config mapping (already parsed); relative paths are resolved against ``base_dir``."""
    from polytask.data.readers import READERS, ReaderOptions
    from polytask.gradients import GRADIENT_METHODS
    from polytask.sampling import SAMPLERS
    from polytask.tasks import TASKS
    from polytask.weighting import WEIGHTINGS

    data = copy.deepcopy(data)
    problems: list[str] = []
    for key_path, value in parse_overrides(overrides or []):
        if (msg := _apply_override(data, key_path, value)) is not None:
            problems.append(msg)

    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, dict) or not raw_tasks:
        problems.append("tasks: at least one task is required (a mapping of task name -> settings)")
        raw_tasks = {}
    data["tasks"] = {}

    typed_tasks: dict[str, BaseModel] = {}
    for name, spec in raw_tasks.items():
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
    raw_datasets = data.get("datasets")
    if not isinstance(raw_datasets, dict) or not raw_datasets:
        problems.append("datasets: at least one dataset is required (a mapping of dataset name -> files)")
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
            ReaderOptions.model_validate(ds.options)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, f"{where}.options"))
        for split in SPLITS:
            resolved = _resolve_path(ds.split_path(split), base, ds.format)
            setattr(ds, split, resolved)
            if check_files and resolved and ds.format != "hf" and not Path(resolved).exists():
                problems.append(f"{where}.{split}: file not found: {resolved}")
        if ds.validation and ds.validation_fraction:
            problems.append(f"{where}: give either a validation file or validation_fraction, not both")
    data["datasets"] = {}

    for name, params in typed_tasks.items():
        ds_name = getattr(params, "dataset", None)
        if ds_name not in raw_datasets:
            problems.append(
                f"tasks.{name}.dataset: unknown dataset {ds_name!r}; defined: {', '.join(raw_datasets) or '(none)'}"
            )

    for kind, registry in (("sampler", SAMPLERS), ("weighting", WEIGHTINGS), ("gradients", GRADIENT_METHODS)):
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

    evaluation = data.get("evaluation")
    metric = evaluation.get("metric", "mean") if isinstance(evaluation, dict) else "mean"
    problems.extend(_check_metric(str(metric), typed_tasks))
    run: RunConfig | None = None
    try:
        run = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
    if run is None:
        raise ConfigError(source, problems)
    run.tasks, run.datasets = typed_tasks, datasets

    problems.extend(_check_encoder(run.encoder))
    if problems:
        raise ConfigError(source, problems)
    return run


def _check_metric(metric: str, tasks: dict[str, BaseModel]) -> list[str]:
    from polytask.tasks import TASKS

    if metric == "mean":
        return []
    task, _, name = metric.partition("/")
    if task not in tasks:
        return [f"evaluation.metric: {metric!r} is neither 'mean' nor TASK/METRIC with a known task "
                f"({', '.join(tasks)})"]
    known = TASKS.get(tasks[task].type).metric_names(tasks[task])  # type: ignore[attr-defined]
    if name not in known:
        return [f"evaluation.metric: task {task!r} has no metric {name!r}; available: {', '.join(known)}"]
    return []


def _check_encoder(encoder: EncoderConfig) -> list[str]:
    from polytask.encoder import ALIASES

    if encoder.name in ALIASES:
        try:
            ALIASES[encoder.name]()
        except ImportError as exc:
            return [f"encoder.name: alias {encoder.name!r} needs a package: {exc}"]
    return []
