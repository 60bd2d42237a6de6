"""The training step as a function: every registered gradient method and loss weighting trains (bf16, gradient
accumulation, every step mode), the combined gradient matches a hand computation for equal weighting and PCGrad,
step modes build the micro-batches they promise, and runs in every mode resume exactly."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polytask.config import validate_config
from polytask.data.loading import load_data
from polytask.encoder import load_encoder
from polytask.gradients import GRADIENT_METHODS
from polytask.sampling import Progress, SourceScheduler, build_sampler
from polytask.train import build_model, build_objective, train
from polytask.training.distributed import make_accelerator
from polytask.training.feed import Feeder, steps_per_epoch
from polytask.training.step import StepContext, forward_losses, training_step
from polytask.weighting import WEIGHTINGS

from conftest import toy_config

SLOW_SOLVERS = {"nash_mtl", "cagrad"}  # cvxpy solves: a few steps only


def small_config(toy_data: Path, encoder: str, out: Path, **train_keys: Any) -> dict[str, Any]:
    """Three input groups (SNIPS intent + slots, sentiment, text-pair similarity): four tasks."""
    cfg = toy_config(toy_data, encoder, out, **train_keys)
    del cfg["datasets"]["topics"], cfg["tasks"]["topics"]
    return cfg


class Recorder(torch.optim.SGD):
    """An optimizer that records the gradients it is asked to apply (and applies nothing)."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, lr=0.0)
        self.seen: dict[int, torch.Tensor] = {}

    def step(self, closure: Any = None) -> None:
        self.seen = {id(p): p.grad.detach().clone() for g in self.param_groups for p in g["params"]
                     if p.grad is not None}


@pytest.fixture(scope="module")
def setup(tiny_encoder: str, toy_data: Path, tmp_path_factory: pytest.TempPathFactory):
    cfg = validate_config(small_config(toy_data, tiny_encoder, tmp_path_factory.mktemp("step")))
    encoder, tokenizer = load_encoder(tiny_encoder)
    data = load_data(cfg, tokenizer, splits=("train",))
    return cfg, data, encoder, tokenizer


def _feeder(data: Any, mode: str, batch_size: int = 8, seed: int = 0) -> Feeder:
    splits = data.splits["train"]
    scheduler = SourceScheduler(build_sampler("temperature", {}), [len(s) for s in splits.values()], seed=seed)
    return Feeder(mode, splits, data.tasks, batch_size, scheduler, seed, 0)


def _per_task_gradients(model: Any, micro: Any, tasks: dict, names: list[str]) -> dict[str, list[torch.Tensor]]:
    shared = [p for p in model.encoder.parameters()]
    out = {}
    for name in names:
        losses, _ = forward_losses(model, micro, tasks)
        out[name] = list(torch.autograd.grad(losses[name], shared, allow_unused=True))
        out[name] = [g if g is not None else torch.zeros_like(p) for g, p in zip(out[name], shared)]
    return out


