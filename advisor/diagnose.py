"""diagnose: telemetry in, the seeds' warning signs and their advice out (the `signal` rules)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from advisor.registries import check_flag
from advisor.rulebook.judge import Sign, Unjudged, judge, signal_rules
from advisor.rulebook.load import Rulebook
from advisor.safeio import clip_path
from advisor.telemetry import LogError, Telemetry


def log_facts(tel: Telemetry, *, max_grad_norm: float | None, distinct_2: float | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = {f"log.{name}": values for name, values in tel.series.items() if values}
    if max_grad_norm:  # 0 or None: the run clips nothing, so no sign reads a threshold (SIG003 is not judged)
        facts["log.max_grad_norm"] = max_grad_norm
    if tel.cycle_scores:
        facts["log.cycle_score"] = tel.cycle_scores
        facts["log.cycle_metric"] = tel.cycle_metric
        facts["log.cycle_name"] = tel.cycles
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
        return {"source": tel.source, "reader": tel.reader, "position": tel.position, "points": self.points(),
                "cycles": tel.cycles,
                "cycle_metric": tel.cycle_metric, "cycle_scores": tel.cycle_scores,
                "signs": [s.as_dict() for s in self.signs], "not_judged": [u.as_dict() for u in self.not_judged]}


def default_max_grad_norm(book: Rulebook) -> float:
    """The clipping threshold the rulebook recommends when a log does not say which the run used."""
    from advisor.rulebook.resolve import recommend

    return float(recommend(book, {}, {}, {}).parameters["max_grad_norm"].number())


def check_judgeable(book: Rulebook, tel: Telemetry) -> None:
    """A log none of whose rows holds a number for a series a sign reads is an error, not "no warning
    signs": every value null (eval-only rows, a logger that wrote none), or only other keys."""
    read = {name.removeprefix("log.") for rule in signal_rules(book) if rule.detect is not None
            for name in rule.detect.names if name.startswith("log.")}
    found = {name for name, values in tel.series.items() if values} | ({"cycle_score"} if tel.cycle_scores else set())
    if not read & found:
        raise LogError(f"{clip_path(tel.source)}: no row has a number for loss, grad_norm, eval_loss or another "
                       f"series a sign reads",
                       hint=f"series with numbers: {clip_path(', '.join(sorted(found)) or 'none')}; "
                            f"a null value is no point")


def diagnose(book: Rulebook, tel: Telemetry, *, max_grad_norm: float | None = None,
             distinct_2: float | None = None) -> Diagnosis:
    check_judgeable(book, tel)
    check_flag("--max-grad-norm", max_grad_norm)
    threshold = default_max_grad_norm(book) if max_grad_norm is None else float(max_grad_norm)
    signs, unjudged = judge(book, log_facts(tel, max_grad_norm=threshold, distinct_2=distinct_2), tel)
    return Diagnosis(tel, signs, unjudged)
