"""What one sweep run leaves behind, in a shape that survives JSON (optuna user attributes,
run_data.json) and that the report reads back whoever ran the trial."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


def _clean(x: float | None) -> float | None:
    """JSON has no NaN or infinity: a diverged value is written as null."""
    return None if x is None or not math.isfinite(x) else x


@dataclass
class RunRecord:
    lr: float
    status: str  # complete | pruned | failed
    steps: list[int] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    grad_norm: list[float | None] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float | None] = field(default_factory=list)
    eval_loss_start: float | None = None
    eval_accuracy_end: float | None = None
    wall_s: float = 0.0  # training time: the optimizer steps, without loading and evaluation
    tokens: int = 0
    diverged: bool = False  # a loss or gradient norm became NaN / inf
    signs: list[str] = field(default_factory=list)  # codes of the signal rules the run showed
    trial: int | None = None
    note: str = ""

    @property
    def optimizer_steps(self) -> int:
        return len(self.steps)

    @property
    def eval_loss_end(self) -> float | None:
        return self.eval_loss[-1] if self.eval_loss else None

    @property
    def train_loss_end(self) -> float | None:
        return self.loss[-1] if self.loss else None

    @property
    def perplexity(self) -> float | None:
        end = self.eval_loss_end
        if end is None:
            return None
        try:
            return math.exp(end)
        except OverflowError:
            return None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("loss", "grad_norm", "eval_loss"):
            out[key] = [_clean(v) for v in out[key]]
        out["eval_loss_start"] = _clean(self.eval_loss_start)
        out["eval_loss_end"] = _clean(self.eval_loss_end)
        out["train_loss_end"] = _clean(self.train_loss_end)
        out["perplexity"] = _clean(self.perplexity)
        out["optimizer_steps"] = self.optimizer_steps
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        keep = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("loss", "grad_norm", "eval_loss"):
            keep[key] = [math.nan if v is None else v for v in keep.get(key, [])]
        return cls(**keep)
