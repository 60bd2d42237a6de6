"""``Pipeline``: every task's prediction for raw inputs, from one encoder pass per batch and input group.

    pipe = Pipeline.from_pretrained("runs/demo/best")
    pipe(["play some jazz by miles davis"])                       # every task that reads a text
    pipe([("A man plays.", "Someone plays music.")])               # every task that reads a pair (QA too)
    pipe([{"question": "Who plays?", "context": "A man plays."}])  # the same, with names
    pipe(["The <e1>company</e1> makes <e2>chairs</e2>."])          # relation classification (entity markers)
    pipe(["ein mann spielt gitarre ."], generation={"num_beams": 4})  # seq2seq: generated text, beam search

An input's kind (text, pair, entities) selects the tasks that read it (see ``polytask.data.inputs.input_kind``).
Tasks that read the same input spec share one encoder pass; inputs are featurised exactly as in training
(``InputSpec.featurize`` then ``Task.featurize``), and each task post-processes its outputs exactly as evaluation
does (``polytask.evaluate.predict_split``, with the temperatures stored in the checkpoint); then a task with a
``min_score`` answers "none" below it (``Task.gate``; see ``polytask.tasks.scores`` for the shape).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from polytask.data.dataset import FeatureSplit, assemble, input_groups, needs_words
from polytask.data.inputs import InputItem, input_kind
from polytask.errors import DataError
from polytask.evaluate import predict_split
from polytask.model import MultiTaskModel

if TYPE_CHECKING:
    from polytask.export import OnnxModel

KIND_NAMES = {"text": "single texts", "pair": "(text, text_pair) pairs", "entities": "texts with two marked entities",
              "dialogue": "dialogue turns ({text, history})"}


def _is_single(inputs: Any) -> bool:
    """A lone input (not a list of them): a string, a (text, text_pair) tuple or a mapping."""
    return isinstance(inputs, (str, dict)) or (isinstance(inputs, tuple) and len(inputs) == 2 and
                                               all(isinstance(x, str) for x in inputs))


class Pipeline:
    """Multi-task inference over a loaded :class:`MultiTaskModel` (or an ``OnnxModel`` with the same interface)."""

    def __init__(self, model: Any, batch_size: int = 32, precision: str = "fp32") -> None:
        self.model, self.batch_size, self.precision = model.eval(), batch_size, precision
        if model.tokenizer is None:
            raise ValueError("the model has no tokenizer attached")
        self.kinds = sorted({task.input.kind for task in model.tasks.values()})

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", batch_size: int = 32, precision: str = "fp32",
                        backend: str = "torch", onnx_file: str | Path | None = None) -> Pipeline:
        """``backend="onnx"`` runs ``onnx_file`` (default: PATH/model.onnx, made by ``polytask export``)."""
        model: MultiTaskModel | OnnxModel = MultiTaskModel.from_pretrained(path, device=device)
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
        """name -> {type, input (text, pair or entities), labels...}."""
        return {name: task.describe() for name, task in self.model.tasks.items()}

    def kind_of(self, item: InputItem) -> str:
        """The kind of one input, given the kinds this model's tasks read."""
        return input_kind(item, self.kinds)

    def tasks_for(self, kind: str, tasks: Sequence[str] | None = None) -> list[str]:
        """The tasks to run on inputs of ``kind``: ``tasks`` (checked), or every task reading that kind."""
        if tasks is None:
            return [n for n, t in self.model.tasks.items() if t.input.kind == kind]
        unknown = [t for t in tasks if t not in self.model.tasks]
        if unknown:
            raise KeyError(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(self.model.tasks)}")
        wrong = [t for t in tasks if self.model.tasks[t].input.kind != kind]
        if wrong:
            need = {self.model.tasks[t].input.kind for t in wrong}
            raise ValueError(f"task(s) {', '.join(wrong)} read {' / '.join(KIND_NAMES[k] for k in sorted(need))}, "
                             f"not {KIND_NAMES[kind]}")
        return list(tasks)

    def check(self, inputs: InputItem | Sequence[InputItem], tasks: Sequence[str] | None = None) -> None:
        """Raise the error a call on ``inputs`` would raise for the inputs themselves (mixed kinds, tasks that do
        not read them, entity spans outside the text), without tokenising or running the model. A server checks
        each request alone this way before it shares a model call with others."""
        items = self._items(inputs)
        if items:
            names = self._task_names(items, tasks)
            for spec, group in input_groups({n: self.model.tasks[n] for n in names}):
                self._examples(spec, items, needs_words(self.model.tasks, group))

    def _items(self, inputs: InputItem | Sequence[InputItem]) -> list[Any]:
        return [inputs] if _is_single(inputs) else list(inputs)

    def _task_names(self, items: list[Any], tasks: Sequence[str] | None) -> list[str]:
        kinds = [self.kind_of(item) for item in items]
        if len(set(kinds)) > 1:
            raise ValueError(f"mix of {' and '.join(KIND_NAMES[k] for k in sorted(set(kinds)))} in one call: "
                             "send them separately")
        return self.tasks_for(kinds[0], tasks)

    @staticmethod
    def _examples(spec: Any, items: list[Any], words: bool) -> list[Any]:
        examples = []
        for i, item in enumerate(items):
            try:
                examples.append(spec.example_from(item, i, words))
            except DataError as exc:  # keep the message, say which input it is
                raise DataError(exc.problem, location=f"input {i}", field=exc.field, value=exc.value,
                                allowed=exc.allowed) from None
        return examples

    @contextmanager
    def generating(self, settings: Mapping[str, int | None] | None) -> Iterator[None]:
        """Inside the block every generating task (seq2seq) uses ``settings`` (``num_beams``, ``max_new_tokens``;
        None or absent: the task's own)."""
        with ExitStack() as stack:
            for task in self.model.tasks.values():
                if settings and task.generates:
                    stack.enter_context(task.generation_settings(**settings))
            yield

    @torch.inference_mode()
    def __call__(self, inputs: InputItem | Sequence[InputItem], tasks: Sequence[str] | None = None,
                 generation: Mapping[str, int | None] | None = None) -> list[dict[str, Any]]:
        """-> one dict per input: {task: prediction}. A single input (string, pair, mapping) gives a list of one.
        ``generation``: settings of the generating tasks for this call (see :meth:`generating`)."""
        items = self._items(inputs)
        if not items:
            return []
        if generation:
            with self.generating(generation):
                return self(items, tasks)
        names = self._task_names(items, tasks)
        out: list[dict[str, Any]] = [{} for _ in items]
        model_tasks = self.model.tasks
        for spec, group in input_groups({n: model_tasks[n] for n in names}):
            words = needs_words(model_tasks, group)
            examples = self._examples(spec, items, words)
            featurized = spec.featurize(examples, self.model.tokenizer, self.model.max_length, words)
            split: FeatureSplit = assemble("input", "input", "predict", spec, model_tasks, group, examples,
                                           featurized, {n: [None] * len(examples) for n in group})
            predictions = predict_split(self.model, split, self.batch_size, self.precision, tasks=group)
            for name in group:
                task = model_tasks[name]
                for i, prediction in enumerate(predictions[name]):
                    gated = task.gate(prediction)
                    out[i][name] = prediction if gated is None else gated.prediction
        return [{n: o[n] for n in names} for o in out]  # task order as in the model, whatever the grouping
