"""`advisor recommend --format axolotl | llama-factory | trl`: configs in the trainers' own keys.

Each written file is read back by advisor's own reader as that format and must give the same
values; the TRL file is parsed by TRL's own argument classes with extra keys refused; the key
lists of Axolotl and LLaMA-Factory (rules/registry/fields/, pinned releases) are held in step with
the tables advisor reads and writes them by.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor import api, registries
from advisor.configs.readers import read_config
from advisor.errors import AdvisorError
from advisor.facts.task import variant_of
from advisor.paths import rules_dir
from advisor.recommendation import Recommendation
from advisor.render.trainer import TrainerConfig, build, render
from advisor.rulebook.load import Rulebook
from tests.conftest import run_cli

# (method, peft, variant): what users train, with a variant where the trainer names it
CASES = [
    ("sft", "lora", None), ("sft", "qlora", None), ("sft", "full", None),
    ("dpo", "lora", None), ("dpo", "lora", "ipo"), ("dpo", "full", "ldpo"),
    ("grpo", "lora", None), ("grpo", "qlora", "dr_grpo"), ("raft", "lora", None),
    ("rm", "lora", None), ("rm", "full", None), ("pt", "lora", None), ("pt", "full", None),
]
TRAINERS = registries.writable_format_ids()


def _recommend(book: Rulebook, method: str, peft: str, variant: str | None) -> Recommendation:
    return api.recommend(book=book, model="llama-8b", method=method, peft=peft, gpu="a100-80gb", variant=variant,
                         cycles=4 if method == "raft" else None, dataset_size=2000 if method == "raft" else None,
                         detect_gpu=False)


def _written(book: Rulebook, fmt: str, method: str, peft: str, variant: str | None,
             tmp_path: Path) -> tuple[Recommendation, TrainerConfig, Path] | None:
    rec = _recommend(book, method, peft, variant)
    try:
        tc = build(rec, fmt, book)
    except AdvisorError as exc:  # a method the trainer cannot train: checked in its own test
        if "cannot train" in str(exc):
            return None
        raise
    path = tmp_path / f"{fmt}-{method}-{peft}.yaml"
    path.write_text(render(tc))
    return rec, tc, path


@pytest.mark.parametrize("fmt", TRAINERS)
@pytest.mark.parametrize(("method", "peft", "variant"), CASES)
def test_the_written_config_reads_back_as_that_format_with_the_same_values(
        book: Rulebook, tmp_path: Path, fmt: str, method: str, peft: str, variant: str | None) -> None:
    written = _written(book, fmt, method, peft, variant, tmp_path)
    if written is None:
        assert (fmt, method) == ("llama-factory", "grpo")  # LLaMA-Factory 0.9.5 has no GRPO stage
        return
    rec, tc, path = written
    fields = registries.trainer_fields(registries.formats()[fmt].write.fields)  # type: ignore[union-attr]
    accepted = fields.keys or fields.classes[str(tc.config_class)].union(
        *(fields.classes[c] for c in tc.shared_classes))
    raw = yaml.safe_load(path.read_text())
    keys = [f"{k}.{sub}" if isinstance(v, dict) else k for k, v in raw.items()
            for sub in (v if isinstance(v, dict) else [None])]
    assert not [k for k in keys if not fields.takes(k, accepted)], f"keys {fields.name} {fields.version} does not take"
    cfg, _ = read_config(path, book, fmt)
    assert cfg.model is not None and cfg.model.value == rec.facts["model"]["hf_id"]
    assert cfg.method is not None and cfg.method.value == (method if method != "raft" else "sft")
    assert cfg.peft is not None and cfg.peft.value == peft
    unwritten = " ".join(tc.warnings + tc.notes)
    writer = registries.formats()[fmt].write
    assert writer is not None
    for name, pv in rec.parameters.items():
        if f"{name} " in unwritten and name not in cfg.values:
            continue  # named in the file's warnings or notes, not silently dropped
        moved = next((t for t in writer.translate if t.parameter == name and t.key and not t.has_value
                      and t.applies(pv.value, method)), None)
        if moved is not None and name not in cfg.values:  # its value under the key the trainer caps it by
            assert yaml.safe_load(path.read_text()).get(moved.key) == pv.value, name  # type: ignore[arg-type]
            continue
        assert name in cfg.values, f"{name} = {pv.value!r} was neither written nor warned about"
        assert cfg.values[name].value == pv.value, name
    wanted = variant or method
    if wanted in book.variants and book.variants[wanted].get("loss_types"):
        loss = cfg.values["loss_type"].value if "loss_type" in cfg.values else raw.get(
            registries.formats()[fmt].write.method_key or "")  # type: ignore[union-attr]
        assert variant_of(book.variants, method, loss) == wanted or f"variant {wanted}" in unwritten


@pytest.mark.parametrize(("method", "peft", "variant"), [c for c in CASES if c[0] != "raft"])
def test_trls_own_parser_takes_the_trl_config_with_extra_keys_refused(
        book: Rulebook, tmp_path: Path, method: str, peft: str, variant: str | None) -> None:
    pytest.importorskip("trl")  # the probe extra; the dev extra installs it
    from transformers import HfArgumentParser

    written = _written(book, "trl", method, peft, variant, tmp_path)
    assert written is not None
    rec, tc, path = written
    data = yaml.safe_load(path.read_text())
    # TrainingArguments refuses bf16 on a machine without a bf16 GPU (this one): parse the file as
    # written for the A100 it was recommended for, with only that flag lowered.
    assert data["bf16"] is True
    data["bf16"] = False
    path.write_text(yaml.safe_dump(data))
    classes = _trl_classes(tc)
    script, config, model, _ = HfArgumentParser(classes).parse_yaml_file(str(path), allow_extra_keys=False)
    assert type(config).__name__ == registries.method(method).trl_config  # type: ignore[union-attr]
    p = {k: v.value for k, v in rec.parameters.items()}
    assert config.learning_rate == p["learning_rate"]
    assert config.per_device_train_batch_size == p["micro_batch_size"]
    assert config.gradient_accumulation_steps == p["gradient_accumulation_steps"]
    assert config.warmup_steps == p["warmup_ratio"]  # below 1: a fraction of the steps (transformers 5)
    assert model.model_name_or_path == rec.facts["model"]["hf_id"]
    assert model.use_peft is (peft != "full")
    assert model.load_in_4bit is (peft == "qlora")
    if peft != "full":
        assert (model.lora_r, model.lora_alpha) == (p["lora_rank"], p["lora_alpha"])
        assert model.lora_target_modules == p["lora_target_modules"]
    if "beta" in p:
        assert config.beta == p["beta"]
    if method == "grpo":
        assert (config.num_generations, config.temperature) == (p["num_generations"], p["temperature"])
        assert config.loss_type == (variant or "grpo")  # TRL's own default is dapo: written explicitly
        # the completion cap the memory estimate sized, not TRL's default; a reward source GRPOTrainer needs
        assert config.max_completion_length == p["max_seq_length"]
        assert script.reward_funcs == ["REPLACE_ME"]
    # the recommended eval frequency runs: TrainingArguments' eval_strategy defaults to "no"
    if "eval_steps" in p:
        assert (config.eval_strategy, config.eval_steps) == ("steps", p["eval_steps"])
        assert script.dataset_test_split == "REPLACE_ME"
    else:
        assert config.eval_strategy == "no" and "dataset_test_split" not in data
    if variant == "ipo":
        assert config.loss_type == ["ipo"]
    if variant == "ldpo":
        assert config.loss_type == ["sigmoid_norm"]
    assert script.dataset_name == "REPLACE_ME"


@pytest.mark.parametrize("num_generations", [16, 32])
def test_trl_starts_an_evaluating_grpo_export_whose_groups_outgrow_the_default_eval_batch(
        book: Rulebook, tmp_path: Path, num_generations: int) -> None:
    """GRPOConfig refuses a run that evaluates when per_device_eval_batch_size x processes holds no whole
    group; TrainingArguments' default eval batch (8) holds none of 16 or 32 on one GPU."""
    pytest.importorskip("trl")
    from transformers import HfArgumentParser

    rec, tc, raw = _exported(book, "trl", tmp_path, model="llama-8b", method="grpo", gpu="h100",
                             pins={"num_generations": num_generations})
    assert (raw["num_generations"], raw["eval_strategy"]) == (num_generations, "steps")
    raw["bf16"] = False  # TrainingArguments refuses bf16 on a machine without a bf16 GPU (this one)
    path = tmp_path / "grpo.yaml"
    path.write_text(yaml.safe_dump(raw))
    _, config, *_ = HfArgumentParser(_trl_classes(tc)).parse_yaml_file(str(path), allow_extra_keys=False)
    assert config.per_device_eval_batch_size == rec.parameters["eval_micro_batch_size"].value
    assert (config.per_device_eval_batch_size * config.world_size) % num_generations == 0
    # eight GPUs share each group: no eval batch above the micro-batch is needed
    rec = api.recommend(book=book, model="llama-8b", method="grpo", peft="lora", gpu="h100", gpus=8,
                        pins={"num_generations": num_generations}, detect_gpu=False)
    per_gpu = rec.parameters["eval_micro_batch_size"].value
    assert per_gpu == rec.parameters["micro_batch_size"].value and (per_gpu * 8) % num_generations == 0


