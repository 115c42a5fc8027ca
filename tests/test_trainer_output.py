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
from advisor.render.trainer import TRL_SHARED_CLASSES, TrainerConfig, build, render
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
    return api.recommend(book=book, model="llama-8b", method=method, peft=peft, gpu="a100", variant=variant,
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
        *(fields.classes[c] for c in TRL_SHARED_CLASSES))
    raw = yaml.safe_load(path.read_text())
    keys = [f"{k}.{sub}" if isinstance(v, dict) else k for k, v in raw.items()
            for sub in (v if isinstance(v, dict) else [None])]
    assert not [k for k in keys if not fields.takes(k, accepted)], f"keys {fields.name} {fields.version} does not take"
    cfg, _ = read_config(path, book, fmt)
    assert cfg.model is not None and cfg.model.value == rec.facts["model"]["hf_id"]
    assert cfg.method is not None and cfg.method.value == (method if method != "raft" else "sft")
    assert cfg.peft is not None and cfg.peft.value == peft
    unwritten = " ".join(tc.warnings + tc.notes)
    for name, pv in rec.parameters.items():
        if f"{name} " in unwritten and name not in cfg.values:
            continue  # named in the file's warnings or notes, not silently dropped
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
    trl = pytest.importorskip("trl")  # the probe extra; the dev extra installs it
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
    classes = [getattr(trl, c) for c in (TRL_SHARED_CLASSES[0], tc.config_class, TRL_SHARED_CLASSES[1])]
    script, config, model = HfArgumentParser(classes).parse_yaml_file(str(path), allow_extra_keys=False)
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
    if variant == "ipo":
        assert config.loss_type == ["ipo"]
    if variant == "ldpo":
        assert config.loss_type == ["sigmoid_norm"]
    assert script.dataset_name == "REPLACE_ME"


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
               *(t.key for t in writer.translate if t.key)] + ([writer.method_key] if writer.method_key else [])
    missing += [k for k in written if not fields.takes(k, accepted)]
    assert not missing, f"{fields.name} {fields.version} has no such key: {missing}"


def test_a_method_the_trainer_cannot_train_is_a_one_line_error() -> None:
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--format", "llama-factory",
                   "--no-detect")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert "LLaMA-Factory 0.9.5 cannot train grpo" in proc.stderr and "stage" in proc.stderr


def test_the_command_writes_the_file_and_warns_on_stderr_about_what_it_cannot_express(tmp_path: Path) -> None:
    out = tmp_path / "grpo.yaml"
    proc = run_cli("recommend", "--model", "llama-8b", "--method", "grpo", "--gpu", "a100", "--format", "trl",
                   "-o", str(out), "--no-detect")
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    # the one value TRL 1.16's GRPOConfig has no key for is a warning in the file and on stderr
    assert "# WARNING: max_seq_length 4096" in text
    assert "advisor: warning: max_seq_length 4096" in proc.stderr
    # every written value names its rule, as --format yaml does
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all("  # " in line for line in lines)
    assert "learning_rate: 5.0e-06  # LR008 lr-evidence" in text
    assert "dataset_name: REPLACE_ME  # PLACEHOLDER:" in text


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
