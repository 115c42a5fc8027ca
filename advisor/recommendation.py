"""The Recommendation: every resolved value with its range, confidence, unit and trace.

``schemas/recommendation.schema.json`` is generated from these models
(``python -m advisor.recommendation``); a test keeps the two in step.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from advisor import __version__

Confidence = Literal["high", "medium", "low", "theoretical"]

NOTICE = (
    "These values come from rule tables whose own sources call them hypotheses. Each carries "
    "its confidence and source (--explain); confirm them with a short real run on your GPU before a long one."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TraceStep(_Strict):
    stage: Literal["user", "base", "refine", "adjust", "constrain", "derive"]
    rule: str | None = Field(None, description="rule id, or null for a value the user set")
    code: str | None = None
    case: str | None = Field(None, description="the source table's row that matched")
    before: Any = None
    after: Any = None
    formula: str | None = None
    range: list[int | float] | None = Field(None, description="the range the rule gave (setting stages)")
    inputs: dict[str, Any] = Field(default_factory=dict)
    confidence: Confidence | None = None
    source: list[dict[str, str]] = Field(default_factory=list)


class ParameterValue(_Strict):
    value: Any
    unit: str = ""
    range: list[int | float] | None = None
    choices: list[Any] | None = None
    confidence: Confidence | None = Field(None, description="weakest confidence along the trace; null when user-set")
    set_by: Literal["rule", "user"]
    rule: str | None = Field(None, description="the rule that set the value (before adjustments)")
    code: str | None = None
    source: list[dict[str, str]] = Field(default_factory=list)
    notes: list[dict[str, Any]] = Field(default_factory=list)
    trace: list[TraceStep]


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
    phase: Literal["static", "train", "generate", "fixed"]


class MemoryReport(_Strict):
    """The memory model's prediction for the recommended (or pinned) micro-batch."""

    micro_batch: int
    seq_len: int
    total_gb: float = Field(description="predicted peak incl. the CUDA context (GiB)")
    reserved_gb: float = Field(description="the part comparable with torch.cuda.max_memory_reserved() (GiB)")
    gpu_gb: float | None = None
    usable_gb: float | None = Field(None, description="GPU memory less the safety margin")
    safety_margin: float | None = None
    headroom_gb: float | None = Field(None, description="gpu_gb - total_gb")
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
