"""``token_classification``: one BIO tag per word (NER, slot filling).

Words come from the dataset's input column (a list of words, or a string split on whitespace). Each word is
labelled on its first sub-word token, the usual BERT recipe; the head runs on every token and the model gathers the
first-sub-word rows, so logits here are per word: [B, W, C]. Predictions are mapped back to words and to
entity spans with character offsets. Metrics: seqeval entity-level F1 (primary), precision, recall, token accuracy.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from polytask.data.rows import Row
from polytask.errors import DataError
from polytask.tasks.base import IGNORE, TASKS, DecodeContext, Task, TaskParams

OUTSIDE = "O"


class TokenClassificationParams(TaskParams):
    labels: list[str] | None = Field(None, description="fixed tag set; default: the tags seen in training")


def check_tag(tag: str) -> bool:
    return tag == OUTSIDE or (len(tag) > 2 and tag[:2] in ("B-", "I-"))


def bio_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """BIO tags -> [(type, first word, last word + 1)]. An I- tag that does not continue a span of its type starts a
    new one (the conlleval convention, which seqeval's default mode also follows)."""
    spans: list[tuple[str, int, int]] = []
    current: list[Any] | None = None
    for i, tag in enumerate(tags):
        kind = tag[2:] if tag != OUTSIDE else None
        continues = current is not None and tag.startswith("I-") and current[0] == kind
        if continues:
            current[2] = i + 1  # type: ignore[index]
            continue
        if current is not None:
            spans.append(tuple(current))  # type: ignore[arg-type]
            current = None
        if kind is not None:
            current = [kind, i, i + 1]
    if current is not None:
        spans.append(tuple(current))  # type: ignore[arg-type]
    return spans


@TASKS.register("token_classification")
class TokenClassification(Task):
    """A BIO tag per word (first sub-word labelled; spans with character offsets; seqeval entity F1)."""

    Params: ClassVar[type[TaskParams]] = TokenClassificationParams
    level = "token"
    primary_metric = "f1"
    params: TokenClassificationParams

    def __init__(self, name: str, params: TokenClassificationParams) -> None:
        super().__init__(name, params)
        self._set_labels(params.labels or [])

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        return ["f1", "precision", "recall", "token_accuracy"]

    def _tags(self, raw: Any, row: Row) -> list[str]:
        tags = raw if isinstance(raw, list) else str(raw).split()
        for position, tag in enumerate(tags):
            if not isinstance(tag, str) or not check_tag(tag):
                raise DataError(f"tag {position + 1} is not a BIO tag", location=row.location,
                                field=self.params.label, value=tag, allowed="O, B-<type>, I-<type>")
        return list(tags)

    def fit(self, values: list[tuple[Any, Row]]) -> None:
        if self.params.labels:
            return
        seen = {OUTSIDE}
        for raw, row in values:
            # an entity type brings both its tags: I-X is valid wherever B-X is, even if no training span was long
            seen.update(f"{p}-{t[2:]}" for t in self._tags(raw, row) if t != OUTSIDE for p in "BI")
        # O first, then entity types grouped (B- before I-), so the order is stable and readable
        self._set_labels([OUTSIDE] + sorted(seen - {OUTSIDE}, key=lambda t: (t[2:], t[:2])))

    def state(self) -> dict[str, Any]:
        return {"labels": self.labels}

    def load_state(self, state: dict[str, Any]) -> None:
        self._set_labels(state["labels"])

    @property
    def num_outputs(self) -> int:
        return len(self.labels)

    def gold(self, raw: Any, row: Row, num_words: int | None = None) -> list[str]:
        tags = self._tags(raw, row)
        if num_words is not None and len(tags) != num_words:
            raise DataError(f"{len(tags)} tags for {num_words} words; every word needs exactly one tag",
                            location=row.location, field=self.params.label, value=" ".join(tags))
        for tag in tags:
            if tag not in self._index:
                raise DataError(f"tag not in task {self.name!r}'s tag set (learned from the training split)",
                                location=row.location, field=self.params.label, value=tag,
                                allowed=", ".join(self.labels))
        return tags

    def encode(self, raw: Any, row: Row, num_words: int | None = None) -> list[int]:
        return [self._index[t] for t in self.gold(raw, row, num_words)]

    def collate(self, targets: list[Any], num_words: int) -> torch.Tensor:
        out = torch.full((len(targets), num_words), IGNORE, dtype=torch.long)
        for i, t in enumerate(targets):
            if t is not None:
                out[i, : len(t)] = torch.tensor(t[:num_words], dtype=torch.long)
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        """logits [B, W, C] per word; target [B, W] (IGNORE for padding, missing rows and truncated words)."""
        keep = target != IGNORE
        if not keep.any():
            return None
        return F.cross_entropy(logits[keep].float(), target[keep])

    def decode(self, logits: torch.Tensor, ctx: DecodeContext | None = None) -> list[dict[str, Any]]:
        """Words that got no token (truncated away, or only characters the tokenizer drops) are tagged O."""
        if ctx is None or ctx.word_index is None or ctx.words is None:
            raise ValueError("token_classification decoding needs the words and word index of the batch")
        best = logits.float().argmax(-1)
        scores = torch.softmax(logits.float(), -1).amax(-1)
        has_token = (ctx.word_index >= 0).tolist()
        out = []
        for b in range(best.shape[0]):
            n = len(ctx.words[b])
            tags = [self.labels[best[b, i]] if has_token[b][i] else OUTSIDE for i in range(n)]
            pred: dict[str, Any] = {"tags": tags, "spans": []}
            for kind, start, end in bio_spans(tags):
                span: dict[str, Any] = {"type": kind, "start_word": start, "end_word": end,
                                        "score": round(float(scores[b, start:end].mean()), 6),
                                        "text": " ".join(ctx.words[b][start:end])}
                if ctx.word_spans:
                    span["start"], span["end"] = ctx.word_spans[b][start][0], ctx.word_spans[b][end - 1][1]
                    if ctx.texts:
                        span["text"] = ctx.texts[b][span["start"] : span["end"]]
                pred["spans"].append(span)
            out.append(pred)
        return out

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
        return {
            "f1": float(f1_score(gold_tags, pred_tags, zero_division=0)),
            "precision": float(precision_score(gold_tags, pred_tags, zero_division=0)),
            "recall": float(recall_score(gold_tags, pred_tags, zero_division=0)),
            "token_accuracy": right / words if words else 0.0,
        }
