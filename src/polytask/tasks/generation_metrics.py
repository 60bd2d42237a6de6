"""Metrics of generated text against one or more references, on detokenised text: corpus BLEU and chrF
(``sacrebleu``: Post 2018; BLEU: Papineni et al. 2002, chrF: Popović 2015) and ROUGE-1/2/L F-measure
(``rouge-score``, Google's reimplementation of Lin 2004, Porter stemming on), the mean over examples of the best
score against any reference. All are fractions in [0, 1] like every other polytask metric (BLEU 0.352 is the
35.2 papers print).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL")
INSTALL = "pip install 'polytask[generation]' (sacrebleu and rouge-score)"


def _check(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} generated texts but {len(references)} reference lists")
    if any(not refs for refs in references):
        raise ValueError("every generated text needs at least one reference")


def sacrebleu_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                     lowercase: bool = False) -> dict[str, float]:
    """Corpus BLEU (13a tokenisation, sacrebleu's default) and chrF; examples may have different numbers of
    references (the missing ones are None streams, which sacrebleu skips)."""
    try:
        import sacrebleu
    except ImportError as exc:
        raise ImportError(INSTALL) from exc
    _check(hypotheses, references)
    width = max((len(r) for r in references), default=0)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(width)]
    bleu = sacrebleu.corpus_bleu(list(hypotheses), streams, lowercase=lowercase)  # type: ignore[arg-type]
    if lowercase:  # chrF has no lowercase switch: compare lower-cased text
        hypotheses = [h.lower() for h in hypotheses]
        streams = [[r.lower() if r is not None else None for r in s] for s in streams]
    chrf = sacrebleu.corpus_chrf(list(hypotheses), streams)  # type: ignore[arg-type]
    return {"bleu": bleu.score / 100, "chrf": chrf.score / 100}


def rouge_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure, each example scored against its best reference (rouge-score lower-cases and
    keeps only letters and digits, so case never matters here)."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:
        raise ImportError(INSTALL) from exc
    _check(hypotheses, references)
    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs "Using default tokenizer." per scorer
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hypothesis, refs in zip(hypotheses, references):
        scores = scorer.score_multi(list(refs), hypothesis)
        for key in totals:
            totals[key] += scores[key].fmeasure
    count = max(len(hypotheses), 1)
    return {key: value / count for key, value in totals.items()}


def generation_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]],
                      lowercase: bool = False) -> dict[str, float]:
    """Every metric of :data:`METRICS` for the corpus."""
    return {**sacrebleu_scores(hypotheses, references, lowercase), **rouge_scores(hypotheses, references)}
