"""``polytask export --format hf``: one task as a folder the stock ``transformers`` Auto class loads.

The task says which stock class and which linear map reproduce its head (``Task.stock_head``, with temperatures or
a regression's label scale folded in); this module fits the encoder under it:

- ``tokens`` heads (token classification, span QA): the stock ``...ForTokenClassification`` /
  ``...ForQuestionAnswering`` put one linear layer on every token vector, exactly what polytask's head does; a task
  embedding (a vector added to every token vector) becomes part of that layer's bias: W (x + e) + b = W x + (W e + b).
- ``first_token`` heads (classification, regression): the stock BERT-family class reads the first token ([CLS])
  through its pooler, ``tanh(dense(x))``, then a linear classifier. polytask reads the first token itself with
  ``encoder.pooling: cls`` (mean pooling has no stock counterpart: refused). The pooler is set to ``dense = EPS * I``
  and the classifier to ``W / EPS``: ``tanh(EPS x) / EPS = x (1 - (EPS x)^2 / 3 + ...)``, so the stock logits equal
  polytask's up to a relative ``(EPS |x|)^2 / 3``, 8e-8 for |x| = 5 (MiniLM's [CLS] vectors after its last
  LayerNorm are of that size), below float32 rounding of the logits. The parity check below measures it.

Before writing, the stock model runs on sample texts beside polytask's own forward (``MultiTaskModel.forward``,
the one head dispatch) and ``Task.host_outputs``; the export is refused when they differ by more than
``TOLERANCE``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.errors import OptionError, PolytaskError
from polytask.model import MultiTaskModel
from polytask.tasks.stock import NotExportable, StockHead

EPS = 1e-4  # scale of the near-identity pooler (see the module docstring)
TOLERANCE = 1e-4  # largest |polytask - stock| / max(1, |polytask|) on the sample texts
MARKER = "polytask_export.json"  # written into the folder: what was exported, from where, the measured difference


@dataclass
class HfExport:
    path: Path
    auto_class: str
    max_difference: float
    notes: list[str] = field(default_factory=list)


def default_folder(checkpoint: Path, task: str) -> Path:
    """``runs/x/best`` -> ``runs/x/best-hf-TASK``."""
    return checkpoint.parent / f"{checkpoint.name}-hf-{task}"


def export_hf(model: MultiTaskModel, task: str, out: str | Path, source: str = "",
              texts: list[str] | None = None) -> HfExport:
    """Write ``task`` of ``model`` into ``out`` as a stock ``transformers`` model folder (weights, config with
    id2label / label2id, tokenizer, README.md, polytask_export.json); NotExportable when its head or the model's
    pooling cannot be expressed exactly."""
    from polytask.card import export_card
    from polytask.checkpoint import atomic_dir

    out = Path(out)
    if task not in model.tasks:
        raise OptionError("--task", task, "not a task of the checkpoint", ", ".join(model.tasks))
    _check_out(out)
    if not model.sharing.hf_exportable:
        raise NotExportable(f"task {task!r}: the model has encoder.sharing {model.sharing.name!r} "
                            f"({model.sharing.to_config()}), with per-task layers that a stock transformers model "
                            "has no place for; only encoder.sharing: hard exports to --format hf (use --format onnx)")
    model = model.eval().float()
    spec = model.tasks[task].stock_head(model.heads[task])
    if spec.reads == "first_token" and model.pooling != "cls":
        raise NotExportable(
            f"task {task!r} reads the mean of the token vectors (encoder.pooling: {model.pooling}); the stock "
            f"{spec.auto_class} reads the first token ([CLS]) through its pooler, so mean pooling cannot be "
            "reproduced. Train with encoder.pooling: cls to export it (token_classification and span_qa tasks "
            "export with either pooling)")
    stock = _build(model, task, spec)
    difference = parity(model, task, spec, stock, texts)
    if not difference <= TOLERANCE:
        raise NotExportable(f"task {task!r}: the stock {spec.auto_class} differs from polytask by {difference:.2e} "
                            f"(relative) on sample texts, more than {TOLERANCE:g}: not exported")
    meta = {"task": task, "type": model.tasks[task].params.type, "source": source, "auto_class": spec.auto_class,
            "max_difference": difference, "notes": spec.notes}
    from transformers.utils import logging as hf_logging

    tokenizer = model.tokenizer
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a "Writing model shards" bar for one small file
    with atomic_dir(out) as tmp:
        stock.save_pretrained(str(tmp))
        if bar:
            hf_logging.enable_progress_bar()
        length = tokenizer.model_max_length
        tokenizer.model_max_length = model.max_length  # truncate where polytask does
        try:
            tokenizer.save_pretrained(str(tmp))
        finally:
            tokenizer.model_max_length = length
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(export_card(model, task, spec, source, difference), encoding="utf-8")
    return HfExport(out, spec.auto_class, difference, list(spec.notes))


def _check_out(out: Path) -> None:
    """The folder is replaced as a whole: only a new folder or an earlier export may be given."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise OptionError("--out", str(out), "exists and is not an earlier `polytask export --format hf` folder "
                          "(it would be replaced)", "a new folder, or an earlier export to overwrite")


