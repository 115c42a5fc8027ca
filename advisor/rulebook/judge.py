"""Judging telemetry by the signal rules: which warning signs show, and which could not be judged.
`advisor diagnose` judges a log, `advisor probe` its own run; both call ``judge``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import FormulaError, ResolveError
from advisor.output import fmt_value
from advisor.rulebook import conditions as cond
from advisor.rulebook.formula import MissingFact, parse
from advisor.rulebook.load import TEMPLATE, Rulebook
from advisor.rulebook.lookup import fact_lookup
from advisor.rulebook.model import Rule
from advisor.telemetry import POSITIONS, Telemetry


@dataclass(frozen=True)
class Sign:
    code: str
    rule: str
    severity: str
    summary: str
    evidence: str
    advice: str
    confidence: str
    marks: tuple[str, tuple[int, ...]] | None = None  # (series, 1-based positions in it) for plots
    # the same points as the log places them: (a POSITIONS key, the steps or entry numbers)
    placed: tuple[str, tuple[int, ...]] | None = None
    # in a cycle history, the same points inside their cycles: (cycle, its log's POSITIONS key, step)
    inside: tuple[tuple[str, str, int], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("marks", "placed", "inside")}
        out["marks"] = None
        if self.marks is not None:
            position, at = self.placed or ("point", self.marks[1])
            out["marks"] = {"series": self.marks[0], "at": list(at), "position": position}
            if self.inside:
                out["marks"]["in_cycles"] = [{"cycle": c, "position": p, "at": step} for c, p, step in self.inside]
        return out


SHOWN = 12  # not-knowledge: marked points a sign's evidence names before it counts the rest


def placed_text(position: str, at: Sequence[int]) -> str:
    """'steps 7, 14', 'log entry 6', 'no step': the marked points in a sign's evidence (log.marked).
    A noisy run of 60,000 steps can mark thousands: the evidence names the first and the last and
    counts them (the JSON output keeps every one)."""
    if not at:
        return f"no {position}"
    if len(at) > SHOWN:
        return (f"{len(at)} {POSITIONS[position]}: {fmt_value(list(at[:SHOWN - 1]))}, ..., "
                f"{fmt_value(at[-1])}")
    return f"{position if len(at) == 1 else POSITIONS[position]} {fmt_value(list(at))}"


def inside_text(inside: Sequence[tuple[str, str, int]]) -> str:
    """'cycle_2 step 11 and cycle_5 steps 3, 4': marked points of a cycle history, by cycle and own step."""
    groups: list[tuple[str, str, list[int]]] = []
    for cycle, position, step in inside:
        if groups and groups[-1][:2] == (cycle, position):
            groups[-1][2].append(step)
        else:
            groups.append((cycle, position, [step]))
    return " and ".join(f"{cycle} {placed_text(position, steps)}" for cycle, position, steps in groups)


@dataclass(frozen=True)
class Unjudged:
    """A sign that could not be judged, and why (a series missing or too short)."""

    code: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason}


def unjudged_lines(unjudged: list[Unjudged]) -> list[str]:
    """'not judged:' and one line per reason, its codes first (the terminal's view of not_judged)."""
    by_reason: dict[str, list[str]] = {}
    for u in unjudged:
        by_reason.setdefault(u.reason, []).append(u.code)
    return ["not judged:", *[f"    {', '.join(codes)}: {reason}" for reason, codes in by_reason.items()]] if unjudged else []


def unmet_need(rule: Rule, counts: Mapping[str, int]) -> str | None:
    """Why the rule cannot be judged with this many points per series (None: its needs are met)."""
    for series, least in rule.needs:
        got = counts.get(series, 0)
        if got < least:
            return f"needs {least} {series} points, got {got}"
    return None


def _too_few_finite(rule: Rule) -> str:
    """Why a series the rule reads gave a statistic nothing to work on, in words: the points where the
    rule looks (a head or tail of the run) are NaN or infinite, or too few are finite."""
    assert rule.detect is not None
    series = sorted(n.removeprefix("log.") for n in rule.detect.names if n.startswith("log."))
    return (f"too few finite {' / '.join(series)} values where the rule looks (the points there are NaN or "
            f"infinite)")


def series_counts(facts: Mapping[str, Any]) -> dict[str, int]:
    return {name.removeprefix("log."): len(v) for name, v in facts.items()
            if name.startswith("log.") and isinstance(v, (list, tuple))}


def signal_rules(book: Rulebook) -> list[Rule]:
    return sorted((r for r in book.rules.values() if r.kind == "signal" and r.detect is not None), key=lambda r: r.code)


def applies(rule: Rule, lookup: Any) -> bool:
    """Whether the rule's `when` holds; a fact it needs that is unknown means another trainer's sign."""
    try:
        return cond.holds(rule.when, lookup, f"{rule.file}: rule {rule.id!r}")
    except MissingFact:
        return False


def applicable(book: Rulebook, facts: dict[str, Any]) -> list[Rule]:
    """The signal rules whose `when` holds for this telemetry (the others are another trainer's signs)."""
    lookup = fact_lookup(facts, book=book)
    return [rule for rule in signal_rules(book) if applies(rule, lookup)]


def judge(book: Rulebook, facts: dict[str, Any], telemetry: Telemetry | None = None,
          ) -> tuple[list[Sign], list[Unjudged]]:
    """The signs that show, and those that could not be judged with the reason (a series missing,
    or shorter than the rule's ``needs``). ``telemetry``: where the series' points are in the log
    (its steps), for the points a sign marks; without it they are the series' own positions."""
    lookup = fact_lookup(facts, book=book)

    def render(template: str, marked: str | None) -> str:
        # log.marked is the one fact that is the sign's own: the points its `mark` flags, in words
        read = lookup if marked is None else fact_lookup({**facts, "log.marked": marked}, book=book)

        def one(match: Any) -> str:
            try:
                return fmt_value(parse(match.group(1)).evaluate(read))
            except (MissingFact, FormulaError):
                return "?"
        return TEMPLATE.sub(one, template)

    counts = series_counts(facts)
    signs: list[Sign] = []
    unjudged: list[Unjudged] = []
    for rule in signal_rules(book):
        assert rule.detect is not None
        if not applies(rule, lookup):
            continue  # a sign of another trainer's telemetry (its `when`): neither shown nor "not judged"
        short = unmet_need(rule, counts)
        if short is not None:
            unjudged.append(Unjudged(rule.code, short))
            continue
        try:
            shown = bool(rule.detect.evaluate(lookup))
        except MissingFact as exc:
            unjudged.append(Unjudged(rule.code, f"no {exc.name.removeprefix('log.')} in the telemetry"))
            continue
        except FormulaError as exc:
            if "empty series" not in str(exc) and "two points" not in str(exc):
                raise ResolveError(f"{rule.file}: rule {rule.id!r}: {exc}") from exc
            unjudged.append(Unjudged(rule.code, _too_few_finite(rule)))
            continue
        if shown:
            marks = placed = None
            inside: tuple[tuple[str, str, int], ...] = ()
            if rule.mark is not None:
                try:
                    marks = (rule.mark[0], tuple(int(i) for i in rule.mark[1].evaluate(lookup)))
                except (MissingFact, FormulaError):
                    marks = None
            if marks is not None:
                placed = (("point", marks[1]) if telemetry is None
                          else (telemetry.position, tuple(telemetry.place(*marks))))
                inside = tuple(telemetry.within(*marks)) if telemetry is not None else ()
            marked = inside_text(inside) if inside else placed_text(*placed) if placed else None
            signs.append(Sign(code=rule.code, rule=rule.id, severity=rule.severity, summary=rule.summary,
                              evidence=render(rule.evidence, marked), advice=rule.advice,
                              confidence=rule.confidence, marks=marks, placed=placed, inside=inside))
    return signs, unjudged
