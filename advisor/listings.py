"""What the listing commands answer: `rules list / show / check`, `models`, `gpus`. Each is a small
result object with ``as_data()`` (its JSON) that a renderer draws for people."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError
from advisor.rulebook.load import Rulebook, load_rulebook
from advisor.rulebook.model import Rule


def _public(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if not k.startswith("_")}


@dataclass
class RuleListing:
    rules: list[Rule]

    def as_data(self) -> Any:
        return [{"code": r.code, "id": r.id, "kind": r.kind, "stage": r.stage, "parameter": r.parameter,
                 "summary": r.summary, "confidence": r.confidence, "file": str(r.file)} for r in self.rules]


def list_rules(book: Rulebook, parameter: str | None = None) -> RuleListing:
    if parameter is not None and parameter not in book.parameters:
        raise AdvisorError(f"--parameter: unknown parameter {parameter!r}", hint="`advisor rules list` shows them all")
    return RuleListing([r for r in book.rules.values() if parameter is None or r.parameter == parameter])


@dataclass
class RuleView:
    """One rule, or one coefficient (exactly one of the two), and whether evidence rows sit behind it."""

    rule: Rule | None = None
    coefficient: dict[str, Any] | None = None
    has_evidence: bool = False

    def as_data(self) -> Any:
        if self.coefficient is not None:
            return {"coefficient": _public(self.coefficient), "file": self.coefficient.get("_file")}
        assert self.rule is not None
        r = self.rule
        return {"rule": {**_public(r.raw), "code": r.code, "id": r.id, "kind": r.kind, "stage": r.stage,
                         "parameter": r.parameter, "family": r.family, "confidence": r.confidence},
                "file": str(r.file), "evidence": f"advisor evidence --rule {r.code}" if self.has_evidence else None}


def show_rule(book: Rulebook, key: str) -> RuleView:
    from advisor.suggest import closest

    rule = book.find(key)
    coefficients = book.coefficients  # every kind of file's: one id is one coefficient (checked at load)
    if rule is None and key in coefficients:
        return RuleView(coefficient=coefficients[key])
    if rule is None:
        close = closest(key, [*book.rules, *(r.code for r in book.rules.values()), *coefficients], n=4)
        from advisor.safeio import clip

        raise AdvisorError(f"no rule {clip(key)}", hint=f"did you mean {', '.join(close)}?" if close
                           else "`advisor rules list` shows them all")
    overridden = any(rule.id in r.overrides for r in book.rules.values())
    # the evidence rows place the LR a recommend or adjust rule sets; a rule set aside has none of its own
    evidence = rule.parameter == "learning_rate" and rule.kind in ("recommend", "adjust") and not overridden
    return RuleView(rule=rule, has_evidence=evidence)


@dataclass
class RuleCheck:
    """`advisor rules check`: the user's rules, those replacing built-in ones, and the total layered."""

    directories: list[Path]
    own: list[str]
    replaced: list[str]
    total: int

    def as_data(self) -> Any:
        return {"ok": True, "directories": [str(d) for d in self.directories], "rules": self.own,
                "replaced": self.replaced, "total": self.total}


def check_rules(directories: list[Path]) -> RuleCheck:
    roots = [Path(d).resolve() for d in directories]
    book = load_rulebook(directories)
    for root in roots:
        if not any(root.rglob("*.yaml")) and not any(root.rglob("*.yml")):
            raise AdvisorError(f"{root}: no .yaml rule files here", hint="rule files end in .yaml or .yml")
    builtin = load_rulebook()
    own = sorted(rid for rid, r in book.rules.items() if any(root in r.file.resolve().parents for root in roots))
    return RuleCheck(list(directories), own, sorted(set(own) & set(builtin.rules)), len(book.rules))


@dataclass
class ModelListing:
    book: Rulebook

    def facts(self) -> list[Any]:
        from advisor.facts.model import registry_model

        return [registry_model(self.book, mid) for mid in self.book.models]

    def aliases(self, model_id: str) -> list[str]:
        return list(self.book.models[model_id].get("aliases", []))

    def unverified(self, model_id: str) -> list[str] | str:
        """The entry's keys no citable copy of its config.json covered ('all': none was checked)."""
        keys: list[str] | str = self.book.models[model_id].get("unverified", [])
        return keys

    def checked(self, model_id: str) -> str:
        keys = self.unverified(model_id)
        return "no" if keys == "all" else "partly" if keys else "yes"

    def as_data(self) -> Any:
        return [{**f.as_dict(), "aliases": self.aliases(f.name), "unverified": self.unverified(f.name)}
                for f in self.facts()]


@dataclass
class ModelView:
    """`advisor models MODEL`: one model's facts as the rules read them, where they came from, and which
    registry numbers no citable config.json copy checked."""

    book: Rulebook
    facts: Any  # advisor.facts.model.ModelFacts

    def unverified(self) -> list[str] | str:
        entry = self.book.models.get(self.facts.name)
        return [] if entry is None or self.facts.source != "registry" else entry.get("unverified", [])

    def as_data(self) -> Any:
        return {**self.facts.as_dict(), "unverified": self.unverified()}


@dataclass
class GpuListing:
    book: Rulebook

    def as_data(self) -> Any:
        from advisor.facts.hardware import registry_usable_gib

        return [{**_public(g), "usable_gib": round(registry_usable_gib(g), 2)} for g in self.book.gpus.values()]
