"""ONNX export: one graph with the shared encoder and every head, through the same head dispatch as PyTorch.

Graph inputs: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the encoder uses them) [B, T] int64;
``word_index`` [B, W] when a task tags words; then each task's own forward inputs, named ``TASK.FIELD`` with the
axes its ``input_fields`` declare. Outputs: one per task (``TASK``), or one per entry of a task's output dict
(``TASK.KEY``). Post-processing stays in Python and is shared with the PyTorch backend: ``OnnxModel`` runs the graph
with onnxruntime behind the same call as ``MultiTaskModel``, so ``Pipeline(..., backend="onnx")`` and evaluation
work unchanged. A call that runs only some tasks still feeds every graph input: the others get zeros of their
declared shape (their outputs are ignored).

Generating tasks (``Task.generates``: seq2seq) are not exported: their search (greedy or beam, token by token with
a cache) is a loop in Python around the decoder, not one graph. The graph holds the encoder and every other head;
``OnnxModel`` knows only the exported tasks, so an ONNX pipeline answers the others as unknown tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.model import MultiTaskModel
from polytask.tasks.base import FieldSpec

AXES = {"batch": "batch", "tokens": "sequence", "words": "words"}
DTYPES = {"int64": np.int64, "float32": np.float32}


def exported_tasks(model: Any) -> list[str]:
    """The tasks the graph holds: every task that does not generate text."""
    return [name for name, task in model.tasks.items() if not task.generates]


def skipped_tasks(model: Any) -> list[str]:
    """The generating tasks ``export_onnx`` leaves out (see the module docstring)."""
    return [name for name, task in model.tasks.items() if task.generates]


def graph_inputs(model: Any) -> dict[str, FieldSpec]:
    """Name -> spec of every graph input, in order."""
    specs = {"input_ids": FieldSpec(("batch", "tokens")), "attention_mask": FieldSpec(("batch", "tokens"))}
    if getattr(model, "_uses_token_types", True):
        specs["token_type_ids"] = FieldSpec(("batch", "tokens"))
    if any(t.needs_words for t in model.tasks.values()):
        specs["word_index"] = FieldSpec(("batch", "words"))
    for name in exported_tasks(model):
        for field, spec in model.tasks[name].input_fields.items():
            specs[f"{name}.{field}"] = spec
    return specs


class AllHeads(nn.Module):
    """The traced module: flat graph inputs -> ``MultiTaskModel.forward`` for every task -> flat outputs."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model
        self.input_names = list(graph_inputs(model))
        self.output_names: list[str] = []

    def forward(self, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        named = dict(zip(self.input_names, flat))
        task_inputs: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in named.items():
            task, dot, field = key.partition(".")
            if dot:
                task_inputs.setdefault(task, {})[field] = value
        inputs = {k: v for k, v in named.items() if "." not in k}
        outputs = self.model(inputs, task_inputs, exported_tasks(self.model))
        names, flat_out = [], []
        for task, out in outputs.items():
            if isinstance(out, dict):
                for key in sorted(out):
                    names.append(f"{task}.{key}")
                    flat_out.append(out[key])
            else:
                names.append(task)
                flat_out.append(out)
        self.output_names = names
        return tuple(flat_out)


def dummy(spec: FieldSpec, sizes: dict[str, int], fill: float = 0) -> np.ndarray:
    """Zeros (or ``fill``) of the spec's shape: named axes from ``sizes``, others 1."""
    return np.full([sizes.get(a, 1) for a in spec.axes], fill, dtype=DTYPES[spec.dtype])


def sample_feed(model: Any, texts: list[str] | None = None) -> dict[str, np.ndarray]:
    """A feed for every graph input: real tokens of ``texts``, real word indices, task inputs set to 1 (masks that
    let every position through: the heads then do real work, which a parity check needs)."""
    from polytask.data.examples import first_subwords, split_words

    texts = texts or ["polytask exports every head in one graph.", "a second, longer example sentence to pad."]
    enc = model.tokenizer(texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="np")
    feed = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
    feed["token_type_ids"] = enc.get("token_type_ids", np.zeros_like(feed["input_ids"])).astype(np.int64)
    rows = [first_subwords(e, split_words(t)[1]) for e, t in zip(enc.encodings, texts)]
    width = max(len(r) for r in rows)
    feed["word_index"] = np.array([np.pad(r, (0, width - len(r)), constant_values=-1) for r in rows], np.int64)
    sizes = {"batch": len(texts), "tokens": feed["input_ids"].shape[1], "words": width}
    specs = graph_inputs(model)
    for name, spec in specs.items():
        if name not in feed:
            feed[name] = dummy(spec, sizes, fill=1)
    return {n: feed[n] for n in specs}


def export_onnx(model: MultiTaskModel, path: str | Path, opset: int = 17) -> Path:
    """Write ``path`` (.onnx) with dynamic axes, plus ``path.json`` naming inputs (with axes and dtypes) and
    outputs. Generating tasks are left out (:func:`skipped_tasks`); a model with nothing else is refused."""
    from polytask.errors import PolytaskError

    if not exported_tasks(model):
        raise PolytaskError(f"nothing to export to ONNX: every task ({', '.join(model.tasks)}) generates text, and "
                            "generation is not exported (serve it with the PyTorch backend)")
    path = Path(path)
    if not model.sharing.onnx_exportable:
        from polytask.errors import PolytaskError

        raise PolytaskError(f"ONNX export does not cover encoder.sharing {model.sharing.name!r} "
                            f"({model.sharing.to_config()}); export a model trained with another design")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    wrapper = AllHeads(model).eval()
    feed = sample_feed(model)
    specs = graph_inputs(model)
    args = tuple(torch.from_numpy(feed[n]) for n in wrapper.input_names)
    with torch.no_grad():
        wrapper(*args)  # learn the output names
    dynamic = {n: {i: AXES.get(a, f"{n}.{a}") for i, a in enumerate(specs[n].axes)} for n in wrapper.input_names}
    with torch.no_grad():
        reference = wrapper(*args)
    for name, out in zip(wrapper.output_names, reference):
        dynamic[name] = {i: ("batch" if i == 0 else f"{name}.dim{i}") for i in range(out.dim())}
    with torch.no_grad():
        torch.onnx.export(wrapper, args, str(path), input_names=wrapper.input_names,
                          output_names=wrapper.output_names, dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    meta = {"inputs": {n: {"axes": list(specs[n].axes), "dtype": specs[n].dtype} for n in wrapper.input_names},
            "outputs": wrapper.output_names}
    Path(str(path) + ".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation of the weights of MatMul/Gemm nodes (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    Path(str(dst) + ".json").write_text(Path(str(src) + ".json").read_text(encoding="utf-8"), encoding="utf-8")
    return Path(dst)


class OnnxModel:
    """Runs an exported graph with onnxruntime; called like MultiTaskModel by Pipeline and evaluate."""

    training = False
    device = torch.device("cpu")

    def __init__(self, onnx_path: str | Path, like: Any, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        meta = json.loads(Path(str(onnx_path) + ".json").read_text(encoding="utf-8"))
        self.inputs = {n: FieldSpec(tuple(v["axes"]), v["dtype"]) for n, v in meta["inputs"].items()}
        self.output_names: list[str] = meta["outputs"]
        # only the tasks in the graph: a generating task (never exported) is unknown to an ONNX pipeline
        self.tasks = {name: like.tasks[name] for name in exported_tasks(like)}
        self.tokenizer = like.tokenizer
        self.max_length, self.run_config = like.max_length, like.run_config

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def __call__(self, inputs: dict[str, torch.Tensor], task_inputs: dict[str, dict[str, torch.Tensor]] | None = None,
                 tasks: list[str] | None = None) -> dict[str, Any]:
        ids = inputs["input_ids"]
        given: dict[str, torch.Tensor] = dict(inputs)
        for task, fields in (task_inputs or {}).items():
            given.update({f"{task}.{k}": v for k, v in fields.items()})
        word_index = given.get("word_index")
        sizes = {"batch": ids.shape[0], "tokens": ids.shape[1],
                 "words": word_index.shape[1] if word_index is not None else 1}
        feed = {}
        for name, spec in self.inputs.items():
            value = given.get(name)
            feed[name] = (value.cpu().numpy().astype(DTYPES[spec.dtype]) if value is not None
                          else dummy(spec, sizes, fill=-1 if name == "word_index" else 0))
        outputs = self.run(feed)
        result: dict[str, Any] = {}
        for name in tasks or list(self.tasks):
            if name in outputs:
                result[name] = torch.from_numpy(outputs[name])
            else:
                prefix = name + "."
                result[name] = {k[len(prefix):]: torch.from_numpy(v) for k, v in outputs.items()
                                if k.startswith(prefix)}
        return result


def parity(model: MultiTaskModel, onnx_path: str | Path, texts: list[str] | None = None) -> dict[str, float]:
    """Max |PyTorch - ONNX| per graph output on sample inputs."""
    model = model.eval().float()
    wrapper = AllHeads(model)
    feed = sample_feed(model, texts)
    with torch.no_grad():
        reference = wrapper(*(torch.from_numpy(feed[n]) for n in wrapper.input_names))
    onnx = OnnxModel(onnx_path, model)
    got = onnx.run({n: feed[n] for n in onnx.inputs})
    return {name: float(np.abs(ref.numpy() - got[name]).max()) for name, ref in zip(wrapper.output_names, reference)}
