"""Relation metrics, written from their published definitions.

- :func:`semeval_scores`: the official score of SemEval-2010 Task 8, the "(9+1)-way evaluation taking directionality
  into account", macro-averaged F1 over the nine relation types with ``Other`` left out (Hendrickx et al. 2010,
  "SemEval-2010 Task 8: Multi-Way Classification of Semantic Relations between Pairs of Nominals", Proceedings of
  SemEval-2010, ACL Anthology S10-1006; the task's scorer ``semeval2010_task8_scorer-v1.2.pl``).
- :func:`relation_extraction_scores`: micro precision/recall/F1 of entities and of relations in the strict setting
  of SpERT (Eberts & Ulges 2020, "Span-based Joint Entity and Relation Extraction with Transformer Pre-training",
  ECAI 2020, arXiv:1909.07755): a relation counts only when both entities' spans and types and the relation type
  are right, in the right direction (the "strict" criterion discussed by Taillé et al. 2020, "Let's Stop Incorrect
  Comparisons in End-to-end Relation Extraction!", EMNLP 2020).

All scores are fractions in [0, 1].
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

Entity = tuple[str, int, int]  # (type, start, end)
Relation = tuple[str, Entity, Entity]  # (type, head entity, tail entity)


def base_type(label: str) -> str:
    """``Cause-Effect(e2,e1)`` -> ``Cause-Effect``; a label without a direction is its own base type."""
    return label.split("(", 1)[0]


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def semeval_scores(predictions: list[str], golds: list[str], negative: str | None = "Other") -> dict[str, float]:
    """``macro_f1`` (the SemEval-2010 Task 8 official score) and ``accuracy`` (exact label match).

    For each base type B other than ``negative`` seen in golds or predictions: TP counts predictions equal to the
    gold label (type AND direction) with base type B; precision divides by every prediction of base type B and
    recall by every gold of base type B. So a prediction of the right type in the wrong direction counts against
    both the precision and the recall of that type, as in the official scorer (which lists such cases in its
    ``xDIRx`` column and adds them to the precision denominator while they miss the diagonal). ``macro_f1`` is the
    unweighted mean of the per-type F1s.
    """
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} gold labels")
    if not golds:
        return {"macro_f1": 0.0, "accuracy": 0.0}
    predicted = Counter(base_type(p) for p in predictions)
    gold = Counter(base_type(g) for g in golds)
    correct = Counter(base_type(g) for p, g in zip(predictions, golds) if p == g)
    types = sorted(t for t in set(predicted) | set(gold) if t != negative)
    f1s = []
    for kind in types:
        precision = correct[kind] / predicted[kind] if predicted[kind] else 0.0
        recall = correct[kind] / gold[kind] if gold[kind] else 0.0
        f1s.append(_f1(precision, recall))
    return {"macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
            "accuracy": sum(correct.values()) / len(golds)}


def _micro(predicted: Sequence[Sequence[Any]], gold: Sequence[Sequence[Any]], name: str) -> dict[str, float]:
    """Micro precision/recall/F1 over sentences; each sentence's items are a set (a duplicate counts once)."""
    if len(predicted) != len(gold):
        raise ValueError(f"{name}: {len(predicted)} predicted sentences for {len(gold)} gold sentences")
    hits = n_predicted = n_gold = 0
    for pred_items, gold_items in zip(predicted, gold):
        pred_set, gold_set = {_frozen(x) for x in pred_items}, {_frozen(x) for x in gold_items}
        hits += len(pred_set & gold_set)
        n_predicted += len(pred_set)
        n_gold += len(gold_set)
    precision = hits / n_predicted if n_predicted else 0.0
    recall = hits / n_gold if n_gold else 0.0
    return {f"{name}_precision": precision, f"{name}_recall": recall, f"{name}_f1": _f1(precision, recall)}


def _frozen(item: Any) -> Hashable:
    """Lists (e.g. entities read back from JSON) become tuples so that equal items compare and hash equal."""
    return tuple(_frozen(x) for x in item) if isinstance(item, (list, tuple)) else item


def relation_extraction_scores(
    pred_entities: Sequence[Sequence[Entity]],
    gold_entities: Sequence[Sequence[Entity]],
    pred_relations: Sequence[Sequence[Relation]],
    gold_relations: Sequence[Sequence[Relation]],
) -> dict[str, float]:
    """Micro entity and strict relation precision/recall/F1 over sentences (one list per sentence).

    An entity ``(type, start, end)`` counts when span and type match a gold entity exactly. A relation
    ``(type, head, tail)`` (head and tail are entity tuples, not indices, so a relation between wrongly predicted
    entities cannot match by index) counts when its type, both spans and both entity types match a gold relation in
    the same direction.
    """
    scores = _micro(pred_entities, gold_entities, "entity")
    scores.update(_micro(pred_relations, gold_relations, "relation"))
    return scores
