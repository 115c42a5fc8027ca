"""The readers see what the trainers read (issue 12): files that are not training configs are refused
naming what they are; nested keys (Axolotl's trl: block, LLaMA-Factory v1's plugins) are read through
dotted trainer_keys; trainer words and fractional step counts are read as the trainer reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from advisor.configs.document import ConfigError
from advisor.configs.readers import read_config
from advisor.facts.hardware import resolve_gpu
from advisor.registries import not_configs
from advisor.rulebook.load import Rulebook
from advisor.validate import Overrides, Selection, validate_file
from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
NOT_CONFIGS = sorted(p for p in (FIXTURES / "not_configs").iterdir() if p.suffix in (".yaml", ".json"))


def _report(path: Path, book: Rulebook):  # type: ignore[no-untyped-def]
    gpu = resolve_gpu(book, name=None, memory_gb=None, count=None, detect=False)
    return validate_file(path, book, gpu, Overrides(), Selection())


def test_every_not_config_kind_has_a_fixture() -> None:
    assert set(not_configs()) <= {p.stem for p in NOT_CONFIGS}


@pytest.mark.parametrize("path", NOT_CONFIGS, ids=lambda p: p.stem)
def test_a_file_that_is_not_a_training_config_is_refused_naming_its_kind(path: Path, book: Rulebook) -> None:
    with pytest.raises(ConfigError) as exc:
        read_config(path, book)
    kind = not_configs().get(path.stem)
    text = str(exc.value)
    assert "\n" not in text and str(path) in text
    if kind is None:  # none.yaml: no kind, and no key a trainer reads
        assert "sets none of the keys a trainer reads" in text
    else:
        assert f"this is {kind.name}, not a training config" in text and kind.hint in text


def test_deepspeed_json_is_named_not_judged_key_by_key_and_other_files_are_still_checked(tmp_path: Path) -> None:
    good = tmp_path / "train.yaml"
    good.write_text("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlearning_rate: 2.0e-4\n")
    result = run_cli("validate", str(FIXTURES / "not_configs" / "deepspeed.json"), str(good))
    assert result.returncode == 2, result.stderr
    out = result.stdout + result.stderr
    assert "this is a DeepSpeed config" in out and "`deepspeed`" in out and "is not a bool" not in out
    assert "train.yaml" in out and "Traceback" not in out


@pytest.mark.parametrize("text", [
    # a prediction key beside do_train: LLaMA-Factory trains, then predicts
    "stage: sft\ndo_train: true\ndo_predict: true\nfinetuning_type: lora\nlearning_rate: 1.0e-4\n",
    # a training config that names its DeepSpeed file
    "base_model: meta-llama/Llama-3.1-8B\ndeepspeed: deepspeed_configs/zero3.json\nlearning_rate: 2.0e-5\n",
    # vLLM's keys beside training ones: a GRPO config
    "model_name_or_path: Qwen/Qwen2.5-1.5B\nnum_generations: 8\ngpu_memory_utilization: 0.3\nlearning_rate: 1.0e-6\n",
])
def test_a_training_config_with_a_kinds_key_is_still_read(text: str, book: Rulebook, tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    cfg, _ = read_config(path, book)
    assert "learning_rate" in cfg.values


def test_axolotl_nested_trl_block_and_reader_keys(book: Rulebook) -> None:
    path = FIXTURES / "readers" / "axolotl-grpo-trl-block.yaml"
    cfg, _ = read_config(path, book)
    v = {k: c.value for k, c in cfg.values.items()}
    assert (cfg.format, cfg.method.value if cfg.method else None) == ("axolotl", "grpo")
    assert (v["beta"], v["num_generations"], v["max_completion_length"], v["temperature"]) == (0.001, 8, 512, 0.9)
    assert (v["use_vllm"], v["vllm_mode"], v["loss_type"]) == (True, "colocate", "dr_grpo")
    assert cfg.values["beta"].key == "trl.beta" and cfg.values["beta"].line == 15
    assert v["min_lr_rate"] == 0.1 and cfg.values["min_lr_rate"].key == "lr_scheduler_kwargs.min_lr_rate"
    assert v["lora_modules_to_save"] == ["embed_tokens", "lm_head"]
    assert (v["use_dora"], v["loraplus_lr_ratio"], v["packing"], v["use_liger_kernel"]) == (True, 16.0, True, True)
    assert v["bnb_4bit_use_double_quant"] is True
    # the trainer's readings: offload is checkpointing on; a warmup_steps below 1 is a ratio
    assert v["gradient_checkpointing"] is True and "warmup_steps" not in v and v["warmup_ratio"] == 0.1
    assert cfg.values["warmup_ratio"].key == "warmup_steps"
    report = _report(path, book)
    read_as = [f for f in report.findings if f.code == "VCF003"]
    assert {f.key for f in read_as} == {"gradient_checkpointing", "warmup_steps"}
    assert all(f.severity == "warning" and f.line for f in read_as)
    assert report.job["method"] is not None and report.job["method"].value == "grpo"


def test_llama_factory_v1_format(book: Rulebook) -> None:
    cfg, _ = read_config(FIXTURES / "readers" / "llama-factory-v1-qlora.yaml", book)
    v = {k: c.value for k, c in cfg.values.items()}
    assert cfg.format == "llama-factory-v1"
    assert cfg.model is not None and cfg.model.value == "Qwen/Qwen3-0.6B"
    assert (cfg.method.value if cfg.method else None, cfg.peft.value if cfg.peft else None) == ("sft", "qlora")
    assert (v["lora_rank"], v["lora_alpha"], v["quantization_bit"], v["quantization_method"]) == (16, 32, 4, "bnb")
    assert (v["micro_batch_size"], v["max_seq_length"], v["max_steps"]) == (1, 2048, 10)
    assert cfg.values["lora_rank"].key == "peft_config.r" and cfg.values["lora_rank"].line == 6


def test_llama_factory_quantized_base_negated_and_kernel_keys(book: Rulebook) -> None:
    cfg, _ = read_config(FIXTURES / "readers" / "llama-factory-gptq.yaml", book)
    v = {k: c.value for k, c in cfg.values.items()}
    assert (v["quantization_method"], v["quantization_bit"], v["bnb_4bit_use_double_quant"]) == ("gptq", 4, False)
    assert v["gradient_checkpointing"] is False  # disable_gradient_checkpointing: true
    assert cfg.values["gradient_checkpointing"].key == "disable_gradient_checkpointing"
    assert (v["use_liger_kernel"], v["neat_packing"], v["packing"], v["use_dora"]) == (True, True, True, True)
    assert v["lora_modules_to_save"] == ["embed_tokens"]


def test_an_optimizer_outside_adamw_is_not_judged_by_adamws_bands(book: Rulebook, tmp_path: Path) -> None:
    body = "model_name_or_path: meta-llama/Llama-3.1-8B\nlearning_rate: 0.02\n"
    codes = {}
    for optim in ("adamw_torch", "muon", "lion_32bit"):
        path = tmp_path / f"{optim}.yaml"
        path.write_text(body + f"optim: {optim}\n")
        codes[optim] = {f.code for f in _report(path, book).findings}
    assert any(c.startswith("VLR") for c in codes["adamw_torch"]) and "VOP005" not in codes["adamw_torch"]
    for optim in ("muon", "lion_32bit"):
        assert "VOP005" in codes[optim] and not any(c.startswith("VLR") for c in codes[optim]), codes[optim]


@pytest.mark.parametrize(("text", "method", "variant"), [
    ("base_model: mistralai/Mistral-7B-v0.1\nrl: orpo\norpo_alpha: 0.1\n", "dpo", "orpo"),
    ("base_model: mistralai/Mistral-7B-v0.1\nrl: kto\n", "dpo", "kto"),
    ("base_model: mistralai/Mistral-7B-v0.1\nrl: simpo\nsimpo_gamma: 0.5\n", "dpo", "simpo"),
    ("base_model: mistralai/Mistral-7B-v0.1\nrl: ipo\n", "dpo", "ipo"),
    ("base_model: mistralai/Mistral-7B-v0.1\nrl: grpo\ntrl:\n  loss_type: dapo\n", "grpo", "dapo"),
    ("stage: dpo\npref_loss: orpo\nfinetuning_type: lora\n", "dpo", "orpo"),
    ("stage: dpo\npref_loss: simpo\nsimpo_gamma: 0.5\nfinetuning_type: lora\n", "dpo", "simpo"),
    ("stage: kto\nkto_chosen_weight: 1.0\nfinetuning_type: lora\n", "dpo", "kto"),
    ("model_name_or_path: m\nbeta: 0.1\ndesirable_weight: 1.33\n", "dpo", "kto"),
    ("model_name_or_path: m\nbeta: 2.0\nloss_type: simpo\n", "dpo", "simpo"),
    ("model_name_or_path: m\nbeta: 0.05\nloss_type: dpo_norm\n", "dpo", "ldpo"),
    ("model_name_or_path: m\nnum_generations: 8\nloss_type: dr_grpo\n", "grpo", "dr_grpo"),
    # TRL CPOConfig: cpo_alpha is CPO's; its loss_type sigmoid (the default) is CPO's own loss, not DPO's
    ("model_name_or_path: m\nbeta: 0.1\ncpo_alpha: 1.0\n", "dpo", "cpo"),
    ("model_name_or_path: m\nbeta: 0.1\ncpo_alpha: 1.0\nloss_type: sigmoid\nsimpo_gamma: 0.5\n", "dpo", "cpo"),
    ("model_name_or_path: m\nbeta: 2.0\ncpo_alpha: 0.0\nloss_type: simpo\nsimpo_gamma: 0.5\n", "dpo", "simpo"),
])
def test_every_preference_and_rl_loss_is_its_variant_never_plain_dpo(text: str, method: str, variant: str,
                                                                    book: Rulebook, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text + "learning_rate: 5.0e-6\n")
    report = _report(path, book)
    assert report.error is None and report.config is not None
    assert report.config.method is not None and report.config.method.value == method
    from advisor.facts.task import variant_of
    loss = report.config.values["loss_type"].value
    assert variant_of(book.variants, method, loss) == variant


@pytest.mark.parametrize(("text", "word"), [
    ("base_model: m\nprocess_reward_model: true\n", "prm"),
    ("base_model: m\nrl: ebft\n", "ebft"),
])
def test_a_method_without_rules_is_named_never_read_as_another(text: str, word: str, book: Rulebook,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text + "learning_rate: 5.0e-6\n")
    found = [f for f in _report(path, book).findings if f.code == "VCF002"]
    assert found and found[0].message.startswith(f"method {word}: advisor has no rules for it")


def test_orpo_beta_is_not_judged_by_dpos_table(book: Rulebook, tmp_path: Path) -> None:
    orpo, dpo = tmp_path / "orpo.yaml", tmp_path / "dpo.yaml"
    orpo.write_text("base_model: mistralai/Mistral-7B-v0.1\nrl: orpo\nadapter: lora\nrl_beta: 2.0\nlearning_rate: 8.0e-6\n")
    dpo.write_text("base_model: mistralai/Mistral-7B-v0.1\nrl: dpo\nadapter: lora\nrl_beta: 2.0\nlearning_rate: 8.0e-6\n")
    assert "VPM001" in {f.code for f in _report(dpo, book).findings}
    assert "VPM001" not in {f.code for f in _report(orpo, book).findings}


def test_duplicate_keys_same_value_is_a_warning_naming_both_lines_different_values_an_error(
        book: Rulebook, tmp_path: Path) -> None:
    same = tmp_path / "same.yaml"
    same.write_text("base_model: meta-llama/Llama-3.1-8B\nlearning_rate: 2.0e-5\nadapter: lora\nlearning_rate: 2.0e-5\n")
    report = _report(same, book)
    assert report.error is None
    dup = [f for f in report.findings if f.code == "VCF003"]
    assert dup and "lines 2 and 4" in dup[0].message and dup[0].line == 4
    other = tmp_path / "other.yaml"
    other.write_text("base_model: meta-llama/Llama-3.1-8B\nlearning_rate: 2.0e-5\nlearning_rate: 3.0e-5\n")
    report = _report(other, book)
    assert report.error is None  # the trainer runs it: a finding, not a refusal
    assert report.config is not None and report.config.values["learning_rate"].value == 3e-5  # the last, as yaml keeps
    assert report.config.values["learning_rate"].line == 3
    (dup,) = [f for f in report.findings if f.code == "VCF004"]
    assert dup.severity == "error" and dup.line == 3
    assert "line 2" in dup.message and "line 3" in dup.message and "2e-05" in dup.message and "3e-05" in dup.message
    assert "VCF003" not in {f.code for f in report.findings}


def test_open_instruct_use_qlora_is_qlora(book: Rulebook, tmp_path: Path) -> None:
    path = tmp_path / "tulu2_7b_qlora.yaml"  # shaped like open-instruct configs/train_configs/sft/tulu2_7b_qlora.yaml
    path.write_text("model_name_or_path: meta-llama/Llama-2-7b-hf\nuse_lora: true\nuse_qlora: true\nlora_rank: 64\n"
                    "learning_rate: 1.0e-4\nper_device_train_batch_size: 1\n")
    cfg, _ = read_config(path, book)
    assert cfg.peft is not None and cfg.peft.value == "qlora" and cfg.values["load_in_4bit"].value is True


def test_llama_factory_optimizer_flags_name_the_optimizer(book: Rulebook, tmp_path: Path) -> None:
    path = tmp_path / "galore.yaml"  # shaped like LLaMA-Factory examples/extras/galore/llama3_full_sft.yaml
    path.write_text("model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct\nstage: sft\ndo_train: true\n"
                    "finetuning_type: full\nuse_galore: true\ngalore_layerwise: true\ngalore_target: mlp,self_attn\n"
                    "galore_rank: 128\nlearning_rate: 1.0e-5\noptim: adamw_torch\n")
    report = _report(path, book)
    assert report.config is not None and report.config.values["optimizer"].value == "galore_adamw"
    assert report.config.values["optimizer"].key == "use_galore"
    assert "VOP005" in {f.code for f in report.findings}
    path.write_text(path.read_text().replace("use_galore: true", "use_galore: false"))
    report = _report(path, book)
    assert report.config is not None and report.config.values["optimizer"].value == "adamw_torch"
    assert "VOP005" not in {f.code for f in report.findings}


def test_torchao_low_bit_adamw_is_judged_by_adamws_bands(book: Rulebook, tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("base_model: meta-llama/Llama-3.1-8B\nadapter: lora\noptimizer: adamw_torch_8bit\nlearning_rate: 0.02\n")
    codes = {f.code for f in _report(path, book).findings}
    assert "VOP005" not in codes and any(c.startswith("VLR") for c in codes)


def test_fix_writes_a_nested_key_in_its_block(book: Rulebook, tmp_path: Path) -> None:
    text = (FIXTURES / "readers" / "axolotl-grpo-trl-block.yaml").read_text().replace("temperature: 0.9",
                                                                                       "temperature: 1.8")
    path, out = tmp_path / "grpo.yaml", tmp_path / "fixed.yaml"
    path.write_text(text)
    result = run_cli("validate", str(path), "--fix", str(out))
    assert out.is_file(), result.stderr
    fixed = read_config(out, book)[0]
    assert fixed.values["temperature"].value == 0.7 and fixed.values["temperature"].key == "trl.temperature"
    assert out.read_text().count("temperature:") == 1


@pytest.mark.parametrize(("extra", "peft"), [
    ("use_peft: false\nlora_r: 16\n", "full"),  # TRL's get_peft_config: None when use_peft is False
    ("use_peft: 'false'\nlora_r: 16\n", "full"),
    ("use_lora: false\nlora_r: 16\n", "full"),  # open-instruct's switch
    ("use_peft: true\nlora_r: 16\n", "lora"),
    ("lora_r: 16\n", "lora"),  # a rank with no switch still reads as LoRA
    ("use_peft: true\nload_in_4bit: true\n", "qlora"),
])
def test_trl_use_peft_false_trains_full_weights_whatever_lora_r_says(extra: str, peft: str, book: Rulebook,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "sft.yaml"
    path.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\n" + extra +
                    "learning_rate: 2.0e-4\nper_device_train_batch_size: 1\n")
    cfg, _ = read_config(path, book)
    assert cfg.peft is not None and cfg.peft.value == peft


def test_trl_quantized_base_without_peft_is_vqt001_like_any_full_run_on_4bit_weights(book: Rulebook,
                                                                                     tmp_path: Path) -> None:
    path = tmp_path / "sft.yaml"
    path.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nuse_peft: false\nlora_r: 16\nload_in_4bit: true\n"
                    "learning_rate: 2.0e-5\nper_device_train_batch_size: 1\n")
    report = _report(path, book)
    assert report.config is not None and report.config.peft is not None and report.config.peft.value == "full"
    assert "VQT001" in {f.code for f in report.findings}


def test_a_llama_factory_config_with_trainingarguments_keys_is_llama_factory_not_trl(book: Rulebook,
                                                                                    tmp_path: Path) -> None:
    """stage and finetuning_type are LLaMA-Factory's own keys; model_name_or_path and the batch key are
    TrainingArguments' too, so they must not outvote them."""
    path = tmp_path / "full_sft.yaml"
    path.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nstage: sft\nfinetuning_type: full\nquantization_bit: 4\n"
                    "learning_rate: 2.0e-5\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 4\n")
    report = _report(path, book)
    assert report.config is not None and report.config.format == "llama-factory"
    assert any(f.code == "VQT001" and f.key == "quantization_bit" for f in report.findings)
    path.write_text("model_name_or_path: meta-llama/Llama-3.1-8B\nfinetuning_type: lora\nlearning_rate: 1.0e-4\n")
    assert read_config(path, book)[0].format == "llama-factory"


