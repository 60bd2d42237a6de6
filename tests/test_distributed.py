"""Two CPU processes (DDP over gloo, launched with torchrun as docs/training.md says): every process ends with the
same weights and step count, one checkpoint loads, a resumed 2-process run continues exactly, and the metrics equal a
1-process run with the same global batch within a stated tolerance. Runs in the default `make test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from polytask.checkpoint import load_training_state
from polytask.model import MultiTaskModel

from conftest import toy_config, write_yaml

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "ddp_driver.py"
TOLERANCE = 0.02  # on each task's primary metric; both runs reach ~1.0 on the toy tasks (measured: all within 0.001)


def launch(processes: int, config: Path, out: Path, *extra: str) -> list[dict[str, Any]]:
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},  # (MLflow: the run's own store)
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           str(DRIVER), str(config), str(out), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def scenario(toy_data: Path, encoder: str, out: Path, batch_size: int, **extra: Any) -> dict[str, Any]:
    cfg = toy_config(toy_data, encoder, out, batch_size=batch_size, **extra.pop("train", {}))
    del cfg["datasets"]["topics"], cfg["tasks"]["topics"]  # 3 input groups with different batch counts
    cfg.update(extra)
    return cfg


def primary(result: dict[str, Any]) -> dict[str, float]:
    keys = {"intent": "accuracy", "slots": "f1", "sentiment": "accuracy", "similarity": "pearson"}
    return {t: m[keys[t]] for t, m in result["tasks"].items()}


def test_two_processes_with_a_loss_weighting_match_one(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    common = {"weighting": {"name": "uncertainty"}, "evaluation": {"every_steps": 60}}
    two = write_yaml(tmp_path / "two.yaml", scenario(toy_data, tiny_encoder, tmp_path / "run2", 8,
                                                     train={"max_steps": 120}, **common))
    one = write_yaml(tmp_path / "one.yaml", scenario(toy_data, tiny_encoder, tmp_path / "run1", 16,
                                                     train={"max_steps": 120}, **common))
    ranks = launch(2, two, tmp_path / "res2")
    assert [r["world"] for r in ranks] == [2, 2] and {r["steps"] for r in ranks} == {120}
    assert ranks[0]["weights"] == ranks[1]["weights"], "both processes must end with identical weights"
    assert ranks[0]["validation"] == ranks[1]["validation"], "sharded evaluation: every process gets all metrics"
    model = MultiTaskModel.from_pretrained(tmp_path / "run2" / "best")
    assert set(model.tasks) == {"intent", "slots", "sentiment", "similarity"}
    state = load_training_state(tmp_path / "run2" / "last")
    assert state["processes"] == 2 and len(state["ranks"]) == 2 and len(state["rngs"]) == 2
    alone = launch(1, one, tmp_path / "res1")[0]
    for task, value in primary(alone["validation"]).items():
        assert abs(primary(ranks[0]["validation"])[task] - value) <= TOLERANCE, (task, ranks[0], alone)


def test_two_processes_with_a_gradient_method_resume_exactly(tiny_encoder: str, toy_data: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """PCGrad (per-task Jacobians averaged over processes before aggregation), every-task steps, no validation
    split (best/ is written by one process and read by both only after a barrier); the experiment trackers that are
    installed log once, from the main process."""
    from polytask.trackers import TRACKERS

    trackers = [name for name in ("tensorboard", "mlflow") if TRACKERS.get(name).available()]
    cfg = scenario(toy_data, tiny_encoder, tmp_path / "a", 8, train={"max_steps": 12, "step_mode": "every_source",
                                                                     "report_to": trackers},
                   gradients={"name": "pcgrad"})
    for ds in cfg["datasets"].values():
        ds.pop("validation", None)
    straight = launch(2, write_yaml(tmp_path / "a.yaml", cfg), tmp_path / "res-a")
    assert straight[0]["weights"] == straight[1]["weights"] and {r["steps"] for r in straight} == {12}
    assert straight[0]["validation"] is None and (tmp_path / "a" / "best" / "model.safetensors").is_file()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file store only when told to
    logged_once(tmp_path / "a", trackers)
    cfg["train"]["output_dir"] = str(tmp_path / "b")
    resumed_cfg = write_yaml(tmp_path / "b.yaml", cfg)
    first = launch(2, resumed_cfg, tmp_path / "res-b1", "--stop-after", "5")
    assert {r["steps"] for r in first} == {5}
    resumed = launch(2, resumed_cfg, tmp_path / "res-b2", "--resume", str(tmp_path / "b" / "last"))
    assert resumed[0]["weights"] == resumed[1]["weights"] == straight[0]["weights"], "resume must continue exactly"


def logged_once(out: Path, trackers: list[str]) -> None:
    """One process logged: one TensorBoard event file with the training loss (the hyperparameters go to a
    sub-folder), one MLflow run. A second process logging would add its own file and its own run."""
    if "tensorboard" in trackers:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        files = list((out / "tensorboard").glob("events.out.tfevents.*"))
        assert len(files) == 1, files
        events = EventAccumulator(str(files[0]))
        events.Reload()
        assert [e.step for e in events.Scalars("train/loss/intent")] == [5, 10, 12]
    if "mlflow" in trackers:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=(out / "mlruns").resolve().as_uri())
        runs = client.search_runs([client.get_experiment_by_name("polytask").experiment_id])
        assert len(runs) == 1 and "test/sentiment/accuracy" in runs[0].data.metrics, runs


def test_a_launch_that_silently_runs_alone_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`accelerate launch --cpu --num_processes 2` starts one process (no MPI): polytask says so and how to launch."""
    from polytask.errors import PolytaskError
    from polytask.training.distributed import check_launch

    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(PolytaskError, match=r"starts ONE process .* `torchrun --nproc_per_node N -m polytask.cli"):
        check_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun (or MPI) did start the processes
    check_launch()
