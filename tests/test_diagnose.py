"""advisor diagnose on real-shaped logs: each signal has a log that shows it and one that does not."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

STEPS = 60


def falling(start: float = 2.0, end: float = 0.8, n: int = STEPS) -> list[float]:
    return [start - (start - end) * i / (n - 1) + 0.01 * math.sin(i) for i in range(n)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def log_rows(loss: list[float], grad: list[float] | None = None, eval_loss: dict[int, float] | None = None,
             ) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, value in enumerate(loss):
        row: dict[str, Any] = {"step": i + 1, "loss": value, "learning_rate": 2e-4}
        if grad is not None:
            row["grad_norm"] = grad[i]
        rows.append(row)
        if eval_loss and (i + 1) in eval_loss:
            rows.append({"step": i + 1, "eval_loss": eval_loss[i + 1]})
    return rows


def signs(*args: str) -> list[str]:
    proc = run_cli("diagnose", *args, "--format", "json", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    return [s["code"] for s in json.loads(proc.stdout)["signs"]]


HEALTHY_GRAD = [0.15 + 0.02 * math.sin(i) for i in range(STEPS)]


def test_healthy_run_shows_nothing(tmp_path: Path) -> None:
    evals = {20: 1.6, 40: 1.3, 60: 1.1}
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(falling(), HEALTHY_GRAD, evals))
    assert signs(str(path)) == []


@pytest.mark.parametrize(
    ("code", "loss", "grad", "evals"),
    [
        ("SIG001", [*falling()[:30], 5.0, *falling()[31:]], HEALTHY_GRAD, None),
        ("SIG001", [v * (1.1 if i % 2 else 0.9) for i, v in enumerate(falling())], HEALTHY_GRAD, None),
        ("SIG002", falling(), HEALTHY_GRAD, {10: 1.5, 20: 1.4, 30: 1.3, 40: 1.45, 50: 1.6, 60: 1.8}),
        ("SIG003", falling(), [1.0 if i % 5 else 0.7 for i in range(STEPS)], None),
        ("SIG006", [1.5 + 0.005 * math.sin(i) for i in range(STEPS)], HEALTHY_GRAD, None),
        ("SIG008", falling(), [0.01] * STEPS, None),
        ("SIG009", falling()[:40] + [float("nan")] * 20, HEALTHY_GRAD[:40] + [float("inf")] * 20, None),
    ],
)
def test_step_signals_fire(tmp_path: Path, code: str, loss: list[float], grad: list[float],
                           evals: dict[int, float] | None) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(loss, grad, evals))
    assert code in signs(str(path))


def test_clipping_follows_the_runs_threshold(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(falling(), [0.3] * STEPS))
    assert "SIG003" in signs(str(path), "--max-grad-norm", "0.3")
    assert "SIG003" not in signs(str(path))  # the rulebook's 1.0


def test_clipping_counts_the_steps_it_measured(tmp_path: Path) -> None:
    """100 steps, 10 of them NaN (SIG009's): the clipping share is of the 90 finite norms, and the text says so."""
    grad = [1.0] * 50 + [0.15] * 40 + [math.nan] * 10
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(falling(n=100), grad))
    report = json.loads(run_cli("diagnose", str(path), "--format", "json", "--fail-on", "never").stdout)
    evidence = {s["code"]: s["evidence"] for s in report["signs"]}
    assert evidence["SIG003"] == "55.6% of the 90 steps with a finite gradient norm have it at max_grad_norm 1"


def raft_history(root: Path, rates: list[float]) -> Path:
    """One JSONL log per cycle, each ending with the cycle's verification rate (like the seeds' table)."""
    root.mkdir()
    for c, rate in enumerate(rates, 1):
        rows = log_rows(falling(1.2 - 0.05 * c, 0.8 - 0.05 * c, 16), [0.15] * 16)
        rows.append({"step": 16, "verification_rate": rate})
        write_jsonl(root / f"cycle_{c}.jsonl", rows)
    return root


def test_raft_degradation_after_cycle_6(tmp_path: Path) -> None:
    root = raft_history(tmp_path / "raft", [0.42, 0.48, 0.53, 0.57, 0.60, 0.62, 0.58, 0.55])
    proc = run_cli("diagnose", "--cycles-dir", str(root), "--format", "json", "--fail-on", "never")
    report = json.loads(proc.stdout)
    assert report["cycles"] == [f"cycle_{i}.jsonl" for i in range(1, 9)]
    assert report["cycle_metric"] == "verification_rate"
    sign = next(s for s in report["signs"] if s["code"] == "SIG004")
    assert "got worse at cycle_7.jsonl, cycle_8.jsonl" in sign["evidence"] and "Reduce LR" in sign["advice"]
    improving = raft_history(tmp_path / "good", [0.42, 0.48, 0.53, 0.57, 0.60, 0.62, 0.64, 0.66])
    assert "SIG004" not in signs("--cycles-dir", str(improving))