def test_the_marks_of_a_format_are_keys_no_other_trainer_takes() -> None:
    """A mark claims a file outright, so a key another trainer's config classes also have cannot be one."""
    from advisor.registries import formats, trainer_fields

    takes = {f.id: trainer_fields(f.write.fields) for f in formats().values() if f.write is not None}
    for fmt in formats().values():
        for mark in fmt.marks:
            for other, fields in takes.items():
                if other != fmt.id:
                    assert not fields.takes(mark, fields.keys.union(*fields.classes.values())), (fmt.id, mark, other)


@pytest.mark.parametrize(("line", "key"), [
    ("rl: [dpo]", "rl"), ("rl: {a: 1}", "rl"), ("rl: true", "rl"), ("rl: 5", "rl"),
    ("adapter: foo", "adapter"), ("adapter: [lora]", "adapter"),
])
def test_an_axolotl_method_or_adapter_that_is_no_word_is_named_not_read_as_another(line: str, key: str,
                                                                                   book: Rulebook,
                                                                                   tmp_path: Path) -> None:
    path = tmp_path / "axolotl.yml"
    path.write_text(f"base_model: meta-llama/Llama-3.1-8B\n{line}\nmicro_batch_size: 1\n"
                    "gradient_accumulation_steps: 4\nlearning_rate: 2.0e-5\n")
    with pytest.raises(ConfigError) as exc:
        read_config(path, book)
    assert str(exc.value).startswith(f"{path}:2: key '{key}': value ") and "\n" not in str(exc.value)
    assert exc.value.hint is not None and ("dpo" in exc.value.hint if key == "rl" else "lora" in exc.value.hint)


