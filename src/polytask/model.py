"""``MultiTaskModel``: one shared encoder, one head per task, one encoder pass for every task of a batch."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polytask.tasks import Task
from polytask.tasks.base import Encoded, Output


class MultiTaskModel(nn.Module):
    """Shared encoder + task heads.

    ``forward(inputs, task_inputs, tasks)`` runs the encoder once and every requested head on its output
    (:meth:`heads_forward`, the one head dispatch that training, evaluation, the Pipeline, the server and the ONNX
    graph all use). Each task's :meth:`Task.forward` decides what its head reads (pooled vector, token vectors, the
    first sub-word of each word, its own batch fields). With ``task_embedding`` a learned per-task vector (zero at
    start) is added to everything a head reads.
    """

    def __init__(self, encoder: nn.Module, tasks: dict[str, Task], pooling: str = "mean",
                 task_embedding: bool = False, dropout: float = 0.1, sharing: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.tasks = dict(tasks)  # plain dict: label spaces, input specs and decoding live on the Task objects
        self.pooling, self.dropout = pooling, dropout
        config: Any = encoder.config  # the transformers config (to nn.Module's typing, a submodule or a tensor)
        self.hidden = int(config.hidden_size)
        self.heads = nn.ModuleDict()
        # one vector per task, keyed by its name (not its position): adding a task keeps every other task's row
        self.task_embedding: nn.ParameterDict | None = nn.ParameterDict() if task_embedding else None
        for name, task in tasks.items():
            self._add_parameters(name, task)
        from polytask.sharing import build_sharing

        # how the tasks share the encoder's layers (encoder.sharing; polytask.sharing): hard (one pass), or per-task
        # top layers (adapters, experts, cross-stitched branches) above a bottom that runs once per batch
        self.sharing = build_sharing(sharing, encoder, list(tasks))
        self._uses_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
        # tokenizer id -> row of a pruned word-embedding table (polytask.vocabulary); None: the encoder's own ids
        self.vocab_map: torch.Tensor | None
        self.register_buffer("vocab_map", None)  # a buffer once set: moves with .to() and is saved with the weights
        # filled by from_pretrained / the trainer, for the pipeline and evaluate
        self.tokenizer: Any = None
        self.run_config: dict[str, Any] | None = None
        self.max_length: int = 512

    def encoder_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       token_type_ids: torch.Tensor | None = None) -> dict[str, Any]:
        """The encoder's keyword arguments: ids through a pruned vocabulary's map, token types where it uses them."""
        if self.vocab_map is not None:  # a pruned vocabulary: the tokenizer's ids -> the kept rows (<unk> outside)
            input_ids = self.vocab_map[input_ids]
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._uses_token_types:
            kwargs["token_type_ids"] = token_type_ids
        return kwargs

    def pool(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token vectors [B, T, H] -> one vector per row [B, H] (mean over real tokens, or the first token)."""
        if self.pooling == "cls":
            return tokens[:, 0]
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (token vectors [B, T, H], pooled vector [B, H]) of the whole encoder, every layer shared."""
        tokens = self.encoder(**self.encoder_inputs(input_ids, attention_mask, token_type_ids)).last_hidden_state
        return tokens, self.pool(tokens, attention_mask)

    def forward(self, inputs: dict[str, torch.Tensor], task_inputs: dict[str, dict[str, torch.Tensor]] | None = None,
                tasks: list[str] | None = None, return_features: bool = False, for_loss: bool = False
                ) -> dict[str, Output] | tuple[dict[str, Output], torch.Tensor]:
        """``inputs``: input_ids, attention_mask [B, T] (token_type_ids, word_index [B, W] when present);
        ``task_inputs``: each task's own tensors. -> {task: head output}; with ``return_features`` also the shared
        representation [B, T, H], what gradient methods differentiate through: the encoder's token vectors under
        hard sharing, the output of the shared bottom layers under a design with per-task top layers.
        ``for_loss``: the caller reads only what the losses need (training, look-ahead loss measurements), so a
        head whose predictions cost more than its loss (a generating head's search) skips them even in eval mode.

        The sharing design runs the shared part once and its top layers once per group of tasks; each group's
        tokens are pooled and go through the one head dispatch."""
        mask = inputs["attention_mask"]
        names = tasks or list(self.tasks)
        kwargs = self.encoder_inputs(inputs["input_ids"], mask, inputs.get("token_type_ids"))
        passes, features = self.sharing.encode(kwargs, names)
        out: dict[str, Output] = {}
        for group, tokens in passes:
            out.update(self.heads_forward(tokens, self.pool(tokens, mask), mask, inputs.get("word_index"),
                                          task_inputs or {}, group, for_loss))
        if len(passes) > 1:
            out = {name: out[name] for name in names}  # in the order asked, whatever the grouping
        return (out, features) if return_features else out

    def auxiliary_losses(self) -> dict[str, Any]:
        """The sharing design's own losses of the last forward (name -> AuxLoss; e.g. load balancing)."""
        return self.sharing.auxiliary_losses()

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters below the shared representation (a gradient method's Jacobian columns)."""
        return self.sharing.shared_parameters()

    def set_vocab_map(self, mapping: torch.Tensor) -> None:
        """Use a pruned word-embedding table: ``mapping`` [V] gives each tokenizer id its row (saved as a buffer)."""
        self.vocab_map = mapping.to(device=self.device, dtype=torch.long)

    def add_task(self, name: str, task: Task) -> None:
        """A new task with a fresh head (and a zero task-embedding row): every existing parameter is kept."""
        if name in self.tasks:
            raise ValueError(f"task {name!r} is in the model already")
        self.tasks[name] = task
        self._add_parameters(name, task)
        self.sharing.add_task(name)

    def _add_parameters(self, name: str, task: Task) -> None:
        self.heads[name] = task.build_head_on(self.encoder, self.hidden, self.dropout)
        if self.task_embedding is not None:
            self.task_embedding[name] = nn.Parameter(torch.zeros(self.hidden))  # start as the plain shared model

    def heads_forward(self, tokens: torch.Tensor, pooled: torch.Tensor, attention_mask: torch.Tensor,
                      word_index: torch.Tensor | None, task_inputs: dict[str, dict[str, torch.Tensor]],
                      names: list[str], for_loss: bool = False) -> dict[str, Output]:
        """Every head of ``names`` on one encoder output (``for_loss``: see :meth:`forward`)."""
        out: dict[str, Output] = {}
        for name in names:
            bias = self.task_embedding[name] if self.task_embedding is not None else None
            encoded = Encoded(tokens, pooled, attention_mask, word_index, bias, for_loss)
            out[name] = self.tasks[name].forward(self.heads[name], encoded, task_inputs.get(name, {}))
        return out

    # -- persistence (implemented in polytask.checkpoint) ------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> MultiTaskModel:
        """Load a checkpoint folder written by ``save_pretrained`` / ``polytask train`` (safetensors only)."""
        from polytask.checkpoint import load_model

        return load_model(path, device=device)

    def save_pretrained(self, path: str | Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint folder atomically (temp folder + rename)."""
        from polytask.checkpoint import save_model

        return save_model(self, path, metrics=metrics)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self, trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)
