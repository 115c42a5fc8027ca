"""What a probe run measured: per-step records, evaluations, the OOM search, the run's status.

Plain dataclasses with no torch in them, so reports, the sweep and tests read them freely.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from advisor.errors import AdvisorError

STATUSES = ("completed", "stopped", "diverged", "interrupted", "no_fit")


class CouldNotRun(AdvisorError):
    """The probe could not run: the extra is missing, the model cannot be loaded, nothing fits."""

    exit_code = 3


class StopProbe(Exception):
    """Raise from an on_step / on_eval callback to end the run cleanly (status ``stopped``)."""


class ProbeInterrupted(KeyboardInterrupt):
    """Ctrl-C during a probe: ``result`` holds what was measured until then."""

    def __init__(self, result: ProbeResult) -> None:
        super().__init__("probe interrupted")
        self.result = result


@dataclass(frozen=True)
class StepRecord:
    step: int  # optimizer step, 1-based
    loss: float  # mean over the step's micro-batches
    grad_norm: float  # before clipping
    clipped: bool
    learning_rate: float
    tokens: int  # tokens the loss was computed on in this step
    tokens_per_s: float
    step_time_s: float
    peak_allocated_gb: float  # CUDA: max_memory_allocated; CPU: peak RSS above the runtime's own
    peak_reserved_gb: float  # CUDA: max_memory_reserved; CPU: same as allocated

    def as_dict(self) -> dict[str, Any]:
        return {k: _json_number(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EvalRecord:
    step: int
    loss: float
    token_accuracy: float
    perplexity: float
    tokens: int

    def as_dict(self) -> dict[str, Any]:
        return {k: _json_number(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FitAttempt:
    micro_batch: int
    fits: bool
    peak_gb: float | None  # None when the attempt died in the allocator
    during: str = "check"  # "check": the search's trial steps; "training, step N": the run itself failed


@dataclass
class OomReport:
    """The shape that ran out of memory and the halve-then-bisect search that followed."""

    failed_micro_batch: int
    sequences: int  # sequences in the failed micro-batch (DPO: 2 per pair)
    seq_len: int
    at_step: int
    error: str
    attempts: list[FitAttempt] = field(default_factory=list)
    largest_fit: int = 0  # 0: not even a micro-batch of 1 fits
    accumulation: int | None = None  # keeps the effective batch at the largest fitting micro-batch
    effective_batch: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["attempts"] = [asdict(a) for a in self.attempts]
        return out


@dataclass
class ProbeResult:
    status: str = "completed"
    steps: list[StepRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    oom: OomReport | None = None
    micro_batch_size: int = 0  # what the measured steps ran with (after an OOM search: the fit)
    gradient_accumulation_steps: int = 0
    wall_time_s: float = 0.0
    load_time_s: float = 0.0
    device: str = ""
    device_name: str = ""
    memory_capacity_gb: float | None = None  # the GPU's memory, or the --max-memory cap
    memory_baseline_gb: float | None = None  # CPU: RSS before the model was loaded
    memory_kind: str = ""  # how peak memory was measured
    precision: str = ""
    tokenizer: str = ""
    trainable_params: int = 0
    total_params: int = 0
    model_notes: list[str] = field(default_factory=list)
    data_notes: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    trainer: str = ""  # the trainer that ran the steps: "trl.GRPOTrainer 1.16.0", or the probe's own LM step
    logs: list[dict[str, Any]] = field(default_factory=list)  # the trainer's own log rows, one per step (TRL keys)
    samples: list[dict[str, Any]] = field(default_factory=list)  # RL: step, prompt, completion, reward
    prompt_tokens: int | None = None  # online RL: the longest prompt of the probe's data, in the model's tokens
    trainer_state: dict[str, Any] | None = None  # TRL's TrainerState as trainer_state.json holds it

    @property
    def eval_start(self) -> EvalRecord | None:
        return self.evals[0] if self.evals else None

    @property
    def eval_end(self) -> EvalRecord | None:
        return self.evals[-1] if len(self.evals) > 1 else None

    def losses(self) -> list[float]:
        return [s.loss for s in self.steps]


def _json_number(v: Any) -> Any:
    """JSON has no NaN or infinity: they are written as strings ("nan", "inf")."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v