def _trl_classes(tc: TrainerConfig) -> list[Any]:
    """The classes `trl <method>` parses the file with (its script arguments, the config, ModelConfig), found
    where TRL 1.16 keeps them: trl, its scripts (GRPOScriptArguments) or trl.experimental (CPOConfig)."""
    import importlib

    found = []
    for name in (tc.shared_classes[0], tc.config_class, *tc.shared_classes[1:]):
        assert name is not None
        stem = name.removesuffix("ScriptArguments").removesuffix("Config").lower()
        for where in ("trl", f"trl.scripts.{stem}", f"trl.experimental.{stem}"):
            cls = getattr(importlib.import_module(where), name, None) if importlib.util.find_spec(where) else None
            if cls is not None:
                found.append(cls)
                break
        else:
            raise AssertionError(f"trl has no {name}")
    return found


def _exported(book: Rulebook, fmt: str, tmp_path: Path, **kwargs: Any) -> tuple[Recommendation, TrainerConfig,
                                                                                 dict[str, Any]]:
    rec = api.recommend(book=book, detect_gpu=False, **{"peft": "lora", "gpu": "a100-80gb", **kwargs})
    tc = build(rec, fmt, book)
    path = tmp_path / f"{fmt}.yaml"
    path.write_text(render(tc))
    return rec, tc, yaml.safe_load(path.read_text())


