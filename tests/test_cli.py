"""The CLI as a user runs it: a real subprocess, real files, real exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from advisor.paths import schemas_dir
from tests.conftest import run_cli

HEADLINE = ("recommend", "--model", "llama-8b", "--method", "grpo", "--no-detect")


def test_headline_recommendation_names_rules_and_sources() -> None:
    proc = run_cli(*HEADLINE, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    jsonschema.validate(rec, json.loads((schemas_dir() / "recommendation.schema.json").read_text()))
    params = rec["parameters"]
    for name in ("learning_rate", "lora_rank", "lora_alpha", "num_generations", "temperature", "beta",
                 "effective_batch_size", "prompts_per_step", "lora_target_modules"):
        assert params[name]["rule"], name
        assert params[name]["source"], name
        assert params[name]["trace"], name
        assert params[name]["confidence"] in ("high", "medium", "low", "theoretical"), name
    lr = params["learning_rate"]  # the seed row, then the evidence fit (values: tests/test_evidence.py)
    assert (lr["trace"][0]["rule"], lr["trace"][0]["after"], lr["rule"]) == ("lr-base", 1e-5, "lr-evidence")
    assert params["lora_rank"]["value"] == 8
    assert params["num_generations"]["value"] == 8
    assert rec["facts"]["model"]["family"] == "llama"
    # Without a GPU the micro-batch is the smallest, at low confidence, and the accumulation carries the
    # effective batch (a whole number of groups); bf16 is left out, and the output says which fact adds it.
    assert (params["micro_batch_size"]["value"], params["micro_batch_size"]["confidence"]) == (1, "low")
    assert params["gradient_accumulation_steps"]["value"] == params["effective_batch_size"]["value"]
    assert params["gradient_accumulation_steps"]["value"] % params["num_generations"]["value"] == 0
    assert "bf16" not in params
    assert any(lo["missing_fact"] == "gpu.bf16" and lo["flag"] for lo in rec["left_out"])


def test_headline_text_output() -> None:
    proc = run_cli(*HEADLINE, "--gpu", "h100")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for token in ("learning_rate", "LR001 lr-base", "LORA002 lora-rank-rl", "RL003 grpo-group-size",
                  "RL004 rl-temperature", "RL001 grpo-beta", "BAT001", "LORA007", "hypotheses"):
        assert token in out, token


def test_explain_prints_trace_sources_and_notes() -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--explain", "--no-detect",
                   "--set", "lora_rank=128")
    assert proc.returncode == 0, proc.stderr
    assert "refine: LR008 lr-evidence" in proc.stdout
    assert "formula: coef.lr_sft * coef.lr_lora_ratio" in proc.stdout and "coef.lr_sft=" in proc.stdout
    assert "set aside: LR002 lr-by-hidden-size" in proc.stdout and "lr-evidence overrides it" in proc.stdout
    assert "source: seed 004_5aa35488f0734f48.txt, Base Learning Rates" in proc.stdout
    assert "note: " in proc.stdout


def test_yaml_output_is_a_config(tmp_path: Path) -> None:
    out = tmp_path / "rec.yaml"
    proc = run_cli(*HEADLINE, "--format", "yaml", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    doc = yaml.safe_load(out.read_text())
    assert doc["model"] == "meta-llama/Llama-3.1-8B" and doc["method"] == "grpo"
    assert doc["training"]["num_generations"] == 8
    assert "# RL003 grpo-group-size" in out.read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_output_to_a_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    proc = run_cli(*HEADLINE, "--format", "json", "--output", str(tmp_path / "nope" / "rec.json"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "does not exist" in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("recommend", "--model", "lama-8b", "--method", "sft"), "unknown model 'lama-8b'"),
        (("recommend", "--model", "llama-8b", "--method", "sftt"), "--method: unknown value 'sftt'"),
        (("recommend", "--model", "llama-8b", "--method", "grop"), "(hint: did you mean 'grpo'? one of sft, dpo, grpo,"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--peft", "qlroa"), "did you mean 'qlora'?"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--bogus"), "No such option '--bogus'"),
        (("recommend", "--model", "llama-8b"), "Missing option '--method'"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--gpu", "h1000"), "unknown GPU 'h1000'"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--gpu", "h1000"), "(hint: closest: h100, "),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--gpus", "two"), "Invalid value for '--gpus'"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--dataset-size", "lots"), "--dataset-size: 'lots'"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "lora_rnk=4"), "unknown parameter 'lora_rnk'"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "lora_rank=big"), "'big' is not an int"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "lora_rank=8.5"), "8.5 is not an int"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "lora_target_modules={a: 1}"),
         "{'a': 1} is not a list of str (hint: lora_target_modules takes a list of str)"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "lora_dropout=1.5"), "above the largest meaningful"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "warmup_ratio=2"), "above the largest meaningful"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--format", "xml"), "unknown format 'xml'"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "lora_rank=-4"), "below the smallest meaningful"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "learning_rate=-1e-4"), "below the smallest"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "learning_rate=inf"), "is not a float"),
        (("recommend", "--model", "llama-8b", "--method", "sft", "--set", "temperature=nan"), "is not a float"),
        (("recommend", "--model", "", "--method", "sft"), "--model / base_model: the name is empty"),
        (("rules", "list", "-p", "nosuch"), "unknown parameter 'nosuch'"),
        (("rules", "show", "LR999"), "no rule 'LR999'"),
        (("frobnicate",), "No such command 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: tuple[str, ...], needle: str) -> None:
    proc = run_cli(*args, "--no-detect") if args[0] == "recommend" else run_cli(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("advisor: error: ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_malformed_config_json_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": 4096,')
    proc = run_cli("recommend", "--model", str(tmp_path), "--method", "sft", "--no-detect")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not valid JSON" in proc.stderr and str(tmp_path) in proc.stderr


def test_broken_rule_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("family: x\ndescription: y\nrules:\n  - id: r\n    code: X001\n")
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--rules", str(tmp_path), "--no-detect")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "bad.yaml: rule 'r' key 'rules[0]'" in proc.stderr and "required property" in proc.stderr


def test_rules_check(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "mine.yaml").write_text(
        "family: mine\ndescription: d\nrules:\n"
        "  - {id: my-temp, code: MY001, kind: recommend, stage: refine, parameter: temperature, summary: s,\n"
        "     source: {doc: notes}, confidence: low, when: {fact: task.method, op: eq, value: grpo}, default: 0.9}\n")
    proc = run_cli("rules", "check", str(good))
    assert proc.returncode == 0, proc.stderr
    assert "ok: 1 rules" in proc.stdout
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mine.yaml").write_text((good / "mine.yaml").read_text().replace("low", "certain"))
    proc = run_cli("rules", "check", str(bad))
    assert proc.returncode == 2 and "rule 'my-temp' key 'rules[0].confidence'" in proc.stderr


def test_rules_check_refuses_what_recommend_would_fail_on(tmp_path: Path) -> None:
    """A condition whose operand its operator cannot take is refused by `rules check` and by any command's
    --rules alike, as one line naming file, rule, key and value, not as an internal error when it runs."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mine.yaml").write_text(
        "family: mine\ndescription: d\nrules:\n"
        "  - {id: my-rank, code: MY001, kind: recommend, stage: refine, parameter: lora_rank, summary: s,\n"
        "     source: {doc: notes}, confidence: low, when: {fact: model.active_params_b, op: between, value: [10]},\n"
        "     default: 12}\n")
    for args in (("rules", "check", str(bad)),
                 ("recommend", "--model", "llama-8b", "--method", "sft", "--no-detect", "--rules", str(bad))):
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "mine.yaml: rule 'my-rank' key 'when': model.active_params_b between [10]: between takes" in proc.stderr
        assert "internal error" not in proc.stderr and "hint:" in proc.stderr


