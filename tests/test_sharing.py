"""The sharing designs (encoder.sharing), each held to one contract on the tiny BERT: it trains with a frozen
encoder (its own parameters move, the encoder's do not), its checkpoint round-trips to the bit, the Pipeline equals
the evaluation path, the shared bottom runs once per batch (hooks), ONNX export matches PyTorch; plus hard sharing
equal to the plain encoder, gradient methods on the shared bottom, the MoE balance loss in the log, and config
errors reported before any weights load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from polytask.config import validate_config
from polytask.errors import ConfigError, PolytaskError
from polytask.model import MultiTaskModel
from polytask.sharing import SHARING
from polytask.train import train

from conftest import toy_config

# top layer only on the 2-layer tiny BERT, so that there is a shared bottom below it
SPECS: dict[str, dict[str, Any]] = {
    "hard": {"name": "hard"},
    "lora": {"name": "lora", "layers": 1, "rank": 4, "tasks": ["intent", "sentiment"]},
    "moe": {"name": "moe", "layers": 1, "experts": 3, "top_k": 2, "hidden": 8, "aux_weight": 0.1},
    "cross_stitch": {"name": "cross_stitch", "layers": 1},
}
TEXTS = ["what is the weather in oslo today", "play music by drake bjork now", "the movie was really awful"]


def test_every_registered_design_has_a_contract_spec() -> None:
    assert sorted(SPECS) == SHARING.names()


def _config(toy_data: Path, encoder: str, out: Path, sharing: dict[str, Any], **train_keys: Any) -> dict[str, Any]:
    cfg = toy_config(toy_data, encoder, out, max_steps=8, log_every=1, **train_keys)
    for name in ("topics", "pairs"):
        cfg["datasets"].pop(name)
    for name in ("topics", "similarity"):
        cfg["tasks"].pop(name)
    cfg["encoder"]["sharing"] = sharing
    return cfg


@pytest.fixture(scope="module", params=sorted(SPECS))
def run(request: pytest.FixtureRequest, tiny_encoder: str, toy_data: Path,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any, dict[str, torch.Tensor]]:
    """(design, TrainResult, the model's weights before training) of an 8-step run with a frozen encoder."""
    name = request.param
    out = tmp_path_factory.mktemp(f"sharing-{name}")
    cfg = validate_config(_config(toy_data, tiny_encoder, out / "out", SPECS[name], freeze=["encoder"],
                                  step_mode="every_source"))
    from polytask.encoder import load_encoder

    encoder, _ = load_encoder(tiny_encoder)  # the weights the run starts from (the encoder's own, no design yet)
    return name, train(cfg), {k: v.clone() for k, v in encoder.state_dict().items()}


def _losses(out_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [sum(r["loss"].values()) for r in records if r.get("type") == "train"]


def test_trains_its_own_parameters_with_the_encoder_frozen(run) -> None:
    name, result, before = run
    model = MultiTaskModel.from_pretrained(result.best_dir)
    losses = _losses(result.output_dir)
    assert sum(losses[-3:]) / 3 < losses[0], losses
    # the frozen encoder's own weights are the pretrained ones, to the bit (PEFT's adapted layers keep them in
    # base_layer); the design's own parameters moved from their start (LoRA's B and the experts' up start at zero)
    weights = {k.replace("base_layer.", ""): v for k, v in model.encoder.state_dict().items() if ".lora_" not in k}
    assert set(weights) == set(before)
    assert all(torch.equal(weights[k], before[k]) for k in before)
    added = model.sharing.added_parameters()
    assert bool(added) == (name != "hard")
    if name in ("lora", "moe"):
        zero_at_start = [p for n, p in model.named_parameters() if "lora_B" in n or n.endswith(".up")]
        assert zero_at_start and all(p.abs().sum() > 0 for p in zero_at_start)
    if name == "cross_stitch":
        assert float(model.sharing.units[0, 0, 1]) != pytest.approx(0.9)  # intent's weight of its own column


def test_checkpoint_round_trip_is_exact(run, tmp_path: Path) -> None:
    _, result, _ = run
    model = MultiTaskModel.from_pretrained(result.best_dir)
    again = MultiTaskModel.from_pretrained(model.save_pretrained(tmp_path / "again"))
    assert again.sharing.to_config() == model.sharing.to_config() == json.loads(
        (result.best_dir / "config.json").read_text())["encoder"]["sharing"]
    a, b = model.state_dict(), again.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    batch = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        one, two = (m(dict(batch), tasks=["intent", "sentiment"]) for m in (model, again))
    assert all(torch.equal(one[t], two[t]) for t in ("intent", "sentiment"))


def test_pipeline_equals_the_evaluation_path(run) -> None:
    from polytask.data.loading import load_data
    from polytask.evaluate import predict_split
    from polytask.inference import Pipeline

    _, result, _ = run
    pipe = Pipeline.from_pretrained(result.best_dir)
    model = pipe.model
    data = load_data(validate_config(model.run_config), model.tokenizer, splits=("test",), tasks=model.tasks)
    for source, names in (("snips", ["intent", "slots"]), ("sentiment", ["sentiment"])):
        split = data.splits["test"][source]
        expected = predict_split(model, split)
        texts = [" ".join(e.words) if e.words else e.text for e in split.examples]
        got = pipe(texts, tasks=names)
        for i, out in enumerate(got):
            for name in names:
                assert out[name] == expected[name][i], (source, name, i)


def test_onnx_export_matches_pytorch(run, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from polytask.export import export_onnx, parity

    _, result, _ = run
    model = MultiTaskModel.from_pretrained(result.best_dir)
    diffs = parity(model, export_onnx(model, tmp_path / "model.onnx"), TEXTS)
    assert set(diffs) == set(model.tasks) and max(diffs.values()) < 1e-4


def test_hf_export_refuses_designs_with_per_task_layers(run, tmp_path: Path) -> None:
    from polytask.hf_export import NotExportable, export_hf

    name, result, _ = run
    model = MultiTaskModel.from_pretrained(result.best_dir)
    if name == "hard":
        assert export_hf(model, "slots", tmp_path / "hf").auto_class
    else:
        with pytest.raises(NotExportable, match=f"encoder.sharing '{name}'"):
            export_hf(model, "slots", tmp_path / "hf")


# -- the shared bottom runs once ---------------------------------------------------------------------------------


def _model(tiny_encoder: str, sharing: dict[str, Any] | None) -> MultiTaskModel:
    from polytask.encoder import load_encoder
    from polytask.tasks import TASKS, build_task

    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny_encoder)
    tasks = {}
    for name in ("intent", "sentiment", "other"):
        params = TASKS.get("classification").Params.model_validate(
            {"type": "classification", "dataset": "d", "label": "l"})
        tasks[name] = build_task(name, params)
        tasks[name].restore_state({"labels": ["x", "y"]})
    model = MultiTaskModel(encoder, tasks, sharing=sharing).eval()
    model.tokenizer = tokenizer
    return model


# calls of the encoder's top block per forward of the three tasks: hard one pass; lora one per adapted task (intent,
# sentiment) and one for the task without an adapter; moe one per task; cross_stitch its shared column once
TOP_CALLS = {"hard": 1, "lora": 3, "moe": 3, "cross_stitch": 1}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_shared_bottom_runs_once_per_batch(name: str, tiny_encoder: str) -> None:
    model = _model(tiny_encoder, SPECS[name])
    hard = _model(tiny_encoder, None)
    layers = model.encoder.encoder.layer
    calls = {"bottom": 0, "top": 0}
    layers[0].register_forward_hook(lambda *a: calls.__setitem__("bottom", calls["bottom"] + 1))
    layers[1].register_forward_hook(lambda *a: calls.__setitem__("top", calls["top"] + 1))
    batch = dict(model.tokenizer(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        out, features = model(batch, return_features=True)
        reference, hard_tokens = hard(batch, return_features=True)
    assert calls == {"bottom": 1, "top": TOP_CALLS[name]}
    assert list(out) == ["intent", "sentiment", "other"]
    # at the start every design is the shared model (zero updates; cross-stitch mixes equal columns)
    for task in out:
        torch.testing.assert_close(out[task], reference[task], rtol=0, atol=1e-6)
    expected = hard_tokens if name == "hard" else hard.encoder.encoder.layer[0](
        hard.encoder.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"]),
        _mask(hard, batch))
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-6)


def _mask(model: MultiTaskModel, batch: dict[str, torch.Tensor]) -> Any:
    from transformers.masking_utils import create_bidirectional_mask

    embeddings = model.encoder.embeddings(input_ids=batch["input_ids"])
    return create_bidirectional_mask(config=model.encoder.config, inputs_embeds=embeddings,
                                     attention_mask=batch["attention_mask"])


def test_hard_sharing_is_the_encoders_own_forward(tiny_encoder: str) -> None:
    model = _model(tiny_encoder, None)
    batch = dict(model.tokenizer(TEXTS, padding=True, return_tensors="pt"))
    with torch.no_grad():
        tokens = model.encoder(**batch).last_hidden_state
        _, features = model(batch, return_features=True)
    assert torch.equal(features, tokens)
    assert [k for k in model.state_dict() if k.startswith("sharing.")] == []


# -- gradient methods and the auxiliary loss ---------------------------------------------------------------------


def test_gradient_methods_work_on_the_shared_bottom(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torchjd")
    cfg = _config(toy_data, tiny_encoder, tmp_path / "out", SPECS["moe"], step_mode="every_source")
    cfg["train"]["max_steps"] = 3
    cfg["gradients"] = {"name": "upgrad"}
    result = train(validate_config(cfg))
    records = [json.loads(line) for line in (result.output_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r.get("type") == "train"]
    assert len(steps) == 3 and all(r["gradient_weight"] for r in steps)
    # the balance loss is logged apart from the task losses (1 when the load is even, more when not)
    assert all(set(r["auxiliary"]) == {"load_balance"} and r["auxiliary"]["load_balance"] >= 1.0 - 1e-6
               for r in steps)
    assert "load_balance" not in steps[0]["loss"]


def test_a_frozen_encoder_with_adapters_everywhere_refuses_jacobian_methods(tiny_encoder: str, toy_data: Path,
                                                                           tmp_path: Path) -> None:
    pytest.importorskip("torchjd")
    cfg = _config(toy_data, tiny_encoder, tmp_path / "out", {"name": "lora", "layers": "all"}, freeze=["encoder"])
    cfg["gradients"] = {"name": "pcgrad"}
    with pytest.raises(PolytaskError, match="gradient method 'pcgrad' works on the trainable parameters"):
        train(validate_config(cfg))


# -- config errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sharing, message", [
    ({"name": "adapters"}, "encoder.sharing.name: unknown sharing design 'adapters'; available: cross_stitch, "
                           "hard, lora, moe"),
    ({"name": "lora", "rnk": 4}, "encoder.sharing.rnk: unknown key"),
    ({"name": "lora", "layers": 3}, "encoder.sharing.layers: value 3 is more than the encoder's 2 layers"),
    ({"name": "moe", "layers": 0}, "encoder.sharing.layers: Value error, must be at least 1, or 'all'"),
    ({"name": "moe", "experts": 2, "top_k": 3}, "encoder.sharing.top_k: value 3 is more than the 2 experts"),
    ({"name": "lora", "tasks": ["intent", "nope"]}, "encoder.sharing.tasks: unknown task(s) nope"),
])
def test_config_errors_are_reported_before_weights_load(sharing: dict[str, Any], message: str, tiny_encoder: str,
                                                        toy_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(_config(toy_data, tiny_encoder, tmp_path, sharing))
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_a_name_alone_is_the_design_with_its_defaults(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    cfg = validate_config(_config(toy_data, tiny_encoder, tmp_path, "moe"))  # type: ignore[arg-type]
    assert cfg.encoder.sharing.name == "moe" and cfg.encoder.sharing.params == {}


def test_an_encoder_that_cannot_be_split_is_refused_clearly() -> None:
    from transformers import DistilBertConfig, DistilBertModel

    from polytask.sharing import build_sharing

    encoder = DistilBertModel(DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=2, vocab_size=50))
    with pytest.raises(PolytaskError, match="'lora' splits the encoder between its layers.*'distilbert'"):
        build_sharing({"name": "lora", "layers": 1}, encoder, ["a"])


def test_gradnorm_balances_on_a_shared_layer_never_an_adapter(tiny_encoder: str) -> None:
    """GradNorm's W is the last trainable layer every task shares: with LoRA on the top block's output layer too,
    its base weights, not the last task's adapter; with the encoder frozen nothing is shared and trainable, which is
    refused (the weights would otherwise stay at 1 without a word)."""
    from polytask.training.start import freeze
    from polytask.training.step import last_shared_layer

    model = _model(tiny_encoder, {"name": "lora", "layers": 1, "target_modules": ["query", "value", "dense"]})
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in last_shared_layer(model, "gradnorm")] == [
        "encoder.encoder.layer.1.output.dense.base_layer.weight", "encoder.encoder.layer.1.output.dense.base_layer.bias"]
    for spec in (SPECS["lora"], SPECS["hard"]):
        frozen = _model(tiny_encoder, spec)
        freeze(frozen, ["encoder"])
        with pytest.raises(PolytaskError, match=r"weighting 'gradnorm' .* there is none .*train.freeze"):
            last_shared_layer(frozen, "gradnorm")


@pytest.mark.parametrize("name", sorted(SPECS))
def test_learning_rates_of_what_the_design_adds(name: str, tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    """Encoder weights (LoRA's adapters among them) at lr, heads at head_lr, what the design adds outside the encoder
    (sharing.*) at sharing_lr when set, else head_lr; every trainable parameter in exactly one group."""
    from polytask.train import build_objective, param_groups

    model = _model(tiny_encoder, SPECS[name])
    for sharing_lr in (None, 3e-4):
        cfg = validate_config(_config(toy_data, tiny_encoder, tmp_path / "out", SPECS[name], lr=1e-5, head_lr=1e-3,
                                      sharing_lr=sharing_lr))
        groups = param_groups(model, build_objective(cfg, ["intent", "sentiment", "other"]).weighting, cfg)
        lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
        assert sum(len(g["params"]) for g in groups) == len(lr_of)
        named = dict(model.named_parameters())
        assert set(lr_of) == {id(p) for p in named.values() if p.requires_grad}
        added = [n for n in named if n.startswith("sharing.")]
        assert bool(added) == (name in ("moe", "cross_stitch")), added
        for n, p in named.items():
            want = 1e-5 if n.startswith("encoder.") else (sharing_lr or 1e-3) if n in added else 1e-3
            assert lr_of[id(p)] == want, (n, lr_of[id(p)], want)
