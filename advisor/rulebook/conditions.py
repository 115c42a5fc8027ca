"""Conditions on facts: a closed vocabulary of operators combined with all / any / not.

Besides evaluating, conditions support a conservative static question used at load time:
"can these two conditions never hold together?" (``disjoint``). Two rules that could set
the same parameter in the same stage are a conflict unless their conditions are disjoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from advisor.errors import FormulaError, ResolveError
from advisor.rulebook import formula as fml
from advisor.rulebook.formula import MissingFact
from advisor.safeio import clip

MAX_DEPTH = 16  # not-knowledge: all / any / not levels in one condition (the shipped rules use 3)
OPS = ("eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "between", "exists", "missing")


@dataclass(frozen=True)
class Atom:
    fact: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class Expr:
    formula: fml.Formula


Condition = Union[Atom, All, AnyOf, Not, Expr]
TRUE = All(())


def parse(raw: Any, depth: int = 1) -> Condition:
    """Build a Condition from its (already schema-checked) YAML form."""
    if raw is None:
        return TRUE
    if depth > MAX_DEPTH:
        raise FormulaError(f"a 'when' condition nests all / any / not deeper than {MAX_DEPTH} levels",
                           hint="flatten it: all / any take lists")
    if "all" in raw:
        return All(tuple(parse(r, depth + 1) for r in raw["all"]))
    if "any" in raw:
        return AnyOf(tuple(parse(r, depth + 1) for r in raw["any"]))
    if "not" in raw:
        return Not(parse(raw["not"], depth + 1))
    if "expr" in raw:
        return Expr(fml.parse(raw["expr"]))
    value = raw.get("value")
    _check_operand(raw["fact"], raw["op"], value)
    if isinstance(value, list):
        value = tuple(value)
    return Atom(raw["fact"], raw["op"], value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_operand(fact: str, op: str, value: Any) -> None:
    """Refuse a value its operator cannot take, at load: evaluating it would fail, or never match."""
    if op in ("exists", "missing"):
        return
    said = f"{fact} {op} {clip(value)}"
    if value is None:
        raise FormulaError(f"{said}: {op} needs a value", hint="add value: to the condition")
    if op == "between":
        if not (isinstance(value, list) and len(value) == 2 and all(_is_number(v) for v in value)):
            raise FormulaError(f"{said}: between takes a list of two numbers [lo, hi]",
                               hint="between matches lo <= fact < hi: value: [lo, hi]")
        if not value[0] < value[1]:
            raise FormulaError(f"{said}: lo {clip(value[0])} is not below hi {clip(value[1])}, so it never matches",
                               hint="between matches lo <= fact < hi: put the smaller number first")
    elif op in ("lt", "lte", "gt", "gte"):
        if not _is_number(value):
            raise FormulaError(f"{said}: {op} compares numbers", hint="value: a finite number")
    elif op in ("in", "not_in"):
        if not isinstance(value, list):
            raise FormulaError(f"{said}: {op} takes a list of values", hint="value: [a, b]; for one value, op: "
                               + ("eq" if op == "in" else "ne"))
    elif isinstance(value, list):
        raise FormulaError(f"{said}: {op} takes one value", hint="for a list of values, op: "
                           + ("in" if op == "eq" else "not_in"))


def check_kinds(cond: Condition, kind_of: Callable[[str], str]) -> None:
    """Refuse an atom whose value is not of its fact's kind (``kind_of``: number, flag, list or word):
    ordering a word fails when the rule runs, and a number never equals a word."""
    from advisor.facts.catalogue import FLAG, LIST, NUMBER, WORD  # deferred: only loading checks kinds

    def value_kind(value: Any) -> str:
        if isinstance(value, bool):
            return FLAG
        if isinstance(value, (int, float)):
            return NUMBER
        return LIST if isinstance(value, (list, tuple)) else WORD

    if isinstance(cond, (All, AnyOf)):
        for c in cond.items:
            check_kinds(c, kind_of)
        return
    if isinstance(cond, Not):
        check_kinds(cond.item, kind_of)
        return
    if not isinstance(cond, Atom) or cond.op in ("exists", "missing"):
        return
    kind = kind_of(cond.fact)
    said = f"{cond.fact} {cond.op} {clip(list(cond.value) if isinstance(cond.value, tuple) else cond.value)}"
    if cond.op in ("lt", "lte", "gt", "gte", "between"):
        if kind != NUMBER:
            raise FormulaError(f"{said}: {cond.fact} is a {kind}, and {cond.op} compares numbers",
                               hint="eq / ne / in / not_in compare other values")
        return
    if kind == LIST:
        return  # a list fact is tested with exists / missing, or inside an expr
    values = cond.value if cond.op in ("in", "not_in") else (cond.value,)
    for v in values:
        if value_kind(v) != kind:
            raise FormulaError(f"{said}: {cond.fact} is a {kind}, so {clip(v)} never matches",
                               hint="value: true or false" if kind == FLAG else f"value: a {kind}")


def facts_read(cond: Condition) -> set[str]:
    if isinstance(cond, Atom):
        return {cond.fact}
    if isinstance(cond, (All, AnyOf)):
        out: set[str] = set()
        for c in cond.items:
            out |= facts_read(c)
        return out
    if isinstance(cond, Not):
        return facts_read(cond.item)
    return {n for n in cond.formula.names if "." in n}


def evaluate(cond: Condition, lookup: Callable[[str], Any]) -> bool:
    """True/False; raises MissingFact when a fact it needs is unknown (exists/missing excepted)."""
    if isinstance(cond, All):
        return all(evaluate(c, lookup) for c in cond.items)
    if isinstance(cond, AnyOf):
        # One true branch decides, even when another branch reads an unknown fact.
        missing: MissingFact | None = None
        for c in cond.items:
            try:
                if evaluate(c, lookup):
                    return True
            except MissingFact as exc:
                missing = missing or exc
        if missing is not None:
            raise missing
        return False
    if isinstance(cond, Not):
        return not evaluate(cond.item, lookup)
    if isinstance(cond, Expr):
        return bool(cond.formula.evaluate(lookup))
    if cond.op in ("exists", "missing"):
        try:
            lookup(cond.fact)
            known = True
        except MissingFact:
            known = False
        return known if cond.op == "exists" else not known
    try:
        actual = lookup(cond.fact)
    except MissingFact:
        if cond.op in ("ne", "not_in"):
            return True  # an unknown value is not the one excluded
        raise
    try:
        return _compare(cond.op, actual, cond.value)
    except (TypeError, ValueError) as exc:  # a fact of another kind than the catalogue says
        raise FormulaError(f"condition {cond.fact} {cond.op} {clip(cond.value)} on {clip(actual)} failed: "
                           f"{clip(str(exc), 120)}") from exc


def holds(cond: Condition, lookup: Callable[[str], Any], where: str) -> bool:
    """``evaluate``, with a condition that fails when it runs named by ``where`` ("rules/x.yaml: rule 'id'")
    and its key 'when', as a formula's error names its rule: the file to fix, not a bare comparison.
    MissingFact propagates (each caller reads an unknown fact its own way)."""
    try:
        return evaluate(cond, lookup)
    except FormulaError as exc:
        raise ResolveError(f"{where} key 'when': {exc}", hint=exc.hint) from exc


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op == "lt":
        return bool(actual < expected)
    if op == "lte":
        return bool(actual <= expected)
    if op == "gt":
        return bool(actual > expected)
    if op == "gte":
        return bool(actual >= expected)
    if op == "between":  # inclusive below, exclusive above: rows of a size table never overlap
        lo, hi = expected
        return bool(lo <= actual < hi)
    raise ValueError(op)


# --- static disjointness -------------------------------------------------------------

@dataclass
class _Domain:
    """What one conjunction allows for one fact: a value set or its complement, and an interval."""

    allowed: frozenset[Any] | None = None  # None: anything
    excluded: frozenset[Any] = frozenset()
    lo: float = -math.inf
    lo_open: bool = False
    hi: float = math.inf
    hi_open: bool = False
    must_exist: bool = False
    must_miss: bool = False

    def empty(self) -> bool:
        constrained = self.allowed is not None or bool(self.excluded) or self.lo > -math.inf or self.hi < math.inf
        if self.must_miss and (self.must_exist or constrained):
            return True
        if self.allowed is not None:
            vals = [v for v in self.allowed if v not in self.excluded and self._in_interval(v)]
            return not vals
        if self.lo > self.hi:
            return True
        return self.lo == self.hi and (self.lo_open or self.hi_open)

    def _in_interval(self, v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return self.lo == -math.inf and self.hi == math.inf
        above = v > self.lo or (v == self.lo and not self.lo_open)
        below = v < self.hi or (v == self.hi and not self.hi_open)
        return above and below


def _conjuncts(cond: Condition) -> list[Atom] | None:
    """The atoms of a pure conjunction; None when the condition has any/not/expr inside."""
    if isinstance(cond, Atom):
        return [cond]
    if isinstance(cond, All):
        out: list[Atom] = []
        for c in cond.items:
            sub = _conjuncts(c)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def _restrict(d: _Domain, a: Atom) -> None:
    v = a.value
    if a.op == "eq":
        d.allowed = frozenset([v]) if d.allowed is None else d.allowed & {v}
    elif a.op == "in":
        d.allowed = frozenset(v) if d.allowed is None else d.allowed & frozenset(v)
    elif a.op == "ne":
        d.excluded = d.excluded | {v}
    elif a.op == "not_in":
        d.excluded = d.excluded | frozenset(v)
    elif a.op in ("gt", "gte"):
        if v > d.lo or (v == d.lo and a.op == "gt"):
            d.lo, d.lo_open = v, a.op == "gt"
    elif a.op in ("lt", "lte"):
        if v < d.hi or (v == d.hi and a.op == "lt"):
            d.hi, d.hi_open = v, a.op == "lt"
    elif a.op == "between":
        _restrict(d, Atom(a.fact, "gte", v[0]))
        _restrict(d, Atom(a.fact, "lt", v[1]))
    elif a.op == "exists":
        d.must_exist = True
    elif a.op == "missing":
        d.must_miss = True


def disjoint(a: Condition, b: Condition) -> bool:
    """True only when no assignment of facts can satisfy both (conservative: False if unsure)."""
    atoms_a, atoms_b = _conjuncts(a), _conjuncts(b)
    if atoms_a is None or atoms_b is None:
        return False
    domains: dict[str, _Domain] = {}
    for atom in atoms_a + atoms_b:
        _restrict(domains.setdefault(atom.fact, _Domain()), atom)
    return any(d.empty() for d in domains.values())
