"""Numeric flags take the ranges rules/registry/flags.yaml gives: a value outside is one line naming the flag,
the value and the range, exit 2; a value on the boundary is taken."""

from __future__ import annotations

from pathlib import Path

import pytest

from advisor.cli import main
from advisor.registries import flag_bounds
from advisor.rulebook.load import Rulebook

SFT = ("--model", "llama-8b", "--method", "sft", "--no-detect")
RAFT = ("--model", "llama-8b", "--method", "raft", "--no-detect")
SAMPLES = ("--samples", "500")
# A probe or sweep refuses these while planning, before it imports a trainer or reads a model's weights.
PROBE = ("--model", "llama-8b", "--method", "sft", "--no-detect")

BAD = [
    (("recommend", *SFT), "--gpu-mem", "0", "0 < --gpu-mem <= 4096 GiB"),
    (("recommend", *SFT), "--gpu-mem", "4097", "0 < --gpu-mem <= 4096 GiB"),
    (("recommend", *SFT), "--gpu-mem", "nan", "0 < --gpu-mem <= 4096 GiB"),
    (("recommend", *SFT), "--gpus", "0", "--gpus >= 1"),
    (("recommend", *SFT), "--seq-len", "15", "16 <= --seq-len <= 10000000 tokens"),
    (("recommend", *SFT), "--sft-lr", "1", "0 < --sft-lr < 1"),
    (("recommend", *RAFT), "--cycles", "1001", "1 <= --cycles <= 1000"),
    (("memory", *SFT), "--micro-batch", "0", "--micro-batch >= 1"),
    (("memory", *SFT), "--seq-len", "10000001", "16 <= --seq-len <= 10000000 tokens"),
    (("memory", *SFT), "--gpus", "0", "--gpus >= 1"),
    (("schedule",), "--cycles", "0", "1 <= --cycles <= 1000"),
    (("schedule", "--strategy", "exponential"), "--decay", "1.5", "0 < --decay <= 1"),
    (("schedule", "--strategy", "exponential"), "--decay", "0", "0 < --decay <= 1"),
    (("schedule",), "--base-lr", "1", "0 < --base-lr < 1"),
    (("schedule",), "--samples", "0", "--samples >= 1"),
    (("schedule", *SAMPLES), "--micro-batch", "0", "--micro-batch >= 1"),
    (("schedule", *SAMPLES), "--accumulation", "0", "--accumulation >= 1"),
    (("probe", *PROBE), "--seq-len", "15", "16 <= --seq-len <= 10000000 tokens"),
    (("probe", *PROBE), "--micro-batch", "0", "--micro-batch >= 1"),
    (("sweep", *PROBE), "--accumulation", "0", "--accumulation >= 1"),
    (("probe", *PROBE), "--lr", "10", "0 < --lr < 10"),
    (("probe", *PROBE), "--lr", "0", "0 < --lr < 10"),
    (("probe", *PROBE), "--steps", "1", "2 <= --steps <= 100000 optimizer steps"),
    (("probe", *PROBE), "--steps", "100001", "2 <= --steps <= 100000 optimizer steps"),
    (("probe", *PROBE), "--eval-every", "-1", "--eval-every >= 0 optimizer steps"),
    (("sweep", *PROBE, "--strategy", "grid", "--lrs", "1e-4,1e-3"), "--steps", "1", "2 <= --steps <= 100000"),
    (("sweep", *PROBE, "--strategy", "grid", "--lrs", "1e-4,1e-3"), "--eval-every", "-1", "--eval-every >= 0"),
    (("sweep", *PROBE, "--strategy", "grid", "--lr-range", "1e-5:1e-2"), "--points", "1", "2 <= --points <= 1000"),
    (("sweep", *PROBE, "--strategy", "grid", "--lr-range", "1e-5:1e-2"), "--points", "1001", "2 <= --points <= 1000"),
    (("probe", *PROBE), "--max-memory", "0", "0 < --max-memory <= 4096 GiB"),
    (("probe", *PROBE), "--max-memory", "5000", "0 < --max-memory <= 4096 GiB"),
]

# A range several flags share (`also` in flags.yaml) names the flag the user gave.
SHARED = [
    (("sweep", *PROBE, "--strategy", "grid"), "--lrs", "1e-4,12", "--lrs: 12 is out of range", "0 < --lrs < 10"),
    (("sweep", *PROBE, "--strategy", "grid", "--points", "4"), "--lr-range", "1e-5:nan", "--lr-range: nan is out of range",
     "0 < --lr-range < 10"),
    (("sweep", *PROBE, "--strategy", "grid", "--points", "4"), "--lr-range", "0:1e-2", "--lr-range: 0 is out of range",
     "0 < --lr-range < 10"),
]

