"""``span_qa``: extractive question answering, the answer a span of the context (SQuAD v1.1; Rajpurkar et al. 2016;
the BERT recipe of Devlin et al. 2019).

The input is a (question, context) pair: the dataset's ``text`` column holds the question and ``text_pair`` the
context. Long contexts are split into windows of ``max_length`` tokens overlapping by ``doc_stride`` tokens, each
with the whole question (the ``windows`` input spec; questions longer than ``max_question_length`` tokens are cut, as
BERT's ``max_query_length``). The head scores every token as the answer's start and end;
only the window's context tokens can be predicted. In training a window that does not hold the whole answer points
at its first token ([CLS]) instead, as in BERT's recipe, so the model learns low scores where the answer is not.
Decoding takes the ``n_best`` starts and ends of every window, keeps spans of at most ``max_answer_length`` tokens
with end >= start, and returns the best by start + end logit over all windows, with the answer text and its
character offsets in the context as given. Metrics: SQuAD v1.1 F1 (primary) and exact match, each the best over
the reference answers (``qa_metrics``).
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
from polytask.data.input_specs import WindowInput
from polytask.data.inputs import InputSpec
from polytask.errors import DataError
from polytask.tasks.base import (IGNORE, TASKS, BatchShape, Encoded, Fields, FieldSpec, Output, Task, TaskBatch,
                                 TaskParams, mlp_head)
from polytask.tasks.qa_metrics import normalize_answer, squad_scores
from polytask.tasks.stock import StockHead, scaled, single_linear

if TYPE_CHECKING:
    from polytask.config import DatasetConfig

NULL = 0  # the window's first token ([CLS]): the training target of a window without the answer
MASKED = -1e4  # logit of a position that cannot be predicted (finite: stays finite under bf16 autocast)


class SpanQAParams(TaskParams):
    label: str = Field("answers", description="column of reference answers: [{text, answer_start}, ...]")
    max_length: int | None = Field(None, ge=16, description="tokens per window; default: encoder.max_length")
    doc_stride: int | None = Field(128, ge=0, description="tokens shared by consecutive windows; null: no "
                                                          "windows (a context that does not fit is an error)")
    max_question_length: int | None = Field(64, ge=1, description="longer questions are cut to this many tokens "
                                                                 "(counted in a log line); null: never cut")
    max_answer_length: int = Field(30, ge=1, description="longest answer considered, in tokens")
    n_best: int = Field(20, ge=1, description="start and end candidates per window")


def answer_tokens(feature: Feature, start: int, end: int) -> tuple[int, int] | None:
    """(first, last) token of the character span [start, end) of the context in this window, or None when the
    window does not hold all of it."""
    assert feature.sequence_ids is not None and feature.offsets is not None
    context = np.flatnonzero(feature.sequence_ids == 1)
    if not len(context):
        return None
    offsets = feature.offsets
    if offsets[context[0], 0] > start or offsets[context[-1], 1] < end:
        return None
    first = context[offsets[context, 1] > start]
    last = context[offsets[context, 0] < end]
    if not len(first) or not len(last) or first[0] > last[-1]:
        return None
    return int(first[0]), int(last[-1])


@TASKS.register("span_qa")
class SpanQA(Task):
    """Extractive QA: the answer span in a (question, context) pair, long contexts in windows (SQuAD v1.1)."""

    Params: ClassVar[type[TaskParams]] = SpanQAParams
    input_fields = {"allowed": FieldSpec(("batch", "tokens"), "float32")}
    hub_task = "question-answering"
    params: SpanQAParams

    def input_spec(self, dataset: DatasetConfig) -> InputSpec:
        return WindowInput(max_length=self.params.max_length, stride=self.params.doc_stride,
                           max_question=self.params.max_question_length)

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        return ["f1", "exact_match"]

    # -- labels ------------------------------------------------------------------------------------------------------
    def gold(self, raw: Any, example: Example) -> list[dict[str, Any]]:
        """Every reference answer, checked against the context: [{"text", "start"}, ...] (the first one trains)."""
        answers = [raw] if isinstance(raw, dict) else raw
        field = self.params.label
        if not isinstance(answers, list) or not answers:
            raise DataError("expected a non-empty list of answers [{text, answer_start}, ...]",
                            location=example.location, field=field, value=raw)
        context = example.pair or ""
        out = []
        for k, answer in enumerate(answers):
            where = f"{field}[{k}]"
            text = answer.get("text") if isinstance(answer, dict) else None
            start = answer.get("answer_start") if isinstance(answer, dict) else None
            if not isinstance(text, str) or not text.strip() or not isinstance(start, int) or isinstance(start, bool):
                raise DataError("an answer needs a non-empty 'text' and an integer 'answer_start'",
                                location=example.location, field=where, value=answer)
            found = context[start : start + len(text)]
            if found != text:
                raise DataError(f"the answer text does not match the context at answer_start {start} (the context "
                                f"there reads {found!r})", location=example.location, field=where, value=text,
                                allowed="answer_start = the character offset of the answer in the context")
            out.append({"text": text, "start": start})
        return out

    # -- features ----------------------------------------------------------------------------------------------------
    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        out = []
        for feature in features:
            assert feature.sequence_ids is not None
            allowed = (feature.sequence_ids == 1).astype(np.float32)
            allowed[NULL] = 1.0
            fields: Fields = {"allowed": allowed}
            if gold is not None:
                first = gold[0]
                fields["target"] = answer_tokens(feature, first["start"], first["start"] + len(first["text"])) or (
                    NULL, NULL)
            out.append(fields)
        return out

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        allowed = np.zeros((shape.size, shape.tokens), dtype=np.float32)
        start = np.full(shape.size, IGNORE, dtype=np.int64)
        end = np.full(shape.size, IGNORE, dtype=np.int64)
        for i, f in enumerate(fields):
            allowed[i, : len(f["allowed"])] = f["allowed"]
            if "target" in f:
                start[i], end[i] = f["target"]
        return TaskBatch(inputs={"allowed": torch.from_numpy(allowed)},
                         targets={"start": torch.from_numpy(start), "end": torch.from_numpy(end)})

    # -- model -------------------------------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return mlp_head(hidden_size, self.params.head_hidden, 2, dropout)

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> {"start", "end"}: logits [B, T] over tokens; positions outside the context (and [CLS]) are masked."""
        logits = head(encoded.tokens).float()
        blocked = inputs["allowed"] <= 0
        return {"start": logits[..., 0].masked_fill(blocked, MASKED),
                "end": logits[..., 1].masked_fill(blocked, MASKED)}

    def stock_head(self, head: nn.Module) -> StockHead:
        """``AutoModelForQuestionAnswering``: the same start/end linear layer on every token. The stock class does
        not mask positions outside the context: its logits equal polytask's on the context tokens."""
        weight, bias = scaled(single_linear(head, self.name, self.params.head_hidden))
        notes = ["start/end logits equal polytask's on the context tokens; the stock class leaves the question "
                 "tokens unmasked and decoding (windows, n_best, max_answer_length "
                 f"{self.params.max_answer_length}) to the caller, e.g. a transformers question-answering pipeline"]
        return StockHead("AutoModelForQuestionAnswering", "tokens", weight, bias, ["start", "end"], None, "none",
                         outputs={"start": "start_logits", "end": "end_logits"}, notes=notes)

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        assert isinstance(output, dict)
        keep = targets["start"] != IGNORE
        if not keep.any():
            return None
        start = F.cross_entropy(output["start"][keep], targets["start"][keep])
        end = F.cross_entropy(output["end"][keep], targets["end"][keep])
        return (start + end) / 2

    # -- outputs -----------------------------------------------------------------------------------------------------
    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        best: tuple[float, int, int, int, float] | None = None  # (logit sum, window, start, end, probability)
        for w, (feature, out) in enumerate(zip(features, outputs)):
            assert feature.sequence_ids is not None
            n = len(feature)
            context = np.flatnonzero(feature.sequence_ids[:n] == 1)
            if not len(context):
                continue
            start, end = out["start"][:n], out["end"][:n]
            norm = _logsumexp(start[context]) + _logsumexp(end[context])
            k = min(self.params.n_best, len(context))
            starts = context[np.argsort(-start[context], kind="stable")[:k]]
            ends = context[np.argsort(-end[context], kind="stable")[:k]]
            for s in starts:
                for e in ends:
                    if e < s or e - s + 1 > self.params.max_answer_length:
                        continue
                    total = float(start[s] + end[e])
                    if best is None or total > best[0]:
                        best = (total, w, int(s), int(e), float(np.exp(total - norm)))
        if best is None:
            return {"answer": "", "start": None, "end": None, "score": 0.0}
        _, w, s, e, probability = best
        offsets = features[w].offsets
        assert offsets is not None
        char_start, char_end = int(offsets[s, 0]), int(offsets[e, 1])
        context_text = example.pair or ""
        return {"answer": context_text[char_start:char_end], "start": char_start, "end": char_end,
                "score": round(probability, 6)}

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        if not golds:
            return {}
        scores = squad_scores([p["answer"] for p in predictions], [[a["text"] for a in g] for g in golds])
        return {"f1": scores["f1"], "exact_match": scores["exact_match"]}

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        answer = normalize_answer(prediction["answer"])
        return any(answer == normalize_answer(a["text"]) for a in gold)


def _logsumexp(x: np.ndarray) -> float:
    top = float(x.max())
    return top + float(np.log(np.exp(x - top).sum()))