def test_rules_list_and_show() -> None:
    proc = run_cli("rules", "list", "--format", "json")
    assert proc.returncode == 0
    rules = json.loads(proc.stdout)
    assert {"LR001", "LORA002", "RL003", "BAT001"} <= {r["code"] for r in rules}
    proc = run_cli("rules", "show", "LORA002")
    assert proc.returncode == 0
    assert "lora-rank-rl" in proc.stdout and "7-8B" in proc.stdout and "Rank by Model Size (RL)" in proc.stdout
    assert "LoRA Without Regret" in proc.stdout
    assert run_cli("rules", "show", "lr-by-hidden-size").returncode == 0
    check = run_cli("rules", "show", "VTM003")
    assert check.returncode == 0 and "fails when: len(difference(config.lora_target_modules" in check.stdout
    assert "error on lora_target_modules" in check.stdout and "--fix writes: model.linear_modules" in check.stdout


def test_models_and_gpus() -> None:
    proc = run_cli("models", "--format", "json")
    assert proc.returncode == 0
    models = {m["name"]: m for m in json.loads(proc.stdout)}
    assert models["llama-3.1-8b"]["hidden_size"] == 4096
    assert models["llama-3.1-8b"]["unverified"] == [] and models["xgen-7b-8k"]["unverified"] == "all"
    assert models["falcon-h1-34b"]["unverified"] and "intermediate_size" in models["falcon-h1-34b"]["unverified"]
    text = run_cli("models").stdout
    assert "mixtral-8x7b" in text and "llama-8b" in text
    checked = {line.split()[0]: line.split()[-1] for line in text.splitlines() if line.split()}
    assert checked["llama-3.1-8b"] == "yes" and checked["xgen-7b-8k"] == "no" and checked["falcon-h1-34b"] == "partly"
    gpus = run_cli("gpus")
    assert gpus.returncode == 0 and "rtx-5060-ti-16gb" in gpus.stdout and "t4" in gpus.stdout


