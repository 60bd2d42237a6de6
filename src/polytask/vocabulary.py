"""Pruning the encoder's word-embedding table to the pieces the data uses (``encoder.vocabulary``).

A multilingual vocabulary is mostly rows a given job never reads: multilingual-e5-small keeps 96M of its 117.5M
parameters in 250,037 word-embedding rows. Pruning keeps the rows of the pieces that occur in the chosen splits
(``train``, or ``all_splits`` to cover the validation and test text too) plus every special and added token, and
puts a map from the tokenizer's ids to the kept rows in the model (a buffer ``vocab_map`` [V], saved in
model.safetensors). The tokenizer itself is unchanged, so inference tokenises exactly as training did; a piece
outside the kept set reads the row of ``<unk>`` (or of the tokenizer's unknown token). Texts tokenise as before:
only the embedding lookup changes.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.errors import PolytaskError

log = logging.getLogger("polytask")

SPLITS_OF = {"train": ("train",), "all_splits": ("train", "validation", "test")}


def used_ids(data: Any, splits: tuple[str, ...]) -> set[int]:
    """Every token id in the features of ``splits`` (every input group)."""
    ids: set[int] = set()
    for split in splits:
        for group in data.splits.get(split, {}).values():
            for feature in group.features:
                ids.update(np.unique(feature.input_ids).tolist())
    return ids


def prune_vocabulary(model: Any, data: Any, mode: str) -> int | None:
    """Keep the word-embedding rows of the ids ``mode`` selects (train / all_splits); -> rows kept (None: ``full``,
    or a model already pruned, e.g. started from a pruned checkpoint, whose map stays as it is)."""
    if mode == "full":
        return None
    if model.vocab_map is not None:
        log.info("encoder.vocabulary: the model's vocabulary is pruned already (%d rows); kept as it is",
                 model.encoder.get_input_embeddings().num_embeddings)
        return None
    tokenizer = model.tokenizer
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    keep = sorted(used_ids(data, SPLITS_OF[mode]) | special)
    unknown = tokenizer.unk_token_id
    if unknown is None:
        raise PolytaskError("encoder.vocabulary: the tokenizer has no unknown token for the pieces left out; use "
                            "encoder.vocabulary: full")
    apply_pruning(model, keep, unknown)
    return len(keep)


def apply_pruning(model: Any, keep: list[int], unknown: int) -> None:
    """Replace the encoder's word embeddings by the rows ``keep`` (sorted ids) and set ``model.vocab_map``."""
    embeddings: nn.Embedding = model.encoder.get_input_embeddings()
    size = max(embeddings.num_embeddings, len(model.tokenizer))
    rows = torch.tensor(keep, dtype=torch.long)
    # the padding row keeps its no-gradient rule under its new index (specials have the lowest ids, so it rarely moves)
    pad = keep.index(embeddings.padding_idx) if embeddings.padding_idx in keep else None
    pruned = nn.Embedding(len(keep), embeddings.embedding_dim, padding_idx=pad)
    with torch.no_grad():
        pruned.weight.copy_(embeddings.weight[rows])
    pruned.weight.requires_grad_(embeddings.weight.requires_grad)
    model.encoder.set_input_embeddings(pruned)
    model.encoder.config.vocab_size = len(keep)  # the saved config rebuilds the pruned table ...
    model.encoder.config.pad_token_id = pad  # ... with the padding row where it now is
    mapping = torch.full((size,), keep.index(unknown), dtype=torch.long)
    mapping[rows] = torch.arange(len(keep))
    model.set_vocab_map(mapping)


def vocabulary_config(model: Any) -> dict[str, int] | None:
    """What config.json records of a pruned vocabulary (None when it is the encoder's own)."""
    if model.vocab_map is None:
        return None
    return {"ids": int(model.vocab_map.numel()), "rows": int(model.encoder.get_input_embeddings().num_embeddings)}
