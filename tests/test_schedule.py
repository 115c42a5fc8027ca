"""advisor schedule: the seeds' RAFT tables, snippets and worked example, from the rulebook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

SEED_COMPARE = {  # seed 000 / 001 "Decay Factor Comparison": base 5e-5, cycles 1 / 3 / 5
    "constant": ("5.0e-5", "5.0e-5", "5.0e-5"),
    "0.95 (gentle)": ("5.0e-5", "4.5e-5", "4.1e-5"),
    "0.85 (standard)": ("5.0e-5", "3.6e-5", "2.6e-5"),
    "0.70 (aggressive)": ("5.0e-5", "2.5e-5", "1.2e-5"),
}


def test_compare_prints_the_seed_table() -> None:
    proc = run_cli("schedule", "--compare", "--cycles", "5")
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        for label in SEED_COMPARE:
            if line.startswith(label):
                cells = line[len(label):].split()
                rows[label] = (cells[0], cells[2], cells[4])
    assert rows == SEED_COMPARE


def compare_rows(*args: str) -> dict[str, list[str]]:
    proc = run_cli("schedule", "--compare", *args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("decay factor"))
    rows = {}
    for line in lines[head + 1:]:
        if not line.startswith("within each cycle"):
            name, _, cells = line.partition("  ")
            rows[name.strip()] = cells.split()
    return rows


def test_compare_shows_the_users_own_decay_among_the_presets() -> None:
    rows = compare_rows("--decay", "0.9", "--cycles", "3")
    assert list(rows) == ["constant", "0.95 (gentle)", "0.90 (yours)", "0.85 (standard)", "0.70 (aggressive)"]
    assert rows["0.90 (yours)"] == ["5.0e-5", "4.5e-5", "4.1e-5"]  # 5e-5 x 0.9^(cycle - 1)
    # A preset's decay is that row, marked, not a second one; the plan's LR is what the table starts from.
    rows = compare_rows("--decay", "0.85", "--base-lr", "1e-4", "--cycles", "2")
    assert list(rows) == ["constant", "0.95 (gentle)", "0.85 (standard, yours)", "0.70 (aggressive)"]
    assert rows["0.85 (standard, yours)"] == ["1.0e-4", "8.5e-5"]
    assert "constant (yours)" in compare_rows("--decay", "1", "--cycles", "2")
    assert "0.999 (yours)" in compare_rows("--decay", "0.999", "--cycles", "2")  # not a second "1.00"
    data = json.loads(run_cli("schedule", "--compare", "--decay", "0.9", "--format", "json").stdout)
    assert [r["factor"] for r in data["compare"] if r["yours"]] == [0.9]
    assert [r["yours"] for r in json.loads(run_cli("schedule", "--compare", "--format", "json").stdout)["compare"]] == [
        False] * 4


def test_default_schedule_is_the_seed_strategy_b_table() -> None:
    proc = run_cli("schedule", "--cycles", "5", "--format", "json")
    plan = json.loads(proc.stdout)
    assert [c["learning_rate"] for c in plan["per_cycle"]] == [5.0e-5, 4.25e-5, 3.61e-5, 3.07e-5, 2.61e-5]
    assert plan["sources"] == {"learning_rate": {"source": "rule", "detail": "lr-raft"},
                               "lr_decay_factor": {"source": "rule", "detail": "lr-raft-decay"}}
    given = json.loads(run_cli("schedule", "--cycles", "5", "--base-lr", "5e-5", "--format", "json").stdout)
    assert given["sources"]["learning_rate"] == {"source": "flag", "detail": "--base-lr"}
    assert plan["within_cycle"]["warmup_ratio"] == {"value": 0.0, "rule": "opt-warmup-raft"}
    assert plan["within_cycle"]["lr_scheduler_type"]["value"] == "linear"


def test_base_lr_follows_the_sft_lr() -> None:
    plan = json.loads(run_cli("schedule", "--sft-lr", "3e-4", "--cycles", "2", "--format", "json").stdout)
    assert plan["base_lr"] == 7.5e-5 and plan["per_cycle"][1]["learning_rate"] == pytest.approx(6.375e-5, rel=2e-3)


def test_steps_per_cycle_worked_example_and_terminal_plot() -> None:
    proc = run_cli("schedule", "--cycles", "3", "--samples", "500", "--micro-batch", "2", "--accumulation", "16")
    assert "optimizer steps per cycle: 16" in proc.stdout
    assert "cycle   1 | ########################################" in proc.stdout


def test_yaml_snippets_are_the_seeds_and_round_trip_through_validate(tmp_path: Path) -> None:
    job = "# advisor: job method=raft peft=lora cycles=5\n"  # what validate checks the snippet as
    constant = run_cli("schedule", "--strategy", "constant", "--base-lr", "5e-5", "--format", "yaml").stdout
    assert constant == job + "training:\n  learning_rate: 5.0e-5  # same all cycles\n"
    exponential = run_cli("schedule", "--base-lr", "5e-5", "--decay", "0.85", "--format", "yaml").stdout
    assert exponential == job + "training:\n  base_learning_rate: 5.0e-5\n  lr_decay_factor: 0.85\n"
    # PyYAML (YAML 1.1) reads the numbers back as numbers, not as the string '5e-5'
    assert yaml.safe_load(constant)["training"]["learning_rate"] == 5e-5
    assert yaml.safe_load(exponential)["training"] == {"base_learning_rate": 5e-5, "lr_decay_factor": 0.85}
    manual = run_cli("schedule", "--strategy", "manual", "--format", "yaml",
                     "--schedule", "cycle_1=5e-5,cycle_2=4e-5,cycle_3=3e-5,cycle_4=2.5e-5,cycle_5=2e-5").stdout
    assert manual == (job + "training:\n  learning_rate_schedule:\n    cycle_1: 5.0e-5\n    cycle_2: 4.0e-5\n"
                      "    cycle_3: 3.0e-5\n    cycle_4: 2.5e-5\n    cycle_5: 2.0e-5\n")
    assert yaml.safe_load(manual)["training"]["learning_rate_schedule"]["cycle_4"] == 2.5e-5
    paths = []
    for name, text in (("constant", constant), ("exponential", exponential), ("manual", manual)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths.append(str(path))
    proc = run_cli("validate", *paths, "--model", "llama-8b", "--method", "raft", "--cycles", "8",
                   "--format", "json", "--no-detect")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert all(f["error"] is None and f["config"]["format"] == "advisor" for f in report["files"])
    findings = {Path(f["path"]).stem: [x["code"] for x in f["findings"]] for f in report["files"]}
    assert findings["constant"] == ["VRF001"]  # a constant LR over 8 cycles: the seeds' degradation warning
    assert findings["exponential"] == [] and findings["manual"] == []
    # without the flags, the job line says RAFT over 5 cycles: a constant LR is then within the seeds' limit
    own = json.loads(run_cli("validate", *paths, "--model", "llama-8b", "--format", "json", "--no-detect").stdout)
    assert all(not f["error"] and not [x for x in f["findings"] if x["code"].startswith("VRF")] for f in own["files"])
    long = tmp_path / "long.yaml"
    long.write_text(run_cli("schedule", "--strategy", "constant", "--cycles", "8", "--format", "yaml").stdout)
    eight = json.loads(run_cli("validate", str(long), "--model", "llama-8b", "--format", "json", "--no-detect").stdout)
    assert [x["code"] for x in eight["files"][0]["findings"]] == ["VRF001"]
    assert report["files"][2]["config"]["values"]["learning_rate_schedule"]["value"] == [5e-5, 4e-5, 3e-5, 2.5e-5, 2e-5]


def test_manual_strategy_without_a_schedule_is_the_seeds_strategy_c() -> None:
    seed = run_cli("schedule", "--strategy", "manual", "--format", "yaml").stdout
    assert seed == ("# advisor: job method=raft peft=lora cycles=5\ntraining:\n  learning_rate_schedule:\n"
                    "    cycle_1: 5.0e-5\n    cycle_2: 4.0e-5\n    cycle_3: 3.0e-5\n    cycle_4: 2.5e-5\n    cycle_5: 2.0e-5\n")
    plan = json.loads(run_cli("schedule", "--strategy", "manual", "--cycles", "7", "--format", "json").stdout)
    assert plan["sources"] == {"learning_rate_schedule": {"source": "rule", "detail": "lr-raft-manual-schedule"}}
    assert [c["learning_rate"] for c in plan["per_cycle"]] == [5e-5, 4e-5, 3e-5, 2.5e-5, 2e-5, 2e-5, 2e-5]
    # The seed's shape, kept when the start differs: an SFT LR of 4e-4 starts RAFT at 1e-4.
    plan = json.loads(run_cli("schedule", "--strategy", "manual", "--sft-lr", "4e-4", "--cycles", "3",
                              "--format", "json").stdout)
    assert [c["learning_rate"] for c in plan["per_cycle"]] == [1e-4, 8e-5, 6e-5]


def test_recommendations_come_from_the_rules() -> None:
    out = run_cli("schedule", "--recommendations").stdout
    assert "RAFT cycle 1 LR 5e-5, decay 0.85 per cycle [lr-raft, lr-raft-decay" in out
    for code in ("SIG001", "SIG004", "SIG006", "SIG008"):
        assert code in out
    assert "Increase LR: try a 7e-5 base, or the gentle 0.95 decay" in out
    assert "Reduce LR: try the 0.70 decay" in out


def test_recommendations_list_only_the_signs_of_a_raft_run(tmp_path: Path) -> None:
    """RAFT cycles are SFT runs: DPO's signs (reward margins) and GRPO's (entropy, KL) scope themselves to logs
    that carry those series (rules/signals.yaml `when`), so the RAFT decision tree leaves them out, as
    `diagnose` does an SFT log; a user's sign scoped to the method by a task fact is kept or left out the same way."""
    advice = json.loads(run_cli("schedule", "--recommendations", "--format", "json").stdout)["advice"]["signs"]
    codes = {s["code"] for signs in advice.values() for s in signs}
    assert codes == {"SIG001", "SIG002", "SIG003", "SIG004", "SIG005", "SIG009", "SIG010", "SIG011", "SIG006",
                     "SIG007", "SIG008"}
    mine = tmp_path / "rules"
    mine.mkdir()
    sign = ("  - {{id: my-{m}-sign, code: SIG90{n}, kind: signal, parameter: learning_rate, severity: warning,\n"
            "     summary: 'LR too high: my {m} sign', direction: lr-too-high, sign: 'My {m} sign', advice: 'Reduce LR',\n"
            "     source: {{derived: test}}, when: {{fact: task.method, op: eq, value: {m}}},\n"
            "     detect: 'max(log.loss) > 9', evidence: 'loss {{max(log.loss)}}', confidence: low}}\n")
    (mine / "signals.yaml").write_text("family: my-signals\ndescription: test signs\nrules:\n" + sign.format(m="raft", n=1)
                                       + sign.format(m="dpo", n=2))
    proc = run_cli("schedule", "--recommendations", "--rules", str(mine))
    assert proc.returncode == 0, proc.stderr
    assert "My raft sign: Reduce LR [SIG901]" in proc.stdout and "SIG902" not in proc.stdout


