"""Peak memory of this process around a block of work, and parameter counts of saved models.

On Linux the kernel's RSS high-water mark (``VmHWM`` in /proc/self/status) is reset through /proc/self/clear_refs
before the block and read after it; elsewhere the increase of ``resource.getrusage().ru_maxrss`` is reported (a
lower bound: 0 when the block stays under an earlier peak). On CUDA ``torch.cuda.max_memory_allocated`` too.
"""

from __future__ import annotations

import ctypes
import gc
import math
import resource
import sys
from pathlib import Path
from typing import Any

MIB = 1024 * 1024



def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark of this process (Linux >= 4.0); False where that is not possible."""
    if _status_kib("VmHWM") is None:
        return False
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _maxrss_kib() -> float:
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 1024 if sys.platform == "darwin" else float(value)  # bytes on macOS, KiB on Linux


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB: ``VmHWM`` on Linux (the high-water mark of the current
    address space, which starts afresh at exec), else ``ru_maxrss``. ``ru_maxrss`` is not used on Linux because the
    kernel carries it over from the parent across fork + exec."""
    kib = _status_kib("VmHWM")
    return (kib if kib is not None else _maxrss_kib()) / 1024


def _release_memory() -> None:
    """Give freed memory back to the OS, so a run's peak is not inflated by what an earlier run left in the heap."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """``with PeakMemory() as m: ...`` then ``m.result()``: peak RSS (MiB) of this process during the block."""

    VMHWM = "VmHWM (Linux kernel peak RSS of the process, reset via /proc/self/clear_refs before each run)"
    MAXRSS = ("increase of resource.getrusage(RUSAGE_SELF).ru_maxrss during the run (a lower bound: the peak is "
              "not reset between runs)")

    def __enter__(self) -> PeakMemory:
        import torch

        _release_memory()
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        self.method = "vmhwm" if _reset_peak_rss() else "ru_maxrss"
        self.before_kib = float(_status_kib("VmRSS") or 0) if self.method == "vmhwm" else _maxrss_kib()
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch

        if self.method == "vmhwm":
            self.peak_kib = float(_status_kib("VmHWM") or 0)
        else:
            self.peak_kib = _maxrss_kib()
        self.cuda_peak = torch.cuda.max_memory_allocated() if self.cuda else None

    def result(self) -> dict[str, Any]:
        if self.method == "vmhwm":
            peak, delta = self.peak_kib / 1024, (self.peak_kib - self.before_kib) / 1024
        else:
            peak, delta = self.peak_kib / 1024, max(0.0, self.peak_kib - self.before_kib) / 1024
        return {"method": self.method, "peak_rss_mib": round(peak, 1),
                "rss_before_mib": round(self.before_kib / 1024, 1), "peak_rss_increase_mib": round(delta, 1),
                "cuda_peak_mib": None if self.cuda_peak is None else round(self.cuda_peak / MIB, 1)}


def count_parameters(model_file: Path) -> int:
    """Number of values in a model.safetensors (= the model's parameters: polytask saves no buffers there)."""
    from safetensors import safe_open

    with safe_open(str(model_file), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
