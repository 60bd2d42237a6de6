"""The package type-checks: mypy, configured in pyproject.toml ([tool.mypy]: src/polytask, pydantic plugin), reports
no error. A wrong annotation is caught here, where it was written, rather than by a reader of the code later."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_mypy_reports_no_error() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (it comes with the test extra: pip install -e '.[test]')")
    # the files and options come from pyproject.toml; the cache (.mypy_cache) makes later runs fast
    proc = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, f"mypy found problems:\n{proc.stdout}{proc.stderr}"
