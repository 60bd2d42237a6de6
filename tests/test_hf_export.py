"""``polytask export --format hf``: one task as a folder the stock transformers Auto classes load, with the same
predictions as polytask's Pipeline; heads no stock class reproduces are refused with the reason (exit 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from polytask.cli import app
from polytask.inference import Pipeline
from polytask.model import MultiTaskModel
from polytask.tasks import build_task

TEXTS = ["what is the weather in rome today", "play music by sting adele now", "the movie was really awful",
         "news about team game vote election"]
PAIRS = [("weather in oslo", "the weather is superb"), ("weather in cairo", "the weather is dreadful")]


@pytest.fixture(scope="module")
def cls_ckpt(trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy run's model under ``pooling: cls`` with a task embedding (random rows), a non-trivial temperature
    and an untrained span_qa head, saved and loaded through the real checkpoint path."""
    from polytask.data.input_specs import WindowInput
    from polytask.tasks.span_qa import SpanQAParams

    src = MultiTaskModel.from_pretrained(trained[1].best_dir)
    qa = build_task("qa", SpanQAParams(type="span_qa", dataset="snips"))
    qa.input = WindowInput()
    model = MultiTaskModel(src.encoder, {**src.tasks, "qa": qa}, pooling="cls", task_embedding=True)
    model.load_state_dict(src.state_dict(), strict=False)  # the heads; qa and the task embedding stay new
    torch.manual_seed(0)
    with torch.no_grad():
        for row in model.task_embedding.values():  # type: ignore[union-attr]
            row.normal_(0, 0.5)
    model.tasks["intent"].temperatures = {"label": 2.0}
    model.tokenizer, model.run_config, model.max_length = src.tokenizer, src.run_config, src.max_length
    return model.save_pretrained(tmp_path_factory.mktemp("cls") / "best")