@pytest.mark.parametrize("fmt", TRAINERS)
def test_the_exported_model_is_the_hub_id_or_directory_the_user_named(book: Rulebook, tmp_path: Path,
                                                                      fmt: str) -> None:
    model_key = registries.formats()[fmt].write.model  # type: ignore[union-attr]
    # an -Instruct id matched to the base model's registry entry: the entry lends its shapes, not its id
    rec, _, raw = _exported(book, fmt, tmp_path, model="meta-llama/Llama-3.1-8B-Instruct", method="sft")
    assert rec.facts["model"]["hf_id"] == "meta-llama/Llama-3.1-8B"
    assert raw[model_key] == "meta-llama/Llama-3.1-8B-Instruct"
    # a config.json or its directory: from_pretrained takes the directory, never the file
    directory = Path(__file__).resolve().parent.parent / "examples" / "my-model"
    for spec in (directory / "config.json", directory):
        _, _, raw = _exported(book, fmt, tmp_path, model=str(spec), method="sft")
        assert raw[model_key] == str(directory)
    transformers = pytest.importorskip("transformers")
    written = json.loads((directory / "config.json").read_text())["model_type"]
    assert transformers.AutoConfig.from_pretrained(raw[model_key]).model_type == written


@pytest.mark.parametrize("fmt", TRAINERS)
def test_a_gpu_without_bf16_trains_in_fp16(book: Rulebook, tmp_path: Path, fmt: str) -> None:
    rec, _, raw = _exported(book, fmt, tmp_path, model="llama-1b", method="sft", peft="qlora", gpu="t4")
    assert rec.parameters["bf16"].value is False
    assert raw["bf16"] is False and raw["fp16"] is True  # transformers' fp16 defaults to False: fp32 otherwise
    _, _, raw = _exported(book, fmt, tmp_path, model="llama-1b", method="sft", peft="qlora", gpu="a100-80gb")
    assert raw["bf16"] is True and "fp16" not in raw


