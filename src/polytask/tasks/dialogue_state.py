"""``dialogue_state``: dialogue state tracking (DST) on a user turn with its history, one encoder pass shared with
the turn's other tasks (intent, requested slots, slot tags).

The state after a user turn maps slots to values, accumulated over the dialogue. Per turn the head predicts an
*update* for every slot it knows, and the new state is the previous one with the updates applied (the approach of
the SGD baseline, Rastogi et al. 2020, "Towards Scalable Multi-domain Conversational Agents: The Schema-Guided
Dialogue Dataset", with a closed slot vocabulary instead of schema-description embeddings):

- ``status`` [B, S, 4] from the pooled vector: ``carry`` (keep the previous value, or stay absent), ``update`` (a new
  value from this turn), ``dontcare`` or ``delete``;
- ``values`` [B, Sc, V] from the pooled vector: the value of each *categorical* slot (the schema lists its possible
  values), read when its status is ``update``;
- ``tags`` [B, W, C] per word of the user turn: BIO spans of the *non-categorical* slots; an updated span slot takes
  the text of its best-scoring predicted span (no span predicted: the previous value is kept). Values the user only
  accepts from the system's offer ("yes, that one") are not in the user turn and are missed: a known limit.

Which slots are categorical, and the values they take, come from each row's ``categorical`` column (the service's
schema, see ``polytask.data.sgd``), learned on train with the slots of each service. A prediction restricts the
slots to the row's ``service_slots`` (the schema, also for services unseen in training), else to the slots training
saw for its ``service``, else every known slot.

Joint goal accuracy (Rastogi et al. 2020): a turn counts when the predicted state equals the gold state on every
slot; a value is right when it equals one of the gold's equivalent values after case-folding and white-space
normalisation (the official script scores span slots with a fuzzy match instead: this is stricter). Evaluation
chains the predicted states through each dialogue: turn t starts from the state predicted at turn t-1, as a
deployed tracker would (a dialogue whose earlier turns are not in the evaluated rows starts from the gold previous
state, counted in ``chain_restarts``). Average goal accuracy: the share of gold slots with the right value.
Reading, updating and comparing states is in ``polytask.tasks.dialogue_state_values``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.errors import DataError
from polytask.tasks.base import (IGNORE, TASKS, BatchShape, Encoded, Fields, Output, Task, TaskBatch, TaskParams,
                                 mlp_head, padded, softmax)
from polytask.tasks.dialogue_state_values import STATE, apply_updates, as_state, normalise, state_right  # noqa: F401
from polytask.tasks.token_classification import OUTSIDE, bio_spans, bio_tag_set, decode_words, word_span

STATUS = ("carry", "update", "dontcare", "delete")
DONTCARE = "dontcare"


class DialogueStateParams(TaskParams):
    label: str = Field("state", description="column of the state after the turn: {slot: [equivalent values]}")
    previous: str = Field("previous_state", description="column of the state after the previous user turn")
    tags: str = Field("tags", description="column of the user turn's BIO tags (spans of non-categorical slots)")


class StateHead(nn.Module):
    """Status, categorical-value and span-tag heads; ``value_mask`` [Sc, V] marks each categorical slot's values."""

    def __init__(self, hidden: int, inner: int, slots: int, value_mask: torch.Tensor, tags: int,
                 dropout: float) -> None:
        super().__init__()
        self.slots, (self.cat_slots, self.max_values) = slots, value_mask.shape
        self.status = mlp_head(hidden, inner, slots * len(STATUS), dropout)
        self.values = mlp_head(hidden, inner, self.cat_slots * self.max_values, dropout)
        self.tags = mlp_head(hidden, inner, tags, dropout)
        self.register_buffer("value_mask", value_mask)


