"""Hardware facts: a GPU from the registry, a bare memory size, or what nvidia-smi reports."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from advisor.errors import FactError
from advisor.registries import check_flag
from advisor.suggest import closest

if TYPE_CHECKING:  # the rulebook sits above the facts; they only read its registries
    from advisor.rulebook.load import Rulebook

NVIDIA_SMI_TIMEOUT_S = 10
BF16_MIN_COMPUTE_CAPABILITY = (8, 0)  # Ampere; a hardware fact, not a tuning knob
MIB_PER_GIB = 1024  # not-knowledge: the unit
BYTES_PER_MIB, BYTES_PER_GB = 2**20, 1e9  # not-knowledge: the units


@dataclass(frozen=True)
class GpuFacts:
    """``memory_gb``: the vendor's stated size (GB), which the seed's batch table is keyed on.
    ``usable_gib``: what the board reports (nvidia-smi memory.total / 1024), the memory model's capacity."""

    name: str | None
    memory_gb: float | None
    count: int
    bf16: bool | None
    source: str
    usable_gib: float | None = None
    # nothing described the machine (no --gpu, --gpu-mem or --gpus, no GPU detected): the count is 1 by default
    count_assumed: bool = False
    # All the GPUs where some train on the same data (a config's tensor x context parallel,
    # advisor.facts.mesh): count is then the data-parallel world. None: count is every GPU.
    all_gpus: int | None = None

    @property
    def processes(self) -> int:
        return self.count if self.all_gpus is None else self.all_gpus

    @property
    def model_parallel(self) -> int:
        """GPUs that train on the same data (1 without tensor or context parallelism)."""
        return max(1, self.processes // max(1, self.count))

    def model_parallel_over(self, share: int) -> GpuFacts:
        """These GPUs where each ``share`` of them trains on the same data (tensor x context parallel)."""
        if share <= 1:
            return self
        data = max(1, self.count // share)
        return replace(self, count=data, all_gpus=self.count,
                       source=f"{self.source}; data parallel {data} (the {self.count} GPUs over tensor x context "
                              f"parallel {share})")

    def data_parallel(self, n: int) -> GpuFacts:
        """These GPUs with ``n`` of them training on different data, each with its model-parallel partners."""
        return replace(self, count=n, all_gpus=None if self.all_gpus is None else n * self.model_parallel)

    def report(self) -> dict[str, Any]:
        """What a recommendation shows: count is every GPU, as --gpus is; data_parallel those training on
        different data, where a tensor / context parallel share makes them fewer."""
        out = {k: v for k, v in asdict(self).items() if k != "all_gpus"}
        out["count"] = self.processes
        if self.all_gpus is not None:
            out["data_parallel"] = self.count
        return out

    def as_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gpu.count": self.count, "gpu.count_assumed": self.count_assumed,
                               "gpu.processes": self.processes}
        if self.name is not None:
            out["gpu.name"] = self.name
        if self.memory_gb is not None:
            out["gpu.memory_gb"] = self.memory_gb
            out["gpu.total_memory_gb"] = round(self.memory_gb * self.processes, 1)
        if self.usable_gib is not None:
            out["gpu.usable_gib"] = self.usable_gib
        if self.bf16 is not None:
            out["gpu.bf16"] = self.bf16
        return out


_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|tesla|quadro|amd|instinct|radeon)\b")


def _norm(name: str) -> str:
    # Separators become spaces before the vendor words go: to \b an underscore is a letter, so
    # "nvidia_h100" would keep its "nvidia" and miss the alias "nvidia-h100".
    spaced = re.sub(r"[^a-z0-9]+", " ", name.lower())
    return re.sub(r"[^a-z0-9]+", "", _VENDOR_WORDS.sub("", spaced))


def _claims(book: Rulebook) -> dict[str, list[str]]:
    claims: dict[str, list[str]] = {}
    for gid, entry in book.gpus.items():
        for n in [gid, entry["name"], *entry.get("aliases", [])]:
            ids = claims.setdefault(_norm(n), [])
            if gid not in ids:
                ids.append(gid)
    return claims


def gpu_names(book: Rulebook) -> dict[str, str]:
    """Each name, id or alias that one registry GPU claims."""
    return {n: ids[0] for n, ids in _claims(book).items() if len(ids) == 1}


def shared_gpu_names(book: Rulebook) -> dict[str, list[str]]:
    """Names two or more entries claim: a card sold with more than one memory size ("a100": 40 or 80 GB)."""
    return {n: ids for n, ids in _claims(book).items() if len(ids) > 1}


def lookup_gpu(book: Rulebook, name: str, *, fuzzy: bool = False) -> dict[str, Any] | None:
    """A registry entry by id, name or alias (vendor words ignored). ``fuzzy`` is for names
    nvidia-smi reports with a form factor ("H100 80GB HBM3"): the longest registry name inside it."""
    key = _norm(name)
    names = gpu_names(book)
    if key in names:
        return book.gpus[names[key]]
    shared = shared_gpu_names(book).get(key)
    if shared is not None and not fuzzy:  # guessing the larger card would size batches that run out of memory
        sizes = " or ".join(f"{book.gpus[g]['memory_gb']:g} GB" for g in shared)
        raise FactError(f"GPU {name!r} is sold with {sizes}: say which",
                        hint=f"--gpu {' or --gpu '.join(shared)}, or --gpu-mem GiB")
    if not fuzzy:
        return None
    hits = [(len(n), gid) for n, gid in names.items() if len(n) >= 2 and n in key]
    if hits:
        return book.gpus[max(hits)[1]]
    return None


