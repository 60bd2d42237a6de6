"""``Pipeline``: every task's prediction for raw texts, from one encoder pass per batch.

    pipe = Pipeline.from_pretrained("runs/demo/best")
    pipe(["play some jazz by miles davis"])                 # every single-text task
    pipe([("A man plays.", "Someone plays music.")])         # every text-pair task

Texts are split into words on white space (for token tasks); tagged spans carry character offsets into the text
as given. Inputs are tokenised exactly as in training (see polytask.data.dataset).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import torch

from polytask.data.dataset import SourceSplit, tokenize_split
from polytask.data.rows import Row
from polytask.evaluate import predict_split
from polytask.model import MultiTaskModel

TextInput = Union[str, tuple[str, str], list[str]]
_WORD = re.compile(r"\S+")


def make_split(texts: Sequence[TextInput], tokenizer: Any, max_length: int, tasks: list[str],
               need_words: bool) -> SourceSplit:
    """Raw inputs -> a tokenised SourceSplit without labels (what predict_split consumes)."""
    singles, pairs = [], []
    for i, item in enumerate(texts):
        if isinstance(item, str):
            singles.append(item)
            pairs.append(None)
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            singles.append(item[0])
            pairs.append(item[1])
        else:
            raise ValueError(f"input {i}: expected a string or a (text, text_pair) pair, got {item!r}")
        if not singles[-1].strip():
            raise ValueError(f"input {i}: empty text")
    has_pairs = [p is not None for p in pairs]
    if any(has_pairs) and not all(has_pairs):
        raise ValueError("mix of single texts and text pairs in one call: send them separately")
    words = spans = None
    if need_words:
        matches = [list(_WORD.finditer(t)) for t in singles]
        words = [[m.group() for m in ms] for ms in matches]
        spans = [[m.span() for m in ms] for ms in matches]
    rows = [Row(values={}, location=f"input[{i}]", file="input", line=i + 1) for i in range(len(singles))]
    split = SourceSplit(source="input", split="predict", tasks=[], rows=rows, texts=singles,
                        pairs=pairs if all(has_pairs) else None, words=words, word_spans=spans)
    tokenize_split(split, tokenizer, max_length)
    return split


class Pipeline:
    """Multi-task inference over a loaded :class:`MultiTaskModel`."""

    def __init__(self, model: Any, batch_size: int = 32, precision: str = "fp32") -> None:
        """``model``: a MultiTaskModel, or an ``OnnxModel`` (polytask.export) that behaves like one."""
        self.model, self.batch_size, self.precision = model.eval(), batch_size, precision
        if model.tokenizer is None:
            raise ValueError("the model has no tokenizer attached")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", batch_size: int = 32, precision: str = "fp32",
                        backend: str = "torch", onnx_file: str | Path | None = None) -> Pipeline:
        """``backend="onnx"`` runs ``onnx_file`` (default: PATH/model.onnx, made by ``polytask export``)."""
        model = MultiTaskModel.from_pretrained(path, device=device)
        if backend == "onnx":
            from polytask.export import OnnxModel

            onnx_path = Path(onnx_file) if onnx_file else Path(path) / "model.onnx"
            if not onnx_path.is_file():
                raise FileNotFoundError(f"{onnx_path}: no ONNX graph; run `polytask export {path}` first")
            model = OnnxModel(onnx_path, model)
        elif backend != "torch":
            raise ValueError(f"unknown backend {backend!r}; available: torch, onnx")
        return cls(model, batch_size, precision)

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        """name -> {type, level, input ("text" or "pair"), labels...}."""
        return {name: {**task.describe(), "input": "pair" if name in self.model.pair_tasks else "text"}
                for name, task in self.model.tasks.items()}

    def _select(self, tasks: Sequence[str] | None, pairs: bool) -> list[str]:
        if tasks is None:
            return [n for n in self.model.tasks if (n in self.model.pair_tasks) == pairs]
        unknown = [t for t in tasks if t not in self.model.tasks]
        if unknown:
            raise KeyError(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(self.model.tasks)}")
        wrong = [t for t in tasks if (t in self.model.pair_tasks) != pairs]
        if wrong:
            need = "single texts" if pairs else "(text, text_pair) pairs"
            raise ValueError(f"task(s) {', '.join(wrong)} read {need}")
        return list(tasks)

    @torch.inference_mode()
    def __call__(self, texts: TextInput | Sequence[TextInput], tasks: Sequence[str] | None = None
                 ) -> list[dict[str, Any]]:
        """-> one dict per input: {task: prediction}. A single string (or pair) gives a list of one."""
        if isinstance(texts, str) or (isinstance(texts, tuple) and len(texts) == 2 and
                                      all(isinstance(x, str) for x in texts)):
            texts = [texts]  # type: ignore[list-item]
        if not texts:
            return []
        pairs = not isinstance(texts[0], str)
        names = self._select(tasks, pairs)
        if not names:
            return [{} for _ in texts]
        need_words = any(self.model.tasks[n].level == "token" for n in names)
        split = make_split(texts, self.model.tokenizer, self.model.max_length, names, need_words)
        preds = predict_split(self.model, split, self.batch_size, self.precision, tasks=names)
        return [{n: preds[n][i] for n in names} for i in range(len(texts))]
