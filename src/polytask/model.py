"""``MultiTaskModel``: one shared encoder, one head per task, one encoder pass for every task of a batch."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polytask.tasks import Task


def gather_words(per_token: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
    """per_token [B, T, C], word_index [B, W] (-1 = no token) -> per word [B, W, C] (rows of -1 words are copies
    of token 0 and must be ignored by the caller: losses get IGNORE targets there, decoding tags them O)."""
    index = word_index.clamp(min=0).unsqueeze(-1).expand(-1, -1, per_token.shape[-1])
    return per_token.gather(1, index)


class MultiTaskModel(nn.Module):
    """Shared encoder + task heads.

    ``forward`` returns ``{task: logits}``: [B, C] for sequence tasks (read from the pooled vector) and [B, W, C] for
    token tasks (head on every token, then the rows of each word's first sub-word). With ``task_embedding`` a
    learned per-task vector (zero at start) is added to the features each head reads.
    """

    def __init__(self, encoder: nn.Module, tasks: dict[str, Task], pooling: str = "mean",
                 task_embedding: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = encoder
        self.tasks = tasks  # plain dict: label spaces and decoding live on the Task objects, weights in heads
        self.pooling, self.dropout = pooling, dropout
        hidden = int(encoder.config.hidden_size)
        self.heads = nn.ModuleDict({name: task.build_head(hidden, dropout) for name, task in tasks.items()})
        self.task_embedding = nn.Embedding(len(tasks), hidden) if task_embedding else None
        if self.task_embedding is not None:
            nn.init.zeros_(self.task_embedding.weight)  # start as the plain shared model
        self._task_ids = {name: i for i, name in enumerate(tasks)}
        self._uses_token_types = "token_type_ids" in inspect.signature(encoder.forward).parameters
        # filled by from_pretrained / the trainer, for the pipeline and evaluate
        self.tokenizer: Any = None
        self.run_config: dict[str, Any] | None = None
        self.max_length: int = 512
        self.pair_tasks: set[str] = set()  # tasks trained on text pairs

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (token vectors [B, T, H], pooled vector [B, H])."""
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._uses_token_types:
            kwargs["token_type_ids"] = token_type_ids
        tokens = self.encoder(**kwargs).last_hidden_state
        if self.pooling == "cls":
            return tokens, tokens[:, 0]
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return tokens, pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, word_index: torch.Tensor | None = None,
                tasks: list[str] | None = None, **_: Any) -> dict[str, torch.Tensor]:
        tokens, pooled = self.encode(input_ids, attention_mask, token_type_ids)
        out: dict[str, torch.Tensor] = {}
        for name in tasks or list(self.tasks):
            token_level = self.tasks[name].level == "token"
            features = tokens if token_level else pooled
            if self.task_embedding is not None:
                features = features + self.task_embedding.weight[self._task_ids[name]]
            logits = self.heads[name](features)
            if token_level:
                if word_index is None:
                    raise ValueError(f"task {name!r} tags words: the batch needs word_index")
                logits = gather_words(logits, word_index)
            out[name] = logits
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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
