"""Crash-exact resume: ``polytask train`` in a subprocess, killed by SIGKILL right after a checkpoint was written,
while one is half-written, and between the two renames that replace ``last/``; each time resumed with ``--resume``.
The final weights equal those of an uninterrupted run bit for bit (CPU, one thread), and no folder under a final
name is ever incomplete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from conftest import toy_config, write_yaml
from polytask.checkpoint import CRASH_ENV, is_complete, leftovers

REPO = Path(__file__).resolve().parents[1]
RESUMABLE = ("config.json", "model.safetensors", "trainer_state.json", "optimizer.safetensors", "rng.safetensors",
             "weighting.safetensors")


def _train(config: Path, resume: Path | None = None, crash_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    cmd = [sys.executable, "-m", "polytask.cli", "train", str(config), "--no-progress"]
    if resume is not None:
        cmd += ["--resume", str(resume)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _killed(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == -signal.SIGKILL, f"expected a SIGKILL, got {proc.returncode}: {proc.stderr[-3000:]}"


def _no_half_written_folder(out: Path) -> None:
    """Every folder under a final name is complete; ``last/`` holds every file a resume reads."""
    for name in ("best", "last"):
        folder = out / name
        if folder.exists():
            assert is_complete(folder), f"{folder} is incomplete"
    if (out / "last").exists():
        for file in RESUMABLE:
            assert (out / "last" / file).is_file(), file


def _step(folder: Path) -> int:
    return json.loads((folder / "trainer_state.json").read_text())["step"]


def test_sigkill_at_any_moment_then_resume_is_exact(tiny_encoder: str, toy_data: Path, tmp_path: Path) -> None:
    def config(out: Path) -> Path:
        raw = toy_config(toy_data, tiny_encoder, out, max_steps=12, num_threads=1)
        raw |= {"evaluation": {"every_steps": 3, "metric": "mean"}, "weighting": {"name": "uncertainty"}}
        return write_yaml(out.parent / f"{out.name}.yaml", raw)

    straight = _train(config(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "crashed"
    cfg = config(out)
    # 1. killed right after the first last/ was put in place (step 3)
    _killed(_train(cfg, crash_at="last:swapped:1"))
    _no_half_written_folder(out)
    assert _step(out / "last") == 3
    # 2. resumed; killed while the step-6 checkpoint is half-written (model files there, training state not)
    _killed(_train(cfg, resume=out / "last", crash_at="last:half-written:1"))
    _no_half_written_folder(out)
    assert _step(out / "last") == 3 and leftovers(out / "last"), "the half-written folder stays hidden"
    # 3. resumed; killed between the two renames of the step-6 save: no last/ at all, two complete hidden copies
    _killed(_train(cfg, resume=out / "last", crash_at="last:between-renames:1"))
    _no_half_written_folder(out)
    assert not (out / "last").exists()
    # 4. resumed from the missing last/: the complete new copy (step 6) is put in place, training ends
    done = _train(cfg, resume=out / "last")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "a save was interrupted by a crash" in done.stderr
    _no_half_written_folder(out)
    assert _step(out / "last") == 12
    assert leftovers(out / "last") == [] and leftovers(out / "best") == []

    for folder in ("last", "best"):
        for file in ("model.safetensors", "weighting.safetensors") if folder == "last" else ("model.safetensors",):
            a = load_file(str(tmp_path / "straight" / folder / file))
            b = load_file(str(out / folder / file))
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), f"{folder}/{file}: {key} differs"