@pytest.mark.parametrize("value", ["[a, b]", "123"])
def test_a_model_key_that_is_no_name_is_refused_naming_it(value: str, book: Rulebook, tmp_path: Path) -> None:
    """Every reader's model key (formats.yaml model_keys): a TRL model_name_or_path of 123 once left the model
    unnamed without a word, as LLaMA-Factory v1's and advisor's own `model` did."""
    for text in (f"base_model: {value}\nadapter: lora\nlearning_rate: 2.0e-4\n",
                 f"model_name_or_path: {value}\nstage: sft\nfinetuning_type: lora\nlearning_rate: 2.0e-4\n",
                 f"model_name_or_path: {value}\nuse_peft: true\nlearning_rate: 2.0e-4\n",
                 f"model: {value}\nmodel_class: llm\nlearning_rate: 1.0e-4\n",
                 f"model: {value}\ntraining:\n  learning_rate: 2.0e-4\n"):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=r"c.yaml:1: key '\w+': value .* is not a model name") as exc:
            read_config(path, book)
        assert "\n" not in str(exc.value) and exc.value.hint is not None and "one string" in exc.value.hint


V1_HEAD = "model: Qwen/Qwen3-0.6B\nmodel_class: llm\nmicro_batch_size: 1\nlearning_rate: 1.0e-4\n"


