"""What one sweep run leaves behind, in a shape that survives JSON (optuna user attributes,
run_data.json) and that the report reads back whoever ran the trial."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from advisor.errors import AdvisorError
from advisor.safeio import clip


class RecordError(AdvisorError):
    """A sweep's records (all_results.json, run_data.json) that cannot be read back."""


STATUSES = ("complete", "pruned", "failed")
# What a value read back from a sweep's JSON must be (the words name it in an error).
NUMBER, INT, TEXT, FLAG, OBJECT, LIST = "a number", "an integer", "a string", "true or false", "an object", "a list"
_TYPES: dict[str, type | tuple[type, ...]] = {NUMBER: (int, float), INT: int, TEXT: str, FLAG: bool, OBJECT: dict,
                                               LIST: list}
# What each field a record file may hold must be, as `check` reads it (the dataclass's own types).
_KINDS: dict[str, tuple[str, bool, bool]] = {  # field: (kind, a list of them, null allowed)
    "lr": (NUMBER, False, False), "status": (TEXT, False, False), "steps": (INT, True, False),
    "loss": (NUMBER, True, True), "grad_norm": (NUMBER, True, True), "learning_rate": (NUMBER, True, False),
    "eval_steps": (INT, True, False), "eval_loss": (NUMBER, True, True), "eval_loss_start": (NUMBER, False, True),
    "eval_accuracy_end": (NUMBER, False, True), "wall_s": (NUMBER, False, False), "tokens": (INT, False, False),
    "diverged": (FLAG, False, False), "signs": (TEXT, True, False), "trial": (INT, False, True),
    "note": (TEXT, False, False),
}


def is_kind(kind: str, value: Any) -> bool:
    """Whether ``value`` is of ``kind``; JSON's true / false are no numbers."""
    if isinstance(value, bool) and kind != FLAG:
        return False
    return isinstance(value, _TYPES[kind])


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
    def check(cls, data: Any, where: str) -> RunRecord:
        """``from_json`` of a record read from a file: a missing or mistyped field is one RecordError line
        naming ``where`` (the file and the run), the key and the value."""
        if not isinstance(data, dict):
            raise RecordError(f"{where}: a run is {type(data).__name__}, not an object",
                              hint="all_results.json as `advisor sweep` writes it")
        for key in ("lr", "status"):
            if key not in data:
                raise RecordError(f"{where}: a run has no {key!r}", hint="all_results.json as `advisor sweep` writes it")
        for key, (kind, many, null) in _KINDS.items():
            if key not in data:
                continue
            value = data[key]
            items = value if many and isinstance(value, list) else [value]
            if many and not isinstance(value, list):
                raise RecordError(f"{where}: {key} = {clip(value)} is not a list")
            bad = [v for v in items if not (v is None and null) and not is_kind(kind, v)]
            if bad:
                raise RecordError(f"{where}: {key} = {clip(value)}" + (f": {clip(bad[0])}" if many else "")
                                  + f" is not {kind}", hint="all_results.json as `advisor sweep` writes it")
        lr, status = data["lr"], data["status"]
        if not (math.isfinite(lr) and lr > 0):
            raise RecordError(f"{where}: lr = {clip(lr)} is not a learning rate", hint="e.g. 2e-4")
        if status not in STATUSES:
            raise RecordError(f"{where}: status = {clip(status)} is not a run's status",
                              hint=f"one of {', '.join(STATUSES)}")
        return cls.from_json(data)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        keep = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("loss", "grad_norm", "eval_loss"):
            keep[key] = [math.nan if v is None else v for v in keep.get(key, [])]
        return cls(**keep)
