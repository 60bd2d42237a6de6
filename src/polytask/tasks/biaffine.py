"""The head of ``relation_extraction`` (``polytask.tasks.relation_extraction``): an entity tagger and a biaffine
scorer of ordered word pairs (Dozat & Manning 2017, "Deep Biaffine Attention for Neural Dependency Parsing") over
the same word vectors, both plain tensors so the head exports to ONNX."""

from __future__ import annotations

import torch
from torch import nn

from polytask.tasks.base import mlp_head


class JointHead(nn.Module):
    """Word vectors [B, W, H] -> entity tag logits [B, W, C] and pair logits [B, W, W, R + 1]."""

    def __init__(self, hidden: int, tags: int, relations: int, inner: int, pair_hidden: int, dropout: float) -> None:
        super().__init__()
        self.tagger = mlp_head(hidden, inner, tags, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, pair_hidden), nn.GELU())
        self.tail = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, pair_hidden), nn.GELU())
        # one extra input unit fixed at 1 on each side gives the linear and bias terms of the biaffine form
        self.biaffine = nn.Parameter(torch.zeros(relations + 1, pair_hidden + 1, pair_hidden + 1))
        nn.init.xavier_uniform_(self.biaffine[:, :-1, :-1])

    def forward(self, words: torch.Tensor) -> dict[str, torch.Tensor]:
        ones = torch.ones_like(words[..., :1])
        head = torch.cat([self.head(words), ones], dim=-1)
        tail = torch.cat([self.tail(words), ones], dim=-1)
        pairs = torch.einsum("bid,rde,bje->bijr", head, self.biaffine.to(head.dtype), tail)
        return {"tags": self.tagger(words), "pairs": pairs}
