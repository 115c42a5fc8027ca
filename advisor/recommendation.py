"""The Recommendation: every resolved value with its range, confidence, unit and trace.

``schemas/recommendation.schema.json`` is generated from these classes
(``python -m advisor.recommendation``); a test keeps the two in step. They are plain dataclasses,
not pydantic models: importing pydantic cost about a tenth of `advisor recommend`'s start-up.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal, Union

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


def _doc(description: str) -> dict[str, str]:
    """A field's description in the JSON Schema."""
    return {"description": description}


def _jsonable(value: Any) -> Any:
    """A value as JSON holds it: tuples as lists, a non-finite float as null (as the schema's
    pydantic-era output wrote them, so the JSON stays byte for byte the same)."""
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _value(value: Any) -> Any:
    """A parameter value in one of Value's shapes: a sequence becomes a list, a list of numbers a list
    of floats (list_float); anything else is kept as given."""
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [float(v) for v in value]
        return list(value)
    return value


def _span(value: Any) -> list[Any] | None:
    return None if value is None else list(value)


def _as_float(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _Record:
    """The JSON form of a result class: its fields in declaration order."""

    _FLOATS: ClassVar[tuple[str, ...]] = ()  # float fields: a whole number set on one is written as 1.0

    def __post_init__(self) -> None:
        for name in self._FLOATS:
            setattr(self, name, _as_float(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]
        for name in self._FLOATS:  # again: a field may have been set since
            out[name] = _as_float(out[name])
        return out


@dataclass(kw_only=True)
class TraceStep(_Record):
    stage: Literal["user", "base", "refine", "adjust", "constrain", "derive", "round"]
    rule: str | None = field(default=None, metadata=_doc("rule id, or null for a value the user set"))
    code: str | None = None
    case: str | None = field(default=None, metadata=_doc("the source table's row that matched"))
    before: Value | None = None
    after: Value | None = None
    formula: str | None = None
    range: list[int | float] | None = field(default=None, metadata=_doc(
        "the range after this step: the row's own range for a setting step, moved with the value by an "
        "adjustment (scaled) or a constraint (clamped)"))
    inputs: dict[str, Any] = field(default_factory=dict, metadata=_doc("the facts and parameters the step read"))
    confidence: Confidence | None = None
    source: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.before, self.after, self.range = _value(self.before), _value(self.after), _span(self.range)
        self.inputs, self.source = dict(self.inputs), [dict(s) for s in self.source]


@dataclass(kw_only=True)
class Provenance(_Record):
    """Where a value came from (advisor/provenance.py's Source and its detail)."""

    source: Literal["flag", "pin", "config", "evidence", "rule", "derived", "default"]
    detail: str = field(default="", metadata=_doc("the flag, '--set', or the id of the rule that set the value"))


@dataclass(kw_only=True)
class ParameterValue(_Record):
    value: Value
    unit: str = ""
    range: list[int | float] | None = field(default=None, metadata=_doc(
        "the range around the final value: the setting row's range, scaled and clamped with the value by every "
        "adjustment and constraint in the trace"))
    rule_range: list[int | float] | None = field(default=None, metadata=_doc(
        "the setting row's own range, as its source table gives it"))
    outside_rule_range: bool = field(default=False, metadata=_doc(
        "true when adjustments or constraints took the value outside rule_range"))
    choices: list[Value] | None = None
    confidence: Confidence | None = field(default=None, metadata=_doc(
        "weakest confidence along the trace; null when user-set"))
    set_by: Literal["rule", "user"]
    provenance: Provenance = field(metadata=_doc(
        "where the value came from: a flag (--seq-len), a --set pin, a rule, or a rule fitted to the "
        "published evidence (rules/evidence/)"))
    rule: str | None = field(default=None, metadata=_doc("the rule that set the value (before adjustments)"))
    code: str | None = None
    source: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    trace: list[TraceStep]
    overridden: list[TraceStep] = field(default_factory=list, metadata=_doc(
        "setting rows that also matched but lost to a rule that overrides them (e.g. a seed row the evidence "
        "rule LR008 replaces), with the value each would have given; inputs.overridden_by names the winner"))

    def __post_init__(self) -> None:
        self.value = _value(self.value)
        self.range, self.rule_range = _span(self.range), _span(self.rule_range)
        self.choices = None if self.choices is None else [
            list(c) if isinstance(c, tuple) else c for c in self.choices]
        self.source, self.notes = [dict(s) for s in self.source], [dict(n) for n in self.notes]
        self.trace, self.overridden = list(self.trace), list(self.overridden)

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


@dataclass(kw_only=True)
class LeftOut(_Record):
    rule: str
    parameter: str
    missing_fact: str
    flag: str | None = None


@dataclass(kw_only=True)
class MemoryItem(_Record):
    _FLOATS: ClassVar[tuple[str, ...]] = ("gb",)

    name: str
    gb: float = field(metadata=_doc("GiB"))
    detail: str
    sources: list[str] = field(default_factory=list, metadata=_doc("coefficient ids in rules/memory.yaml"))
    phase: Literal["static", "grads", "paged", "train", "step", "generate", "fixed", "cpu"]

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sources = list(self.sources)


@dataclass(kw_only=True)
class MemoryReport(_Record):
    """The memory model's prediction for the recommended (or pinned) micro-batch."""

    _FLOATS: ClassVar[tuple[str, ...]] = ("total_gb", "reserved_gb", "gpu_gb", "usable_gb", "safety_margin", "headroom_gb")

    micro_batch: int
    seq_len: int
    prompt_len: int | None = field(default=None, metadata=_doc(
        "the prompt's tokens within seq_len for an online RL method (max_prompt_length, else rl-prompt-tokens); "
        "null when the sequence is not split"))
    total_gb: float = field(metadata=_doc("predicted peak incl. the CUDA context (GiB)"))
    reserved_gb: float = field(metadata=_doc("the part comparable with torch.cuda.max_memory_reserved() (GiB)"))
    gpu_gb: float | None = field(default=None, metadata=_doc(
        "one GPU's capacity, GiB, as the board reports it (nvidia-smi memory.total MiB / 1024; --gpu-mem), not "
        "the vendor's stated GB"))
    usable_gb: float | None = field(default=None, metadata=_doc("gpu_gb less the safety margin (GiB)"))
    safety_margin: float | None = None
    headroom_gb: float | None = field(default=None, metadata=_doc(
        "gpu_gb - total_gb (GiB; the safety margin is inside it)"))
    fits: bool | None = None
    max_micro_batch: int | None = field(default=None, metadata=_doc(
        "largest micro-batch under the margin (0: none fits)"))
    batch_share: int | None = field(default=None, metadata=_doc(
        "the effective batch's share of one GPU (effective batch / GPUs): a micro-batch above it, or one that does "
        "not divide it, would not train the effective batch; a limit of the batch, not of memory"))
    items: list[MemoryItem]
    notes: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list, metadata=_doc("what would fit, when nothing does"))
    parallel: str | None = field(default=None, metadata=_doc(
        "how the GPUs share the job when there are several: DDP replicas or a sharding strategy (the total is per GPU)"))

    def __post_init__(self) -> None:
        super().__post_init__()
        self.micro_batch, self.seq_len = int(self.micro_batch), int(self.seq_len)
        self.items, self.notes, self.alternatives = list(self.items), list(self.notes), list(self.alternatives)


@dataclass(kw_only=True)
class Recommendation(_Record):
    advisor_version: str = __version__
    notice: str = NOTICE
    facts: dict[str, dict[str, Any]] = field(metadata=_doc(
        "the job's facts: model, gpu, task. model.source says where the model's came from (file: a config.json "
        "named; cache: the local Hugging Face cache; registry: rules/models.yaml; hub: config.json fetched from "
        "the Hugging Face Hub), model.source_detail the path or registry file, model.revision the hub commit"))
    parameters: dict[str, ParameterValue]
    left_out: list[LeftOut] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list, metadata=_doc(
        "what advisor changed, of the choices the user left to it (--peft, --seq-len), so that the job fits the GPU "
        "given: the adapter (rules/memory.yaml fit_to_gpu) and the sequence length (rule CTX004)"))
    memory: MemoryReport | None = None

    def __post_init__(self) -> None:  # its own containers: a second resolve of the same job shares none
        self.facts = {k: dict(v) for k, v in self.facts.items()}
        self.parameters, self.left_out, self.warnings = dict(self.parameters), list(self.left_out), list(self.warnings)
        self.adapted = list(self.adapted)

    def gpus(self) -> int:
        """The GPU count the recommendation was sized for (the data-parallel world size)."""
        return int(self.facts.get("gpu", {}).get("count") or 1)


