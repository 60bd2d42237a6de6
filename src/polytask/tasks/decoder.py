"""The seq2seq head: a Transformer decoder on the shared encoder, warm-started from the encoder itself (BERT2BERT:
Rothe, Narayan & Severyn 2020, "Leveraging Pre-trained Checkpoints for Sequence Generation Tasks").

The decoder is the encoder's own architecture as a causal language model (``AutoModelForCausalLM`` with
``is_decoder=True, add_cross_attention=True``: ``BertLMHeadModel`` for BERT/MiniLM). Decoder layer i starts as a copy
of encoder layer i (self-attention, feed-forward, layer norms; with fewer decoder layers, the first ones), as do the
position embeddings; the cross-attention blocks and the output transform are new. The word embeddings are not
copied: the decoder reads and predicts through the encoder's own table (input embeddings and output projection tied
to it, as in Rothe et al.'s shared setups), so the head adds no vocabulary-sized matrix and the checkpoint stores the
table once. Generation is transformers' ``generate`` (greedy or beam search) on this model with the encoder's token
vectors as ``encoder_hidden_states``: no search of our own.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polytask.errors import PolytaskError


class _EncoderTable(nn.Module):
    """The encoder's current word-embedding table, looked up at every call (never copied or registered here: the
    checkpoint keeps it once, under the encoder, and a resized table is seen at once)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self._owner = [encoder]  # a list: a submodule attribute would register the encoder inside the head

    @property
    def weight(self) -> torch.Tensor:
        embeddings: Any = self._owner[0].get_input_embeddings()  # type: ignore[operator]
        return embeddings.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] -> vectors [B, L, H]."""
        return F.embedding(ids, self.weight)


class _TiedProjection(_EncoderTable):
    """Hidden vectors -> logits over the vocabulary through the encoder's table, plus a bias of the head's own.
    ``bias`` reads None so that a causal-LM class's ``set_output_embeddings`` does not register the bias a second time
    (a tensor under two names cannot be written to safetensors)."""

    bias = None

    def __init__(self, encoder: nn.Module, vocab: int) -> None:
        super().__init__(encoder)
        self.logit_bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, L, H] -> logits [B, L, V]."""
        return F.linear(hidden, self.weight, self.logit_bias)


def _cache_argument(model: nn.Module) -> str:
    """The name transformers gives the key/value cache argument (``cache`` from 5.24, ``past_key_values`` before)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class Seq2SeqDecoder(nn.Module):
    """``forward``: teacher-forced logits; ``generate``: token ids by greedy or beam search."""

    def __init__(self, encoder: nn.Module, layers: int | None) -> None:
        from transformers import AutoModelForCausalLM

        super().__init__()
        base: Any = encoder.config
        config = copy.deepcopy(base)
        config.is_decoder, config.add_cross_attention, config.tie_word_embeddings = True, True, False
        config.num_hidden_layers = layers or int(base.num_hidden_layers)
        if config.num_hidden_layers > int(base.num_hidden_layers):
            raise PolytaskError(f"decoder_layers: {config.num_hidden_layers}, but the encoder has "
                                f"{base.num_hidden_layers} layers to start them from")
        try:
            self.decoder: Any = AutoModelForCausalLM.from_config(config)
        except ValueError as exc:
            raise PolytaskError(f"the encoder ({type(encoder).__name__}) has no causal-LM decoder class in "
                                f"transformers to build a seq2seq head from: {exc}") from None
        result = self.decoder.base_model.load_state_dict(encoder.state_dict(), strict=False)
        unexpected = [k for k in result.missing_keys if "crossattention" not in k and "cross_attn" not in k]
        if unexpected:  # only the cross-attention is new; anything else means the copy did not line up
            raise PolytaskError(f"cannot start the decoder from the encoder's weights: {', '.join(unexpected[:5])} "
                                "have no counterpart in the encoder")
        self.decoder.set_input_embeddings(_EncoderTable(encoder))
        self.decoder.set_output_embeddings(_TiedProjection(encoder, int(base.vocab_size)))
        self.max_positions = int(getattr(config, "max_position_embeddings", 512))
        self._cache = _cache_argument(self.decoder.base_model)

    def table_rows(self) -> int:
        return int(self.decoder.get_input_embeddings().weight.shape[0])

    def forward(self, decoder_input_ids: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """decoder_input_ids [B, L] (start token first), encoder tokens [B, T, H], mask [B, T] -> logits [B, L, V]."""
        out = self.decoder(input_ids=decoder_input_ids, encoder_hidden_states=tokens, encoder_attention_mask=mask,
                           use_cache=False)
        return out.logits

    def generate(self, tokens: torch.Tensor, mask: torch.Tensor, start: int, end: int, pad: int, num_beams: int,
                 max_new_tokens: int, length_penalty: float = 1.0, no_repeat_ngram_size: int = 0) -> torch.Tensor:
        """encoder tokens [B, T, H], mask [B, T] -> ids [B, 1 + n] (the start token first; rows that ended early
        are padded with ``pad``), by transformers' ``generate`` (beam search when ``num_beams`` > 1)."""
        from transformers import GenerationConfig
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        batch = tokens.shape[0]
        config = GenerationConfig(do_sample=False, num_beams=num_beams, max_new_tokens=max_new_tokens,
                                  length_penalty=length_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                                  early_stopping=num_beams > 1, bos_token_id=start, eos_token_id=end, pad_token_id=pad)
        start_ids = torch.full((batch, 1), start, dtype=torch.long, device=tokens.device)
        # the decoder cross-attends: its cache holds self- and cross-attention keys (one per beam after expansion)
        cache = {self._cache: EncoderDecoderCache(DynamicCache(), DynamicCache())}
        return self.decoder.generate(input_ids=start_ids, attention_mask=torch.ones_like(start_ids),
                                     encoder_hidden_states=tokens, encoder_attention_mask=mask,
                                     generation_config=config, **cache)
