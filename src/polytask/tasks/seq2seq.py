"""``seq2seq``: text generation (translation, summarisation) by a Transformer decoder that cross-attends the shared
encoder's token vectors, warm-started from the encoder's own weights (BERT2BERT; Rothe et al. 2020; see
``polytask.tasks.decoder``).

The input is the dataset's text (or text pair), read by the one shared encoder pass like every other task of the
batch. The target is the ``label`` column: a string, or a list of reference strings (the first one trains; all of
them score); ``references`` names more columns of reference texts (DialogSum's test has three summaries). The
target is tokenised with the model's own tokenizer: [CLS] starts it and [SEP] ends it (the tokenizer's bos/eos
where it has no [CLS]/[SEP]), cut at ``max_target_length`` tokens (counted in a log line). Training is
teacher-forced token cross-entropy (``label_smoothing``: Szegedy et al. 2016). At inference the head generates with
transformers' greedy or beam search (``num_beams``, ``max_new_tokens``, ``length_penalty``,
``no_repeat_ngram_size``; a call may override the first two: ``generation_settings``), and the tokenizer turns the
ids back into text. With an uncased vocabulary (MiniLM) the output is lower case; ``lowercase: true`` scores
lower-cased references too. Metrics: BLEU, chrF, ROUGE-1/2/L (``generation_metrics``), first the ``primary`` one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from polytask.data.examples import Example, Feature
from polytask.errors import DataError, PolytaskError
from polytask.tasks.base import IGNORE, TASKS, BatchShape, Encoded, Fields, FieldSpec, Output, Task, TaskBatch, \
    TaskParams
from polytask.tasks.decoder import Seq2SeqDecoder
from polytask.tasks.generation_metrics import METRICS, generation_scores
from polytask.tasks.stock import NotExportable, StockHead

MAX_BEAMS = 16  # a beam wider than this costs more than any gain reported for it
# WordPiece decoding puts spaces around the apostrophe and hyphen it split off ("man ' s", "t - shirt"); BLEU's
# tokeniser keeps "man's" and "t-shirt" whole, so they are joined again between two word characters
_SPLIT_INSIDE_WORD = re.compile(r"(?<=\w) ([-']) (?=\w)")


def detokenize(text: str) -> str:
    """Decoded text with the apostrophes and hyphens inside words rejoined."""
    return _SPLIT_INSIDE_WORD.sub(r"\1", text.strip())


class Seq2SeqParams(TaskParams):
    label: str = Field(..., description="column of the target text: a string, or a list of references (the first "
                                        "trains)")
    references: list[str] = Field(default_factory=list, description="more columns of reference texts, read where "
                                                                    "a row has them (evaluation)")
    decoder_layers: int | None = Field(None, ge=1, description="decoder layers, layer i starting as encoder layer "
                                                               "i; default: as many as the encoder")
    max_target_length: int = Field(64, ge=2, le=1024, description="target tokens with the end token; longer "
                                                                  "targets are cut (counted)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    num_beams: int = Field(1, ge=1, le=MAX_BEAMS, description="1: greedy search; more: beam search")
    max_new_tokens: int | None = Field(None, ge=1, description="longest generated text in tokens; default: "
                                                               "max_target_length")
    length_penalty: float = Field(1.0, description="beam search: score / length ** length_penalty")
    no_repeat_ngram_size: int = Field(0, ge=0, description="never repeat an n-gram of this size; 0: off")
    lowercase: bool = Field(False, description="score BLEU/chrF on lower-cased text (an uncased vocabulary "
                                               "writes lower case)")
    primary: Literal["bleu", "chrf", "rouge1", "rouge2", "rougeL"] = "bleu"

    @field_validator("head_hidden")
    @classmethod
    def _no_hidden(cls, value: int) -> int:
        if value:
            raise ValueError("head_hidden does not apply to seq2seq; size the head with decoder_layers")
        return value


@TASKS.register("seq2seq")
class Seq2Seq(Task):
    """Text generation (translation, summarisation): a BERT2BERT decoder on the shared encoder's token vectors."""

    Params: ClassVar[type[TaskParams]] = Seq2SeqParams
    input_fields = {"decoder_input_ids": FieldSpec(("batch", "target"))}
    generates = True
    hub_task = "text2text-generation"
    params: Seq2SeqParams

    def __init__(self, name: str, params: TaskParams) -> None:
        super().__init__(name, params)
        self.tokenizer: Any = None
        self.start = self.end = self.pad = 0
        self.vocab = 0
        self._overrides: dict[str, int] = {}
        self._cut = 0  # targets cut at max_target_length since the last take_notes

    @classmethod
    def metric_names(cls, params: TaskParams) -> list[str]:
        primary = getattr(params, "primary", "bleu")
        return [primary] + [m for m in METRICS if m != primary]

    def bind_tokenizer(self, tokenizer: Any) -> None:
        start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if start is None or end is None:
            raise PolytaskError(f"task {self.name!r}: the tokenizer has no [CLS]/[SEP] (or bos/eos) token to start "
                                "and end a generated text")
        self.tokenizer, self.start, self.end, self.vocab = tokenizer, int(start), int(end), len(tokenizer)
        self.pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end)

    def columns(self) -> list[str]:
        return [self.params.label]  # the reference columns are optional: test files may have them alone

    # -- labels ------------------------------------------------------------------------------------------------------
    def is_missing(self, raw: Any) -> bool:
        return raw is None  # an empty target is an error (gold), not an unlabelled row

    def gold(self, raw: Any, example: Example) -> list[str]:
        """Every reference text of the row: the label column's (a string or a list), then the ``references``
        columns it has; an empty text or a value of another type is an error naming the row and column."""
        refs = self._texts(raw, example, self.params.label)
        for column in self.params.references:
            value = example.row.values.get(column)
            if value is not None:
                refs += self._texts(value, example, column)
        # counted here: the loader logs a split's notes after reading its golds. `polytask validate` reads the data
        # without a tokenizer (check_data): there nothing is tokenised, as for the other tasks' truncation counts
        if self.tokenizer is not None and self._target_ids(refs[0])[1]:
            self._cut += 1
        return refs

    def _target_ids(self, text: str) -> tuple[list[int], bool]:
        """(the target's token ids, cut to leave room for the end token; whether they were cut)."""
        ids = list(self._require_tokenizer()(text, add_special_tokens=False)["input_ids"])
        room = self.params.max_target_length - 1
        return ids[:room], len(ids) > room

    @staticmethod
    def _texts(value: Any, example: Example, column: str) -> list[str]:
        values = value if isinstance(value, list) else [value]
        if not values:
            raise DataError("empty list of reference texts", location=example.location, field=column, value=value)
        for text in values:
            if not isinstance(text, str):
                raise DataError("a target must be a string or a list of strings", location=example.location,
                                field=column, value=text)
            if not text.strip():
                raise DataError("empty target text", location=example.location, field=column, value=text)
        return list(values)

    def take_notes(self) -> list[str]:
        if self._cut:
            self._notes.append(f"task {self.name!r}: {self._cut} targets longer than max_target_length="
                               f"{self.params.max_target_length} tokens were cut")
            self._cut = 0
        return super().take_notes()

    # -- features ----------------------------------------------------------------------------------------------------
    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise RuntimeError(f"task {self.name!r}: no tokenizer bound (Task.bind_tokenizer)")
        return self.tokenizer

    def featurize(self, example: Example, features: Sequence[Feature], gold: Any | None) -> list[Fields]:
        """decoder_input_ids = [start] + target, target = target + [end] (the first reference, cut to fit)."""
        if gold is None:
            return [{} for _ in features]
        ids, _ = self._target_ids(gold[0])
        fields: Fields = {"decoder_input_ids": np.array([self.start] + ids, dtype=np.int64),
                          "target": np.array(ids + [self.end], dtype=np.int64)}
        return [dict(fields) for _ in features]

    def collate(self, fields: Sequence[Fields], shape: BatchShape) -> TaskBatch:
        """decoder_input_ids [B, L] (pad after the text; an unlabelled row is the start token alone), target [B, L]
        (IGNORE on padding and unlabelled rows). Right padding needs no mask: the decoder is causal."""
        width = max([len(f["decoder_input_ids"]) for f in fields if "decoder_input_ids" in f], default=1)
        inputs = np.full((shape.size, width), self.pad, dtype=np.int64)
        inputs[:, 0] = self.start
        target = np.full((shape.size, width), IGNORE, dtype=np.int64)
        for i, f in enumerate(fields):
            if "decoder_input_ids" in f:
                n = len(f["decoder_input_ids"])
                inputs[i, :n], target[i, :n] = f["decoder_input_ids"], f["target"]
        return TaskBatch(inputs={"decoder_input_ids": torch.from_numpy(inputs)},
                         targets={"target": torch.from_numpy(target)})

    # -- model -------------------------------------------------------------------------------------------------------
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        raise NotImplementedError("a seq2seq head is built from the encoder (build_head_on)")

    def build_head_on(self, encoder: nn.Module, hidden_size: int, dropout: float) -> nn.Module:
        head = Seq2SeqDecoder(encoder, self.params.decoder_layers)
        if self.params.max_target_length > head.max_positions:
            raise PolytaskError(f"task {self.name!r}: max_target_length {self.params.max_target_length} is more "
                                f"than the {head.max_positions} positions the decoder has")
        return head

    def settings(self) -> dict[str, int]:
        """The generation settings in force: the params' ``num_beams`` and ``max_new_tokens``, or a call's."""
        return {"num_beams": self.params.num_beams,
                "max_new_tokens": self.params.max_new_tokens or self.params.max_target_length, **self._overrides}

    @contextmanager
    def generation_settings(self, num_beams: int | None = None, max_new_tokens: int | None = None) -> Iterator[None]:
        """Generate with these settings inside the block (a Pipeline call's, bounded by its caller)."""
        saved = self._overrides
        given = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
        for key, value in given.items():
            if value is not None and not 1 <= value <= (MAX_BEAMS if key == "num_beams" else 1024):
                raise ValueError(f"{key} must be 1 to {MAX_BEAMS if key == 'num_beams' else 1024}, got {value}")
        self._overrides = {**saved, **{k: int(v) for k, v in given.items() if v is not None}}
        try:
            yield
        finally:
            self._overrides = saved

    def forward(self, head: nn.Module, encoded: Encoded, inputs: dict[str, torch.Tensor]) -> Output:
        """-> {"logits": [B, L, V]} teacher-forced when the caller wants the loss (training, or ``for_loss`` in eval
        mode: look-ahead loss measurements), otherwise in eval mode {"generated": [B, 1 + n]} ids (start token
        first) from the encoder's token vectors of the same pass. Each is computed only where it is read: a search
        costs many decoder passes, and evaluation never reads the teacher-forced logits."""
        assert isinstance(head, Seq2SeqDecoder)
        if self.vocab and head.table_rows() < self.vocab:
            raise PolytaskError(f"task {self.name!r}: the encoder's word-embedding table has {head.table_rows()} "
                                f"rows, fewer than the tokenizer's {self.vocab} ids (a pruned encoder.vocabulary?); "
                                "a seq2seq head predicts over the whole vocabulary: use encoder.vocabulary: full")
        ids = inputs["decoder_input_ids"]
        out: dict[str, torch.Tensor] = {}
        if head.training or encoded.for_loss:
            out["logits"] = head(ids, encoded.tokens, encoded.attention_mask)
        else:
            s = self.settings()
            out["generated"] = head.generate(encoded.tokens, encoded.attention_mask, self.start, self.end, self.pad,
                                             s["num_beams"], s["max_new_tokens"], self.params.length_penalty,
                                             self.params.no_repeat_ngram_size)
        return out

    def loss(self, output: Output, targets: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """Token cross-entropy over the labelled target tokens (mean), with ``label_smoothing``."""
        assert isinstance(output, dict)
        target = targets["target"]
        if "logits" not in output or not bool((target != IGNORE).any()):
            return None
        logits = output["logits"].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                               label_smoothing=self.params.label_smoothing)

    def stock_head(self, head: nn.Module) -> StockHead:
        raise NotExportable(f"task {self.name!r} (seq2seq) generates text with a decoder: no stock single-head "
                            "transformers class holds it; serve it with polytask (Pipeline, predict, serve)")

    # -- outputs -----------------------------------------------------------------------------------------------------
    def host_outputs(self, output: Output) -> list[Any]:
        """Each row's generated ids after the start token, up to (without) the end token."""
        assert isinstance(output, dict) and "generated" in output, "generation runs in eval mode"
        rows = []
        for row in output["generated"][:, 1:].cpu().numpy():
            stop = np.flatnonzero(row == self.end)
            rows.append(row[: stop[0]] if len(stop) else row)
        return rows

    def postprocess(self, example: Example, features: Sequence[Feature], fields: Sequence[Fields],
                    outputs: Sequence[Any]) -> dict[str, Any]:
        text = self._require_tokenizer().decode([int(i) for i in outputs[0]], skip_special_tokens=True,
                                                clean_up_tokenization_spaces=True)
        return {"text": detokenize(text)}

    def metrics(self, predictions: list[dict[str, Any]], golds: list[Any]) -> dict[str, float]:
        if not golds:
            return {}
        scores = generation_scores([p["text"] for p in predictions], golds, self.params.lowercase)
        return {name: scores[name] for name in self.metric_names(self.params)}

    def correct(self, prediction: dict[str, Any], gold: Any) -> bool:
        def norm(text: str) -> str:
            text = " ".join(text.split())
            return text.lower() if self.params.lowercase else text

        return any(norm(prediction["text"]) == norm(ref) for ref in gold)
