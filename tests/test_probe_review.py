"""advisor probe: a user's reward function failing is their input's error, an online trainer's completions stay
within the probe's sequence length, and the report records the variant and the method's own settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli
from tests.test_probe import plan_for, tiny, validate_report  # noqa: F401  (tiny: the module's fixture)


def boom(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    raise ValueError("no answer key")


def one_value(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    return [1.0]


@pytest.mark.slow
def test_a_failing_user_reward_is_exit_2_in_one_line(tmp_path: Path, tiny: Path) -> None:  # noqa: F811
    (tmp_path / "bad_rewards.py").write_text("def boom(prompts, completions, **kw):\n"
                                             "    raise ValueError('no answer key')\n")
    proc = run_cli("probe", "--model", str(tiny), "--method", "grpo", "--peft", "lora", "--random-init",
                   "--seq-len", "32", "--steps", "2", "--micro-batch", "2", "--accumulation", "1",
                   "--set", "num_generations=2", "--set", "max_completion_length=4", "--reward",
                   str(tmp_path / "bad_rewards.py") + ":boom", "--no-detect", "--no-live",
                   "--out-dir", str(tmp_path / "out"))
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("advisor: warning:")]
    assert proc.returncode == 2, proc.stderr
    assert lines == [lines[0]] and "raised ValueError: no answer key" in lines[0] and "internal error" not in lines[0]
    assert "Traceback" not in proc.stderr


def test_a_user_reward_of_the_wrong_shape_is_named(tmp_path: Path) -> None:
    from advisor.probe.plan import ProbeInputError
    from advisor.probe.result import ProbeResult
    from advisor.probe.trl_run import _Recorder

    state = {"step": 0}
    for fn, needle in ((boom, "--reward mine:boom: raised ValueError"), (one_value, "returned [1.0] for 2 completions")):
        wrapped = _Recorder([fn], ProbeResult(), state, "mine:" + fn.__name__).wrapped()[0]
        with pytest.raises(ProbeInputError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            wrapped(prompts=["p", "p"], completions=["a", "b"])
    builtin = _Recorder([one_value], ProbeResult(), state).wrapped()[0]  # not the user's: TRL's own checks judge it
    assert builtin(prompts=["p", "p"], completions=["a", "b"]) == [1.0]


@pytest.mark.slow
def test_completions_are_capped_at_the_probes_sequence_length(book: Rulebook, tiny: Path, tmp_path: Path) -> None:  # noqa: F811
    from trl import GRPOConfig

    from advisor.probe.model import precision_for
    from advisor.probe.trl_run import _config, trl_spec

    plan = plan_for(book, tiny, method="grpo", peft="lora", seq_len=24, micro_batch=2, pins={"num_generations": 2})
    spec = trl_spec(plan)
    assert spec is not None
    notes: list[str] = []
    args, _, _ = _config(plan, spec, GRPOConfig, "online", "cpu", precision_for(plan, "cpu"), "/tmp/unused", notes)
    assert args.max_completion_length == 24  # TRL's default, 512, would sample 20x the reported sequence
    assert any("max_completion_length 24: the probe's sequence length (--seq-len)" in n
               and "GRPOConfig's default is 512" in n for n in notes)
    # a sequence longer than TRL's default 512 (a copy of the tiny model with a longer context): the job's own
    wide = tmp_path / "config.json"
    wide.write_text(json.dumps({**json.loads(tiny.read_text()), "max_position_embeddings": 2048}))
    longer = plan_for(book, wide, method="grpo", peft="lora", seq_len=1024, micro_batch=2, pins={"num_generations": 2})
    notes = []
    args, _, _ = _config(longer, spec, GRPOConfig, "online", "cpu", precision_for(longer, "cpu"), "/tmp/unused", notes)
    assert longer.seq_len == 1024 and args.max_completion_length == 1024  # what the memory model sized, not 512
    capped = plan_for(book, tiny, method="grpo", peft="lora", seq_len=24, micro_batch=2,
                      pins={"num_generations": 2, "max_completion_length": 100})
    notes = []
    args, _, _ = _config(capped, spec, GRPOConfig, "online", "cpu", precision_for(capped, "cpu"), "/tmp/unused", notes)
    assert args.max_completion_length == 24 and any("max_completion_length 100 (" in n and "capped at 24" in n
                                                     for n in notes)
    shorter = plan_for(book, tiny, method="grpo", peft="lora", seq_len=24, micro_batch=2,
                       pins={"num_generations": 2, "max_completion_length": 8})
    notes = []
    args, _, _ = _config(shorter, spec, GRPOConfig, "online", "cpu", precision_for(shorter, "cpu"), "/tmp/unused", notes)
    assert args.max_completion_length == 8 and not any("capped" in n for n in notes)


def test_the_report_records_the_variant_and_the_methods_settings(book: Rulebook, tiny: Path) -> None:  # noqa: F811
    from advisor.probe.report import headline, make_report, plan_dict
    from advisor.probe.result import ProbeResult

    plan = plan_for(book, tiny, method="grpo", peft="lora", pins={"loss_type": "dr_grpo", "num_generations": 4})
    out = plan_dict(plan)
    assert out["variant"] == "dr_grpo"
    assert out["settings"]["loss_type"]["value"] == "dr_grpo" and out["settings"]["loss_type"]["source"] == "pin"
    assert out["settings"]["num_generations"]["value"] == 4
    assert "max_seq_length" not in out["settings"]  # it is seq_len, at the value the probe ran
    report = make_report(book, plan, ProbeResult())
    validate_report(report.as_dict())
    assert headline(report)[0].split(": ", 1)[1].startswith("grpo (dr_grpo) with lora")
    sft = plan_for(book, tiny)
    assert headline(make_report(book, sft, ProbeResult()))[0].split(": ", 1)[1].startswith("sft with qlora")


def test_a_config_for_several_gpus_says_the_probe_runs_on_one(book: Rulebook, tiny: Path, tmp_path: Path) -> None:  # noqa: F811
    """The file's `# advisor: job gpus=N`, read as validate reads it: the full run's step count counts the N
    GPUs (each training micro-batch x accumulation), and one line says the probe trains on one."""
    from advisor.errors import AdvisorError
    from advisor.probe import build_plan
    from advisor.probe.report import headline, make_report
    from advisor.probe.result import ProbeResult

    body = (f"base_model: {tiny}\nadapter: lora\nlora_r: 4\nlora_alpha: 8\nlearning_rate: 1.0e-3\nsequence_len: 64\n"
            "micro_batch_size: 4\ngradient_accumulation_steps: 2\nnum_epochs: 1\n")
    config = tmp_path / "axolotl.yml"

    def plan(comment: str) -> Any:
        config.write_text(comment + body)
        return build_plan(book, config=config, random_init=True, detect_gpu=False, dataset_size=3200, steps=2)

    four = plan("# advisor: job gpus=4\n")
    assert four.full_run_steps == 3200 // (4 * 2 * 4)
    note = ("the probe runs on one GPU: the full run's 4 GPUs (the '# advisor: job' comment's gpus=4 (line 1)) "
            "count in its step count only, each training the probe's micro-batch x accumulation")
    assert four.single_gpu_note == note and note in four.notes
    assert note in headline(make_report(book, four, ProbeResult()))  # the terminal's and the summary's lines
    one = plan("# advisor: job gpus=1\n")
    assert one.full_run_steps == 3200 // (4 * 2) and one.single_gpu_note is None
    with pytest.raises(AdvisorError, match="gpus='0' is not a positive whole number"):
        plan("# advisor: job gpus=0\n")


@pytest.mark.parametrize(("line", "message"), [
    ("warmup_ratio: 1.5", ":3: key 'warmup_ratio': 1.5 is above the largest meaningful value 1"),
    ("lora_r: 0", ":3: key 'lora_r': 0 is below the smallest meaningful value 1"),
])
def test_a_config_value_validate_leaves_unjudged_stops_the_probe(line: str, message: str, tmp_path: Path) -> None:
    # validate judges the rest of the file (VCF010); a probe would train without the value, so it refuses
    config = tmp_path / "c.yaml"
    config.write_text(f"model_name_or_path: meta-llama/Llama-3.2-1B\nuse_peft: true\n{line}\n")
    proc = run_cli("probe", str(config), "--method", "sft", "--no-detect")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"advisor: error: {config}{message} (hint:") and proc.stderr.count("\n") == 1
