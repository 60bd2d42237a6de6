"""Plugins from the command line: a task type, a sampler, a loss weighting and a data format defined in a file of
the user's own, loaded with ``polytask --code FILE``, go through train, evaluate, predict, serve and export; without
the file, loading the checkpoint is refused naming the missing plugin and how to load it; installed packages'
``polytask.plugins`` entry points load on their own (a temporary dist-info folder on sys.path stands for one).

Every test runs the CLI in this process, so each restores the registries, sys.modules and sys.path afterwards
(``forget`` does the same mid-test: what a new process would see)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import polytask.plugins as plugins
from polytask.cli import app
from polytask.data.inputs import INPUTS
from polytask.data.readers import READER_OPTIONS, READERS
from polytask.gradients import GRADIENT_METHODS
from polytask.sampling import SAMPLERS
from polytask.tasks import TASKS
from polytask.trackers import TRACKERS
from polytask.weighting import WEIGHTINGS

from conftest import write_yaml

PLUGIN = '''"""A user's plugins: a task type, a sampler, a loss weighting and a data format."""
from typing import ClassVar

import numpy as np

from polytask.data.readers import READERS
from polytask.data.rows import Row
from polytask.sampling.base import SAMPLERS, SamplerParams
from polytask.tasks.base import TASKS
from polytask.tasks.classification import Classification
from polytask.weighting.base import WEIGHTINGS, LossWeighting, WeightingParams, weighted_terms


@TASKS.register("shouted")
class Shouted(Classification):
    """Classification whose predictions also carry the label in capitals."""

    def postprocess(self, example, features, fields, outputs):
        out = super().postprocess(example, features, fields, outputs)
        return {**out, "shout": out["label"].upper()}


class PowerParams(SamplerParams):
    power: float = 1.0


@SAMPLERS.register("size_power")
class SizePower:
    """Sources drawn with probability proportional to size ** power."""

    Params: ClassVar[type[SamplerParams]] = PowerParams

    def __init__(self, params):
        self.params = params

    def probabilities(self, sizes, progress):
        p = np.asarray(sizes, dtype=np.float64) ** self.params.power
        return p / p.sum()


class ScaleParams(WeightingParams):
    scale: float = 1.0


@WEIGHTINGS.register("scaled")
class Scaled(LossWeighting):
    """Every task's loss times one constant."""

    Params: ClassVar[type[WeightingParams]] = ScaleParams

    def _combine(self, losses, progress, context):
        weights = {name: self.params.scale for name in losses}
        return weighted_terms(losses, weights), weights