@pytest.mark.parametrize(("block", "message"), [
    ("peft_config:\n  name: 5\n  r: 16\n", ":6: key 'peft_config.name': value 5 is not a plugin name"),
    ("peft_config:\n  name: [lora]\n", ":6: key 'peft_config.name': value ['lora'] is not a plugin name"),
    ("peft_config: lora\n", ":5: key 'peft_config': value 'lora' is not a mapping"),
    ("peft_config:\n  - name: lora\n", ":5: key 'peft_config': value [{'name': 'lora'}] is not a mapping"),
    ("quant_config: bnb\n", ":5: key 'quant_config': value 'bnb' is not a mapping"),
    ("peft_config:\n  r: 8\n", ":5: key 'peft_config' has no 'name'"),
    ("peft_config:\n  name: lora\n  r: abc\n", ":7: key 'peft_config.r': value 'abc' is not an int"),
])
def test_llama_factory_v1_plugin_values_of_the_wrong_type_are_named(block: str, message: str, book: Rulebook,
                                                                    tmp_path: Path) -> None:
    """A non-string peft_config.name was read as LoRA, a peft_config that is no mapping as full fine-tuning."""
    path = tmp_path / "v1.yaml"
    path.write_text(V1_HEAD + block)
    with pytest.raises(ConfigError) as exc:
        read_config(path, book)
    assert str(exc.value).startswith(f"{path}{message}") and "\n" not in str(exc.value)
    assert exc.value.hint is not None


