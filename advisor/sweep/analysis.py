"""What a sweep's numbers mean: range-test suggestions, status labels, the optimal band,
sensitivity and convergence speed. Pure Python over lists of floats; every threshold comes
from rules/sweep.yaml (the ``Thresholds`` the rulebook provides)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from advisor.rulebook.load import Rulebook


@dataclass(frozen=True)
class Thresholds:
    excellent_gap: float
    good_gap_below: float
    good_gap_above: float
    declining_gap: float
    poor_gap: float
    sensitivity_low: float
    converge_fraction: float
    converge_min_drop: float
    converge_smoothing: float
    converge_fast: float
    converge_moderate: float
    smoothing: float
    diverge: float
    minimum_divisor: float
    skip_begin: int
    skip_end: int

    @classmethod
    def from_book(cls, book: Rulebook) -> Thresholds:
        c = book.coefficient
        return cls(
            excellent_gap=float(c("sweep-excellent-gap")), good_gap_below=float(c("sweep-good-gap-below")),
            good_gap_above=float(c("sweep-good-gap-above")), declining_gap=float(c("sweep-declining-gap")),
            poor_gap=float(c("sweep-poor-gap")), sensitivity_low=float(c("sweep-sensitivity-low")),
            converge_fraction=float(c("sweep-converge-fraction")),
            converge_smoothing=float(c("sweep-converge-smoothing")),
            converge_min_drop=float(c("sweep-converge-min-drop")), converge_fast=float(c("sweep-converge-fast")),
            converge_moderate=float(c("sweep-converge-moderate")), smoothing=float(c("range-test-smoothing")),
            diverge=float(c("range-test-diverge")), minimum_divisor=float(c("range-test-minimum-divisor")),
            skip_begin=int(c("range-test-skip-begin")),
            skip_end=int(c("range-test-skip-end")),
        )


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def smooth(values: Sequence[float], beta: float) -> list[float]:
    """Debiased exponential moving average, as fastai's and Lightning's range tests smooth the loss."""
    out: list[float] = []
    avg = 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**i))
    return out


def diverged_at(smoothed: Sequence[float], factor: float) -> int | None:
    """Index of the first smoothed loss above ``factor`` x the lowest before it (or non-finite)."""
    best = math.inf
    for i, v in enumerate(smoothed):
        if not math.isfinite(v) or (i > 0 and v > factor * best):
            return i
        best = min(best, v)
    return None


def steepest(lrs: Sequence[float], losses: Sequence[float], skip_begin: int, skip_end: int) -> int | None:
    """Lightning's suggestion: the point of steepest descent of loss over log(LR)."""
    end = len(losses) - skip_end
    if end - skip_begin < 2:
        return None
    xs = [math.log10(x) for x in lrs[skip_begin:end]]
    ys = list(losses[skip_begin:end])
    grads = []
    for i in range(len(ys)):
        lo, hi = max(i - 1, 0), min(i + 1, len(ys) - 1)
        grads.append((ys[hi] - ys[lo]) / (xs[hi] - xs[lo]) if xs[hi] != xs[lo] else 0.0)
    return skip_begin + min(range(len(grads)), key=grads.__getitem__)


def valley(losses: Sequence[float]) -> int | None:
    """fastai's default suggestion: the longest run of decreasing loss, two thirds of the way down it."""
    n = len(losses)
    if n < 3:
        return None
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


@dataclass(frozen=True)
class RangeTestAnalysis:
    suggestion: float
    method: str
    valley_lr: float | None
    steepest_lr: float | None
    minimum_lr: float  # fastai's lr_min: the LR at the smoothed minimum / the divisor
    min_loss_lr: float
    stopped_at: int | None  # index where the loss diverged, None when the test ran to the end
    band: tuple[float, float]