@READERS.register("pipes")
def read_pipes(path, options, split=None):
    """Lines of TEXT|LABEL."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            text, label = line.rstrip("\\n").rsplit("|", 1)
            rows.append(Row({"text": text, "label": label}, f"{path}:{i}", path, i))
    return rows
'''

TASK_ONLY = '''from polytask.tasks.base import TASKS
from polytask.tasks.classification import Classification


@TASKS.register("shouted")
class Shouted(Classification):
    """The task type alone (the sampler, weighting and data format of the run are not here)."""
'''


@pytest.fixture
def forget() -> Iterator[Callable[[], None]]:
    """Restores every registry, sys.modules and sys.path as they were (after the test, and on each call)."""
    registries = (TASKS, INPUTS, SAMPLERS, WEIGHTINGS, GRADIENT_METHODS, READERS, TRACKERS)
    items = [dict(r._items) for r in registries]
    options, modules, path = dict(READER_OPTIONS), set(sys.modules), list(sys.path)
    loaded = plugins._entry_points_loaded

    def restore() -> None:
        for registry, saved in zip(registries, items):
            registry._items.clear()
            registry._items.update(saved)
        READER_OPTIONS.clear()
        READER_OPTIONS.update(options)
        # only the plugin modules the tests write (all named polytask_test*): dropping a compiled third-party module
        # imported meanwhile (onnx, via export) and importing it again later aborts the interpreter
        for name in set(sys.modules) - modules:
            if name.startswith("polytask_test"):
                del sys.modules[name]
        sys.path[:] = path
        plugins._entry_points_loaded = loaded

    yield restore
    restore()


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    return " ".join(result.output.split())  # rich wraps long lines


@pytest.fixture
def plugin_run(tmp_path: Path, toy_data: Path, tiny_encoder: str) -> tuple[Path, Path]:
    """(the plugin file, a config using all four of its plugins)."""
    for split in ("train", "dev"):
        lines = (toy_data / f"sentiment_{split}.csv").read_text(encoding="utf-8").splitlines()[1:]
        (tmp_path / f"{split}.txt").write_text("".join(f"{t}|{y}\n" for t, y in (x.rsplit(",", 1) for x in lines)),
                                               encoding="utf-8")
    plugin = tmp_path / "polytask_test_plugins.py"
    plugin.write_text(PLUGIN, encoding="utf-8")
    config = write_yaml(tmp_path / "run.yaml", {
        "encoder": {"name": tiny_encoder, "max_length": 32},
        "datasets": {"d": {"format": "pipes", "train": "train.txt", "validation": "dev.txt", "test": "dev.txt"}},
        "tasks": {"t": {"type": "shouted", "dataset": "d", "label": "label"}},
        "sampler": {"name": "size_power", "power": 0.5}, "weighting": {"name": "scaled", "scale": 2.0},
        "evaluation": {"every_steps": 2},
        "train": {"output_dir": str(tmp_path / "out"), "max_steps": 4, "batch_size": 16, "lr": 3e-3,
                  "progress_bar": False}})
    return plugin, config


def test_a_plugin_file_trains_evaluates_predicts_serves_and_exports(
        plugin_run: tuple[Path, Path], forget: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> None:
    plugin, config = plugin_run
    ckpt = config.parent / "out" / "best"
    missing = refused("train", str(config))  # without the file: every unknown name, and the hint once
    for fragment in ("tasks.t.type: unknown task type 'shouted'", "datasets.d.format: unknown data format 'pipes'",
                     "sampler.name: unknown sampler 'size_power'", "weighting.name: unknown loss weighting 'scaled'"):
        assert fragment in missing
    assert missing.count("polytask --code FILE.py|MODULE") == 1

    cli("--code", str(plugin), "train", str(config))
    saved = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))["plugins"]
    assert set(saved) == {"task type 'shouted'", "sampler 'size_power'", "loss weighting 'scaled'",
                          "data format 'pipes'"} and str(plugin) in saved["task type 'shouted'"]
    forget()  # a new process: nothing of the plugin file is loaded

    for command in (["evaluate", str(ckpt)], ["predict", str(ckpt), "great"], ["serve", str(ckpt)],
                    ["export", str(ckpt)]):
        text = refused(*command)
        assert "the checkpoint's task 't' has type 'shouted', which is not registered" in text, command
        assert f"saved with it loaded from polytask_test_plugins ({plugin})" in text
        assert "available: classification" in text and "polytask --code FILE.py|MODULE" in text
        assert "entry point group 'polytask.plugins'" in text
    # the task type alone (as a module name on the path): evaluation also needs the run's data format, sampler
    # and weighting; the error names them and the file the checkpoint was saved with
    (config.parent / "polytask_test_task_only.py").write_text(TASK_ONLY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(config.parent))
    text = refused("--code", "polytask_test_task_only", "evaluate", str(ckpt))
    assert "unknown data format 'pipes'" in text and "unknown sampler 'size_power'" in text
    assert f"The checkpoint was saved with these plugins loaded: task type 'shouted' from polytask_test_plugins " \
           f"({plugin}); sampler 'size_power' from" in text
    forget()

    code = ("--code", str(plugin))
    assert "│ t " in cli(*code, "evaluate", str(ckpt), "--split", "validation")
    out = json.loads(cli(*code, "predict", str(ckpt), "really great"))
    assert out["t"]["shout"] == out["t"]["label"].upper() and out["t"]["label"] in ("pos", "neg")
    import uvicorn
    from fastapi.testclient import TestClient

    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(app=app))
    cli(*code, "serve", str(ckpt))
    with TestClient(seen["app"]) as client:
        answer = client.post("/predict", json={"texts": ["really great"]}).json()["predictions"][0]
    assert answer["t"] == out["t"]
    pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extra")
    assert "wrote" in cli(*code, "export", str(ckpt)) and (ckpt / "model.onnx").is_file()


def test_a_code_option_that_cannot_load_says_what_happened(tmp_path: Path, forget: Callable[[], None]) -> None:
    assert "--code 'nowhere/plug.py': file not found" in refused("--code", "nowhere/plug.py", "list")
    assert "no file of that name, and no importable module 'no_such_mod_zz'" in refused(
        "--code", "no_such_mod_zz", "list")
    broken = tmp_path / "polytask_test_broken.py"
    broken.write_text("import math\n\nRATIO = 1 / 0\n", encoding="utf-8")
    text = refused("--code", str(broken), "list")
    assert f"--code '{broken}': importing the file {broken} failed: ZeroDivisionError: division by zero" in text
    assert f'File "{broken}", line 3, in <module> RATIO = 1 / 0' in text  # the user's own line, not ours
    twice = tmp_path / "polytask_test_twice.py"  # a name a built-in already has
    twice.write_text("from polytask.sampling.base import SAMPLERS\n\n@SAMPLERS.register('uniform')\n"
                     "class Mine:\n    pass\n", encoding="utf-8")
    text = refused("--code", str(twice), "list")
    assert "sampler 'uniform' is registered twice (first by polytask.sampling.uniform, again by " \
           "polytask_test_twice)" in text


def test_installed_packages_plugins_load_through_their_entry_points(
        tmp_path: Path, forget: Callable[[], None], tiny_encoder: str, toy_data: Path) -> None:
    """A package installed with ``[project.entry-points."polytask.plugins"]`` is, to importlib.metadata, a
    dist-info folder with entry_points.txt on sys.path: one holding a module entry and a function entry."""
    site = tmp_path / "site"
    dist = site / "polytask_test_ep-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: polytask-test-ep\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[polytask.plugins]\nsampler = polytask_test_ep_sampler\n"
                                           "weighting = polytask_test_ep_weighting:register\n", encoding="utf-8")
    (site / "polytask_test_ep_sampler.py").write_text(
        "from polytask.sampling.base import SAMPLERS\nfrom polytask.sampling.uniform import UniformSampler\n\n"
        "@SAMPLERS.register('ep_uniform')\nclass EpUniform(UniformSampler):\n    '''Uniform, from a package.'''\n",
        encoding="utf-8")
    (site / "polytask_test_ep_weighting.py").write_text(
        "def register():\n    from polytask.weighting.base import WEIGHTINGS\n"
        "    from polytask.weighting.equal import EqualWeighting\n\n"
        "    class EpEqual(EqualWeighting):\n        '''Equal, from a package.'''\n\n"
        "    WEIGHTINGS.register('ep_equal')(EpEqual)\n", encoding="utf-8")
    sys.path.insert(0, str(site))
    plugins._entry_points_loaded = False
    config = write_yaml(tmp_path / "c.yaml", {
        "encoder": {"name": tiny_encoder}, "sampler": "ep_uniform", "weighting": "ep_equal",
        "datasets": {"d": {"format": "csv", "train": str(toy_data / "sentiment_train.csv"), "text": "sentence"}},
        "tasks": {"t": {"type": "classification", "dataset": "d", "label": "label"}}})
    out = cli("validate", str(config), "--no-data")  # no --code: the names resolve through the entry points
    assert "sampler 'ep_uniform', weighting 'ep_equal'" in out
    listed = cli("list")
    assert "ep_uniform" in listed and "polytask_test_ep_sampler" in listed

    forget()
    (dist / "entry_points.txt").write_text("[polytask.plugins]\nbad = polytask_test_ep_missing_zz\n", encoding="utf-8")
    sys.path.insert(0, str(site))
    plugins._entry_points_loaded = False
    text = refused("list")
    assert "entry point 'bad' = 'polytask_test_ep_missing_zz' of polytask-test-ep (group 'polytask.plugins'): " \
           "loading it failed (fix or uninstall polytask-test-ep): ModuleNotFoundError" in text


def test_the_plugin_in_the_docs_loads_and_samples(tmp_path: Path, forget: Callable[[], None]) -> None:
    """docs/python-api.md's "Plugins" example is real code: loaded with --code, listed, and it samples."""
    import re

    from polytask.sampling import Progress

    docs = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", docs.split("## Plugins", 1)[1], re.S).group(1)  # type: ignore[union-attr]
    plugin = tmp_path / "polytask_test_docs_plugin.py"
    plugin.write_text(code, encoding="utf-8")
    listed = " ".join(cli("--code", str(plugin), "list").split())
    assert "size_power │ Sources drawn with probability proportional to size ** power. │ polytask_test_docs_plugin" \
        in listed
    sampler = SAMPLERS.get("size_power")(SAMPLERS.get("size_power").Params(power=2.0))
    assert sampler.probabilities([1, 3], Progress(0, 10, 0.0, 1.0)).tolist() == [0.1, 0.9]