def test_a_nested_block_given_as_a_json_string_is_read_as_the_trainers_read_it(book: Rulebook, tmp_path: Path) -> None:
    """TrainingArguments and LLaMA-Factory v1 json.loads a dict field written as a string starting with '{'."""
    path = tmp_path / "v1.yaml"
    path.write_text(V1_HEAD + "peft_config: '{\"name\": \"lora\", \"r\": 8}'\n")
    cfg, _ = read_config(path, book)
    assert cfg.peft is not None and cfg.peft.value == "lora" and cfg.values["lora_rank"].value == 8


@pytest.mark.parametrize(("text", "message"), [
    (V1_HEAD + "bf16: 'false'\n", ":5: key 'bf16': value 'false' is quoted: LLaMA-Factory v1 passes it on as a string, "
                                  "not a bool (hint: write it without quotes: bf16: false)"),
    ("model: Qwen/Qwen3-0.6B\nmodel_class: llm\nlearning_rate: \"2e-4\"\n",
     ":3: key 'learning_rate': value '2e-4' is quoted: LLaMA-Factory v1 passes it on as a string, not a float"),
    # inside a plugin block _convert_str_dict reads plain digits and one-dot decimals, not an exponent
    (V1_HEAD + "peft_config:\n  name: lora\n  r: '16'\n  lora_dropout: '5e-2'\n",
     ":8: key 'peft_config.lora_dropout': value '5e-2' is quoted: LLaMA-Factory v1 passes it on as a string, not a float"),
])
def test_llama_factory_v1_keeps_a_quoted_number_as_text_so_advisor_names_it(text: str, message: str, book: Rulebook,
                                                                             tmp_path: Path) -> None:
    """OmegaConf types plain scalars only and HfArgumentParser.parse_dict converts nothing: v1 trains on the str
    (or stops at it), where advisor used to judge the number the text spells."""
    path = tmp_path / "v1.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        read_config(path, book, "llama-factory-v1")
    assert f"{path}{message}" in f"{exc.value} (hint: {exc.value.hint})" and "\n" not in str(exc.value)


