"""Exact match and F1 of extractive QA, as defined by the official SQuAD v1.1 evaluation (Rajpurkar, Zhang, Lopyrev &
Liang 2016, "SQuAD: 100,000+ Questions for Machine Comprehension of Text").

Before comparing, a prediction and each reference answer are normalised: lower-cased, every ASCII punctuation
character (``string.punctuation``) removed, the articles "a", "an" and "the" removed as whole words, and runs of white
space collapsed to one space (leading/trailing space dropped). F1 counts the normalised white-space tokens the two
share (with multiplicity). A question's score is the MAX over its reference answers; a set's score is the mean over
questions. Scores here are fractions in [0, 1] (the official script prints percentages).

Text without white space between words (Chinese, Japanese) would make F1 all-or-nothing under those rules, so a
question whose prediction or references contain a CJK character is scored by the **mixed segmentation** of the MLQA
evaluation (Lewis et al. 2020, "MLQA: Evaluating Cross-lingual Extractive Question Answering"): every CJK character
is one token, other text splits on white space, and all Unicode punctuation (categories P*) is removed, not only
ASCII's. Questions without CJK characters are scored exactly as the official v1.1 script scores them.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop the whole words a/an/the, collapse white space (in that order).

    Punctuation goes before articles, so "the-end" becomes "theend" (kept) and "(the)" becomes "" (dropped).
    """
    lowered = s.lower()
    without_punctuation = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    without_articles = _ARTICLES.sub(" ", without_punctuation)
    return " ".join(without_articles.split())


# CJK ideographs (unified, extension A, compatibility), kana and Hangul syllables: scripts written without spaces
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _has_cjk(texts: list[str]) -> bool:
    return any(_CJK.search(t) for t in texts)


def _mixed_tokens(s: str) -> list[str]:
    """MLQA's mixed segmentation of a normalised answer: each CJK character a token, other runs split on spaces."""
    lowered = s.lower()
    kept = "".join(" " if unicodedata.category(ch).startswith("P") or ch in _PUNCTUATION else ch for ch in lowered)
    kept = _ARTICLES.sub(" ", kept)
    return _CJK.sub(lambda m: f" {m.group(0)} ", kept).split()


def _check_references(references: list[str]) -> None:
    # the maximum over no reference is undefined; 0 would silently count an unlabelled question as wrong
    if not references:
        raise ValueError("a question needs at least one reference answer")


def exact_match(prediction: str, references: list[str], cjk: bool = True) -> float:
    """1.0 if the normalised prediction equals some normalised reference, else 0.0 (``cjk=False``: the v1.1 rules
    even for CJK text, as XQuAD's published tables score every language)."""
    _check_references(references)
    if cjk and _has_cjk([prediction, *references]):
        return float(any(_mixed_tokens(prediction) == _mixed_tokens(ref) for ref in references))
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(ref) for ref in references))


def _token_f1(predicted: list[str], reference: list[str]) -> float:
    shared = sum((Counter(predicted) & Counter(reference)).values())
    # As in the official v1.1 script: no shared token means F1 = 0, even when BOTH normalise to nothing (e.g. the
    # prediction "the" against the reference "a"), although exact match scores that case 1.
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(reference)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, references: list[str], cjk: bool = True) -> float:
    """Token-level F1 between the normalised prediction and each reference; the best one (``cjk``: as in
    :func:`exact_match`)."""
    _check_references(references)
    if cjk and _has_cjk([prediction, *references]):
        tokens = _mixed_tokens(prediction)
        return max(_token_f1(tokens, _mixed_tokens(ref)) for ref in references)
    predicted = normalize_answer(prediction).split()
    return max(_token_f1(predicted, normalize_answer(ref).split()) for ref in references)


def squad_scores(predictions: list[str], references: list[list[str]], cjk: bool = True) -> dict[str, float]:
    """Mean exact match and F1 over questions (fractions in [0, 1]); ``references[i]`` are question i's answers
    (``cjk=False``: SQuAD v1.1's white-space rules for every question)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} questions with references")
    if not predictions:
        raise ValueError("no questions to score")
    count = len(predictions)
    return {
        "exact_match": sum(exact_match(p, r, cjk) for p, r in zip(predictions, references)) / count,
        "f1": sum(f1(p, r, cjk) for p, r in zip(predictions, references)) / count,
    }
