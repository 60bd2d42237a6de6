"""The seq2seq task type (BERT2BERT decoder on the shared encoder) on the tiny random BERT: training lowers the loss,
greedy and beam search, one encoder pass for a batch carrying a generation and a classification task, generation
settings per call (Pipeline, server), ONNX/HF export of a model with a generating task, the parallel reader's errors
and the generation metrics. The generic contract (checkpoint round trip, Pipeline = evaluation) runs for seq2seq in
test_task_contract.py."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from polytask.config import validate_config
from polytask.data.batching import collate
from polytask.data.loading import build_tasks, load_data
from polytask.data.readers import ReaderOptions, read_rows
from polytask.encoder import load_encoder
from polytask.errors import DataError, PolytaskError
from polytask.evaluate import predict_split
from polytask.inference import Pipeline
from polytask.tasks.generation_metrics import generation_scores, rouge_scores, sacrebleu_scores
from polytask.train import build_model

from conftest import ARTISTS, CITIES, FILLER, minilm_or_skip, shared_data_or_skip
from toydata import make_parallel


def _joint_jsonl(path: Path, n: int, seed: int) -> None:
    """One source labelling two tasks of one input: a target text (seq2seq) and a label (classification)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            city, artist = rng.choice(CITIES), rng.choice(ARTISTS)
            music = rng.random() < 0.5
            text = f"play music by {artist} now" if music else f"weather in {city} today"
            f.write(json.dumps({"text": text, "target": artist if music else city,
                                "intent": "music" if music else "weather"}) + "\n")


@pytest.fixture(scope="module")
def joint(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """(model in train mode, tasks, train split) of seq2seq + classification on one jsonl source."""
    folder = tmp_path_factory.mktemp("s2s-joint")
    _joint_jsonl(folder / "train.jsonl", 24, 1)
    _joint_jsonl(folder / "dev.jsonl", 8, 2)
    cfg = validate_config({"encoder": {"name": tiny_encoder, "max_length": 16},
                           "datasets": {"d": {"format": "jsonl", "train": str(folder / "train.jsonl"),
                                              "validation": str(folder / "dev.jsonl")}},
                           "tasks": {"gen": {"type": "seq2seq", "dataset": "d", "label": "target",
                                             "max_target_length": 6},
                                     "cls": {"type": "classification", "dataset": "d", "label": "intent"}},
                           "train": {"output_dir": str(folder / "run")}})
    tasks = build_tasks(cfg)
    encoder, tokenizer = load_encoder(tiny_encoder)
    data = load_data(cfg, tokenizer, splits=("train", "validation"), tasks=tasks, fit=True)
    torch.manual_seed(0)
    model = build_model(cfg, data, encoder, tokenizer).train()
    return model, tasks, data


def test_training_lowers_the_loss_and_generation_answers(joint: tuple[Any, Any, Any]) -> None:
    model, tasks, data = joint
    train = data.splits["train"]["d"]
    batch = collate(train, list(range(len(train.features))), tasks, model.tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(batch.inputs, batch.task_inputs, ["gen", "cls"])
        loss = tasks["gen"].loss(out["gen"], batch.targets["gen"])
        optimizer.zero_grad()
        (loss + tasks["cls"].loss(out["cls"], batch.targets["cls"])).backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses
    val = data.splits["validation"]["d"]
    greedy = predict_split(model, val, tasks=["gen"])["gen"]
    assert all(isinstance(p["text"], str) for p in greedy)
    assert set(tasks["gen"].metrics(greedy, val.golds["gen"])) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL"}

    # transformers' greedy search (with its key/value cache) = argmax, one token at a time, of the plain decoder
    model.eval()
    task, head = tasks["gen"], model.heads["gen"]
    vbatch = collate(val, list(range(len(val.features))), tasks, model.tokenizer.pad_token_id)
    with torch.no_grad():
        tokens, _ = model.encode(vbatch.inputs["input_ids"], vbatch.inputs["attention_mask"],
                                 vbatch.inputs.get("token_type_ids"))
        mask = vbatch.inputs["attention_mask"]
        searched = head.generate(tokens, mask, task.start, task.end, task.pad, 1, 5)
        ids = torch.full((len(val), 1), task.start)
        for _ in range(5):
            step = head(ids, tokens, mask)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, step], 1)
    model.train()
    for row, manual in zip(searched.tolist(), ids.tolist()):
        end = manual.index(task.end) + 1 if task.end in manual else len(manual)
        assert row[:end] == manual[:end] and all(t == task.pad for t in row[end:])
    with tasks["gen"].generation_settings(num_beams=1):
        assert predict_split(model, val, tasks=["gen"])["gen"] == greedy  # the default is greedy
    with tasks["gen"].generation_settings(num_beams=3):
        beam = predict_split(model, val, tasks=["gen"])["gen"]
    assert len(beam) == len(greedy) and all(isinstance(p["text"], str) for p in beam)
    with tasks["gen"].generation_settings(max_new_tokens=1):
        short = predict_split(model, val, tasks=["gen"])["gen"]
    assert all(len(model.tokenizer.tokenize(p["text"])) <= 1 for p in short)