@pytest.mark.parametrize("cmd", [(), ("recommend",), ("rules",), ("rules", "check"), ("models",), ("gpus",)])
def test_help_everywhere(cmd: tuple[str, ...]) -> None:
    proc = run_cli(*cmd, "--help")
    assert proc.returncode == 0
    assert "Usage" in proc.stdout


def test_examples_in_help() -> None:
    assert "advisor recommend --model llama-8b --method grpo" in run_cli("recommend", "--help").stdout


def test_seq_len_beyond_native_context_warns() -> None:
    proc = run_cli("recommend", "--model", "llama-3-8b", "--method", "sft", "--seq-len", "16384", "--no-detect")
    assert proc.returncode == 0
    assert "warning:" in proc.stdout and "seq-len-model-context" in proc.stdout


def test_batch_split_that_does_not_multiply_back_is_a_warning() -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "h100", "--gpus", "3",
                   "--set", "micro_batch_size=5", "--format", "json", "--no-detect")
    warnings = json.loads(proc.stdout)["warnings"]
    # 4 prompts x 8 do not split over 3 GPUs: 6 prompts (48 completions) do (BAT011); a pinned 5 does not divide 16
    assert any("= 60, not the effective batch 48" in w for w in warnings)
    assert any("not divisible by num_generations 8" in w for w in warnings)
    clean = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "h100", "--gpus", "2",
                    "--format", "json", "--no-detect")
    assert json.loads(clean.stdout)["warnings"] == []


def test_rules_check_on_an_empty_directory(tmp_path: Path) -> None:
    proc = run_cli("rules", "check", str(tmp_path))
    assert proc.returncode == 2 and "no .yaml rule files" in proc.stderr


def test_integer_ranges_stay_integers() -> None:
    rec = json.loads(run_cli(*HEADLINE, "--format", "json").stdout)
    assert rec["parameters"]["lora_rank"]["range"] == [4, 16]
    assert all(isinstance(v, int) for v in rec["parameters"]["lora_rank"]["range"])


def test_gpu_with_unknown_memory_keeps_its_name(tmp_path: Path) -> None:
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\necho 'NVIDIA GB10, [N/A], 12.1'\n")
    exe.chmod(0o755)
    import os

    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft",
                   env={"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"})
    assert proc.returncode == 0, proc.stderr
    assert "gpu    1 x NVIDIA GB10, memory unknown, bf16" in proc.stdout
    assert "none known" not in proc.stdout
    assert "BAT013 batch-micro-no-gpu" in proc.stdout  # the detected card's memory is unknown: micro-batch 1


