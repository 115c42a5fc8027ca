"""diagnose: telemetry in, the seeds' warning signs and their advice out (the `signal` rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advisor.rulebook.judge import Sign, Unjudged, judge
from advisor.rulebook.load import Rulebook
from advisor.telemetry import Telemetry


def log_facts(tel: Telemetry, *, max_grad_norm: float, distinct_2: float | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {f"log.{name}": values for name, values in tel.series.items() if values}
    facts["log.max_grad_norm"] = max_grad_norm
    if tel.cycle_scores:
        facts["log.cycle_score"] = tel.cycle_scores
        facts["log.cycle_metric"] = tel.cycle_metric
    if distinct_2 is not None:
        facts["log.distinct_2"] = distinct_2
    return facts


@dataclass
class Diagnosis:
    """What `advisor diagnose` found in one log: the signs shown, and those it could not judge."""

    telemetry: Telemetry
    signs: list[Sign]
    not_judged: list[Unjudged]

    def points(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.telemetry.series.items()}

    def as_dict(self) -> dict[str, Any]:
        tel = self.telemetry
        return {"source": tel.source, "reader": tel.reader, "points": self.points(), "cycles": tel.cycles,
                "cycle_metric": tel.cycle_metric, "cycle_scores": tel.cycle_scores,
                "signs": [s.as_dict() for s in self.signs], "not_judged": [u.as_dict() for u in self.not_judged]}


def default_max_grad_norm(book: Rulebook) -> float:
    """The clipping threshold the rulebook recommends when a log does not say which the run used."""
    from advisor.rulebook.resolve import recommend

    return float(recommend(book, {}, {}, {}).parameters["max_grad_norm"].number())


def diagnose(book: Rulebook, tel: Telemetry, *, max_grad_norm: float | None = None,
             distinct_2: float | None = None) -> Diagnosis:
    threshold = default_max_grad_norm(book) if max_grad_norm is None else float(max_grad_norm)
    signs, unjudged = judge(book, log_facts(tel, max_grad_norm=threshold, distinct_2=distinct_2))
    return Diagnosis(tel, signs, unjudged)
