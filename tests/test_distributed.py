"""Two CPU processes (DDP over gloo, launched with torchrun as docs/training.md says): every process ends with the
same weights and step count, one checkpoint loads, a resumed 2-process run continues exactly, and the metrics equal a
1-process run with the same global batch within a stated tolerance. Runs in the default `make test`."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from polytask.checkpoint import load_training_state
from polytask.model import MultiTaskModel

from conftest import ARTISTS, CITIES, toy_config, write_yaml

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


def _partly_labelled_jsonl(path: Path, n: int, seed: int) -> None:
    """One source for a seq2seq task and a classification task, the target text on every third row only: some
    batches leave the decoder (and its adapter) without a loss, so parts of the model get no gradient there."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            city, artist = rng.choice(CITIES), rng.choice(ARTISTS)
            music = rng.random() < 0.5
            row = {"text": f"play music by {artist} now" if music else f"weather in {city} today",
                   "intent": "music" if music else "weather"}
            if i % 3 == 0:
                row["target"] = artist if music else city
            f.write(json.dumps(row) + "\n")


def test_sharing_designs_and_a_seq2seq_task_under_ddp_equal_one_process(tiny_encoder: str, tmp_path: Path) -> None:
    """LoRA (adapters per task) and MoE (experts a task does not route to, a load-balancing loss) with a seq2seq
    head, whose decoder reads the encoder's word embeddings by reference (not a registered parameter): 2 processes
    with batch 4 end with the weights of 1 process with batch 4 x grad_accum 2 (the same 8 rows per step). Dropout
    is off, so the only difference left would be a gradient DDP did not reduce, or a decoder table DDP untied."""
    from polytask.config import load_config
    from polytask.train import train
    from safetensors.torch import load_file

    encoder = tmp_path / "encoder"
    shutil.copytree(tiny_encoder, encoder)
    config = json.loads((encoder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(config))
    _partly_labelled_jsonl(tmp_path / "train.jsonl", 48, 1)
    designs = {"lora": {"name": "lora", "layers": 1}, "moe": {"name": "moe", "layers": 1, "experts": 3}}
    configs = {}
    for name, sharing in designs.items():
        for processes, accum in ((2, 1), (1, 2)):
            cfg = {"encoder": {"name": str(encoder), "max_length": 16, "dropout": 0.0, "sharing": sharing},
                   "datasets": {"d": {"format": "jsonl", "train": str(tmp_path / "train.jsonl")}},
                   "tasks": {"gen": {"type": "seq2seq", "dataset": "d", "label": "target", "max_target_length": 6,
                                     "decoder_layers": 1},
                             "cls": {"type": "classification", "dataset": "d", "label": "intent"}},
                   "train": {"output_dir": str(tmp_path / f"{name}{processes}"), "batch_size": 4, "lr": 3e-3,
                             "grad_accum": accum, "max_steps": 6, "seed": 3, "progress_bar": False}}
            configs[name, processes] = write_yaml(tmp_path / f"{name}{processes}.yaml", cfg)
    first, more = configs["lora", 2], configs["moe", 2]
    ranks = {"lora": launch(2, first, tmp_path / "res", "--more", str(more))}
    ranks["moe"] = [json.loads((tmp_path / "res" / "moe2" / f"rank{r}.json").read_text()) for r in range(2)]
    for name in designs:
        assert ranks[name][0]["weights"] == ranks[name][1]["weights"] and ranks[name][0]["steps"] == 6, name
        train(load_config(configs[name, 1]), show_progress=False)
        two = load_file(str(tmp_path / f"{name}2" / "last" / "model.safetensors"))
        one = load_file(str(tmp_path / f"{name}1" / "last" / "model.safetensors"))
        assert two.keys() == one.keys(), name
        # what starts at zero (LoRA's B, the experts' output projections) has trained under DDP
        grown = [k for k in two if (".lora_B." in k or k.endswith(".up")) and bool(two[k].abs().max() > 0)]
        assert grown, (name, sorted(two))
        for key in two:
            assert torch.allclose(two[key], one[key], atol=1e-6), (name, key, (two[key] - one[key]).abs().max())