@pytest.mark.parametrize(("text", "message"), [
    ('model_name_or_path: m\nstage: sft\nfinetuning_type: lora\nlearning_rate: "2e-4"\n',
     ":4: key 'learning_rate': value '2e-4' is quoted: LLaMA-Factory passes it on as a string, not a float"),
    # quantization_bit '4' reaches the quantization code as a str, which is neither 4 nor 8: no 4-bit load
    ('model_name_or_path: m\nstage: sft\nfinetuning_type: lora\nquantization_bit: "4"\n',
     ":4: key 'quantization_bit': value '4' is quoted: LLaMA-Factory passes it on as a string, not an int"),
])
def test_llama_factory_keeps_a_quoted_number_as_text_so_advisor_names_it(text: str, message: str, book: Rulebook,
                                                                          tmp_path: Path) -> None:
    """read_args OmegaConf-loads the file and parse_dict converts nothing, as in v1, with no plugin level."""
    path = tmp_path / "lf.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        read_config(path, book, "llama-factory")
    assert f"{path}{message}" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize(("line", "message"), [
    ('lora_r: "16.0"', "key 'lora_r': value '16.0' is quoted: TRL / Hugging Face TrainingArguments converts it as an "
                       "int, and that refuses it (hint: write an int without quotes, e.g. lora_r: 16)"),
    ('learning_rate: "2e-4x"', "key 'learning_rate': value '2e-4x' is quoted: TRL / Hugging Face TrainingArguments "
                               "converts it as a float"),
    ('gradient_checkpointing: "sure"', "key 'gradient_checkpointing': value 'sure' is quoted: TRL / Hugging Face "
                                       "TrainingArguments converts it as a bool"),
])
def test_trl_refuses_quoted_text_its_fields_type_cannot_parse(line: str, message: str, book: Rulebook,
                                                              tmp_path: Path) -> None:
    """TrlParser's argparse parses a str default with the field's type: int('16.0') stops the run
    ("invalid int value"), so advisor says so rather than read 16."""
    path = tmp_path / "trl.yaml"
    path.write_text(f"model_name_or_path: m\nuse_peft: true\n{line}\n")
    with pytest.raises(ConfigError) as exc:
        read_config(path, book, "trl")
    assert message in f"{exc.value} (hint: {exc.value.hint})" and "\n" not in str(exc.value)


def test_trl_reads_quoted_switches_and_numbers_as_its_parser_does(book: Rulebook, tmp_path: Path) -> None:
    """transformers' string_to_bool takes yes / no, t / f, y / n, 1 / 0; int() and float() take spaces and
    underscores."""
    path = tmp_path / "trl.yaml"
    path.write_text('model_name_or_path: m\nuse_peft: "Yes"\ngradient_checkpointing: "Yes"\n')
    cfg, _ = read_config(path, book, "trl")
    assert cfg.values["gradient_checkpointing"].value is True and cfg.peft is not None and cfg.peft.value == "lora"
    # TrainingArguments' warmup_steps and eval_steps are floats: "10.0" is 10, and "0.03" is the ratio it is unquoted
    path.write_text('model_name_or_path: m\nuse_peft: true\nwarmup_steps: "10.0"\neval_steps: "100.0"\n')
    cfg, _ = read_config(path, book, "trl")
    assert cfg.values["warmup_steps"].value == 10 and cfg.values["eval_steps"].value == 100
    path.write_text('model_name_or_path: m\nuse_peft: true\nwarmup_steps: "0.03"\n')
    quoted, _ = read_config(path, book, "trl")
    path.write_text('model_name_or_path: m\nuse_peft: true\nwarmup_steps: 0.03\n')
    plain, _ = read_config(path, book, "trl")
    assert quoted.values["warmup_ratio"].value == plain.values["warmup_ratio"].value == 0.03
    path.write_text('model_name_or_path: m\nuse_peft: true\ngradient_checkpointing: "n"\nlora_r: " 1_6 "\n'
                    'learning_rate: "+2E-4"\n')
    cfg, _ = read_config(path, book, "trl")
    assert cfg.values["gradient_checkpointing"].value is False and cfg.values["lora_rank"].value == 16
    assert cfg.values["learning_rate"].value == 2e-4