@pytest.mark.parametrize("method", ["sum", "pcgrad"])
def test_combined_gradient_matches_hand_computation(method: str, setup) -> None:
    """One micro-batch with two tasks (intent + slots share the SNIPS batch): the encoder's gradient is the sum of
    the two task gradients (sum / equal weighting) or PCGrad's projection of each onto the other's normal plane
    when they conflict, then summed (Yu et al. 2020, Algorithm 1)."""
    cfg, data, encoder, tokenizer = setup
    cfg = cfg.model_copy(deep=True)
    cfg.gradients.name = method
    torch.manual_seed(0)
    model = build_model(cfg, data, load_encoder(cfg.encoder.name)[0], tokenizer).eval()  # no dropout: repeatable
    feeder = _feeder(data, "source")
    micro = feeder._part("snips", list(range(8)))
    from polytask.training.feed import MicroBatch

    micro = MicroBatch([micro])
    grads = _per_task_gradients(model, micro, data.tasks, ["intent", "slots"])
    g1 = torch.cat([g.flatten() for g in grads["intent"]])
    g2 = torch.cat([g.flatten() for g in grads["slots"]])
    if method == "sum":
        expected = g1 + g2
    else:
        dot = torch.dot(g1, g2)
        p1 = g1 - dot / g2.dot(g2) * g2 if dot < 0 else g1
        p2 = g2 - dot / g1.dot(g1) * g1 if dot < 0 else g2
        expected = p1 + p2
    optimizer = Recorder(model.parameters())
    ctx = StepContext(make_accelerator("fp32"), model, optimizer, shared=list(model.encoder.parameters()))
    training_step([micro], ctx, data.tasks, build_objective(cfg, list(data.tasks)), Progress(0, 1, 0.0, 1.0))
    got = torch.cat([optimizer.seen[id(p)].flatten() for p in model.encoder.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    if method == "pcgrad":
        assert float(g1.dot(g2)) < 0, "the toy tasks should conflict somewhere for this test to mean something"


@pytest.mark.parametrize("name", GRADIENT_METHODS.names())
def test_every_gradient_method_trains_with_bf16_and_accumulation(name: str, tiny_encoder: str, toy_data: Path,
                                                                  tmp_path: Path) -> None:
    steps = 2 if name in SLOW_SOLVERS else 4
    raw = small_config(toy_data, tiny_encoder, tmp_path, max_steps=steps, precision="bf16", grad_accum=2,
                       step_mode="every_source", batch_size=8)
    raw["gradients"] = {"name": name}
    raw["weighting"] = {"name": "uncertainty"}
    result = train(validate_config(raw))
    assert result.steps == steps
    rows = [r for r in _metrics(tmp_path) if r["type"] == "train"]
    assert rows and all(math.isfinite(v) for r in rows for v in r["loss"].values())
    if name != "sum" and name != "graddrop":
        assert set(rows[-1]["gradient_weight"]) == {"intent", "slots", "sentiment", "similarity"}
    start = load_file(str(Path(tiny_encoder) / "model.safetensors"))
    end = load_file(str(tmp_path / "last" / "model.safetensors"))
    assert any(not torch.equal(start[k], end["encoder." + k]) for k in start), "the encoder must have moved"


@pytest.mark.parametrize("name", WEIGHTINGS.names())
@pytest.mark.parametrize("mode", ["source", "mixed"])
def test_every_weighting_trains_in_every_mode(name: str, mode: str, tiny_encoder: str, toy_data: Path,
                                              tmp_path: Path) -> None:
    raw = small_config(toy_data, tiny_encoder, tmp_path, max_steps=4, precision="bf16", grad_accum=2,
                       step_mode=mode, batch_size=8)
    raw["weighting"] = {"name": name}
    assert train(validate_config(raw)).steps == 4
    rows = [r for r in _metrics(tmp_path) if r["type"] == "train"]
    assert all(math.isfinite(v) for r in rows for v in r["weight"].values())


def test_step_modes_build_the_micro_batches_they_promise(setup) -> None:
    _, data, _, _ = setup
    every = _feeder(data, "every_source").micro_batch(Progress(0, 10, 0.0, 1.0))
    assert [p.tasks for p in every.parts] == [["intent", "slots"], ["sentiment"], ["similarity"]]
    assert all(p.batch.size == 8 for p in every.parts)
    mixed = _feeder(data, "mixed", batch_size=32)
    shares = np.zeros(3)
    for _ in range(200):
        micro = mixed.micro_batch(Progress(0, 10, 0.0, 1.0))
        assert micro.size == 32
        # the two single-text groups share one encoder pass; the pair group is its own
        assert len(micro.parts) <= 2
        for part in micro.parts:
            if "similarity" in part.tasks:
                shares[2] += part.batch.size
            else:
                labelled = part.batch.targets["sentiment"]["target"] != -100
                shares[1] += int(labelled.sum())
                shares[0] += part.batch.size - int(labelled.sum())
    probs = build_sampler("temperature", {}).probabilities([len(s) for s in data.splits["train"].values()],
                                                          Progress(0, 10, 0.0, 1.0))
    np.testing.assert_allclose(shares / shares.sum(), probs, atol=0.02)
    batches = sum(math.ceil(len(s) / 8) for s in data.splits["train"].values())
    assert _feeder(data, "every_source").steps_per_epoch(1) == steps_per_epoch(batches, 1, 1, 3)
    assert _feeder(data, "mixed").steps_per_epoch(2) == math.ceil(batches / 2)


@pytest.mark.parametrize("mode, weighting, gradients", [("every_source", "dwa", "upgrad"),
                                                         ("mixed", "famo", "sum"), ("source", "gradnorm", "sum")])
def test_resume_is_exact_in_every_mode(mode: str, weighting: str, gradients: str, tiny_encoder: str, toy_data: Path,
                                       tmp_path: Path) -> None:
    raw = small_config(toy_data, tiny_encoder, tmp_path / "a", max_steps=8, step_mode=mode, batch_size=8)
    raw |= {"evaluation": {"every_steps": 4}, "weighting": {"name": weighting}, "gradients": {"name": gradients}}
    straight = validate_config(raw)
    train(straight)
    resumed = straight.model_copy(deep=True)
    resumed.train.output_dir = str(tmp_path / "b")
    assert train(resumed, stop_after=3).steps == 3
    train(resumed, resume=tmp_path / "b/last")
    for file in ("model.safetensors", "weighting.safetensors"):
        a, b = load_file(str(tmp_path / "a/last" / file)), load_file(str(tmp_path / "b/last" / file))
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{file}: {key}")


def _metrics(run: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
