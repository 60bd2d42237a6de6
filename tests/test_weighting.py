"""Loss weightings: the contract every registered method must meet (so the trainer can stay method-agnostic) and
each method's formula checked against hand-computed numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from polytask.registry import UnknownNameError
from polytask.sampling import Progress
from polytask.weighting import WEIGHTINGS, LossWeighting, build_weighting

TASKS = ["intent", "slots", "sentiment"]


def at_step(step: int, steps_per_epoch: int = 4, num_epochs: float = 3.0) -> Progress:
    return Progress(step=step, total_steps=int(num_epochs * steps_per_epoch), epoch=step / steps_per_epoch,
                    num_epochs=num_epochs)


def make_losses(values: dict[str, float]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(v, requires_grad=True) for name, v in values.items()}


def train_a_little(weighting: LossWeighting, steps: int) -> None:
    """Drive a weighting through several windows/epochs with varying task subsets and losses, optimising its
    learnable parameters (if any) as the trainer would, so its state is no longer the initial one."""
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.1) if weighting.learnable else None
    for step in range(steps):
        present = TASKS if step % 3 == 0 else TASKS[step % 2: step % 2 + 2]
        total, _ = weighting.combine(make_losses({t: 1.0 + i + 1 / (step + 1) for i, t in enumerate(present)}),
                                     at_step(step))
        total.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad()


# -- contract: every registered weighting --------------------------------------------------------------------------


@pytest.mark.parametrize("name", WEIGHTINGS.names())
@pytest.mark.parametrize("present", [TASKS, ["slots"], ["intent", "sentiment"]])
def test_combine_returns_a_scalar_with_grad_and_weights_of_present_tasks(name: str, present: list[str]) -> None:
    weighting = build_weighting(name, {}, TASKS)
    losses = make_losses({t: 0.5 + i for i, t in enumerate(present)})
    total, weights = weighting.combine(losses, at_step(0))
    assert total.dim() == 0 and total.requires_grad and torch.isfinite(total)
    assert set(weights) == set(present)
    assert all(isinstance(w, float) and math.isfinite(w) and w >= 0 for w in weights.values())
    total.backward()
    assert all(loss.grad is not None for loss in losses.values())
    # every method's gradient on a task loss is its reported weight
    for task, loss in losses.items():
        assert float(loss.grad) == pytest.approx(weights[task], rel=1e-6)


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_state_round_trips_through_safetensors(name: str, tmp_path: Path) -> None:
    weighting = build_weighting(name, {"window": 2} if name == "dwa" else {}, TASKS)
    train_a_little(weighting, 11)
    state = weighting.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "weighting.safetensors"))

    fresh = build_weighting(name, {"window": 2} if name == "dwa" else {}, TASKS)
    fresh.load_state_dict(load_file(str(tmp_path / "weighting.safetensors")))
    for step in (11, 12, 13):  # the next steps, crossing a window boundary for dwa
        losses = {"intent": 0.3 * step, "sentiment": 2.0}
        expected, expected_w = weighting.combine(make_losses(losses), at_step(step))
        got, got_w = fresh.combine(make_losses(losses), at_step(step))
        assert got.item() == pytest.approx(expected.item(), rel=1e-6)
        assert got_w == pytest.approx(expected_w, rel=1e-6)


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_learnable_matches_parameters(name: str) -> None:
    weighting = build_weighting(name, {}, TASKS)
    assert weighting.learnable == any(p.requires_grad for p in weighting.parameters())


@pytest.mark.parametrize("name", WEIGHTINGS.names())
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_names_the_task(name: str, bad: float) -> None:
    weighting = build_weighting(name, {}, TASKS)
    with pytest.raises(FloatingPointError, match="slots"):
        weighting.combine(make_losses({"intent": 1.0, "slots": bad}), at_step(0))


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_loss_of_unknown_task_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="topics"):
        build_weighting(name, {}, TASKS).combine(make_losses({"topics": 1.0}), at_step(0))


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_no_losses_gives_a_harmless_zero(name: str) -> None:
    total, weights = build_weighting(name, {}, TASKS).combine({}, at_step(0))
    assert total.item() == 0.0 and weights == {}
    total.backward()


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_bf16_losses_are_combined_in_float32(name: str) -> None:
    losses = {"intent": torch.tensor(1.0, dtype=torch.bfloat16, requires_grad=True)}
    total, _ = build_weighting(name, {}, TASKS).combine(losses, at_step(0))
    assert total.dtype == torch.float32


@pytest.mark.parametrize("name", WEIGHTINGS.names())
def test_unknown_parameters_are_refused(name: str) -> None:
    assert WEIGHTINGS.get(name).Params.model_config.get("extra") == "forbid"
    with pytest.raises(ValidationError):
        build_weighting(name, {"no_such_parameter": 1}, TASKS)


def test_unknown_weighting_lists_the_available_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_weighting("uncertanity", {}, TASKS)
    assert all(name in str(info.value) for name in WEIGHTINGS.names())
    assert {"equal", "static", "uncertainty", "dwa"} <= set(WEIGHTINGS.names())


# -- equal and static ----------------------------------------------------------------------------------------------


def test_equal_is_the_sum() -> None:
    total, weights = build_weighting("equal", {}, TASKS).combine(make_losses({"intent": 1.5, "slots": 2.0}),
                                                                 at_step(0))
    assert total.item() == pytest.approx(3.5) and weights == {"intent": 1.0, "slots": 1.0}


def test_static_weights_and_default() -> None:
    weighting = build_weighting("static", {"weights": {"intent": 2.0, "slots": 0.5}, "default": 0.1}, TASKS)
    total, weights = weighting.combine(make_losses({"intent": 1.0, "slots": 4.0, "sentiment": 10.0}), at_step(0))
    assert total.item() == pytest.approx(2.0 * 1.0 + 0.5 * 4.0 + 0.1 * 10.0)
    assert weights == pytest.approx({"intent": 2.0, "slots": 0.5, "sentiment": 0.1})


def test_static_unknown_task_is_reported_with_the_known_ones() -> None:
    cls = WEIGHTINGS.get("static")
    problems = cls.check(cls.Params.model_validate({"weights": {"intent": 1.0, "sentimnet": 2.0}}), TASKS)
    assert len(problems) == 1
    assert "'sentimnet'" in problems[0] and all(task in problems[0] for task in TASKS)
    with pytest.raises(ValueError, match="sentimnet"):
        build_weighting("static", {"weights": {"sentimnet": 2.0}}, TASKS)


@pytest.mark.parametrize("params", [{"weights": {"intent": -1.0}}, {"default": -0.5}, {"weights": ["intent"]}])
def test_static_bad_params(params: dict) -> None:
    with pytest.raises(ValidationError):
        build_weighting("static", params, TASKS)


# -- uncertainty ---------------------------------------------------------------------------------------------------


def test_uncertainty_value_and_gradients_are_analytic() -> None:
    weighting = build_weighting("uncertainty", {}, TASKS)
    assert weighting.state_dict()["log_var"].tolist() == [0.0, 0.0, 0.0]  # s_t = log σ_t² starts at 0 (weight 1)
    with torch.no_grad():
        weighting.log_var.copy_(torch.tensor([0.3, -0.5, 1.2]))
    losses = make_losses({"intent": 2.0, "sentiment": 0.7})  # "slots" absent: its s must get no gradient
    total, weights = weighting.combine(losses, at_step(0))
    s = {"intent": 0.3, "sentiment": 1.2}
    L = {"intent": 2.0, "sentiment": 0.7}
    assert total.item() == pytest.approx(sum(math.exp(-s[t]) * L[t] + s[t] for t in s), rel=1e-6)
    assert weights == pytest.approx({t: math.exp(-s[t]) for t in s}, rel=1e-6)
    total.backward()
    expected = [1 - math.exp(-0.3) * 2.0, 0.0, 1 - math.exp(-1.2) * 0.7]  # ∂/∂s_t = 1 − exp(−s_t)·L_t
    torch.testing.assert_close(weighting.log_var.grad, torch.tensor(expected))
    for t, loss in losses.items():  # ∂/∂L_t = exp(−s_t)
        assert float(loss.grad) == pytest.approx(math.exp(-s[t]), rel=1e-6)


def test_uncertainty_balances_a_large_loss_ratio_instead_of_collapsing() -> None:
    """With constant losses 100 and 0.01 (ratio 10⁴), s_t must settle at log L_t, i.e. each weighted loss ≈ 1:
    neither task is switched off (weight → 0) nor allowed to dominate (equal weighting: 10⁴ : 1)."""
    weighting = build_weighting("uncertainty", {}, ["big", "small"])
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    constant = {"big": 100.0, "small": 0.01}
    for step in range(3000):
        total, weights = weighting.combine({t: torch.tensor(v) for t, v in constant.items()}, at_step(step))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    log_var = weighting.log_var.detach()
    torch.testing.assert_close(log_var, torch.tensor([math.log(100.0), math.log(0.01)]), atol=1e-3, rtol=0)
    contributions = [weights[t] * constant[t] for t in constant]
    assert contributions == pytest.approx([1.0, 1.0], abs=1e-2)


# -- dwa -----------------------------------------------------------------------------------------------------------


def dwa_weights(ratios: list[float], temperature: float) -> list[float]:
    """Liu et al. 2019, Eq. 7, by hand."""
    exps = [math.exp(r / temperature) for r in ratios]
    return [len(ratios) * e / sum(exps) for e in exps]


def test_dwa_matches_a_hand_computation() -> None:
    weighting = build_weighting("dwa", {"window": 2, "temperature": 2.0}, ["a", "b", "c"])
    schedule = {  # step -> losses; windows are steps {0,1}, {2,3}, {4,5}, {6}
        0: {"a": 1.0, "b": 4.0},
        1: {"a": 3.0},  # window 0: L̄_a = 2, L̄_b = 4, c absent
        2: {"a": 1.0, "b": 3.0, "c": 5.0},
        3: {"a": 1.0, "b": 3.0},  # window 1: L̄_a = 1, L̄_b = 3, L̄_c = 5
        4: {"a": 0.5, "c": 8.0},
        5: {"c": 12.0},  # window 2: L̄_a = 0.5, b absent, L̄_c = 10
    }
    for step, losses in schedule.items():
        total, weights = weighting.combine(make_losses(losses), at_step(step))
        if step < 4:  # the first two windows: weight 1
            assert weights == {t: 1.0 for t in losses}
            assert total.item() == pytest.approx(sum(losses.values()))
        else:  # window 2: r = (1/2, 3/4, 1 — c had no loss in window 0)
            expected = dict(zip("abc", dwa_weights([0.5, 0.75, 1.0], 2.0)))
            assert weights == pytest.approx({t: expected[t] for t in losses}, rel=1e-6)
            assert total.item() == pytest.approx(sum(expected[t] * v for t, v in losses.items()), rel=1e-6)
    # window 3: r = (0.5/1, 1 — b had no loss in window 2, 10/5)
    losses = make_losses({"a": 1.0, "b": 1.0, "c": 1.0})
    total, weights = weighting.combine(losses, at_step(6))
    expected = dict(zip("abc", dwa_weights([0.5, 1.0, 2.0], 2.0)))
    assert weights == pytest.approx(expected, rel=1e-6)
    assert sum(weights.values()) == pytest.approx(3.0)  # the weights sum to K
    total.backward()  # the weights are constants: each loss's gradient is exactly its weight
    assert {t: float(l.grad) for t, l in losses.items()} == pytest.approx(expected, rel=1e-6)
    assert not any(b.requires_grad for b in weighting.buffers()) and not list(weighting.parameters())


def test_dwa_epoch_windows_and_temperature() -> None:
    weighting = build_weighting("dwa", {"temperature": 0.5}, ["a", "b"])  # window: epoch (default)
    for step in range(4):  # epoch 0 (4 steps per epoch): L̄ = (4, 1)
        weighting.combine(make_losses({"a": 4.0, "b": 1.0}), at_step(step))
    for step in range(4, 8):  # epoch 1: L̄ = (1, 1)
        assert weighting.combine(make_losses({"a": 1.0, "b": 1.0}), at_step(step))[1] == {"a": 1.0, "b": 1.0}
    _, weights = weighting.combine(make_losses({"a": 1.0, "b": 1.0}), at_step(8))
    assert weights == pytest.approx(dict(zip("ab", dwa_weights([0.25, 1.0], 0.5))), rel=1e-6)


def test_dwa_windows_without_steps_count_as_empty() -> None:
    weighting = build_weighting("dwa", {"window": 1}, ["a", "b"])
    weighting.combine(make_losses({"a": 1.0, "b": 1.0}), at_step(0))
    weighting.combine(make_losses({"a": 4.0, "b": 1.0}), at_step(1))
    _, weights = weighting.combine(make_losses({"a": 1.0, "b": 1.0}), at_step(2))
    assert weights["a"] > weights["b"]  # a's loss rose: more weight
    _, weights = weighting.combine(make_losses({"a": 1.0, "b": 1.0}), at_step(9))  # windows 3..8 saw nothing
    assert weights == pytest.approx({"a": 1.0, "b": 1.0})


@pytest.mark.parametrize("params", [{"temperature": 0}, {"window": 0}, {"window": "step"}])
def test_dwa_bad_params(params: dict) -> None:
    with pytest.raises(ValidationError):
        build_weighting("dwa", params, TASKS)
