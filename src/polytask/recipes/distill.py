"""Distillation into one multi-task model with teacher annealing (BAM!, Clark et al. 2019).

``distillation: {teachers: [CKPT, ...]}`` in a run config (or ``polytask distill CONFIG --teachers CKPT...``): each
teacher is a checkpoint (e.g. a single-task run of ``polytask baseline``) holding some of the config's tasks. Before
training, every teacher labels the training rows of its tasks ONCE, with its own tokenizer and inputs; the outputs
(class probabilities, values, per-word probabilities: ``Task.soft_target``) are stored as safetensors under
``OUTPUT_DIR/teachers/TASK.safetensors`` with the teacher's path and a digest of the rows, and reused by a resumed
run. The student then trains each task on w·teacher + (1 − w)·gold, the teacher weight w going linearly from 1 at the
first step to 0 at the last (teacher annealing), so it ends on the gold labels alone. A teacher may use another
encoder than the student (a larger or multilingual one): outputs are stored per example (per word for tagging), not
per token. Distillable task types: classification (single- and multi-label), regression, token classification.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from polytask.config import RunConfig, validate_config
from polytask.data.loading import MultiTaskData, load_data
from polytask.errors import PolytaskError

log = logging.getLogger("polytask")


def rows_digest(split: Any) -> str:
    """Which rows (file and line of each example, in order) a split holds: teacher and student must agree."""
    return hashlib.sha256("\n".join(e.location for e in split.examples).encode()).hexdigest()


def _teacher_tasks(cfg: RunConfig, teachers: list[str]) -> dict[str, str]:
    """task -> the teacher checkpoint that labels it (one teacher per task)."""
    from polytask.checkpoint import read_config

    owner: dict[str, str] = {}
    for teacher in teachers:
        tasks = read_config(teacher)["tasks"]
        for name in tasks:
            if name in cfg.tasks:
                if name in owner:
                    raise PolytaskError(f"distillation: task {name!r} has two teachers: {owner[name]} and {teacher}")
                owner[name] = teacher
    if not owner:
        raise PolytaskError("distillation: no teacher holds a task of this config (teachers: "
                            f"{', '.join(teachers)}; tasks: {', '.join(cfg.tasks)})")
    return owner


def label_with_teachers(cfg: RunConfig, folder: Path) -> dict[str, Path]:
    """Compute (or reuse) every teacher's soft targets on the training rows of its tasks; -> task -> file."""
    from polytask.evaluate import host_outputs
    from polytask.model import MultiTaskModel

    assert cfg.distillation is not None
    owner = _teacher_tasks(cfg, cfg.distillation.teachers)
    files: dict[str, Path] = {}
    by_teacher: dict[str, list[str]] = {}
    for task, teacher in owner.items():
        by_teacher.setdefault(teacher, []).append(task)
    for teacher, names in by_teacher.items():
        model = MultiTaskModel.from_pretrained(teacher)
        for name in names:
            if not model.tasks[name].distillable:
                raise PolytaskError(f"distillation: task {name!r} is a {model.tasks[name].params.type}, which does "
                                    "not support distillation (classification, regression, token_classification do)")
        data_cfg = _restricted(cfg, names)
        data = load_data(data_cfg, model.tokenizer, splits=("train",), tasks={n: model.tasks[n] for n in names})
        for split in data.splits["train"].values():
            for name in split.tasks:
                files[name] = _label(model, split, name, teacher, folder, host_outputs, cfg.train.eval_batch_size)
    return files


def _restricted(cfg: RunConfig, names: list[str]) -> RunConfig:
    data = cfg.model_dump(mode="json")
    data["tasks"] = {n: data["tasks"][n] for n in names}
    used = {data["tasks"][n]["dataset"] for n in names}
    data["datasets"] = {d: spec for d, spec in data["datasets"].items() if d in used}
    data["distillation"] = None
    return validate_config(data, source="<teacher data>", check_files=False)


def _label(model: Any, split: Any, name: str, teacher: str, folder: Path, host_outputs: Any,
           batch_size: int) -> Path:
    file = folder / f"{name}.safetensors"
    digest = rows_digest(split)
    if file.is_file():
        with safe_open(str(file), "pt") as f:
            meta = f.metadata()
        if meta.get("teacher") == str(Path(teacher).resolve()) and meta.get("rows") == digest:
            log.info("distillation: reusing %s's outputs for %s (%s)", teacher, name, file)
            return file
    log.info("distillation: %s labels the %d training rows of %s", teacher, len(split), name)
    task = model.tasks[name]
    host = host_outputs(model, split, [name], batch_size)[name]
    targets = []
    for example, idx in zip(split.examples, split.by_example()):
        targets.append(task.soft_target(example, [split.features[i] for i in idx], [host[i] for i in idx]))
    shapes = np.array([t.shape if t.ndim else (1,) for t in targets], dtype=np.int64)
    shapes = shapes if shapes.ndim == 2 else shapes.reshape(len(targets), -1)
    flat = [t.reshape(-1) for t in targets]
    offsets = np.cumsum([0] + [len(f) for f in flat])
    folder.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    save_file({"data": torch.from_numpy(np.concatenate(flat).astype(np.float32)),
               "offsets": torch.from_numpy(offsets.astype(np.int64)), "shapes": torch.from_numpy(shapes)},
              str(tmp), metadata={"teacher": str(Path(teacher).resolve()), "rows": digest,
                                  "state": json.dumps(task.state())})
    tmp.replace(file)
    return file


def attach(data: MultiTaskData, cfg: RunConfig, folder: Path) -> None:
    """Put each teacher's soft targets (computed by :func:`label_with_teachers` into ``folder``) into the student's
    training fields (``soft``), checking that they come from this config's teacher for the task, on the same rows,
    with the same label space."""
    assert cfg.distillation is not None
    owner = _teacher_tasks(cfg, cfg.distillation.teachers)
    for split in data.splits["train"].values():
        for name in split.tasks:
            if name not in owner:
                continue
            file = folder / f"{name}.safetensors"
            if not file.is_file():
                raise PolytaskError(f"distillation: {file} is missing (the teachers' outputs are written before "
                                    "training by the main process)")
            with safe_open(str(file), "np") as f:
                meta, flat = f.metadata(), f.get_tensor("data")
                offsets, shapes = f.get_tensor("offsets"), f.get_tensor("shapes")
            if meta["teacher"] != str(Path(owner[name]).resolve()):
                raise PolytaskError(f"distillation: {file} holds the outputs of {meta['teacher']}, not of this "
                                    f"config's teacher {owner[name]}: delete it")
            if meta["rows"] != rows_digest(split):
                raise PolytaskError(f"distillation: {file} was computed on other training rows than the "
                                    f"student's {split.name} (different data, sample or max_rows): delete it")
            student = data.tasks[name].state()
            teacher = json.loads(meta["state"])
            if "labels" in student and student["labels"] != teacher.get("labels"):
                raise PolytaskError(f"distillation: task {name!r}: the teacher's labels {teacher.get('labels')} "
                                    f"differ from the student's {student['labels']}")
            for i, feature in enumerate(split.features):
                e = feature.example
                value = flat[offsets[e]: offsets[e + 1]].reshape(shapes[e])
                split.fields[name][i]["soft"] = value if value.size > 1 else float(value.reshape(-1)[0])
