"""ONNX export: one graph with the shared encoder and every head as a named output.

Inputs: ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the encoder uses them), all [B, T] int64.
Outputs: one per task, named after it: [B, C] for sequence tasks, [B, T, C] per *token* for token tasks (the
pipeline picks each word's first sub-word, exactly as the PyTorch model does). ``OnnxModel`` runs the graph with
onnxruntime behind the same interface as ``MultiTaskModel``, so ``Pipeline(..., backend="onnx")`` and evaluation
work unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.model import MultiTaskModel, gather_words


class AllHeads(nn.Module):
    """The traced module: encoder once, every head, outputs in task order."""

    def __init__(self, model: MultiTaskModel) -> None:
        super().__init__()
        self.model = model
        self.names = list(model.tasks)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        tokens, pooled = self.model.encode(input_ids, attention_mask, token_type_ids)
        outs = []
        for i, name in enumerate(self.names):
            features = tokens if self.model.tasks[name].level == "token" else pooled
            if self.model.task_embedding is not None:
                features = features + self.model.task_embedding.weight[i]
            outs.append(self.model.heads[name](features))
        return tuple(outs)


def sample_inputs(model: MultiTaskModel, texts: list[str] | None = None) -> dict[str, torch.Tensor]:
    texts = texts or ["polytask exports every head in one graph.", "a second, longer example sentence to pad."]
    enc = model.tokenizer(texts, padding=True, truncation=True, max_length=model.max_length, return_tensors="pt")
    keep = ["input_ids", "attention_mask"] + (["token_type_ids"] if model._uses_token_types else [])
    return {k: enc[k] for k in keep if k in enc}


def export_onnx(model: MultiTaskModel, path: str | Path, opset: int = 17) -> Path:
    """Write ``path`` (.onnx) with dynamic batch and sequence axes, plus ``path.json`` naming inputs/outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    wrapper = AllHeads(model).eval()
    inputs = sample_inputs(model)
    names = list(inputs)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    for name in wrapper.names:
        dynamic[name] = {0: "batch", 1: "sequence"} if model.tasks[name].level == "token" else {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(wrapper, tuple(inputs[n] for n in names), str(path), input_names=names,
                          output_names=wrapper.names, dynamic_axes=dynamic, opset_version=opset, dynamo=False)
    meta = {"inputs": names, "outputs": wrapper.names,
            "levels": {n: model.tasks[n].level for n in wrapper.names}}
    Path(str(path) + ".json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantisation of the weights of MatMul/Gemm nodes (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    Path(str(dst) + ".json").write_text(Path(str(src) + ".json").read_text(encoding="utf-8"), encoding="utf-8")
    return Path(dst)


class OnnxModel:
    """Runs an exported graph with onnxruntime; quacks like MultiTaskModel for Pipeline and evaluate."""

    training = False
    device = torch.device("cpu")

    def __init__(self, onnx_path: str | Path, like: MultiTaskModel, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        meta = json.loads(Path(str(onnx_path) + ".json").read_text(encoding="utf-8"))
        self.input_names, self.output_names = meta["inputs"], meta["outputs"]
        self.tasks, self.tokenizer = like.tasks, like.tokenizer
        self.max_length, self.pair_tasks, self.run_config = like.max_length, like.pair_tasks, like.run_config

    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None, word_index: torch.Tensor | None = None,
                 tasks: list[str] | None = None, **_: Any) -> dict[str, torch.Tensor]:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        arrays = {n: feed[n].cpu().numpy().astype(np.int64) for n in self.input_names}
        outputs = dict(zip(self.output_names, self.session.run(self.output_names, arrays)))
        result = {}
        for name in tasks or self.output_names:
            logits = torch.from_numpy(outputs[name])
            if self.tasks[name].level == "token":
                logits = gather_words(logits, word_index)  # type: ignore[arg-type]
            result[name] = logits
        return result


def parity(model: MultiTaskModel, onnx_path: str | Path, texts: list[str] | None = None) -> dict[str, float]:
    """Max |PyTorch - ONNX| per output on sample inputs."""
    inputs = sample_inputs(model, texts)
    with torch.no_grad():
        reference = AllHeads(model.eval().float())(**inputs)
    onnx = OnnxModel(onnx_path, model)
    arrays = {n: inputs[n].numpy().astype(np.int64) for n in onnx.input_names}
    got = onnx.session.run(onnx.output_names, arrays)
    return {name: float(np.abs(ref.numpy() - out).max()) for name, ref, out in zip(onnx.output_names, reference, got)}
