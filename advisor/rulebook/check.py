"""Check: a training config and its facts in, findings out (the `check` rules of the rulebook)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from advisor.errors import FormulaError, ResolveError
from advisor.output import fmt_value
from advisor.recommendation import Recommendation
from advisor.rulebook import conditions as cond
from advisor.rulebook.formula import MissingFact, parse
from advisor.rulebook.load import TEMPLATE, Rulebook
from advisor.rulebook.lookup import MISSING, fact_lookup
from advisor.rulebook.model import SETTING_STAGES, Rule

if TYPE_CHECKING:  # a config is read above the rulebook; checks only read its values
    from advisor.configs.model import TrainingConfig


@dataclass(frozen=True)
class Finding:
    code: str
    rule: str
    severity: str
    parameter: str
    key: str
    line: int | None
    message: str
    expected: str
    fix: Any = None
    has_fix: bool = False
    also: tuple[tuple[str, Any], ...] = ()  # (parameter, value) --fix writes with the fix (a rule's fix_also)
    rename: str | None = None  # the key --fix renames ``key`` to, its value kept (VCF011's replacement)

    def as_dict(self) -> dict[str, Any]:
        fix = ({"value": self.fix, "rule": self.rule, **({"also": dict(self.also)} if self.also else {})}
               if self.has_fix else {"rename": self.rename, "rule": self.rule} if self.rename else None)
        return {
            "code": self.code, "rule": self.rule, "severity": self.severity, "parameter": self.parameter,
            "key": self.key, "line": self.line, "message": self.message, "expected": self.expected, "fix": fix,
        }


def _envelope(rec: Recommendation | None, name: str, end: int) -> Any:
    """The widest bound the rule that set the value gave, or any step after it (lo: end 0, hi: end 1).

    A refine rule replaces the base row's range, as it replaces its value: the LR evidence rule
    (LR008) narrows the seed's band, and a config is judged against the band that stands."""
    if rec is None or name not in rec.parameters:
        raise MissingFact(f"{'lo' if end == 0 else 'hi'}.{name}")
    pv = rec.parameters[name]
    setting = [i for i, s in enumerate(pv.trace) if s.stage in SETTING_STAGES]
    bounds = [s.range[end] for s in pv.trace[setting[-1] if setting else 0:] if s.range is not None]
    if pv.range is not None:
        bounds.append(pv.range[end])
    if not bounds:
        raise MissingFact(f"{'lo' if end == 0 else 'hi'}.{name}")
    return min(bounds) if end == 0 else max(bounds)


def make_lookup(facts: dict[str, Any], cfg: TrainingConfig, rec: Recommendation | None,
                book: Rulebook | None = None, trained: Mapping[str, Any] | None = None) -> Callable[[str], Any]:
    """A check reads the config (``config.``), what its trainer trains with (``trained.``: the config's
    value, else the trainer's default for a key it omits; the config's alone when ``trained`` is not
    given), the recommendation (``params.``) and its envelope (``lo.`` / ``hi.``) besides the facts."""
    def config(attr: str) -> Any:
        return cfg.values[attr].value if attr in cfg.values else MISSING

    def as_trained(attr: str) -> Any:
        return trained.get(attr, MISSING) if trained is not None else config(attr)

    def params(attr: str) -> Any:
        return rec.parameters[attr].value if rec is not None and attr in rec.parameters else MISSING

    return fact_lookup(facts, book=book, namespaces={
        "config": config, "trained": as_trained, "params": params,
        "lo": lambda attr: _envelope(rec, attr, 0), "hi": lambda attr: _envelope(rec, attr, 1)})


def _render(template: str, lookup: Callable[[str], Any]) -> str:
    def one(match: Any) -> str:
        try:
            return fmt_value(parse(match.group(1)).evaluate(lookup))
        except MissingFact:
            return "?"

    return TEMPLATE.sub(one, template)


def run_checks(book: Rulebook, cfg: TrainingConfig, facts: dict[str, Any], rec: Recommendation | None,
               default_key: Callable[[str], str], trained: Mapping[str, Any] | None = None) -> list[Finding]:
    lookup = make_lookup(facts, cfg, rec, book, trained)
    findings: list[Finding] = []
    for rule in sorted((r for r in book.rules.values() if r.kind == "check"), key=lambda r: r.code):
        try:
            if not cond.evaluate(rule.when, lookup):
                continue
            if rule.fail is not None and not rule.fail.evaluate(lookup):
                continue
        except MissingFact:
            continue  # a fact the check needs is unknown: skipped, never guessed
        except FormulaError as exc:
            raise ResolveError(f"{rule.file}: rule {rule.id!r}: {exc}") from exc
        findings.append(_finding(rule, cfg, lookup, default_key))
    return findings


def _finding(rule: Rule, cfg: TrainingConfig, lookup: Callable[[str], Any],
             default_key: Callable[[str], str]) -> Finding:
    value = getattr(cfg, rule.at) if rule.at else cfg.values.get(rule.parameter)
    fix, has_fix = None, False
    also: tuple[tuple[str, Any], ...] = ()
    if rule.fix is not None:
        try:
            fix, has_fix = rule.fix.evaluate(lookup), True
            also = tuple((name, formula.evaluate(lookup)) for name, formula in rule.fix_also)
        except MissingFact:
            fix, has_fix = None, False  # the value needs a fact that is unknown: no automatic fix
    return Finding(
        code=rule.code, rule=rule.id, severity=rule.severity, parameter=rule.parameter,
        key=value.key if value is not None else (rule.at or default_key(rule.parameter)),
        line=value.line if value is not None else None,
        message=_render(rule.message, lookup), expected=_render(rule.expected, lookup),
        fix=fix, has_fix=has_fix, also=also,
    )
