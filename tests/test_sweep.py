"""advisor sweep end to end: real probe runs of a tiny Llama on the CPU as optuna trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor.output import fmt_number
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

TINY = REPO / "examples" / "tiny-llama" / "config.json"
FAST = ["--model", str(TINY), "--method", "sft", "--peft", "full", "--random-init", "--seq-len", "32",
        "--micro-batch", "4", "--accumulation", "1", "--no-detect", "--device", "cpu"]
SEED_LRS = "1e-5,2e-4,1e-3,5e-3"


def _trials(storage: str, study: str) -> list[Any]:
    import optuna

    from advisor.sweep.study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return list(optuna.load_study(study_name=study, storage=open_storage(storage, None)).get_trials(deepcopy=False))


def _queued(storage: str) -> bool:
    """Whether the study has a WAITING trial. SQLite is read through a read-only connection: opening it
    with optuna would create its tables beside the sweep's own first run, which then fails on them."""
    if not storage.startswith("sqlite:///"):
        return any(t.state.name == "WAITING" for t in _trials(storage, "shared"))
    import sqlite3

    path = storage.removeprefix("sqlite:///")
    if not Path(path).exists():
        return False
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return bool(db.execute("SELECT count(*) FROM trials WHERE state = 'WAITING'").fetchone()[0])


def _complete_lrs(trials: list[Any]) -> list[float]:
    from optuna.trial import TrialState

    return sorted(float(t.params["lr"]) for t in trials if t.state == TrialState.COMPLETE)