def test_files_beside_the_cycles_that_name_no_cycle_are_not_cycles(tmp_path: Path) -> None:
    """A README.md, notes.txt or samples.jsonl in a flat cycles directory neither stops the run nor counts as a
    cycle; a numbered file that is no log still does (cycle_3.log: an unknown log type)."""
    root = raft_history(tmp_path / "raft", [0.42, 0.48, 0.53])
    (root / "README.md").write_text("# my RAFT run\n")
    (root / "notes.txt").write_text("cycle 2 had a bad filter\n")
    (root / "samples.jsonl").write_text('{"text": "a sample"}\n')
    report = json.loads(run_cli("diagnose", "--cycles-dir", str(root), "--format", "json", "--fail-on", "never").stdout)
    assert report["cycles"] == ["cycle_1.jsonl", "cycle_2.jsonl", "cycle_3.jsonl"]
    (root / "cycle_4.log").write_text("loss 1.0\n")
    proc = run_cli("diagnose", "--cycles-dir", str(root))
    assert proc.returncode == 2 and "cycle_4.log: unknown log type .log" in proc.stderr


def test_cycle_worse_names_the_cycle_folders_not_their_count(tmp_path: Path) -> None:
    """Folders numbered from 0: the cycles that got worse are named as the directory names them."""
    flat = raft_history(tmp_path / "flat", [0.42, 0.48, 0.53, 0.50])
    root = tmp_path / "raft"
    root.mkdir()
    for c, log in enumerate(sorted(flat.iterdir(), key=lambda p: int(p.stem.split("_")[1]))):
        (root / f"cycle_{c}").mkdir()
        log.rename(root / f"cycle_{c}" / "log.jsonl")
    proc = run_cli("diagnose", "--cycles-dir", str(root), "--format", "json", "--fail-on", "never")
    sign = next(s for s in json.loads(proc.stdout)["signs"] if s["code"] == "SIG004")
    assert sign["evidence"] == "verification_rate got worse at cycle_3"


def test_nan_loss_is_judged_without_a_grad_norm_column(tmp_path: Path) -> None:
    """A loss-only log (no grad_norm) that goes NaN is SIG009, not "no warning signs"."""
    path = write_jsonl(tmp_path / "log.jsonl", [{"step": i + 1, "loss": v}
                                                for i, v in enumerate(falling()[:30] + [float("nan")] * 10)])
    proc = run_cli("diagnose", str(path), "--format", "json")
    assert proc.returncode == 1, proc.stdout
    sign = next(s for s in json.loads(proc.stdout)["signs"] if s["code"] == "SIG009")
    assert sign["evidence"] == "10 non-finite losses; non-finite gradient norms: no grad_norm logged"


def test_flat_verification_rate(tmp_path: Path) -> None:
    root = raft_history(tmp_path / "raft", [0.40, 0.50, 0.55, 0.552, 0.551, 0.553])
    assert "SIG007" in signs("--cycles-dir", str(root))
    assert "SIG007" not in signs("--cycles-dir", str(raft_history(tmp_path / "b", [0.4, 0.45, 0.5, 0.55])))


def test_repetitive_samples(tmp_path: Path) -> None:
    log = write_jsonl(tmp_path / "log.jsonl", log_rows(falling(), HEALTHY_GRAD))
    same = write_jsonl(tmp_path / "same.jsonl", [{"text": "def solve(x): return x + 1"} for _ in range(50)])
    varied = tmp_path / "varied.txt"
    varied.write_text("\n".join(f"sample {i} uses approach {i * 7 % 13} with value {i * i}" for i in range(50)))
    assert "SIG005" in signs(str(log), "--samples", str(same))
    assert "SIG005" not in signs(str(log), "--samples", str(varied))


def test_csv_and_trainer_state_readers(tmp_path: Path) -> None:
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("step,train/loss,grad_norm,lr\n" + "".join(
        f"{i + 1},{v},{0.01},2e-4\n" for i, v in enumerate(falling())))
    assert signs(str(csv_path)) == ["SIG008"]
    state = {"global_step": STEPS, "log_history": log_rows(falling(), [0.01] * STEPS)}
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps(state))
    assert signs(str(path)) == ["SIG008"]
    assert signs(str(tmp_path / "trainer_state.json")) == signs(str(path))


