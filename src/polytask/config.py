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
import logging
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from polytask.config_rules import (drop_switched_params, encoder_problems, expand_shorthands, mapping_problem,
                                   metric_problems, non_finite_problems)
from polytask.errors import ConfigError
from polytask.plugins import with_hint_once
from polytask.registry import Registry, UnknownNameError

log = logging.getLogger("polytask")

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
    # prune the word-embedding table to the pieces of these splits (polytask.vocabulary); full: keep every row
    vocabulary: Literal["full", "train", "all_splits"] = "full"
    # how the tasks share the layers (polytask.sharing, docs/sharing.md): hard, lora, moe, cross_stitch
    sharing: PluginConfig = Field(default_factory=lambda: PluginConfig(name="hard"))

    @field_validator("sharing", mode="before")
    @classmethod
    def _sharing_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value  # `sharing: lora` is {name: lora}


class SampleConfig(_Strict):
    """A seeded, stratified few-shot sample of the training split: ``per_class`` rows of every value of ``column``
    (default: the label column of the dataset's task, when it feeds one)."""

    per_class: int = Field(..., ge=1)
    column: str | None = None
    seed: int = 0


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
    sample: SampleConfig | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # a column whose values split evaluation: every task of the dataset is also scored on the rows of each value
    breakdown: str | None = None

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
    init_from: str | None = None  # a checkpoint folder: start from its encoder, and heads of the tasks it shares
    carry_tasks: bool = False  # keep the init_from checkpoint's other tasks in the model (untrained here)
    freeze: list[str] = Field(default_factory=list)  # embeddings, word_embeddings, encoder, layers:A-B, heads, ...
    save_last: Literal["every_eval", "end", "never"] = "every_eval"  # when the resumable last/ is written
    min_steps: int | None = Field(None, ge=1)  # at least this many steps (small data: more epochs)
    affinity_every: int | None = Field(None, ge=1)  # measure inter-task affinity (TAG) every N steps
    num_threads: int | None = Field(None, ge=1)
    log_every: int = Field(10, ge=1)
    progress_bar: bool = True
    # experiment trackers fed besides metrics.jsonl (polytask.trackers): [] none, else e.g. [tensorboard, mlflow]
    report_to: list[str] = Field(default_factory=list)

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value  # `report_to: tensorboard` is a list of one


class EvaluationConfig(_Strict):
    every_steps: int | None = Field(None, ge=1)
    metric: str = "mean"
    mode: Literal["max", "min"] = "max"
    patience: int | None = Field(None, ge=1)
    calibrate: bool = Field(True, description="fit a temperature per calibrated head of the best model on validation")


class DistillationConfig(_Strict):
    """Teachers whose outputs the tasks also learn from, mixed with the gold labels with a teacher weight going
    from 1 to 0 over training (teacher annealing); see polytask.recipes.distill."""

    teachers: list[str] = Field(..., min_length=1, description="checkpoint folders; each labels its tasks")
    cache: str | None = Field(None, description="where the teachers' outputs go (default OUTPUT_DIR/teachers)")


class RunConfig(_Strict):
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    datasets: dict[str, DatasetConfig]
    tasks: dict[str, SerializeAsAny[BaseModel]]
    sampler: PluginConfig = Field(default_factory=lambda: PluginConfig(name="temperature"))
    weighting: PluginConfig = Field(default_factory=lambda: PluginConfig(name="equal"))
    gradients: PluginConfig = Field(default_factory=lambda: PluginConfig(name="sum"))
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    distillation: DistillationConfig | None = None

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
    problems.extend(_tracker_problems(data.get("train")))
    evaluation = data.get("evaluation")
    metric = evaluation.get("metric", "mean") if isinstance(evaluation, dict) else "mean"
    problems.extend(metric_problems(str(metric), typed_tasks, datasets))
    run: RunConfig | None = None
    try:
        run = RunConfig.model_validate(data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
    if run is None:
        raise ConfigError(source, *with_hint_once(_without_repeats(problems, non_finite)))
    run.tasks, run.datasets = typed_tasks, datasets

    if check_encoder:
        problems.extend(encoder_problems(run.encoder, typed_tasks))
    if run.encoder.vocabulary != "full":  # a generating head predicts over every id of the tokenizer
        problems.extend(f"tasks.{name}: a generating task ({getattr(p, 'type', '')}) needs encoder.vocabulary: full, "
                        f"not {run.encoder.vocabulary!r}" for name, p in typed_tasks.items()
                        if TASKS.get(str(getattr(p, "type", ""))).generates)
    problems.extend(_check_training_start(run))
    if problems:
        raise ConfigError(source, *with_hint_once(_without_repeats(problems, non_finite)))
    return run


def _tracker_problems(train: Any) -> list[str]:
    """``train.report_to``'s names: known trackers, installed (read from the raw mapping, so these are reported
    together with the schema's problems)."""
    from polytask.trackers import tracker_problems

    names = train.get("report_to") if isinstance(train, dict) else None
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return []  # not a list of names: the schema says so
    return tracker_problems(names)


FREEZE = re.compile(r"embeddings|word_embeddings|encoder|heads|task_embedding|heads\.[A-Za-z0-9_-]+|layers:\d+(-\d+)?")


def _check_training_start(run: RunConfig) -> list[str]:
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


def _without_repeats(problems: list[str], non_finite: list[str]) -> list[str]:
    """``problems`` less the schema's messages about keys the non-finite rule already named (NaN fails bounds)."""
    keys = {p.split(": ", 1)[0] for p in non_finite}
    return [p for p in problems if p in non_finite or p.split(": ", 1)[0] not in keys]
