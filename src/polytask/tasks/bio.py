"""BIO tags, for the tasks that tag words (``token_classification``, and the entity and slot tags of
``relation_extraction`` and ``dialogue_state``): tags of another scheme read into BIO (``to_bio``), tags checked and
repaired, entity spans found in them (``bio_spans``), and a feature's per-word logits decoded into tags and spans with
their text (``decode_words``, ``word_span``). ``polytask.tasks.token_classification`` re-exports these names."""

from __future__ import annotations

from typing import Any

import numpy as np

from polytask.data.examples import Example, Feature

OUTSIDE = "O"

# scheme -> (its prefix -> the BIO prefix); O is O in every scheme
TO_BIO: dict[str, dict[str, str]] = {"bio": {"B": "B", "I": "I"}, "bioes": {"B": "B", "I": "I", "E": "I", "S": "B"},
                                     "bmes": {"B": "B", "M": "I", "E": "I", "S": "B"},
                                     "bilou": {"B": "B", "I": "I", "L": "I", "U": "B"}}


def to_bio(tag: str, scheme: str) -> str | None:
    """One tag of ``scheme`` -> its BIO tag; None when it is not a tag of that scheme."""
    if tag == OUTSIDE:
        return tag
    prefix, dash, kind = tag.partition("-")
    bio = TO_BIO[scheme].get(prefix)
    return f"{bio}-{kind}" if dash and kind and bio else None


def check_tag(tag: str) -> bool:
    return tag == OUTSIDE or (len(tag) > 2 and tag[:2] in ("B-", "I-"))


def bio_spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """BIO tags -> [(type, first word, last word + 1)]. An I- tag that does not continue a span of its type starts a
    new one (the conlleval convention, which seqeval's default mode also follows)."""
    spans: list[tuple[str, int, int]] = []
    current: list[Any] | None = None
    for i, tag in enumerate(tags):
        kind = tag[2:] if tag != OUTSIDE else None
        if current is not None and tag.startswith("I-") and current[0] == kind:
            current[2] = i + 1
            continue
        if current is not None:
            spans.append((current[0], current[1], current[2]))
            current = None
        if kind is not None:
            current = [kind, i, i + 1]
    if current is not None:
        spans.append((current[0], current[1], current[2]))
    return spans


def repair_bio(tags: list[str]) -> tuple[list[str], list[int]]:
    """An ``I-X`` that does not continue an entity of type X (after ``O``, at the start, after another type) begins
    one: it becomes ``B-X``, the reading of conlleval and seqeval. -> (tags, positions changed)."""
    out, changed, previous = list(tags), [], OUTSIDE
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            out[i] = "B-" + tag[2:]
            changed.append(i)
        previous = out[i]
    return out, changed


def bio_tag_set(types: set[str]) -> list[str]:
    """O first, then each entity type's B- and I- tags, grouped by type (a stable, readable order)."""
    return [OUTSIDE] + [f"{p}-{t}" for t in sorted(types) for p in "BI"]


def word_span(example: Example, start: int, end: int) -> dict[str, Any]:
    """Words [start, end) of ``example`` as {start_word, end_word, text, start, end} (character offsets into the
    example's text, which is the text as given: predicted spans can be cut out of it)."""
    span: dict[str, Any] = {"start_word": start, "end_word": end}
    words = example.words or []
    if example.word_spans:
        span["start"], span["end"] = example.word_spans[start][0], example.word_spans[end - 1][1]
        span["text"] = example.text[span["start"] : span["end"]]
    else:
        span["text"] = " ".join(words[start:end])
    return span


def decode_words(logits: np.ndarray, feature: Feature, labels: list[str], num_words: int
                 ) -> tuple[list[str], np.ndarray]:
    """Per-word tag (argmax) and its probability for the first ``num_words`` rows of ``logits`` [W, C]; words
    without a token are tagged O with probability 1."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    best, score = probs.argmax(-1)[:num_words], probs.max(-1)[:num_words]
    has_token = feature.word_index[:num_words] >= 0 if feature.word_index is not None else np.ones(num_words, bool)
    tags = [labels[b] if has else OUTSIDE for b, has in zip(best.tolist(), has_token.tolist())]
    return tags, np.where(has_token, score, 1.0)
