"""``polytask finetune CKPT``: per-task fine-tuning after joint training (MT-DNN's second stage, Liu et al. 2019;
the seeds' "task-adaptive fine-tuning").

Each task gets a short run of its own, started from the joint model (``train.init_from``) on its own data, with
the rest of the joint run's settings. Two scopes, by what they cost to serve:

- ``heads`` (default): the encoder is frozen and only the task's head is trained. The fine-tuned heads are put back
  into ONE model (``OUTPUT/combined``): serving costs exactly what the joint model does, and each task stores only
  its head (its delta to the joint model: a few KB to a few MB).
- ``full``: the encoder is trained too, so each task gets its own full model (``OUTPUT/TASK/best``): N tasks cost N
  encoders on disk and N encoder passes to serve every task; the upper bound of what per-task fine-tuning gives.

``OUTPUT/summary.json`` records, per task, the joint model's metrics, the fine-tuned ones, and the bytes stored per
task. ``CKPT`` may also be a ``polytask baseline`` run directory: every seed's joint model is then fine-tuned, and
``polytask compare`` shows joint, joint + fine-tuned and single-task side by side.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from polytask.checkpoint import atomic_dir, read_metrics, write_model_files
from polytask.config import RunConfig, validate_config
from polytask.errors import PolytaskError

log = logging.getLogger("polytask")
SCOPES = ("heads", "full")


def finetune_configs(checkpoint: Path, cfg: RunConfig, tasks: list[str], scope: str, output: Path,
                     epochs: float | None, lr: float | None) -> dict[str, RunConfig]:
    """One run config per task: the joint config restricted to the task and its dataset, started from the joint
    model, with the encoder frozen (``heads``) or not (``full``)."""
    base = cfg.model_dump(mode="json")
    out = {}
    for name in tasks:
        data = json.loads(json.dumps(base))
        source = data["tasks"][name]["dataset"]
        data["datasets"] = {source: data["datasets"][source]}
        data["tasks"] = {name: data["tasks"][name]}
        data["weighting"], data["gradients"] = {"name": "equal"}, {"name": "sum"}
        data["evaluation"] |= {"metric": "mean", "mode": "max"}
        train = data["train"]
        train |= {"init_from": str(checkpoint), "carry_tasks": False, "output_dir": str(output / name),
                  "max_steps": None, "min_steps": None, "step_mode": "source",
                  "freeze": ["encoder", "task_embedding"] if scope == "heads" and cfg.encoder.task_embedding
                  else ["encoder"] if scope == "heads" else []}
        if epochs is not None:
            train["epochs"] = epochs
        if lr is not None:
            train["lr"] = train["head_lr"] = lr
        out[name] = validate_config(data, source=f"<fine-tuning config of {name}>", check_files=False)
    return out


def finetune(checkpoint: str | Path, tasks: list[str] | None = None, scope: str = "heads",
             output: str | Path | None = None, epochs: float | None = None, lr: float | None = None,
             show_progress: bool | None = None) -> dict[str, Any]:
    """Fine-tune ``tasks`` (default: every task of the checkpoint's run config) of CHECKPOINT; -> the summary.
    A ``polytask baseline`` run directory fine-tunes every seed's joint model."""
    checkpoint = Path(checkpoint)
    if (checkpoint / "compare" / "summary.json").is_file():
        return _every_seed(checkpoint, tasks, scope, epochs, lr, show_progress)
    from polytask.model import MultiTaskModel
    from polytask.train import train

    if scope not in SCOPES:
        raise PolytaskError(f"unknown fine-tuning scope {scope!r}; available: {', '.join(SCOPES)}")
    joint = MultiTaskModel.from_pretrained(checkpoint)
    if joint.run_config is None:
        raise PolytaskError(f"{checkpoint}: the checkpoint has no run_config.yaml to take each task's data from")
    cfg = validate_config(joint.run_config, source=f"{checkpoint}/run_config.yaml")
    names = tasks or list(cfg.tasks)
    unknown = [n for n in names if n not in cfg.tasks]
    if unknown:
        raise PolytaskError(f"--tasks: {', '.join(unknown)} not in the checkpoint's run config (it has "
                            f"{', '.join(cfg.tasks)})")
    output = Path(output) if output else checkpoint.parent / f"finetuned-{scope}"
    joint_metrics = _metrics(checkpoint)
    summary: dict[str, Any] = {"format": "polytask-finetune", "checkpoint": str(checkpoint), "scope": scope,
                               "tasks": {}}
    for name, run_cfg in finetune_configs(checkpoint, cfg, names, scope, output, epochs, lr).items():
        log.info("fine-tuning %s (%s) from %s", name, scope, checkpoint)
        result = train(run_cfg, show_progress=show_progress)
        tuned = _metrics(result.best_dir)
        head_bytes = sum(p.numel() * p.element_size() for p in joint.heads[name].parameters())
        summary["tasks"][name] = {
            "run_dir": os.path.relpath(result.output_dir, output), "joint": _task(joint_metrics, name),
            "finetuned": _task(tuned, name), "steps": result.steps, "train_seconds": round(result.seconds, 2),
            "stored_bytes": head_bytes if scope == "heads" else (result.best_dir / "model.safetensors").stat().st_size}
    if scope == "heads":
        summary["combined"] = str(_combine(joint, output, names, summary))
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _combine(joint: Any, output: Path, names: list[str], summary: dict[str, Any]) -> Path:
    """The joint model with every fine-tuned head put back: one deployable model. Its outputs equal each task's
    fine-tuning run (the encoder was frozen there)."""
    from polytask.model import MultiTaskModel

    for name in names:
        tuned = MultiTaskModel.from_pretrained(output / name / "best")
        joint.heads[name].load_state_dict(tuned.heads[name].state_dict())
        # the run calibrated its head on validation: its temperatures belong to the head it trained
        joint.tasks[name].temperatures = dict(tuned.tasks[name].temperatures)
    metrics = {"finetuned_from": summary["checkpoint"], "scope": "heads",
               "tasks": {n: summary["tasks"][n]["finetuned"] for n in names}}
    with atomic_dir(output / "combined") as tmp:
        write_model_files(joint, tmp, metrics)
    return output / "combined"


def _every_seed(run_dir: Path, tasks: list[str] | None, scope: str, epochs: float | None, lr: float | None,
                show_progress: bool | None) -> dict[str, Any]:
    root = run_dir / "compare"
    summary = json.loads((root / "summary.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"format": "polytask-finetune-seeds", "scope": scope, "seeds": {}}
    for seed, record in summary["multi"]["runs"].items():
        best = root / record["run_dir"] / "best"
        out["seeds"][seed] = finetune(best, tasks, scope, None, epochs, lr, show_progress)
    return out


def _metrics(folder: Path) -> dict[str, Any]:
    return read_metrics(folder) or {}


def _task(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    """A task's test metrics (validation when it has no test split) from a best/metrics.json."""
    for split in ("test", "validation"):
        found = (metrics.get(split) or {}).get("tasks", {}).get(name)
        if found:
            return {"split": split, **found}
    return {}