def test_tensorboard_events_written_by_the_real_writer(tmp_path: Path) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path / "tb"))
    for i, (loss, grad) in enumerate(zip(falling(), [1.0] * STEPS, strict=True)):
        summary = Summary(value=[Summary.Value(tag="train/loss", simple_value=loss),
                                 Summary.Value(tag="train/grad_norm", simple_value=grad)])
        writer.add_event(Event(step=i + 1, wall_time=1.0e9 + i, summary=summary))
    writer.close()
    proc = run_cli("diagnose", str(tmp_path / "tb"), "--format", "json", "--fail-on", "never")
    report = json.loads(proc.stdout)
    assert report["reader"] == "tensorboard" and report["points"]["loss"] == STEPS
    assert [s["code"] for s in report["signs"]] == ["SIG003"]


def test_text_output_exit_code_and_plot(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(falling(), [0.01] * STEPS))
    out = tmp_path / "curves.png"
    proc = run_cli("diagnose", str(path), "--plot", str(out))
    assert proc.returncode == 1  # a warning sign, and --fail-on warning is the default
    assert "SIG008 warning: LR too low: very small gradient norms (< 0.05)" in proc.stdout
    assert "measured: median gradient norm 0.01" in proc.stdout
    assert "advice: Increase LR" in proc.stdout
    assert "not judged" in proc.stdout  # no eval loss, no cycles, no samples in this log
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: p / "missing.jsonl", "no such file"),
        (lambda p: ((p / "empty.jsonl").write_text(""), p / "empty.jsonl")[1], "empty file"),
        (lambda p: ((p / "bad.jsonl").write_text("{not json\n"), p / "bad.jsonl")[1], "not a JSON object per line"),
        (lambda p: ((p / "x.csv").write_text("a,b\n1,2\n"), p / "x.csv")[1], "no loss, grad_norm"),
        (lambda p: ((p / "x.json").write_text("[1]"), p / "x.json")[1], "not a trainer_state.json"),
        (lambda p: ((p / "x.bin").write_bytes(b"\x00\x01"), p / "x.bin")[1], "unknown log type"),
        (lambda p: p, "no trainer_state.json or TensorBoard event files"),
    ],
)
def test_bad_logs_are_one_line_exit_2(tmp_path: Path, make: Any, needle: str) -> None:
    path = make(tmp_path)
    proc = run_cli("diagnose", str(path))
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr


