"""``relation_extraction``: entities and the relations between them, jointly, from raw sentences (CoNLL04).

Rows hold words (the dataset's ``text``), ``entities`` ([{type, start, end}], word spans, end exclusive) and
``relations`` ([{type, head, tail}], indices into the entities): the ``spert`` reader gives them from SpERT JSON.
In ONE encoder pass two heads read the first sub-word vector of each word:

- an entity tagger (BIO over the entity types, as ``token_classification``);
- a biaffine relation scorer (Dozat & Manning 2017) giving, for every ordered pair of words (i, j), logits over
  "no relation" and each relation type. The score of an ordered pair of entity SPANS is the mean of the logits of
  its cells (words of the head span x words of the tail span), which equals the biaffine of the spans' mean
  projected word vectors (the form is bilinear).

Training scores the pairs of GOLD entities (each ordered pair of distinct entities; "no relation" where the data has
none) so the relation head learns from clean spans; inference scores the pairs of PREDICTED entities. The head's
outputs are plain tensors ([B, W, C] tags, [B, W, W, R+1] pair logits), so the whole head exports to ONNX; span
decoding and pairing happen in ``postprocess``. Metrics: strict micro relation F1 (primary; a relation counts when
both spans, both entity types and the relation type are right, as in SpERT, Eberts & Ulges 2020) and entity F1.
The head itself is ``polytask.tasks.biaffine.JointHead``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.errors import DataError
from polytask.tasks.base import (IGNORE, TASKS, BatchShape, Encoded, Fields, Output, ScoredParams, Task, TaskBatch,
                                 TaskParams, label_index, masked_pairs, padded, softmax)
from polytask.tasks.biaffine import JointHead
from polytask.tasks.relation_metrics import relation_extraction_scores
from polytask.tasks.scores import CalibrationData, CalibrationKind, Gated, gate_items
from polytask.tasks.stock import NotExportable, StockHead
from polytask.tasks.token_classification import OUTSIDE, bio_spans, bio_tag_set, decode_words, word_span

NO_RELATION = "none"
ENTITIES, RELATIONS = "entities", "relations"  # the calibrated heads: the entity tagger, the relation scorer


class RelationExtractionParams(ScoredParams):
    label: str = Field("entities", description="column of the entities: [{type, start, end}] word spans")
    relations: str = Field("relations", description="column of the relations: [{type, head, tail}] entity indices")
    pair_hidden: int = Field(128, ge=8, description="width of the biaffine relation scorer's word projections")
    entity_types: list[str] | None = Field(None, description="fixed entity types; default: those seen in training")
    relation_types: list[str] | None = Field(None, description="fixed relation types; default: seen in training")


@TASKS.register("relation_extraction")
class RelationExtraction(Task):
    """Joint entities + relations from raw sentences (entity tagger + biaffine span-pair scorer; strict F1)."""

    Params: ClassVar[type[TaskParams]] = RelationExtractionParams
    needs_words = True
    hub_task = "token-classification"
    params: RelationExtractionParams

    def __init__(self, name: str, params: RelationExtractionParams) -> None:
        super().__init__(name, params)
        self._set_types(params.entity_types or [], params.relation_types or [])

    def _set_types(self, entities: list[str], relations: list[str]) -> None:
        self.entity_types, self.relation_types = list(entities), list(relations)
        self.tags = bio_tag_set(set(entities))
        self._tag_index = label_index(self.tags)
        self._relation_index = label_index([NO_RELATION] + self.relation_types)

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        return ["relation_f1", "relation_precision", "relation_recall", "entity_f1", "entity_precision",
                "entity_recall"]

    def columns(self) -> list[str]:
        return [self.params.label, self.params.relations]

    def state(self) -> dict[str, Any]:
        return {"entity_types": self.entity_types, "relation_types": self.relation_types}

    def load_state(self, state: dict[str, Any]) -> None:
        self._set_types(state["entity_types"], state["relation_types"])

    # -- labels ------------------------------------------------------------------------------------------------------
    def _parse(self, raw: Any, example: Example) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """(entities as (type, start, end) word spans, relations as (type, head, tail) entity indices), checked."""
        where, n = example.location, len(example.words or [])
        if not isinstance(raw, list):
            raise DataError("expected a list of entities [{type, start, end}]", location=where,
                            field=self.params.label, value=raw)
        entities = []
        for k, e in enumerate(raw):
            ok = isinstance(e, dict) and isinstance(e.get("type"), str) and all(
                isinstance(e.get(x), int) and not isinstance(e.get(x), bool) for x in ("start", "end"))
            if not ok:
                raise DataError("an entity needs a string 'type' and integer 'start' and 'end' (word indices)",
                                location=where, field=f"{self.params.label}[{k}]", value=e)
            if not 0 <= e["start"] < e["end"] <= n:
                raise DataError(f"entity span outside the sentence ({n} words)", location=where,
                                field=f"{self.params.label}[{k}]", value=e,
                                allowed=f"0 <= start < end <= {n} (end exclusive)")
            entities.append((e["type"], e["start"], e["end"]))
        ordered = sorted(entities, key=lambda x: x[1])
        for a, b in zip(ordered, ordered[1:]):
            if b[1] < a[2]:
                raise DataError("entities overlap (nested or crossing spans are not supported)", location=where,
                                field=self.params.label, value=[list(a), list(b)], allowed="disjoint word spans")
        rels = example.row.values.get(self.params.relations) or []
        if not isinstance(rels, list):
            raise DataError("expected a list of relations [{type, head, tail}]", location=where,
                            field=self.params.relations, value=rels)
        relations = []
        for k, r in enumerate(rels):
            ok = isinstance(r, dict) and isinstance(r.get("type"), str) and all(
                isinstance(r.get(x), int) and not isinstance(r.get(x), bool) and 0 <= r[x] < len(entities)
                for x in ("head", "tail")) and r["head"] != r["tail"]
            if not ok:
                raise DataError(f"a relation needs a string 'type' and 'head' != 'tail', indices of the row's "
                                f"{len(entities)} entities", location=where, field=f"{self.params.relations}[{k}]",
                                value=r, allowed=f"head, tail in 0..{len(entities) - 1}")
            relations.append((r["type"], r["head"], r["tail"]))
        return entities, relations

    def fit(self, values: list[tuple[Any, Example]]) -> None:
        entities: set[str] = set()
        relations: set[str] = set()
        for raw, example in values:
            ents, rels = self._parse(raw, example)
            entities.update(t for t, _, _ in ents)
            relations.update(t for t, _, _ in rels)
        self._set_types(self.params.entity_types or sorted(entities), self.params.relation_types or sorted(relations))

    def gold(self, raw: Any, example: Example) -> dict[str, Any]:
        entities, relations = self._parse(raw, example)
        for t, _, _ in entities:
            if t not in self.entity_types:
                raise DataError(f"entity type not in task {self.name!r}'s types (learned from the training split)",
                                location=example.location, field=self.params.label, value=t,
                                allowed=", ".join(self.entity_types))
        for t, _, _ in relations:
            if t not in self.relation_types:
                raise DataError(f"relation type not in task {self.name!r}'s types (learned from the training "
                                "split)", location=example.location, field=self.params.relations, value=t,
                                allowed=", ".join(self.relation_types))
        return {"entities": entities, "relations": relations}

    # -- features ----------------------------------------------------------------------------------------------------
    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        if gold is None:
            return [{} for _ in features]
        feature = features[0]
        assert feature.word_index is not None
        has_token = feature.word_index >= 0
        tags = [OUTSIDE] * len(has_token)
        for t, s, e in gold["entities"]:
            tags[s] = f"B-{t}"
            for i in range(s + 1, e):
                tags[i] = f"I-{t}"
        tag_target = [self._tag_index[t] if has_token[i] else IGNORE for i, t in enumerate(tags)]
        # an entity whose words all lost their token (truncated) cannot be scored: it is left out of the pairs
        kept = [k for k, (_, s, e) in enumerate(gold["entities"]) if has_token[s:e].any()]
        spans = [(gold["entities"][k][1], gold["entities"][k][2]) for k in kept]
        pairs = np.full((len(kept), len(kept)), self._relation_index[NO_RELATION], dtype=np.int64)
        np.fill_diagonal(pairs, IGNORE)
        position = {k: i for i, k in enumerate(kept)}
        for t, h, tl in gold["relations"]:
            if h in position and tl in position:
                pairs[position[h], position[tl]] = self._relation_index[t]
        return [{"target": {"tags": tag_target, "spans": spans, "pairs": pairs, "has_token": has_token}}]

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        targets = [f.get("target") for f in fields]
        most = max((len(t["spans"]) for t in targets if t is not None), default=0)
        span_mask = np.zeros((shape.size, most, shape.words), dtype=np.float32)
        pairs = np.full((shape.size, most, most), IGNORE, dtype=np.int64)
        for b, t in enumerate(targets):
            if t is None:
                continue
            for k, (s, e) in enumerate(t["spans"]):
                words = np.flatnonzero(t["has_token"][s:e]) + s
                span_mask[b, k, words] = 1.0 / len(words)  # mean over the span's words that have a token
            n = len(t["spans"])
            pairs[b, :n, :n] = t["pairs"]
        tags = padded([t["tags"] if t is not None else None for t in targets], shape.words)
        return TaskBatch(targets={"tags": tags, "span_mask": torch.from_numpy(span_mask),
                                  "pairs": torch.from_numpy(pairs)})

    # -- model -------------------------------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return JointHead(hidden_size, len(self.tags), len(self.relation_types), self.params.head_hidden,
                         self.params.pair_hidden, dropout)

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> {"tags": [B, W, C], "pairs": [B, W, W, R + 1]} from each word's first sub-word vector."""
        return head(encoded.words())

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Entity tag cross-entropy + relation cross-entropy over the ordered pairs of gold entity spans."""
        labelled = self.calibration_logits(output, targets)
        tags, tag_target = labelled[ENTITIES]
        if not len(tag_target):
            return None
        loss = F.cross_entropy(tags, tag_target)
        pairs, pair_target = labelled[RELATIONS]
        return loss + F.cross_entropy(pairs, pair_target) if len(pair_target) else loss

    def stock_head(self, head: nn.Module) -> StockHead:
        raise NotExportable(f"task {self.name!r} (relation_extraction): its biaffine head scores every pair of "
                            "words; no stock transformers class has a pair scorer, so it cannot be exported (use "
                            "the ONNX export, which holds every head)")

    def calibration_heads(self) -> dict[str, CalibrationKind]:
        return {ENTITIES: "softmax", RELATIONS: "softmax"}

    def calibration_logits(self, output: Output, targets: dict[str, torch.Tensor]) -> CalibrationData:
        """entities: each labelled word's tag logits [N, C]; relations: the logits of each ordered pair of gold
        entity spans (the mean of its cells) [M, R + 1], "none" included."""
        assert isinstance(output, dict)
        mask = targets["span_mask"]
        spans = torch.einsum("biw,bwvr,bjv->bijr", mask, output["pairs"].float(), mask)
        return {ENTITIES: masked_pairs(output["tags"], targets["tags"]),
                RELATIONS: masked_pairs(spans, targets["pairs"])}

    def host_outputs(self, output: Output) -> list[Any]:
        """{"tags": [W, C], "pairs": [W, W, R + 1]} logits per feature, each divided by its head's temperature
        (a span pair's logits are means of cells, so scaling the cells scales them alike)."""
        assert isinstance(output, dict)
        tags = (output["tags"].float() / self.temperature(ENTITIES)).cpu().numpy()
        pairs = (output["pairs"].float() / self.temperature(RELATIONS)).cpu().numpy()
        return [{"tags": t, "pairs": p} for t, p in zip(tags, pairs)]

    # -- outputs -----------------------------------------------------------------------------------------------------
    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        feature, out = features[0], outputs[0]
        n = len(example.words or [])
        tags, score = decode_words(out["tags"], feature, self.tags, n)
        has_token = feature.word_index[:n] >= 0 if feature.word_index is not None else np.ones(n, bool)
        entities = []
        for kind, s, e in bio_spans(tags):
            entities.append({"type": kind, **word_span(example, s, e), "score": round(float(score[s:e].mean()), 6)})
        relations = []
        for i, head in enumerate(entities):
            rows = np.flatnonzero(has_token[head["start_word"]:head["end_word"]]) + head["start_word"]
            for j, tail in enumerate(entities):
                cols = np.flatnonzero(has_token[tail["start_word"]:tail["end_word"]]) + tail["start_word"]
                if i == j or not len(rows) or not len(cols):
                    continue
                probs = softmax(out["pairs"][np.ix_(rows, cols)].mean(axis=(0, 1)))
                best = int(np.argmax(probs))
                if best:  # 0 is "no relation"
                    relations.append({"type": self.relation_types[best - 1], "head": i, "tail": j,
                                      "score": round(float(probs[best]), 6), "head_text": head["text"],
                                      "tail_text": tail["text"]})
        return {"entities": entities, "relations": relations}

    def gate(self, prediction: dict[str, Any]) -> Gated | None:
        """Relations below ``min_score`` are dropped; entities stay (relations point at them by index)."""
        gated = gate_items(prediction, "relations", self.params.min_score)
        if gated is None:
            return None
        return Gated(gated[0], len(gated[0]["relations"]), len(prediction["relations"]))

    @staticmethod
    def _tuples(prediction: dict[str, Any]) -> tuple[list[tuple[str, int, int]], list[tuple[str, Any, Any]]]:
        ents = [(e["type"], e["start_word"], e["end_word"]) for e in prediction["entities"]]
        return ents, [(r["type"], ents[r["head"]], ents[r["tail"]]) for r in prediction["relations"]]

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        if not golds:
            return {}
        pred = [self._tuples(p) for p in predictions]
        gold_ents = [g["entities"] for g in golds]
        gold_rels = [[(t, g["entities"][h], g["entities"][tl]) for t, h, tl in g["relations"]] for g in golds]
        scores = relation_extraction_scores([p[0] for p in pred], gold_ents, [p[1] for p in pred], gold_rels)
        return {k: scores[k] for k in self.metric_names(self.params)}

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        ents, rels = self._tuples(prediction)
        gold_rels = {(t, gold["entities"][h], gold["entities"][tl]) for t, h, tl in gold["relations"]}
        return set(ents) == set(gold["entities"]) and set(rels) == gold_rels
