"""The library entry point: the same path the CLI takes, for tests and for Python callers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from advisor.facts.hardware import resolve_gpu
from advisor.facts.job import JobFacts
from advisor.facts.model import resolve_model
from advisor.facts.task import TaskFacts, check_variant
from advisor.recommendation import Recommendation
from advisor.rulebook.load import Rulebook, load_rulebook


def job_facts(
    book: Rulebook,
    *,
    model: str,
    method: str,
    peft: str = "lora",
    gpu: str | None = None,
    gpu_mem: float | None = None,
    gpus: int | None = None,
    dataset_size: int | None = None,
    seq_len: int | None = None,
    cycles: int | None = None,
    use_case: str = "chat",
    situation: str | None = None,
    sft_lr: float | None = None,
    variant: str | None = None,
    detect_gpu: bool = True,
) -> JobFacts:
    task = TaskFacts(
        method=method, peft=peft, dataset_size=dataset_size, seq_len=seq_len, cycles=cycles,
        use_case=use_case, situation=situation, sft_learning_rate=sft_lr,
        variant=check_variant(book.variants, method, variant),
    )
    return JobFacts(
        model=resolve_model(model, book),
        gpu=resolve_gpu(book, name=gpu, memory_gb=gpu_mem, count=gpus, detect=detect_gpu),
        task=task,
    )


def recommend(
    *,
    rule_dirs: Iterable[Path] = (),
    book: Rulebook | None = None,
    pins: dict[str, Any] | None = None,
    memory_knobs: dict[str, Any] | None = None,
    **facts: Any,
) -> Recommendation:
    """Recommend a config. ``facts`` are job_facts' keywords; ``pins`` are --set values;
    ``memory_knobs`` the memory model's own settings (e.g. attention)."""
    book = book if book is not None else load_rulebook(rule_dirs)
    job = job_facts(book, **facts)
    all_pins = dict(pins or {})
    if job.task.seq_len is not None:
        all_pins.setdefault("max_seq_length", job.task.seq_len)
    from advisor.memory.plan import recommend_with_memory

    rec = recommend_with_memory(book, job, all_pins, memory_knobs)
    rec.warnings[:0] = job.task.unused_flags()
    return rec