def test_trl_parses_the_t4_export_as_fp16_mixed_precision(book: Rulebook, tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from transformers import HfArgumentParser

    _, tc, raw = _exported(book, "trl", tmp_path, model="llama-1b", method="sft", peft="qlora", gpu="t4")
    path = tmp_path / "t4.yaml"
    path.write_text(yaml.safe_dump(raw))
    _, config, *_ = HfArgumentParser(_trl_classes(tc)).parse_yaml_file(str(path), allow_extra_keys=False)
    assert config.fp16 is True and config.bf16 is False


def test_grpo_and_ppo_exports_ask_for_the_reward_their_trainers_need(book: Rulebook, tmp_path: Path) -> None:
    rec, _, raw = _exported(book, "axolotl", tmp_path, model="llama-1b", method="grpo")
    assert raw["rl"] == "grpo" and raw["trl"]["reward_funcs"] == ["REPLACE_ME"]
    assert raw["trl"]["max_completion_length"] == rec.parameters["max_seq_length"].value
    rec, tc, raw = _exported(book, "llama-factory", tmp_path, model="llama-1b", method="ppo")
    assert raw["stage"] == "ppo" and raw["reward_model"] == "REPLACE_ME"
    # pref_beta is DPO's; LLaMA-Factory's PPO reads no KL coefficient, and takes no eval set
    assert "pref_beta" not in raw and any(w.startswith("beta ") and "ppo_target" in w for w in tc.warnings)
    assert "eval_steps" not in raw and "eval_dataset" not in raw and "eval_strategy" not in raw
    _, _, raw = _exported(book, "llama-factory", tmp_path, model="llama-1b", method="dpo")
    assert raw["pref_beta"] == 0.1 and "reward_model" not in raw


@pytest.mark.parametrize("fmt", TRAINERS)
def test_eval_steps_come_with_the_strategy_and_an_eval_set_that_make_them_run(book: Rulebook, tmp_path: Path,
                                                                             fmt: str) -> None:
    rec, _, raw = _exported(book, fmt, tmp_path, model="llama-1b", method="sft")
    assert raw["eval_steps"] == rec.parameters["eval_steps"].value
    eval_set = {"axolotl": "test_datasets", "llama-factory": "eval_dataset", "trl": "dataset_test_split"}[fmt]
    assert "REPLACE_ME" in json.dumps(raw[eval_set])
    if fmt != "axolotl":  # Axolotl sets eval_strategy steps itself once it has an eval set
        assert raw["eval_strategy"] == "steps"


# (method, variant): each trainer's methods and the variants TRL trains with a config of their own
ROUND_TRIP = [("sft", None), ("dpo", None), ("grpo", None), ("ppo", None), ("rm", None), ("pt", None),
              ("dpo", "ipo"), ("dpo", "simpo"), ("dpo", "kto"), ("grpo", "gspo"), ("grpo", "rloo")]


@pytest.mark.parametrize("fmt", TRAINERS)
@pytest.mark.parametrize(("method", "variant"), ROUND_TRIP)
def test_advisors_own_validate_finds_nothing_wrong_with_advisors_export(
        book: Rulebook, tmp_path: Path, fmt: str, method: str, variant: str | None) -> None:
    from advisor.facts.hardware import resolve_gpu
    from advisor.validate import Overrides, Selection, validate_file

    # a job that fits its GPU, so that the recommendation itself has nothing for validate to find
    rec = api.recommend(book=book, model="llama-1b", method=method, peft="qlora", gpu="a100-80gb", variant=variant,
                        detect_gpu=False)
    assert not [w for w in rec.warnings if w.startswith("does not fit")]
    try:
        tc = build(rec, fmt, book)
    except AdvisorError as exc:
        assert "cannot train" in str(exc) or "has no PPOConfig" in str(exc), exc
        return
    path = tmp_path / f"{fmt}-{method}.yaml"
    path.write_text(render(tc))
    gpu = resolve_gpu(book, name="a100-80gb", memory_gb=None, count=None, detect=False)
    report = validate_file(path, book, gpu, Overrides(config_format=fmt), Selection())
    assert report.error is None, report.error
    placeholder = book.rules["check-config-placeholder"].code
    # the keys advisor leaves to the user are the only thing to fix: validate names them until they are replaced
    assert any(f.code == placeholder for f in report.findings)
    found = [f"{f.code} {f.severity}: {f.message}" for f in report.findings
             if f.severity in ("warning", "error") and f.code != placeholder]
    assert not found, found


@pytest.mark.parametrize(("variant", "config_class", "trainer"),
                         [("simpo", "CPOConfig", "CPOTrainer"), ("kto", "KTOConfig", "KTOTrainer"),
                          ("gspo", "GRPOConfig", "GRPOTrainer"), ("rloo", "RLOOConfig", "RLOOTrainer")])
def test_a_variant_with_a_trl_trainer_of_its_own_is_written_as_that_trainers_config(
        book: Rulebook, tmp_path: Path, variant: str, config_class: str, trainer: str) -> None:
    pytest.importorskip("trl")
    from transformers import HfArgumentParser

    rec, tc, raw = _exported(book, "trl", tmp_path, model="llama-1b", method=book.variants[variant]["method"],
                             variant=variant)
    assert (tc.config_class, tc.trainer_class) == (config_class, trainer)
    assert f"# Trainer: {trainer}" in render(tc)
    raw["bf16"] = False  # TrainingArguments refuses bf16 on a machine without a bf16 GPU (this one)
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    script, config, *_ = HfArgumentParser(_trl_classes(tc)).parse_yaml_file(str(path), allow_extra_keys=False)
    assert type(config).__name__ == config_class
    p = {k: v.value for k, v in rec.parameters.items()}
    trl = book.variants[variant]["trl"]
    if "loss_type" in trl:
        assert config.loss_type in (trl["loss_type"], [trl["loss_type"]])
    for key, value in (trl.get("settings") or {}).items():
        assert getattr(config, key) == value, key
    if variant == "simpo":  # SimPO's reward scale (2 to 10), not plain DPO at beta 2
        assert (config.beta, config.simpo_gamma) == (p["beta"], p["simpo_gamma"])
    if variant == "kto":
        assert (config.desirable_weight, config.undesirable_weight) == (p["desirable_weight"], p["undesirable_weight"])
    if variant in ("gspo", "rloo"):
        assert script.reward_funcs == ["REPLACE_ME"] and config.num_generations == p["num_generations"]
    assert not [w for w in tc.warnings if f"variant {variant}" in w]


def test_the_trl_field_list_is_the_installed_trls() -> None:
    pytest.importorskip("trl")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's tools/
    from tools.trainer_fields import trl_fields

    committed = json.loads((rules_dir() / "registry" / "fields" / "trl.json").read_text())
    assert trl_fields() == committed, "trl changed its config fields: run `python tools/trainer_fields.py trl`"


@pytest.mark.parametrize("fmt", TRAINERS)
def test_every_key_advisor_reads_a_trainer_by_is_in_its_pinned_key_list_or_says_why_not(
        book: Rulebook, fmt: str) -> None:
    """A new release's key list (tools/trainer_fields.py) that renames a key fails here, naming it."""
    f = registries.formats()[fmt]
    writer = f.write
    assert writer is not None
    fields = registries.trainer_fields(writer.fields)
    accepted = fields.keys or frozenset().union(*fields.classes.values())
    translated = {t.parameter for t in writer.translate}
    missing = []
    for name, param in book.parameters.items():
        keys = param.trainer_keys.get(f.trainer_keys or "")
        keys = [keys] if isinstance(keys, str) else list(keys or [])
        if (keys and not any(fields.takes(k, accepted) for k in keys) and name not in translated
                and name not in writer.unsupported):
            missing.append(f"{name}: {keys}")
    written = [writer.model, writer.peft_key, *writer.fixed, *(p.key for p in writer.placeholders),
               *(c.key for c in writer.companions),
               *(t.key for t in writer.translate if t.key)] + ([writer.method_key] if writer.method_key else [])
    missing += [k for k in written if not fields.takes(k, accepted)]
    missing += [c for c in writer.commands if c not in fields.classes]
    missing += [f"{cmd}: {c}" for cmd in writer.commands.values() for c in fields.parses.get(cmd, ["no parses"])
                if c not in fields.classes]
    assert not missing, f"{fields.name} {fields.version} has no such key: {missing}"


def test_a_method_the_trainer_cannot_train_is_a_one_line_error() -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--format", "llama-factory",
                   "--no-detect")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "LLaMA-Factory 0.9.5 cannot train grpo" in proc.stderr and "stage" in proc.stderr


