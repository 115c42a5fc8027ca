"""advisor probe: real short training runs on CPU (tiny Llama built from a config, bitsandbytes 4-bit,
peft LoRA), their verdicts, the OOM search, and the errors a user can cause."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from advisor.paths import schemas_dir
from advisor.provenance import Source, Sourced
from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

TINY = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 2048,
    "max_position_embeddings": 512, "tie_word_embeddings": False,
}
FAST = ["--seq-len", "64", "--micro-batch", "4", "--accumulation", "1", "--no-detect", "--no-live"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "config.json"
    path.write_text(json.dumps(TINY))
    return path


def plan_for(book: Rulebook, tiny: Path, **kw: Any) -> Any:
    from advisor.probe import build_plan

    # No warmup: these probes judge a learning rate, so they train at it from the first step (the full
    # run's recommended warmup, 150 of 5000 steps, would keep 24 steps far below it).
    args: dict[str, Any] = {"model": str(tiny), "method": "sft", "peft": "qlora", "random_init": True, "steps": 24,
                            "seq_len": 64, "micro_batch": 4, "accumulation": 1, "detect_gpu": False,
                            "pins": {"warmup_ratio": 0.0}}
    args.update(kw)
    return build_plan(book, **args)


def validate_report(data: dict[str, Any]) -> None:
    schema = json.loads((schemas_dir() / "probe-report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)


def tenth(values: list[float], last: bool) -> float:
    n = max(1, len(values) // 10)
    part = values[-n:] if last else values[:n]
    return sum(part) / len(part)


def test_qlora_probe_end_to_end_on_the_builtin_corpus(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("probe", "--model", str(tiny), "--method", "sft", "--peft", "qlora", "--random-init",
                   "--steps", "24", "--lr", "2e-3", "--set", "warmup_ratio=0", *FAST, "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "probe-report.json").read_text())
    validate_report(data)
    losses = [s["loss"] for s in data["steps"]]
    assert len(losses) == 24
    assert tenth(losses, last=True) < 0.95 * tenth(losses, last=False)  # the loss fell
    assert data["eval"]["end"]["loss"] < data["eval"]["start"]["loss"]
    assert data["eval"]["end"]["token_accuracy"] > data["eval"]["start"]["token_accuracy"]
    assert data["verdict"] == "pass" and data["summary"]["loss_fell"]
    assert 0 < data["model"]["trainable_params"] < data["model"]["total_params"]
    assert any("4-bit" in n for n in data["model"]["notes"])  # really quantized through bitsandbytes
    assert data["data"]["source"] == "built-in corpus" and "pydoc" in data["data"]["notes"][0]
    assert all(s["peak_reserved_gb"] > 0 and s["tokens_per_s"] > 0 for s in data["steps"])
    assert data["projection"]["full_run_steps"] > 0
    assert (out / "probe-curves.png").read_bytes()[:4] == b"\x89PNG"
    summary = (out / "probe-summary.md").read_text()
    assert "**Verdict: pass**" in summary and "probe-curves.png" in summary
    assert "verdict: PASS" in proc.stdout


def test_the_quantized_layers_are_bitsandbytes_4bit(book: Rulebook, tiny: Path) -> None:
    from advisor.probe.model import build, release

    built = build(plan_for(book, tiny), "cpu", cache=False)
    try:
        names = {type(m).__name__ for m in built.model.modules()}
        assert "Linear4bit" in names and any(n.startswith("Linear") and "lora" in repr(built.model).lower() for n in names)
    finally:
        release(built)


def test_lora_probe_learns_and_stops_cleanly(book: Rulebook, tiny: Path) -> None:
    from advisor.probe import StopProbe, run_probe

    plan = plan_for(book, tiny, peft="lora", learning_rate=2e-3)
    result = run_probe(plan, eval_every=8)
    assert [e.step for e in result.evals] == [0, 8, 16, 24]
    assert result.evals[-1].loss < result.evals[0].loss
    assert result.evals[-1].perplexity == pytest.approx(math.exp(result.evals[-1].loss))

    def stop_at_5(rec: Any) -> None:
        if rec.step == 5:
            raise StopProbe("enough")

    stopped = run_probe(plan.with_(seed=3), on_step=stop_at_5)
    assert stopped.status == "stopped" and len(stopped.steps) == 5

    class Pruned(Exception):
        pass

    def prune(rec: Any) -> None:
        raise Pruned

    with pytest.raises(Pruned):  # optuna.TrialPruned and friends propagate
        run_probe(plan, on_step=prune)


def test_lr_far_too_high_fails_by_the_lr_too_high_rule(book: Rulebook, tiny: Path) -> None:
    from advisor.probe import make_report, run_probe

    plan = plan_for(book, tiny, learning_rate=1e-1)
    report = make_report(book, plan, run_probe(plan))
    codes = {s.code: s for s in report.signs}
    assert report.verdict == "fail" and report.exit_code == 1
    assert "SIG010" in codes and codes["SIG010"].severity == "error"
    assert codes["SIG010"].summary.startswith("LR too high")
    assert "Reduce LR 2-5x" in codes["SIG010"].advice
    validate_report(report.as_dict())


def test_lr_far_too_low_shows_the_loss_flat_rule(book: Rulebook, tiny: Path) -> None:
    from advisor.probe import make_report, run_probe

    plan = plan_for(book, tiny, learning_rate=1e-7)
    report = make_report(book, plan, run_probe(plan))
    codes = {s.code: s for s in report.signs}
    assert "SIG006" in codes and codes["SIG006"].summary.startswith("LR too low")
    assert "Increase LR 2-5x" in codes["SIG006"].advice and codes["SIG006"].severity == "warning"
    # 1e-7 is over 100x below the rulebook's QLoRA band, no full fine-tuning LR either: validate's check says
    # so beside the sign, an error as validate's (VLR005), so the verdict fails even at the default --fail-on
    findings = {f.code: f for f in report.findings}
    assert findings["VLR005"].severity == "error" and findings["VLR005"].key == "--lr" and "VLR003" not in findings
    assert report.verdict == "fail"
    assert make_report(book, plan, report.result, fail_on="never").verdict == "pass"


def test_probe_and_diagnose_judge_with_the_same_rules(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    from advisor.probe import make_report, run_probe

    plan = plan_for(book, tiny, learning_rate=1e-1, seed=1)
    report = make_report(book, plan, run_probe(plan))
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s.step, "loss": s.loss, "grad_norm": s.grad_norm,
                                       "learning_rate": s.learning_rate}) + "\n" for s in report.result.steps))
    proc = run_cli("diagnose", str(log), "--format", "json", "--fail-on", "never")
    from_log = {s["code"] for s in json.loads(proc.stdout)["signs"]}
    from_probe = {s.code for s in report.signs} - {"SIG011"}  # the log above carries no eval loss
    assert from_log == from_probe and "SIG010" in from_log


def test_out_of_memory_halves_then_bisects_on_cpu(book: Rulebook, tmp_path: Path) -> None:
    """A memory cap the probe honours: the logits of a large vocabulary make the micro-batch the cost."""
    from advisor.probe import run_probe

    wide = tmp_path / "config.json"
    wide.write_text(json.dumps({**TINY, "vocab_size": 32000}))
    plan = plan_for(book, wide, peft="lora", micro_batch=16, accumulation=2, seq_len=256, steps=3, max_memory_gb=0.45)
    result = run_probe(plan, model_cache=False)
    oom = result.oom
    # The report names the shape the plan asked for, even if a checked micro-batch failed later in training.
    assert oom is not None and oom.failed_micro_batch == 16 and oom.seq_len == 256 and oom.at_step == 1
    assert 1 <= oom.largest_fit < 16
    assert oom.attempts[0].micro_batch == 8  # halve first
    # The last search (after the last failure in training, if any) halves then bisects down to the fit.
    failures = [i for i, a in enumerate(oom.attempts) if a.during != "check"]
    last_search = oom.attempts[failures[-1] + 1:] if failures else oom.attempts
    failed_at = oom.attempts[failures[-1]].micro_batch if failures else 16
    assert all(a.during.startswith("training, step ") and not a.fits for i, a in enumerate(oom.attempts) if i in failures)
    assert all(a.fits == (a.micro_batch <= oom.largest_fit) for a in last_search)
    assert oom.largest_fit + 1 == failed_at or any(a.micro_batch == oom.largest_fit + 1 and not a.fits
                                                   for a in last_search)
    assert all(a.peak_gb is not None and (a.peak_gb <= 0.45) == a.fits for a in oom.attempts)
    assert oom.accumulation == math.ceil(32 / oom.largest_fit) and oom.effective_batch >= 32
    assert result.micro_batch_size == oom.largest_fit and result.gradient_accumulation_steps == oom.accumulation
    assert result.status == "completed" and len(result.steps) == 3
    assert all(s.peak_reserved_gb <= 0.45 for s in result.steps)


def test_a_failure_in_training_after_a_passing_check_extends_the_first_report(book: Rulebook, tiny: Path) -> None:
    """CPU peaks wobble: a micro-batch can pass its check and still fail in training. The report keeps both."""
    from advisor.probe.loop import record_oom
    from advisor.probe.result import FitAttempt

    plan = plan_for(book, tiny, micro_batch=16, accumulation=2)
    first = record_oom(None, plan, 16, 1, "peak over the cap", 0.9, lambda mb: FitAttempt(mb, mb <= 5, 0.1 * mb))
    assert (first.failed_micro_batch, first.largest_fit, first.accumulation) == (16, 5, 7)
    again = record_oom(first, plan, 5, 2, "peak over the cap", 0.47, lambda mb: FitAttempt(mb, mb <= 3, 0.1 * mb))
    assert again is first and (again.failed_micro_batch, again.at_step, again.error) == (16, 1, "peak over the cap")
    assert [(a.micro_batch, a.fits, a.during) for a in again.attempts] == [
        (8, False, "check"), (4, True, "check"), (6, False, "check"), (5, True, "check"),
        (5, False, "training, step 2"), (2, True, "check"), (3, True, "check"), (4, False, "check")]
    assert (again.largest_fit, again.accumulation, again.effective_batch) == (3, 11, 33)
    data = again.as_dict()
    schema = json.loads((schemas_dir() / "probe-report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema["properties"]["oom"]).validate(data)
    # no searches left: the failure is recorded and nothing is said to fit (nor checked)
    last = record_oom(again, plan, 3, 1, "peak over the cap", 0.46, lambda mb: pytest.fail("no search"), search=False)
    assert (last.largest_fit, last.accumulation, last.effective_batch) == (0, None, None)
    assert last.attempts[-1] == FitAttempt(3, False, 0.46, "training, step 1")


def test_nothing_fits_is_exit_3_with_a_report(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("probe", "--model", str(tiny), "--method", "sft", "--peft", "lora", "--random-init", "--steps", "3",
                   *FAST, "--max-memory", "0.0001", "--out-dir", str(out))
    assert proc.returncode == 3, proc.stderr
    data = json.loads((out / "probe-report.json").read_text())
    validate_report(data)
    assert data["verdict"] == "could-not-run" and data["oom"]["largest_fit"] == 0
    assert [a["micro_batch"] for a in data["oom"]["attempts"]] == [2, 1]
    assert "not even a micro-batch of 1 fits" in proc.stdout


def test_a_grpo_config_probes_prompt_plus_completion_tokens(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    config = tmp_path / "grpo.yaml"
    config.write_text(f"model_name_or_path: {tiny}\nnum_generations: 4\nmax_prompt_length: 24\n"
                      "max_completion_length: 40\nper_device_train_batch_size: 4\nlearning_rate: 1e-5\n")
    plan = plan_for(book, tiny, model=None, config=config, method=None, seq_len=None)
    assert plan.method == "grpo" and plan.seq_len == 64
    assert plan.sources["max_seq_length"].describe() == "max_prompt_length + max_completion_length"
    assert plan.sources["max_seq_length"].source is Source.DERIVED
    pinned = plan_for(book, tiny, model=None, config=config, method=None, seq_len=48)
    assert pinned.seq_len == 48 and pinned.sources["max_seq_length"].source is Source.FLAG
    longer = plan_for(book, tiny, model=None, config=config, method=None, seq_len=96)
    assert longer.seq_len == 96  # --seq-len pins, as in recommend: it does not only cap


TRL_TINY = {**TINY, "hidden_size": 32, "intermediate_size": 64, "head_dim": 8}


@pytest.fixture(scope="module")
def trl_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trl-tiny") / "config.json"
    path.write_text(json.dumps(TRL_TINY))
    return path


def test_dpo_trains_its_own_loss_through_trl_and_a_far_too_high_lr_fails(book: Rulebook, trl_tiny: Path,
                                                                         tmp_path: Path) -> None:
    """LoRA DPO on the user's pairs: TRL's DPOTrainer at the config's beta and loss type (IPO here), its rewards
    in the report; an LR 100x above the rulebook's band fails by the config check however the curve looks."""
    from advisor.probe import make_report, run_probe
    from advisor.probe.report import headline, write_outputs

    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"Question {i}: what does {w} do?", "chosen": f" The {w} statement runs a block.",
             "rejected": " No idea."} for i, w in enumerate(["if", "for", "while", "with", "try"] * 4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = plan_for(book, trl_tiny, method="ipo", peft="lora", data=data, steps=4, micro_batch=2, learning_rate=0.1,
                    pins={"warmup_ratio": 0.0, "beta": 0.2})
    assert plan.variant == "ipo" and plan.settings["beta"].value == 0.2
    report = make_report(book, plan, run_probe(plan))
    res = report.result
    assert res.trainer.startswith("trl.DPOTrainer 1.") and len(res.steps) == 4 and len(res.logs) == 4
    assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(res.logs[0])
    margins = [row["rewards/margins"] for row in res.logs]
    assert margins[0] == 0 and any(m != 0 for m in margins[1:])  # the policy moved away from its reference
    summary = report.method_summary()
    assert summary is not None and summary["rewards_margins"]["last"] == pytest.approx(margins[-1])
    assert any(line.startswith("preference: chosen reward ") for line in headline(report))
    # IPO's loss, (log-ratio margin - 1 / (2 beta))^2, at the first step (the adapter starts at zero: margin 0)
    assert res.logs[0]["loss"] == pytest.approx((1 / (2 * 0.2)) ** 2, rel=1e-3)
    findings = {f.code: f for f in report.findings}
    assert "VLR005" in findings and findings["VLR005"].severity == "error" and findings["VLR005"].key == "--lr"
    assert report.verdict == "fail" and report.exit_code == 1
    written = write_outputs(report, tmp_path / "out")
    data_out = json.loads(written["json"].read_text())
    validate_report(data_out)
    assert data_out["trainer_logs"][0]["rewards/margins"] == 0 and data_out["findings"][0]["code"]
    state = json.loads(written["trainer_state"].read_text())
    assert [row["step"] for row in state["log_history"] if "loss" in row] == [1, 2, 3, 4]


def test_grpo_qlora_trains_real_rl_steps_through_trl(book: Rulebook, trl_tiny: Path, tmp_path: Path) -> None:
    """4-bit QLoRA GRPO: G=4 completions per prompt, built-in rewards that vary within a group, KL to the
    adapter-disabled base, the config's loss type; completions, rewards per step and zero-variance shares."""
    from advisor.probe import make_report, run_probe
    from advisor.probe.report import headline, verdict_lines

    plan = plan_for(book, trl_tiny, method="grpo", peft="qlora", steps=4, micro_batch=4, learning_rate=None,
                    pins={"warmup_ratio": 0.0, "num_generations": 4, "max_completion_length": 10, "beta": 0.04,
                          "loss_type": "dr_grpo", "temperature": 1.0})
    report = make_report(book, plan, run_probe(plan))
    res = report.result
    assert res.trainer.startswith("trl.GRPOTrainer 1.") and len(res.steps) == 4
    assert any("4-bit" in n for n in res.model_notes)
    for row in res.logs:
        assert {"reward", "reward_std", "frac_reward_zero_std", "kl", "entropy", "completions/mean_length",
                "completions/clipped_ratio"} <= set(row)
        assert 0 <= row["frac_reward_zero_std"] <= 1 and row["completions/max_length"] <= 10
    assert any(row["frac_reward_zero_std"] < 1 for row in res.logs)  # rewards vary within a group: a signal
    assert len(res.samples) == 4 * 4 and {s["step"] for s in res.samples} == {1, 2, 3, 4}
    assert all(isinstance(s["completion"], str) and s["reward"] is not None for s in res.samples)
    lines = headline(report)
    assert any(line.startswith("RL: reward mean ") and "zero-variance groups" in line for line in lines)
    assert any(line.startswith("completions: mean length ") and "distinct-2" in line for line in lines)
    assert any(line.startswith("loss ") and "surrogate" in line and "fell" not in line and "rose" not in line
               for line in lines)  # GRPO's loss is not a learning curve
    assert any("rewards: target_token_reward, length_reward, format_reward (built-in)" in n for n in res.data_notes)
    clipped = sum(row["completions/clipped_ratio"] for row in res.logs) / len(res.logs)
    assert ("SIG019" in {s.code for s in report.signs}) == (clipped > 0.5)  # completions at the cap
    judged = {u.code for u in report.not_judged}
    assert {"SIG017", "SIG018"}.isdisjoint(judged)  # entropy and KL: judged over 4 steps
    assert {"SIG001", "SIG006", "SIG010"}.isdisjoint(judged | {s.code for s in report.signs})  # not GRPO's loss
    assert {"SIG004", "SIG007"}.isdisjoint(judged)  # RAFT's cycle signs: nothing a GRPO log lacks
    errors = [s for s in [*report.signs, *report.findings] if s.severity == "error"]
    assert report.verdict == ("fail" if errors else "pass")
    assert verdict_lines(report)[-1].startswith(f"verdict: {report.verdict.upper()}")
    validate_report(report.as_dict())
    # TRL caps no prompt: the prediction counts the built-in prompts' longest (tokenized), not rl-prompt-tokens
    from advisor.probe.predict import predicted_memory
    from advisor.probe.trl_run import RL_PROMPTS

    longest = max(len(json.loads(line)["prompt"]) for line in RL_PROMPTS.read_text().splitlines() if line.strip())
    assert res.prompt_tokens is not None and 0 < res.prompt_tokens <= longest + 2  # a byte / char tokenizer at most
    assumed = predicted_memory(book, plan, res.micro_batch_size)
    assert report.prediction is not None and assumed is not None and report.prediction.total_gb < assumed.total_gb


def test_the_longest_prompt_is_counted_as_the_trainer_feeds_it() -> None:
    """Text as it is; a message list through the chat template with the generation prompt (transformers 5 returns
    a BatchEncoding there, whose length would be its keys); no template: None, and rl-prompt-tokens stands in."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from advisor.probe.trl_run import _longest_prompt

    words = ["a", "b", "user", "assistant", ":", "<eos>"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<eos>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>")
    assert _longest_prompt(tok, ["a b a", "a " * 20]) == 20
    assert _longest_prompt(tok, [[{"role": "user", "content": "a " * 20}]]) is None  # no chat template
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}assistant : {% endif %}")
    assert _longest_prompt(tok, [[{"role": "user", "content": "a " * 20}], [{"role": "user", "content": "b"}]]) == 24


def _tiny_grpo_trainer(tmp_path: Path, reward: Any, **config: Any) -> Any:
    """TRL's GRPOTrainer on a tiny Llama saved to disk (TRL builds the reference copy from the policy's path,
    as from a hub id) and a three-word tokenizer, four prompts, one step."""
    import torch
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import GRPOConfig, GRPOTrainer

    torch.manual_seed(0)
    saved = tmp_path / "model"
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**TRL_TINY), dtype=torch.float32).save_pretrained(saved)
    words = Tokenizer(models.WordLevel({"<eos>": 0, "a": 1, "b": 2}, unk_token="<eos>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=words, eos_token="<eos>", pad_token="<eos>")
    args = GRPOConfig(output_dir=str(tmp_path / "out"), num_generations=2, per_device_train_batch_size=2, max_steps=1,
                      report_to="none", use_cpu=True, save_strategy="no", **config)
    return GRPOTrainer(model=str(saved), reward_funcs=reward, args=args,
                       train_dataset=Dataset.from_list([{"prompt": "a b"}] * 4), processing_class=tok)


def _no_reward(completions: list[Any], **_: Any) -> list[float]:
    return [0.0] * len(completions)


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_full_grpo_has_a_reference_model_exactly_when_trl_loads_one(book: Rulebook, trl_tiny: Path, tmp_path: Path,
                                                                     beta: float) -> None:
    """TRL's GRPOTrainer builds a frozen reference copy for full fine-tuning only when beta > 0; the memory
    estimate counts one exactly then (RL001 gives Dr. GRPO and DAPO beta 0)."""
    from advisor import api
    from advisor.memory import estimate

    trainer = _tiny_grpo_trainer(tmp_path, _no_reward, beta=beta, max_completion_length=4)
    assert (trainer.ref_model is not None) == (beta > 0)

    job = api.job_facts(book, model=str(trl_tiny), method="grpo", peft="full", detect_gpu=False)
    rec = api.recommend(book=book, model=str(trl_tiny), method="grpo", peft="full", detect_gpu=False,
                        pins={"beta": beta})
    est = estimate(book, job, {name: pv.value for name, pv in rec.parameters.items()})
    assert any(i.name == "reference model (frozen copy)" for i in est.items) == (beta > 0)
    assert any("loads no reference model" in n for n in est.notes) == (beta == 0)


AXOLOTL_GRPO = ("base_model: Qwen/Qwen2.5-1.5B-Instruct\nrl: grpo\nadapter: lora\nlearning_rate: 5.0e-6\n"
                "micro_batch_size: 8\nsequence_len: 32\ntrl:\n  num_generations: 8\n  reward_funcs: [rewards.accuracy]\n")


@pytest.mark.parametrize(("loss_type", "code"), [("grpo", "VPM012"), ("dr_grpo", "VPM013")])
def test_an_axolotl_grpo_file_without_a_completion_cap_trains_as_trl_does_with_none(tmp_path: Path, loss_type: str,
                                                                                     code: str) -> None:
    """Axolotl hands GRPOConfig trl.max_completion_length as the file has it, None when left out: TRL then
    generates transformers' default 20 new tokens, and Dr. GRPO's loss divides by None. validate says so
    (VPM012 / VPM013), and the cap --fix writes is the length TRL then generates."""
    path = tmp_path / "grpo.yaml"
    path.write_text(AXOLOTL_GRPO + f"  loss_type: {loss_type}\n")
    out = run_cli("validate", str(path), "--gpu", "h100", "--format", "json")
    findings = [f for f in json.loads(out.stdout)["files"][0]["findings"] if f["code"] in ("VPM012", "VPM013")]
    assert [f["code"] for f in findings] == [code]
    cap = findings[0]["fix"]["value"]
    assert cap == 32  # sequence_len

    lengths: list[int] = []

    def reward(completions: list[Any], completion_ids: list[list[int]], **_: Any) -> list[float]:
        lengths.extend(len(ids) for ids in completion_ids)
        return [0.0] * len(completions)

    # eos suppressed: each completion is as long as the generation cap lets it be
    never_stop = {"suppress_tokens": [0]}
    uncapped = _tiny_grpo_trainer(tmp_path / "none", reward, loss_type=loss_type, max_completion_length=None,
                                  generation_kwargs=never_stop)
    if loss_type == "dr_grpo":
        with pytest.raises(TypeError):
            uncapped.train()
    else:
        uncapped.train()
        assert lengths and set(lengths) == {20}
    lengths.clear()
    _tiny_grpo_trainer(tmp_path / "fixed", reward, loss_type=loss_type, max_completion_length=cap,
                       generation_kwargs=never_stop).train()
    assert lengths and set(lengths) == {cap}


def test_a_reward_spec_is_checked_before_anything_loads(book: Rulebook, trl_tiny: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from advisor.probe.plan import ProbeInputError

    (tmp_path / "my_rewards.py").write_text("def short(prompts, completions, **kw):\n"
                                            "    return [-float(len(c)) for c in completions]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plan = plan_for(book, trl_tiny, method="grpo", reward="my_rewards:short")
    assert plan.reward == "my_rewards:short"
    for spec, needle in (("my_rewards:nope", "has no function 'nope'"), ("no_such_module:f", "cannot import"),
                         ("justaname", "not module:function")):
        with pytest.raises(ProbeInputError, match=needle):
            plan_for(book, trl_tiny, method="grpo", reward=spec)
    with pytest.raises(ProbeInputError, match="samples no completions"):
        plan_for(book, trl_tiny, method="dpo", reward="my_rewards:short")
    proc = run_cli("probe", "--model", str(trl_tiny), "--method", "grpo", "--random-init", "--reward", "nope:f",
                   "--no-detect")
    assert proc.returncode == 2 and "--reward nope:f: cannot import 'nope'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_ppo_is_probed_as_its_policy_step_and_says_why(book: Rulebook, tiny: Path) -> None:
    from advisor.probe import make_report, run_probe

    plan = plan_for(book, tiny, method="ppo", peft="lora", steps=2, micro_batch=2)
    report = make_report(book, plan, run_probe(plan))
    assert "has no PPOTrainer (neither trl nor trl.experimental)" in report.result.trainer
    assert any("value and reward models are neither trained nor measured" in n for n in report.notes)
    assert report.verdict == "not-judged"


def test_without_a_gpu_the_probe_keeps_the_runs_effective_batch(book: Rulebook, tiny: Path) -> None:
    from advisor.probe import build_plan

    plan = build_plan(book, model=str(tiny), method="sft", peft="lora", random_init=True, detect_gpu=False)
    effective = plan.params["effective_batch_size"]
    assert plan.micro_batch_size == 1 and plan.gradient_accumulation_steps == effective > 1
    # no GPU memory known: the rules' micro-batch 1 (BAT013), and their accumulation carries the effective batch
    assert plan.sources["micro_batch_size"].describe() == "rule batch-micro-no-gpu"
    how = plan.sources["gradient_accumulation_steps"].describe()
    assert how == "rule batch-gradient-accumulation"
    from advisor.probe import make_report
    from advisor.probe.report import headline
    from advisor.probe.result import ProbeResult

    report = make_report(book, plan, ProbeResult(micro_batch_size=1, gradient_accumulation_steps=effective,
                                                 device="cpu"))
    assert f"batch: micro-batch 1 (rule batch-micro-no-gpu), accumulation {effective} ({how}): effective batch {effective}" \
        in headline(report)


def test_loss_and_clipping_words_match_the_numbers() -> None:
    from advisor.probe.report import _loss_change, _share

    assert _loss_change(7.631, 7.629) == "7.631 -> 7.629 (fell 0.026%)"
    assert _loss_change(7.63, 7.63) == "7.63 -> 7.63 (unchanged)"
    assert _loss_change(2.0, 3.0) == "2 -> 3 (rose 50%)"
    assert _share(1.0, 1) == "the one step" and _share(1.0, 4) == "all 4 steps"
    assert _share(0.0, 4) == "none of the 4 steps" and _share(0.25, 4) == "1 of 4 steps (25%)"


def test_jsonl_records_mask_prompts_and_render_chats(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    from advisor.probe.data import IGNORE, load_data
    from advisor.probe.tokenizer import standin_codec

    data = tmp_path / "mixed.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Say hi.", "completion": " Hi there."},
        {"messages": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}]},
        {"text": "Plain text works too."},
    ]) + "\n")
    plan = plan_for(book, tiny, data=data, packing=False)
    codec = standin_codec(2048)
    loaded = load_data(plan, codec)
    first = loaded.train[0]
    prompt_len = len(codec.encode("Say hi."))
    assert first.labels[:prompt_len] == [IGNORE] * prompt_len and first.labels[prompt_len] != IGNORE
    assert all(len(s.input_ids) == 64 for s in loaded.train)
    assert any("role: content" in n for n in loaded.notes)  # the stand-in tokenizer has no chat template


def test_a_config_file_is_probed_with_its_own_values(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    config = tmp_path / "axolotl.yml"
    config.write_text(f"base_model: {tiny}\nadapter: qlora\nload_in_4bit: true\nlora_r: 4\nlora_alpha: 8\n"
                      "lora_dropout: 0.0\nlora_target_modules: [q_proj, v_proj]\nlearning_rate: 3.0e-4\n"
                      "micro_batch_size: 2\ngradient_accumulation_steps: 3\nsequence_len: 128\nmax_steps: 400\n"
                      "lr_scheduler: linear\n")
    from advisor.probe import build_plan

    plan = build_plan(book, config=config, random_init=True, detect_gpu=False)
    assert (plan.peft, plan.lora_rank, plan.lora_alpha, plan.learning_rate) == ("qlora", 4, 8, 3e-4)
    assert (plan.micro_batch_size, plan.gradient_accumulation_steps, plan.seq_len) == (2, 3, 128)
    assert plan.lora_target_modules == ("q_proj", "v_proj") and plan.lr_scheduler_type == "linear"
    assert plan.full_run_steps == 400 and plan.sources["lora_rank"].describe() == "config lora_r (line 4)"
    assert (plan.sources["lora_rank"].source, plan.sources["lora_rank"].line) == (Source.CONFIG, 4)
    assert plan.with_(learning_rate=1e-3).learning_rate == 1e-3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "llama-3.2-1b", "--method", "sft", "--peft", "qlorax"], "--peft: unknown value 'qlorax'"),
        (["--model", "llama-3.2-1b", "--method", "sft", "--lr", "-1"],
         "--lr: -1 is out of range: more than 0, less than 10 (hint: 0 < --lr < 10; e.g. --lr 0.0002"),
        (["--model", "llama-3.2-1b", "--method", "sft", "--set", "learning_rate=12"],
         "learning_rate (--set): 12 is out of range: more than 0, less than 10 (hint: 0 < --lr < 10"),
        (["--model", "llama-3.2-1b", "--method", "sft", "--data", "missing.jsonl"], "--data missing.jsonl: no such file"),
        (["--model", "no-such-model", "--method", "sft"], "unknown model 'no-such-model'"),
        (["--model", "llama-3.2-1b"], "give a CONFIG, or --model and --method"),
        (["--model", "llama-3.2-1b", "--method", "sft", "--random-init", "--micro-batch", "0"],
         "--micro-batch: 0 is out of range: at least 1 (hint: --micro-batch >= 1, as micro_batch_size"),
        (["--model", "examples/my-model", "--method", "sft"], "no model weights"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = run_cli("probe", *args, "--no-detect")
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_bad_data_record_is_exit_2(tiny: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text('{"text": "fine"}\n{"question": "no known field"}\n')
    proc = run_cli("probe", "--model", str(tiny), "--method", "sft", "--random-init", *FAST, "--data", str(data),
                   "--out-dir", str(tmp_path / "o"))
    assert proc.returncode == 2, proc.stderr
    assert f"{data}:2: no text, prompt/completion" in proc.stderr


@pytest.mark.parametrize(
    ("method", "lines", "message"),
    [
        ("sft", '{"text": "fine"}\n\n{"question": "no known field"}\n', ":3: no text, prompt/completion"),
        ("dpo", '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a"}\n',
         ":2: no rejected field (the dpo probe reads prompt / chosen / rejected)"),
        ("grpo", '{"prompt": "p"}\n{"text": "no prompt"}\n', ":2: no prompt field (the grpo probe reads prompt)"),
        ("sft", "\n", ": no records"),
    ],
)
def test_bad_data_is_refused_before_any_model_loads(book: Rulebook, tiny: Path, tmp_path: Path, method: str,
                                                    lines: str, message: str) -> None:
    """build_plan reads no weights: the records are checked for the method's trainer before the minutes of
    loading a model, not after."""
    from advisor.probe.plan import ProbeInputError

    data = tmp_path / "bad.jsonl"
    data.write_text(lines)
    with pytest.raises(ProbeInputError) as err:
        plan_for(book, tiny, method=method, data=data)
    assert f"--data {data}{message}" in err.value.message
    good = tmp_path / "good.jsonl"
    good.write_text(lines.splitlines()[0] + "\n" if lines.strip() else '{"text": "fine"}\n')
    assert plan_for(book, tiny, method=method, data=good).data.path == str(good)


def test_a_datasets_directory_for_a_trl_trainer_is_refused_up_front(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    from advisor.probe.plan import ProbeInputError

    with pytest.raises(ProbeInputError, match="the dpo probe reads a JSONL file, not a datasets directory"):
        plan_for(book, tiny, method="dpo", data=tmp_path)


def test_variant_flag_picks_the_variants_trainer_rules_and_loss(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    """--variant as recommend, validate and memory take it: the variant's rules and TRL trainer, over the config's
    loss key (with a note), refused where it contradicts the method word or a --set."""
    from advisor.probe.plan import ProbeInputError
    from advisor.probe.trl_run import trl_spec

    simpo = plan_for(book, tiny, method="dpo", peft="lora", variant="SimPO")
    spec = trl_spec(simpo)
    assert simpo.variant == "simpo" and spec is not None and (spec.trainer, spec.loss_type) == ("CPOTrainer", "simpo")
    assert simpo.settings["beta"].describe() == "rule simpo-beta"  # SimPO's beta rule, not DPO's
    dapo = plan_for(book, tiny, method="grpo", peft="lora", variant="dapo")
    assert dapo.variant == "dapo" and dapo.settings["clip_epsilon_high"].value == 0.28  # DAPO's clip-higher rule
    assert dapo.settings["beta"].value == 0  # and its KL-free beta
    config = tmp_path / "dpo.yaml"
    config.write_text(f"model_name_or_path: {tiny}\nstage: dpo\npref_loss: sigmoid\nfinetuning_type: lora\n")
    ipo = plan_for(book, tiny, model=None, method=None, config=config, variant="ipo")
    assert ipo.variant == "ipo" and "loss_type" not in ipo.settings
    from trl import DPOConfig

    from advisor.probe.trl_run import _loss_type
    ipo_spec = trl_spec(ipo)
    assert ipo_spec is not None and _loss_type(ipo, ipo_spec, DPOConfig, []) == "ipo"  # what DPOTrainer is given
    assert any("--variant ipo trains its own loss, not loss_type 'sigmoid'" in n for n in ipo.notes)
    for kw, message in [({"method": "dpo", "variant": "dapo"}, "--variant: dapo is a variant of grpo, not of dpo"),
                        ({"method": "dpo", "variant": "nope"}, "--variant: unknown variant 'nope'"),
                        ({"method": "ipo", "variant": "simpo"}, "--variant simpo: the method 'ipo' names another"),
                        ({"method": "dpo", "variant": "ipo", "pins": {"loss_type": "sigmoid"}},
                         "--variant ipo: --set loss_type=sigmoid names another loss")]:
        with pytest.raises(ProbeInputError, match=message):
            plan_for(book, tiny, peft="lora", **kw)


BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers", "peft", "bitsandbytes", "accelerate"):
            raise ImportError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Block())
from advisor.cli import main
sys.argv = ["advisor", *sys.argv[1:]]
main()
"""


