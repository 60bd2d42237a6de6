"""The built-in input specs: ``text`` (a text or pair), ``windows`` (QA windows), ``entities`` (marked entity pairs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from polytask.data.examples import (Example, Feature, FeaturizeResult, char_arrays, first_subwords, token_arrays)
from polytask.data.inputs import (INPUTS, InputItem, InputSpec, check_span, input_kind, item_texts, parse_markers,
                                  text_example, unsupported)
from polytask.data.rows import Row
from polytask.errors import DataError


def _inference_row(index: int) -> Row:
    return Row({}, f"input[{index}]", "input", index + 1)


def _check_kind(spec: InputSpec, item: InputItem) -> None:
    kind = input_kind(item, (spec.kind,))
    if kind != spec.kind:
        raise unsupported(spec, kind)


@INPUTS.register("text")
@dataclass(frozen=True)
class TextInput(InputSpec):
    """A text, or a text pair: one feature per example, cut at max_length (counted in a warning)."""

    type: ClassVar[str] = "text"
    pair: bool = False

    @property
    def kind(self) -> str:
        return "pair" if self.pair else "text"

    def columns(self, text: str, text_pair: str | None) -> list[str]:
        return [text] + ([text_pair] if self.pair and text_pair else [])

    def example(self, row: Row, index: int, text: str, text_pair: str | None, words: bool) -> Example:
        pair_field = text_pair if self.pair else None
        pair = row.values.get(pair_field) if pair_field else None
        return text_example(row, index, row.values.get(text), text, pair, pair_field, words)

    def example_from(self, item: InputItem, index: int, words: bool) -> Example:
        _check_kind(self, item)
        first, second = item_texts(item)
        return text_example(_inference_row(index), index, first, "text", second, "text_pair" if self.pair else None,
                            words)

    def featurize(self, examples: Sequence[Example], tokenizer: Any, max_length: int,
                  words: bool) -> FeaturizeResult:
        if not examples:
            return FeaturizeResult([])
        texts = [e.text for e in examples]
        pairs = [e.pair for e in examples] if self.pair else None
        full = tokenizer(texts, pairs, truncation=False, return_attention_mask=False, verbose=False)
        encodings = list(full.encodings)
        long_rows = [i for i, enc in enumerate(encodings) if len(enc.ids) > max_length]
        if long_rows:  # tokenise again with truncation, only the long ones (the common case has none)
            cut = tokenizer([texts[i] for i in long_rows], [pairs[i] for i in long_rows] if pairs else None,
                            truncation=True, max_length=max_length, return_attention_mask=False)
            for j, i in enumerate(long_rows):
                encodings[i] = cut.encodings[j]
        with_types = "token_type_ids" in full
        result = FeaturizeResult([], truncated=len(long_rows))
        for example, enc in zip(examples, encodings):
            ids, types = token_arrays(enc, with_types)
            word_index = None
            if words:
                word_index = first_subwords(enc, example.word_spans or [])
                result.untokenized_words += int((word_index < 0).sum())
            result.features.append(Feature(example.index, ids, types, word_index))
        return result


@INPUTS.register("windows")
@dataclass(frozen=True)
class WindowInput(InputSpec):
    """A (question, context) pair; a long context is split into windows of ``max_length`` tokens that overlap by
    ``stride`` tokens, each holding the whole question (the BERT SQuAD recipe)."""

    type: ClassVar[str] = "windows"
    max_length: int | None = None  # None: the encoder's max_length
    stride: int | None = 128  # overlap between windows; None: a context that does not fit is an error
    max_question: int | None = 64  # longer questions are cut to their first tokens (BERT's max_query_length)

    @property
    def kind(self) -> str:
        return "pair"

    def columns(self, text: str, text_pair: str | None) -> list[str]:
        return [text] + ([text_pair] if text_pair else [])

    def example(self, row: Row, index: int, text: str, text_pair: str | None, words: bool) -> Example:
        return text_example(row, index, row.values.get(text), text, row.values.get(text_pair or ""),
                            text_pair or "text_pair", False)

    def example_from(self, item: InputItem, index: int, words: bool) -> Example:
        _check_kind(self, item)
        question, context = item_texts(item)
        return text_example(_inference_row(index), index, question, "question", context, "context", False)

    def featurize(self, examples: Sequence[Example], tokenizer: Any, max_length: int,
                  words: bool) -> FeaturizeResult:
        if not examples:
            return FeaturizeResult([])
        limit = self.max_length or max_length
        # questions with leading white space exist in SQuAD; it carries nothing and offsets are never read from it
        questions = [e.text.lstrip() for e in examples]
        contexts = [e.pair or "" for e in examples]
        cut = self._cut_questions(questions, tokenizer)
        self._check_questions(examples, questions, tokenizer, limit)
        if self.stride is None:
            out = tokenizer(questions, contexts, truncation=False, return_attention_mask=False, verbose=False)
            for example, enc in zip(examples, out.encodings):
                if len(enc.ids) > limit:
                    raise DataError(f"question + context take {len(enc.ids)} tokens, more than one window of "
                                    f"max_length {limit}, and doc_stride is null (no windows)",
                                    location=example.location, allowed="a doc_stride (e.g. 128) to split long "
                                    "contexts into windows, or a larger max_length")
            mapping = list(range(len(examples)))
        else:
            out = tokenizer(questions, contexts, truncation="only_second", max_length=limit, stride=self.stride,
                            return_overflowing_tokens=True, return_attention_mask=False)
            mapping = list(out["overflow_to_sample_mapping"])
        with_types = "token_type_ids" in out
        result = FeaturizeResult([], truncated=cut)
        if cut:
            result.notes.append(f"{cut} questions longer than {self.max_question} tokens were cut to that length")
        seen: dict[int, int] = {}
        for enc, i in zip(out.encodings, mapping):
            ids, types = token_arrays(enc, with_types)
            offsets, seq = char_arrays(enc)
            window = seen.get(i, 0)
            seen[i] = window + 1
            result.features.append(Feature(examples[i].index, ids, types, None, offsets, seq, window=window))
        extra = len(result.features) - len(examples)
        if extra:
            result.notes.append(f"{extra} extra windows for contexts longer than {limit} tokens")
        return result

    def _cut_questions(self, questions: list[str], tokenizer: Any) -> int:
        """Cut (in place) every question longer than ``max_question`` tokens after its last kept token; -> count."""
        if self.max_question is None:
            return 0
        encoded = tokenizer(questions, add_special_tokens=False, return_attention_mask=False)
        cut = 0
        for i, enc in enumerate(encoded.encodings):
            if len(enc.ids) > self.max_question:
                questions[i] = questions[i][: enc.offsets[self.max_question - 1][1]]
                cut += 1
        return cut

    def _check_questions(self, examples: Sequence[Example], questions: list[str], tokenizer: Any,
                         limit: int) -> None:
        special = tokenizer.num_special_tokens_to_add(pair=True)
        lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
        for example, n in zip(examples, lengths):
            room = limit - n - special  # context tokens per window
            if room >= 1 and (self.stride is None or self.stride < room):
                continue
            left = "no room for the context" if room < 1 else f"{room} context tokens, not more than doc_stride"
            need = n + special + (self.stride or 0) + 1
            raise DataError(f"the question takes {n} tokens: a window of max_length {limit} leaves {left}",
                            location=example.location, value=example.text[:80],
                            allowed=f"a max_length of at least {need}, a smaller doc_stride, or max_question_length "
                                    "to cut long questions")


MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")


@INPUTS.register("entities")
@dataclass(frozen=True)
class EntityPairInput(InputSpec):
    """A text with two entity spans, rewritten as "... [E1] x [/E1] ... [E2] y [/E2] ..." with four marker tokens
    added to the tokenizer (Baldini Soares et al. 2019; Wu & He 2019)."""

    type: ClassVar[str] = "entities"
    head: str = "e1"  # dataset columns holding the [start, end] character spans of the two entities
    tail: str = "e2"

    @property
    def kind(self) -> str:
        return "entities"

    def columns(self, text: str, text_pair: str | None) -> list[str]:
        return [text, self.head, self.tail]

    def special_tokens(self) -> list[str]:
        return list(MARKERS)

    def example(self, row: Row, index: int, text: str, text_pair: str | None, words: bool) -> Example:
        value = row.values.get(text)
        example = text_example(row, index, value, text, None, None, False)
        spans = (check_span(row.values.get(self.head), example.text, row, self.head),
                 check_span(row.values.get(self.tail), example.text, row, self.tail))
        return self._with_spans(example, spans, f"{self.head}, {self.tail}")

    def example_from(self, item: InputItem, index: int, words: bool) -> Example:
        _check_kind(self, item)
        row = _inference_row(index)
        if isinstance(item, str):
            try:
                text, e1, e2 = parse_markers(item)
            except ValueError as exc:
                allowed = "one <e1>..</e1> and one <e2>..</e2> around disjoint, non-empty spans"
                raise DataError(str(exc), location=row.location, field="text", value=item, allowed=allowed) from None
            example = text_example(row, index, text, "text", None, None, False)
            return self._with_spans(example, (e1, e2), "text")
        mapping: Mapping[str, Any] = item  # type: ignore[assignment]
        example = text_example(row, index, mapping.get("text"), "text", None, None, False)
        spans = (check_span(mapping.get("e1"), example.text, row, "e1"),
                 check_span(mapping.get("e2"), example.text, row, "e2"))
        return self._with_spans(example, spans, "e1, e2")

    @staticmethod
    def _with_spans(example: Example, spans: tuple[tuple[int, int], tuple[int, int]], field: str) -> Example:
        (s1, e1), (s2, e2) = spans
        if s1 < e2 and s2 < e1:
            raise DataError("the two entity spans overlap", location=example.location, field=field,
                            value=[list(spans[0]), list(spans[1])], allowed="disjoint spans")
        example.entities = spans
        return example

    def featurize(self, examples: Sequence[Example], tokenizer: Any, max_length: int,
                  words: bool) -> FeaturizeResult:
        if not examples:
            return FeaturizeResult([])
        ids = tokenizer.convert_tokens_to_ids(list(MARKERS))
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
            raise DataError(f"the tokenizer lacks the entity marker tokens {', '.join(MARKERS)}: add them with "
                            "tokenizer.add_tokens(..., special_tokens=True) and resize the embeddings (polytask's "
                            "trainer does this for tasks that read entity pairs)", location=examples[0].location)
        marked = [_marked(e) for e in examples]
        out = tokenizer(marked, truncation=True, max_length=max_length, return_attention_mask=False,
                        return_overflowing_tokens=False, verbose=False)
        with_types = "token_type_ids" in out
        result = FeaturizeResult([])
        for example, enc in zip(examples, out.encodings):
            token_ids, types = token_arrays(enc, with_types)
            where = [np.flatnonzero(token_ids == m) for m in ids]
            if any(len(w) != 1 for w in where):
                raise DataError(f"an entity lies beyond max_length ({max_length} tokens): its marker was cut off",
                                location=example.location, allowed="a larger encoder.max_length")
            result.features.append(Feature(example.index, token_ids, types, markers=np.array(
                [int(w[0]) for w in where], dtype=np.int32)))
        return result


def _marked(example: Example) -> str:
    assert example.entities is not None
    (s1, e1), (s2, e2) = example.entities
    # at one position a closing marker goes before an opening one (adjacent entities: "[E1]x[/E1][E2]y[/E2]")
    cuts = sorted([(s1, 1, MARKERS[0]), (e1, 0, MARKERS[1]), (s2, 1, MARKERS[2]), (e2, 0, MARKERS[3])])
    out, cursor = [], 0
    for pos, _, marker in cuts:
        out += [example.text[cursor:pos], marker]
        cursor = pos
    out.append(example.text[cursor:])
    return "".join(out)


from polytask.data import dialogue_input  # noqa: E402,F401  (registers the ``dialogue`` spec)
