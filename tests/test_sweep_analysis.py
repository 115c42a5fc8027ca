"""The sweep's analysis against the seeds' own numbers (seed 003's 26-run table) and known curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from advisor.rulebook.load import Rulebook
from advisor.sweep import analysis as an
from advisor.sweep import report as rp
from advisor.sweep.records import RunRecord
from tests.conftest import run_cli

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


# --- `advisor sweep --analyse`: a finished sweep's records, reported again -----------------------

def _record(lr: float, end: float, *, nan_at_end: bool = False) -> RunRecord:
    loss = [3.0 - (3.0 - end) * i / 15 for i in range(16)]
    if nan_at_end:
        loss[-1] = math.nan
    return RunRecord(lr=lr, status="complete", steps=list(range(1, 17)), loss=loss, grad_norm=[0.2] * 16,
                     learning_rate=[lr] * 16, eval_steps=[8, 16], eval_loss=[(3.0 + end) / 2, end],
                     eval_loss_start=3.0, eval_accuracy_end=0.1, wall_s=1.0, tokens=512, diverged=nan_at_end)


@pytest.fixture
def written(t: an.Thresholds, tmp_path: Path) -> Path:
    """A sweep's out dir as the sweep's own writer leaves it."""
    runs = [_record(1e-5, 2.9), _record(2e-4, 2.0), _record(1e-3, 1.8), _record(5e-3, 5.0, nan_at_end=True),
            RunRecord(lr=2e-2, status="pruned", steps=[1, 2], loss=[3.0, 2.9], grad_norm=[0.2, 0.2],
                      learning_rate=[2e-2] * 2)]
    report = rp.build(runs, t, strategy="grid", subject="tiny, sft with full", full_run_steps=16,
                      recommended_lr=2e-4, recommended_rule="LR008 lr-evidence", range_test=None)
    rp.write(report, tmp_path / "sweep-out", plots=False)
    return tmp_path / "sweep-out"


def test_analyse_reports_a_finished_sweep_again_from_its_records(written: Path) -> None:
    proc = run_cli("sweep", "--analyse", str(written), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    # the same analysis as the sweep's own: with the same rules, the summary it wrote, field for field
    assert json.loads(proc.stdout) == json.loads((written / rp.RESULTS_NAME).read_text())
    text = run_cli("sweep", "--analyse", str(written / rp.RESULTS_NAME))
    assert text.returncode == 0, text.stderr
    labels = {line.split()[0]: line.split()[-1] for line in text.stdout.splitlines()[1:6]}
    assert labels == {"1e-5": "slow", "2e-4": "slow", "1e-3": "optimal", "5e-3": "unstable", "0.02": "pruned"}
    assert "Which LR gave lowest final loss? 1e-3: final eval loss 1.8000" in text.stdout
    assert "yes: 5e-3 (loss or gradient became NaN/inf)" in text.stdout
    assert not (written / "lr_0.02" / "loss_vs_steps.png").exists()  # it trains and writes nothing


def test_analyse_without_an_answer_exits_1(t: an.Thresholds, tmp_path: Path) -> None:
    report = rp.build([_record(5e-3, 5.0, nan_at_end=True)], t, strategy="grid", subject="tiny", full_run_steps=16,
                      recommended_lr=None, recommended_rule=None, range_test=None)
    rp.write(report, tmp_path, plots=False)
    proc = run_cli("sweep", "--analyse", str(tmp_path))
    assert proc.returncode == 1 and "none: no run finished" in proc.stdout


def _runs_file(tmp_path: Path, text: str) -> str:
    (tmp_path / "all_results.json").write_text(text)
    return str(tmp_path / "all_results.json")


GOOD_RUN = {"lr": 1e-3, "status": "complete", "loss": [2.0, 1.0]}
TOP = {"strategy": "grid", "subject": "x", "full_run_steps": 2, "recommended_lr": None, "recommended_rule": None,
       "range_test": None}


@pytest.mark.parametrize(("text", "needle"), [
    ("{", "all_results.json: not valid JSON"),
    ("[1]", "not a sweep's records (a JSON list, not an object)"),
    (json.dumps({**TOP}), "runs = None is not what `advisor sweep` writes there"),
    (json.dumps({**TOP, "runs": [7]}), "runs[0]: a run is int, not an object"),
    (json.dumps({**TOP, "runs": [{"status": "complete"}]}), "runs[0]: a run has no 'lr'"),
    (json.dumps({**TOP, "runs": [{**GOOD_RUN, "lr": "fast"}]}), "runs[0]: lr = 'fast' is not a number"),
    (json.dumps({**TOP, "runs": [{**GOOD_RUN, "lr": -1}]}), "runs[0]: lr = -1 is not a learning rate"),
    (json.dumps({**TOP, "runs": [{**GOOD_RUN, "status": "done"}]}), "status = 'done' is not a run's status"),
    (json.dumps({**TOP, "runs": [{**GOOD_RUN, "loss": [1.0, "x"]}]}), "loss = [1.0, 'x']: 'x' is not a number"),
    (json.dumps({**TOP, "runs": [{**GOOD_RUN, "steps": 3}]}), "steps = 3 is not a list"),
    (json.dumps({**TOP, "runs": [], "full_run_steps": 0}), "full_run_steps = 0 must be at least 1"),
    (json.dumps({**TOP, "runs": [], "range_test": {"steps": 3}}), "range_test: method = None"),
])
def test_analyse_refuses_bad_records_in_one_line(tmp_path: Path, text: str, needle: str) -> None:
    proc = run_cli("sweep", "--analyse", _runs_file(tmp_path, text))
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["--analyse", "{tmp}/nowhere"], "nowhere: no such file"),
    (["--analyse", "{tmp}"], "no all_results.json in this directory"),
    (["--analyse", "{out}", "--strategy", "grid"], "--strategy goes with a sweep that trains, not --analyse"),
    (["--analyse", "{out}", "--steps", "80"], "--steps goes with a sweep that trains, not --analyse"),
    (["--analyse", "{out}", "--worker"], "--worker goes with a sweep that trains, not --analyse"),
    (["{out}/all_results.json", "--analyse", "{out}"], "CONFIG goes with a sweep that trains, not --analyse"),
])
def test_analyse_bad_arguments_are_one_line(written: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "empty").mkdir()
    proc = run_cli("sweep", *(a.format(tmp=tmp_path / "empty", out=written) for a in args))
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