@pytest.mark.parametrize("fmt", ["trl", "yaml"])
def test_a_job_that_does_not_fit_is_a_warning_on_stderr_beside_the_file(fmt: str, tmp_path: Path) -> None:
    out = tmp_path / "big.yaml"
    proc = run_cli("recommend", "--model", "llama-70b", "--method", "sft", "--peft", "qlora", "--gpu", "rtx-4090",
                   "--format", fmt, "-o", str(out), "--no-detect")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("advisor: warning: does not fit:")]
    assert len(said) == 1 and "24.0 GiB GPU" in said[0] and "--gpu h200" in said[0]
    assert "does not fit" in out.read_text()


@pytest.mark.parametrize("fmt", ["axolotl", "trl"])
def test_a_job_adapted_to_fit_says_so_in_the_file_and_on_stderr(fmt: str, tmp_path: Path) -> None:
    """No --peft and no --seq-len on a 24 GB card: the trainer file trains what fits (QLoRA, 1024-token completions),
    and both the file and stderr say what was changed and which flag keeps the original."""
    out = tmp_path / "grpo.yaml"
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "rtx-4090",
                   "--format", fmt, "-o", str(out), "--no-detect")
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if line.startswith("advisor: adapted to fit:")]
    assert len(said) == 2 and "--peft lora keeps LoRA" in said[0] and "--seq-len keeps a length" in said[1]
    assert not [line for line in proc.stderr.splitlines() if line.startswith("advisor: warning: does not fit")]
    text = out.read_text()
    assert text.count("# ADAPTED:") == 2 and "QLoRA instead of LoRA" in text
    assert ("adapter: qlora" in text and "max_completion_length: 1024" in text) if fmt == "axolotl" else \
        ("load_in_4bit: true" in text and "max_completion_length: 1024" in text)

    kept = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "rtx-4090", "--peft", "lora",
                   "--seq-len", "4096", "--format", fmt, "-o", str(out), "--no-detect")
    assert kept.returncode == 0, kept.stderr
    assert "adapted to fit" not in kept.stderr and "advisor: warning: does not fit" in kept.stderr
    assert "# ADAPTED:" not in out.read_text()


def test_a_text_output_file_still_says_on_stderr_what_does_not_fit(tmp_path: Path) -> None:
    out = tmp_path / "rec.txt"
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "rtx-4090", "--peft", "lora",
                   "--seq-len", "4096", "-o", str(out), "--no-detect")
    assert proc.returncode == 0 and proc.stdout == "" and "does NOT fit" in out.read_text()
    assert proc.stderr.startswith("advisor: warning: does not fit:"), proc.stderr
    plain = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "rtx-4090", "--peft", "lora",
                    "--seq-len", "4096", "--no-detect")
    assert plain.stderr == "" and "warning: does not fit" in plain.stdout  # on the screen it is in the table's text