def export(ckpt: Path, task: str, out: Path) -> Path:
    r = CliRunner().invoke(app, ["export", str(ckpt), "--format", "hf", "--task", task, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "largest relative difference" in " ".join(r.output.split())
    return out


def test_sequence_classification_matches_pipeline(cls_ckpt: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    pipe = Pipeline.from_pretrained(cls_ckpt)
    for task in ("intent", "sentiment", "topics"):
        folder = export(cls_ckpt, task, tmp_path / task)
        stock = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        with torch.no_grad():
            logits = stock(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
        ours = [p[task] for p in pipe(TEXTS, tasks=[task])]
        labels = pipe.model.tasks[task].labels
        assert [stock.config.id2label[i] for i in range(len(labels))] == labels
        assert stock.config.label2id == {label: i for i, label in enumerate(labels)}
        if task == "topics":  # multi-label: every label's probability
            assert stock.config.problem_type == "multi_label_classification"
            got = logits.sigmoid().numpy()
            want = np.array([[p["scores"][label] for label in labels] for p in ours])
            np.testing.assert_allclose(got, want, atol=2e-6)
        else:  # argmax label and its (calibrated: intent has T = 2) probability
            probs = logits.softmax(-1)
            assert [stock.config.id2label[int(i)] for i in probs.argmax(-1)] == [p["label"] for p in ours]
            np.testing.assert_allclose(probs.max(-1).values.numpy(), [p["score"] for p in ours], atol=2e-6)


def test_transformers_pipeline_reads_the_export(cls_ckpt: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    folder = export(cls_ckpt, "intent", tmp_path / "intent")
    got = pipeline("text-classification", model=str(folder), device="cpu")(TEXTS[:2])
    ours = Pipeline.from_pretrained(cls_ckpt)(TEXTS[:2], tasks=["intent"])
    assert [g["label"] for g in got] == [o["intent"]["label"] for o in ours]
    assert [g["score"] for g in got] == pytest.approx([o["intent"]["score"] for o in ours], abs=2e-6)


def test_regression_on_pairs_matches_pipeline(cls_ckpt: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = export(cls_ckpt, "similarity", tmp_path / "sim")
    stock = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    assert stock.config.num_labels == 1 and stock.config.problem_type == "regression"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer([a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_tensors="pt")
    with torch.no_grad():
        values = stock(**enc).logits[:, 0].numpy()
    ours = [p["similarity"]["value"] for p in Pipeline.from_pretrained(cls_ckpt)(PAIRS, tasks=["similarity"])]
    np.testing.assert_allclose(values, ours, atol=1e-5)  # on the label scale: std and mean folded in


def test_token_classification_matches_pipeline(cls_ckpt: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    folder = export(cls_ckpt, "slots", tmp_path / "slots")
    stock = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        best = stock(**enc).logits.argmax(-1)
    ours = Pipeline.from_pretrained(cls_ckpt)(TEXTS, tasks=["slots"])
    for row, prediction in enumerate(ours):
        words = enc.word_ids(row)
        first = [words.index(w) for w in range(len(prediction["slots"]["tags"]))]  # each word's first sub-word
        assert [stock.config.id2label[int(best[row, i])] for i in first] == prediction["slots"]["tags"]


def test_question_answering_logits_match_on_the_context(cls_ckpt: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    folder = export(cls_ckpt, "qa", tmp_path / "qa")
    stock = AutoModelForQuestionAnswering.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(["who plays music"], ["play music by sting now"], return_tensors="pt")
    model = MultiTaskModel.from_pretrained(cls_ckpt)
    context = torch.tensor([[s == 1 for s in enc.sequence_ids(0)]])
    with torch.no_grad():
        got = stock(**enc)
        ours = model(dict(enc), {"qa": {"allowed": context.float()}}, ["qa"])["qa"]
    assert isinstance(ours, dict)
    for key, field in (("start", "start_logits"), ("end", "end_logits")):
        torch.testing.assert_close(getattr(got, field)[context], ours[key][context], atol=1e-5, rtol=1e-5)


def test_refusals_say_why_and_what_to_change(trained, cls_ckpt: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    best = str(trained[1].best_dir)  # pooling: mean
    r = runner.invoke(app, ["export", best, "--format", "hf", "--task", "intent", "--out", str(tmp_path / "a")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "encoder.pooling: mean" in r.output and "encoder.pooling: cls" in r.output
    assert not (tmp_path / "a").exists()
    # token tasks read no pooled vector: they export under mean pooling too
    export(trained[1].best_dir, "slots", tmp_path / "slots")
    r = runner.invoke(app, ["export", best, "--format", "hf", "--task", "nope"])
    assert r.exit_code == 2 and "--task" in r.output and "allowed: intent, slots" in r.output
    r = runner.invoke(app, ["export", best, "--format", "hf"])
    assert r.exit_code == 2 and "give --task NAME" in r.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    r = runner.invoke(app, ["export", str(cls_ckpt), "--format", "hf", "--task", "slots", "--out",
                            str(tmp_path / "mine")])
    assert r.exit_code == 2 and "would be replaced" in r.output
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_heads_no_stock_class_reproduces_are_refused() -> None:
    from polytask.tasks.classification import ClassificationParams
    from polytask.tasks.relation_classification import RelationClassificationParams
    from polytask.tasks.stock import NotExportable

    deep = build_task("intent", ClassificationParams(type="classification", dataset="d", label="l", head_hidden=8,
                                                     labels=["a", "b"]))
    with pytest.raises(NotExportable, match="head_hidden: 8.*head_hidden: 0"):
        deep.stock_head(deep.build_head(16, 0.0))
    relation = build_task("rel", RelationClassificationParams(type="relation_classification", dataset="d",
                                                              labels=["a", "b"]))
    with pytest.raises(NotExportable, match="entities"):
        relation.stock_head(relation.build_head(16, 0.0))


@pytest.mark.real
def test_minilm_first_token_heads_export_within_float32_rounding(tmp_path: Path) -> None:
    """On the real MiniLM the near-identity pooler (tanh(eps x) / eps) stays at float32 rounding: random
    classification and regression heads (and task-embedding rows) give the stock outputs polytask gives."""
    from transformers import AutoModelForSequenceClassification

    from conftest import minilm_or_skip
    from polytask.data.input_specs import TextInput
    from polytask.encoder import load_encoder
    from polytask.hf_export import export_hf
    from polytask.tasks.classification import ClassificationParams
    from polytask.tasks.regression import RegressionParams

    minilm_or_skip()
    encoder, tokenizer = load_encoder("minilm")
    tasks = {"c": build_task("c", ClassificationParams(type="classification", dataset="d", label="l",
                                                       labels=list("abcde"))),
             "r": build_task("r", RegressionParams(type="regression", dataset="d", label="l"))}
    for task in tasks.values():
        task.input = TextInput()
    torch.manual_seed(0)
    model = MultiTaskModel(encoder, tasks, pooling="cls", task_embedding=True)
    with torch.no_grad():
        for p in [*model.heads.parameters(), *model.task_embedding.values()]:  # type: ignore[union-attr]
            p.normal_(0, 0.3)
    model.tokenizer, model.max_length = tokenizer, 128
    texts = ["The quick brown fox jumps over the lazy dog.", "I absolutely loved this film, a masterpiece!"]
    for name in tasks:
        done = export_hf(model, name, tmp_path / name, texts=texts)
        assert done.max_difference < 1e-5
    stock = AutoModelForSequenceClassification.from_pretrained(tmp_path / "c").eval()
    with torch.no_grad():
        probs = stock(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    ours = [p["c"] for p in Pipeline(model)(texts, tasks=["c"])]
    assert [stock.config.id2label[int(i)] for i in probs.argmax(-1)] == [p["label"] for p in ours]
