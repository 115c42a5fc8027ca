"""Peak memory per step, and the memory cap the probe honours.

CUDA: ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` after a reset at the start
of each step; ``--max-memory`` becomes ``torch.cuda.set_per_process_memory_fraction`` so the
allocator itself refuses more (a real ``OutOfMemoryError``).
CPU: the step's peak resident set size above the RSS the process had before its first probe
loaded a model (the runtime's own footprint, as the CUDA numbers leave out the CUDA context; one
baseline per process, so a model a sweep keeps cached between runs counts in every run's peak).
On Linux the high-water mark is reset per step by writing "5" to /proc/self/clear_refs and read
as VmHWM from /proc/self/status; elsewhere the peak since start is used. A step whose peak
exceeds ``--max-memory`` is treated as out of memory.

Freed memory that malloc keeps is the noise in RSS: a step that reuses it never raises the
high-water mark (a micro-batch looks as if it fits), and memory a released model left behind
counts against the next one. So with glibc, ``malloc_trim(0)`` hands free pages back to the
kernel before the baseline and before each step: the RSS then tracks the live set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from functools import cache
from pathlib import Path
from typing import Any

GIB = 2**30  # not-knowledge: bytes per GiB
KIB = 1024  # not-knowledge: /proc/self/status counts kB
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_BASELINE: dict[str, float] = {}  # the RSS this process had before its first probe loaded a model


class MemoryCapExceeded(Exception):
    """A CPU step whose peak went past --max-memory (the CPU stand-in for CUDA's OutOfMemoryError)."""

    def __init__(self, message: str, peak_gb: float) -> None:
        super().__init__(message)
        self.peak_gb = peak_gb


def _status_kib(key: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        return None
    return None


@cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def trim() -> None:
    """Hand the pages malloc holds free back to the kernel, so RSS counts live memory only."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)


def _rss_gb() -> float:
    kib = _status_kib("VmRSS")
    if kib is None:
        usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS: bytes; Linux: KiB
        return usage / GIB if sys.platform == "darwin" else usage * KIB / GIB
    return kib * KIB / GIB


class MemoryMeter:
    def __init__(self, device: str, cap_gb: float | None) -> None:
        self.device = device
        self.cap_gb = cap_gb
        self.fraction_set = False
        self.can_reset = False
        self.capacity_gb: float | None = cap_gb
        self.baseline_gb: float | None = None
        if device == "cuda":
            import torch

            total = torch.cuda.get_device_properties(0).total_memory / GIB
            self.capacity_gb = min(total, cap_gb) if cap_gb is not None else total
            if cap_gb is not None and cap_gb < total:
                torch.cuda.set_per_process_memory_fraction(cap_gb / total, 0)
                self.fraction_set = True
            self.kind = "CUDA max_memory_allocated / max_memory_reserved per step"
        else:
            if "rss" not in _BASELINE:
                import gc

                gc.collect()
                trim()
                _BASELINE["rss"] = _rss_gb()
            self.baseline_gb = _BASELINE["rss"]
            try:
                _CLEAR_REFS.write_text("5")
                self.can_reset = _status_kib("VmHWM") is not None
            except OSError:
                self.can_reset = False
            self.kind = ("CPU peak RSS per step (VmHWM, reset each step) above the process's RSS before the model loaded"
                         if self.can_reset else "CPU peak RSS since start (ru_maxrss) above the RSS before the model loaded")

    def start_step(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(0)
        elif self.can_reset:
            trim()
            try:
                _CLEAR_REFS.write_text("5")
            except OSError:
                self.can_reset = False

    def end_step(self) -> tuple[float, float]:
        """(peak allocated, peak reserved) in GiB since start_step."""
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize(0)
            return torch.cuda.max_memory_allocated(0) / GIB, torch.cuda.max_memory_reserved(0) / GIB
        kib = _status_kib("VmHWM") if self.can_reset else None
        if kib is not None:
            peak = kib * KIB / GIB
        else:
            usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            peak = usage / GIB if sys.platform == "darwin" else usage * KIB / GIB
        above = max(0.0, peak - (self.baseline_gb or 0.0))
        return above, above

    def check(self, peak_gb: float) -> None:
        """CPU: a peak over the cap is an out-of-memory (CUDA's allocator enforces its own)."""
        if self.device != "cuda" and self.cap_gb is not None and peak_gb > self.cap_gb:
            raise MemoryCapExceeded(f"peak {peak_gb:.3f} GiB above the --max-memory cap of {self.cap_gb:g} GiB", peak_gb)

    def release(self) -> None:
        """Give the allocator's cached blocks back (between OOM attempts)."""
        import gc

        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()
        else:
            trim()

    def close(self) -> None:
        if self.fraction_set:
            import torch

            torch.cuda.set_per_process_memory_fraction(1.0, 0)
            self.fraction_set = False


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryCapExceeded, MemoryError)):
        return True
    torch: Any = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)