def test_the_command_writes_the_file_and_warns_on_stderr_about_what_it_cannot_express(tmp_path: Path) -> None:
    out = tmp_path / "ppo.yaml"
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "ppo", "--gpu", "a100-80gb", "--format", "llama-factory",
                   "-o", str(out), "--no-detect")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    # PPO's KL coefficient, which LLaMA-Factory's PPO has no key for, is a warning in the file and on stderr
    assert "# WARNING: beta 0.05" in text and "advisor: warning: beta 0.05" in proc.stderr
    # every written value names its rule, as --format yaml does
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all("  # " in line for line in lines)
    assert "learning_rate: 1.0e-05  # LR008 lr-evidence" in text
    assert "dataset: REPLACE_ME  # PLACEHOLDER:" in text


def test_axolotl_output_nests_mappings_and_lists_placeholders_in_block_style(book: Rulebook, tmp_path: Path) -> None:
    written = _written(book, "axolotl", "sft", "qlora", None, tmp_path)
    assert written is not None
    _, tc, path = written
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    assert data["adapter"] == "qlora" and data["load_in_4bit"] is True and "rl" not in data
    assert data["datasets"] == [{"path": "REPLACE_ME", "type": "REPLACE_ME"}]
    # Axolotl's qlora loads NF4 with double quantization itself: said in a note, not a warning
    assert any(n.startswith("bnb_4bit_quant_type nf4: Axolotl's qlora") for n in tc.notes)
    assert not any("bnb_4bit" in w for w in tc.warnings)


def test_llama_factory_writes_lists_comma_separated_and_quantization_as_bits(book: Rulebook, tmp_path: Path) -> None:
    written = _written(book, "llama-factory", "sft", "qlora", None, tmp_path)
    assert written is not None
    rec, _, path = written
    data = yaml.safe_load(path.read_text())
    assert data["quantization_bit"] == 4 and data["finetuning_type"] == "lora" and data["do_train"] is True
    assert data["lora_target"] == ",".join(rec.parameters["lora_target_modules"].value)  # type: ignore[arg-type]
    assert "load_in_4bit" not in data


@pytest.mark.parametrize("fmt", TRAINERS)
@pytest.mark.parametrize(("sharding", "offload"), [("zero3", ["optimizer"]), ("zero2", []), ("fsdp_full", [])])
def test_sharding_is_written_as_the_trainers_deepspeed_or_fsdp_key_and_reads_back(
        book: Rulebook, tmp_path: Path, fmt: str, sharding: str, offload: list[str]) -> None:
    flags: dict[str, Any] = {"--sharding": sharding, **({"--offload": offload} if offload else {})}
    rec = api.recommend(book=book, model="llama-3.1-70b", method="sft", peft="full", gpu="h100", gpus=32,
                        flags=flags, detect_gpu=False)
    tc = build(rec, fmt, book)
    path = tmp_path / "sharded.yaml"
    path.write_text(render(tc))
    raw = yaml.safe_load(path.read_text())
    if sharding.startswith("zero"):  # an inline DeepSpeed config with the HF integration's 'auto' batch
        assert raw["deepspeed"]["zero_optimization"]["stage"] == int(sharding[-1])
        assert raw["deepspeed"]["train_micro_batch_size_per_gpu"] == "auto"
    else:
        assert raw["fsdp"] == "full_shard auto_wrap"
    cfg, _ = read_config(path, book, fmt)
    assert cfg.values["sharding"].value == sharding
    assert (cfg.values["offload"].value if "offload" in cfg.values else []) == offload


def test_the_recommendations_own_warnings_are_in_the_file(book: Rulebook) -> None:
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="full", gpu="rtx-4090", detect_gpu=False)
    assert any(w.startswith("does not fit") for w in rec.warnings)
    text = render(build(rec, "axolotl", book))
    assert "# WARNING: does not fit" in text


def _axolotl_loss(raw: dict[str, Any], method: str) -> Any:
    """The loss word Axolotl hands TRL: rl dpo's one-word dpo_loss_type list, GRPO's trl.loss_type."""
    if method == "dpo":
        assert "loss_type" not in (raw.get("trl") or {})  # DPOStrategy never reads it
        listed = raw.get("dpo_loss_type")
        assert listed is None or (isinstance(listed, list) and len(listed) == 1)
        return None if listed is None else listed[0]
    assert "dpo_loss_type" not in raw  # Axolotl's schema refuses it outside rl: dpo
    return (raw.get("trl") or {}).get("loss_type")


@pytest.mark.parametrize("variant", ["dpo", "ipo", "ldpo"])
def test_axolotl_dpo_loss_round_trips_through_validate(book: Rulebook, tmp_path: Path, variant: str) -> None:
    """recommend --format axolotl writes a DPO variant where Axolotl reads it (rl ipo, or dpo_loss_type under
    rl dpo), and validate reads the same variant back."""
    _, _, raw = _exported(book, "axolotl", tmp_path, model="llama-1b", method="dpo", variant=variant)
    path = tmp_path / "back.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg, _ = read_config(path, book, "axolotl")
    loss = cfg.values["loss_type"].value if "loss_type" in cfg.values else None
    assert variant_of(book.variants, "dpo", loss) == variant