GOOD = [
    ("recommend", *SFT, "--gpu-mem", "4096"),
    ("recommend", *SFT, "--gpus", "1", "--seq-len", "16"),
    ("recommend", *RAFT, "--cycles", "1000"),
    ("memory", *SFT, "--micro-batch", "1", "--seq-len", "10000000"),
    ("schedule", "--cycles", "1", "--strategy", "exponential", "--decay", "1", "--base-lr", "0.5"),
    ("schedule", "--samples", "1", "--micro-batch", "1", "--accumulation", "1"),
]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


@pytest.mark.parametrize(("command", "flag", "value", "hint"), BAD, ids=[f"{c[0]}{f}={v}" for c, f, v, _ in BAD])
def test_bad_flag_value_is_one_line_with_the_range(capsys: pytest.CaptureFixture[str], command: tuple[str, ...],
                                                   flag: str, value: str, hint: str) -> None:
    code, out, err = _run(capsys, *command, flag, value)
    assert code == 2 and out == "", err
    assert err.count("\n") == 1, err
    assert f"{flag}: {value} is out of range" in err and f"(hint: {hint}" in err, err


@pytest.mark.parametrize(("command", "flag", "value", "said", "hint"), SHARED, ids=[f"{f}={v}" for _, f, v, _, _ in SHARED])
def test_a_shared_range_names_the_flag_given(capsys: pytest.CaptureFixture[str], command: tuple[str, ...], flag: str,
                                             value: str, said: str, hint: str) -> None:
    code, out, err = _run(capsys, *command, flag, value)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert said in err and f"(hint: {hint}" in err, err
    assert "e.g." not in err  # --lr's example ("--lr 0.0002") is no --lr-range syntax


def test_a_grid_sweep_refuses_an_eval_every_above_its_steps(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "sweep", *PROBE, "--strategy", "grid", "--lrs", "1e-4,1e-3", "--steps", "4",
                          "--eval-every", "50")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "--eval-every 50: above --steps (4)" in err and "(hint: --eval-every N, N from 1 to --steps (4))" in err


def test_a_grid_sweep_refuses_eval_every_0_which_a_probe_takes(capsys: pytest.CaptureFixture[str]) -> None:
    """0 means start and end only: a probe's choice, but a grid compares its runs' eval curves."""
    code, out, err = _run(capsys, "sweep", *PROBE, "--strategy", "grid", "--lrs", "1e-4,1e-3", "--eval-every", "0")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "--eval-every 0: a grid sweep compares its runs' eval curves" in err and "default is 8" in err, err


@pytest.mark.parametrize("args", GOOD, ids=[" ".join(a[:1] + a[-2:]) for a in GOOD])
def test_boundary_value_is_taken(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, out, err = _run(capsys, *args)
    assert code == 0 and out, err


def test_max_grad_norm_has_an_upper_bound(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "gn.jsonl"
    log.write_text("".join(f'{{"step": {i + 1}, "loss": {2 - 0.01 * i}, "grad_norm": 0.3}}\n' for i in range(30)))
    code, _, err = _run(capsys, "diagnose", str(log), "--max-grad-norm", "1e30")
    assert code == 2 and "--max-grad-norm: 1e+30 is out of range: 0 to 1000000" in err, err
    assert "(hint: 0 <= --max-grad-norm <= 1000000" in err and err.count("\n") == 1, err
    code, out, err = _run(capsys, "diagnose", str(log), "--max-grad-norm", "1000000", "--fail-on", "never")
    assert code == 0 and out, err


def test_a_parameter_flag_takes_the_parameters_bounds(book: Rulebook) -> None:
    """--gpus pins world_size: one copy of its bound, the parameter's (rules/parameters.yaml)."""
    for bound in flag_bounds().values():
        if bound.parameter is not None:
            param = book.parameters[bound.parameter]
            assert (bound.minimum, bound.maximum) == (param.minimum, param.maximum), bound.id


def test_a_flag_with_two_ranges_is_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag in one entry's `also` and in an entry of its own would have two ranges: refused, not one picked."""
    import shutil

    from advisor import registries
    from advisor.errors import RuleFileError

    shutil.copytree(registries.rules_dir() / registries.REGISTRY_DIR, tmp_path / registries.REGISTRY_DIR)
    shutil.copy(registries.rules_dir() / "parameters.yaml", tmp_path / "parameters.yaml")
    path = tmp_path / registries.REGISTRY_DIR / "flags.yaml"
    path.write_text(path.read_text() + "  - {id: --lrs, above: 0, below: 1, source: a second range}\n")
    monkeypatch.setattr(registries, "rules_dir", lambda: tmp_path)
    registries.flag_bounds.cache_clear()
    try:
        with pytest.raises(RuleFileError, match=r"flags\.yaml: --lrs has two ranges \(--lr's `also` and its own entry\)"):
            registries.flag_bounds()
    finally:
        monkeypatch.undo()
        registries.flag_bounds.cache_clear()
    assert registries.flag_bounds()["--lrs"].below == 10
