"""The task contract: a task type owns its data path, from a row to a prediction.

    row --input spec (shared by the tasks that read the same input)--> example --> features (1 -> N windows)
    example, features, gold --featurize--> this task's fields per feature (what its head reads + its target)
    fields of a batch --collate--> TaskBatch(inputs, targets): tensors
    encoder output + inputs --forward--> head output: a tensor, or a dict of tensors
    head output + targets --loss--> one scalar, or None when no row of the batch labels the task
    head outputs of every feature of an example --postprocess--> one prediction (JSON-serialisable)
    predictions + golds --metrics--> {metric: value}
    head output + targets --calibration_logits--> logits/targets pairs a temperature is fitted on (optional)
    one prediction --gate--> the answer users get under ``min_score`` (optional)
    head --stock_head--> the head as a stock transformers head (optional; ``polytask export --format hf``)

A task type is a class registered in ``TASKS`` under the name users write as ``type:``. Training, evaluation,
``Pipeline``, the server and ONNX export all go through these methods and the capabilities the class declares
(``needs_words``, ``input_fields``, ``calibration_heads``, ``gate``, ``stock_head``, ``hub_task``, ``generates``);
nothing branches on a type's name. A generating task (seq2seq) writes text at inference: its head takes the same
encoder output and searches token by token inside ``forward``, with settings a call may change
(``generation_settings``); it is left out of the ONNX graph.
``docs/python-api.md`` walks through writing one. The params, the types these methods take and return, and the
helpers task types share are in ``polytask.tasks.parts`` (re-exported here).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.data.input_specs import TextInput
from polytask.data.inputs import InputSpec
from polytask.errors import DataError
from polytask.registry import Registry
from polytask.tasks.parts import (IGNORE, BatchShape, Encoded, Fields, FieldSpec, LabelSetParams,  # noqa: F401
                                  Output, ScoredParams, TaskBatch, TaskParams, label_index, masked_pairs, mlp_head,
                                  padded, softmax)
from polytask.tasks.scores import CalibrationData, CalibrationKind, Gated
from polytask.tasks.stock import NotExportable, StockHead

if TYPE_CHECKING:
    from polytask.config import DatasetConfig


class Task(ABC):
    """Base class of task types: subclasses set ``Params`` and implement the abstract methods."""

    Params: ClassVar[type[TaskParams]] = TaskParams
    needs_words: ClassVar[bool] = False  # the input group must map each word to its first sub-word (word_index)
    input_fields: ClassVar[dict[str, FieldSpec]] = {}  # the forward inputs this task collates (ONNX graph inputs)
    distillable: ClassVar[bool] = False  # soft_target() + "soft"/"teacher_weight" targets (polytask.tasks.distillation)
    hub_task: ClassVar[str | None] = None  # its Hugging Face task tag (model cards: tags, model-index task type)
    # its head writes text token by token at inference (seq2seq): no ONNX graph, per-call generation settings
    generates: ClassVar[bool] = False

    def __init__(self, name: str, params: TaskParams) -> None:
        self.name, self.params = name, params
        self.input: InputSpec | None = None  # bound from the dataset in training, from config.json on load
        self._notes: list[str] = []  # what reading golds noticed (repairs, unseen labels): see take_notes
        # head -> temperature T fitted on validation (polytask.calibration); a head not listed uses T = 1
        self.temperatures: dict[str, float] = {}

    # -- input -------------------------------------------------------------------------------------------------------
    def bind_tokenizer(self, tokenizer: Any) -> None:
        """The model's tokenizer, given before featurising and decoding (a task that tokenises or writes text of
        its own, e.g. a seq2seq target, keeps it); nothing by default."""

    def input_spec(self, dataset: DatasetConfig) -> InputSpec:
        """What this task reads from its dataset: by default the text (or the text pair when the dataset has one), or
        the input its format declares (``READER_INPUTS``: the ``sgd`` format gives a dialogue turn and history)."""
        from polytask.data.readers import READER_INPUTS

        declared = READER_INPUTS.get(dataset.format)
        return declared(dataset) if declared is not None else TextInput(pair=bool(dataset.text_pair))

    def columns(self) -> list[str]:
        """Dataset columns this task reads besides its input (by default its label column)."""
        return [self.params.label]

    # -- labels ------------------------------------------------------------------------------------------------------
    def is_missing(self, raw: Any) -> bool:
        """A row that does not label this task (masked in the loss, never invented)."""
        return raw is None or (isinstance(raw, str) and raw.strip() == "")

    def fit(self, values: list[tuple[Any, Example]]) -> None:
        """Learn the label space (or target statistics) from the training split's (raw value, example) pairs."""

    def state(self) -> dict[str, Any]:
        """JSON-serialisable label space etc., saved in the checkpoint's config.json."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state`."""

    def saved_state(self) -> dict[str, Any]:
        """What config.json stores: :meth:`state` plus the fitted temperatures (``temperature``: {head: T})."""
        state = self.state()
        return {**state, "temperature": dict(self.temperatures)} if self.temperatures else state

    def restore_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`saved_state`."""
        self.load_state(state)
        self.temperatures = {str(k): float(v) for k, v in (state.get("temperature") or {}).items()}

    @abstractmethod
    def gold(self, raw: Any, example: Example) -> Any:
        """Raw label -> the validated form metrics compare predictions with; DataError naming the row if bad."""

    def check_values(self, values: list[tuple[Any, Example]]) -> None:
        """Checks over one split's labelled (raw value, example) pairs that no single row shows (e.g. one value type
        per label column), run before :meth:`gold` reads them; DataError naming the rows."""

    @classmethod
    def pair_classes(cls, params: TaskParams) -> bool:
        """Whether each row's gold is one class, so rows can be paired as same / other class (``train.contrastive``,
        polytask.training.contrastive); False by default."""
        return False

    def pair_class(self, gold: Any) -> Hashable:
        """The class of a row's gold, for ``train.contrastive``'s pairs (types whose :meth:`pair_classes` is true)."""
        raise NotImplementedError(f"task type {self.params.type!r} does not pair rows by class")

    def take_notes(self) -> list[str]:
        """What reading golds noticed since the last call (repaired tags, unseen labels), one log line each; the
        loader calls it after each split."""
        notes, self._notes = self._notes, []
        return notes

    def adopt_scoring(self, params: TaskParams) -> None:
        """Take from ``params`` (an evaluating config's) the settings that change only how predictions are scored,
        not the model; nothing by default."""

    # -- features ----------------------------------------------------------------------------------------------------
    @abstractmethod
    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        """This task's fields for each feature of ``example`` (``gold`` None: unlabelled row or inference)."""

    @abstractmethod
    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        """Fields of a batch's features -> tensors; a feature without ``target`` gets IGNORE (or NaN) targets."""

    # -- model -------------------------------------------------------------------------------------------------------
    @abstractmethod
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        """The task's own parameters."""

    def build_head_on(self, encoder: nn.Module, hidden_size: int, dropout: float) -> nn.Module:
        """The head for ``encoder``: by default :meth:`build_head` (a head needs only the encoder's width); a head
        initialised from the encoder's own weights (seq2seq, BERT2BERT) overrides this."""
        return self.build_head(hidden_size, dropout)

    @abstractmethod
    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """Head outputs for a batch (pure tensor code: it is traced into the ONNX graph)."""

    @abstractmethod
    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Mean loss over the labelled entries, or None when the batch labels none of them."""

    # -- outputs -----------------------------------------------------------------------------------------------------
    def host_outputs(self, output: Output) -> list[Any]:
        """A batch's head output -> one host-side (numpy) entry per feature, what ``postprocess`` receives."""
        if isinstance(output, dict):
            arrays = {k: v.float().cpu().numpy() for k, v in output.items()}
            return [{k: a[i] for k, a in arrays.items()} for i in range(len(next(iter(arrays.values()))))]
        return list(output.float().cpu().numpy())

    @abstractmethod
    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        """The outputs of every feature of one example -> its prediction (labels with scores, spans, answers...)."""

    @abstractmethod
    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        """Metrics over examples, keys in the order of ``metric_names``."""

    # -- calibration and min_score (capabilities; the defaults: not calibrated, every answer given) -----------------
    def generation_settings(self, num_beams: int | None = None, max_new_tokens: int | None = None
                            ) -> AbstractContextManager[None]:
        """Generate with these settings (None: the task's own) inside the block; only for task types that declare
        ``generates``."""
        raise NotImplementedError(f"task type {self.params.type!r} does not generate text")

    def calibration_heads(self) -> dict[str, CalibrationKind]:
        """The heads whose outputs are class probabilities: name -> "softmax" or "sigmoid". Each gets one
        temperature, fitted on validation and applied in :meth:`host_outputs`; empty: nothing to calibrate."""
        return {}

    def calibration_logits(self, output: Output, targets: dict[str, torch.Tensor]) -> CalibrationData:
        """head -> (logits [N, C], targets) of the labelled entries of one batch, before any temperature: targets
        [N] class indices for a softmax head, [N, C] of 0/1 for a sigmoid head. The entries the loss trains on."""
        return {}

    def temperature(self, head: str) -> float:
        return self.temperatures.get(head, 1.0)

    def gate(self, prediction: dict[str, Any]) -> Gated | None:
        """``prediction`` as users get it under ``min_score`` (Pipeline, predict, server), or None when the task
        has no threshold (the prediction goes out as it is). Evaluation scores the prediction before the gate."""
        return None

    @abstractmethod
    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        """Whether one prediction is exactly right (for the per-source 'all tasks right' sentence accuracy)."""

    @classmethod
    @abstractmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        """Names of the metrics; the first is the primary one (model selection, comparisons)."""

    @property
    def primary_metric(self) -> str:
        return self.metric_names(self.params)[0]

    def soft_target(self, example: Example, features: Sequence[Feature], outputs: Sequence[Any]) -> np.ndarray:
        """A teacher's ``host_outputs`` for one example's features -> the soft target stored for distillation (only
        for task types that declare ``distillable``)."""
        raise NotImplementedError(f"task type {self.params.type!r} does not support distillation")

    def stock_head(self, head: nn.Module) -> StockHead:
        """This task's head as a stock ``transformers`` head (``polytask export --format hf``), or NotExportable
        saying why it cannot be one (the default: the task type has none)."""
        raise NotExportable(f"task {self.name!r} (type {self.params.type!r}): the task type has no stock Hugging "
                            "Face class that reproduces its head")

    def describe(self) -> dict[str, Any]:
        """What /tasks and ``polytask list`` show: type, input kind and the label set."""
        return {"type": self.params.type, "input": self.input.kind if self.input else None, **self.saved_state()}


class LabelSetTask(Task):
    """A task whose outputs are a label set: learned from train (sorted, so the checkpoint does not depend on row
    order) unless the params fix ``labels``; ``labels[i]`` is output i."""

    def __init__(self, name: str, params: TaskParams) -> None:
        super().__init__(name, params)
        self._set_labels(list(getattr(params, "labels", None) or []))

    def _set_labels(self, labels: list[str]) -> None:
        self.labels = list(labels)
        self._index = label_index(self.labels)

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def load_state(self, state: dict[str, Any]) -> None:
        self._set_labels(state["labels"])

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    @property
    def counts_unseen(self) -> bool:
        """``unseen_labels: count_as_wrong``: an evaluation label training never saw is kept and scored as wrong."""
        return getattr(self.params, "unseen_labels", "error") == "count_as_wrong"

    def adopt_scoring(self, params: TaskParams) -> None:
        if hasattr(params, "unseen_labels") and hasattr(self.params, "unseen_labels"):
            self.params = self.params.model_copy(update={"unseen_labels": params.unseen_labels})

    def label_names(self, raw: Any, example: Example) -> list[str]:
        """The label names in one raw value, for the split-wide check of unseen labels; [] skips that check (then
        :meth:`check_label` reports the first unseen label alone)."""
        return []

    def check_values(self, values: list[tuple[Any, Example]]) -> None:
        """Every label of the split against the label set (:func:`~polytask.tasks.label_checks.check_unseen`)."""
        from polytask.tasks.label_checks import check_unseen

        note = check_unseen(self, values)
        if note:
            self._notes.append(note)

    def check_label(self, label: str, example: Example, field: str | None = None, what: str = "label") -> int:
        """Index of ``label``; a label training never saw is an error naming the row and the allowed labels, or
        -1 with ``unseen_labels: count_as_wrong`` (the caller keeps it as a gold no prediction can match)."""
        if label not in self._index:
            if self.counts_unseen:
                return -1
            raise DataError(f"{what} not in task {self.name!r}'s label set (learned from the training split)",
                            location=example.location, field=field or self.params.label, value=label,
                            allowed=", ".join(self.labels))
        return self._index[label]


TASKS: Registry[type[Task]] = Registry("task type")