def analyse_range_test(lrs: Sequence[float], losses: Sequence[float], t: Thresholds, *, method: str,
                       band_factor: float) -> RangeTestAnalysis | None:
    """Suggest an LR from a range test's (LR, loss) points by ``method`` (valley | steepest | minimum);
    None when the curve has too few points or the method finds none."""
    sm = smooth(losses, t.smoothing)
    stop = diverged_at(sm, t.diverge)
    upto = stop if stop is not None else len(sm)
    lrs_ok, sm_ok = list(lrs[:upto]), sm[:upto]
    if len(sm_ok) < 3:
        return None
    v = valley(sm_ok)
    s = steepest(lrs_ok, sm_ok, t.skip_begin, t.skip_end)
    min_lr = lrs_ok[min(range(len(sm_ok)), key=sm_ok.__getitem__)]
    found = {"valley": lrs_ok[v] if v is not None else None, "steepest": lrs_ok[s] if s is not None else None,
             "minimum": min_lr / t.minimum_divisor}
    lr = found[method]
    if lr is None:
        return None
    return RangeTestAnalysis(
        suggestion=lr, method=method, valley_lr=found["valley"], steepest_lr=found["steepest"],
        minimum_lr=min_lr / t.minimum_divisor, min_loss_lr=min_lr, stopped_at=stop, band=(lr / band_factor, lr * band_factor),
    )


def label(lr: float, loss: float | None, best_lr: float, best_loss: float, *, unstable: bool,
          t: Thresholds) -> str:
    """Seed 003's status column for one run, from its gap to the best final eval loss."""
    if unstable or not finite(loss):
        return "unstable"
    assert loss is not None
    if lr == best_lr:
        return "optimal"
    gap = (loss - best_loss) / abs(best_loss) if best_loss else math.inf
    if gap <= t.excellent_gap:
        return "excellent"
    if lr < best_lr:
        return "good" if gap <= t.good_gap_below else "slow"
    if gap <= t.good_gap_above:
        return "good"
    if gap <= t.declining_gap:
        return "declining"
    return "poor" if gap <= t.poor_gap else "unstable"


def optimal_band(labelled: Sequence[tuple[float, str]]) -> tuple[float, float] | None:
    """The contiguous LR range around the optimum whose runs are optimal or excellent."""
    ordered = sorted(labelled)
    idx = next((i for i, (_, s) in enumerate(ordered) if s == "optimal"), None)
    if idx is None:
        return None
    lo = hi = idx
    while lo > 0 and ordered[lo - 1][1] in ("optimal", "excellent"):
        lo -= 1
    while hi < len(ordered) - 1 and ordered[hi + 1][1] in ("optimal", "excellent"):
        hi += 1
    return ordered[lo][0], ordered[hi][0]


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    per_decade: float  # relative change of the final loss per decade of LR
    sensitivity: str  # "low" | "high"


def sensitivity(points: Sequence[tuple[float, float]], best_loss: float, t: Thresholds) -> list[Interval]:
    """How much the final loss moves between neighbouring LRs, per decade, relative to the best loss."""
    pts = sorted((lr, loss) for lr, loss in points if finite(loss) and lr > 0)
    out = []
    for (a, la), (b, lb) in itertools.pairwise(pts):
        decades = math.log10(b / a)
        if decades <= 0 or not best_loss:
            continue
        per = abs(lb - la) / abs(best_loss) / decades
        out.append(Interval(a, b, per, "low" if per < t.sensitivity_low else "high"))
    return out


def convergence(losses: Sequence[float], t: Thresholds) -> tuple[int | None, str]:
    """(steps until the smoothed loss made ``converge_fraction`` of its drop, 'fast' | 'moderate' | 'slow'),
    or (None, 'none') when the loss barely fell or went non-finite."""
    if len(losses) < 2 or not all(math.isfinite(x) for x in losses):
        return None, "none"
    sm = smooth(losses, t.converge_smoothing)
    start, low = sm[0], min(sm)
    drop = start - low
    if drop <= t.converge_min_drop * abs(start):
        return None, "none"
    target = start - t.converge_fraction * drop
    step = next(i for i, v in enumerate(sm, 1) if v <= target)
    frac = step / len(sm)
    speed = "fast" if frac <= t.converge_fast else "moderate" if frac <= t.converge_moderate else "slow"
    return step, speed


def same_lr(a: float, b: float) -> bool:
    """Learning rates are compared as they are written: to three significant figures."""
    return f"{a:.3g}" == f"{b:.3g}"


def log_space(lo: float, hi: float, n: int) -> list[float]:
    """``n`` learning rates evenly spaced in log between lo and hi (both included), 3 significant figures."""
    if n == 1:
        return [float(f"{math.sqrt(lo * hi):.3g}")]
    step = (math.log10(hi) - math.log10(lo)) / (n - 1)
    return [float(f"{10 ** (math.log10(lo) + i * step):.3g}") for i in range(n)]
