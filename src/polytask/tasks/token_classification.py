"""``token_classification``: one BIO tag per word (NER, slot filling).

Data tagged in another scheme is read through ``tag_scheme`` (BIOES, BMES as in the Chinese NER sets, BILOU) and
turned into BIO on reading: a begin or single tag becomes ``B-``, a middle or end tag ``I-``. Every entity starts
with a begin or single tag, so no entity is lost or merged, and entity-level scores are the same in both schemes;
the model is trained on and predicts BIO tags.

Words come from the dataset's input column (a list of words, or a string split on white space). Each word is
labelled on its first sub-word token, the usual BERT recipe: the head reads the vector of each word's first sub-word
(``Encoded.words()``), so its logits are per word: [B, W, C]. Predictions are mapped back to words and to entity
spans with character offsets. Metrics: seqeval entity-level F1 (primary), precision, recall, token accuracy. The BIO
helpers (schemes, spans, decoding) are in ``polytask.tasks.bio``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.errors import DataError
from polytask.tasks.base import (IGNORE, TASKS, BatchShape, Encoded, Fields, LabelSetParams, LabelSetTask, Output,
                                 TaskBatch, TaskParams, masked_pairs, mlp_head, padded)
from polytask.tasks.bio import (OUTSIDE, TO_BIO, bio_spans, bio_tag_set, check_tag, decode_words,  # noqa: F401
                                repair_bio, to_bio, word_span)
from polytask.tasks.distillation import mixed_cross_entropy, teacher_weight
from polytask.tasks.label_checks import check_fixed_labels, unseen_count
from polytask.tasks.scores import CalibrationData, CalibrationKind, Gated, gate_items
from polytask.tasks.stock import StockHead, scaled, single_linear

HEAD = "tags"  # the one calibrated head: the tag of each word


class TokenClassificationParams(LabelSetParams):
    labels: list[str] | None = Field(None, description="fixed tag set (BIO); default: the tags seen in training")
    tag_scheme: Literal["bio", "bioes", "bmes", "bilou"] = Field(
        "bio", description="the scheme of the data's tags; read into BIO (begin/single -> B-, middle/end -> I-)")


@TASKS.register("token_classification")
class TokenClassification(LabelSetTask):
    """A BIO tag per word (first sub-word labelled; spans with character offsets; seqeval entity F1)."""

    Params: ClassVar[type[TaskParams]] = TokenClassificationParams
    needs_words = True
    distillable = True
    hub_task = "token-classification"
    params: TokenClassificationParams

    def __init__(self, name: str, params: TaskParams) -> None:
        super().__init__(name, params)
        self._repairs: tuple[int, str, int, str] | None = None  # (count, first location, word, tag) of a split

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        return ["f1", "precision", "recall", "token_accuracy"]

    def _tags(self, raw: Any, example: Example) -> list[str]:
        """The example's tags in BIO (read from ``tag_scheme``)."""
        scheme = self.params.tag_scheme
        tags = raw if isinstance(raw, list) else str(raw).split()
        out = []
        for position, tag in enumerate(tags):
            bio = to_bio(tag, scheme) if isinstance(tag, str) else None
            if bio is None or not check_tag(bio):
                allowed = ", ".join(["O", *(f"{p}-<type>" for p in TO_BIO[scheme])])
                raise DataError(f"tag {position + 1} is not a {scheme.upper()} tag", location=example.location,
                                field=self.params.label, value=tag, allowed=allowed)
            out.append(bio)
        return out

    def label_names(self, raw: Any, example: Example) -> list[str]:
        return self._tags(raw, example)

    def take_notes(self) -> list[str]:
        if self._repairs:
            count, location, word, tag = self._repairs
            self._notes.insert(0, f"task {self.name!r}: {count} I- tag(s) did not continue an entity of their type "
                                  f"(first at {location}, word {word} {tag!r}); read as B- (the BIO repair)")
            self._repairs = None
        return super().take_notes()

    def fit(self, values: list[tuple[Any, Example]]) -> None:
        if self.params.labels:
            check_fixed_labels(self, values)
            return
        # an entity type brings both its tags: I-X is valid wherever B-X is, even if no training span was long
        types = {t[2:] for raw, example in values for t in self._tags(raw, example) if t != OUTSIDE}
        self._set_labels(bio_tag_set(types))

    def gold(self, raw: Any, example: Example) -> list[str]:
        tags = self._tags(raw, example)
        words = len(example.words or [])
        if len(tags) != words:
            raise DataError(f"{len(tags)} tags for {words} words; every word needs exactly one tag",
                            location=example.location, field=self.params.label, value=" ".join(tags))
        for tag in tags:
            self.check_label(tag, example, what="tag")
        tags, changed = repair_bio(tags)
        for i in changed:  # a fixed tag set may hold I-X without B-X
            self.check_label(tags[i], example, what="tag")
        if changed:  # counted for the split's log line (take_notes), not silently accepted
            count = self._repairs[0] if self._repairs else 0
            first = self._repairs[1:] if self._repairs else (example.location, changed[0] + 1,
                                                              "I-" + tags[changed[0]][2:])
            self._repairs = (count + len(changed), *first)
        return tags

    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        if gold is None:
            return [{} for _ in features]
        out = []
        for feature in features:
            # a word without a token (truncated away) cannot be trained on: its target is IGNORE
            has_token = feature.word_index >= 0 if feature.word_index is not None else None
            # unseen tags (count_as_wrong, evaluation splits only) have no output to train: IGNORE like truncation
            target = [self._index.get(t, IGNORE) if has_token is None or has_token[w] else IGNORE
                      for w, t in enumerate(gold)]
            out.append({"target": target})
        return out

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        batch = TaskBatch(targets={"target": padded([f.get("target") for f in fields], shape.words)})
        if any("soft" in f for f in fields):  # a teacher's per-word probabilities [W, C] (distillation)
            soft = np.full((shape.size, shape.words, self.num_outputs), np.nan, dtype=np.float32)
            for i, f in enumerate(fields):
                if "soft" in f:
                    n = min(len(f["soft"]), shape.words)
                    soft[i, :n] = f["soft"][:n]
            batch.targets["soft"] = torch.from_numpy(soft)
        return batch

    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return mlp_head(hidden_size, self.params.head_hidden, self.num_outputs, dropout)

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> logits per word [B, W, C], read from each word's first sub-word."""
        return head(encoded.words())

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """logits [B, W, C] per word; target [B, W] (IGNORE for padding, missing rows and truncated words)."""
        weight = teacher_weight(targets)
        if weight is not None:  # per word: the teacher's probabilities mixed with the gold tag
            assert isinstance(output, torch.Tensor)
            c = output.shape[-1]
            return mixed_cross_entropy(output.reshape(-1, c), targets["target"].reshape(-1),
                                       targets["soft"].reshape(-1, c), weight)
        logits, target = self.calibration_logits(output, targets)[HEAD]  # the labelled words
        return F.cross_entropy(logits, target) if len(target) else None

    def calibration_heads(self) -> dict[str, CalibrationKind]:
        return {HEAD: "softmax"}

    def calibration_logits(self, output: Output, targets: dict[str, torch.Tensor]) -> CalibrationData:
        """Each labelled word (one with a token) is an entry: logits [N, C], tag indices [N]."""
        assert isinstance(output, torch.Tensor)
        return {HEAD: masked_pairs(output, targets["target"])}

    def stock_head(self, head: nn.Module) -> StockHead:
        """``AutoModelForTokenClassification``: the same linear layer on every token; polytask reads each word's
        first sub-word, so the stock logits at those tokens are polytask's (temperature folded in)."""
        t = self.temperature(HEAD)
        weight, bias = scaled(single_linear(head, self.name, self.params.head_hidden), 1.0 / t)
        notes = ["the stock class tags every sub-word; polytask tags each word by its first sub-word: use "
                 "aggregation_strategy='first' in a transformers pipeline"]
        if t != 1.0:
            notes.append(f"temperature {t:.4g} folded into the classifier (weights and bias / T)")
        if self.params.min_score:
            notes.append(f"min_score {self.params.min_score}: polytask drops spans below it; apply it yourself")
        return StockHead("AutoModelForTokenClassification", "tokens", weight, bias, list(self.labels), None, "none",
                         notes=notes)

    def host_outputs(self, output: Output) -> list[Any]:
        """Per-word logits / temperature [W, C] per feature (decoding takes their softmax)."""
        assert isinstance(output, torch.Tensor)
        return list((output.float() / self.temperature(HEAD)).cpu().numpy())

    def soft_target(self, example: Example, features: Sequence[Feature], outputs: Sequence[Any]) -> np.ndarray:
        """A teacher's tag probabilities per word of the example [W, C]."""
        logits = outputs[0][: len(example.words or [])]
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        return (probs / probs.sum(-1, keepdims=True)).astype(np.float32)

    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        """Words that got no token (truncated away, or only characters the tokenizer drops) are tagged O."""
        n = len(example.words or [])
        tags, score = decode_words(outputs[0], features[0], self.labels, n)
        spans = []
        for kind, start, end in bio_spans(tags):
            span = word_span(example, start, end)
            spans.append({"type": kind, **span, "score": round(float(score[start:end].mean()), 6)})
        return {"tags": tags, "spans": spans}

    def gate(self, prediction: dict[str, Any]) -> Gated | None:
        """Spans below ``min_score`` are dropped and their words tagged O, so tags and spans stay consistent."""
        gated = gate_items(prediction, "spans", self.params.min_score)
        if gated is None:
            return None
        out, dropped = gated
        tags = list(out["tags"])
        for span in dropped:
            tags[span["start_word"]:span["end_word"]] = [OUTSIDE] * (span["end_word"] - span["start_word"])
        return Gated({**out, "tags": tags}, len(out["spans"]), len(prediction["spans"]))

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        return prediction["tags"] == list(gold)

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        from seqeval.metrics import f1_score, precision_score, recall_score

        if not golds:
            return {}
        pred_tags = [p["tags"] for p in predictions]
        gold_tags = [list(g) for g in golds]
        words = sum(len(g) for g in gold_tags)
        right = sum(p == g for ps, gs in zip(pred_tags, gold_tags) for p, g in zip(ps, gs))
        out = {
            "f1": float(f1_score(gold_tags, pred_tags, zero_division=0)),
            "precision": float(precision_score(gold_tags, pred_tags, zero_division=0)),
            "recall": float(recall_score(gold_tags, pred_tags, zero_division=0)),
            "token_accuracy": right / words if words else 0.0,
        }
        if self.counts_unseen:  # unseen tags are never predicted: missed entities and wrong words above
            out["unseen_labels"] = float(unseen_count(self, gold_tags))
        return out
