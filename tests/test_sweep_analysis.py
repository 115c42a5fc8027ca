"""The sweep's analysis against the seeds' own numbers (seed 003's 26-run table) and known curves."""

from __future__ import annotations

import math

import pytest

from advisor.rulebook.load import Rulebook
from advisor.sweep import analysis as an

# Seed 003, "9.1 Complete Results Table" (LR, final loss) and "2.1 Performance Summary" (status).
SEED_003 = [
    (0.001, 10.295), (0.0018, 9.790), (0.0032, 8.859), (0.0056, 7.756), (0.010, 7.119), (0.015, 6.775),
    (0.025, 6.325), (0.035, 6.121), (0.045, 5.989), (0.055, 5.961), (0.065, 5.895), (0.075, 5.900),
    (0.085, 5.942), (0.095, 6.049), (0.100, 6.020), (0.150, 6.384), (0.200, 6.851), (0.250, 8.640),
    (0.300, 8.645), (0.350, 9.597), (0.400, 10.077), (0.450, 10.477), (0.500, 11.195), (0.600, 12.233),
    (0.800, 9.611), (1.000, 9.101),
]
SEED_003_STATUS = {  # "Very Good" (0.035) is 'good' in advisor's closed list of labels
    0.065: "optimal", 0.075: "excellent", 0.055: "excellent", 0.045: "excellent", 0.085: "excellent",
    0.035: "good", 0.100: "good", 0.025: "good", 0.095: "declining", 0.150: "poor", 0.015: "slow",
    **{lr: "unstable" for lr in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.8, 1.0)},
}


@pytest.fixture(scope="module")
def t(book: Rulebook) -> an.Thresholds:
    return an.Thresholds.from_book(book)


def test_labels_reproduce_seed_003_status_column(t: an.Thresholds) -> None:
    best_lr, best = min(SEED_003, key=lambda p: p[1])
    got = {lr: an.label(lr, loss, best_lr, best, unstable=False, t=t) for lr, loss in SEED_003}
    assert {lr: got[lr] for lr in SEED_003_STATUS} == SEED_003_STATUS
    assert all(got[lr] == "slow" for lr in (0.001, 0.0018, 0.0032, 0.0056, 0.010))  # "Too slow" (6.2)


def test_optimal_band_and_sensitivity_match_seed_003(t: an.Thresholds) -> None:
    best_lr, best = min(SEED_003, key=lambda p: p[1])
    labelled = [(lr, an.label(lr, loss, best_lr, best, unstable=False, t=t)) for lr, loss in SEED_003]
    assert an.optimal_band(labelled) == (0.045, 0.085)  # seed: "0.04-0.08 range", optimal 0.035-0.085
    intervals = an.sensitivity(SEED_003, best, t)
    low = [(i.lo, i.hi) for i in intervals if i.sensitivity == "low"]
    assert (0.045, 0.055) in low and (0.065, 0.075) in low  # "Low Sensitivity Range: 0.04 - 0.08"
    high = {(i.lo, i.hi) for i in intervals if i.sensitivity == "high"}
    assert {(0.1, 0.15), (0.15, 0.2), (0.2, 0.25)} <= high  # "High Sensitivity Range: 0.1 - 1.0"


def test_unstable_flag_and_nonfinite_loss_win(t: an.Thresholds) -> None:
    assert an.label(0.065, 5.9, 0.065, 5.9, unstable=True, t=t) == "unstable"
    assert an.label(0.07, math.nan, 0.065, 5.9, unstable=False, t=t) == "unstable"


def _range_curve(n: int = 100) -> tuple[list[float], list[float]]:
    """A textbook range-test curve: flat, a long descent, a minimum near 1e-2, then divergence."""
    lrs = [1e-6 * (10 ** (6 * i / (n - 1))) for i in range(n)]
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        losses.append(5.0 - 2.0 / (1 + math.exp(-3 * (x + 3))) + (math.exp(4 * (x + 1.5)) if x > -1.5 else 0.0))
    return lrs, losses


def test_range_test_suggestions_sit_on_the_descent(t: an.Thresholds) -> None:
    lrs, losses = _range_curve()
    res = an.analyse_range_test(lrs, losses, t, method="valley", band_factor=3)
    assert res is not None and res.stopped_at is not None  # the blow-up stops it
    assert 1e-4 < res.suggestion < 3e-2  # on the descending slope, before the minimum
    assert res.band[0] < res.suggestion < res.band[1]
    steep = an.analyse_range_test(lrs, losses, t, method="steepest", band_factor=3)
    assert steep is not None and 1e-4 < steep.suggestion < 1e-2
    assert res.suggestion <= res.min_loss_lr and steep.suggestion <= res.min_loss_lr
    minimum = an.analyse_range_test(lrs, losses, t, method="minimum", band_factor=3)
    assert minimum is not None and minimum.suggestion == pytest.approx(minimum.min_loss_lr / t.minimum_divisor)
    assert 1e-3 < minimum.min_loss_lr < 1e-1  # the raw curve's minimum sits near 1e-2


def test_range_test_without_enough_points_suggests_nothing(t: an.Thresholds) -> None:
    assert an.analyse_range_test([1e-5, 1e-4], [3.0, math.inf], t, method="valley", band_factor=3) is None


def test_convergence_speed(t: an.Thresholds) -> None:
    fast = [5.0 * math.exp(-i / 3) + 1 for i in range(80)]
    slow = [5.0 - 0.02 * i for i in range(80)]
    assert an.convergence(fast, t)[1] == "fast"
    assert an.convergence(slow, t)[1] == "slow"
    assert an.convergence([3.0, 3.0, 3.0], t) == (None, "none")
    assert an.convergence([3.0, 2.99, 3.01, 2.98], t) == (None, "none")  # noise, not convergence


def test_log_space() -> None:
    assert an.log_space(1e-5, 1e-2, 4) == [1e-5, 1e-4, 1e-3, 1e-2]
    assert an.log_space(1e-4, 1e-2, 1) == [1e-3]