@pytest.mark.slow
def test_trainer_state_written_by_a_real_trainer(tmp_path: Path) -> None:
    """A tiny Llama trained for 30 steps by transformers' own Trainer on the CPU, at an LR far too
    high for it: its trainer_state.json is read as written, and the clipping sign shows."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    g = torch.Generator().manual_seed(1)
    rows = [(torch.arange(16) % 8 + torch.randint(0, 2, (1,), generator=g)) % 64 for _ in range(72)]

    class Data(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __init__(self, xs: list[torch.Tensor]) -> None:
            self.xs = xs

        def __len__(self) -> int:
            return len(self.xs)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": self.xs[i], "labels": self.xs[i]}

    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=30, per_device_train_batch_size=4,
                             learning_rate=5e-3, logging_steps=1, eval_strategy="steps", eval_steps=10,
                             save_strategy="no", report_to=[], use_cpu=True, max_grad_norm=1.0, seed=0,
                             disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=Data(rows[:64]), eval_dataset=Data(rows[64:]))
    trainer.train()
    state = tmp_path / "trainer_state.json"
    trainer.state.save_to_json(str(state))

    proc = run_cli("diagnose", str(state), "--max-grad-norm", "1.0", "--format", "json", "--fail-on", "never")
    report = json.loads(proc.stdout)
    assert report["reader"] == "trainer_state.json"
    assert report["points"]["loss"] == 30 and report["points"]["eval_loss"] == 3
    codes = [s["code"] for s in report["signs"]]
    assert "SIG003" in codes and "SIG009" not in codes and "SIG008" not in codes
    # validate reads the same file's stored arguments and its peak LR
    proc = run_cli("validate", str(state), "--model", "llama-3.2-1b", "--method", "sft", "--peft", "full",
                   "--format", "json", "--no-detect", "--fail-on", "never")
    values = json.loads(proc.stdout)["files"][0]["config"]["values"]
    assert values["learning_rate"]["value"] == pytest.approx(5e-3)
    assert values["max_steps"]["value"] == 30 and values["micro_batch_size"]["value"] == 4


def test_flagged_points_are_marked(tmp_path: Path) -> None:
    loss = [*falling()[:30], 5.0, *falling()[31:]]
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(loss, [1.0 if i % 3 else 0.5 for i in range(STEPS)]))
    report = json.loads(run_cli("diagnose", str(path), "--format", "json", "--fail-on", "never").stdout)
    marks = {s["code"]: s["marks"] for s in report["signs"]}
    assert marks["SIG001"] == {"series": "loss", "at": [31], "position": "step"}
    assert marks["SIG003"]["series"] == "grad_norm" and marks["SIG003"]["at"][:3] == [2, 3, 5]


def test_a_long_noisy_run_marks_thousands_of_spikes_and_names_a_few(tmp_path: Path) -> None:
    # Every 4th loss doubles: 6,000 spikes, more than a formula may build itself (MAX_LIST), all
    # selected from the run's own series. The JSON keeps every step; the text names a few and counts.
    n = 24_000
    loss = [(2.0 if i % 4 == 3 else 1.0) * (0.3 + 2.0 * 0.9999 ** i) for i in range(n)]
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(loss))
    report = json.loads(run_cli("diagnose", str(path), "--format", "json", "--fail-on", "never").stdout)
    spikes = {s["code"]: s for s in report["signs"]}["SIG001"]
    assert spikes["marks"]["at"] == list(range(4, n + 1, 4))
    text = run_cli("diagnose", str(path), "--fail-on", "never").stdout
    assert f"at {n // 4} steps: 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, ..., {n};" in " ".join(text.split())


def test_a_short_log_lists_the_signs_it_is_too_short_for(tmp_path: Path) -> None:
    """The loss rules need 10 or 20 points: with 5 they are not judged, and the report says why
    (a flat 5-point loss is not a healthy run)."""
    path = write_jsonl(tmp_path / "log.jsonl", log_rows([2.0] * 5, [0.15] * 5))
    report = json.loads(run_cli("diagnose", str(path), "--format", "json", "--fail-on", "never").stdout)
    reasons = {u["code"]: u["reason"] for u in report["not_judged"]}
    assert reasons["SIG001"] == "needs 10 loss points, got 5"
    assert reasons["SIG006"] == "needs 20 loss points, got 5"
    assert reasons["SIG010"] == "needs 10 loss points, got 5"
    assert reasons["SIG002"] == "needs 3 eval_loss points, got 0"
    assert reasons["SIG005"] == "no distinct_2 in the telemetry"
    assert report["signs"] == []
    text = run_cli("diagnose", str(path), "--fail-on", "never").stdout
    assert "    SIG006: needs 20 loss points, got 5\n" in text and "    SIG001, SIG010: needs 10 loss points, got 5\n" in text
    long_flat = write_jsonl(tmp_path / "flat.jsonl", log_rows([2.0] * 20, [0.15] * 20))
    assert "SIG006" in signs(str(long_flat))  # at 20 points the same loss is judged, and flat


def test_cycles_dir_reads_one_folder_per_cycle(tmp_path: Path) -> None:
    """Issue 16: both layouts, flat cycle_N.jsonl files and cycle_N/<log> folders (beside samples)."""
    rates = [0.42, 0.48, 0.53, 0.57, 0.60, 0.62, 0.58, 0.55]
    flat = raft_history(tmp_path / "flat", rates)
    nested = tmp_path / "nested"
    for log in sorted(flat.iterdir()):
        folder = nested / log.stem
        folder.mkdir(parents=True)
        (folder / "log.jsonl").write_text(log.read_text())
        write_jsonl(folder / "samples.jsonl", [{"text": "an answer"}])
    reports = [json.loads(run_cli("diagnose", "--cycles-dir", str(d), "--format", "json",
                                  "--fail-on", "never").stdout) for d in (flat, nested)]
    assert reports[1]["cycles"] == [f"cycle_{i}" for i in range(1, 9)]
    assert [s["code"] for s in reports[0]["signs"]] == [s["code"] for s in reports[1]["signs"]]
    assert "SIG004" in [s["code"] for s in reports[1]["signs"]]
    (nested / "cycle_3" / "other.csv").write_text("step,loss\n1,2\n")
    proc = run_cli("diagnose", "--cycles-dir", str(nested))
    assert proc.returncode == 2 and "cycle_3: a cycle folder needs exactly one log" in proc.stderr


def test_a_fifo_among_tensorboard_event_files_is_one_line_not_a_hang(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "events.out.tfevents.1")
    proc = run_cli("diagnose", str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "events.out.tfevents.1: is a FIFO (named pipe), not a regular file" in proc.stderr


TRL_FIXTURES = Path(__file__).parent / "fixtures" / "trl"  # written by real TRL runs: make_fixtures.py there
DPO_SIGNS, GRPO_SIGNS = {"SIG014", "SIG015"}, {"SIG016", "SIG017", "SIG018", "SIG019"}


def trl_rows(name: str) -> list[dict[str, Any]]:
    state = json.loads((TRL_FIXTURES / name / "trainer_state.json").read_text())
    return [r for r in state["log_history"] if "loss" in r]


def diagnosis(path: Path) -> dict[str, Any]:
    proc = run_cli("diagnose", str(path), "--format", "json", "--fail-on", "never")
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_a_trl_grpo_log_is_judged_by_the_rl_signs() -> None:
    rows = trl_rows("grpo")
    data = diagnosis(TRL_FIXTURES / "grpo" / "trainer_state.json")
    codes, unjudged = {s["code"] for s in data["signs"]}, {u["code"] for u in data["not_judged"]}
    assert {"reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "completions_clipped_ratio"} <= set(
        data["points"])
    assert data["points"]["frac_reward_zero_std"] == len(rows)
    assert ("SIG019" in codes) == (mean([r["completions/clipped_ratio"] for r in rows]) > 0.5)
    assert ("SIG016" in codes) == (mean([r["frac_reward_zero_std"] for r in rows]) > 0.5)
    assert ("SIG018" in codes) == (max(r["kl"] for r in rows) > 1)
    assert not (DPO_SIGNS & (codes | unjudged))  # DPO's signs do not apply to a GRPO log: not even "not judged"


def test_a_trl_dpo_log_is_judged_by_the_preference_signs() -> None:
    rows = trl_rows("dpo")
    data = diagnosis(TRL_FIXTURES / "dpo" / "trainer_state.json")
    codes, unjudged = {s["code"] for s in data["signs"]}, {u["code"] for u in data["not_judged"]}
    assert {"rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies"} <= set(data["points"])
    half = rows[len(rows) - round(len(rows) * 0.5):]
    flat = (mean([r["rewards/accuracies"] for r in half]) < 0.55
            and abs(mean([r["rewards/margins"] for r in half])) < 0.05)
    assert ("SIG014" in codes) == flat and "SIG014" not in unjudged  # 10 steps: judged
    falls = mean([r["rewards/chosen"] for r in half]) < -0.5 and mean([r["rewards/margins"] for r in half]) > 0
    assert ("SIG015" in codes) == falls
    assert not (GRPO_SIGNS & (codes | unjudged))


def test_an_sft_log_is_not_judged_on_rl_signs(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(falling(), HEALTHY_GRAD))
    data = diagnosis(path)
    assert not ((DPO_SIGNS | GRPO_SIGNS) & {u["code"] for u in data["not_judged"]})


def test_an_sft_log_with_trls_entropy_is_not_judged_for_entropy_collapse(tmp_path: Path) -> None:
    # TRL's SFTTrainer logs the batch's mean token entropy beside the loss; it falls as SFT fits the data,
    # which is no collapse of a policy's exploration (SIG017 is an RL sign).
    rows = log_rows(falling(), HEALTHY_GRAD)
    for i, row in enumerate(rows):
        row["entropy"], row["mean_token_accuracy"] = 2.0 * (1 - i / len(rows)) + 0.1, 0.3 + 0.5 * i / len(rows)
    data = diagnosis(write_jsonl(tmp_path / "log.jsonl", rows))
    assert data["points"]["entropy"] == len(rows)
    assert not ({"SIG017"} & ({s["code"] for s in data["signs"]} | {u["code"] for u in data["not_judged"]}))


def test_a_nan_tail_is_said_in_words(tmp_path: Path) -> None:
    """A log whose last tenth is NaN leaves the plateau rule (SIG006, first tenth against last) no finite
    points to compare: listed as not judged, the reason in words, not the formula's internal error."""
    loss = falling(n=40)[:36] + [math.nan] * 4
    path = write_jsonl(tmp_path / "log.jsonl", log_rows(loss, [0.15] * 40))
    report = json.loads(run_cli("diagnose", str(path), "--format", "json", "--fail-on", "never").stdout)
    reasons = {u["code"]: u["reason"] for u in report["not_judged"]}
    assert "SIG006" in reasons, reasons
    assert "finite loss values" in reasons["SIG006"] and "NaN" in reasons["SIG006"]
    assert not any("empty series" in r or "formula" in r for r in reasons.values()), reasons


