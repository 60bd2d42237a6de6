"""Helpers shared by the benchmark scripts: the machine a number was measured on, the command that produced it."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def machine() -> dict[str, Any]:
    """CPU model, cores, the bf16-relevant instruction sets (AMX, AVX512-BF16), torch version and threads."""
    import torch

    name, flags = platform.processor() or platform.machine(), ""
    try:
        info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in info.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                flags = line
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def command() -> str:
    """The command line that ran this script, relative to the repository."""
    script = os.path.relpath(sys.argv[0], REPO)
    return "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])


def describe(m: dict[str, Any]) -> str:
    isa = "AMX" if m["amx"] else ("AVX512-BF16, no AMX" if m["avx512_bf16"] else "no bf16 instructions")
    return f"{m['cpu']} ({m['cores']} cores, {isa}), torch {m['torch']}, {m['threads']} threads"
