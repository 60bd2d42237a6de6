"""Experiment trackers (``train.report_to``): where training numbers go besides ``metrics.jsonl``.

Each name is a plugin in ``TRACKERS`` that builds one of HF Accelerate's tracker objects
(``accelerate.tracking``), pointed at the run's output folder where the tracker can work locally. The trainer hands
them to ``Accelerator(log_with=...)``, starts them with ``init_trackers`` (the run config as hyperparameters) and
logs with ``accelerator.log``: Accelerate runs all three on the main process only, so a run of several processes
logs once. Names and installed packages are checked with the config, before any weights load.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from polytask.registry import Registry

PROJECT = "polytask"  # the project / experiment name trackers that group runs file the run under


class Tracker:
    """A tracker polytask can report to: the pip package it needs and how to build Accelerate's tracker for a run."""

    package: ClassVar[str] = ""  # what `pip install` takes
    modules: ClassVar[tuple[str, ...]] = ()  # any one of these importable means installed

    @classmethod
    def available(cls) -> bool:
        return any(importlib.util.find_spec(m) is not None for m in cls.modules)

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        """An ``accelerate.tracking.GeneralTracker`` for the run writing to ``out_dir`` (nothing opened yet)."""
        raise NotImplementedError


TRACKERS: Registry[type[Tracker]] = Registry("experiment tracker")


@TRACKERS.register("tensorboard")
class TensorBoard(Tracker):
    """TensorBoard event files in OUTPUT_DIR/tensorboard (view: tensorboard --logdir OUTPUT_DIR/tensorboard)."""

    package, modules = "tensorboard", ("tensorboard", "tensorboardX")

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        from accelerate.tracking import TensorBoardTracker

        return TensorBoardTracker("", out_dir / "tensorboard")  # run name "": the events go right into that folder


@TRACKERS.register("mlflow")
class MLflow(Tracker):
    """MLflow run named after the output folder, in experiment 'polytask'; store: $MLFLOW_TRACKING_URI, else a
    local file store in OUTPUT_DIR/mlruns (read it with MLFLOW_ALLOW_FILE_STORE=true set)."""

    package, modules = "mlflow", ("mlflow",)

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        from accelerate.tracking import MLflowTracker

        class LocalStore(MLflowTracker):
            def start(self) -> None:
                import mlflow

                if not os.environ.get("MLFLOW_TRACKING_URI"):
                    # MLflow 3 refuses a file store unless told it is wanted; it is what works offline with
                    # mlflow-skinny too (a database store needs the full mlflow and SQLAlchemy)
                    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                    mlflow.set_tracking_uri((out_dir / "mlruns").resolve().as_uri())
                super().start()

        return LocalStore(PROJECT, run_name=run_name)


@TRACKERS.register("wandb")
class WandB(Tracker):
    """Weights & Biases run in project 'polytask', files in OUTPUT_DIR/wandb; offline: set WANDB_MODE=offline."""

    package, modules = "wandb", ("wandb",)

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        from accelerate.tracking import WandBTracker

        return WandBTracker(PROJECT, name=run_name, dir=str(out_dir))


@TRACKERS.register("dvclive")
class DVCLive(Tracker):
    """DVCLive metrics and plots in OUTPUT_DIR/dvclive (local files)."""

    package, modules = "dvclive", ("dvclive",)

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        from accelerate.tracking import DVCLiveTracker

        return DVCLiveTracker(run_name, dir=str(out_dir / "dvclive"))


@TRACKERS.register("aim")
class Aim(Tracker):
    """Aim run in an Aim repository at OUTPUT_DIR."""

    package, modules = "aim", ("aim",)

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        from accelerate.tracking import AimTracker

        return AimTracker(run_name, str(out_dir))


@TRACKERS.register("comet_ml")
class CometML(Tracker):
    """Comet experiment in project 'polytask' (its own configuration: COMET_API_KEY, offline mode)."""

    package, modules = "comet-ml", ("comet_ml",)

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        from accelerate.tracking import CometMLTracker

        return CometMLTracker(PROJECT)


@TRACKERS.register("clearml")
class ClearML(Tracker):
    """ClearML task in project 'polytask' (its own configuration: clearml.conf, CLEARML_OFFLINE_MODE)."""

    package, modules = "clearml", ("clearml",)

    @classmethod
    def build(cls, out_dir: Path, run_name: str) -> Any:
        from accelerate.tracking import ClearMLTracker

        return ClearMLTracker(PROJECT, task_name=run_name)


def tracker_problems(names: list[str]) -> list[str]:
    """Config problems of ``train.report_to``: unknown names, repeats, trackers whose package is not installed."""
    problems, seen = [], set()
    for name in names:
        if name in seen:
            problems.append(f"train.report_to: {name!r} is listed twice")
            continue
        seen.add(name)
        try:
            tracker = TRACKERS.get(name)
        except KeyError as exc:
            problems.append(f"train.report_to: {exc}")
            continue
        if not tracker.available():
            problems.append(f"train.report_to: tracker {name!r} needs the Python package {tracker.package!r}, which "
                            f"is not installed (pip install {tracker.package})")
    return problems


def build_trackers(names: list[str], out_dir: Path) -> list[Any]:
    """Accelerate tracker objects for ``names`` (checked by the config already), writing under ``out_dir``."""
    return [TRACKERS.get(name).build(out_dir, out_dir.resolve().name) for name in names]


def hyperparameters(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The run config flattened to ``{"train/lr": 5e-05, ...}`` with values every tracker stores: numbers, booleans
    and strings (lists and nulls as JSON text)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(hyperparameters(value, name + "/"))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value, ensure_ascii=False)
    return out


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one metrics.jsonl record, named for trackers: ``train/loss/intent``, ``validation/intent/f1``,
    ``test/intent/f1``, ``affinity/...`` (an evaluation record's ``tasks`` level dropped; counts of examples and
    values that are not numbers left out)."""
    prefix = record.get("split") or ("validation" if record["type"] == "eval" else record["type"])
    out: dict[str, float] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}/{k}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith("/examples"):
            out[key] = float(value)

    for key, value in record.items():
        if key not in ("type", "step", "split"):
            walk(value, prefix if key == "tasks" else f"{prefix}/{key}")
    return out