SPIKE_STEPS = [7, 14, 21, 28, 35, 42, 49, 56]


def spiky_rows(*, steps: bool = True) -> list[dict[str, Any]]:
    """Steps 1-60 (or no step key), the loss spiking at every seventh."""
    rows = log_rows([5.0 if (i + 1) % 7 == 0 else v for i, v in enumerate(falling())], HEALTHY_GRAD)
    return rows if steps else [{k: v for k, v in r.items() if k != "step"} for r in rows]


def spike_sign(path: Path) -> dict[str, Any]:
    report = diagnosis(path)
    return dict(next(s for s in report["signs"] if s["code"] == "SIG001"))


@pytest.mark.parametrize(("gap", "written"), [(None, '"loss": null'), (math.nan, '"loss": NaN')])
def test_spikes_are_reported_at_their_steps_after_a_null_or_nan_row(tmp_path: Path, gap: Any, written: str) -> None:
    """A row whose loss is null (an eval-only row) or NaN before the spikes moves no position: the
    evidence and the marks name the steps the log states, as they do without that row."""
    rows = spiky_rows()
    rows[2]["loss"] = gap
    path = write_jsonl(tmp_path / "log.jsonl", rows)
    assert written in path.read_text().splitlines()[2]
    for log in (write_jsonl(tmp_path / "clean.jsonl", spiky_rows()), path):
        sign = spike_sign(log)
        assert "at steps 7, 14, 21, 28, 35, 42, 49, 56;" in sign["evidence"], sign["evidence"]
        assert sign["marks"] == {"series": "loss", "at": SPIKE_STEPS, "position": "step"}
    report = diagnosis(path)
    assert report["position"] == "step"
    assert report["points"]["loss"] == (STEPS - 1 if gap is None else STEPS)
    assert ("SIG009" in [s["code"] for s in report["signs"]]) == (gap is not None)  # a NaN loss is still a point
    text = run_cli("diagnose", str(path), "--fail-on", "never").stdout
    assert "before it at steps 7, 14, 21, 28, 35, 42, 49, 56;" in text


