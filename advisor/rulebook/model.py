"""Typed rules, built from rule files after they pass their JSON Schema."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from advisor.rulebook import conditions as cond
from advisor.rulebook.formula import Formula
from advisor.safeio import clip

CONFIDENCE_ORDER = ("theoretical", "low", "medium", "high")
STAGES = ("base", "refine", "adjust", "constrain", "derive")
SETTING_STAGES = ("base", "refine", "derive")  # stages whose rules set a value (one winner each)
DEFAULT_STAGE = {
    "recommend": "base", "adjust": "adjust", "constrain": "constrain", "derive": "derive", "check": "check",
    "signal": "signal",
}

NumberOrFormula = Union[float, Formula]
CALIBRATION_FAMILY = "calibration"  # the family of the rules `advisor sweep --write-rules` writes


def weakest(*levels: str) -> str:
    return min(levels, key=CONFIDENCE_ORDER.index)


@dataclass(frozen=True)
class Case:
    """One row of a rule's table (a rule without a table has exactly one case)."""

    label: str
    when: cond.Condition
    confidence: str
    sources: tuple[dict[str, str], ...]
    default: Any = None
    formula: Formula | None = None
    range: tuple[NumberOrFormula, NumberOrFormula] | None = None
    choices: tuple[Any, ...] | None = None
    factor: NumberOrFormula | None = None
    max: NumberOrFormula | None = None
    min: NumberOrFormula | None = None

    def formulas(self) -> list[Formula]:
        items: list[Any] = [self.formula, self.factor, self.max, self.min, *(self.range or ())]
        return [f for f in items if isinstance(f, Formula)]


@dataclass(frozen=True)
class Rule:
    id: str
    code: str
    kind: str
    parameter: str
    stage: str
    summary: str
    why: str
    sources: tuple[dict[str, str], ...]
    notes: tuple[dict[str, Any], ...]
    confidence: str
    when: cond.Condition
    overrides: tuple[str, ...]
    cases: tuple[Case, ...]
    file: Path
    family: str
    raw: dict[str, Any] = field(compare=False, repr=False)
    severity: str = ""
    fail: Formula | None = None
    message: str = ""
    expected: str = ""
    fix: Formula | None = None
    fix_also: tuple[tuple[str, Formula], ...] = ()  # check rules: (parameter, value) --fix writes with the fix
    advice: str = ""  # signal rules: the decision tree's answer
    direction: str = ""  # signal rules: lr-too-high | lr-too-low | memory | memory-model (rules.schema.json)
    sign: str = ""  # signal rules: the warning sign as the source words it
    detect: Formula | None = None  # signal rules: true when the telemetry shows the sign
    evidence: str = ""  # signal rules: what was measured, with {formula} placeholders
    mark: tuple[str, Formula] | None = None  # signal rules: (series, positions) a plot marks
    needs: tuple[tuple[str, int], ...] = ()  # signal rules: (series, fewest points) before the sign can be judged
    at: str = ""  # check rules: "model" or "method" to report at that key
    templates: tuple[Formula, ...] = ()  # the {formula} placeholders of message and expected
    stated_on_grid: bool = False  # the value it sets is stated on the parameter's grid (rules/parameters.yaml)

    def reads(self) -> set[str]:
        """Every dotted name this rule's conditions and formulas read."""
        names = cond.facts_read(self.when)
        for case in self.cases:
            names |= cond.facts_read(case.when)
            for f in case.formulas():
                names |= {n for n in f.names if "." in n}
        extra: list[Formula | None] = [self.fail, self.fix, *(f for _, f in self.fix_also), self.detect,
                                       self.mark[1] if self.mark else None, *self.templates]
        for formula in extra:
            if formula is not None:
                names |= {n for n in formula.names if "." in n}
        return names


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    group: str
    description: str
    unit: str = ""
    minimum: float = 0
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    trainer_keys: dict[str, str | list[str]] = field(default_factory=dict)
    grid: tuple[float, ...] = ()  # mantissas a recommended value is stated on (rules/parameters.yaml grid.steps)
    written_as: str = ""  # how trainer configs express a parameter that has no key of its own
    words: dict[str, Any] = field(default_factory=dict)  # trainer word -> the value the trainer reads (+ source)
    # a value in (0, 1) is this parameter (+ source; `native`: the trainer_keys tables where that is the
    # trainer's own way to give it, read without a finding)
    fraction_as: dict[str, Any] = field(default_factory=dict)

    def on_grid(self, value: Any) -> Any:
        """The grid value nearest ``value`` in log space (unchanged without a grid or for a non-positive value)."""
        if not self.grid or not isinstance(value, float) or value <= 0:
            return value
        exp = math.floor(math.log10(value))
        mantissa = value / 10**exp
        best = min((*self.grid, 10 * self.grid[0]), key=lambda g: abs(math.log10(g / mantissa)))
        return float(f"{best * 10**exp:.6g}")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (already of this parameter's type) is out of bounds, or None."""
        if self.type in ("int", "float") and isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return f"{value!r} is not a finite number"
            if value < self.minimum:
                return f"{clip(value)} is below the smallest meaningful value {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"{clip(value)} is above the largest meaningful value {self.maximum:g}"
        if self.choices and value not in self.choices:
            return f"{clip(value)} is not one of {', '.join(self.choices)}"
        return None


def as_type(kind: str, value: Any) -> Any:
    """``value`` as a parameter of type ``kind`` takes it (YAML 1.1 reads 5e-5 as a string; 16.0 is the int 16);
    a TypeError, ValueError or OverflowError when it cannot be (8.5 is no int, nan no number)."""
    if kind in ("float", "int"):
        if isinstance(value, bool) or value is None:
            raise ValueError(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        if kind == "int":
            if number != int(number):
                raise ValueError(value)
            return int(number)
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(value)
    if kind == "str":
        if isinstance(value, (dict, list)):
            raise ValueError(value)
        return str(value)
    if kind == "list_str":
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError(value)
    if kind == "list_float":
        if isinstance(value, dict):  # the seeds' {cycle_1: 5.0e-5, cycle_2: ...}
            order = sorted(value, key=lambda k: int(str(k).rsplit("_", 1)[-1]))
            value = [value[k] for k in order]
        if isinstance(value, list):
            numbers = [float(v) for v in value]
            if not all(map(math.isfinite, numbers)):
                raise ValueError(value)
            return numbers
        raise ValueError(value)
    return value


def type_words(kind: str) -> str:
    """'an int', 'a list of str': a parameter type in an error message."""
    words = kind.replace("_", " of ")
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


@dataclass(frozen=True)
class Coefficient:
    """A named number as code reads it (``Rulebook.coefficient_info``): a formula value evaluated."""

    id: str
    value: float
    unit: str
    summary: str
    sources: tuple[dict[str, str], ...]
    confidence: str
    file: str  # where it was defined ("built-in rules/sweep.yaml", or a user file's path)
