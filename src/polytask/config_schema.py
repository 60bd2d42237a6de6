"""The sections of a run config as typed pydantic v2 models (unknown keys are errors): encoder, datasets, the
plugin mappings (sampler, weighting, gradients, encoder.sharing), train, evaluation and distillation. Task sections
are typed by each task type's own ``Params``. ``polytask.config`` re-exports these and validates whole files."""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator

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


class ContrastiveConfig(_Strict):
    """SetFit-style contrastive tuning of the encoder on pairs of training rows (same class or not) before the heads
    train; see polytask.training.contrastive. A few-shot recipe: the pairs grow with the rows."""

    tasks: list[str] | None = Field(None, description="tasks whose classes make the pairs (default: every task that "
                                                      "has one class per row)")
    iterations: int = Field(20, ge=1, description="rounds of one similar and one dissimilar pair per row")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1, description="pairs per step")
    lr: float = Field(2e-5, gt=0, description="the encoder's learning rate in this stage")


class TrainConfig(_Strict):
    output_dir: str = "runs/polytask"
    seed: int = 42
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0)
    # what encoder.sharing adds outside the encoder (experts, gates, task columns, cross-stitch units); default head_lr
    sharing_lr: float | None = Field(None, gt=0)
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
    compile: bool = False  # torch.compile the encoder (inductor; dynamic shapes); see docs/training.md, "Speed"
    init_from: str | None = None  # a checkpoint folder: start from its encoder, and heads of the tasks it shares
    carry_tasks: bool = False  # keep the init_from checkpoint's other tasks in the model (untrained here)
    freeze: list[str] = Field(default_factory=list)  # embeddings, word_embeddings, encoder, layers:A-B, heads, ...
    save_last: Literal["every_eval", "end", "never"] = "every_eval"  # when the resumable last/ is written
    min_steps: int | None = Field(None, ge=1)  # at least this many steps (small data: more epochs)
    affinity_every: int | None = Field(None, ge=1)  # measure inter-task affinity (TAG) every N steps
    contrastive: ContrastiveConfig | None = None  # tune the encoder on same/other-class pairs first (SetFit-style)
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
