"""Input specs: how the rows of a dataset (or the inputs of a Pipeline call) become encoder features.

Every task declares the input it reads as an :class:`InputSpec` (``Task.input_spec``). Tasks of one dataset whose
specs are equal form one *input group*: the rows are featurised once for the group and ONE encoder pass per batch
serves all of its tasks (SNIPS intent + slots). Specs are small frozen dataclasses, saved in the checkpoint's
config.json, so inference featurises exactly as training did.

Built-in specs (``INPUTS``):

- ``text``: a text, or a text pair; cut at ``max_length`` (and counted). Word alignment when a task tags words.
- ``windows``: a (question, context) pair split into overlapping windows of the context (extractive QA).
- ``entities``: a text with two entity spans, rewritten with entity-marker tokens around them (relation
  classification, R-BERT style).
- ``dialogue``: a user turn with the dialogue's history (``polytask.data.dialogue_input``).

A spec's ``kind`` says what an inference input looks like: ``text`` (a string), ``pair`` (two strings),
``entities`` (a text plus two character spans, or a string with inline ``<e1>..</e1>`` / ``<e2>..</e2>`` markers) or
``dialogue`` (``{"text", "history", ...}``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any, ClassVar, Union

from polytask.data.examples import Example, FeaturizeResult, Span, join_words, split_words
from polytask.data.rows import Row
from polytask.errors import DataError, PolytaskError
from polytask.registry import Registry

InputItem = Union[str, tuple[str, str], Mapping[str, Any]]
KINDS = ("text", "pair", "entities", "dialogue")


class InputSpec(ABC):
    """How examples become features. Subclasses are frozen dataclasses registered in ``INPUTS``."""

    type: ClassVar[str] = ""

    @property
    @abstractmethod
    def kind(self) -> str:
        """``text``, ``pair`` or ``entities``: the shape of an inference input."""

    @abstractmethod
    def columns(self, text: str, text_pair: str | None) -> list[str]:
        """Dataset columns the rows must have (``text``/``text_pair``: the dataset's input columns)."""

    @abstractmethod
    def example(self, row: Row, index: int, text: str, text_pair: str | None, words: bool) -> Example:
        """A row of a data file -> an Example, raising DataError (naming the row) on a bad input value."""

    @abstractmethod
    def example_from(self, item: InputItem, index: int, words: bool) -> Example:
        """An inference input (see ``input_kind``) -> an Example, raising DataError on a bad input."""

    @abstractmethod
    def featurize(self, examples: Sequence[Example], tokenizer: Any, max_length: int,
                  words: bool) -> FeaturizeResult:
        """Tokenise ``examples`` (1 -> N features each); ``words``: also map words to their first sub-word."""

    def special_tokens(self) -> list[str]:
        """Tokens this input adds to the tokenizer (the encoder's embeddings are resized for them)."""
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **asdict(self)}  # type: ignore[call-overload]


INPUTS: Registry[type[InputSpec]] = Registry("input spec")


def spec_from_dict(data: Mapping[str, Any]) -> InputSpec:
    """Inverse of ``InputSpec.to_dict`` (checkpoint config.json)."""
    from polytask.data import input_specs  # noqa: F401  (registers the built-in specs)

    data = dict(data)
    cls = INPUTS.get(str(data.pop("type")))
    return cls(**data)


# -- inference inputs -------------------------------------------------------------------------------------------------
def input_kind(item: Any, kinds: Sequence[str] = KINDS) -> str:
    """The kind of an inference input: a string is ``text`` (or ``entities`` when it carries the four entity markers
    and some task reads entity pairs), two strings are a ``pair``, a mapping says what it is by its keys."""
    if isinstance(item, str):
        if "entities" in kinds and has_markers(item):
            return "entities"
        return "text"
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return "pair"
    if isinstance(item, Mapping):
        keys = set(item)
        if {"e1", "e2"} <= keys:
            return "entities"
        if {"text", "history"} <= keys:
            return "dialogue"
        if {"question", "context"} <= keys or {"text", "text_pair"} <= keys:
            return "pair"
        if "text" in keys:
            return "text"
    raise DataError("expected a text, a [text, text_pair] pair, {text, text_pair}, {question, context}, "
                    "{text, e1: [start, end], e2: [start, end]} or {text, history: [...]}", location="input",
                    value=item)