def test_llama_factory_v1_reads_text_as_the_trainer_does(book: Rulebook, tmp_path: Path) -> None:
    """Unquoted 2e-4 is OmegaConf's float (PyYAML's str); a plugin block's '16', '0.05' and 'true' are
    _convert_str_dict's int, float and bool, in a YAML mapping or a block given as one JSON string; in a JSON
    file every string is text."""
    path = tmp_path / "v1.yaml"
    path.write_text("model: Qwen/Qwen3-0.6B\nmodel_class: llm\nlearning_rate: 2e-4\npeft_config:\n  name: lora\n"
                    "  r: '16'\n  lora_dropout: '0.05'\n  use_dora: 'true'\n")
    cfg, _ = read_config(path, book)
    assert cfg.values["learning_rate"].value == 2e-4 and cfg.values["lora_rank"].value == 16
    assert cfg.values["lora_dropout"].value == 0.05
    path.write_text(V1_HEAD + "peft_config: '{\"name\": \"lora\", \"r\": \"8\", \"lora_dropout\": \"5e-2\"}'\n")
    with pytest.raises(ConfigError, match=r"key 'peft_config\.lora_dropout': value '5e-2' is quoted"):
        read_config(path, book)
    json_path = tmp_path / "v1.json"
    json_path.write_text('{"model": "Qwen/Qwen3-0.6B", "model_class": "llm", "learning_rate": "1e-4"}')
    with pytest.raises(ConfigError, match=r"v1\.json:1: key 'learning_rate': value '1e-4' is quoted"):
        read_config(json_path, book)