def test_grid_reproduces_seed_002_and_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    proc = run_cli("sweep", *FAST, "--strategy", "grid", "--lrs", SEED_LRS, "--steps", "16", "--eval-every", "4",
                   "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "all_results.json").read_text())
    runs = {r["lr"]: r for r in data["runs"]}
    assert sorted(runs) == [1e-5, 2e-4, 1e-3, 5e-3]
    for lr, run in runs.items():
        d = out / f"lr_{lr:.3g}"
        assert json.loads((d / "run_data.json").read_text())["lr"] == lr
        assert (d / "loss_vs_steps.png").read_bytes()[:4] == b"\x89PNG"
        assert run["optimizer_steps"] == 16 and len(run["eval_loss"]) == 4  # every 4 steps, the last at the end
    assert (out / "lr_comparison.png").read_bytes()[:4] == b"\x89PNG"
    # The seed's hypothesis shape: 1e-5 barely moves in 16 steps; a higher LR wins.
    assert runs[1e-5]["eval_loss_end"] > 0.99 * runs[1e-5]["eval_loss_start"]
    assert data["best_lr"] in (1e-3, 5e-3)
    assert runs[data["best_lr"]]["label"] == "optimal"
    assert runs[1e-5]["label"] == "slow"
    readme = (out / "README.md").read_text()
    for question in ("Which LR gave lowest final loss?", "Did any LRs diverge or show instability?",
                     "How did convergence speed differ?", "Does the recommended LR appear optimal for this setup?"):
        assert question in readme and question in data["answers"]
    assert "| Learning Rate | Final Train Loss | Final Eval Loss |" in readme
    assert data["answers"]["Which LR gave lowest final loss?"].startswith(fmt_number(data["best_lr"]))
    assert "lr-evidence" in data["answers"]["Does the recommended LR appear optimal for this setup?"]
    assert "optimal" in proc.stdout and "Which LR gave lowest final loss?" in proc.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_run_every_trial_exactly_once(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two processes share one RDB study: SQLite, and a live PostgreSQL server (tests/conftest.py)."""
    storage = f"sqlite:///{tmp_path / 'sweep.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    lrs = "1e-4,3e-4,1e-3,3e-3,1e-2,3e-2"
    env = {**os.environ, "COLUMNS": "200"}
    main = subprocess.Popen([sys.executable, "-m", "advisor", "sweep", *FAST, "--strategy", "grid", "--lrs", lrs,
                             "--steps", "12", "--storage", storage, "--study", "shared", "--no-plots",
                             "--out-dir", str(tmp_path / "out")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while True:  # the worker joins once the first process has queued the learning rates
        try:
            if _queued(storage):
                break
        except Exception:  # the database or the study may not exist yet
            pass
        assert main.poll() is None and time.monotonic() < deadline, "the sweep never queued its trials"
        time.sleep(0.2)
    worker = subprocess.run([sys.executable, "-m", "advisor", "sweep", "--worker", "--storage", storage,
                             "--study", "shared"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    _, err = main.communicate(timeout=300)
    assert main.returncode == 0, err
    assert worker.returncode == 0, worker.stderr
    trials = _trials(storage, "shared")
    assert _complete_lrs(trials) == sorted(float(x) for x in lrs.split(","))  # each LR once, none twice
    owners = {t.user_attrs["advisor_owner"] for t in trials if t.state.name == "COMPLETE"}
    assert len(owners) == 2, "both processes ran trials"
    assert "worker done: ran" in worker.stdout
    report = json.loads((tmp_path / "out" / "all_results.json").read_text())
    assert len(report["runs"]) == 6  # the first process's report includes the worker's runs


def test_a_killed_sweep_resumes_without_repeating_finished_trials(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["sweep", *FAST, "--strategy", "grid", "--lrs", "1e-4,1e-3,3e-3,1e-2", "--steps", "40", "--no-plots",
            "--out-dir", str(out)]
    journal = str(out / "optuna-journal.log")
    proc = subprocess.Popen([sys.executable, "-m", "advisor", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            done = _complete_lrs(_trials(journal, "advisor-sweep"))
        except Exception:  # the journal may not exist yet
            done = []
        if len(done) >= 2:
            break
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # mid-way: a trial is running, its process dies without a word
    proc.wait()
    before = _trials(journal, "advisor-sweep")
    finished_before = {float(t.params["lr"]): t.number for t in before if t.state.name == "COMPLETE"}
    assert 2 <= len(finished_before) < 4
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    after = _trials(journal, "advisor-sweep")
    complete = [t for t in after if t.state.name == "COMPLETE"]
    assert sorted(float(t.params["lr"]) for t in complete) == [1e-4, 1e-3, 3e-3, 1e-2]
    for lr, number in finished_before.items():  # finished runs are the same trials, not re-runs
        assert [t.number for t in complete if float(t.params["lr"]) == lr] == [number]
    if any(t.state.name == "RUNNING" for t in before):
        assert "resuming" in again.stdout
        assert any(t.state.name == "FAIL" for t in after)


def test_halving_prunes_and_writes_a_rule_that_recommend_uses(tmp_path: Path) -> None:
    out, rules = tmp_path / "out", tmp_path / "my-rules"
    proc = run_cli("sweep", *FAST, "--steps", "18", "--no-plots", "--out-dir", str(out), "--write-rules", str(rules),
                   "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["strategy"] == "halving" and data["range_test"]["suggestion"] is not None
    statuses = [r["label"] for r in data["runs"]]
    assert "pruned" in statuses and "optimal" in statuses
    full = 18 * len(data["runs"])
    assert data["total_optimizer_steps"] < full  # pruning saved steps, range test included
    best = data["best_lr"]
    files = list(rules.glob("*.yaml"))
    assert len(files) == 1
    rule = yaml.safe_load(files[0].read_text())["rules"][0]
    assert rule["default"] == pytest.approx(best, rel=1e-2) and rule["confidence"] == "theoretical"  # random init
    check = run_cli("rules", "check", str(rules))
    assert check.returncode == 0, check.stderr
    rec = run_cli("recommend", "--model", str(TINY), "--method", "sft", "--peft", "full", "--no-detect",
                  "--rules", str(rules), "--format", "json")
    assert rec.returncode == 0, rec.stderr
    lr = json.loads(rec.stdout)["parameters"]["learning_rate"]
    assert lr["rule"] == rule["id"] and lr["trace"][-1]["after"] == pytest.approx(lr["value"])


def test_range_test_suggests_from_one_rising_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("sweep", *FAST, "--strategy", "range-test", "--steps", "30", "--out-dir", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rt = data["range_test"]
    assert data["runs"] == [] and rt["steps"] <= 30
    assert rt["lrs"] == sorted(rt["lrs"]) and rt["lrs"][0] < rt["suggestion"] < rt["lrs"][-1]
    assert rt["band"][0] < rt["suggestion"] < rt["band"][1]
    assert (out / "range_test.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "grid", "--lrs", "1e-4,abc"], "--lrs: 'abc' is not a number"),
    (["--strategy", "grid", "--lr-range", "1e-2:1e-4", "--points", "4"], "LO must be below HI"),
    (["--strategy", "bogus"], "--strategy: unknown strategy 'bogus'"),
    (["--suggest", "middle"], "--suggest: unknown rule 'middle'"),
    (["--lrs", "1e-4,1e-3"], "--lrs goes with --strategy grid, not halving"),
    (["--strategy", "range-test", "--lr-range", "1e-5:1e-2", "--points", "4"],
     "--lr-range goes with --strategy grid, not range-test"),
    (["--strategy", "grid", "--lrs", "1e-3", "--points", "4"], "--points goes with --lr-range"),
    (["--eval-every", "4"], "--eval-every goes with --strategy grid, not halving"),
    # the default's own name too: a grid runs no range test, whatever --suggest says
    (["--strategy", "grid", "--lrs", "1e-3", "--suggest", "minimum"],
     "--suggest goes with --strategy range-test or halving, not grid"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_cli("sweep", *FAST, *args, "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_worker_needs_a_storage_and_an_existing_study(tmp_path: Path) -> None:
    proc = run_cli("sweep", "--worker")
    assert proc.returncode == 2 and "--worker needs --storage" in proc.stderr
    proc = run_cli("sweep", "--worker", "--storage", str(tmp_path / "j.log"), "--study", "nope")
    assert proc.returncode == 2 and "no such study" in proc.stderr


def test_analyse_reports_a_real_sweep_again_without_training(tmp_path: Path) -> None:
    out = tmp_path / "out"
    swept = run_cli("sweep", *FAST, "--strategy", "grid", "--lrs", "1e-3,5e-3", "--steps", "4", "--no-plots",
                    "--out-dir", str(out))
    assert swept.returncode == 0, swept.stderr
    journal = (out / "optuna-journal.log").read_bytes()
    again = run_cli("sweep", "--analyse", str(out))
    assert again.returncode == 0, again.stderr
    # the sweep's table and answers, without its progress lines and what it wrote
    report = [line for line in swept.stdout.splitlines() if not line.startswith(("run ", "  lr ", "wrote "))]
    assert again.stdout.splitlines() == report
    assert (out / "optuna-journal.log").read_bytes() == journal  # no trial run, none queued


def test_resuming_with_other_arguments_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_cli("sweep", *FAST, "--strategy", "grid", "--lrs", "1e-3", "--steps", "4", "--no-plots", "--out-dir", str(out))
    assert first.returncode == 0, first.stderr
    second = run_cli("sweep", *FAST, "--strategy", "grid", "--lrs", "1e-3,1e-2", "--steps", "4", "--no-plots",
                     "--out-dir", str(out))
    assert second.returncode == 2 and "exists with a different specification (lrs)" in second.stderr


def test_a_first_sweep_that_trained_nothing_is_named_with_the_file_to_remove(tmp_path: Path) -> None:
    """A sweep whose model does not load (offline, no --random-init) leaves its study behind; the rerun its hint
    suggests has another spec, so the refusal says none of its runs finished and which journal to remove."""
    out = tmp_path / "out"
    args = ("sweep", "--model", "llama-3.2-1b", "--method", "sft", "--no-detect", "--device", "cpu", "--strategy",
            "grid", "--lrs", "1e-3", "--steps", "4", "--no-plots", "--out-dir", str(out))
    first = run_cli(*args, env={"HF_HUB_OFFLINE": "1"})
    assert first.returncode == 3 and "--random-init" in first.stderr, first.stderr
    again = run_cli(*args, "--random-init", env={"HF_HUB_OFFLINE": "1"})
    assert again.returncode == 2 and again.stderr.count("\n") == 1, again.stderr
    assert "none of its runs finished" in again.stderr
    assert f"remove {out / 'optuna-journal.log'} and run again" in again.stderr


def test_a_config_file_sweeps_and_workers_must_plan_the_same_probe(book: Any, tmp_path: Path) -> None:
    from advisor.sweep import runner
    from advisor.sweep.study import SweepError

    config = tmp_path / "axolotl.yml"
    config.write_text(f"base_model: {TINY}\nadapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_dropout: 0.0\n"
                      "lora_target_modules: [q_proj, v_proj]\nmicro_batch_size: 4\ngradient_accumulation_steps: 1\n"
                      "sequence_len: 32\n")
    out = tmp_path / "out"
    proc = run_cli("sweep", str(config), "--random-init", "--no-detect", "--device", "cpu", "--strategy", "grid",
                   "--lrs", "1e-3,1e-2", "--steps", "6", "--no-plots", "--out-dir", str(out), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert [r["lr"] for r in json.loads(proc.stdout)["runs"]] == [1e-3, 1e-2]
    spec = json.loads(_study_attr(str(out / "optuna-journal.log"), "advisor-sweep", "advisor_sweep_spec"))
    assert spec["plan"]["lora_rank"] == 4 and spec["probe"]["config"] == str(config.resolve())
    runner.Prober(book, spec, runner.Events())  # the same inputs plan the same probe
    other = {**spec, "plan": {**spec["plan"], "lora_rank": 8}}  # as a worker with other --rules would plan it
    with pytest.raises(SweepError, match="lora_rank"):
        runner.Prober(book, other, runner.Events())
    config.write_text(config.read_text() + "learning_rate: 1.0e-4\n")  # the file changed under the sweep
    with pytest.raises(SweepError, match="differs from the file this sweep was started with"):
        runner.Prober(book, spec, runner.Events())


def _study_attr(storage: str, study: str, key: str) -> str:
    import optuna

    from advisor.sweep.study import open_storage

    return str(optuna.load_study(study_name=study, storage=open_storage(storage, None)).user_attrs[key])


def test_a_config_for_several_gpus_says_each_trial_runs_on_one(tmp_path: Path) -> None:
    """The sweep reads the file's `# advisor: job gpus=N` as probe and validate do, and says once that its
    trials train on one GPU."""
    config = tmp_path / "axolotl.yml"
    config.write_text(f"# advisor: job gpus=8\nbase_model: {TINY}\nadapter: lora\nlora_r: 4\nlora_alpha: 8\n"
                      "micro_batch_size: 4\ngradient_accumulation_steps: 1\nsequence_len: 32\n")
    proc = run_cli("sweep", str(config), "--random-init", "--no-detect", "--device", "cpu", "--strategy", "grid",
                   "--lrs", "1e-3", "--steps", "2", "--no-plots", "--out-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stdout.splitlines() if "runs on one GPU" in line]
    assert said == ["the probe runs on one GPU: the full run's 8 GPUs (the '# advisor: job' comment's gpus=8 (line 1)) "
                    "count in its step count only, each training the probe's micro-batch x accumulation"], proc.stdout


def test_a_trial_taken_by_a_process_killed_before_it_named_itself_is_run_again(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed between optuna's ask and the write naming its owner leaves a RUNNING trial no one owns:
    a resumed sweep used to wait on it forever ("waiting for 1 run(s) in other workers"). Past ORPHAN_S it is
    failed and its learning rate enqueued again; a fresh one (a live worker between the two writes) is not."""
    from advisor.sweep import study as sweep_study

    queue = sweep_study.create_or_load(sweep_study.open_storage(None, tmp_path), "s", {"spec": 1})
    sweep_study.enqueue(queue, [1e-4, 1e-3])
    taken = queue.study.ask()  # RUNNING, its lr only in the enqueued fixed_params, no owner named
    assert sweep_study.recover(queue) == [] and sweep_study.others_running(queue) == 1
    monkeypatch.setattr(sweep_study, "ORPHAN_S", 0.0)
    assert sweep_study.recover(queue) == [1e-4]
    states = {t.number: t.state.name for t in queue.study.get_trials(deepcopy=False)}
    assert states[taken.number] == "FAIL" and sweep_study.others_running(queue) == 0
    waiting = [t.system_attrs["fixed_params"]["lr"] for t in queue.study.get_trials(deepcopy=False)
               if t.state.name == "WAITING"]
    assert sorted(waiting) == [1e-4, 1e-3]
