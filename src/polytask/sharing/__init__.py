"""Sharing designs (``encoder.sharing``): how the tasks share the encoder's layers. See :mod:`polytask.sharing.base`
and docs/sharing.md.

- ``hard``: every layer shared (default)
- ``lora``: per-task LoRA adapters in the top layers (PEFT)
- ``moe``: a task-routed mixture of feed-forward experts in the top layers
- ``cross_stitch``: per-task copies of the top layers mixed by learned cross-stitch units
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from torch import nn

from polytask.registry import UnknownNameError
from polytask.sharing import cross_stitch, hard, lora, moe  # noqa: F401  (registers the built-in designs)
from polytask.sharing.base import AuxLoss, Sharing
from polytask.sharing.registry import SHARING

__all__ = ["SHARING", "AuxLoss", "Sharing", "build_sharing", "sharing_problems"]


def build_sharing(spec: dict[str, Any] | None, encoder: nn.Module, tasks: list[str]) -> Sharing:
    """``{name: ..., <params>}`` (None: hard) -> the design, attached to ``encoder`` for ``tasks``."""
    spec = dict(spec or {"name": "hard"})
    name = str(spec.pop("name"))
    cls = SHARING.get(name)
    sharing: Sharing = cls(cls.Params.model_validate(spec), name)
    sharing.attach(encoder, tasks)
    return sharing


def sharing_problems(encoder: Any, tasks: list[str], problem_list: Any) -> list[str]:
    """``encoder.sharing`` of a raw config section: a known design, its parameters (unknown keys are errors), and
    its layer range against the encoder's depth when the encoder is a local folder or an alias (before any weights
    load). ``problem_list`` turns a pydantic error into ``path: message`` lines."""
    raw = encoder.get("sharing") if isinstance(encoder, dict) else None
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict) or "name" not in raw:
        return ["encoder.sharing: must be a design name or a mapping with a name, e.g. {name: lora, layers: 2}"]
    try:
        cls = SHARING.get(str(raw["name"]))
    except UnknownNameError as exc:
        return [f"encoder.sharing.name: {exc}"]
    try:
        params = cls.Params.model_validate({k: v for k, v in raw.items() if k != "name"})
    except ValidationError as exc:
        return list(problem_list(exc, "encoder.sharing"))
    depth = _depth(str(encoder.get("name", "minilm")))
    return [f"encoder.sharing.{p}" for p in cls.check(params, depth, tasks)]


def _depth(name: str) -> int | None:
    """The number of layers of a local encoder (alias or folder) from its config.json; None when not known here."""
    from polytask.encoder import ALIASES

    try:
        folder = Path(ALIASES[name]()) if name in ALIASES else Path(os.path.expanduser(name))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001  (a missing package or folder: the encoder checks report it)
        return None
    depth = config.get("num_hidden_layers")
    return depth if isinstance(depth, int) else None