@pytest.mark.parametrize("columns", [80, 120])
def test_table_keeps_parameter_names_whole_and_cites_sources(columns: int) -> None:
    proc = run_cli(*HEADLINE, "--gpu", "h100", env={"COLUMNS": str(columns)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= columns for line in lines), max(lines, key=len)
    for name in ("gradient_accumulation_steps", "gradient_checkpointing", "lora_target_modules",
                 "effective_batch_size", "prompts_per_step"):
        assert any(line.startswith(name + " ") for line in lines), name
    # The learning rate's row cites its footnotes, and the footnotes name the seed tables.
    at = next(i for i, line in enumerate(lines) if line.startswith("learning_rate "))
    lr_rows = " ".join(lines[at:at + 2])  # at 80 columns the footnotes wrap onto the row's second line
    assert re.search(r"(\[1,2[],]|\b1,2(,\d+)*(\s|$))", lr_rows), lr_rows
    assert "  [1] seed 004 Base Learning Rates" in lines
    assert "  [2] seed 004 Common Configurations" in lines


def test_moved_range_is_flagged_in_every_output() -> None:
    args = ("recommend", "--model", "llama-8b", "--method", "raft", "--set", "effective_batch_size=128", "--no-detect")
    text = run_cli(*args).stdout
    assert re.search(r"^learning_rate +1e-4 +4e-5 – 1\.4e-4 \* +low ", text, re.M), text
    assert ("  learning_rate: the row (LR003) gives 2e-5 – 7e-5; moved by INT002 — the value is "
            "outside the row's range") in text
    explain = run_cli(*args, "--explain").stdout
    assert "adjust: INT002 lr-adjust-batch" in explain and "5e-5 -> 1e-4, range 4e-5 – 1.4e-4" in explain
    rec = json.loads(run_cli(*args, "--format", "json").stdout)
    lr = rec["parameters"]["learning_rate"]
    assert lr["range"] == [4e-5, 1.4e-4] and lr["rule_range"] == [2e-5, 7e-5] and lr["outside_rule_range"]
    yaml_text = run_cli(*args, "--format", "yaml").stdout
    line = next(x for x in yaml_text.splitlines() if x.startswith("  learning_rate:"))
    assert "range 4e-5 – 1.4e-4 (row 2e-5 – 7e-5, moved by INT002; outside the row)" in line


def test_a_grpo_completion_cap_pin_is_the_jobs_max_seq_length(tmp_path: Path) -> None:
    """GRPO's max_seq_length is what its files write as max_completion_length, so --set max_completion_length
    sets that one value: the table, the memory estimate and the TRL file agree, with no stale 4096 beside it."""
    args = ("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "h100", "--no-detect")
    rec = json.loads(run_cli(*args, "--set", "max_completion_length=2048", "--format", "json").stdout)
    assert "max_completion_length" not in rec["parameters"]
    seq = rec["parameters"]["max_seq_length"]
    assert (seq["value"], seq["set_by"], seq["provenance"]["detail"]) == (2048, "user", "--set max_completion_length")
    assert rec["memory"]["seq_len"] - rec["memory"]["prompt_len"] == 2048
    text = run_cli(*args, "--set", "max_completion_length=2048").stdout
    assert re.search(r"^max_seq_length +2048 .*set by you \(--set max_completion_length\)", text, re.M)
    out = tmp_path / "grpo.yaml"
    proc = run_cli(*args, "--set", "max_completion_length=2048", "--format", "trl", "-o", str(out))
    written = yaml.safe_load(out.read_text())
    assert written["max_completion_length"] == 2048 and "not written" not in out.read_text() + proc.stderr
    # the same value twice is one pin; two values are a one-line error
    same = json.loads(run_cli(*args, "--set", "max_completion_length=2048", "--set", "max_seq_length=2048",
                              "--format", "json").stdout)
    assert same["parameters"]["max_seq_length"]["value"] == 2048
    both = run_cli(*args, "--set", "max_completion_length=2048", "--set", "max_seq_length=1024")
    assert both.returncode == 2 and "one value" in both.stderr and len(both.stderr.strip().splitlines()) == 1
    # SFT has no completion cap: the pin is kept as its own parameter
    sft = json.loads(run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--no-detect",
                             "--set", "max_completion_length=2048", "--format", "json").stdout)
    assert sft["parameters"]["max_completion_length"]["value"] == 2048


def test_inapplicable_pin_is_a_warning_and_kept() -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--peft", "full", "--set", "lora_rank=64",
                   "--format", "json", "--no-detect")
    rec = json.loads(proc.stdout)
    assert rec["parameters"]["lora_rank"]["value"] == 64 and rec["parameters"]["lora_rank"]["set_by"] == "user"
    assert any(w.startswith("--set lora_rank=64: lora_rank does not apply to sft with full") for w in rec["warnings"])
    # A pin that does apply is not reported.
    ok = json.loads(run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--set", "lora_rank=64",
                            "--format", "json", "--no-detect").stdout)
    assert not any("does not apply" in w for w in ok["warnings"])


