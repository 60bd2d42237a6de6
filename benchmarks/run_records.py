"""Finished benchmark runs kept in a JSON file of the repository, so that a grid too long for one session is
completed over several and each number keeps the machine and date it was measured on.

A record is keyed by the benchmark's own name for the run (``upgrad/every_source/seed-7``) and holds a fingerprint
of the run's validated config (its folder and progress bar left out), the machine, the date and the parts of
``best/metrics.json`` the reports read. A record is reused only for the same key, the same fingerprint and the same
CPU model and torch version: bf16 numerics and step times depend on both, so runs of two kinds of machine are never
mixed in one table. Writes are atomic (a temporary file renamed over the old one) and happen after every run.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

KEPT = ("step", "metric", "best_metric", "validation", "test", "train_seconds", "step_seconds", "timed_steps",
        "parameters")
IGNORED_TRAIN_KEYS = ("output_dir", "progress_bar")


def fingerprint(config: dict[str, Any]) -> str:
    """sha256 of a validated config dump without the ``train`` keys that do not change what is trained, and without
    keys whose value is null: an option added to the schema later (null by default: off) leaves the fingerprints
    of the runs kept before it unchanged."""
    c = _without_nulls(json.loads(json.dumps(config)))
    for key in IGNORED_TRAIN_KEYS:
        c.get("train", {}).pop(key, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


class RunRecords:
    """The records of one JSON file; ``machine`` is :func:`common.machine`'s answer for this process."""

    def __init__(self, path: str | Path, machine: dict[str, Any]) -> None:
        self.path = Path(path)
        self.machine = {k: machine[k] for k in ("cpu", "cores", "amx", "avx512_bf16", "torch", "threads", "gpu")}
        self.records: dict[str, Any] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, key: str, config: dict[str, Any]) -> dict[str, Any] | None:
        """The kept metrics of ``key`` when it was run with ``config`` on this kind of machine, else None."""
        found = self.records.get(key)
        if (found is None or found["config"] != fingerprint(config)
                or any(found["machine"].get(k) != self.machine[k] for k in ("cpu", "torch", "gpu"))):
            return None
        return dict(found["best"])

    def put(self, key: str, config: dict[str, Any], best: dict[str, Any], keep: tuple[str, ...] = KEPT) -> None:
        """Keep the ``keep`` parts of ``best`` (a run's best/metrics.json) as ``key``, run with ``config``."""
        self.records[key] = {"config": fingerprint(config), "machine": self.machine,
                             "date": datetime.date.today().isoformat(), "best": {k: best.get(k) for k in keep}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.records, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def dates(self, keys: list[str]) -> list[str]:
        """The distinct dates on which ``keys`` were measured (for the report's caption)."""
        return sorted({self.records[k]["date"] for k in keys if k in self.records})