@pytest.mark.parametrize(("text", "fmt", "values", "peft"), [
    # Axolotl's schema: convert_learning_rate float()s a str, pydantic reads "16" as 16 and "false" as false
    ('base_model: m\nadapter: lora\nlearning_rate: "2e-4"\nlora_r: "16"\nload_in_4bit: "false"\n', "axolotl",
     {"learning_rate": 2e-4, "lora_rank": 16, "load_in_4bit": False}, "lora"),
    ('base_model: m\nadapter: lora\nlearning_rate: "2e-4"\nload_in_4bit: "true"\n', "axolotl",
     {"load_in_4bit": True}, "qlora"),
    # TrlParser sets the YAML as argparse defaults, which argparse converts with each field's type
    ('model_name_or_path: m\nuse_peft: "true"\nlearning_rate: "2e-4"\nlora_r: "16"\n', "trl",
     {"learning_rate": 2e-4, "lora_rank": 16}, "lora"),
    # LLaMA-Factory's quantization_bit 4 (unquoted: OmegaConf's int) is QLoRA
    ('model_name_or_path: m\nstage: sft\nfinetuning_type: lora\nquantization_bit: 4\nlearning_rate: 1.0e-4\n',
     "llama-factory", {"quantization_bit": 4, "load_in_4bit": True}, "qlora"),
])
def test_numbers_and_switches_given_as_text_are_read_as_the_trainer_reads_them(
        text: str, fmt: str, values: dict[str, Any], peft: str, book: Rulebook, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg, _ = read_config(path, book, fmt)
    assert {k: cfg.values[k].value for k in values} == values
    assert cfg.peft is not None and cfg.peft.value == peft


def test_a_quoted_number_llama_factory_v1_keeps_as_text_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "v1.yaml"
    path.write_text("model: Qwen/Qwen3-0.6B\nmodel_class: llm\nlearning_rate: '2e-4'\n")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    said = " ".join(proc.stdout.split())  # the terminal width wraps the one message
    assert f"{path}: cannot check: {path}:3: key 'learning_rate': value '2e-4' is quoted: LLaMA-Factory v1" in said
    assert "(hint: write it without quotes: learning_rate: 2e-4)" in said


def _trl_cli_takes(path: Path, command: str) -> bool:
    """Whether `trl <command> --config path` gets past its argument parsing: TRL 1.16's TrainingCommand.run up to
    the launch (trl/cli/commands/training.py), whose accelerate launch parser gets the keys no class took."""
    import importlib
    import importlib.resources

    from accelerate.commands.launch import launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    args = ["--config", str(path)]
    parser = importlib.import_module(f"trl.scripts.{command}").make_parser(prog=f"trl {command}")
    *_, from_config, from_cli = parser.parse_args_and_config(list(args), return_remaining_strings=True,
                                                             separate_remaining_strings=True)
    script = str(importlib.resources.files("trl.scripts").joinpath(f"{command}.py"))
    try:
        launch_command_parser().parse_args([*resolve_accelerate_config_argument(from_config + from_cli), script, *args])
    except SystemExit:
        return False
    return True


@pytest.mark.parametrize(("command", "extra", "code"), [
    ("sft", "torch_dtype: bfloat16\n", "VCF011"),
    ("sft", "warmup_ratio: 0.03\nmax_seq_length: 2048\n", "VCF011"),
    ("sft", "dtype: bfloat16\nwarmup_steps: 0.03\nmax_length: 2048\n", None),
    ("grpo", "num_generations: 8\nmax_prompt_length: 512\n", "VCF011"),
    ("grpo", "num_generations: 8\nreward_funcs: [accuracy_reward]\ndatasets: [{path: trl-lib/DeepMath-103K}]\n"
             "num_processes: 8\nenv: {WANDB_PROJECT: grpo}\n", None),
    ("grpo", "num_generations: 8\nsystem_prompt: You are a helpful assistant\ndataset_prompt_column: problem\n", "VCF012"),
    ("dpo", "beta: 0.1\ndataset_mixture: {datasets: []}\ntorch_dtype: bfloat16\n", "VCF012"),
])
def test_trl_keys_are_flagged_exactly_when_trls_own_cli_stops_on_them(command: str, extra: str, code: str | None,
                                                                      book: Rulebook, tmp_path: Path) -> None:
    """VCF011 / VCF012 name a key where `trl <command> --config` stops on it (accelerate launch: unrecognized
    arguments), and nothing where TRL's parser and the launcher take every key (a script's own arguments,
    DatasetMixtureConfig's datasets, a launch option, the env mapping)."""
    path = tmp_path / "trl.yaml"
    path.write_text(f"model_name_or_path: Qwen/Qwen2.5-7B\nuse_cpu: true\nlearning_rate: 1.0e-5\n{extra}")
    cfg, _ = read_config(path, book, "trl")
    flagged = [r for r in cfg.read_as if r.rule in ("check-config-retired-key", "check-config-foreign-keys")]
    assert [book.rules[r.rule].code for r in flagged][:1] == ([code] if code else [])
    assert _trl_cli_takes(path, command) is (code is None)
    if code == "VCF011":  # one warning per retired key, each naming what replaced it
        retired = [k for k in yaml.safe_load(extra) if k in ("torch_dtype", "warmup_ratio", "max_seq_length",
                                                             "max_prompt_length")]
        assert [r.key for r in flagged] == retired
        assert all("replaced it" in r.message or "caps no prompt" in r.message for r in flagged)


@pytest.mark.parametrize("syntax", ["yaml", "json"])
def test_fix_renames_retired_trl_keys_and_trls_own_cli_then_takes_the_file(syntax: str, tmp_path: Path) -> None:
    """--fix writes each VCF011 key under the one that replaced it, its value, comment and place kept, so the
    fixed file gets past `trl sft --config`; a replacement the file already holds is never written twice."""
    data = {"model_name_or_path": "Qwen/Qwen2.5-7B", "use_cpu": True, "use_peft": True, "learning_rate": 2.0e-4,
            "torch_dtype": "bfloat16", "warmup_ratio": 0.03, "max_seq_length": 2048}
    src = tmp_path / f"old.{syntax}"
    if syntax == "json":
        src.write_text(json.dumps(data))
    else:
        text = yaml.safe_dump(data, sort_keys=False)
        src.write_text(text.replace("torch_dtype: bfloat16", "torch_dtype: bfloat16  # bf16 GPUs"))
    assert not _trl_cli_takes(src, "sft")
    fixed = tmp_path / f"fixed.{syntax}"
    proc = run_cli("validate", str(src), "--fix", str(fixed), "--no-detect")
    assert "--fix renames it dtype" in proc.stdout and "with 3 fix(es)" in proc.stderr, proc.stdout + proc.stderr
    out = json.loads(fixed.read_text()) if syntax == "json" else yaml.safe_load(fixed.read_text())
    assert list(out) == ["model_name_or_path", "use_cpu", "use_peft", "learning_rate", "dtype", "warmup_steps",
                         "max_length"]
    assert (out["dtype"], out["warmup_steps"], out["max_length"]) == ("bfloat16", 0.03, 2048)
    if syntax == "yaml":
        assert "dtype: bfloat16  # bf16 GPUs" in fixed.read_text()
    assert _trl_cli_takes(fixed, "sft")
    assert "VCF011" not in run_cli("validate", str(fixed), "--no-detect").stdout
    # both spellings in one file: the old one is named, and --fix leaves it for the user to choose
    both = tmp_path / "both.yaml"
    both.write_text("model_name_or_path: Qwen/Qwen2.5-7B\nuse_peft: true\nlearning_rate: 2.0e-4\n"
                    "torch_dtype: bfloat16\ndtype: float16\n")
    report = json.loads(run_cli("validate", str(both), "--no-detect", "--format", "json").stdout)
    retired = [f for f in report["files"][0]["findings"] if f["code"] == "VCF011"]
    assert [f["key"] for f in retired] == ["torch_dtype"] and retired[0]["fix"] is None