def test_value_is_typed_in_the_schema() -> None:
    schema = json.loads((schemas_dir() / "recommendation.schema.json").read_text())
    value = schema["$defs"]["ParameterValue"]["properties"]["value"]
    kinds = {json.dumps(v, sort_keys=True) for v in value["anyOf"]}
    assert kinds == {json.dumps(k, sort_keys=True) for k in (
        {"type": "boolean"}, {"type": "integer"}, {"type": "number"}, {"type": "string"},
        {"type": "array", "items": {"type": "string"}}, {"type": "array", "items": {"type": "number"}})}
    rec = json.loads(run_cli(*HEADLINE, "--format", "json").stdout)
    bad = dict(rec)
    bad["parameters"] = {**rec["parameters"], "beta": {**rec["parameters"]["beta"], "value": {"x": 1}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_method_and_peft_words_are_matched_loosely() -> None:
    rec = run_cli("recommend", "--model", "llama-8b", "--method", "GRPO", "--peft", "QLoRA", "--use-case", "Code",
                  "--format", "json", "--no-detect")
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout)["facts"]["task"]["use_case"] == "code"
    proc = run_cli("validate", "examples/configs/trl-grpo-lora.yaml", "--method", "GRPO", "--no-detect")
    assert proc.returncode == 0, proc.stderr


def test_every_recommended_value_says_where_it_came_from() -> None:
    """One provenance vocabulary (advisor/provenance.py): a flag beats --set, a fitted rule says
    'evidence', any other rule 'rule'."""
    rec = json.loads(run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--seq-len", "2048",
                             "--set", "lora_rank=8", "--set", "max_seq_length=1024", "--format", "json",
                             "--no-detect").stdout)
    params = rec["parameters"]
    assert params["max_seq_length"]["value"] == 2048  # the flag wins over --set (provenance.PRECEDENCE)
    assert params["max_seq_length"]["provenance"] == {"source": "flag", "detail": "--seq-len"}
    assert params["lora_rank"]["provenance"] == {"source": "pin", "detail": "--set"}
    assert params["learning_rate"]["provenance"] == {"source": "evidence", "detail": "lr-evidence"}
    assert params["optimizer"]["provenance"]["source"] == "rule"
    assert all(p["provenance"]["source"] in ("flag", "pin", "evidence", "rule") for p in params.values())


def test_a_pinned_optimizer_advisor_does_not_know_is_kept_with_a_warning() -> None:
    """Trainers know optimizers advisor does not (it passes them through), but its memory model then
    counts AdamW's states: the user hears that, with the nearest known name."""
    rec = json.loads(run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--set", "optimizer=adamw_foo",
                             "--format", "json", "--no-detect").stdout)
    assert rec["parameters"]["optimizer"]["value"] == "adamw_foo"
    assert any(w.startswith("--set optimizer=adamw_foo: not an optimizer advisor knows") and "did you mean" in w
               for w in rec["warnings"])
    known = json.loads(run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--set", "optimizer=adamw_8bit",
                               "--format", "json", "--no-detect").stdout)
    assert not any("not an optimizer advisor knows" in w for w in known["warnings"])