@pytest.mark.parametrize(("method", "config_class"), [("grpo", "GRPOConfig"), ("dpo", "DPOConfig")])
def test_axolotl_names_the_base_loss_because_trl_defaults_to_another(book: Rulebook, tmp_path: Path, method: str,
                                                                     config_class: str) -> None:
    """Axolotl's `rl: grpo` hands its loss to TRL's GRPOConfig, whose default loss_type is dapo: the export
    names the method's own loss, which the real config class takes."""
    import dataclasses

    import trl

    _, _, raw = _exported(book, "axolotl", tmp_path, model="llama-1b", method=method)
    loss = _axolotl_loss(raw, method)
    assert loss in book.variants[method]["loss_types"]
    default = {f.name: f.default for f in dataclasses.fields(getattr(trl, config_class))}["loss_type"]
    assert method != "grpo" or default != loss  # TRL's default would train another loss (dapo)


@pytest.mark.parametrize("variant", ["cpo", "gspo", "rloo", "ldpo", "dr_grpo"])
def test_axolotl_hands_trl_only_a_loss_type_its_config_takes(book: Rulebook, tmp_path: Path, variant: str) -> None:
    """Axolotl passes trl.loss_type on to TRL's DPOConfig / GRPOConfig: a word they refuse fails the run."""
    method = book.variants[variant]["method"]
    _, tc, raw = _exported(book, "axolotl", tmp_path, model="llama-1b", method=method, variant=variant)
    trl_class = {"dpo": "DPOConfig", "grpo": "GRPOConfig"}[method]
    choices = registries.trainer_fields("trl").choices[trl_class]["loss_type"]
    loss = _axolotl_loss(raw, method)
    own = book.variants[variant].get("trl") or {}
    if loss is None:
        assert any(w.startswith(f"variant {variant} ") for w in tc.warnings)
    elif own.get("config") == trl_class:  # trained by the method's own config (GSPO): its loss and settings
        assert loss in choices and loss == own["loss_type"]
        assert all(raw["trl"][k] == v for k, v in (own.get("settings") or {}).items())
    else:
        assert loss in choices and loss in book.variants[variant]["loss_types"]


def test_axolotl_simpo_turns_off_the_nll_term_that_trls_cpo_config_adds_by_default(book: Rulebook,
                                                                                     tmp_path: Path) -> None:
    """Axolotl's `rl: simpo` builds TRL's CPOConfig and passes cpo_alpha only when the file sets it; CPOConfig's
    own default keeps CPO's NLL term, which would train CPO-SimPO instead of SimPO."""
    import dataclasses

    import trl.experimental.cpo as cpo

    _, _, raw = _exported(book, "axolotl", tmp_path, model="llama-1b", method="dpo", variant="simpo")
    assert raw["rl"] == "simpo"
    pure = book.variants["simpo"]["trl"]["settings"]["cpo_alpha"]
    assert raw["cpo_alpha"] == pure == 0.0
    default = {f.name: f.default for f in dataclasses.fields(cpo.CPOConfig)}["cpo_alpha"]
    assert default != pure  # without the key Axolotl would train TRL's default, not SimPO
    _, _, dpo = _exported(book, "axolotl", tmp_path, model="llama-1b", method="dpo")
    assert "cpo_alpha" not in dpo


@pytest.mark.parametrize("fmt", ["axolotl", "trl"])
def test_a_parameter_left_out_for_an_unknown_gpu_is_named_in_the_file(book: Rulebook, fmt: str) -> None:
    # No GPU: no rule sets bf16, so the trainer's default trains it; the file must say so, not leave it out
    # silently. The micro-batch is written (1, with the accumulation carrying the effective batch), so the
    # trainer's own default batch (Axolotl's and TRL's accumulation 1) cannot break a GRPO group of 8.
    rec = api.recommend(book=book, model="llama-8b", method="grpo", peft="lora", detect_gpu=False)
    text = render(build(rec, fmt, book))
    assert "bf16" not in rec.parameters
    assert "# note: bf16: not written, as gpu.bf16 is unknown (give --gpu)" in text
    micro = {"axolotl": "micro_batch_size", "trl": "per_device_train_batch_size"}[fmt]
    assert f"\n{micro}: 1  # BAT013 batch-micro-no-gpu" in text
    assert "\ngradient_accumulation_steps: 32  #" in text
    assert "micro_batch_size: not written" not in text
    with_gpu = render(build(_recommend(book, "grpo", "lora", None), fmt, book))
    assert "not written, as gpu." not in with_gpu
    assert "BAT013" not in with_gpu


