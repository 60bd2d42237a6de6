"""``relation_classification``: the relation between two marked entities of a sentence (SemEval-2010 Task 8).

The input is a text with two entity spans (dataset columns ``head_column``/``tail_column``, default ``e1``/``e2``:
[start, end] character offsets; the ``semeval`` reader gives them from the official ``<e1>..</e1>`` markup). The
``entities`` input spec rewrites the text with the marker tokens [E1] [/E1] [E2] [/E2], added to the tokenizer and
the embeddings. The head is R-BERT's (Wu & He 2019, "Enriching Pre-trained Language Model with Entity Information
for Relation Classification"): the pooled vector and the mean vector of each entity's tokens, each through
dropout, tanh and a linear layer (one shared for both entities), concatenated and classified. Directional labels
such as ``Cause-Effect(e1,e2)`` are plain classes.

Metrics: ``macro_f1``, SemEval-2010 Task 8's official score (macro-F1 over the relation types, direction taken into
account, ``negative_label`` left out; see ``relation_metrics.semeval_scores``) and accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.data.input_specs import EntityPairInput
from polytask.data.inputs import InputSpec
from polytask.tasks.base import (IGNORE, TASKS, BatchShape, Encoded, Fields, FieldSpec, LabelSetParams, LabelSetTask,
                                 Output, TaskBatch, TaskParams, masked_pairs)
from polytask.tasks.label_checks import unseen_count
from polytask.tasks.relation_metrics import semeval_scores
from polytask.tasks.scores import CalibrationData, CalibrationKind, Gated, gate_label
from polytask.tasks.stock import NotExportable, StockHead

if TYPE_CHECKING:
    from polytask.config import DatasetConfig


HEAD = "label"  # the one calibrated head


class RelationClassificationParams(LabelSetParams):
    label: str = Field("relation", description="column of the relation label")
    head_column: str = Field("e1", description="column of the first entity's [start, end] character span")
    tail_column: str = Field("e2", description="column of the second entity's [start, end] character span")
    negative_label: str | None = Field("Other", description="the 'no relation' label, left out of macro_f1")
    labels: list[str] | None = Field(None, description="fixed label set; default: the labels seen in training")


class RBertHead(nn.Module):
    """[CLS-or-mean; mean(e1); mean(e2)] -> relation logits (R-BERT)."""

    def __init__(self, hidden: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.sentence = nn.Sequential(nn.Dropout(dropout), nn.Tanh(), nn.Linear(hidden, hidden))
        self.entity = nn.Sequential(nn.Dropout(dropout), nn.Tanh(), nn.Linear(hidden, hidden))
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * hidden, classes))

    def forward(self, pooled: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([self.sentence(pooled), self.entity(e1), self.entity(e2)], dim=-1))


def span_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """tokens [B, T, H], mask [B, T] (1 on the span) -> the mean vector of the span [B, H]."""
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def entity_mask(feature: Feature, opening: int, closing: int) -> np.ndarray:
    """1 on the tokens between two marker positions; an entity whose text gave no token falls back to its opening
    marker, so the head never reads an empty mean."""
    assert feature.markers is not None
    mask = np.zeros(len(feature), dtype=np.float32)
    start, end = int(feature.markers[opening]), int(feature.markers[closing])
    if end > start + 1:
        mask[start + 1 : end] = 1.0
    else:
        mask[start] = 1.0
    return mask


@TASKS.register("relation_classification")
class RelationClassification(LabelSetTask):
    """The relation between two marked entities (R-BERT head; SemEval-2010 Task 8 official macro-F1)."""

    Params: ClassVar[type[TaskParams]] = RelationClassificationParams
    input_fields = {"e1_mask": FieldSpec(("batch", "tokens"), "float32"),
                    "e2_mask": FieldSpec(("batch", "tokens"), "float32")}
    hub_task = "text-classification"
    params: RelationClassificationParams

    def input_spec(self, dataset: DatasetConfig) -> InputSpec:
        return EntityPairInput(head=self.params.head_column, tail=self.params.tail_column)

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        return ["macro_f1", "accuracy"]

    def fit(self, values: list[tuple[Any, Example]]) -> None:
        if not self.params.labels:
            self._set_labels(sorted({str(raw).strip() for raw, _ in values}))

    def gold(self, raw: Any, example: Example) -> str:
        label = str(raw).strip()
        self.check_label(label, example)
        return label

    def label_names(self, raw: Any, example: Example) -> list[str]:
        return [str(raw).strip()]

    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        out = []
        for feature in features:
            fields: Fields = {"e1_mask": entity_mask(feature, 0, 1), "e2_mask": entity_mask(feature, 2, 3)}
            if gold is not None:
                # a label training never saw (unseen_labels: count_as_wrong, evaluation only) has no output to train
                fields["target"] = self._index.get(gold, IGNORE)
            out.append(fields)
        return out

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        masks = {k: np.zeros((shape.size, shape.tokens), dtype=np.float32) for k in ("e1_mask", "e2_mask")}
        for i, f in enumerate(fields):
            for k, m in masks.items():
                m[i, : len(f[k])] = f[k]
        target = torch.tensor([f.get("target", IGNORE) for f in fields], dtype=torch.long)
        return TaskBatch(inputs={k: torch.from_numpy(m) for k, m in masks.items()}, targets={"target": target})

    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return RBertHead(hidden_size, self.num_outputs, dropout)

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> logits [B, C] from the pooled vector and the two entities' mean token vectors."""
        tokens = encoded.tokens
        return head(encoded.pooled, span_mean(tokens, inputs["e1_mask"]), span_mean(tokens, inputs["e2_mask"]))

    def stock_head(self, head: nn.Module) -> StockHead:
        raise NotExportable(f"task {self.name!r} (relation_classification): its R-BERT head reads the mean token "
                            "vectors of the two marked entities besides the sentence vector; no stock transformers "
                            "class reads entity spans, so it cannot be exported (use the ONNX export, which holds "
                            "every head)")

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        logits, target = self.calibration_logits(output, targets)[HEAD]  # the labelled rows
        return F.cross_entropy(logits, target) if len(target) else None

    def calibration_heads(self) -> dict[str, CalibrationKind]:
        return {HEAD: "softmax"}

    def calibration_logits(self, output: Output, targets: dict[str, torch.Tensor]) -> CalibrationData:
        assert isinstance(output, torch.Tensor)
        return {HEAD: masked_pairs(output, targets["target"])}

    def host_outputs(self, output: Output) -> list[Any]:
        """softmax(logits / temperature) [C] per feature."""
        assert isinstance(output, torch.Tensor)
        return list(torch.softmax(output.float() / self.temperature(HEAD), dim=-1).cpu().numpy())

    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        probs = outputs[0]
        best = int(np.argmax(probs))
        assert example.entities is not None
        entities = {name: {"text": example.text[s:e], "start": s, "end": e}
                    for name, (s, e) in zip(("e1", "e2"), example.entities)}
        return {"label": self.labels[best], "score": round(float(probs[best]), 6), **entities}

    def gate(self, prediction: dict[str, Any]) -> Gated | None:
        return gate_label(prediction, self.params.min_score)

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        return prediction["label"] == gold

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        if not golds:
            return {}
        scores = semeval_scores([p["label"] for p in predictions], list(golds), self.params.negative_label)
        extra = {"unseen_labels": float(unseen_count(self, golds))} if self.counts_unseen else {}
        return {"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"], **extra}
