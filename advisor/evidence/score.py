"""Score the rules against the evidence, leave-one-source-out.

For each source, the coefficients are refitted on the tuned rows of every other source, and the
engine then places each of the held-out source's rows with those coefficients, exactly as
``advisor recommend`` would for that run's facts: its default, range and confidence. A row
counts as placed when the published LR lies inside the range, and as agreeing when the default
is within 2x of it. Rows marked ``tuned: false`` (framework demos) are never fitted and are
reported apart. Beta, LoRA rank and GRPO group size are scored the same way where rows state
them: the rules are not fitted to those, so every row is out of sample.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.evidence.fit import Applied, Design, Placed, design, fit, place, row_job
from advisor.evidence.rows import EvidenceRow
from advisor.rulebook.load import Rulebook

AGREE = 2.0  # "default within 2x of the published value" (the measure)
EPS = 1e-9  # not-knowledge: float tolerance at the edges of a range
# (parameter, evidence field): the other settings the rules recommend. Beta is scored only for
# variants whose beta is on the rules' scale (rules/variants.yaml beta_comparable).
OTHER = (("beta", "beta"), ("lora_rank", "lora_rank"), ("num_generations", "group_size"))


@dataclass
class Scored:
    placed: Placed
    held_out: str  # the source group left out of the fit that placed this row

    @property
    def inside(self) -> bool:
        r, lr = self.placed.range, self.placed.row.learning_rate
        return r is not None and r[0] * (1 - EPS) <= lr <= r[1] * (1 + EPS)

    @property
    def agrees(self) -> bool:
        return abs(self.placed.log_error) <= math.log10(AGREE) + EPS

    @property
    def width(self) -> float | None:
        r = self.placed.range
        return r[1] / r[0] if r and r[0] > 0 else None

    @property
    def seed_agrees(self) -> bool | None:
        seed = self.placed.seed_value
        return None if seed is None else abs(math.log10(seed / self.placed.row.learning_rate)) <= math.log10(AGREE) + EPS


@dataclass
class OtherScore:
    """A non-LR setting a row states, against what the rules recommend for that run."""

    row: EvidenceRow
    parameter: str
    published: float
    value: float
    range: tuple[float, float] | None

    @property
    def inside(self) -> bool:
        return self.range is not None and self.range[0] <= self.published <= self.range[1]

    @property
    def agrees(self) -> bool:
        if self.published == 0 or self.value == 0:
            return self.published == self.value
        return abs(math.log10(self.value / self.published)) <= math.log10(AGREE) + EPS


@dataclass
class Report:
    rows: list[Scored] = field(default_factory=list)
    others: list[OtherScore] = field(default_factory=list)
    sources: int = 0

    def tuned(self) -> list[Scored]:
        return [s for s in self.rows if s.placed.row.tuned]

    def demos(self) -> list[Scored]:
        return [s for s in self.rows if not s.placed.row.tuned]


def summary(scored: Sequence[Scored]) -> dict[str, Any]:
    """Counts and shares for a set of placed rows (the figures the README and the test carry)."""
    n = len(scored)
    widths = [w for s in scored if (w := s.width) is not None]
    seeds = [s.seed_agrees for s in scored if s.seed_agrees is not None]
    errors = [abs(s.placed.log_error) for s in scored]
    seed_errors = [abs(math.log10(s.placed.seed_value / s.placed.row.learning_rate)) for s in scored
                   if s.placed.seed_value is not None]
    return {
        "rows": n,
        "sources": len({s.placed.row.source_id for s in scored}),
        "in_range": sum(s.inside for s in scored),
        "in_range_share": round(sum(s.inside for s in scored) / n, 3) if n else None,
        "median_width": round(statistics.median(widths), 2) if widths else None,
        "within_2x": sum(s.agrees for s in scored),
        "within_2x_share": round(sum(s.agrees for s in scored) / n, 3) if n else None,
        "seed_within_2x_share": round(sum(seeds) / len(seeds), 3) if seeds else None,
        # the typical miss, as a factor: 10 ** mean |log10(advisor / published)|
        "mean_factor_off": round(10 ** statistics.mean(errors), 2) if errors else None,
        "seed_mean_factor_off": round(10 ** statistics.mean(seed_errors), 2) if seed_errors else None,
    }


def other_summary(scores: Sequence[OtherScore]) -> dict[str, Any]:
    n = len(scores)
    return {"rows": n, "in_range_share": round(sum(s.inside for s in scores) / n, 3) if n else None,
            "within_2x_share": round(sum(s.agrees for s in scores) / n, 3) if n else None}


def _others(book: Rulebook, row: EvidenceRow) -> list[OtherScore]:
    from advisor.rulebook.resolve import Resolver

    out = []
    for param, key in OTHER:
        published = getattr(row, key)
        if published is None or (param == "beta" and not book.variants.get(row.variant, {}).get("beta_comparable")):
            continue
        facts, pins = row_job(row, leave_out=(param,))
        state = Resolver(book, facts, pins).resolve(param)
        if state is None or not isinstance(state.value, (int, float)):
            continue
        rng = (float(state.range[0]), float(state.range[1])) if state.range else None
        out.append(OtherScore(row=row, parameter=param, published=float(published), value=float(state.value),
                              range=rng))
    return out


def leave_one_source_out(book: Rulebook, rows: Sequence[EvidenceRow], d: Design | None = None) -> Report:
    """Place every row with coefficients fitted without its own source group (tuned rows only fit)."""
    tuned = [r for r in rows if r.tuned]
    d = d if d is not None else design(book, tuned)
    index = {r.id: i for i, r in enumerate(tuned)}
    report = Report(sources=len({r.source_id for r in rows}))
    for group in sorted({r.group for r in rows}):
        train = [index[r.id] for r in tuned if r.group != group]
        values = fit(book, d, train).values
        with Applied(book, values):
            for row in (r for r in rows if r.group == group):
                report.rows.append(Scored(placed=place(book, row), held_out=group))
    for row in rows:  # not fitted: scored with the shipped rules
        report.others.extend(_others(book, row))
    return report
