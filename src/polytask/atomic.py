"""Atomic folder saves: a folder is written beside its final name and swapped in by renames once every file is
on disk, so a crash at any moment leaves the old complete folder or the new one (``atomic_dir``), and an interrupted
swap is finished on the next start (``recover_dir``). Checkpoints (``polytask.checkpoint``) and exports use it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("polytask.checkpoint")  # the name its messages had when this lived in polytask.checkpoint

COMPLETE = ".complete"  # written last into a folder being saved: a folder holding it has every file
CRASH_ENV = "POLYTASK_CRASH_AT"  # tests only: "NAME:POINT[:N]" kills the process at that point (see _crash_point)
CRASH_POINTS = ("half-written", "written", "complete", "between-renames", "swapped")
_crash_counts: dict[tuple[str, str], int] = {}


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` by renames, so a crash leaves
    either the old complete folder or the new complete one, never a half-written one under the final name.

    The swap: every file of the new folder is flushed to disk, then the marker ``.complete`` is written; the old
    folder is renamed to ``.NAME.old-*``, the new one to ``NAME``, and the old one deleted. A crash between the two
    renames leaves no ``NAME`` but two complete hidden folders: :func:`recover_dir` puts the newer one in place.
    Leftovers of earlier crashes (``.NAME.tmp-*``, ``.NAME.old-*``) are deleted once the new folder is in place.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _crash_point(path, "written")  # every file there, no marker yet: recovery must not take it
        _mark_complete(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _crash_point(path, "complete")
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
    if path.exists():
        os.replace(path, old)
        _crash_point(path, "between-renames")
    os.replace(tmp, path)
    _fsync_dir(path.parent)  # the renames themselves survive a power cut, not only a killed process
    _crash_point(path, "swapped")
    shutil.rmtree(old, ignore_errors=True)
    _remove_leftovers(path)


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` was written to the end by :func:`atomic_dir` (it holds the marker)."""
    return (Path(folder) / COMPLETE).is_file()


def leftovers(path: str | Path) -> list[Path]:
    """The hidden folders an interrupted :func:`atomic_dir` of ``path`` may have left beside it."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for pattern in (f".{path.name}.tmp-*", f".{path.name}.old-*") for p in path.parent.glob(pattern)
                  if p.is_dir())


def recover_dir(path: str | Path) -> bool:
    """Finish a save of ``path`` that a crash interrupted; -> whether ``path`` exists afterwards.

    The newest complete folder among ``path`` and its leftovers (by the time in their marker; a ``path`` written
    before markers existed counts as the oldest) ends up as ``path``; every other leftover is deleted. Incomplete
    leftovers (no marker: the crash came while writing) are never used.
    """
    path = Path(path)
    candidates = [p for p in leftovers(path) if is_complete(p)]
    best = max(candidates, key=_written_ns, default=None)
    if best is not None and path.exists() and _written_ns(path) >= _written_ns(best):
        best = None
    if best is not None:
        log.warning("%s: a save was interrupted by a crash; its complete copy %s is put in place", path, best.name)
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        if path.exists():
            os.replace(path, old)
        os.replace(best, path)
        _fsync_dir(path.parent)
    _remove_leftovers(path)
    return path.exists()


def _written_ns(folder: Path) -> int:
    try:
        return int(json.loads((folder / COMPLETE).read_text(encoding="utf-8"))["written_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1  # no marker (written before markers existed): older than any folder with one


def _mark_complete(folder: Path) -> None:
    """Flush every file of ``folder`` to disk, then write the marker (so the marker never outlives missing data)."""
    for file in folder.rglob("*"):
        if file.is_file():
            with file.open("rb") as f:
                os.fsync(f.fileno())
    with (folder / COMPLETE).open("w", encoding="utf-8") as f:
        f.write(json.dumps({"written_ns": time.time_ns()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder: renames there are as durable as the OS makes them
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_leftovers(path: Path) -> None:
    for folder in leftovers(path):
        shutil.rmtree(folder, ignore_errors=True)


def _final_path(folder: Path) -> Path:
    """The folder an :func:`atomic_dir` temporary folder will become (``.last.tmp-1a2b3c4d`` -> ``last``)."""
    name, dot, _ = folder.name.rpartition(".tmp-")
    return folder.parent / name[1:] if dot and name.startswith(".") else folder


def _crash_point(path: Path, point: str) -> None:
    """Test hook: with ``POLYTASK_CRASH_AT=NAME:POINT[:N]`` the process kills itself (SIGKILL: no clean-up runs)
    the N-th time (default 1) a save of a folder named NAME reaches POINT, so a test can crash a real training run
    at an exact moment of a checkpoint save. Unset (always, outside tests) it costs one dictionary lookup."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    where, _, nth = rest.partition(":")
    if name != path.name or where != point:
        return
    key = (name, point)
    _crash_counts[key] = _crash_counts.get(key, 0) + 1
    if _crash_counts[key] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
