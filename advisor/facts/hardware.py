"""Hardware facts: a GPU from the registry, a bare memory size, or what nvidia-smi reports."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from advisor.errors import FactError
from advisor.rulebook.load import Rulebook
from advisor.suggest import closest

NVIDIA_SMI_TIMEOUT_S = 10
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)  # Ampere; a hardware fact, not a tuning knob


@dataclass(frozen=True)
class GpuFacts:
    name: str | None
    memory_gb: float | None
    count: int
    bf16: bool | None
    source: str

    def as_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gpu.count": self.count}
        if self.name is not None:
            out["gpu.name"] = self.name
        if self.memory_gb is not None:
            out["gpu.memory_gb"] = self.memory_gb
            out["gpu.total_memory_gb"] = round(self.memory_gb * self.count, 1)
        if self.bf16 is not None:
            out["gpu.bf16"] = self.bf16
        return out


_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|tesla|quadro|amd|instinct|radeon)\b")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", _VENDOR_WORDS.sub("", name.lower()))


def gpu_names(book: Rulebook) -> dict[str, str]:
    names: dict[str, str] = {}
    for gid, entry in book.gpus.items():
        for n in [gid, entry["name"], *entry.get("aliases", [])]:
            names[_norm(n)] = gid
    return names


def lookup_gpu(book: Rulebook, name: str, *, fuzzy: bool = False) -> dict[str, Any] | None:
    """A registry entry by id, name or alias (vendor words ignored). ``fuzzy`` is for names
    nvidia-smi reports with a form factor ("H100 80GB HBM3"): the longest registry name inside it."""
    key = _norm(name)
    names = gpu_names(book)
    if key in names:
        return book.gpus[names[key]]
    if not fuzzy:
        return None
    hits = [(len(n), gid) for n, gid in names.items() if len(n) >= 2 and n in key]
    if hits:
        return book.gpus[max(hits)[1]]
    return None


def _bf16_from_cc(cc: str) -> bool | None:
    m = re.fullmatch(r"(\d+)\.(\d+)", cc.strip())
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2))) >= BF16_MIN_COMPUTE_CAPABILITY


def detect_nvidia(book: Rulebook) -> GpuFacts | None:
    """Ask nvidia-smi, if it is on PATH. None when there is no NVIDIA GPU to ask about."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = [[c.strip() for c in line.split(",")] for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not rows or len(rows[0]) < 2:
        return None
    name, mem_mib = rows[0][0], rows[0][1]
    source = "nvidia-smi"
    try:
        memory_gb: float | None = round(float(mem_mib) * 1024 * 1024 / 1e9, 1)
    except ValueError:
        # "[N/A]" (unified-memory boards, some vGPUs): the GPU is there, its memory is unknown.
        memory_gb = None
        source = f"nvidia-smi (memory reported as {mem_mib or 'nothing'}: give --gpu-mem)"
    entry = lookup_gpu(book, name, fuzzy=True)
    bf16 = _bf16_from_cc(rows[0][2]) if len(rows[0]) > 2 else None
    if bf16 is None and entry is not None:
        bf16 = bool(entry["bf16"])
    return GpuFacts(name=name, memory_gb=memory_gb, count=len(rows), bf16=bf16, source=source)


def resolve_gpu(book: Rulebook, *, name: str | None, memory_gb: float | None, count: int | None,
                detect: bool = True) -> GpuFacts:
    if count is not None and count < 1:
        raise FactError(f"--gpus: must be at least 1, got {count}")
    if memory_gb is not None and not 0 < memory_gb <= 4096:
        raise FactError(f"--gpu-mem: {memory_gb} GB is not a plausible GPU memory size", hint="e.g. --gpu-mem 24")
    if name is not None:
        entry = lookup_gpu(book, name)
        if entry is None:
            close = closest(_norm(name), gpu_names(book))
            hint = f"closest: {', '.join(sorted({book.gpus[gpu_names(book)[c]]['id'] for c in close}))}; " if close else ""
            raise FactError(f"unknown GPU {name!r}", hint=f"{hint}`advisor gpus` lists all, or give --gpu-mem GB")
        return GpuFacts(
            name=entry["id"],
            memory_gb=float(memory_gb if memory_gb is not None else entry["memory_gb"]),
            count=count or 1,
            bf16=bool(entry["bf16"]),
            source=f"registry ({entry['_file']})" + (" with --gpu-mem" if memory_gb is not None else ""),
        )
    if memory_gb is not None:
        return GpuFacts(name=None, memory_gb=float(memory_gb), count=count or 1, bf16=None, source="--gpu-mem")
    if detect:
        found = detect_nvidia(book)
        if found is not None:
            if count is not None:
                return GpuFacts(found.name, found.memory_gb, count, found.bf16, found.source + " with --gpus")
            return found
    return GpuFacts(name=None, memory_gb=None, count=count or 1, bf16=None, source="none: no --gpu given and no GPU detected")