def test_models_shows_one_model_as_the_rules_read_it(tmp_path: Path) -> None:
    text = run_cli("models", "qwen2.5-7b")
    assert text.returncode == 0 and text.stdout.startswith("qwen2.5-7b: qwen2, 7.62B params  [registry")
    assert re.search(r"^  num_kv_heads +4$", text.stdout, re.M)
    data = json.loads(run_cli("models", "xgen-7b-8k", "--format", "json").stdout)
    assert data["hidden_size"] == 4096 and data["unverified"] == "all"
    assert "every number" in run_cli("models", "xgen-7b-8k").stdout
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"model_type": "llama", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 64,
                               "max_position_embeddings": 128}))
    local = json.loads(run_cli("models", str(cfg), "--format", "json").stdout)
    assert local["num_layers"] == 1 and local["unverified"] == []
    bad = run_cli("models", "no-such-model-xyz")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown model 'no-such-model-xyz'" in bad.stderr


@pytest.mark.parametrize("name", ["nvidia_h100", "NVIDIA_H100", "Nvidia H100", "h100_80gb"])
def test_gpu_names_match_whatever_separates_their_words(name: str) -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--gpu", name, "--format", "json",
                   "--no-detect")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["facts"]["gpu"]["name"] == "h100"


def test_a_gpu_name_two_cards_share_stays_an_error_whatever_its_separators() -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--gpu", "NVIDIA_A100", "--no-detect")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "a100-80gb" in proc.stderr and "a100-40gb" in proc.stderr


def test_every_registry_gpu_header_states_both_sizes() -> None:
    """A100 80GB reports exactly 80.0 GiB: equal numbers must not read as --gpu-mem's one number."""
    from dataclasses import asdict

    from advisor.facts.hardware import registry_usable_gib, resolve_gpu
    from advisor.render.text import gpu_memory_text
    from advisor.rulebook.load import load_rulebook

    book = load_rulebook()
    for gid, entry in book.gpus.items():
        g = asdict(resolve_gpu(book, name=gid, memory_gb=None, count=None, detect=False))
        assert gpu_memory_text(g) == f"{entry['memory_gb']:g} GB ({registry_usable_gib(entry):.1f} GiB usable)", gid
    a100 = ("--model", "llama-8b", "--method", "sft", "--gpu", "a100-80gb", "--no-detect")
    assert "gpu    1 x a100-80gb 80 GB (80.0 GiB usable), bf16" in run_cli("recommend", *a100).stdout
    assert "on 1 x a100-80gb 80 GB (80.0 GiB usable);" in run_cli("memory", *a100).stdout
    flag = ("recommend", "--model", "llama-8b", "--method", "sft", "--no-detect", "--gpu-mem", "70")
    assert "gpu    1 x GPU 70.0 GiB, bf16 unknown" in run_cli(*flag).stdout  # --gpu-mem: the user's one number
    assert "gpu    1 x h100 70.0 GiB, bf16" in run_cli(*flag, "--gpu", "h100").stdout


@pytest.mark.parametrize("args", [("evidence",), ("evidence", "--format", "json")])
def test_a_reader_closing_the_pipe_is_exit_0_and_silent(args: tuple[str, ...]) -> None:
    """`advisor ... | head -1`: rich's own handler exits 1, which the exit-code table gives to findings. The
    outputs are larger than a pipe's buffer (64 KiB), so the write after the close does fail."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.Popen([sys.executable, "-m", "advisor", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(20)
    proc.stdout.close()  # as head does after its line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0 and err == b""


def test_recommend_says_what_validate_would_of_a_pin() -> None:
    """A --set value outside the rules is warned about when it is set, not first by validate on the file written."""
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "h100", "--no-detect",
                   "--set", "num_generations=3", "--set", "max_grad_norm=0", "--format", "json")
    warnings = json.loads(proc.stdout)["warnings"]
    assert any(w.startswith("num_generations 3 (set by you): VPM003 warning") for w in warnings), warnings
    assert any(w.startswith("max_grad_norm 0.0 (set by you): VOP002 warning") for w in warnings), warnings
    fine = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "h100", "--no-detect",
                   "--set", "num_generations=8", "--format", "json")
    assert not [w for w in json.loads(fine.stdout)["warnings"] if "(set by you)" in w]


@pytest.mark.parametrize("value", ["q_proj,v_proj", "[q_proj, v_proj]"])
def test_set_takes_a_list_in_brackets_or_comma_separated(value: str) -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "sft", "--set", f"lora_target_modules={value}",
                   "--format", "json", "--no-detect")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["parameters"]["lora_target_modules"]["value"] == ["q_proj", "v_proj"]
