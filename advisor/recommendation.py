"""The Recommendation: every resolved value with its range, confidence, unit and trace.

``schemas/recommendation.schema.json`` is generated from these models
(``python -m advisor.recommendation``); a test keeps the two in step.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from advisor import __version__
from advisor.output import fmt_value

Confidence = Literal["high", "medium", "low", "theoretical"]
# What a parameter can hold (rules/parameters.yaml types: int, float, bool, str, list_str, list_float).
# bool comes first so that true / false never read as 1 / 0.
Value = Union[bool, int, float, str, list[str], list[float]]

NOTICE = (
    "These values come from rule tables whose own sources call them hypotheses. Each carries "
    "its confidence and source (--explain); confirm them with a short real run on your GPU before a long one."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TraceStep(_Strict):
    stage: Literal["user", "base", "refine", "adjust", "constrain", "derive", "round"]
    rule: str | None = Field(None, description="rule id, or null for a value the user set")
    code: str | None = None
    case: str | None = Field(None, description="the source table's row that matched")
    before: Value | None = None
    after: Value | None = None
    formula: str | None = None
    range: list[int | float] | None = Field(
        None, description="the range after this step: the row's own range for a setting step, moved with the "
                          "value by an adjustment (scaled) or a constraint (clamped)")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the facts and parameters the step read")
    confidence: Confidence | None = None
    source: list[dict[str, str]] = Field(default_factory=list)


class ParameterValue(_Strict):
    value: Value
    unit: str = ""
    range: list[int | float] | None = Field(
        None, description="the range around the final value: the setting row's range, scaled and clamped with "
                          "the value by every adjustment and constraint in the trace")
    rule_range: list[int | float] | None = Field(
        None, description="the setting row's own range, as its source table gives it")
    outside_rule_range: bool = Field(
        False, description="true when adjustments or constraints took the value outside rule_range")
    choices: list[Value] | None = None
    confidence: Confidence | None = Field(None, description="weakest confidence along the trace; null when user-set")
    set_by: Literal["rule", "user"]
    rule: str | None = Field(None, description="the rule that set the value (before adjustments)")
    code: str | None = None
    source: list[dict[str, str]] = Field(default_factory=list)
    notes: list[dict[str, Any]] = Field(default_factory=list)
    trace: list[TraceStep]
    overridden: list[TraceStep] = Field(
        default_factory=list, description="setting rows that also matched but lost to a rule that overrides them "
                                          "(e.g. a seed row the evidence rule LR008 replaces), with the value each "
                                          "would have given; inputs.overridden_by names the winner")

    def number(self) -> float:
        """The value of a numeric parameter (int or float)."""
        return as_number(self.value)

    def range_moved(self) -> bool:
        """True when adjustments or constraints moved the range away from the row's own."""
        return self.range is not None and self.range != self.rule_range

    def range_note(self, short: bool = False) -> str:
        """Where a moved range came from: the row's own range and the steps that moved it."""
        movers = ", ".join(str(s.code) for s in self.trace if s.stage in ("adjust", "constrain"))
        row = span(self.rule_range) if self.rule_range is not None else "no range"
        if short:
            return f"row {row}, moved by {movers}" + ("; outside the row" if self.outside_rule_range else "")
        out = f"the row ({self.code}) gives {row}; moved by {movers}"
        return out + (" — the value is outside the row's range" if self.outside_rule_range else "")


def as_number(value: Value | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    return value


def span(rng: list[Any]) -> str:
    """[lo, hi] as people read it: 'lo – hi', or one number when lo == hi."""
    lo, hi = rng
    return fmt_value(lo) if lo == hi else f"{fmt_value(lo)} – {fmt_value(hi)}"


class LeftOut(_Strict):
    rule: str
    parameter: str
    missing_fact: str
    flag: str | None = None


class MemoryItem(_Strict):
    name: str
    gb: float = Field(description="GiB")
    detail: str
    sources: list[str] = Field(default_factory=list, description="coefficient ids in rules/memory.yaml")
    phase: Literal["static", "grads", "paged", "train", "step", "generate", "fixed"]


class MemoryReport(_Strict):
    """The memory model's prediction for the recommended (or pinned) micro-batch."""

    micro_batch: int
    seq_len: int
    total_gb: float = Field(description="predicted peak incl. the CUDA context (GiB)")
    reserved_gb: float = Field(description="the part comparable with torch.cuda.max_memory_reserved() (GiB)")
    gpu_gb: float | None = Field(None, description="one GPU's capacity, GiB, as the board reports it "
                                 "(nvidia-smi memory.total MiB / 1024; --gpu-mem), not the vendor's stated GB")
    usable_gb: float | None = Field(None, description="gpu_gb less the safety margin (GiB)")
    safety_margin: float | None = None
    headroom_gb: float | None = Field(None, description="gpu_gb - total_gb (GiB; the safety margin is inside it)")
    fits: bool | None = None
    max_micro_batch: int | None = Field(None, description="largest micro-batch under the margin (0: none fits)")
    items: list[MemoryItem]
    notes: list[str] = Field(default_factory=list)
    alternatives: list[str] = Field(default_factory=list, description="what would fit, when nothing does")


class Recommendation(_Strict):
    advisor_version: str = __version__
    notice: str = NOTICE
    facts: dict[str, dict[str, Any]]
    parameters: dict[str, ParameterValue]
    left_out: list[LeftOut] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    memory: MemoryReport | None = None


def json_schema() -> dict[str, Any]:
    schema = Recommendation.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://advisor.dev/schemas/recommendation.schema.json"
    return schema


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
