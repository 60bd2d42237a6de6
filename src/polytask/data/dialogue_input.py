"""The ``dialogue`` input spec: a user turn with the dialogue's history as a second segment.

The user turn is the first segment, so tasks that tag words tag the user turn only (words of the second segment
carry no word index). The second segment is the last ``history_turns`` earlier turns, **most recent first**, each
written ``"system: ..."`` or ``"user: ..."`` and joined with spaces; a pair longer than ``max_length`` is cut from its
longest segment's end, which is the oldest history. The first turn of a dialogue (or ``history_turns: 0``) has no
second segment. Words of the user turn are runs of letters and digits or single other characters
(:func:`polytask.data.sgd.dialogue_words`: "San Jose." is San, Jose, .), so slot values end where their words do.

An inference input is a mapping (kind ``dialogue``)::

    {"text": "I want to eat in San Jose.",                      # the user turn (required)
     "history": ["Find me a restaurant.", "Which city?"],       # earlier turns, oldest first (required, may be [])
     "previous_state": {"city": ["Oakland"]},                   # the state after the previous user turn (optional)
     "service": "Restaurants_1"}                                # the service (optional)

``history`` items are strings, read as alternating turns whose last one is the system's (the turn just before the
user's), or ``{"speaker": "user" | "system", "text": ...}`` objects. ``previous_state`` and ``service`` are read by
the ``dialogue_state`` task type (they reach it as the row values of the same names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from polytask.data.examples import Example, Feature, FeaturizeResult, first_subwords, token_arrays
from polytask.data.inputs import INPUTS, InputItem, InputSpec, input_kind, unsupported
from polytask.data.rows import Row
from polytask.errors import DataError

SPEAKERS = ("user", "system")
HISTORY = ('a list of earlier turns, oldest first: strings (alternating, the last one the system\'s) or '
           '{"speaker": "user" | "system", "text": str}')


def render_history(turns: Sequence[Mapping[str, Any]], count: int) -> str | None:
    """The last ``count`` non-empty turns, most recent first, as "speaker: text" joined by spaces; None if none."""
    kept = [t for t in turns if str(t["text"]).strip()][-count:] if count else []
    return " ".join(f"{t['speaker']}: {' '.join(str(t['text']).split())}" for t in reversed(kept)) or None


def check_history(value: Any, location: str, field: str = "history") -> list[dict[str, str]]:
    """A history as given (strings or speaker objects) -> [{"speaker", "text"}], oldest first."""
    if not isinstance(value, list):
        raise DataError("the history must be a list (empty for the first turn)", location=location, field=field,
                        value=value, allowed=HISTORY)
    out = []
    for i, turn in enumerate(value):
        if isinstance(turn, str):
            # strings alternate and the last one is the system's: counting back from the end gives the speaker
            out.append({"speaker": SPEAKERS[(len(value) - i) % 2], "text": turn})
        elif (isinstance(turn, Mapping) and turn.get("speaker") in SPEAKERS and isinstance(turn.get("text"), str)):
            out.append({"speaker": turn["speaker"], "text": turn["text"]})
        else:
            raise DataError("malformed history turn", location=location, field=f"{field}[{i}]", value=turn,
                            allowed=HISTORY)
    return out


def _user_turn(value: Any, location: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError("the user turn must be a non-empty string", location=location, field=field, value=value)
    return value


@INPUTS.register("dialogue")
@dataclass(frozen=True)
class DialogueInput(InputSpec):
    """A user turn (first segment, the one words are tagged in) and its history (second segment, newest first)."""

    type: ClassVar[str] = "dialogue"
    history_turns: int = 1  # earlier turns read; 1: the system's last utterance

    @property
    def kind(self) -> str:
        return "dialogue"

    def columns(self, text: str, text_pair: str | None) -> list[str]:
        return [text, "history"]

    def _example(self, row: Row, index: int, text: str, history: list[dict[str, str]]) -> Example:
        from polytask.data.sgd import dialogue_words

        words, spans = dialogue_words(text)
        return Example(index, row, text, render_history(history, self.history_turns), words, spans)

    def example(self, row: Row, index: int, text: str, text_pair: str | None, words: bool) -> Example:
        user = _user_turn(row.values.get(text), row.location, text)
        return self._example(row, index, user, check_history(row.values.get("history"), row.location))

    def example_from(self, item: InputItem, index: int, words: bool) -> Example:
        kind = input_kind(item, (self.kind,))
        if kind != self.kind or not isinstance(item, Mapping):
            raise unsupported(self, kind)
        location = f"input[{index}]"
        user = _user_turn(item.get("text"), location, "text")
        history = check_history(item.get("history"), location)
        values: dict[str, Any] = {"text": user, "history": history}
        for key in ("previous_state", "service"):
            if item.get(key) is not None:
                values[key] = item[key]
        return self._example(Row(values, location, "input", index + 1), index, user, history)

    def featurize(self, examples: Sequence[Example], tokenizer: Any, max_length: int,
                  words: bool) -> FeaturizeResult:
        """One feature per example: [CLS] user turn [SEP] history [SEP] (or the user turn alone), cut at
        ``max_length`` from the longest segment's end."""
        result = FeaturizeResult([])
        encodings: dict[int, Any] = {}
        for paired in (True, False):
            chosen = [i for i, e in enumerate(examples) if (e.pair is not None) == paired]
            if not chosen:
                continue
            texts = [examples[i].text for i in chosen]
            pairs = [examples[i].pair for i in chosen] if paired else None
            full = tokenizer(texts, pairs, truncation=False, return_attention_mask=False, verbose=False)
            cut = tokenizer(texts, pairs, truncation="longest_first", max_length=max_length,
                            return_attention_mask=False, verbose=False)
            for j, i in enumerate(chosen):
                result.truncated += len(full.encodings[j].ids) > max_length
                encodings[i] = cut.encodings[j]
            with_types = "token_type_ids" in cut
        for i, example in enumerate(examples):
            enc = encodings[i]
            ids, types = token_arrays(enc, with_types)
            word_index = first_subwords(enc, example.word_spans or []) if words else None
            if word_index is not None:
                result.untokenized_words += int((word_index < 0).sum())
            result.features.append(Feature(example.index, ids, types, word_index))
        return result