@TASKS.register("dialogue_state")
class DialogueState(Task):
    """Per-slot updates of the dialogue state (carry / update / dontcare / delete), categorical values classified,
    span values copied from the user turn; joint goal accuracy."""

    Params: ClassVar[type[TaskParams]] = DialogueStateParams
    needs_words = True
    params: DialogueStateParams

    def __init__(self, name: str, params: TaskParams) -> None:
        super().__init__(name, params)
        self.slots: list[str] = []
        self.categorical: dict[str, list[str]] = {}  # slot -> its values (schema + training states)
        self.service_slots: dict[str, list[str]] = {}  # service -> its slots (training schemas)
        self.service_categorical: dict[str, list[str]] = {}  # service -> its categorical slots
        self.tag_labels: list[str] = [OUTSIDE]
        self._index()

    def _index(self) -> None:
        self.slot_index = {s: i for i, s in enumerate(self.slots)}
        self.cat_slots = sorted(self.categorical)
        self.cat_index = {s: i for i, s in enumerate(self.cat_slots)}
        self.value_index = {s: {v: j for j, v in enumerate(vs)} for s, vs in self.categorical.items()}
        self.tag_index = {t: i for i, t in enumerate(self.tag_labels)}

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        return ["joint_goal_accuracy", "average_goal_accuracy"]

    def columns(self) -> list[str]:
        return [self.params.label, self.params.previous, self.params.tags, "dialogue_id", "turn", "service",
                "service_slots", "categorical"]

    # -- labels ------------------------------------------------------------------------------------------------------
    def fit(self, values: list[tuple[Any, Example]]) -> None:
        slots: set[str] = set()
        categorical: dict[str, set[str]] = {}
        types: set[str] = set()
        for raw, example in values:
            row = example.row.values
            state = as_state(raw, example.location, self.params.label)
            service, cats = str(row.get("service")), dict(row.get("categorical") or {})
            self.service_slots[service] = sorted(set(self.service_slots.get(service, [])) | set(row["service_slots"]))
            self.service_categorical[service] = sorted(set(self.service_categorical.get(service, [])) | set(cats))
            slots |= set(row["service_slots"]) | set(state)
            for slot, possible in cats.items():
                categorical.setdefault(slot, set()).update(possible)
            for slot, vs in state.items():
                if slot in cats and vs[0] != DONTCARE:
                    categorical[slot].add(vs[0])
            types |= {t[2:] for t in row.get(self.params.tags) or [] if t != OUTSIDE}
        self.slots = sorted(slots)
        self.categorical = {s: sorted(v) for s, v in sorted(categorical.items())}
        self.tag_labels = bio_tag_set(types)
        self._index()

    def state(self) -> dict[str, Any]:
        return {"slots": self.slots, "categorical": self.categorical, "service_slots": self.service_slots,
                "service_categorical": self.service_categorical, "tags": self.tag_labels}

    def load_state(self, state: dict[str, Any]) -> None:
        self.slots, self.categorical = list(state["slots"]), dict(state["categorical"])
        self.service_slots, self.service_categorical = dict(state["service_slots"]), dict(state["service_categorical"])
        self.tag_labels = list(state["tags"])
        self._index()

    def gold(self, raw: Any, example: Example) -> Any:
        row = example.row.values
        where = example.location
        for key in ("dialogue_id", "turn"):
            if key not in row:
                raise DataError("missing column (the dialogue_state task chains turns by it)", location=where,
                                field=key)
        tags = list(row.get(self.params.tags) or [])
        if tags and len(tags) != len(example.words or []):
            raise DataError(f"{len(tags)} tags for {len(example.words or [])} words of the user turn",
                            location=where, field=self.params.tags, value=" ".join(map(str, tags)))
        return {"state": as_state(raw, where, self.params.label),
                "previous": as_state(row.get(self.params.previous, {}), where, self.params.previous),
                "dialogue": row["dialogue_id"], "turn": row["turn"], "tags": tags}

    # -- features ----------------------------------------------------------------------------------------------------
    def _status(self, slot: str, previous: dict[str, list[str]], state: dict[str, list[str]]) -> str:
        if slot not in state:
            return "delete" if slot in previous else "carry"
        if slot in previous and set(previous[slot]) & set(state[slot]):
            return "carry"  # the same value, maybe with more spoken variants
        return DONTCARE if state[slot] == [DONTCARE] else "update"

    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        if gold is None:
            return [{} for _ in features]
        state, previous = gold["state"], gold["previous"]
        # only the slots a prediction for this row considers are trained (the loss sums over slots): the slots of
        # other services are always "carry" here, and summed they would outweigh the turn's few real updates
        relevant = set(self._slots_for(example.row.values)) | set(state) | set(previous)
        status = [STATUS.index(self._status(s, previous, state)) if s in relevant else IGNORE for s in self.slots]
        values = [IGNORE] * len(self.cat_slots)
        for slot, j in self.cat_index.items():
            if slot in state and status[self.slot_index[slot]] == STATUS.index("update"):
                values[j] = self.value_index[slot].get(state[slot][0], IGNORE)
        out = []
        for feature in features:
            has = feature.word_index >= 0 if feature.word_index is not None else None
            tags = [self.tag_index.get(t, IGNORE) if has is None or has[w] else IGNORE
                    for w, t in enumerate(gold["tags"])]
            out.append({"target": status, "values": values, "tags": tags})
        return out

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        return TaskBatch(targets={"target": padded([f.get("target") for f in fields], len(self.slots)),
                                  "values": padded([f.get("values") for f in fields], max(1, len(self.cat_slots))),
                                  "tags": padded([f.get("tags") for f in fields], shape.words)})

    # -- model -------------------------------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        widest = max([len(v) for v in self.categorical.values()] + [1])
        mask = torch.zeros(max(1, len(self.cat_slots)), widest, dtype=torch.bool)
        for slot, j in self.cat_index.items():
            mask[j, : len(self.categorical[slot])] = True
        return StateHead(hidden_size, self.params.head_hidden, max(1, len(self.slots)), mask, len(self.tag_labels),
                         dropout)

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> status [B, S, 4], values [B, Sc, V] (a slot's impossible values at -1e4), tags [B, W, C]."""
        assert isinstance(head, StateHead)
        pooled = encoded.pooled
        status = head.status(pooled).unflatten(-1, (head.slots, len(STATUS)))
        values = head.values(pooled).unflatten(-1, (head.cat_slots, head.max_values))
        values = values.masked_fill(~head.value_mask, -1e4)  # type: ignore[operator]
        return {"status": status, "values": values, "tags": head.tags(encoded.words())}

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Cross-entropy of the statuses summed over slots (almost every slot carries over in a turn: a mean over
        slots would drown the few updates) and averaged over rows, plus the mean cross-entropies of the categorical
        values and the word tags."""
        assert isinstance(output, dict)
        parts = []
        for key, target in (("status", targets["target"]), ("values", targets["values"]), ("tags", targets["tags"])):
            logits = output[key][:, : target.shape[1]]
            keep = target != IGNORE
            if not keep.any():
                continue
            if key == "status":
                rows = keep.any(1).sum()
                parts.append(F.cross_entropy(logits[keep].float(), target[keep], reduction="sum") / rows)
            else:
                parts.append(F.cross_entropy(logits[keep].float(), target[keep]))
        return torch.stack(parts).sum() if parts else None

    # -- outputs -----------------------------------------------------------------------------------------------------
    def _slots_for(self, row: Mapping[str, Any]) -> list[str]:
        listed = row.get("service_slots") or self.service_slots.get(str(row.get("service")))
        return [s for s in (listed or self.slots) if s in self.slot_index]

    def _is_categorical(self, slot: str, row: Mapping[str, Any]) -> bool:
        if isinstance(row.get("categorical"), Mapping):
            return slot in row["categorical"]
        service = self.service_categorical.get(str(row.get("service")))
        return slot in service if service is not None else slot in self.categorical

    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        """-> {"state": {slot: value}, "updates": {slot: value, or None for a deleted slot}}: the previous state
        (the row's or input's ``previous_state``, else empty) with the updates applied."""
        out, row = outputs[0], example.row.values
        status = softmax(out["status"])
        words = len(example.words or [])
        tags, scores = decode_words(out["tags"], features[0], self.tag_labels, words)
        best: dict[str, tuple[float, str]] = {}
        for kind, start, end in bio_spans(tags):
            score = float(scores[start:end].mean())
            if score > best.get(kind, (-1.0, ""))[0]:
                best[kind] = (score, word_span(example, start, end)["text"])
        updates: dict[str, str | None] = {}
        for slot in self._slots_for(row):
            what = STATUS[int(np.argmax(status[self.slot_index[slot]]))]
            if what == "delete":
                updates[slot] = None
            elif what == DONTCARE:
                updates[slot] = DONTCARE
            elif what == "update" and self._is_categorical(slot, row):
                if slot in self.cat_index:  # a categorical slot training never saw has no value head
                    values = self.categorical[slot]
                    updates[slot] = values[int(np.argmax(out["values"][self.cat_index[slot]][: len(values)]))]
            elif what == "update" and slot in best:
                updates[slot] = best[slot][1]
        previous = as_state(row.get(self.params.previous) or {}, example.location, self.params.previous)
        return {"state": apply_updates(previous, updates), "updates": updates}

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        return state_right(prediction["state"], gold["state"])[0]

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        if not golds:
            return {}
        chained: dict[Any, dict[str, str]] = {}
        joint = slots_right = slots = restarts = 0
        for prediction, gold in zip(predictions, golds):
            dialogue = gold["dialogue"]
            if dialogue not in chained:
                restarts += bool(gold["previous"])
                chained[dialogue] = apply_updates(gold["previous"], {})
            state = apply_updates(chained[dialogue], prediction["updates"])
            chained[dialogue] = state
            all_right, right = state_right(state, gold["state"])
            joint += all_right
            slots_right += right
            slots += len(gold["state"])
        out = {"joint_goal_accuracy": joint / len(golds),
               "average_goal_accuracy": slots_right / slots if slots else 1.0}
        if restarts:
            out["chain_restarts"] = float(restarts)
        return out
