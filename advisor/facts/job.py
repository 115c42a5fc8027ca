"""All the facts about one job, flattened for the rules and kept whole for the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from advisor.facts.hardware import GpuFacts, resolve_gpu
from advisor.facts.model import ModelFacts, resolve_model
from advisor.facts.task import TaskFacts, check_variant

if TYPE_CHECKING:  # the rulebook sits above the facts; they only read its registries
    from advisor.rulebook.load import Rulebook


@dataclass(frozen=True)
class JobFacts:
    model: ModelFacts
    gpu: GpuFacts
    task: TaskFacts

    def flat(self) -> dict[str, Any]:
        return {**self.model.as_facts(), **self.gpu.as_facts(), **self.task.as_facts()}

    def report(self) -> dict[str, dict[str, Any]]:
        model = self.model.as_dict()
        model["attention_modules"] = list(self.model.attention_modules)
        model["mlp_modules"] = list(self.model.mlp_modules)
        return {"model": model, "gpu": self.gpu.report(), "task": asdict(self.task)}


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
