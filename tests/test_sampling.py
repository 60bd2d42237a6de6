"""Source samplers: the contract every registered sampler must meet, the scheduler's reproducibility, and each
method's formula checked against hand-computed numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from polytask.registry import UnknownNameError
from polytask.sampling import SAMPLERS, Progress, SourceScheduler, build_sampler

SIZES = [[1], [5, 5], [1, 1_000_000], [3, 70, 12_000, 9]]
PROGRESS = [
    Progress(step=0, total_steps=100, epoch=0.0, num_epochs=1.0),
    Progress(step=0, total_steps=300, epoch=0.0, num_epochs=3.0),
    Progress(step=150, total_steps=300, epoch=1.5, num_epochs=3.0),
    Progress(step=299, total_steps=300, epoch=2.99, num_epochs=3.0),
    Progress(step=240, total_steps=250, epoch=2.4, num_epochs=2.5),
    Progress(step=400, total_steps=300, epoch=4.0, num_epochs=3.0),  # past the end must still be valid
]


def at_epoch(epoch: float, num_epochs: float) -> Progress:
    steps_per_epoch = 100
    return Progress(step=int(epoch * steps_per_epoch), total_steps=int(num_epochs * steps_per_epoch), epoch=epoch,
                    num_epochs=num_epochs)


# -- contract: every registered sampler ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("progress", PROGRESS)
def test_probabilities_are_a_distribution(name: str, sizes: list[int], progress: Progress) -> None:
    p = build_sampler(name, {}).probabilities(sizes, progress)
    assert isinstance(p, np.ndarray) and p.dtype == np.float64 and p.shape == (len(sizes),)
    assert np.all(np.isfinite(p)) and np.all(p >= 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("sizes", [[0], [10, 0, 5], [], [4, -1]])
def test_empty_sources_are_refused(name: str, sizes: list[int]) -> None:
    with pytest.raises(ValueError):
        build_sampler(name, {}).probabilities(sizes, PROGRESS[0])


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_unknown_parameters_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        build_sampler(name, {"no_such_parameter": 1})


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_params_model_forbids_extra_keys(name: str) -> None:
    assert SAMPLERS.get(name).Params.model_config.get("extra") == "forbid"


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_scheduler_is_deterministic_and_resumes_through_json(name: str) -> None:
    sizes = [3, 70, 12_000, 9]
    progress = [at_epoch(i / 40, 3.0) for i in range(120)]

    def draws(scheduler: SourceScheduler, part: list[Progress]) -> list[int]:
        return [scheduler.next(p) for p in part]

    full = draws(SourceScheduler(build_sampler(name, {}), sizes, seed=7), progress)
    assert full == draws(SourceScheduler(build_sampler(name, {}), sizes, seed=7), progress)
    assert all(isinstance(i, int) and 0 <= i < len(sizes) for i in full)

    first = SourceScheduler(build_sampler(name, {}), sizes, seed=7)
    head = draws(first, progress[:50])
    saved = json.dumps(first.state_dict())
    resumed = SourceScheduler(build_sampler(name, {}), sizes, seed=12345)  # the seed is overridden by the state
    resumed.load_state_dict(json.loads(saved))
    assert head + draws(resumed, progress[50:]) == full


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_scheduler_follows_the_probabilities(name: str) -> None:
    sizes, progress = [10, 30, 60], at_epoch(0.0, 1.0)
    scheduler = SourceScheduler(build_sampler(name, {}), sizes, seed=0)
    counts = np.bincount([scheduler.next(progress) for _ in range(20_000)], minlength=3) / 20_000
    np.testing.assert_allclose(counts, scheduler.sampler.probabilities(sizes, progress), atol=0.015)


def test_scheduler_seeds_differ() -> None:
    sampler = build_sampler("uniform", {})
    one, two = SourceScheduler(sampler, [5] * 5, seed=1), SourceScheduler(sampler, [5] * 5, seed=2)
    assert [one.next(PROGRESS[0]) for _ in range(50)] != [two.next(PROGRESS[0]) for _ in range(50)]


def test_scheduler_refuses_foreign_state() -> None:
    scheduler = SourceScheduler(build_sampler("uniform", {}), [1, 2], seed=0)
    with pytest.raises(ValueError, match="PCG64"):
        scheduler.load_state_dict({"bit_generator": {"bit_generator": "MT19937", "state": {}}})


def test_unknown_sampler_lists_the_available_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_sampler("temprature", {})
    assert all(name in str(info.value) for name in SAMPLERS.names())
    assert {"proportional", "temperature", "uniform", "annealed"} <= set(SAMPLERS.names())


# -- method-specific numbers ---------------------------------------------------------------------------------------


def test_proportional_and_uniform() -> None:
    np.testing.assert_allclose(build_sampler("proportional", {}).probabilities([1, 3, 6], PROGRESS[0]),
                               [0.1, 0.3, 0.6])
    np.testing.assert_allclose(build_sampler("uniform", {}).probabilities([1, 3, 6], PROGRESS[0]), [1 / 3] * 3)


@pytest.mark.parametrize("sizes", SIZES)
def test_temperature_one_is_proportional(sizes: list[int]) -> None:
    np.testing.assert_allclose(build_sampler("temperature", {"temperature": 1.0}).probabilities(sizes, PROGRESS[1]),
                               build_sampler("proportional", {}).probabilities(sizes, PROGRESS[1]), rtol=1e-12)


def test_temperature_two_is_square_root() -> None:
    p = build_sampler("temperature", {}).probabilities([1, 4, 16], PROGRESS[0])  # default T = 2
    np.testing.assert_allclose(p, [1 / 7, 2 / 7, 4 / 7])


def test_large_temperature_approaches_uniform() -> None:
    sizes = [3, 70, 12_000, 9]
    gaps = [np.abs(build_sampler("temperature", {"temperature": t}).probabilities(sizes, PROGRESS[0]) - 0.25).max()
            for t in (1.0, 10.0, 100.0, 1e6)]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-5


def test_small_temperature_does_not_overflow() -> None:
    p = build_sampler("temperature", {"temperature": 0.001}).probabilities([10, 1_000_000], PROGRESS[0])
    np.testing.assert_allclose(p, [0.0, 1.0])


def test_temperature_cap() -> None:
    sampler = build_sampler("temperature", {"temperature": 1.0, "cap": 100})
    np.testing.assert_allclose(sampler.probabilities([10, 100, 1000], PROGRESS[0]), [10 / 210, 100 / 210, 100 / 210])
    sampler = build_sampler("temperature", {"temperature": 2.0, "cap": 16})
    np.testing.assert_allclose(sampler.probabilities([4, 16, 10_000], PROGRESS[0]), [2 / 10, 4 / 10, 4 / 10])


@pytest.mark.parametrize("params", [{"temperature": 0}, {"temperature": -1.0}, {"cap": 0}, {"temperature": "hot"}])
def test_temperature_bad_params(params: dict) -> None:
    with pytest.raises(ValidationError):
        build_sampler("temperature", params)


def test_annealed_alpha_follows_the_paper() -> None:
    sampler = build_sampler("annealed", {})
    # E = 10: α = 1 − 0.8·(e − 1)/9 for the 1-based epoch e, constant within an epoch.
    for e in range(1, 11):
        for within in (0.0, 0.5, 0.999):
            assert sampler.alpha(at_epoch(e - 1 + within, 10.0)) == pytest.approx(1 - 0.8 * (e - 1) / 9)
    assert sampler.alpha(at_epoch(0.0, 3.0)) == pytest.approx(1.0)  # first epoch
    assert sampler.alpha(at_epoch(2.0, 3.0)) == pytest.approx(0.2)  # last epoch
    assert sampler.alpha(at_epoch(2.999, 3.0)) == pytest.approx(0.2)
    assert sampler.alpha(at_epoch(5.0, 3.0)) == pytest.approx(0.2)  # past the end: stays at the last value
    assert sampler.alpha(at_epoch(1.9999999999999, 3.0)) == pytest.approx(0.2)  # rounding of "epoch 2"
    assert sampler.alpha(at_epoch(0.7, 1.0)) == 1.0  # E <= 1: nothing to anneal
    assert sampler.alpha(at_epoch(0.2, 0.5)) == 1.0
    assert sampler.alpha(at_epoch(2.2, 2.5)) == pytest.approx(0.2)  # a partial last epoch counts as the last


def test_annealed_probabilities() -> None:
    sampler = build_sampler("annealed", {})
    sizes = [1, 32]
    np.testing.assert_allclose(sampler.probabilities(sizes, at_epoch(0.3, 3.0)), [1 / 33, 32 / 33])  # α = 1
    np.testing.assert_allclose(sampler.probabilities(sizes, at_epoch(1.3, 3.0)), [1 / 9, 8 / 9])  # α = 0.6
    np.testing.assert_allclose(sampler.probabilities(sizes, at_epoch(2.3, 3.0)), [1 / 3, 2 / 3])  # α = 0.2
    custom = build_sampler("annealed", {"start_alpha": 0.5, "end_alpha": 0.0})
    np.testing.assert_allclose(custom.probabilities([1, 4], at_epoch(0.0, 2.0)), [1 / 3, 2 / 3])
    np.testing.assert_allclose(custom.probabilities([1, 4], at_epoch(1.0, 2.0)), [0.5, 0.5])
    assert math.isclose(custom.alpha(at_epoch(1.0, 2.0)), 0.0)