def test_a_log_without_steps_reports_log_entries(tmp_path: Path) -> None:
    """No step in the rows: the spikes are the rows' places in the file (1-based), said as log entries,
    and a null row before them is still counted as an entry."""
    path = write_jsonl(tmp_path / "log.jsonl", spiky_rows(steps=False))
    (tmp_path / "gap.jsonl").write_text("\n" + path.read_text())  # a blank line is no entry
    rows = spiky_rows(steps=False)
    rows[2]["loss"] = None
    gapped = write_jsonl(tmp_path / "null.jsonl", rows)
    for log in (path, tmp_path / "gap.jsonl", gapped):
        sign = spike_sign(log)
        assert "at log entries 7, 14, 21, 28, 35, 42, 49, 56;" in sign["evidence"], sign["evidence"]
        assert sign["marks"] == {"series": "loss", "at": SPIKE_STEPS, "position": "log entry"}


def test_steps_that_are_not_positions_are_reported_as_steps(tmp_path: Path) -> None:
    """Logged every 10 steps, in all three file readers: the spike is at step 310, not at point 31."""
    loss = [*falling()[:30], 5.0, *falling()[31:]]
    rows = [{"step": 10 * (i + 1), "loss": v} for i, v in enumerate(loss)]
    rows.insert(5, {"step": 60, "eval_loss": 1.9})  # an evaluation row: its loss is missing, not a point
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("step,loss,eval_loss\n" + "".join(f"{r['step']},{r.get('loss', '')},{r.get('eval_loss', '')}\n"
                                                          for r in rows))
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"global_step": 600, "log_history": [{**r, "loss": None} if "eval_loss" in r else r
                                                                     for r in rows]}))
    for path in (write_jsonl(tmp_path / "log.jsonl", rows), csv_path, state):
        sign = spike_sign(path)
        assert "at step 310;" in sign["evidence"], (path, sign["evidence"])
        assert sign["marks"]["at"] == [310]