def test_a_note_names_the_trainers_own_keys(book: Rulebook) -> None:
    # effective_batch_size has no key of its own; its note names the keys that make it up, as this trainer
    # spells them (TRL's per_device_train_batch_size, Axolotl's micro_batch_size).
    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="lora", detect_gpu=False)
    trl_text = render(build(rec, "trl", book))
    assert "# note: effective_batch_size 16: per_device_train_batch_size x gradient_accumulation_steps" in trl_text
    assert "micro_batch_size" not in trl_text
    axolotl_text = render(build(rec, "axolotl", book))
    assert "# note: effective_batch_size 16: micro_batch_size x gradient_accumulation_steps" in axolotl_text
    grpo = render(build(api.recommend(book=book, model="llama-8b", method="grpo", peft="lora", detect_gpu=False),
                        "trl", book))
    assert "prompts per optimizer step" in grpo  # an English word that is also a parameter (optimizer) stays


def test_a_sharded_multi_gpu_file_says_how_many_processes_and_saves_a_loadable_model(book: Rulebook) -> None:
    """No trainer key holds the GPU count the batch was sized for, so the file says it; under ZeRO-3 the final
    save gathers 16-bit weights (else output_dir holds only the sharded checkpoint)."""
    from advisor.render.trainer import to_trainer_config

    rec = api.recommend(book=book, model="llama-8b", method="sft", peft="full", gpu="h100", gpus=8,
                        flags={"--sharding": "zero3"}, detect_gpu=False)
    for fmt in ("trl", "axolotl", "llama-factory"):
        text = to_trainer_config(rec, fmt=fmt, book=book)
        assert "# note: sized for 8 GPUs: launch 8 processes (accelerate launch --num_processes 8" in text, fmt
        assert "stage3_gather_16bit_weights_on_model_save: true" in text, fmt
    one = api.recommend(book=book, model="llama-8b", method="sft", peft="lora", gpu="h100", detect_gpu=False)
    assert "sized for" not in to_trainer_config(one, fmt="trl", book=book)


def test_a_trl_file_says_how_to_run_it(book: Rulebook) -> None:
    """`trl <command> --config FILE` where TRL's CLI has the command; CPOConfig / ORPOConfig (SimPO, CPO, ORPO)
    have none, and `trl dpo` refuses their keys, so the header says to parse the file in a script."""
    from advisor.render.trainer import to_trainer_config

    def header(method: str, variant: str | None = None) -> str:
        rec = api.recommend(book=book, model="llama-8b", method=method, peft="lora", variant=variant, gpu="h100",
                            detect_gpu=False)
        return next(line for line in to_trainer_config(rec, fmt="trl", book=book).splitlines()
                    if line.startswith("# Run: "))

    assert header("grpo") == "# Run: trl grpo --config FILE"
    assert header("dpo", "ipo") == "# Run: trl dpo --config FILE"
    simpo = header("dpo", "simpo")
    assert "CLI has no command for CPOConfig" in simpo and "TrlParser((CPOConfig, ScriptArguments, ModelConfig))" in simpo
    assert "CPOTrainer (trl.experimental.cpo)" in simpo
    assert "ORPOTrainer (trl.experimental.orpo)" in header("dpo", "orpo")


def test_a_values_comment_names_the_rules_that_moved_it(book: Rulebook) -> None:
    """The row a value came from, and the constraint that changed it after (CTX002 capping CTX001's 4096 at a
    512-token model): the comment must not show one number beside another with no word of why."""
    from advisor.render.trainer import to_trainer_config

    rec = api.recommend(book=book, model="examples/tiny-llama/config.json", method="sft", peft="lora",
                        detect_gpu=False)
    line = next(x for x in to_trainer_config(rec, fmt="trl", book=book).splitlines() if x.startswith("max_length:"))
    assert line.startswith("max_length: 512  # CTX001") and "moved by CTX002" in line, line
    plain = api.recommend(book=book, model="llama-8b", method="sft", peft="lora", detect_gpu=False)
    assert "moved by" not in next(x for x in to_trainer_config(plain, fmt="trl", book=book).splitlines()
                                  if x.startswith("max_length:"))


def test_llama_factory_ppo_samples_at_the_recommended_temperature(book: Rulebook) -> None:
    """LLaMA-Factory's PPO trainer generates with its GeneratingArguments, temperature among them: the file
    writes it rather than warning that the trainer has no key for it."""
    from advisor.render.trainer import to_trainer_config

    rec = api.recommend(book=book, model="llama-8b", method="ppo", peft="lora", gpu="h100", detect_gpu=False)
    text = to_trainer_config(rec, fmt="llama-factory", book=book)
    assert f"\ntemperature: {rec.parameters['temperature'].value}  # RL004" in text
    assert "temperature" not in "".join(line for line in text.splitlines() if line.startswith("# WARNING"))