def item_texts(item: InputItem) -> tuple[str, str | None]:
    """(text, text_pair) of a text or pair input."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, Mapping):
        if "question" in item:
            return item["question"], item["context"]
        return item["text"], item.get("text_pair")
    return item[0], item[1]


def text_example(row: Row, index: int, value: Any, field: str, pair: Any, pair_field: str | None,
                 words: bool) -> Example:
    """A text (or list of words) input with an optional second text, validated; words filled on request."""
    if isinstance(value, list) and all(isinstance(w, str) for w in value):
        if not value or any(not w or any(c.isspace() for c in w) for w in value):
            raise DataError("empty input, or a word that is empty or contains white space", location=row.location,
                            field=field, value=value)
        text, spans = join_words(value)
        word_list: list[str] | None = list(value)
    elif isinstance(value, str):
        if not value.strip():
            raise DataError("empty input text", location=row.location, field=field, value=value)
        text = value
        word_list, spans = split_words(text) if words else (None, None)  # type: ignore[assignment]
    else:
        raise DataError("the input must be a string or a list of words", location=row.location, field=field,
                        value=value)
    second = None
    if pair_field:
        if not isinstance(pair, str) or not pair.strip():
            raise DataError("the second text of a pair must be a non-empty string", location=row.location,
                            field=pair_field, value=pair)
        second = pair
    return Example(index, row, text, second, word_list if words else None, spans if words else None)


# -- entity markers ---------------------------------------------------------------------------------------------------
INLINE = ("<e1>", "</e1>", "<e2>", "</e2>")


def has_markers(text: str) -> bool:
    return all(text.count(m) == 1 for m in INLINE)


def parse_markers(text: str) -> tuple[str, Span, Span]:
    """``"the <e1>cat</e1> ate the <e2>fish</e2>"`` -> (text without markers, e1 span, e2 span); character spans
    [start, end) in the returned text. Raises ValueError saying what is wrong with the markers."""
    for m in INLINE:
        if text.count(m) != 1:
            raise ValueError(f"expected exactly one {m} marker, found {text.count(m)}")
    positions = {m: text.index(m) for m in INLINE}
    for name in ("e1", "e2"):
        if positions[f"</{name}>"] < positions[f"<{name}>"]:
            raise ValueError(f"</{name}> comes before <{name}>")
    order = sorted(INLINE, key=positions.__getitem__)
    first, second = order[0][1:3], order[2][1:3]
    if order != [f"<{first}>", f"</{first}>", f"<{second}>", f"</{second}>"]:
        raise ValueError("entity markers overlap or nest: <e1>..</e1> and <e2>..</e2> must be disjoint")
    clean: list[str] = []
    spans: dict[str, list[int]] = {}  # "e1"/"e2" -> [start, end] in the clean text
    pos = cursor = 0
    for m in order:
        at = positions[m]
        clean.append(text[cursor:at])
        pos += at - cursor
        cursor = at + len(m)
        spans.setdefault(m.strip("</>"), []).append(pos)
    clean.append(text[cursor:])
    e1, e2 = (spans["e1"][0], spans["e1"][1]), (spans["e2"][0], spans["e2"][1])
    for name, (s, e) in (("e1", e1), ("e2", e2)):
        if e <= s:
            raise ValueError(f"entity {name} is empty")
    return "".join(clean), e1, e2


def check_span(value: Any, text: str, row: Row, field: str) -> Span:
    """A [start, end] (or {start, end}) character span inside ``text``, non-empty."""
    if isinstance(value, Mapping):
        value = [value.get("start"), value.get("end")]
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    if not ok:
        raise DataError("expected a character span [start, end]", location=row.location, field=field, value=value,
                        allowed="[start, end] with 0 <= start < end <= length of the text")
    start, end = int(value[0]), int(value[1])
    if not 0 <= start < end <= len(text):
        raise DataError(f"entity span outside the text (the text has {len(text)} characters)",
                        location=row.location, field=field, value=value,
                        allowed=f"[start, end] with 0 <= start < end <= {len(text)}")
    if not text[start:end].strip():
        raise DataError("entity span covers only white space", location=row.location, field=field, value=value)
    return start, end


def unsupported(spec: InputSpec, kind: str) -> PolytaskError:
    return PolytaskError(f"input spec {spec.type!r} reads {spec.kind} inputs, not {kind}")