def test_one_encoder_pass_for_generation_and_classification(joint: tuple[Any, Any, Any]) -> None:
    model, tasks, data = joint
    val = data.splits["validation"]["d"]
    calls: list[int] = []
    hook = model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        batch = collate(val, list(range(len(val.features))), tasks, model.tokenizer.pad_token_id)
        model.train()
        model(batch.inputs, batch.task_inputs, ["gen", "cls"])
        assert len(calls) == 1  # training: teacher-forced decoder and classifier on one pass
        model.eval()
        with torch.no_grad():
            out = model(batch.inputs, batch.task_inputs, ["gen", "cls"])
        assert len(calls) == 2 and "generated" in out["gen"]  # inference: beam/greedy search reuses the pass
        calls.clear()
        predictions = Pipeline(model, batch_size=len(val))([e.text for e in val.examples], tasks=["gen", "cls"],
                                                           generation={"num_beams": 2})
        assert len(calls) == 1 and set(predictions[0]) == {"gen", "cls"}
    finally:
        hook.remove()
        model.train()


def test_eval_mode_computes_only_what_the_caller_reads(joint: tuple[Any, Any, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation reads generated ids, never the teacher-forced logits; a loss-only caller in eval mode (the
    affinity look-ahead) gets the loss without a search."""
    from polytask.training.feed import MicroBatch, Part
    from polytask.training.step import forward_losses

    model, tasks, data = joint
    val = data.splits["validation"]["d"]
    batch = collate(val, list(range(len(val.features))), tasks, model.tokenizer.pad_token_id)
    model.eval()
    try:
        with torch.no_grad():
            out = model(batch.inputs, batch.task_inputs, ["gen", "cls"])
        assert set(out["gen"]) == {"generated"}  # targets are in the batch, yet no teacher-forced decoder pass

        def no_search(*_: Any, **__: Any) -> None:
            raise AssertionError("a loss-only forward ran the search")

        monkeypatch.setattr(model.heads["gen"], "generate", no_search)
        with torch.no_grad():
            losses, _ = forward_losses(model, MicroBatch([Part(batch, ["gen", "cls"])]), tasks)
        model.train()
        with torch.no_grad():
            trained, _ = forward_losses(model, MicroBatch([Part(batch, ["gen", "cls"])]), tasks)
    finally:
        model.train()
    assert set(losses) == {"gen", "cls"} and torch.isfinite(losses["gen"])
    assert set(trained) == {"gen", "cls"}


@pytest.mark.parametrize("sharing", [{"name": "hard"}, {"name": "lora", "layers": 1, "tasks": ["gen"]},
                                     {"name": "moe", "layers": 1, "experts": 2}, {"name": "cross_stitch", "layers": 1}],
                         ids=lambda s: s["name"])
def test_bf16_training_and_search_with_each_sharing_design(sharing: dict[str, Any], tiny_encoder: str,
                                                           tmp_path: Path) -> None:
    """train.precision: bf16 autocast on CPU: the teacher-forced loss trains the decoder (and the design's own
    layers), and greedy and beam search under autocast answer what they answer in float32 (no dtype clash in
    transformers' search or the key/value cache)."""
    _joint_jsonl(tmp_path / "train.jsonl", 24, 1)
    _joint_jsonl(tmp_path / "dev.jsonl", 8, 2)
    cfg = validate_config({"encoder": {"name": tiny_encoder, "max_length": 16, "sharing": sharing},
                           "datasets": {"d": {"format": "jsonl", "train": str(tmp_path / "train.jsonl"),
                                              "validation": str(tmp_path / "dev.jsonl")}},
                           "tasks": {"gen": {"type": "seq2seq", "dataset": "d", "label": "target",
                                             "max_target_length": 6, "decoder_layers": 1},
                                     "cls": {"type": "classification", "dataset": "d", "label": "intent"}},
                           "train": {"output_dir": str(tmp_path / "run"), "precision": "bf16"}})
    tasks = build_tasks(cfg)
    encoder, tokenizer = load_encoder(tiny_encoder)
    data = load_data(cfg, tokenizer, splits=("train", "validation"), tasks=tasks, fit=True)
    torch.manual_seed(0)
    model = build_model(cfg, data, encoder, tokenizer).train()
    train = data.splits["train"]["d"]
    batch = collate(train, list(range(len(train.features))), tasks, tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch.inputs, batch.task_inputs, ["gen", "cls"])
            assert out["gen"]["logits"].dtype == torch.bfloat16  # autocast reached the decoder
            loss = tasks["gen"].loss(out["gen"], batch.targets["gen"])
        optimizer.zero_grad()
        (loss + tasks["cls"].loss(out["cls"], batch.targets["cls"])).backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses
    model.eval()
    val = data.splits["validation"]["d"]
    for beams in (1, 2):
        with tasks["gen"].generation_settings(num_beams=beams):
            fp32, bf16 = (predict_split(model, val, precision=p, tasks=["gen", "cls"]) for p in ("fp32", "bf16"))
        agree = sum(a == b for a, b in zip(fp32["gen"], bf16["gen"]))
        assert agree >= 6 and all(isinstance(p["text"], str) for p in bf16["gen"]), (beams, fp32, bf16)


def test_generation_settings_are_checked(joint: tuple[Any, Any, Any]) -> None:
    model, tasks, _ = joint
    with pytest.raises(ValueError, match="num_beams must be 1 to 16"):
        with tasks["gen"].generation_settings(num_beams=17):
            pass
    assert tasks["gen"].settings()["num_beams"] == 1  # the override ended with its block


def test_server_bounds_generation_and_onnx_skips_it(joint: tuple[Any, Any, Any], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from polytask.serve.app import create_app

    model, _, _ = joint
    pipe = Pipeline(model.eval())
    with TestClient(create_app(pipe, max_batch=4, wait_ms=1, max_beams=2, max_new_tokens=4)) as client:
        ok = client.post("/predict", json={"texts": ["weather in paris today"],
                                           "generation": {"num_beams": 2, "max_new_tokens": 3}})
        assert ok.status_code == 200 and ok.json()["predictions"] == pipe(
            ["weather in paris today"], generation={"num_beams": 2, "max_new_tokens": 3})
        for bad in ({"num_beams": 3}, {"max_new_tokens": 5}, {"beams": 2}):
            refused = client.post("/predict", json={"texts": ["weather in paris"], "generation": bad})
            assert refused.status_code == 422, bad
            field, value = next(iter(bad.items()))  # the answer names the field and what is allowed
            [problem] = refused.json()["problems"]
            assert problem["where"] == f"body.generation.{field}", problem
            assert ("not permitted" if field == "beams" else f"less than or equal to {value - 1}") in problem["problem"]

    pytest.importorskip("onnxruntime")
    from polytask.export import OnnxModel, export_onnx
    from polytask.hf_export import export_hf
    from polytask.tasks.stock import NotExportable

    path = export_onnx(model, tmp_path / "model.onnx")
    meta = json.loads(Path(str(path) + ".json").read_text(encoding="utf-8"))
    assert not any(name.startswith("gen") for name in [*meta["inputs"], *meta["outputs"]])
    onnx = OnnxModel(path, model)
    assert list(onnx.tasks) == ["cls"]
    assert Pipeline(onnx)(["weather in paris today"])[0].keys() == {"cls"}
    with pytest.raises(NotExportable, match="generates text"):
        export_hf(model, "gen", tmp_path / "hf")
    model.train()


def test_cli_predict_file_and_beams_beside_a_classifier(joint: tuple[Any, Any, Any], tmp_path: Path) -> None:
    """`polytask predict` on a model with a seq2seq and a classification task: texts and --input FILE.jsonl, with
    --num-beams / --max-new-tokens, answer both tasks, as the Pipeline does with those settings."""
    from typer.testing import CliRunner

    from polytask.cli import app

    model, _, _ = joint
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    model.train()
    texts = ["weather in paris today", "play music by adele now"]
    want = Pipeline.from_pretrained(ckpt)(texts, generation={"num_beams": 3, "max_new_tokens": 3})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    runner = CliRunner()
    settings = ["--num-beams", "3", "--max-new-tokens", "3"]
    r = runner.invoke(app, ["predict", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                            *settings])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [{k: row[k] for k in ("gen", "cls")} for row in rows] == json.loads(json.dumps(want))
    r = runner.invoke(app, ["predict", str(ckpt), texts[0], *settings])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["gen"] == want[0]["gen"] and json.loads(r.output)["cls"]["label"] == \
        want[0]["cls"]["label"]


def test_validate_reads_a_seq2seq_config(tmp_path: Path, tiny_encoder: str) -> None:
    """`polytask validate` checks the data without a tokenizer: a seq2seq config passes (it used to crash on the
    targets' truncation count), and an empty target is still reported with its row."""
    from typer.testing import CliRunner

    from polytask.cli import app

    _joint_jsonl(tmp_path / "train.jsonl", 6, 1)
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "encoder": {"name": tiny_encoder, "max_length": 16},
        "datasets": {"d": {"format": "jsonl", "train": str(tmp_path / "train.jsonl")}},
        "tasks": {"gen": {"type": "seq2seq", "dataset": "d", "label": "target", "max_target_length": 2}}}))
    r = CliRunner().invoke(app, ["validate", str(config)])
    assert r.exit_code == 0, r.output
    with (tmp_path / "train.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"text": "weather in rome", "target": " ", "intent": "weather"}) + "\n")
    r = CliRunner().invoke(app, ["validate", str(config)])
    assert r.exit_code == 2 and "empty target text" in r.output and "train.jsonl:7" in " ".join(r.output.split())


def test_parallel_reader(tmp_path: Path) -> None:
    make_parallel(tmp_path / "train", 5, 1)
    rows = read_rows("parallel", str(tmp_path / "train"), ReaderOptions(suffixes=["src", "tgt"]))
    assert len(rows) == 5 and set(rows[0].values) == {"src", "tgt"} and rows[2].location.endswith("train.src:3")
    (tmp_path / "train.tgt").write_text("a\nb\nc\nd\n", encoding="utf-8")
    with pytest.raises(DataError) as misaligned:
        read_rows("parallel", str(tmp_path / "train"), ReaderOptions(suffixes=["src", "tgt"]))
    text = str(misaligned.value)
    assert "train.src has 5 lines" in text and "train.tgt has 4" in text
    (tmp_path / "train.tgt").write_text("a\nb\n \nd\ne\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty line") as empty:
        read_rows("parallel", str(tmp_path / "train"), ReaderOptions(suffixes=["src", "tgt"]))
    assert empty.value.file is not None and empty.value.file.endswith("train.tgt") and empty.value.line == 3
    with pytest.raises(DataError, match="suffixes"):
        read_rows("parallel", str(tmp_path / "train"), ReaderOptions())


def test_jsonl_join_rename_and_target_errors(tmp_path: Path, tiny_encoder: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "d.jsonl"
    file.write_text(json.dumps({"source": ["one two.", "three."], "summary1": "x", "summary2": "y"}) + "\n",
                    encoding="utf-8")
    rows = read_rows("jsonl", str(file), ReaderOptions(join={"source": " "}, rename={"summary1": "summary"}))
    assert rows[0].values == {"source": "one two. three.", "summary": "x", "summary2": "y"}
    cfg = {"encoder": {"name": tiny_encoder, "max_length": 16},
           "datasets": {"d": {"format": "jsonl", "train": str(file), "text": "source",
                              "options": {"join": {"source": " "}, "rename": {"summary1": "summary"}}}},
           "tasks": {"t": {"type": "seq2seq", "dataset": "d", "label": "summary", "references": ["summary2"]}}}
    _, tokenizer = load_encoder(tiny_encoder)
    data = load_data(validate_config(cfg), tokenizer, splits=("train",))
    assert data.splits["train"]["d"].golds["t"] == [["x", "y"]]
    file.write_text(json.dumps({"source": "a", "summary": "paris london tokyo rome"}) + "\n", encoding="utf-8")
    cut = validate_config({**cfg, "tasks": {"t": {**cfg["tasks"]["t"], "max_target_length": 3}}})
    with caplog.at_level("WARNING", logger="polytask"):
        data = load_data(cut, tokenizer, splits=("train",))
    assert "d/train: task 't': 1 targets longer than max_target_length=3 tokens were cut" in caplog.text
    task = data.tasks["t"]
    assert data.splits["train"]["d"].fields["t"][0]["target"].tolist()[-1] == task.end
    assert len(data.splits["train"]["d"].fields["t"][0]["target"]) == 3
    file.write_text(json.dumps({"source": "a text", "summary": " "}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty target text") as empty:
        load_data(validate_config(cfg), tokenizer, splits=("train",))
    assert empty.value.field == "summary" and empty.value.location == f"{file}:1"
    with pytest.raises(PolytaskError, match="a generating task .seq2seq. needs encoder.vocabulary: full"):
        validate_config({**cfg, "encoder": {"name": tiny_encoder, "vocabulary": "train"}})
    with pytest.raises(PolytaskError, match="head_hidden does not apply"):
        validate_config({**cfg, "tasks": {"t": {"type": "seq2seq", "dataset": "d", "label": "summary",
                                                "head_hidden": 8}}})


def test_generation_metrics() -> None:
    same = ["a man plays the guitar on a stage .", "two dogs run in the snow ."]
    assert generation_scores(same, [[s] for s in same]) == pytest.approx(
        {"bleu": 1.0, "chrf": 1.0, "rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0})
    assert sacrebleu_scores(["xyz qqq"], [["a man plays"]])["bleu"] == 0.0
    # ROUGE-1 of "the cat" against "the cat sat": precision 1, recall 2/3, F 0.8; the best reference counts
    assert rouge_scores(["the cat"], [["the cat sat"]])["rouge1"] == pytest.approx(0.8)
    assert rouge_scores(["the cat"], [["a dog", "the cat sat"]])["rouge1"] == pytest.approx(0.8)
    # several references per example, in different numbers: the second stream's missing entry is skipped
    multi = sacrebleu_scores(same, [["a woman sings .", same[0]], [same[1]]])
    assert multi["bleu"] == pytest.approx(1.0)
    cased = (["A Man Plays The Guitar"], [["a man plays the guitar"]])
    assert sacrebleu_scores(*cased, lowercase=True)["bleu"] == pytest.approx(1.0)
    assert sacrebleu_scores(*cased)["bleu"] < 0.5


@pytest.mark.real
def test_real_multi30k_and_dialogsum_rows() -> None:
    """A few rows of the real files through the example configs' readers and the packaged tokenizer."""
    from polytask.config import load_config

    shared_data_or_skip("multi30k")
    shared_data_or_skip("dialogsum")
    _, tokenizer = load_encoder(minilm_or_skip())
    repo = Path(__file__).resolve().parents[1]
    for example, split in (("multi30k.yaml", "test"), ("dialogsum.yaml", "test")):
        cfg = load_config(repo / "examples" / example)
        for ds in cfg.datasets.values():
            ds.max_rows = {"train": 3, split: 4}  # type: ignore[dict-item]
        data = load_data(cfg, tokenizer, splits=(split,))
        group = next(iter(data.splits[split].values()))
        golds = group.golds[group.tasks[0]]
        assert len(group) == 4 and all(g and all(r.strip() for r in g) for g in golds)
        if example == "dialogsum.yaml":
            assert all(len(g) == 3 for g in golds)  # summary1 (renamed) + summary2 + summary3
        else:
            assert group.examples[0].text.startswith("Ein ") and golds[0][0].startswith("A ")