def test_tensorboard_spikes_are_at_the_event_steps(tmp_path: Path) -> None:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path / "tb"))
    for i, loss in enumerate([*falling()[:30], 5.0, *falling()[31:]]):
        writer.add_event(Event(step=5 * (i + 1), wall_time=1.0e9 + i,
                               summary=Summary(value=[Summary.Value(tag="train/loss", simple_value=loss)])))
    writer.close()
    assert spike_sign(tmp_path / "tb")["marks"] == {"series": "loss", "at": [155], "position": "step"}


def test_cycle_history_marks_name_the_cycle_and_its_step(tmp_path: Path) -> None:
    """Each cycle counts its steps from 1 again: a spike is named by its cycle and the step its own log
    states (the history point stays for the plot's x axis)."""
    root = raft_history(tmp_path / "raft", [0.42, 0.48, 0.53])
    rows = [json.loads(line) for line in (root / "cycle_2.jsonl").read_text().splitlines()]
    rows[10]["loss"] = 5.0  # step 11 of cycle 2
    write_jsonl(root / "cycle_2.jsonl", rows)
    proc = run_cli("diagnose", "--cycles-dir", str(root), "--format", "json", "--fail-on", "never")
    sign = next(s for s in json.loads(proc.stdout)["signs"] if s["code"] == "SIG001")
    assert sign["marks"] == {"series": "loss", "at": [27], "position": "cycle-history point",
                             "in_cycles": [{"cycle": "cycle_2.jsonl", "position": "step", "at": 11}]}
    assert "at cycle_2.jsonl step 11;" in sign["evidence"]
    text = run_cli("diagnose", "--cycles-dir", str(root), "--fail-on", "never").stdout
    assert "at cycle_2.jsonl step 11;" in text and "cycle-history point" not in text


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("log.jsonl", '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": "abc"}\n', "log.jsonl:2: key 'loss': 'abc'"),
        ("log.jsonl", '{"step": 1, "train/loss": [2.0]}\n', "log.jsonl:1: key 'train/loss': [2.0]"),
        ("log.jsonl", '{"step": 1, "loss": 2.0, "kl": 0.1}\n{"step": 2, "loss": 2.0, "kl": "high"}\n',
         "log.jsonl:2: key 'kl': 'high'"),
        ("log.csv", "step,loss\n1,2.0\n2,abc\n", "log.csv:3: key 'loss': 'abc'"),
        ("trainer_state.json", json.dumps({"log_history": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": "abc"}]}),
         "trainer_state.json: log_history[1]: key 'loss': 'abc'"),
        ("log.jsonl", '{"step": "one", "loss": 2.0}\n', "log.jsonl:1: key 'step': 'one' is not a step number"),
        # text in a key before the row that shows it holds numbers: the first bad row is named
        ("log.jsonl", '{"step": 1, "loss": 2.0, "kl": "high"}\n{"step": 2, "loss": 2.0, "kl": 0.1}\n',
         "log.jsonl:1: key 'kl': 'high'"),
    ],
)
def test_text_where_a_number_belongs_is_one_line_exit_2(tmp_path: Path, name: str, text: str, needle: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    proc = run_cli("diagnose", str(path))
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr and "(hint: " in proc.stderr, proc.stderr
    assert str(tmp_path) in proc.stderr and proc.stdout == ""


def test_a_text_column_beside_the_metrics_is_not_telemetry(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss,grad_norm,phase\n" + "".join(
        f"{i + 1},{v},{g},{'warmup' if i < 5 else 'main'}\n" for i, (v, g) in enumerate(zip(falling(), HEALTHY_GRAD,
                                                                                          strict=True))))
    assert signs(str(path)) == []


