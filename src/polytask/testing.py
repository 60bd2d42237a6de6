"""A tiny random BERT saved like a hub checkpoint, for tests and the benchmarks' ``--smoke`` modes.

It goes through the real loading path (``AutoModel.from_pretrained`` of a folder with a fast WordPiece tokenizer),
so a test on it exercises the same code as a real encoder, in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"


def tiny_bert(folder: str | Path, words: Iterable[str] = (), seed: int = 0, max_positions: int = 128) -> str:
    """Write a 2-layer, 32-wide random BERT whose vocabulary holds ``words`` (lower-cased), single characters and
    their ``##`` continuations (so any lower-case text tokenises without [UNK]) into ``folder``; -> the folder."""
    import torch
    # transformers 5 still exports BertTokenizerFast (an alias of BertTokenizer) but leaves it out of the names its
    # typed modules declare; transformers 4 declares it (hence unused-ignore)
    from transformers import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined, unused-ignore]

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + sorted({w.lower() for w in words} - set(SPECIAL) - set(CHARS))
    vocab += list(CHARS) + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions)
    BertModel(config, add_pooling_layer=False).save_pretrained(str(folder))
    return str(folder)
