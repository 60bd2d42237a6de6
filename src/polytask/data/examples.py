"""The two units of the data path: an *example* (one input as a user gave it) and a *feature* (one encoder input).

An example is a row of a data file (or one input of a Pipeline call) reduced to what the encoder reads: a text,
optionally a second text, its white-space words, and for entity-pair inputs the character spans of the two
entities. A feature is one tokenised window of an example: most examples give one feature, a long QA context gives
several (``Feature.example`` points back). Tasks turn features into their own fields (see ``polytask.tasks.base``).

Token arrays are numpy (int32 ids, int8 type ids): a million short rows then cost a few hundred MB, not gigabytes
of Python integers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polytask.data.rows import Row

WORD = re.compile(r"\S+")
Span = tuple[int, int]


@dataclass(eq=False)
class Example:
    """One input. ``words``/``word_spans`` (white-space words and their [start, end) character spans in ``text``)
    are filled when a task of the input group tags words; ``entities`` holds the (e1, e2) character spans of an
    entity-pair input (relation classification)."""

    index: int
    row: Row
    text: str
    pair: str | None = None
    words: list[str] | None = None
    word_spans: list[Span] | None = None
    entities: tuple[Span, Span] | None = None

    @property
    def location(self) -> str:
        return self.row.location


@dataclass(eq=False)
class Feature:
    """One encoder input. ``input_ids``/``type_ids`` [T]; ``word_index`` [W]: token index of each word's first
    sub-word (-1: the word got no token, e.g. truncated); ``offsets`` [T, 2]: character span of each token in the
    text it came from and ``sequence_ids`` [T]: 0 first text, 1 second text, -1 special token (kept for inputs whose
    tasks map tokens back to characters, e.g. QA windows); ``markers`` [4]: token positions of the entity markers."""

    example: int
    input_ids: np.ndarray
    type_ids: np.ndarray | None = None
    word_index: np.ndarray | None = None
    offsets: np.ndarray | None = None
    sequence_ids: np.ndarray | None = None
    markers: np.ndarray | None = None
    window: int = 0  # position of this window among its example's features

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class FeaturizeResult:
    """Features of a list of examples, in example order, plus what a user should be warned about."""

    features: list[Feature]
    truncated: int = 0  # examples cut at max_length
    untokenized_words: int = 0  # words that got no token (truncated away, or characters the tokenizer drops)
    notes: list[str] = field(default_factory=list)


def split_words(text: str) -> tuple[list[str], list[Span]]:
    """White-space words of ``text`` and their character spans (the text itself is kept as given)."""
    matches = list(WORD.finditer(text))
    return [m.group() for m in matches], [m.span() for m in matches]


def join_words(words: list[str]) -> tuple[str, list[Span]]:
    """Words joined with single spaces, and each word's [start, end) span in the joined text."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


SENTENCEPIECE_SPACE = "\u2581"  # SentencePiece's word-start marker, a token of its own before many words


def first_subwords(encoding: Any, word_spans: list[Span], sequence: int = 0) -> np.ndarray:
    """Token index of each word's first sub-word in ``encoding`` (a tokenizers Encoding), -1 for words without a
    token. A token belongs to the word its first character falls in; special tokens and tokens of the other text of
    a pair carry no word. A lone SentencePiece word-start marker does not count as the first sub-word when the word
    has another token."""
    from bisect import bisect_right

    starts = [s for s, _ in word_spans]
    index = np.full(len(starts), -1, dtype=np.int32)
    bare = np.zeros(len(starts), dtype=bool)  # index[w] is a bare word-start marker
    for t, ((s, e), seq, piece) in enumerate(zip(encoding.offsets, encoding.sequence_ids, encoding.tokens)):
        if e <= s or seq != sequence:
            continue
        w = bisect_right(starts, s) - 1
        # SentencePiece (XLM-R) often splits a word into a lone "▁" and the rest (most CJK characters): the lone
        # marker is the same token for every such word, so the word is read from its next sub-word instead
        if w >= 0 and (index[w] == -1 or bare[w]):
            if index[w] == -1 or piece != SENTENCEPIECE_SPACE:
                index[w], bare[w] = t, piece == SENTENCEPIECE_SPACE
    return index


def token_arrays(encoding: Any, with_types: bool) -> tuple[np.ndarray, np.ndarray | None]:
    ids = np.asarray(encoding.ids, dtype=np.int32)
    types = np.asarray(encoding.type_ids, dtype=np.int8) if with_types else None
    return ids, types


def char_arrays(encoding: Any) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.asarray(encoding.offsets, dtype=np.int32).reshape(-1, 2)
    seq = np.asarray([-1 if s is None else s for s in encoding.sequence_ids], dtype=np.int8)
    return offsets, seq