@pytest.mark.parametrize(
    "rows",
    [
        [{"step": i, "loss": None, "eval_loss": None} for i in range(1, 30)],
        [{"step": i, "epoch": i / 10, "learning_rate": 2e-4} for i in range(1, 30)],
    ],
)
def test_a_log_with_no_number_a_sign_reads_is_an_error(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    """Not an empty header and "no warning signs": every row lacks what the signs read."""
    path = write_jsonl(tmp_path / "log.jsonl", rows)
    proc = run_cli("diagnose", str(path))
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and f"{path}: no row has a number for loss" in proc.stderr, proc.stderr


def test_max_grad_norm_is_a_threshold_or_0_for_no_clipping(tmp_path: Path) -> None:
    """-1, nan or inf is no threshold (a one-line error); 0 is a run that clips nothing, so the clipping sign is
    not judged, not fired because every norm is 'at' 0."""
    log = tmp_path / "gn.jsonl"
    log.write_text("".join(json.dumps({"step": i + 1, "loss": 2 - 0.01 * i, "grad_norm": 0.3}) + "\n" for i in range(30)))
    for bad in ("-1", "nan", "inf"):
        proc = run_cli("diagnose", str(log), "--max-grad-norm", bad)
        assert proc.returncode == 2 and "--max-grad-norm" in proc.stderr and len(proc.stderr.splitlines()) == 1
    clipped = json.loads(run_cli("diagnose", str(log), "--max-grad-norm", "0.3", "--format", "json").stdout)
    assert "SIG003" in [s["code"] for s in clipped["signs"]]
    off = json.loads(run_cli("diagnose", str(log), "--max-grad-norm", "0", "--format", "json").stdout)
    assert "SIG003" not in [s["code"] for s in off["signs"]]
    assert "SIG003" in json.dumps(off)  # listed as not judged


@pytest.mark.parametrize(("steps", "message"), [
    ([*range(1, 20), *range(1, 20)], "back.jsonl:20: step 1 comes after step 19 (line 19): the steps go back"),
    (list(range(-3, 20)), "back.jsonl:1: key 'step': -3 is not a step number"),
    ([s / 2 for s in range(20)], "back.jsonl:2: key 'step': 0.5 is not a step number"),
])
def test_steps_that_go_back_or_are_no_step_are_named(tmp_path: Path, steps: list[float], message: str) -> None:
    """Two runs appended into one log were read as one curve (a 'spike' where the second starts); a negative or
    half step is no optimizer step."""
    log = tmp_path / "back.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": 2.0}) + "\n" for s in steps))
    proc = run_cli("diagnose", str(log))
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


ROWS = '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": "abc"}\n{"step": 3, "loss": 1.9}\n'


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (ROWS.encode() + b'{"step": 4, "loss": 1.8, "note": "\x00"}\n', "binary file, not a training log"),
        (ROWS.encode() + b'{"step": 4, "loss": 1.8, "note": "\xff"}\n', f"not UTF-8 text (byte {len(ROWS) + 34})"),
        # the byte is counted in the text, after the byte-order mark
        (b"\xef\xbb\xbf" + ROWS.encode() + b'{"note": "\xff"}\n', f"not UTF-8 text (byte {len(ROWS) + 10})"),
        (ROWS.encode() + b"{not json\n", "log.jsonl:4: not a JSON object per line"),
        (ROWS.encode(), "log.jsonl:2: key 'loss': 'abc'"),
    ],
)
def test_a_fault_of_the_whole_log_is_named_wherever_it_is(tmp_path: Path, data: bytes, needle: str) -> None:
    """The log is read a line at a time, and the error is still the one the file's first fault makes: bytes
    that are no text anywhere before a line that is no JSON, and that before a value that is no number."""
    from advisor.telemetry import LogError, read_log

    path = tmp_path / "log.jsonl"
    path.write_bytes(data)
    with pytest.raises(LogError, match=re.escape(needle)):
        read_log(path)


def test_a_csv_log_read_a_line_at_a_time_names_its_rows_lines(tmp_path: Path) -> None:
    """A quoted field across two lines is one row: a row after it is named by its line in the file."""
    from advisor.telemetry import LogError, read_log

    path = tmp_path / "log.csv"
    path.write_text('step,loss,note\n1,2.0,"two\nlines"\n2,1.9,\n3,abc,\n')
    with pytest.raises(LogError, match="log.csv:5: key 'loss': 'abc'"):
        read_log(path)


def test_a_cycles_dir_that_is_no_history_is_one_line_with_the_layout(tmp_path: Path) -> None:
    """A file, an empty directory or a single cycle: one line each, exit 2, with the layout --cycles-dir reads."""
    one = tmp_path / "one"
    one.mkdir()
    (one / "cycle_1.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (tmp_path / "empty").mkdir()
    for where, said in ((one / "cycle_1.jsonl", "--cycles-dir needs a directory of per-cycle logs"),
                        (tmp_path / "empty", "found 0 cycle log(s); a cycle history needs two or more"),
                        (one, "found 1 cycle log(s)")):
        proc = run_cli("diagnose", "--cycles-dir", str(where))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert said in proc.stderr and "(hint: " in proc.stderr and "cycle_1/, cycle_2/" in proc.stderr, proc.stderr
    proc = run_cli("diagnose")
    assert proc.returncode == 2 and "(hint: advisor diagnose trainer_state.json" in proc.stderr