def test_recommendations_start_where_the_plan_does() -> None:
    """Full fine-tuning starts RAFT at 5e-6: the advice's starting point is the plan's, not LoRA's 5e-5."""
    out = run_cli("schedule", "--peft", "full", "--cycles", "2", "--recommendations").stdout
    assert "cycle   1 | ######################################## 5e-6" in out
    assert "RAFT cycle 1 LR 5e-6, decay 0.85 per cycle" in out
    assert "RAFT cycle 1 LR 2.5e-5," in run_cli("schedule", "--sft-lr", "1e-4", "--recommendations").stdout


def test_constant_strategy_says_it_set_the_decay() -> None:
    out = run_cli("schedule", "--strategy", "constant", "--cycles", "1").stdout
    assert out.startswith("constant schedule, 1 cycle (learning_rate from lr-raft, lr_decay_factor from --strategy "
                          "constant)\n")
    plan = json.loads(run_cli("schedule", "--strategy", "constant", "--format", "json").stdout)
    assert plan["sources"]["lr_decay_factor"] == {"source": "flag", "detail": "--strategy constant"}


def test_plot_png(tmp_path: Path) -> None:
    out = tmp_path / "lr.png"
    proc = run_cli("schedule", "--compare", "--cycles", "6", "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert not list(tmp_path.glob(".*"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--strategy", "manual", "--schedule", "cycle_1=5e-5,cycle_3=3e-5"), "without gaps"),
        (("--strategy", "manual", "--schedule", "cycle_1=fast"), "'fast' in 'cycle_1=fast' is not a learning rate"),
        (("--decay", "1.5"), "--decay: 1.5 is out of range"),
        (("--cycles", "0"), "--cycles: 0 is out of range"),
        (("--strategy", "cosine"), "unknown strategy 'cosine'"),
        (("--base-lr", "3"), "--base-lr: 3 is out of range"),
        (("--plot", "/nonexistent-dir/x.png"), "does not exist"),
        (("--strategy", "constant", "--decay", "0.5"), "--decay goes with --strategy exponential, not constant"),
        (("--strategy", "manual", "--decay", "0.5"), "--decay goes with --strategy exponential, not manual"),
        (("--strategy", "manual", "--schedule", "cycle_1=5e-5,cycle_1=4e-5"), "--schedule: cycle 1 is given twice"),
        (("--strategy", "manual", "--schedule", "5e-5,4e-5", "--base-lr", "1e-4"),
         "--base-lr goes with the rulebook's schedule, not with --schedule"),
        (("--samples", "500", "--micro-batch", "0"), "--micro-batch: 0 is out of range"),
        (("--micro-batch", "4"), "--micro-batch and --accumulation go with --samples"),
    ],
)
def test_bad_input(args: tuple[str, ...], needle: str) -> None:
    proc = run_cli("schedule", *args)
    assert proc.returncode == 2 and proc.stdout == ""  # refused before anything is printed
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr
