"""Dialogue states as data, for the ``dialogue_state`` task (``polytask.tasks.dialogue_state``): a state read from
a row (``as_state``: {slot: [equivalent values]}), a turn's updates applied to the previous state (``apply_updates``)
and a predicted state compared with the gold one after case and white-space normalisation (``state_right``, what
joint and average goal accuracy count)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polytask.errors import DataError

STATE = "a mapping {slot: [value, ...]} (equivalent values) or {slot: value}"


def normalise(value: str) -> str:
    return " ".join(str(value).casefold().split())


def as_state(raw: Any, location: str, field: str) -> dict[str, list[str]]:
    """A state as given -> {slot: [values]}; a bare string value is a list of one."""
    if not isinstance(raw, Mapping):
        raise DataError("a dialogue state must be a mapping", location=location, field=field, value=raw,
                        allowed=STATE)
    out = {}
    for slot, value in raw.items():
        values = [value] if isinstance(value, str) else value
        if not isinstance(slot, str) or not isinstance(values, list) or not values \
                or not all(isinstance(v, str) for v in values):
            raise DataError("malformed slot value", location=location, field=f"{field}.{slot}", value=value,
                            allowed=STATE)
        out[slot] = list(values)
    return out


def apply_updates(previous: Mapping[str, Any], updates: Mapping[str, str | None]) -> dict[str, str]:
    """The previous state ({slot: value or [values]}: the first is kept) with ``updates`` (None: delete)."""
    state = {s: (v if isinstance(v, str) else v[0]) for s, v in previous.items()}
    for slot, value in updates.items():
        if value is None:
            state.pop(slot, None)
        else:
            state[slot] = value
    return state


def state_right(predicted: Mapping[str, str], gold: Mapping[str, list[str]]) -> tuple[bool, int]:
    """(every slot right and no extra slot, number of gold slots whose value is right)."""
    right = sum(s in predicted and normalise(predicted[s]) in {normalise(v) for v in values}
                for s, values in gold.items())
    return right == len(gold) and set(predicted) <= set(gold), right