def test_missing_extra_names_advisor_probe(tiny: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-c", BLOCKER, "probe", "--model", str(tiny), "--method", "sft",
                           "--random-init", *FAST, "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "llm-finetune-advisor[probe]" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_search_micro_batch_halves_then_bisects() -> None:
    from advisor.probe.loop import search_micro_batch
    from advisor.probe.result import FitAttempt

    def fits(mb: int) -> FitAttempt:
        return FitAttempt(mb, mb <= 5, None)

    best, attempts = search_micro_batch(fits, 16)
    assert best == 5 and [a.micro_batch for a in attempts] == [8, 4, 6, 5]
    assert search_micro_batch(lambda mb: FitAttempt(mb, False, None), 8) == (0, [FitAttempt(4, False, None),
                                                                                  FitAttempt(2, False, None),
                                                                                  FitAttempt(1, False, None)])


def axolotl(tmp_path: Path, tiny: Path, extra: str) -> Path:
    config = tmp_path / "axolotl.yml"
    config.write_text(f"base_model: {tiny}\nadapter: lora\nlora_r: 4\nlora_alpha: 8\nlearning_rate: 1.0e-3\n"
                      f"sequence_len: 64\nlr_scheduler: linear\n{extra}")
    return config


def test_the_probe_trains_the_first_steps_of_the_full_runs_schedule(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    """Warmup 20 of a 400-step run: a 6-step probe stays in the warmup, at the LRs the full run will use."""
    from advisor.probe import build_plan, make_report, run_probe
    from advisor.probe.report import headline

    config = axolotl(tmp_path, tiny, "micro_batch_size: 4\ngradient_accumulation_steps: 1\nmax_steps: 400\n"
                                     "warmup_steps: 20\n")
    plan = build_plan(book, config=config, random_init=True, detect_gpu=False, steps=6)
    assert (plan.schedule_total, plan.warmup_steps) == (400, 20)
    report = make_report(book, plan, run_probe(plan))
    lrs = [s.learning_rate for s in report.result.steps]
    assert lrs == pytest.approx([1e-3 * k / 20 for k in range(6)])  # the LR logged is the one each step used
    lines = headline(report)
    assert "LR schedule: the first 6 of the full run's 400 steps (linear, warmup 20; the full run's length from " \
           "config max_steps)" in lines
    assert any(line.startswith("projected full run: 400 steps") and line.endswith(
        "at micro-batch 4 x accumulation 1 (effective batch 4)") for line in lines)
    assert report.as_dict()["plan"]["schedule_steps"] == 400

    # The sweep's short experiments: the schedule over the trial's own steps, its warmup share kept.
    squeezed = plan.with_(schedule_steps=6)
    assert squeezed.warmup_steps == math.ceil(20 / 400 * 6)
    lrs = [s.learning_rate for s in run_probe(squeezed).steps]
    assert lrs[0] == 0 and max(lrs) == pytest.approx(1e-3)

    # Epochs over a data set of unknown size: the full run's length is unknown, and the report says so.
    unknown = build_plan(book, config=axolotl(tmp_path, tiny, "micro_batch_size: 4\nnum_epochs: 3\n"),
                         random_init=True, detect_gpu=False, steps=6)
    assert unknown.full_run_steps is None and unknown.schedule_total == 6
    assert "the full run's length is unknown" in unknown.schedule_words()
    assert any("LR schedule spans the probe's own 6 steps" in n for n in unknown.notes)


def test_a_micro_batch_override_keeps_the_effective_batch(book: Rulebook, tiny: Path, tmp_path: Path) -> None:
    from advisor.probe import build_plan

    config = axolotl(tmp_path, tiny, "micro_batch_size: 2\ngradient_accumulation_steps: 8\nmax_steps: 400\n")
    plan = build_plan(book, config=config, random_init=True, detect_gpu=False, micro_batch=4)
    assert (plan.micro_batch_size, plan.gradient_accumulation_steps) == (4, 4)
    assert plan.sources["gradient_accumulation_steps"].describe() == (
        "ceil(effective batch 16 (config micro_batch_size x gradient_accumulation_steps) / --micro-batch 4)")
    odd = build_plan(book, config=config, random_init=True, detect_gpu=False, micro_batch=5)
    assert odd.gradient_accumulation_steps == 4  # ceil(16 / 5): at least the run's batch
    assert build_plan(book, config=config, random_init=True, detect_gpu=False, micro_batch=4,
                      accumulation=1).gradient_accumulation_steps == 1  # both given: as given
    rec = build_plan(book, model=str(tiny), method="sft", peft="lora", random_init=True, detect_gpu=False,
                     micro_batch=4)
    effective = rec.params["effective_batch_size"]
    assert rec.gradient_accumulation_steps == math.ceil(effective / 4) > 1
    assert rec.sources["gradient_accumulation_steps"].describe().startswith(f"ceil(effective batch {effective} (rule ")


def test_a_short_probe_says_which_signs_it_cannot_judge(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("probe", "--model", str(tiny), "--method", "sft", "--peft", "lora", "--random-init",
                   "--steps", "5", *FAST, "--out-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "advisor: warning: --steps 5 is too short to judge SIG001 (needs 10 loss points, got 5)" in proc.stderr
    assert "--steps 20 or more" in proc.stderr
    data = json.loads((out / "probe-report.json").read_text())
    validate_report(data)
    reasons = {u["code"]: u["reason"] for u in data["not_judged"]}
    assert reasons["SIG006"] == "needs 20 loss points, got 5" and reasons["SIG010"] == "needs 10 loss points, got 5"
    assert "- SIG006: needs 20 loss points, got 5" in (out / "probe-summary.md").read_text()


def test_lora_rank_and_alpha_come_from_a_rule_or_the_user(book: Rulebook, tiny: Path) -> None:
    from dataclasses import replace

    from advisor.probe import build_plan
    from advisor.probe.plan import ProbeInputError

    bare = replace(book, rules={k: r for k, r in book.rules.items() if r.parameter != "lora_rank"})
    args: dict[str, Any] = {"model": str(tiny), "method": "sft", "peft": "qlora", "random_init": True,
                            "detect_gpu": False}
    with pytest.raises(ProbeInputError, match="lora_rank: nothing sets it") as err:
        build_plan(bare, **args)
    assert "--set lora_rank=N" in str(err.value.hint) and "lora_r" in str(err.value.hint)
    plan = build_plan(bare, **args, pins={"lora_rank": 4})
    assert plan.lora_rank == 4 and plan.sources["lora_rank"] == Sourced(4, Source.PIN)
    assert build_plan(bare, **{**args, "peft": "full"}).lora_rank == 0  # no adapter, nothing to set


def test_the_near_capacity_sign_reads_the_memory_models_margin(book: Rulebook, tiny: Path) -> None:
    """SIG012 and the memory fit share rules/memory.yaml's safety-margin: change it, the sign moves."""
    import copy
    from dataclasses import replace

    from advisor.probe import make_report
    from advisor.probe.result import ProbeResult, StepRecord

    plan = plan_for(book, tiny, peft="lora")
    steps = [StepRecord(step=i, loss=2.0 - 0.01 * i, grad_norm=0.15, clipped=False, learning_rate=1e-4, tokens=256,
                        tokens_per_s=1000.0, step_time_s=0.25, peak_allocated_gb=7.5, peak_reserved_gb=8.0)
             for i in range(1, 25)]
    result = ProbeResult(micro_batch_size=4, gradient_accumulation_steps=1, steps=steps, device="cpu",
                         memory_capacity_gb=10.0)
    assert "SIG012" not in {s.code for s in make_report(book, plan, result).signs}  # 8 of 10 GiB: 10% margin kept
    coefficients = copy.deepcopy(book.coefficients)
    coefficients["safety-margin"]["value"] = 0.25
    wide = make_report(replace(book, coefficients=coefficients), plan, result)
    sign = next(s for s in wide.signs if s.code == "SIG012")
    assert "above the 7.5 GiB the safety margin 0.25 leaves" in sign.evidence


def test_data_that_is_not_a_regular_file_is_one_line_not_a_hang(tmp_path: Path) -> None:
    """--data goes through safeio like every other input: a FIFO is refused at once, never read."""
    import os

    from advisor.probe.data import _rows_jsonl
    from advisor.probe.plan import ProbeInputError

    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ProbeInputError, match="not a regular file"):
        list(_rows_jsonl(fifo))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{not json\n')
    with pytest.raises(ProbeInputError, match=r"bad\.jsonl:2: not a JSON object per line"):
        list(_rows_jsonl(bad))


def test_a_probe_plans_what_recommend_would_write_adapted_to_the_gpu(book: Rulebook) -> None:
    """As recommend: with no --peft and no --seq-len, the plan is adapted to fit (QLoRA, a shorter sequence) and
    says so in its notes, the length credited to both rules; --seq-len and --peft keep the user's, and the
    micro-batch is sized at the length the probe trains, not at a length the rules would have shortened to."""
    from advisor.probe import build_plan

    base = {"random_init": True, "detect_gpu": False}
    short = build_plan(book, model="qwen2.5-0.5b", method="dpo", gpu="t4", **base)
    assert short.seq_len == 2048 and short.peft == "lora"
    assert short.sources["max_seq_length"].describe() == "rule seq-len-by-use-case → seq-len-fits-gpu"
    assert any(n.startswith("adapted to fit: max_seq_length 4096 -> 2048") for n in short.notes)
    kept = build_plan(book, model="qwen2.5-0.5b", method="dpo", gpu="t4", seq_len=4096, **base)
    assert kept.seq_len == 4096 and not any(n.startswith("adapted to fit") for n in kept.notes)
    # sized at the length it trains: micro-batch 2 fits 0.5B LoRA SFT at the rules' 4096 on 24 GB, not at 16384
    at_rules = build_plan(book, model="qwen2.5-0.5b", method="sft", peft="lora", gpu="rtx-4090", **base)
    longer = build_plan(book, model="qwen2.5-0.5b", method="sft", peft="lora", gpu="rtx-4090", seq_len=16384, **base)
    assert (at_rules.seq_len, at_rules.micro_batch_size) == (4096, 2)
    assert (longer.seq_len, longer.micro_batch_size) == (16384, 1)
    swapped = build_plan(book, model="llama-8b", method="grpo", gpu="rtx-4090", **base)
    assert swapped.peft == "qlora" and any("QLoRA instead of LoRA" in n for n in swapped.notes)
    assert build_plan(book, model="llama-8b", method="grpo", gpu="rtx-4090", peft="lora", **base).peft == "lora"


def test_without_the_hub_a_cached_model_loads_and_an_uncached_one_fails_at_once(tiny: Path, tmp_path: Path) -> None:
    """With the hub's host unresolvable, a hub id is loaded from the Hugging Face cache only (local_files_only, the
    adapter lookup too), so a cached model trains, and an uncached one is a one-line error naming why, instead of
    waiting through huggingface_hub's retries first."""
    import transformers

    revision = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    folder = cache / "models--acme-labs--tiny-llama"
    config = transformers.AutoConfig.from_pretrained(tiny.parent)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder / "snapshots" / revision)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    env = {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": "https://advisor-test.invalid", "HF_HUB_OFFLINE": "",
           "TRANSFORMERS_OFFLINE": ""}
    cached = run_cli("probe", "--model", "acme-labs/tiny-llama", "--method", "sft", "--peft", "lora", "--steps", "3",
                     *FAST, "--out-dir", str(tmp_path / "cached"), env=env)
    assert cached.returncode in (0, 1), cached.stderr  # it trained (a 3-step verdict may be a warning)
    assert json.loads((tmp_path / "cached" / "probe-report.json").read_text())["verdict"] != "could-not-run"
    uncached = run_cli("probe", "--model", "qwen2.5-0.5b", "--method", "sft", "--steps", "3", *FAST,
                       "--out-dir", str(tmp_path / "uncached"), env=env)
    assert uncached.returncode == 3, uncached.stderr  # could not run: exit 3, with its report
    line = uncached.stderr.strip().splitlines()[-1]
    assert "cannot load model 'qwen2.5-0.5b': it is not in the Hugging Face cache, and no network: cannot resolve " \
           "advisor-test.invalid" in line
