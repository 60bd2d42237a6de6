"""Where training numbers go: a JSONL file (always), the experiment trackers of ``train.report_to`` (through
HF Accelerate, see polytask.trackers), and a progress bar."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from polytask.trackers import scalars


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, ``{"type": "train"|"eval", "step": N, ...}``; its
    numbers also go to the trackers the ``accelerator`` was built with (``accelerator.log``, main process only).

    ``enabled`` False (the other processes of a multi-process run) writes nothing."""

    def __init__(self, output_dir: Path, enabled: bool = True, accelerator: Any = None) -> None:
        self.path = output_dir / "metrics.jsonl"
        self.enabled = enabled
        self._accelerator = accelerator
        if enabled:
            output_dir.mkdir(parents=True, exist_ok=True)

    def start_trackers(self, hyperparameters: dict[str, Any]) -> None:
        """Start the accelerator's trackers (``init_trackers``: a run per tracker, with the run's settings)."""
        if self.enabled and self._accelerator is not None and self._accelerator.log_with:
            from polytask.trackers import PROJECT

            self._accelerator.init_trackers(PROJECT, config=hyperparameters)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self._accelerator is not None and self._accelerator.trackers:
            self._accelerator.log(scalars(record), step=record["step"])

    def close(self) -> None:
        """End the trackers' runs (files flushed, runs marked finished); a second call does nothing. Not
        ``accelerator.end_training()``: that also ends the process group, which evaluation still uses."""
        if self._accelerator is not None:
            trackers, self._accelerator.trackers = list(self._accelerator.trackers), []
            for tracker in trackers:
                tracker.finish()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a run's metrics.jsonl; after a resume, later records for a step replace earlier ones."""
    records: dict[tuple[str, int, str], dict[str, Any]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            records[(r["type"], r["step"], r.get("split", ""))] = r
    return sorted(records.values(), key=lambda r: (r["step"], r["type"]))


class RunningLoss:
    """Exponential moving average of each task's loss (what the progress bar shows)."""

    def __init__(self, decay: float = 0.9) -> None:
        self.decay = decay
        self.values: dict[str, float] = {}

    def update(self, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            old = self.values.get(k)
            self.values[k] = v if old is None or not math.isfinite(old) else self.decay * old + (1 - self.decay) * v


class Throughput:
    """Examples per second over the steps since the last read."""

    def __init__(self) -> None:
        self.start, self.examples = time.perf_counter(), 0

    def add(self, n: int) -> None:
        self.examples += n

    def read(self) -> float:
        now = time.perf_counter()
        rate = self.examples / max(now - self.start, 1e-9)
        self.start, self.examples = now, 0
        return rate


def progress_bar(total: int | None, desc: str, unit: str, initial: int = 0, enabled: bool | None = True):
    """A tqdm bar on stderr that stays readable everywhere.

    On a terminal it redraws every 0.5 s and follows the window width. A pseudo-terminal that reports 0 columns
    (``script``, some CI runners, editors) would make tqdm draw nothing, so it gets a fixed size instead
    ($COLUMNS x $LINES, else 100 x 24). In a log file it redraws every 30 s so the evaluation lines are not buried.
    ``enabled=None``: tqdm's own choice (off when stderr is not a terminal).
    """
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    try:
        width = os.get_terminal_size(sys.stderr.fileno()).columns if tty else 0
    except OSError:
        width = 0
    ncols = nrows = None
    if tty and width == 0:  # tqdm would also hide the bar when the terminal reports 0 rows
        fallback = shutil.get_terminal_size((100, 24))
        ncols, nrows = fallback.columns or 100, fallback.lines or 24
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr,
                disable=None if enabled is None else not enabled, dynamic_ncols=width > 0, ncols=ncols,
                nrows=nrows, mininterval=0.5 if tty else 30.0)
