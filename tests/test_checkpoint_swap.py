"""The atomic folder swap of checkpoints under crashes: a real SIGKILL (in a forked child) at every point of a save,
then recovery; and the leftovers of earlier crashes are cleaned."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from polytask.checkpoint import (COMPLETE, CRASH_ENV, CRASH_POINTS, atomic_dir, is_complete, leftovers,
                                 load_training_state, recover_dir)
from polytask.errors import PolytaskError

FILES = ("a.bin", "b.bin", "c.json")


def _write(path: Path, version: str, crash_mid_write: bool = False) -> None:
    """Save a folder of three files holding ``version``; with ``crash_mid_write`` the process dies after one file."""
    with atomic_dir(path) as tmp:
        for i, name in enumerate(FILES):
            (tmp / name).write_text(version * 1000, encoding="utf-8")
            if crash_mid_write and i == 0:
                os.kill(os.getpid(), signal.SIGKILL)


def _crashing_save(path: Path, point: str) -> None:
    """In a forked child: save version 2 of ``path`` and die by SIGKILL at ``point`` of the save."""
    def child() -> None:
        os.environ[CRASH_ENV] = f"{path.name}:{point}"
        _write(path, "2", crash_mid_write=point == "half-written")
        os._exit(0)  # reached only if the crash point was never hit

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL, f"the save should have been killed at {point!r}"


def _version(folder: Path) -> str:
    """The version a folder holds; fails unless it is complete (every file whole, marker present)."""
    assert is_complete(folder), f"{folder} is not complete"
    contents = {(folder / name).read_text(encoding="utf-8") for name in FILES}
    assert len(contents) == 1, f"{folder} mixes versions"
    (content,) = contents
    assert len(content) == 1000 and len(set(content)) == 1, f"{folder} holds a truncated file"
    return content[0]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_every_point_of_the_swap_recovers(tmp_path: Path, point: str) -> None:
    path = tmp_path / "last"
    _write(path, "1")
    _crashing_save(path, point)
    # right after the crash: the final name holds a complete folder, or (between the renames) nothing
    if point == "between-renames":
        assert not path.exists()
    else:
        assert _version(path) == ("2" if point == "swapped" else "1")
    left = leftovers(path)
    assert left or point == "swapped", "a crash during the save leaves its temporary folder"
    assert recover_dir(path)
    # the new version survives once it was complete (marker written); a save killed earlier keeps the old one
    assert _version(path) == ("1" if point in ("half-written", "written") else "2")
    assert leftovers(path) == [], "recovery deletes every leftover"


def test_next_save_cleans_leftovers_of_earlier_crashes(tmp_path: Path) -> None:
    path = tmp_path / "best"
    _write(path, "1")
    _crashing_save(path, "half-written")
    _crashing_save(path, "written")
    assert len(leftovers(path)) == 2
    _write(path, "3")
    assert _version(path) == "3" and leftovers(path) == []


def test_recovery_prefers_the_newest_complete_folder(tmp_path: Path) -> None:
    path = tmp_path / "last"
    path.mkdir()  # written before completion markers existed: counts as older than any marked folder
    (path / "legacy").write_text("x")
    _crashing_save(path, "complete")  # the new folder is complete but was never renamed into place
    assert recover_dir(path) and _version(path) == "2"

    _crashing_save(path, "written")  # an incomplete newer folder is never taken
    assert recover_dir(path) and _version(path) == "2" and leftovers(path) == []

    stale = tmp_path / ".last.old-00000000"  # an older complete copy loses against the one in place
    stale.mkdir()
    (stale / COMPLETE).write_text(json.dumps({"written_ns": 1}))
    assert recover_dir(path) and _version(path) == "2" and not stale.exists()


def test_nothing_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "last"
    assert not recover_dir(path)
    _crashing_save(path, "written")  # the only save never completed
    assert not recover_dir(path) and leftovers(path) == []
    with pytest.raises(PolytaskError, match="does not exist"):
        load_training_state(path)


def test_failed_save_leaves_the_old_folder(tmp_path: Path) -> None:
    path = tmp_path / "best"
    _write(path, "1")
    with pytest.raises(RuntimeError), atomic_dir(path) as tmp:
        (tmp / "a.bin").write_text("partial")
        raise RuntimeError("disk full")
    assert _version(path) == "1" and leftovers(path) == []