def _build(model: MultiTaskModel, task: str, spec: StockHead) -> Any:
    """The stock model: polytask's encoder weights, the task's linear map, the near-identity pooler if needed."""
    import transformers

    encoder: Any = model.encoder
    config = type(encoder.config).from_dict(encoder.config.to_dict())
    state = encoder.state_dict()
    if model.vocab_map is not None:  # a pruned vocabulary (encoder.vocabulary): stock models index rows by the
        # tokenizer's ids, so the table is written back at full size, each id holding the row polytask reads for it
        # (<unk>'s for the pieces pruned away): the same predictions, at the size of the unpruned table
        table = encoder.get_input_embeddings().weight
        key = next(name for name, p in encoder.named_parameters() if p is table)
        state[key] = state[key][model.vocab_map]
        config.vocab_size = int(model.vocab_map.numel())
    config.id2label = dict(enumerate(spec.labels))
    config.label2id = {label: i for i, label in enumerate(spec.labels)}
    config.problem_type = spec.problem_type
    auto = getattr(transformers, spec.auto_class)
    try:
        stock = auto.from_config(config).eval()
    except ValueError as exc:  # the Auto class has no class for this model type
        raise NotExportable(f"task {task!r}: {spec.auto_class} has no class for the encoder's model type "
                            f"{config.model_type!r}: {exc}") from None
    base = stock.base_model
    missing, unexpected = base.load_state_dict(state, strict=False)
    pooler = [k for k in missing if k.startswith("pooler.")]
    if unexpected or set(missing) - set(pooler):
        raise NotExportable(f"task {task!r}: the encoder's weights do not fit the stock {type(base).__name__} "
                            f"(missing {sorted(set(missing) - set(pooler))[:3]}, unexpected {unexpected[:3]})")
    linear = _head_linear(stock, spec, task)
    weight, bias = spec.weight, spec.bias
    if model.task_embedding is not None:  # added to what the head reads: part of the bias of a linear head
        bias = bias + weight @ model.task_embedding[task].detach().float()
    with torch.no_grad():
        if spec.reads == "first_token":
            dense = _tanh_pooler(stock, spec, task)
            dense.weight.copy_(torch.eye(dense.in_features) * EPS)
            dense.bias.zero_()
            weight = weight / EPS
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return stock


def _head_linear(stock: Any, spec: StockHead, task: str) -> nn.Linear:
    """The stock head's linear layer: the one ``nn.Linear`` child outside the base model (``classifier``,
    ``qa_outputs``)."""
    children = [(n, m) for n, m in stock.named_children() if n != stock.base_model_prefix]
    linears = [m for _, m in children if isinstance(m, nn.Linear)]
    if len(linears) != 1 or linears[0].weight.shape != spec.weight.shape:
        layout = ", ".join(f"{n}: {type(m).__name__}" for n, m in children)
        raise NotExportable(f"task {task!r}: the stock {type(stock).__name__} has no single linear head of shape "
                            f"{list(spec.weight.shape)} ({layout}); polytask exports only into heads that are one "
                            "linear layer (the BERT family's)")
    return linears[0]


def _tanh_pooler(stock: Any, spec: StockHead, task: str) -> nn.Linear:
    pooler = getattr(stock.base_model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    if not isinstance(dense, nn.Linear) or not isinstance(getattr(pooler, "activation", None), nn.Tanh):
        raise NotExportable(f"task {task!r}: the stock {type(stock).__name__} does not read the first token "
                            "through a dense + tanh pooler and one linear classifier (the BERT family's layout), "
                            "the only first-token head polytask can reproduce; its token_classification and "
                            "span_qa tasks export with this encoder")
    return dense


def parity(model: MultiTaskModel, task: str, spec: StockHead, stock: Any, texts: list[str] | None = None) -> float:
    """Largest |polytask - stock| / max(1, |polytask|) over the task's host outputs on sample texts: polytask through
    ``MultiTaskModel.forward`` + ``Task.host_outputs``, the stock model's logits through ``spec.activation`` (read
    at each word's first sub-word for a task that reads words)."""
    from polytask.export import sample_feed

    feed = {k: torch.from_numpy(v) for k, v in sample_feed(model, texts).items()}
    inputs = {k: v for k, v in feed.items() if "." not in k}
    task_inputs = {task: {k.partition(".")[2]: v for k, v in feed.items() if k.startswith(task + ".")}}
    the_task = model.tasks[task]
    kwargs = {k: inputs[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in inputs}
    if not getattr(model, "_uses_token_types", True):
        kwargs.pop("token_type_ids", None)
    with torch.no_grad():
        host = the_task.host_outputs(model(inputs, task_inputs, [task])[task])
        out = stock(**kwargs)
    worst = 0.0
    for key, field_name in (spec.outputs or {"": "logits"}).items():
        got = getattr(out, field_name).float()
        if the_task.needs_words:  # polytask reads each word's first sub-word
            index = inputs["word_index"].clamp(min=0)
            got = got.gather(1, index.unsqueeze(-1).expand(-1, -1, got.shape[-1]))
        if spec.activation == "softmax":
            got = got.softmax(-1)
        elif spec.activation == "sigmoid":
            got = got.sigmoid()
        ref = np.stack([np.asarray(h[key] if key else h, dtype=np.float64) for h in host])
        diff = np.abs(ref - got.double().numpy().reshape(ref.shape)) / np.maximum(1.0, np.abs(ref))
        worst = max(worst, float(diff.max()))
    return worst


def run_hf_export(checkpoint: Path, task: str | None, out: Path | None) -> HfExport:
    """What the CLI runs: load, export, and say what could not be (PolytaskError with the reason)."""
    if not task:
        raise PolytaskError("--format hf exports ONE task: give --task NAME")
    model = MultiTaskModel.from_pretrained(checkpoint)
    return export_hf(model, task, out or default_folder(checkpoint, task), source=str(checkpoint))