# --- JSON Schema ----------------------------------------------------------------------------
# Written out from the classes' type hints in the shape pydantic gave it (titles, anyOf with null,
# $defs), so the published schema did not change when pydantic went.

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
    type(None): {"type": "null"},
}


def _type_schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if hint is Any:
        return {}
    if isinstance(hint, type) and issubclass(hint, _Record):
        if hint.__name__ not in defs:
            defs[hint.__name__] = None  # a placeholder while its own fields are written
            defs[hint.__name__] = _class_schema(hint, defs)
        return {"$ref": f"#/$defs/{hint.__name__}"}
    if origin is Literal:
        return {"enum": list(args), "type": "string"}
    if origin is Union or origin is types.UnionType:
        return {"anyOf": [_type_schema(a, defs) for a in args]}
    if origin is list:
        return {"items": _type_schema(args[0], defs), "type": "array"}
    if origin is dict:
        inner = _type_schema(args[1], defs)
        return {"additionalProperties": inner or True, "type": "object"}
    raise TypeError(f"no JSON Schema for {hint!r}")


def _class_schema(cls: type[_Record], defs: dict[str, Any]) -> dict[str, Any]:
    import typing

    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in fields(cls):  # type: ignore[arg-type]
        prop = _type_schema(hints[f.name], defs)
        refers = "$ref" in prop or any("$ref" in a for a in prop.get("anyOf", ()))
        if not refers:  # pydantic gives a field that names a class no title of its own
            prop["title"] = f.name.replace("_", " ").title()
        if f.default is not MISSING:
            prop["default"] = f.default
        elif f.default_factory is MISSING:
            required.append(f.name)
        if "description" in f.metadata:
            prop["description"] = f.metadata["description"]
        props[f.name] = prop
    out: dict[str, Any] = {"additionalProperties": False, "properties": props, "required": required,
                           "title": cls.__name__, "type": "object"}
    doc = cls.__doc__ or ""
    if not doc.startswith(f"{cls.__name__}("):  # not the signature dataclass writes for a class without one
        out["description"] = doc.strip()
    return out


def json_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    schema = _class_schema(Recommendation, defs)
    schema["$defs"] = dict(sorted(defs.items()))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://advisor.dev/schemas/recommendation.schema.json"
    return schema


if __name__ == "__main__":
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
