"""Encoder resolution: the `minilm` alias, local folders, hub ids (offline here)."""

from __future__ import annotations

import pytest

from polytask.encoder import load_encoder, resolve_encoder_name
from polytask.errors import PolytaskError

from conftest import minilm_or_skip


def test_local_folder_loads(tiny_encoder: str) -> None:
    model, tok = load_encoder(tiny_encoder)
    assert tok.is_fast and model.config.hidden_size == 32


def test_minilm_alias_resolves_to_packaged_folder() -> None:
    path = minilm_or_skip()
    assert resolve_encoder_name("minilm") == path


def test_hub_id_offline_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_encoder_name("some-org/no-such-model") == "some-org/no-such-model"  # kept as a hub id
    with pytest.raises(PolytaskError, match="(?s)could not load encoder 'some-org/no-such-model'.*hub id with network"):
        load_encoder("some-org/no-such-model")


@pytest.mark.skip(reason="downloading a hub model (e.g. bert-base-uncased) needs network access, which this "
                         "environment and CI do not have; the hub path is the plain transformers from_pretrained call")
def test_hub_download() -> None:  # pragma: no cover
    load_encoder("bert-base-uncased")
