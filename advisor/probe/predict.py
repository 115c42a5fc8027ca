"""The memory model's prediction for the probed shape: the one place the probe calls it.

When the memory model cannot estimate this job the prediction is None and the
predicted-vs-measured rule is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advisor.errors import AdvisorError
from advisor.probe.plan import ProbePlan
from advisor.rulebook.load import Rulebook


@dataclass(frozen=True)
class Prediction:
    total_gb: float  # including the CUDA context
    reserved_gb: float  # comparable to torch.cuda.max_memory_reserved

    def as_dict(self) -> dict[str, Any]:
        return {"total_gb": self.total_gb, "reserved_gb": self.reserved_gb}


def predicted_memory(book: Rulebook, plan: ProbePlan, micro_batch_size: int | None = None,
                     prompt_tokens: int | None = None) -> Prediction | None:
    """``prompt_tokens``: the longest prompt the run sampled from, which an online trainer does not cap: the
    prediction counts it where the plan states no max_prompt_length (else rl-prompt-tokens stands in)."""
    from advisor.memory import estimate

    params = {**plan.params, "micro_batch_size": micro_batch_size or plan.micro_batch_size}
    if prompt_tokens and not params.get("max_prompt_length"):
        params["max_prompt_length"] = prompt_tokens
    try:
        est = estimate(book, plan.job(), params)
    except AdvisorError:
        return None  # a job the memory model does not cover: nothing to compare
    return Prediction(total_gb=float(est.total_gb), reserved_gb=float(est.reserved_gb))


def memory_margin(book: Rulebook) -> float | None:
    """The memory model's safety margin (rules/memory.yaml's `safety-margin`): the near-capacity sign
    reads the same number the fit uses. None when the rulebook has no memory model."""
    from advisor.memory.knowledge import knowledge

    try:
        return float(knowledge(book)["safety-margin"])
    except AdvisorError:
        return None
