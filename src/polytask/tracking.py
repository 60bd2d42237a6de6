"""Where training numbers go: a JSONL file (always), TensorBoard (when installed), and a progress bar."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, ``{"type": "train"|"eval", "step": N, ...}``."""

    def __init__(self, output_dir: Path, enabled: bool = True) -> None:
        self.path = output_dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled:
            output_dir.mkdir(parents=True, exist_ok=True)
            try:  # optional: only when the tensorboard package is installed
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(output_dir / "tensorboard"))
            except Exception:  # noqa: BLE001  (ImportError, or a broken optional install: JSONL still works)
                self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        if self._tb is not None:
            for key, value in _flatten(record).items():
                if isinstance(value, (int, float)) and key != "step":
                    self._tb.add_scalar(f"{record['type']}/{key}", value, record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out


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