def gpu_mem_source(gib: float) -> str:
    """How GpuFacts.source names --gpu-mem; sized_by_gpu_mem reads it back."""
    return f"--gpu-mem {gib:g} GiB"


def sized_by_gpu_mem(source: str) -> bool:
    """Whether --gpu-mem gave a GPU's memory: its one GiB number is then both the stated and the
    usable size. Equal numbers alone do not say so: an A100 80GB reports exactly 81920 MiB."""
    return re.search(r"(?:^| with )--gpu-mem \S+ GiB$", source) is not None


def registry_usable_gib(entry: dict[str, Any]) -> float:
    """A registry GPU's capacity in GiB: its reported MiB / 1024, or (a user entry without
    usable_mib) its stated size taken as GiB."""
    if "usable_mib" in entry:
        return float(entry["usable_mib"]) / MIB_PER_GIB
    return float(entry["memory_gb"])


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
    entry = lookup_gpu(book, name, fuzzy=True)
    source = "nvidia-smi"
    memory_gb: float | None = None
    usable_gib: float | None = None
    try:
        mib = float(mem_mib)
    except ValueError:
        # "[N/A]" (unified-memory boards, some vGPUs): the GPU is there, its memory is unknown.
        source = f"nvidia-smi (memory reported as {mem_mib or 'nothing'}: give --gpu-mem)"
    else:
        usable_gib = mib / MIB_PER_GIB
        # A board never reports more than it is sold with; a registry entry stating less is another
        # variant the fuzzy name match picked (a V100 32GB named like the 16GB one).
        if entry is not None and float(entry["memory_gb"]) >= usable_gib:
            memory_gb = float(entry["memory_gb"])
            source = f"nvidia-smi; stated size from the registry ({entry['id']})"
        else:
            # Why decimal GB: a board reports a little less than it is sold with, and in decimal GB
            # that lands at or just above the stated size, so the batch table's rows key as they do
            # for a registry GPU (an L4's 23034 MiB is 24.2 GB, 22.5 GiB).
            memory_gb = round(mib * BYTES_PER_MIB / BYTES_PER_GB, 1)
            source = "nvidia-smi; not in the registry: stated size taken as its memory in decimal GB"
    bf16 = _bf16_from_cc(rows[0][2]) if len(rows[0]) > 2 else None
    if bf16 is None and entry is not None:
        bf16 = bool(entry["bf16"])
    return GpuFacts(name=name, memory_gb=memory_gb, count=len(rows), bf16=bf16, source=source, usable_gib=usable_gib)


def resolve_gpu(book: Rulebook, *, name: str | None, memory_gb: float | None, count: int | None,
                detect: bool = True) -> GpuFacts:
    """``memory_gb`` is --gpu-mem: one GPU's usable memory in GiB (nvidia-smi memory.total / 1024); it
    also stands in for the stated size in the batch table's lookup."""
    check_flag("--gpus", count)
    check_flag("--gpu-mem", memory_gb)
    if name is not None:
        entry = lookup_gpu(book, name)
        if entry is None:
            close = closest(_norm(name), gpu_names(book))
            ids = dict.fromkeys(book.gpus[gpu_names(book)[c]]['id'] for c in close)  # best match first
            hint = f"closest: {', '.join(ids)}; " if close else ""
            raise FactError(f"unknown GPU {name!r}", hint=f"{hint}`advisor gpus` lists all, or give --gpu-mem GiB")
        if memory_gb is not None:
            return GpuFacts(name=entry["id"], memory_gb=float(memory_gb), count=count or 1, bf16=bool(entry["bf16"]),
                            source=f"registry ({entry['_file']}) with {gpu_mem_source(memory_gb)}",
                            usable_gib=float(memory_gb))
        usable = "" if "usable_mib" in entry else "; no usable_mib: stated size taken as GiB"
        return GpuFacts(name=entry["id"], memory_gb=float(entry["memory_gb"]), count=count or 1,
                        bf16=bool(entry["bf16"]), source=f"registry ({entry['_file']}){usable}",
                        usable_gib=registry_usable_gib(entry))
    if memory_gb is not None:
        return GpuFacts(name=None, memory_gb=float(memory_gb), count=count or 1, bf16=None,
                        source=gpu_mem_source(memory_gb), usable_gib=float(memory_gb))
    if detect:
        found = detect_nvidia(book)
        if found is not None:
            if count is not None:
                return replace(found, count=count, source=found.source + " with --gpus")
            return found
    return GpuFacts(name=None, memory_gb=None, count=count or 1, bf16=None, source="none: no --gpu given and no GPU detected",
                    count_assumed=count is None)
